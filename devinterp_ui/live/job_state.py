"""What a `SamplingJob` reports: its states, its progress snapshot, and why it failed."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

# The names come from devinterp_ui.store.progress, the one home of status names.
from devinterp_ui.store.progress import (  # noqa: F401 - re-exported for job.py and callers
    COMPLETED,
    FAILED,
    IDLE,
    JOB_STATES,
    RUNNING,
    STOPPED,
    STOPPING,
)
from devinterp_ui.store.progress import JOB_FINISHED_STATES as FINISHED_STATES  # noqa: F401


@dataclass(frozen=True)
class JobError:
    """Why a job failed. message: "ExceptionType: text"; traceback: the formatted traceback
    (None when every chain hit a non-finite loss, which raises nothing); exception: the
    exception object (None likewise)."""

    message: str
    traceback: str | None
    exception: BaseException | None = None

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True)
class JobProgress:
    """A snapshot of a job's progress, counted as chains finish steps (rows reach the store up
    to `flush_interval` seconds later).

    steps_done, draws_done: per chain. total_steps, total_draws: per chain, at the end.
    chain_status: per chain, "running" / "completed" / "failed" / "stopped".
    chain_errors: per chain, the error of a failed chain (filled in when the run ends).
    steps_per_second: chain steps per second over all chains, over the last ~10 s; None before
        two steps. eta_seconds: remaining steps of unfinished chains / steps_per_second.
    elapsed_seconds: since `start()`.
    """

    state: str
    steps_done: tuple[int, ...]
    draws_done: tuple[int, ...]
    total_steps: int
    total_draws: int
    chain_status: tuple[str, ...]
    chain_errors: tuple[str | None, ...]
    steps_per_second: float | None
    eta_seconds: float | None
    elapsed_seconds: float

    @property
    def fraction(self) -> float:
        """Share of all chain steps done, in [0, 1]."""
        total = self.total_steps * len(self.steps_done)
        return sum(self.steps_done) / total if total else 0.0


def recent_rate(times: deque[float]) -> float | None:
    """Events per second over the timestamps in `times` (None with fewer than two)."""
    if len(times) < 2 or times[-1] <= times[0]:
        return None
    return (len(times) - 1) / (times[-1] - times[0])
