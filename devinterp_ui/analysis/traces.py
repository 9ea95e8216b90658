"""The loss traces a run has so far, from a sample tree or from the rows a `StoreReader` returned.

Both sources become one `RunTraces`: the per-step mean sampling loss (chain, step), the initial
loss, n_beta, the recorded burn-in, per-chain status, and the per-step SGLD metrics when the run
saved them. `diagnose` and `health` only read this, so a finished tree and a run still being
written are judged the same way.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import xarray as xr

from devinterp_ui.analysis.sample_tree import root_dataset, sampler_setting, tree_n_beta

__all__ = ["RunTraces", "run_traces"]

STEP_LOSS = "sampling_loss_micro"


@dataclass(frozen=True)
class RunTraces:
    """What a run has recorded, as labelled arrays.

    micro: (chain, step, batch_sampling, token_pos) per-step losses in the layout
        `compute_llc` reads (a reader's rows have batch_sampling = token_pos = 1: the step mean).
    init_loss: (chain, token_pos) the checkpoint's loss (token_pos = 1 for reader rows).
    n_beta: inverse temperature. num_burnin_steps: the run's recorded burn-in (steps).
    chain_status, chain_errors: per chain, from the progress marker ("completed" when absent).
    metrics: {name: (chain, step) float64} SGLD diagnostics (empty unless save_metrics=True).
    settings: the recorded sampler settings ({} when unknown).
    """

    micro: xr.DataArray
    init_loss: xr.DataArray
    n_beta: float
    num_burnin_steps: int
    chain_status: tuple[str, ...]
    chain_errors: tuple[str | None, ...]
    metrics: dict[str, xr.DataArray] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def num_chains(self) -> int:
        return int(self.micro.sizes["chain"])

    def as_dataset(self, first_step: int) -> xr.Dataset:
        """A tree-like Dataset of the steps from `first_step` on, for `compute_llc`."""
        micro = self.micro.isel(step=slice(first_step, None))
        return xr.Dataset(
            {STEP_LOSS: micro, "init_loss": self.init_loss},
            attrs={"metadata": {"config": {"sampler": {"n_beta": self.n_beta}}}},
        )


def run_traces(
    source: xr.DataTree | xr.Dataset,
    *,
    n_beta: float | None = None,
    init_loss: float | None = None,
    chain_status: tuple[str, ...] | list[str] | None = None,
    settings: dict[str, Any] | None = None,
) -> RunTraces:
    """`RunTraces` of a sample tree (or its root Dataset), of `StoreReader.accumulated()`, or of
    the rows a reader returned.

    `StoreReader.accumulated()`: a Dataset with `loss_trace` (chain, step), `init_loss` and the
    store's root attrs (settings, progress marker); it carries no SGLD metrics, so
    `localization_dominates` and the distance check of `not_converged` need the rows form (or
    the tree).

    Reader rows: the Dataset over dim `row` made by concatenating `NewRows.steps` of successive
    `StoreReader.read_new()` calls (coords `chain`, `step`; vars `loss`, `llc`, `metrics_*`).
    Its settings (n_beta, num_burnin_steps, lr, localization) come from `settings=` (pass
    `reader.config`) or attr `settings`; n_beta also from `n_beta=` or attr `n_beta`; the initial
    loss from `init_loss=`, attr `init_loss`, or, failing both, from the rows' own running `llc`
    (init = running mean loss - llc / n_beta, averaged over chains as `compute_llc` does).
    Chain status from `chain_status=` or attr `chain_status` (`NewRows.status.chain_status`).

    Raises ValueError for rows without n_beta or without a way to know the initial loss,
    KeyError for a tree that lacks the arrays `compute_llc` needs.
    """
    if isinstance(source, xr.Dataset) and "row" in source.dims:
        return _from_rows(source, n_beta, init_loss, chain_status, settings)
    return _from_tree(source, n_beta, chain_status)


def _from_tree(tree, n_beta, chain_status) -> RunTraces:
    ds = root_dataset(tree)
    accumulated = STEP_LOSS not in ds.variables and "loss_trace" in ds.variables
    if accumulated and ds["loss_trace"].sizes.get("step", 0) == 0:
        raise ValueError(
            "the reader has returned no step row yet; call diagnose once read_new() has "
            "returned rows."
        )
    names = ("loss_trace" if accumulated else STEP_LOSS, "init_loss")
    missing = [n for n in names if n not in ds.variables]
    if missing:
        raise KeyError(
            f"diagnostics need arrays {missing}; pass the tree sample() returned (or its store "
            "opened with xr.open_datatree), StoreReader.accumulated(), or the rows a "
            "StoreReader returned."
        )
    beta = float(n_beta) if n_beta is not None else tree_n_beta(ds)
    init = ds["init_loss"]
    if accumulated:
        # StoreReader.accumulated(): per-step means already, (chain, step); the init loss is
        # reduced to one position alike (the mean over chains and positions is unchanged).
        micro = ds["loss_trace"].expand_dims({"batch_sampling": 1, "token_pos": 1}, axis=(2, 3))
        init = init.mean("token_pos").expand_dims({"token_pos": 1}, axis=1)
    else:
        # Kept in the stored dtype: compute_llc reduces float32 exactly as devinterp does.
        micro = ds[STEP_LOSS].transpose("chain", "step", ...)
    progress = _progress(ds.attrs.get("progress"))
    num_chains = micro.sizes["chain"]
    status, errors = ("completed",) * num_chains, (None,) * num_chains
    if progress is not None:
        ch = progress.get("chains", {})
        written = ch.get("steps_written")
        if written is not None:
            # Rows past the marker's count are not part of the run (a killed writer's leftovers).
            keep = np.arange(micro.sizes["step"])[None, :] < np.asarray(written)[:, None]
            micro = micro.where(xr.DataArray(keep, dims=("chain", "step")))
        status = tuple(ch.get("status") or status)
        errors = tuple(ch.get("error") or errors)
    if chain_status is not None:
        status = tuple(chain_status)
    metrics = {
        str(v)[len("metrics_") :]: ds[v].astype(np.float64)
        for v in ds.data_vars
        if str(v).startswith("metrics_")
    }
    meta_sampler = _settings(ds)
    return RunTraces(
        micro=micro.load(),
        init_loss=init.load(),
        n_beta=beta,
        num_burnin_steps=int(sampler_setting(ds, "num_burnin_steps", 0)),
        chain_status=status,
        chain_errors=errors,
        metrics={k: v.load() for k, v in metrics.items()},
        settings=meta_sampler,
    )


def _from_rows(rows: xr.Dataset, n_beta, init_loss, chain_status, settings) -> RunTraces:
    for name in ("chain", "step", "loss"):
        if name not in rows.variables:
            raise KeyError(
                f"reader rows need {name!r}: pass the Dataset of NewRows.steps rows "
                "(xr.concat([...], dim='row')) that StoreReader.read_new() returned."
            )
    settings = dict(settings if settings is not None else rows.attrs.get("settings") or {})
    beta = n_beta if n_beta is not None else rows.attrs.get("n_beta", settings.get("n_beta"))
    if beta is None:
        raise ValueError(
            "reader rows carry no n_beta: pass diagnose(rows, settings=reader.config) (or "
            "n_beta=...), or set rows.attrs['n_beta']."
        )
    beta = float(beta)
    grid = _grid(rows)
    num_chains = grid.sizes["chain"]
    loss = grid["loss"].astype(np.float64)
    init = init_loss if init_loss is not None else rows.attrs.get("init_loss")
    if init is None:
        init = _init_from_running_llc(grid, beta)
    micro = loss.expand_dims({"batch_sampling": 1, "token_pos": 1}, axis=(2, 3))
    init_da = xr.DataArray(np.full((num_chains, 1), float(init)), dims=("chain", "token_pos"))
    status = chain_status if chain_status is not None else rows.attrs.get("chain_status")
    status = tuple(status) if status is not None else ("running",) * num_chains
    metrics = {
        str(v)[len("metrics_") :]: grid[v].astype(np.float64)
        for v in grid.data_vars
        if str(v).startswith("metrics_")
    }
    return RunTraces(
        micro=micro,
        init_loss=init_da,
        n_beta=beta,
        num_burnin_steps=int(
            rows.attrs.get("num_burnin_steps", settings.get("num_burnin_steps") or 0)
        ),
        chain_status=status,
        chain_errors=tuple(rows.attrs.get("chain_errors", (None,) * num_chains)),
        metrics=metrics,
        settings=settings,
    )


def _grid(rows: xr.Dataset) -> xr.Dataset:
    """The rows' data vars laid out over (chain, step), NaN where no row: a scatter into numpy
    arrays (xarray's set_index/unstack took 0.4 s at 4 x 10^5 rows, this a few ms). The chain
    and step coords are the sorted values present in the rows, as unstack gives them."""
    chain = np.asarray(rows["chain"].values).astype(np.int64)
    step = np.asarray(rows["step"].values).astype(np.int64)
    chains, ci = _present(chain)
    steps, si = _present(step)
    data = {}
    for name in rows.data_vars:
        if rows[name].dims != ("row",):
            continue
        values = np.asarray(rows[name].values)
        kind = values.dtype.kind
        dtype = values.dtype if kind == "f" else np.float64 if kind in "iub" else object
        out = np.full((chains.size, steps.size), np.nan, dtype=dtype)
        out[ci, si] = values
        data[name] = (("chain", "step"), out)
    return xr.Dataset(data, coords={"chain": chains, "step": steps}, attrs=rows.attrs)


def _present(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(sorted distinct values, index of each entry in them) of small non-negative-ish ints,
    by counting instead of sorting (np.unique sorts: O(n log n) per recompute)."""
    if ids.size == 0:
        return ids, ids
    low = int(ids.min())
    seen = np.bincount(ids - low) > 0
    rank = np.cumsum(seen) - 1
    return np.flatnonzero(seen) + low, rank[ids - low]


def _init_from_running_llc(grid: xr.Dataset, n_beta: float) -> float:
    """The initial loss implied by the reader's running LLC: llc = n_beta (running mean - init)."""
    if "llc" not in grid.data_vars:
        raise ValueError(
            "reader rows carry no initial loss: pass init_loss= (the mean of the store's "
            "init_loss array) or keep the rows' 'llc' column."
        )
    loss = grid["loss"].values
    llc = grid["llc"].values
    inits = []
    for c in range(loss.shape[0]):
        rows = np.flatnonzero(np.isfinite(llc[c]) & np.isfinite(loss[c]))
        if rows.size:
            last = rows[-1]
            # The running mean starts at the first post-burn-in row: the first finite llc.
            mean = loss[c, rows[0] : last + 1].mean()
            inits.append(mean - llc[c, last] / n_beta)
    if not inits:
        raise ValueError(
            "reader rows have no post-burn-in row yet, so the initial loss is unknown; pass "
            "init_loss= or wait for rows past num_burnin_steps."
        )
    return float(np.mean(inits))


def _progress(raw: Any) -> dict[str, Any] | None:
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError:
            return None
    return raw if isinstance(raw, dict) else None


def _settings(ds: xr.Dataset) -> dict[str, Any]:
    meta = ds.attrs.get("metadata", {})
    if isinstance(meta, str):
        meta = json.loads(meta)
    return dict(((meta or {}).get("config") or {}).get("sampler") or {})
