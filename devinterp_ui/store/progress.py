"""The live progress marker (root attribute `progress`), its status names, and reading it.

This module is the one home of the status names and of `read_root_attrs`: the writer, the
reader, `SamplingJob` and the dashboard all import them from here.

Written after the data it describes (never before), in one atomic write of the root metadata,
so a reader that trusts only rows below `steps_written`/`draws_written` never sees a partial row.
Rows beyond those counts may exist on disk (a writer killed between a chunk write and the
marker write, or a failed write): the marker is the truth, and `compute_llc`, `StoreReader` and
`mask_unwritten` ignore such rows (docs/guarantees.md).

    progress = {
        "status": "running" | "stopped" | "failed" | "completed",
        "error": None | str,                     # run-level error text (traceback) on failure
        "total_steps": int, "total_draws": int,  # per chain
        "chains": {
            "steps_written": [int] * C,          # rows 0..n-1 of every (chain, step) array are whole
            "draws_written": [int] * C,          # rows 0..n-1 of every (chain, draw) array are whole
            "status": ["running" | "stopped" | "failed" | "completed"] * C,
            "error": [None | str] * C,           # e.g. "non-finite loss at step 17"
        },
        "started_at": float, "updated_at": float,  # unix seconds
        "pid": int, "host": str,                 # the writing process, to tell a dead writer
    }
"""

from __future__ import annotations

import json
import os
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# --- status names ------------------------------------------------------------------------------
# What the writer records, run-level and per chain.
RUNNING, STOPPED, FAILED, COMPLETED = "running", "stopped", "failed", "completed"
STATUSES = (RUNNING, STOPPED, FAILED, COMPLETED)
# What a reader may add when it judges the recorded status (devinterp_ui.live.marker).
STARTING = "starting"  # the store exists but has no marker yet
KILLED = "killed"  # the marker says running, but the writing process on this host is gone
STALE = "stale"  # the marker says running, but the writer gives no sign of life (heartbeat)
READER_STATUSES = (STARTING, RUNNING, STOPPED, FAILED, COMPLETED, KILLED, STALE)
# No more rows will appear. `stale` is not among them: a paused writer may come back.
FINISHED_STATUSES = (STOPPED, FAILED, COMPLETED, KILLED)
# What a `SamplingJob` (devinterp_ui.live.job) reports: its own two, then the run's.
IDLE, STOPPING = "idle", "stopping"
JOB_STATES = (IDLE, RUNNING, STOPPING, STOPPED, COMPLETED, FAILED)
JOB_FINISHED_STATES = (STOPPED, COMPLETED, FAILED)


@dataclass
class ChainProgress:
    steps_written: int = 0
    draws_written: int = 0
    status: str = RUNNING
    error: str | None = None


@dataclass
class RunProgress:
    total_steps: int
    total_draws: int
    chains: list[ChainProgress]
    status: str = RUNNING
    error: str | None = None
    started_at: float = field(default_factory=time.time)

    @classmethod
    def fresh(cls, num_chains: int, total_steps: int, total_draws: int) -> RunProgress:
        return cls(total_steps, total_draws, [ChainProgress() for _ in range(num_chains)])

    def to_json(self) -> dict:
        return {
            "status": self.status,
            "error": self.error,
            "total_steps": self.total_steps,
            "total_draws": self.total_draws,
            "chains": {
                "steps_written": [c.steps_written for c in self.chains],
                "draws_written": [c.draws_written for c in self.chains],
                "status": [c.status for c in self.chains],
                "error": [c.error for c in self.chains],
            },
            "started_at": self.started_at,
            "updated_at": time.time(),
            "pid": os.getpid(),
            "host": socket.gethostname(),
        }

    @classmethod
    def from_json(cls, data: dict) -> RunProgress:
        ch = data["chains"]
        chains = [
            ChainProgress(int(s), int(d), st, err)
            for s, d, st, err in zip(
                ch["steps_written"], ch["draws_written"], ch["status"], ch["error"], strict=True
            )
        ]
        return cls(
            int(data["total_steps"]),
            int(data["total_draws"]),
            chains,
            data["status"],
            data.get("error"),
            float(data.get("started_at", 0.0)),
        )


def ended_marker(marker: dict, status: str, error: str | None) -> dict:
    """`marker` (a `to_json()` dict) ended early with `status` (failed or stopped): the run and
    every running chain take that status (and `error`), row counts kept (they count only rows
    known to have landed)."""
    chains = dict(marker["chains"])
    statuses = list(chains["status"])
    errors = list(chains.get("error") or [None] * len(statuses))
    for i, chain_status in enumerate(statuses):
        if chain_status == RUNNING:
            statuses[i], errors[i] = status, error
    chains["status"], chains["error"] = statuses, errors
    return {**marker, "status": status, "error": error, "chains": chains, "updated_at": time.time()}


# --- reading ---------------------------------------------------------------------------------


class MarkerUnreadable(RuntimeError):
    """The root metadata could not be parsed, even after retries (not a sample store?)."""


def read_root_attrs(path: str | Path, retries: int = 20, pause: float = 0.005) -> dict[str, Any]:
    """The root attributes of the Zarr v3 store at `path` (its `zarr.json`, read directly:
    Zarr's group object caches attributes, and the marker changes after creation).

    Zarr writes `zarr.json` to a temporary file and renames it, so a half-written file should
    never be seen; other writers or filesystems may not be so careful, so an unparsable read is
    retried `retries` times, `pause` seconds apart, before raising MarkerUnreadable.
    Raises FileNotFoundError when `path` holds no `zarr.json`.
    """
    path = Path(path)
    meta = path / "zarr.json"
    last: Exception | None = None
    for attempt in range(retries + 1):
        try:
            with meta.open("rb") as f:
                attrs = json.loads(f.read()).get("attributes", {}) or {}
            if not isinstance(attrs, dict):
                raise ValueError("root attributes are not a mapping")
            return attrs
        except FileNotFoundError:
            if not path.exists() or attempt == retries:
                raise
            last = None  # mid-rename on a filesystem without atomic replace: try again
        except (OSError, ValueError, AttributeError) as exc:
            last = exc
        if attempt < retries:
            time.sleep(pause)
    raise MarkerUnreadable(f"cannot parse {meta} after {retries + 1} reads: {last}")


def rows_written(attrs: dict[str, Any]) -> tuple[tuple[int, ...], tuple[int, ...]] | None:
    """(steps_written, draws_written) per chain from root attributes, or None for a store
    without a marker (e.g. written by devinterp 2.x: then every row counts)."""
    marker = attrs.get("progress")
    if not isinstance(marker, dict):
        return None
    chains = marker["chains"]
    return (
        tuple(int(n) for n in chains["steps_written"]),
        tuple(int(n) for n in chains["draws_written"]),
    )
