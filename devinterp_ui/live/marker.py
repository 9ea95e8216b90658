"""The progress marker as a reader sees it: the recorded status judged against the writer's
signs of life (its process, its heartbeat).

Status names, `read_root_attrs` and `MarkerUnreadable` live in `devinterp_ui.store.progress`
(re-exported here for old imports); the heartbeat in `devinterp_ui.store.liveness`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from devinterp_ui.store.liveness import HEARTBEAT_TIMEOUT, writer_alive
from devinterp_ui.store.progress import (
    COMPLETED,
    FINISHED_STATUSES,
    KILLED,
    READER_STATUSES,
    RUNNING,
    STALE,
    STARTING,
    MarkerUnreadable,
    read_root_attrs,
)

__all__ = [
    "FINISHED_STATUSES",
    "READER_STATUSES",
    "MarkerUnreadable",
    "StoreStatus",
    "read_root_attrs",
    "status_from_attrs",
    "writer_alive",
]


@dataclass(frozen=True)
class StoreStatus:
    """One snapshot of a store's progress, as read by `StoreReader.status()`.

    status: one of READER_STATUSES; what a reader should believe about the run now.
    recorded_status: the run status the marker itself holds (None without a marker).
    steps_written, draws_written: per chain, rows 0..n-1 along `step`/`draw` are whole.
    chain_status, chain_errors: per chain, from the marker ("failed" chains carry their error).
    error: the run's error text (a traceback when an exception ended it), else None.
    total_steps, total_draws: per chain, when the run finishes.
    completed: the root attribute `completed` is 1 (every row landed).
    updated_at, started_at: unix seconds of the writer's last marker write and run start.
    pid, host: the writing process; writer_alive: True/False when it can be told, else None.
    heartbeat_age: seconds since the writer's thread last touched the heartbeat (None for
        stores without one).
    note: one line saying why a reader-inferred status (killed, stale) was chosen, else None.
    """

    status: str
    recorded_status: str | None
    steps_written: tuple[int, ...]
    draws_written: tuple[int, ...]
    chain_status: tuple[str, ...]
    chain_errors: tuple[str | None, ...]
    error: str | None
    total_steps: int
    total_draws: int
    completed: bool
    updated_at: float | None = None
    started_at: float | None = None
    pid: int | None = None
    host: str | None = None
    writer_alive: bool | None = None
    heartbeat_age: float | None = None
    note: str | None = None

    @property
    def num_chains(self) -> int:
        return len(self.steps_written)

    @property
    def finished(self) -> bool:
        """No more rows will appear (stopped, failed, completed or killed)."""
        return self.status in FINISHED_STATUSES


def status_from_attrs(
    attrs: dict[str, Any],
    shape_rows: tuple[int, int, int] | None,
    stale_after: float,
    now: float | None = None,
    heartbeat_age: float | None = None,
    heartbeat_timeout: float = HEARTBEAT_TIMEOUT,
) -> StoreStatus:
    """Judge the run from its root attributes.

    shape_rows: (num_chains, total_steps, total_draws) from the array shapes, used for stores
    without a marker (a completed devinterp 2.x store counts as wholly written).
    A marker that says running becomes `killed` when its process on this host is gone, and
    `stale` when the heartbeat is older than `heartbeat_timeout` (the writer thread died or
    hung, or the process is paused or on another host and gone) or, for stores without a
    heartbeat, when the marker itself has not changed for `stale_after` seconds.
    """
    completed = attrs.get("completed") == 1
    marker = attrs.get("progress")
    if not isinstance(marker, dict):
        chains, steps, draws = shape_rows or (0, 0, 0)
        done = completed and shape_rows is not None
        return StoreStatus(
            status=COMPLETED if done else STARTING,
            recorded_status=None,
            steps_written=(steps if done else 0,) * chains,
            draws_written=(draws if done else 0,) * chains,
            chain_status=(COMPLETED if done else STARTING,) * chains,
            chain_errors=(None,) * chains,
            error=None,
            total_steps=steps,
            total_draws=draws,
            completed=completed,
        )
    ch = marker["chains"]
    pid, host = marker.get("pid"), marker.get("host")
    updated_at = marker.get("updated_at")
    recorded = marker["status"]
    alive = writer_alive(pid, host)
    status, note = recorded, None
    if recorded == RUNNING:
        age = (now if now is not None else time.time()) - float(updated_at or 0.0)
        if alive is False:
            status = KILLED
            note = f"the writing process {pid} on {host} is gone"
        elif heartbeat_age is not None and heartbeat_age > heartbeat_timeout:
            status = STALE
            note = (
                f"no heartbeat from the writer (process {pid} on {host}) for "
                f"{heartbeat_age:.0f} s: its writer thread died or hung, or the process is "
                "paused"
            )
        elif heartbeat_age is None and age > stale_after:
            status = STALE
            note = f"the progress marker has not changed for {age:.0f} s"
    return StoreStatus(
        status=status,
        recorded_status=recorded,
        steps_written=tuple(int(n) for n in ch["steps_written"]),
        draws_written=tuple(int(n) for n in ch["draws_written"]),
        chain_status=tuple(ch["status"]),
        chain_errors=tuple(ch.get("error") or (None,) * len(ch["status"])),
        error=marker.get("error"),
        total_steps=int(marker["total_steps"]),
        total_draws=int(marker["total_draws"]),
        completed=completed,
        updated_at=None if updated_at is None else float(updated_at),
        started_at=marker.get("started_at"),
        pid=pid,
        host=host,
        writer_alive=alive,
        heartbeat_age=heartbeat_age,
        note=note,
    )
