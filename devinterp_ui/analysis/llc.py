"""Local learning coefficient: lambda_hat = n_beta (E[L_n(w)] - L_n(w0)), the one estimator.

The expectation runs over SGLD steps (every step's mini-batch loss, `sampling_loss_micro`), the
mini-batch rows and the loss positions; L_n(w0) is the mean `init_loss` over chains (as
devinterp 2.0.1 does, also when chains drew different batches). `llc_from_loss_trace` is the
estimator itself; `compute_llc` feeds it a finished tree and `StoreReader` (live) its
accumulated rows, so the running LLC, the final LLC and the per-chain table are one computation.
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
from devinterp_ui.store.written import written_mask

__all__ = [
    "compute_llc",
    "default_nbeta",
    "initial_loss",
    "llc",
    "llc_from_loss_trace",
    "running_llc",
]


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
    """LLC estimate and traces from a sample tree, or from the rows a `StoreReader` has read.

    Reads `sampling_loss_micro` (chain, step, batch_sampling, token_pos), `init_loss`
    (chain, token_pos), `n_beta` and `metadata.config.sampler.num_burnin_steps` (0 if absent).
    Instead of `sampling_loss_micro`, a `loss_trace` (chain, step) of per-step mean losses is
    accepted: `StoreReader.accumulated()` gives one, so a live run's figures come from this
    same function.

    Steps used: those with step index >= num_burnin_steps, or every step with
    `include_burnin=True`, which reproduces devinterp 2.x's `compute_llc` (it averages every
    step). Rows beyond the store's progress marker (root attr `progress`: rows a killed or failed
    writer put on disk without counting them) are not part of the run and are ignored. Rows
    never written (a stopped, failed or still-running chain leaves NaN rows) and rows whose loss
    is not finite are skipped too: each chain averages over its counted, finite rows only, so a
    chain that stopped early contributes a shorter average and a chain with no usable row gets
    NaN (and is left out of `llc_mean`/`llc_std`).

    Returns `llc_from_loss_trace`'s Dataset. Raises KeyError when the tree lacks
    `sampling_loss_micro` (or `loss_trace`), `init_loss` or n_beta.
    """
    ds = root_dataset(tree)
    if "loss_trace" in ds.variables and "sampling_loss_micro" not in ds.variables:
        require_arrays(ds, ["loss_trace", "init_loss"], "compute_llc")
        loss_trace = ds["loss_trace"]
    else:
        require_arrays(ds, ["sampling_loss_micro", "init_loss"], "compute_llc")
        # Same reduction as devinterp 2.x (xarray nan-skipping means in the stored float32),
        # so that include_burnin=True gives their number exactly.
        loss_trace = ds["sampling_loss_micro"].mean(dim=["batch_sampling", "token_pos"])
        counted = written_mask(
            ds.attrs, "step", loss_trace.sizes["chain"], loss_trace.sizes["step"]
        )
        if counted is not None:
            loss_trace = loss_trace.where(counted)
    return llc_from_loss_trace(
        loss_trace,
        ds["init_loss"],
        n_beta=tree_n_beta(ds),
        num_burnin_steps=int(sampler_setting(ds, "num_burnin_steps", 0)),
        include_burnin=include_burnin,
    )


def llc_from_loss_trace(
    loss_trace: xr.DataArray,
    init_loss: xr.DataArray | np.ndarray,
    *,
    n_beta: float,
    num_burnin_steps: int,
    include_burnin: bool = False,
) -> xr.Dataset:
    """The LLC estimator: running, per chain and pooled, from per-step mean losses.

    loss_trace: (chain, step) mean sampling loss of each step (nats per token or per sample);
        step index i is step i of the run; NaN rows (never written, beyond the marker, not
        finite) are skipped.
    init_loss: the loss at the checkpoint, (chain, token_pos) or (chain,): L_n(w0) is its mean
        over every finite entry, the same for every chain (devinterp 2.0.1's convention).

    Returns an xr.Dataset with
        llc_mean ()                      mean of llc_per_chain over chains (NaN chains left out)
        llc_std ()                       std over chains (ddof=0, as devinterp 2.x)
        llc_per_chain (chain,)           n_beta * (chain's mean loss over used steps - init_loss),
                                         reduced in the trace's dtype (float32 for a tree: bit
                                         for bit devinterp 2.0.1); llc_running's last value
        llc_scalar ()                    n_beta * (mean over all used rows - init_loss)
        llc_running (chain, step)        `running_llc`: the LLC over the used steps so far (NaN
                                         before); StoreReader's live `llc` is the same function
        loss_trace (chain, step)         the input, non-finite rows as NaN
        init_loss ()                     L_n(w0)
        n_steps_used (chain,)            rows that entered each chain's average
    with `step` carrying a bool coordinate `burnin`, and attrs n_beta, num_burnin_steps,
    include_burnin.
    """
    loss_trace = loss_trace.where(np.isfinite(loss_trace))
    init_loss_mean = initial_loss(init_loss)

    n_steps = loss_trace.sizes["step"]
    first = 0 if include_burnin else min(num_burnin_steps, n_steps)
    is_burnin = np.arange(n_steps) < num_burnin_steps
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
            "llc_running": xr.DataArray(
                running_llc(
                    loss_trace.values,
                    init_loss=init_loss_mean,
                    n_beta=n_beta,
                    num_burnin_steps=num_burnin_steps,
                    include_burnin=include_burnin,
                )[0],
                dims=loss_trace.dims,
                coords=loss_trace.coords,
            ),
            "loss_trace": loss_trace,
            "init_loss": init_loss_mean,
            "n_steps_used": n_used,
        },
        attrs={
            "n_beta": n_beta,
            "num_burnin_steps": num_burnin_steps,
            "include_burnin": int(include_burnin),
        },
    )
    return out.assign_coords(burnin=("step", is_burnin))


def initial_loss(init_loss: xr.DataArray | np.ndarray) -> float:
    """L_n(w0) from the stored `init_loss` (chain, token_pos): the mean over every finite
    entry, in the stored dtype as devinterp 2.x averages its float32 array. NaN if none."""
    init = np.asarray(init_loss)
    finite = np.isfinite(init)
    return float(np.mean(init[finite])) if finite.any() else np.nan


def running_llc(
    losses: np.ndarray,
    *,
    init_loss: float,
    n_beta: float,
    num_burnin_steps: int,
    include_burnin: bool = False,
    start: int = 0,
    carry: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray]]:
    """The running LLC: per chain and step, n_beta * (mean of the finite used losses so far
    - init_loss), NaN until the first used step.

    losses: (chains, k) per-step mean losses of steps start..start+k-1 of the run.
    init_loss: L_n(w0) (`initial_loss` of the stored init_loss).
    carry: per chain (sum, count) of the used losses before `start`, as returned by the
        previous call: a reader that gets rows in pieces continues where it stopped, at a cost
        that follows the new rows. None: nothing before `start`.
    Returns ((chains, k) float64 running LLC, the carry after the last step).
    """
    values = np.asarray(losses, dtype=np.float64)
    chains, k = values.shape
    sums0, counts0 = carry if carry is not None else (np.zeros(chains), np.zeros(chains))
    first = 0 if include_burnin else max(0, num_burnin_steps - start)
    used = values[:, first:]
    finite = np.isfinite(used)
    sums = sums0[:, None] + np.cumsum(np.where(finite, used, 0.0), axis=1)
    counts = counts0[:, None] + np.cumsum(finite, axis=1)
    running = np.full((chains, k), np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        running[:, first:] = np.where(counts > 0, n_beta * (sums / counts - init_loss), np.nan)
    if used.shape[1] == 0:
        return running, (np.asarray(sums0, dtype=np.float64), np.asarray(counts0, dtype=np.float64))
    return running, (sums[:, -1], counts[:, -1].astype(np.float64))


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
