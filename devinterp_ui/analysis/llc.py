"""Local learning coefficient from a sample tree: lambda_hat = n_beta (E[L_n(w)] - L_n(w0)).

The expectation runs over SGLD steps (every step's mini-batch loss, `sampling_loss_micro`), the
mini-batch rows and the loss positions; L_n(w0) is the mean `init_loss` over chains.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import xarray as xr

from devinterp_ui.analysis.sample_tree import (
    require_arrays,
    root_dataset,
    sampler_setting,
    tree_n_beta,
)

__all__ = ["compute_llc", "default_nbeta", "llc"]


def default_nbeta(n: int | float | Any, gradient_accumulation_steps: int = 1) -> float:
    """The customary inverse temperature n * beta with beta = 1 / ln n, i.e. n / ln n.

    `n` is the number of samples the loss is an average over in the posterior you mean to probe:
    a number, or (as devinterp 2.x takes it) a `torch.utils.data.DataLoader`, whose
    `batch_size` x `gradient_accumulation_steps` is then n. For SGLD that is usually the size
    of the training set the checkpoint was fit on (the posterior of the full empirical loss);
    devinterp's historical default used the SGLD batch size (batch_size x
    gradient_accumulation_steps), which gives a hotter posterior that probes a wider
    neighbourhood. Needs n > 1; raises ValueError otherwise, TypeError for other objects.
    """
    if (
        isinstance(gradient_accumulation_steps, bool)
        or not isinstance(gradient_accumulation_steps, int)
        or gradient_accumulation_steps < 1
    ):
        raise ValueError(
            f"gradient_accumulation_steps must be a positive int, got {gradient_accumulation_steps!r}"
        )
    if isinstance(n, torch.utils.data.DataLoader):
        if n.batch_size is None:
            raise ValueError(
                "default_nbeta: the DataLoader has no batch_size (a batch_sampler); pass n."
            )
        n = n.batch_size
    if isinstance(n, bool) or not isinstance(n, (int, float)):
        raise TypeError(f"default_nbeta takes a number or a DataLoader, got {type(n).__name__}")
    n = float(n) * gradient_accumulation_steps
    if not n > 1:
        raise ValueError(f"default_nbeta needs n > 1 (n / ln n), got {n}")
    return n / math.log(n)


def compute_llc(tree: xr.DataTree | xr.Dataset, include_burnin: bool = False) -> xr.Dataset:
    """LLC estimate and traces from a sample tree.

    Reads `sampling_loss_micro` (chain, step, batch_sampling, token_pos), `init_loss`
    (chain, token_pos), `n_beta` and `metadata.config.sampler.num_burnin_steps` (0 if absent).

    Steps used: those with step index >= num_burnin_steps, or every step with
    `include_burnin=True`, which reproduces devinterp 2.x's `compute_llc` (it averages every
    step). Rows never written (a stopped, failed or still-running chain leaves NaN rows) and rows
    whose loss is not finite are skipped: each chain averages over its written, finite rows only,
    so a chain that stopped early contributes a shorter average and a chain with no usable row
    gets NaN (and is left out of `llc_mean`/`llc_std`).

    Returns an xr.Dataset with
        llc_mean ()                      mean of llc_per_chain over chains
        llc_std ()                       std over chains (ddof=0, as devinterp 2.x)
        llc_per_chain (chain,)           n_beta * (chain's mean loss - init_loss)
        llc_scalar ()                    n_beta * (mean over all used rows - init_loss)
        llc_running (chain, step)        running-mean LLC over the used steps so far (NaN before)
        loss_trace (chain, step)         mean loss per step (over batch and positions), all steps
        init_loss ()                     mean init_loss over chains and positions
        n_steps_used (chain,)            rows that entered each chain's average
    with `step` carrying a bool coordinate `burnin`, and attrs n_beta, num_burnin_steps,
    include_burnin.

    Raises KeyError when the tree lacks `sampling_loss_micro`, `init_loss` or n_beta.
    """
    ds = root_dataset(tree)
    require_arrays(ds, ["sampling_loss_micro", "init_loss"], "compute_llc")
    n_beta = tree_n_beta(ds)
    burnin = int(sampler_setting(ds, "num_burnin_steps", 0))

    micro = ds["sampling_loss_micro"]
    # Same reduction as devinterp 2.x (xarray nan-skipping means in the stored float32), so that
    # include_burnin=True gives their number exactly.
    loss_trace = micro.mean(dim=["batch_sampling", "token_pos"])
    loss_trace = loss_trace.where(np.isfinite(loss_trace))
    init = ds["init_loss"].values
    init_loss_mean = float(np.mean(init[np.isfinite(init)])) if np.isfinite(init).any() else np.nan

    n_steps = loss_trace.sizes["step"]
    first = 0 if include_burnin else min(burnin, n_steps)
    is_burnin = np.arange(n_steps) < burnin
    used = loss_trace.isel(step=slice(first, None))

    llc_per_chain = n_beta * (used.mean(dim="step") - init_loss_mean)
    n_used = np.isfinite(used).sum(dim="step")
    all_used = used.values[np.isfinite(used.values)]
    llc_scalar = n_beta * (float(all_used.mean()) - init_loss_mean) if all_used.size else np.nan

    out = xr.Dataset(
        {
            "llc_mean": llc_per_chain.mean(),
            "llc_std": llc_per_chain.std(),
            "llc_per_chain": llc_per_chain,
            "llc_scalar": llc_scalar,
            "llc_running": _running_llc(loss_trace, first, n_beta, init_loss_mean),
            "loss_trace": loss_trace,
            "init_loss": init_loss_mean,
            "n_steps_used": n_used,
        },
        attrs={"n_beta": n_beta, "num_burnin_steps": burnin, "include_burnin": int(include_burnin)},
    )
    return out.assign_coords(burnin=("step", is_burnin))


def _running_llc(
    loss_trace: xr.DataArray, first: int, n_beta: float, init_loss: float
) -> xr.DataArray:
    """(chain, step): n_beta * (mean of the finite rows in steps first..step - init_loss)."""
    values = loss_trace.values.astype(np.float64)
    running = np.full_like(values, np.nan)
    tail = values[:, first:]
    finite = np.isfinite(tail)
    sums = np.cumsum(np.where(finite, tail, 0.0), axis=1)
    counts = np.cumsum(finite, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        running[:, first:] = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
    return xr.DataArray(
        n_beta * (running - init_loss), dims=loss_trace.dims, coords=loss_trace.coords
    )


def llc(
    model: Any,
    dataset: Any,
    observables: dict[str, Any] | None = None,
    *,
    lr: float,
    n_beta: float,
    include_burnin: bool = False,
    **sample_kwargs: Any,
) -> xr.Dataset:
    """Sample around `model`'s weights and return `compute_llc` of the run.

    Every keyword of `sample()` (num_chains, num_draws, localization, loss_fn, output_path, ...)
    passes through unchanged; `observables` may be omitted for a plain LLC run.
    """
    from devinterp_ui.sample import sample  # deferred: the package root imports this module

    tree = sample(model, dataset, observables or {}, lr=lr, n_beta=n_beta, **sample_kwargs)
    return compute_llc(tree, include_burnin=include_burnin)
