"""Convergence diagnostics of a run's LLC: R-hat, ESS and MCSE of the loss trace, per chain LLC.

R-hat (rank-normalised split), bulk/tail ESS and MCSE come from `arviz-stats` (its array layer,
applied over the named `chain`/`draw` dims with `xr.apply_ufunc`); nothing here re-implements
them. The LLC is `compute_llc`'s, on the same steps.

The trace: the mean sampling loss of every step after the burn-in (what the LLC averages), as
(chain, draw) with draw = post-burn-in step index. The LLC is affine in that trace
(llc = n_beta (loss - init_loss)), so ESS and R-hat of the loss are those of the LLC, and the
MCSE of the LLC mean is n_beta times the MCSE of the loss mean.
"""

from __future__ import annotations

import warnings

import numpy as np
import xarray as xr
from arviz_stats.base import array_stats

from devinterp_ui.analysis.llc import compute_llc
from devinterp_ui.analysis.traces import RunTraces, run_traces

__all__ = [
    "MAX_DIAG_DRAWS",
    "MIN_DRAWS",
    "TAIL_PROB",
    "diagnose",
    "thin",
    "usable_chains",
    "without_failed",
]

MIN_DRAWS = 4
"""Fewest finite draws a chain needs to enter R-hat/ESS: split R-hat halves each chain, and
arviz-stats' autocorrelation needs at least two draws per half."""

TAIL_PROB = (0.05, 0.95)
"""Quantiles of the tail ESS: the minimum of the ESS of the 5% and 95% quantiles, as Vehtari
et al. (2021) define it (and ArviZ 0.x reported)."""

MAX_DIAG_DRAWS = 5_000
"""Most draws per chain that enter arviz-stats' R-hat/ESS/MCSE. Longer traces are thinned to
every k-th draw, k = ceil(draws / MAX_DIAG_DRAWS) (the first draw kept), so arviz-stats' part
of a recompute costs the same at 10^4 and 10^6 steps (its rank normalisation sorts the whole
trace: ~1 s at 4 x 10^5 draws on one core). Thinning adds no information, so for a positively
autocorrelated trace (as SGLD's is) the thinned ESS is at most the full trace's and the MCSE at
least (cautious); the two agree while the autocorrelation time exceeds k, and differ only where
the ESS already exceeds the kept draws (>= 5,000 per chain, far above every ESS threshold)."""


