"""What the dashboard reads off each poll: the status line and the initial loss. No widgets."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import xarray as xr

from devinterp_ui.live.marker import StoreStatus


def init_loss_from_rows(steps: xr.Dataset, config: dict[str, Any]) -> float | None:
    """The initial loss the reader's running LLC subtracts, recovered from its own rows.

    `NewRows.steps` documents llc = n_beta * (running mean of loss after burn-in - init loss);
    at the first step after burn-in the running mean is that step's loss, so
    init = loss - llc / n_beta there. This reads nothing beyond what `StoreReader` returned.
    Mean over the chains seen; None until a first post-burn-in row arrives.
    """
    if not steps.sizes.get("row", 0):
        return None
    burnin = int(config.get("num_burnin_steps", 0) or 0)
    n_beta = float(config.get("n_beta") or math.nan)
    first = steps["step"].values == burnin
    llc = steps["llc"].values[first]
    loss = steps["loss"].values[first]
    ok = np.isfinite(llc) & np.isfinite(loss)
    if not ok.any() or not math.isfinite(n_beta) or n_beta <= 0:
        return None
    return float(np.mean(loss[ok] - llc[ok] / n_beta))


def status_line(status: StoreStatus, job=None) -> tuple[str, int, int, str, list[str]]:
    """(state, chain steps done, total chain steps, extra text, chain errors) for the page.

    With a `SamplingJob`, state and counts come from the job (steps are counted as they finish,
    ahead of the store) and extra gives steps/s and ETA; else from the store's marker.
    """
    total = status.total_steps * max(status.num_chains, 1)
    done = sum(status.steps_written)
    state, extra = status.status, ""
    if job is not None:
        progress = job.progress
        state, done = progress.state, sum(progress.steps_done)
        parts = []
        if progress.steps_per_second:
            parts.append(f"{progress.steps_per_second:.1f} steps/s")
        if progress.eta_seconds is not None and progress.state == "running":
            parts.append(f"ETA {duration(progress.eta_seconds)}")
        extra = " · ".join(parts)
    errors = [f"chain {i}: {err}" for i, err in enumerate(status.chain_errors) if err]
    return state, done, total, extra, errors


def duration(seconds: float) -> str:
    """'42s', '3m07s'; '?' for a non-finite value."""
    if not math.isfinite(seconds):
        return "?"
    seconds = int(round(seconds))
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"
