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


def heartbeat_mtime(store: str | Path) -> float | None:
    """When the writer of `store` last beat (unix seconds, the file's mtime), or None when it
    has no heartbeat file (a store from before heartbeats, or from devinterp 2.x)."""
    try:
        return heartbeat_path(store).stat().st_mtime
    except OSError:
        return None


def heartbeat_age(store: str | Path, now: float | None = None) -> float | None:
    """Seconds since the writer of `store` last beat, by this machine's clock; None without
    a heartbeat file."""
    mtime = heartbeat_mtime(store)
    if mtime is None:
        return None
    return max(0.0, (time.time() if now is None else now) - mtime)


class HeartbeatWatch:
    """How long the writer of one store has been silent, as seen by one reader over time.

    Once the watch has seen the heartbeat change, silence is measured on this machine's
    monotonic clock from that change, so a writer on a host whose clock is off is judged right
    from its second beat on. Before that, the file's age (by the wall clock) or the time since
    the watch first looked, whichever is longer: a writer that died before anyone looked is
    called silent at once, and one whose clock runs ahead within `HEARTBEAT_TIMEOUT` anyway.
    """

    def __init__(self, store: str | Path):
        self.store = Path(store)
        self._seen: float | None = None  # the mtime last seen
        self._first_look: float | None = None
        self._changed: float | None = None  # monotonic time the mtime last changed

    def age(self) -> float | None:
        """Seconds of silence, or None for a store without a heartbeat file."""
        mtime = heartbeat_mtime(self.store)
        if mtime is None:
            return None
        now = time.monotonic()
        if self._first_look is None:
            self._first_look, self._seen = now, mtime
        elif mtime != self._seen:
            self._seen, self._changed = mtime, now
        if self._changed is not None:
            return now - self._changed
        return max(0.0, time.time() - mtime, now - self._first_look)


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
