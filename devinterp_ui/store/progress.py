"""The live progress marker: root attribute `progress` of a store.

Written after the data it describes (never before), in one atomic write of the root metadata,
so a reader that trusts only rows below `steps_written`/`draws_written` never sees a partial row.

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

import os
import socket
import time
from dataclasses import dataclass, field

RUNNING, STOPPED, FAILED, COMPLETED = "running", "stopped", "failed", "completed"
STATUSES = (RUNNING, STOPPED, FAILED, COMPLETED)


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