def diagnose(
    source: xr.DataTree | xr.Dataset | RunTraces,
    burnin: int | None = None,
    *,
    n_beta: float | None = None,
    init_loss: float | None = None,
    settings: dict | None = None,
    chain_status: tuple[str, ...] | list[str] | None = None,
    max_draws: int | None = MAX_DIAG_DRAWS,
) -> xr.Dataset:
    """Diagnostics of the LLC of a run, finished or still running.

    source: the `xr.DataTree` from `sample()` (or its store opened with `xr.open_datatree`),
        its root Dataset, `StoreReader.accumulated()` during a run, or the rows a `StoreReader` returned, concatenated over dim `row`
        (see `devinterp_ui.analysis.traces.run_traces`: pass `settings=reader.config` and
        `chain_status=new_rows.status.chain_status`; the initial loss comes from the rows'
        running `llc`, or `init_loss=`).
    burnin: steps to leave out from the start; None = the run's `num_burnin_steps`.
    max_draws: thin the trace to at most this many draws per chain before R-hat/ESS/MCSE
        (see MAX_DIAG_DRAWS; the LLC always uses every draw); None = never thin.

    Returns an xr.Dataset with
        llc (chain)             n_beta * (chain's mean loss over the used steps - init_loss),
                                from `compute_llc`; NaN for a chain without a used step and
                                for a failed chain (see `without_failed`)
        ess_bulk_chain (chain)  bulk ESS of that chain's loss trace alone
        ess_tail_chain (chain)  tail ESS of that chain's loss trace alone
        loss (chain, draw)      the used trace (mean loss per step, NaN where not written)
        llc_mean ()             mean of llc over chains (compute_llc's llc_mean, failed
                                chains left out; NaN when every chain failed)
        llc_std ()              std of llc over chains (ddof=0): the spread, not an error bar
        mcse ()                 ESS-based Monte Carlo standard error of llc_mean
        rhat ()                 rank-normalised split R-hat of the loss trace over chains
        ess_bulk (), ess_tail () over chains
        init_loss ()            the initial loss the LLC subtracts
    and attrs burnin (the burn-in asked for: `burnin`, else the run's own; a run still short
    of it has num_draws 0), num_steps (steps the run has so far), num_draws (used steps per
    chain, the longest chain),
    n_beta, thin (the stride k of the draws that entered R-hat/ESS/MCSE: 1 = all; those
    figures equal arviz-stats on `loss[:, ::thin]`), rhat_chains (the chains that entered R-hat/ESS/MCSE: not failed, >= MIN_DRAWS
    finite draws; all are cut to the shortest of them), chain_status, chain_errors, and the
    recorded lr / localization / sampling_method / num_burnin_steps. With save_metrics data,
    also localization_ratio (chain): mean localization-term norm / mean gradient-term norm, and
    distance_growth (chain): relative growth of the mean ||w - w0|| from the third to the last
    quarter of the used steps (0 at equilibrium). R-hat, ESS and MCSE are NaN with fewer
    than MIN_DRAWS common draws; R-hat is NaN with a single usable chain.

    Raises ValueError for a negative burnin, and what `run_traces` raises.
    """
    traces = (
        source
        if isinstance(source, RunTraces)
        else run_traces(
            source,
            n_beta=n_beta,
            init_loss=init_loss,
            settings=settings,
            chain_status=chain_status,
        )
    )
    if burnin is None:
        burnin = traces.num_burnin_steps
    burnin = int(burnin)
    if burnin < 0:
        raise ValueError(f"burnin must be >= 0 steps, got {burnin}")
    if max_draws is not None and (
        isinstance(max_draws, bool) or not isinstance(max_draws, int) or max_draws < MIN_DRAWS
    ):
        raise ValueError(f"max_draws must be None or an int >= {MIN_DRAWS}, got {max_draws!r}")
    n_steps = int(traces.micro.sizes["step"])
    first = min(burnin, n_steps)
    llc = compute_llc(traces.as_dataset(first), include_burnin=True)
    loss = (
        llc["loss_trace"]
        .astype(np.float64)
        .rename(step="draw")
        .drop_vars(["burnin", "draw"], errors="ignore")
    )
    loss = loss.assign_coords(draw=np.arange(loss.sizes["draw"]))

    chains = usable_chains(traces, loss)
    stride = _stride(int(loss.sizes["draw"]), max_draws)
    thinned = loss.isel(draw=slice(None, None, stride))
    pooled = _common_prefix(thinned, chains)
    beta = traces.n_beta
    per_chain = without_failed(llc["llc_per_chain"], traces.chain_status)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # every chain failed: NaN, said below
        llc_mean, llc_std = per_chain.mean(), per_chain.std()
    out = xr.Dataset(
        {
            "llc": per_chain,
            "ess_bulk_chain": _per_chain(thinned, "bulk"),
            "ess_tail_chain": _per_chain(thinned, "tail"),
            "loss": loss,
            "llc_mean": llc_mean,
            "llc_std": llc_std,
            "mcse": beta * _stat(pooled, "mcse"),
            "rhat": _stat(pooled, "rhat") if len(chains) > 1 else np.nan,
            "ess_bulk": _stat(pooled, "bulk"),
            "ess_tail": _stat(pooled, "tail"),
            "init_loss": llc["init_loss"],
        },
        attrs={
            "burnin": burnin,
            "num_steps": n_steps,
            "num_draws": int(loss.sizes["draw"]),
            "n_beta": beta,
            "thin": stride,
            "rhat_chains": [int(c) for c in chains],
            "chain_status": list(traces.chain_status),
            "chain_errors": [None if e is None else str(e) for e in traces.chain_errors],
            **{k: traces.settings[k] for k in _SETTINGS if traces.settings.get(k) is not None},
        },
    )
    ratio = _localization_ratio(traces, first)
    if ratio is not None:
        out["localization_ratio"] = ratio
    growth = _distance_growth(traces, first)
    if growth is not None:
        out["distance_growth"] = growth
    return out.assign_coords(chain=np.arange(traces.num_chains))


def without_failed(llc_per_chain: xr.DataArray, chain_status) -> xr.DataArray:
    """(chain,) the per-chain LLC with NaN for every chain whose status is "failed".

    A failed chain's rows before its failure are finite but come from a diverging trajectory
    (lr x100 on the demo LM: 10^15 and rising), so they give no LLC; the pooled LLC and its
    spread are over the other chains, NaN when every chain failed. The dashboard's result
    block (`summarize`) applies the same rule, so the two agree.
    """
    failed = np.array([s == "failed" for s in chain_status], dtype=bool)
    if failed.shape != (llc_per_chain.sizes["chain"],) or not failed.any():
        return llc_per_chain
    return llc_per_chain.where(xr.DataArray(~failed, dims=("chain",)))


