"""What the dashboard reads off each poll for its status line. No widgets."""

from __future__ import annotations

import math

from devinterp_ui.live.marker import StoreStatus


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
