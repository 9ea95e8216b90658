"""Measurements behind the health flags, each a small function of the (chain, draw) loss trace.

Kept apart from `health.py` (which only judges) so each can be tested on hand-made traces.
"""

from __future__ import annotations

import numpy as np
import xarray as xr
from arviz_stats.base import array_stats

from devinterp_ui.analysis.diagnostics import MIN_DRAWS

__all__ = ["MAD_TO_SD", "chain_quarters", "minibatch_noise", "robust_jumps"]

MAD_TO_SD = 1.4826
"""The median absolute deviation times 1.4826 estimates a Gaussian's standard deviation."""

MAX_SCALE_SAMPLES = 20_000
"""Most step-to-step differences a robust scale (median, MAD) is estimated from: longer runs
use every k-th difference, spread over the whole run (a median of 20,000 draws has a relative
standard error under 1%), so the medians cost the same at any run length. The jumps are
still judged one by one against that scale: no spike is skipped."""


def _scale_sample(d: np.ndarray) -> np.ndarray:
    """Every k-th entry of `d`, k = ceil(len / MAX_SCALE_SAMPLES)."""
    return d[:: -(-d.size // MAX_SCALE_SAMPLES)] if d.size > MAX_SCALE_SAMPLES else d


def minibatch_noise(loss: np.ndarray) -> float:
    """Standard deviation of one step's minibatch loss around the chain's level, from the trace.

    loss: (chain, draw) mean loss per step. Each step sees a fresh minibatch, so the step-to-step
    difference of the trace carries twice the minibatch variance (plus the chain's own, slower
    motion); the MAD of the differences over sqrt(2) estimates the minibatch sd robustly
    (a few spikes or a drifting level do not inflate it); from at most MAX_SCALE_SAMPLES
    differences. NaN with fewer than MIN_DRAWS draws.
    """
    # A chain with one finite draw (a run that has just started) has no difference at all.
    diffs = [d for row in loss if (d := np.diff(row[np.isfinite(row)])).size]
    diffs = np.concatenate(diffs) if diffs else np.zeros(0)
    if diffs.size < MIN_DRAWS:
        return float("nan")
    diffs = _scale_sample(diffs)
    mad = np.median(np.abs(diffs - np.median(diffs)))
    return float(MAD_TO_SD * mad / np.sqrt(2.0))


def robust_jumps(loss: np.ndarray) -> np.ndarray:
    """(chain,) the largest |step-to-step jump| of each chain in robust deviations:
    |d - median(d)| / (1.4826 MAD(d)) over that chain's differences d (median and MAD from at
    most MAX_SCALE_SAMPLES of them, the max over all). NaN for a chain with
    fewer than MIN_DRAWS draws or constant differences."""
    out = np.full(loss.shape[0], np.nan)
    for c, row in enumerate(loss):
        d = np.diff(row[np.isfinite(row)])
        if d.size < MIN_DRAWS:
            continue
        sample = _scale_sample(d)
        centre = np.median(sample)
        scale = MAD_TO_SD * np.median(np.abs(sample - centre))
        if scale > 0:
            out[c] = float(np.max(np.abs(d - centre)) / scale)
    return out


def chain_quarters(diag: xr.Dataset) -> dict[str, float] | None:
    """Trend of the trace, in LLC units, from the pooled chains of a `diagnose` Dataset.

    late_drift: n_beta (mean of the last quarter - mean of the third quarter of the draws);
    late_se: its standard error, sqrt(MCSE_3^2 + MCSE_4^2) (arviz-stats' ESS-based MCSE of
    each quarter's mean, times n_beta, on every `diag.attrs["thin"]`-th draw of the quarter as
    `diagnose` thins: bounded cost on long runs); early_drift: the same for the second half against the
    first, early_se: sqrt(2) x the second half's MCSE (the error an equilibrated first half
    would have). None with fewer than 4 * MIN_DRAWS common draws.
    """
    chains = list(diag.attrs.get("rhat_chains", []))
    if not chains:
        return None
    values = diag["loss"].values[chains]
    finite = np.isfinite(values).all(axis=0)
    n = int(np.argmin(finite)) if not finite.all() else finite.size
    if n < 4 * MIN_DRAWS:
        return None
    values = values[:, :n]
    beta = float(diag.attrs["n_beta"])
    q = n // 4
    parts = {
        "q3": values[:, 2 * q : 3 * q],
        "q4": values[:, 3 * q : 4 * q],
        "h1": values[:, : n // 2],
        "h2": values[:, n // 2 :],
    }
    means = {k: float(v.mean()) for k, v in parts.items()}
    stride = int(diag.attrs.get("thin", 1))
    with np.errstate(invalid="ignore", divide="ignore"):
        se = {
            k: float(array_stats.mcse(v[:, ::stride], chain_axis=0, draw_axis=1, method="mean"))
            for k, v in parts.items()
        }
    return {
        "late_drift": beta * (means["q4"] - means["q3"]),
        "late_se": beta * float(np.hypot(se["q3"], se["q4"])),
        "early_drift": beta * (means["h2"] - means["h1"]),
        # Judged against the second half's error (twice its variance): an early ramp inflates
        # the first half's own MCSE as if it were autocorrelation, hiding itself.
        "early_se": beta * float(np.sqrt(2.0) * se["h2"]),
    }
