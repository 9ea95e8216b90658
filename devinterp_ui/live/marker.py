"""The progress marker as a reader sees it: read safely while it is rewritten, and judged alive.

The writer keeps the marker in the root attribute `progress` (format in
`devinterp_ui.store.progress`). A reader in another thread or process reads the root `zarr.json`
itself, once per poll: Zarr's own group object caches attributes, and the marker is the only
thing that changes after the store is created.
"""

from __future__ import annotations

import json
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from devinterp_ui.store.progress import COMPLETED, FAILED, RUNNING, STOPPED

# Statuses a reader adds to the writer's own (running / stopped / failed / completed).
STARTING = "starting"  # the store exists but has no marker yet: inputs checked, init loss computed
KILLED = "killed"  # the marker says running, but the writing process on this host is gone
STALE = "stale"  # the marker says running but has not changed for `stale_after` seconds
READER_STATUSES = (STARTING, RUNNING, STOPPED, FAILED, COMPLETED, KILLED, STALE)
FINISHED_STATUSES = (STOPPED, FAILED, COMPLETED, KILLED)


class MarkerUnreadable(RuntimeError):
    """The root metadata could not be parsed, even after retries (not a sample store?)."""


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

    @property
    def num_chains(self) -> int:
        return len(self.steps_written)

    @property
    def finished(self) -> bool:
        """No more rows will appear (stopped, failed, completed or killed)."""
        return self.status in FINISHED_STATUSES


def read_root_attrs(path: Path, retries: int = 20, pause: float = 0.005) -> dict[str, Any]:
    """The root attributes of the store at `path`.

    Zarr writes `zarr.json` to a temporary file and renames it, so a half-written file should
    never be seen; other writers or filesystems may not be so careful, so an unparsable read is
    retried `retries` times before raising MarkerUnreadable. FileNotFoundError when there is no
    store at `path`.
    """
    meta = path / "zarr.json"
    last: Exception | None = None
    for attempt in range(retries + 1):
        try:
            with meta.open("rb") as f:
                return json.loads(f.read()).get("attributes", {}) or {}
        except FileNotFoundError:
            if not path.exists():
                raise
            last = None  # mid-rename on a filesystem without atomic replace: try again
        except (OSError, ValueError) as exc:
            last = exc
        if attempt < retries:
            time.sleep(pause)
    raise MarkerUnreadable(f"cannot parse {meta} after {retries + 1} reads: {last}")


def status_from_attrs(
    attrs: dict[str, Any],
    shape_rows: tuple[int, int, int] | None,
    stale_after: float,
    now: float | None = None,
) -> StoreStatus:
    """Judge the run from its root attributes.

    shape_rows: (num_chains, total_steps, total_draws) from the array shapes, used for stores
    without a marker (a completed devinterp 2.x store counts as wholly written).
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
    status = recorded
    if recorded == RUNNING:
        age = (now if now is not None else time.time()) - float(updated_at or 0.0)
        if alive is False:
            status = KILLED
        elif age > stale_after:
            status = STALE
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
    )


def writer_alive(pid: Any, host: Any) -> bool | None:
    """Whether process `pid` on `host` still runs; None when that cannot be told from here."""
    if not isinstance(pid, int) or host != socket.gethostname():
        return None
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: it exists
    except OSError:
        return None
    return not _is_zombie(pid)


def _is_zombie(pid: int) -> bool:
    """A killed child its parent has not reaped yet still answers kill(pid, 0) (Linux only)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    # The state letter follows the parenthesised command name, which may hold spaces.
    return stat.rsplit(")", 1)[-1].split()[:1] == ["Z"]
