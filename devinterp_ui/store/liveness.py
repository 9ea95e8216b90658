"""Is the writer of a store still there? Its process id, and a heartbeat file it keeps touching.

The writer's background thread touches `<store>/.heartbeat` (its mtime; no data is written, so
it works on a full disk) every `HEARTBEAT_INTERVAL` seconds from the store's creation until the
writer is closed, also while chains are slow and no rows are due. A marker that says "running"
with a heartbeat older than `HEARTBEAT_TIMEOUT` means the writer thread died or hung, or the
process is paused or gone: readers report "stale" within seconds instead of trusting the marker.
The process check (`writer_alive`) tells a killed writer on this host at once.
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path
from typing import Any

HEARTBEAT_NAME = ".heartbeat"
# Touching a file costs microseconds; once a second is plenty for "within seconds".
HEARTBEAT_INTERVAL = 1.0
# Ten missed beats: long enough that a loaded machine (2 cores shared by many processes, the
# GIL held by a long step) never makes a live writer look dead, short enough to be "seconds".
HEARTBEAT_TIMEOUT = 10.0


def heartbeat_path(store: str | Path) -> Path:
    return Path(store) / HEARTBEAT_NAME


def beat(store: str | Path) -> None:
    """Touch the heartbeat of `store` (create it if missing). OSError propagates."""
    path = heartbeat_path(store)
    try:
        os.utime(path)
    except FileNotFoundError:
        path.touch()


def heartbeat_age(store: str | Path, now: float | None = None) -> float | None:
    """Seconds since the writer of `store` last beat, or None when it has no heartbeat file
    (a store from before heartbeats, or from devinterp 2.x)."""
    try:
        mtime = heartbeat_path(store).stat().st_mtime
    except OSError:
        return None
    return max(0.0, (time.time() if now is None else now) - mtime)


def writer_alive(pid: Any, host: Any) -> bool | None:
    """Whether process `pid` on `host` still runs; None when that cannot be told from here."""
    if not isinstance(pid, int) or host != socket.gethostname():
        return None
    if pid == os.getpid():
        return True
    return process_alive(pid)


def process_alive(pid: int) -> bool | None:
    """Whether process `pid` of this host runs (a zombie counts as gone); None if unknown."""
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
