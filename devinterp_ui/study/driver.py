"""`<output_dir>/.study/driver-<run_id>.json`: the process driving a study run, and whether it
still does.

    {"run_id": ..., "pid": 1234, "host": "node-3", "started_at": unix seconds, "ended": false}

The driver is the process that called `sweep()` / `llc_trajectory()`: its `Study` monitor thread
submits the cells. Once it is gone, cells it had not started never will be, which nothing else
on disk says (a cell's claim and store appear only when a worker starts it). A daemon thread
touches the record (its mtime; nothing is written, as for a store's heartbeat) every
`HEARTBEAT_INTERVAL` while the study runs, and the record is rewritten with `"ended": true`
when the monitor finishes, normally or stopped. A killed script or restarted kernel leaves a
record that is not ended, whose pid is dead (this host) or whose heartbeat goes silent.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
from pathlib import Path
from typing import Any

from devinterp_ui.store.liveness import HEARTBEAT_INTERVAL, HEARTBEAT_TIMEOUT, writer_alive


def driver_path(book: Path, run_id: str) -> Path:
    """The record of `run_id` in `book`, the study's bookkeeping directory (`.study`)."""
    return Path(book) / f"driver-{run_id}.json"


def write_driver(book: Path, run_id: str, ended: bool = False) -> Path:
    """Record this process as the driver of `run_id` (atomically: tmp file + rename)."""
    path = driver_path(book, run_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {
        "run_id": run_id,
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started_at": time.time(),
        "ended": ended,
    }
    previous = read_driver(book, run_id)
    if previous and isinstance(previous.get("started_at"), (int, float)):
        record["started_at"] = previous["started_at"]
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(record))
    os.replace(tmp, path)
    return path


def read_driver(book: Path, run_id: str) -> dict[str, Any] | None:
    """The driver record of `run_id`; None when there is none (a study directory from before
    driver records) or it cannot be read."""
    try:
        record = json.loads(driver_path(book, run_id).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def driver_alive(book: Path, run_id: str, now: float | None = None) -> bool | None:
    """Whether the driver of `run_id` may still start cells: None without a record (cannot
    tell), False once it ended or died, True while it runs.

    On this host the pid answers at once; for another host's driver (or a pid that cannot be
    checked) a heartbeat younger than `HEARTBEAT_TIMEOUT` (by this machine's clock) means alive.
    """
    record = read_driver(book, run_id)
    if record is None:
        return None
    if record.get("ended"):
        return False
    alive = writer_alive(record.get("pid"), record.get("host"))
    if alive is not None:
        return alive
    try:
        mtime = driver_path(book, run_id).stat().st_mtime
    except OSError:
        return None  # removed between the read and the stat: no record
    return (time.time() if now is None else now) - mtime < HEARTBEAT_TIMEOUT


class DriverRecord:
    """Keeps the driver record of one study run: `start()` writes it and starts the heartbeat
    thread, `end()` stops the thread and marks the record ended."""

    def __init__(self, book: Path, run_id: str):
        self.path = driver_path(book, run_id)
        self._book, self._run_id = Path(book), run_id
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="study-driver-beat", daemon=True)

    def start(self) -> None:
        write_driver(self._book, self._run_id)
        self._thread.start()

    def end(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        # The directory was removed or the disk is full: the study still finishes; readers then
        # judge the driver by its pid or silent heartbeat, which says the same.
        with contextlib.suppress(OSError):
            write_driver(self._book, self._run_id, ended=True)

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT_INTERVAL):
            # The directory was removed (or is unreachable for a moment): the next beat tries
            # again; meanwhile only a reader on another host sees the heartbeat go silent.
            with contextlib.suppress(OSError):
                os.utime(self.path)
