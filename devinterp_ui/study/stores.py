"""What a cell's store holds, as a study needs to know it: absent, complete, or incomplete and
whether its writer still runs; and removing a store the study has decided to replace."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from devinterp_ui.live.marker import MarkerUnreadable
from devinterp_ui.live.reader import StoreReader

# Reader statuses after which no more rows will appear in a store (its writer is gone).
WRITER_GONE = ("stopped", "failed", "completed", "killed", "stale")


@dataclass(frozen=True)
class StoreState:
    """exists: a sample store (zarr.json) is at the path. status: the reader's verdict
    (running, stopped, failed, completed, killed, stale, starting) or "absent"/"foreign".
    writer_alive: False once no process will write the store again."""

    exists: bool
    status: str
    completed: bool
    writer_alive: bool
    started_at: float | None = None
    updated_at: float | None = None


def store_state(path: Path, stale_after: float = 300.0) -> StoreState:
    if not (path / "zarr.json").is_file():
        return StoreState(path.exists(), "absent" if not path.exists() else "foreign", False, False)
    try:
        snap = StoreReader(path, metrics=False, stale_after=stale_after).status()
    except (MarkerUnreadable, FileNotFoundError, KeyError, TypeError, ValueError):
        return StoreState(True, "foreign", False, False)
    alive = snap.status not in WRITER_GONE and snap.writer_alive is not False
    return StoreState(
        True,
        "completed" if snap.completed else snap.status,
        bool(snap.completed),
        alive,
        snap.started_at,
        snap.updated_at,
    )


def remove_store(path: Path) -> None:
    """Delete the sample store at `path` (only a directory holding a sample store's zarr.json)."""
    if not (path / "zarr.json").is_file():
        raise ValueError(f"{str(path)!r} is not a sample store; not removing it.")
    shutil.rmtree(path)
