"""What one `StoreReader.read_new()` returns: the new step and draw rows, in long form."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import xarray as xr

from devinterp_ui.live.marker import StoreStatus


@dataclass(frozen=True)
class NewRows:
    """What one `read_new()` call found: rows no earlier call returned, in long form.

    steps: Dataset over dim `row`, one row per new (chain, step), sorted by chain then step.
        coords  chain(row) int64, step(row) int64
        loss(row)   float64  mean sampling loss of that step: mean of `sampling_loss_micro`
                             over batch_sampling and token_pos (nats per token / per sample)
        llc(row)    float64  the chain's running LLC after that step:
                             n_beta * (mean of `loss` over steps num_burnin_steps..step
                             - init_loss averaged over chains), from `running_llc`, the
                             estimator of `compute_llc`; NaN during burn-in
        metrics_{name}(row) float32  one per SGLD diagnostic, when the run saves metrics
                                     (those chosen with `StoreReader(metrics=...)`)
    draws: Dataset over dim `row`, one row per new (chain, draw), sorted by chain then draw.
        coords  chain(row), draw(row), step(row) (the step the draw was taken after)
        loss_{obs}(row) float64  mean loss of observable `obs` (store name) over its rows and
                                 token_pos at that draw
    status: the marker snapshot the rows were bounded by.

    `ds.set_index(row=["chain", "step"]).unstack("row")` turns either table into a
    (chain, step) / (chain, draw) grid; `ds.to_dataframe()` gives columns for streaming plots.
    """

    steps: xr.Dataset
    draws: xr.Dataset
    status: StoreStatus

    @property
    def empty(self) -> bool:
        return self.steps.sizes.get("row", 0) == 0 and self.draws.sizes.get("row", 0) == 0


def empty_steps() -> xr.Dataset:
    empty = np.zeros(0, dtype=np.int64)
    return xr.Dataset(
        {"loss": ("row", np.zeros(0)), "llc": ("row", np.zeros(0))},
        coords={"chain": ("row", empty), "step": ("row", empty)},
    )


def empty_draws(observables: list[str] = ()) -> xr.Dataset:
    empty = np.zeros(0, dtype=np.int64)
    return xr.Dataset(
        {f"loss_{o}": ("row", np.zeros(0)) for o in observables},
        coords={"chain": ("row", empty), "draw": ("row", empty), "step": ("row", empty)},
    )