def thin(values: np.ndarray, max_draws: int | None = MAX_DIAG_DRAWS) -> np.ndarray:
    """(chain, draw) -> every k-th draw, k = ceil(draws / max_draws) (see MAX_DIAG_DRAWS)."""
    return values[:, :: _stride(values.shape[1], max_draws)]


def _stride(n: int, max_draws: int | None) -> int:
    return 1 if max_draws is None or n <= max_draws else -(-n // max_draws)


def _distance_growth(traces: RunTraces, first: int) -> xr.DataArray | None:
    """(chain,) mean ||w - w0|| over the last quarter of the used steps over that of the third
    quarter, minus 1 (from save_metrics' `distance`); None without it or with < 8 steps."""
    dist = traces.metrics.get("distance")
    if dist is None:
        return None
    values = dist.isel(step=slice(first, None)).values
    out = np.full(values.shape[0], np.nan)
    for c, row in enumerate(values):
        row = row[np.isfinite(row)]
        q = row.size // 4
        if q >= 2:
            third, last = row[2 * q : 3 * q].mean(), row[3 * q : 4 * q].mean()
            out[c] = last / third - 1.0 if third > 0 else np.nan
    return xr.DataArray(out, dims=("chain",))


_SETTINGS = ("lr", "localization", "sampling_method", "num_burnin_steps")


def _localization_ratio(traces: RunTraces, first: int) -> xr.DataArray | None:
    """(chain,) mean norm of the localization term over mean norm of the gradient term, over
    the used steps (from save_metrics' `localization` and `scaled_grad`); None without them."""
    loc, grad = traces.metrics.get("localization"), traces.metrics.get("scaled_grad")
    if loc is None or grad is None:
        return None
    loc = loc.isel(step=slice(first, None)).mean("step", skipna=True)
    grad = grad.isel(step=slice(first, None)).mean("step", skipna=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (loc / grad).drop_vars([c for c in loc.coords], errors="ignore")


def usable_chains(traces: RunTraces, loss: xr.DataArray) -> list[int]:
    """Chains that enter the pooled statistics: not failed and with >= MIN_DRAWS finite draws."""
    finite = np.isfinite(loss.values).sum(axis=1)
    return [
        c
        for c in range(loss.sizes["chain"])
        if traces.chain_status[c] != "failed" and finite[c] >= MIN_DRAWS
    ]


def _common_prefix(loss: xr.DataArray, chains: list[int]) -> xr.DataArray:
    """The usable chains cut to the draws every one of them has (a sequential or stopped run
    has chains of different lengths; arviz-stats needs a rectangle)."""
    if not chains:
        return loss.isel(chain=[], draw=slice(0, 0))
    sub = loss.isel(chain=chains)
    finite = np.isfinite(sub.values)
    # The first draw any chain lacks ends the rectangle (rows land in order, so this is a prefix).
    n = int(np.argmin(finite.all(axis=0))) if not finite.all() else finite.shape[1]
    return sub.isel(draw=slice(0, n))


def _arviz(values: np.ndarray, which: str) -> float:
    """One arviz-stats figure of a (chain, draw) array."""
    if values.shape[0] == 0 or values.shape[1] < MIN_DRAWS:
        return np.nan
    with np.errstate(invalid="ignore", divide="ignore"):
        if which == "rhat":
            out = array_stats.rhat(values, chain_axis=0, draw_axis=1, method="rank")
        elif which == "mcse":
            out = array_stats.mcse(values, chain_axis=0, draw_axis=1, method="mean")
        elif which == "tail":
            out = array_stats.ess(values, chain_axis=0, draw_axis=1, method="tail", prob=TAIL_PROB)
        else:
            out = array_stats.ess(values, chain_axis=0, draw_axis=1, method="bulk")
    return float(out)


def _stat(trace: xr.DataArray, which: str) -> float:
    """An arviz-stats figure over the (chain, draw) dims of a labelled trace."""
    return float(
        xr.apply_ufunc(
            lambda a: _arviz(a, which),
            trace,
            input_core_dims=[["chain", "draw"]],
            output_dtypes=[float],
        )
    )


def _per_chain(loss: xr.DataArray, method: str) -> xr.DataArray:
    """(chain,) ESS of each chain's own finite prefix."""
    values = []
    for c in range(loss.sizes["chain"]):
        row = loss.values[c]
        n = int(np.argmin(np.isfinite(row))) if not np.isfinite(row).all() else row.size
        values.append(_arviz(row[None, :n], method))
    return xr.DataArray(np.asarray(values, dtype=np.float64), dims=("chain",))
