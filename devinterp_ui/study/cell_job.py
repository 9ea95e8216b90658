"""What a worker runs for one cell: an ordinary `sample()` into the cell's own store.

`CellJob` is everything one cell needs, sent to the worker as one pickled object (cloudpickle,
so notebook-defined models and loader lambdas travel too). `run_cell` returns a small outcome
dict and never raises for a failed run (the store and the outcome say it failed), so an engine
that retries lost tasks (Dask) retries only cells whose worker died.
"""

from __future__ import annotations

import json
import os
import socket
import time
import traceback
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

COMPLETED, STOPPED, FAILED = "completed", "stopped", "failed"


@dataclass
class CellJob:
    """One cell, ready to run anywhere that sees `store` (a shared path on a cluster).

    model: a `torch.nn.Module`, a zero-argument factory returning one, or `(path, loader)`
        with `loader(path)` returning one (loaded in the worker, not sent).
    settings: every `sample()` keyword of this cell (fixed ones and the cell's grid values).
    run_id: the study run this job belongs to; a store left incomplete by an earlier attempt
        of the same run (its worker died) is replaced, any other incomplete store is not.
    stop_file: once this file exists the cell stops at the next step boundary.
    torch_threads: `torch.set_num_threads` in the worker before sampling (None: leave as is).
    """

    name: str
    store: str
    model: Any
    dataset: Any
    observables: Mapping[str, Any] | None
    settings: dict[str, Any]
    run_id: str
    stop_file: str
    claim_file: str
    torch_threads: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class FileStopEvent:
    """`threading.Event`-like flag that is set once `path` exists: a stop signal that reaches
    worker processes on this machine or on a cluster's shared filesystem. Checks the file at
    most every `interval` seconds so a step costs no syscall."""

    def __init__(self, path: str | Path, interval: float = 0.2):
        self.path = str(path)
        self.interval = interval
        self._next = 0.0
        self._set = False

    def is_set(self) -> bool:
        if not self._set:
            now = time.monotonic()
            if now >= self._next:
                self._next = now + self.interval
                self._set = os.path.exists(self.path)
        return self._set


def resolve_model(source: Any):
    """The cell's `torch.nn.Module` from a model, a factory or a (path, loader) pair."""
    import torch

    if isinstance(source, torch.nn.Module):
        return source
    if isinstance(source, tuple) and len(source) == 2 and callable(source[1]):
        model = source[1](source[0])
    elif callable(source):
        model = source()
    else:
        raise TypeError(f"cannot make a model from {type(source).__name__}")
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"the model factory returned {type(model).__name__}, not a torch.nn.Module")
    return model


def run_cell(job: CellJob | bytes) -> dict[str, Any]:
    """Run one cell; returns {"name", "status", "error", "wall_time", "pid", "host",
    "torch_threads"}."""
    if isinstance(job, bytes):
        from devinterp_ui.study.executors import pickler

        job = pickler().loads(job)
    started = time.time()
    outcome = {"name": job.name, "pid": os.getpid(), "host": socket.gethostname()}
    stop = FileStopEvent(job.stop_file)
    if stop.is_set():
        return {**outcome, "status": STOPPED, "error": None, "wall_time": 0.0}
    if job.torch_threads:
        import torch

        torch.set_num_threads(int(job.torch_threads))
    try:
        _replace_own_attempt(job)
        _write_claim(job, started)
        from devinterp_ui.sample import sample

        model = resolve_model(job.model)
        tree = sample(
            model,
            job.dataset,
            job.observables or {},
            output_path=job.store,
            stop_event=stop,
            progress_bar=False,
            **job.settings,
        )
        status = (tree.attrs.get("progress") or {}).get("status", COMPLETED)
        if tree.attrs.get("completed") == 1:
            status = COMPLETED
        tree.close()
        error = None
    except Exception as exc:  # the cell failed; the outcome carries why, others go on
        status, error = FAILED, f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=6)}"
    import torch

    outcome["torch_threads"] = torch.get_num_threads()
    return {**outcome, "status": status, "error": error, "wall_time": time.time() - started}


def _write_claim(job: CellJob, started: float) -> None:
    """Record which study run and process is writing this cell (read by progress and retries)."""
    claim = {
        "run_id": job.run_id,
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started_at": started,
    }
    path = Path(job.claim_file)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Host and pid in the temporary name: workers on two hosts of a shared filesystem may
    # have the same pid.
    tmp = path.with_name(f"{path.name}.{socket.gethostname()}-{os.getpid()}.tmp")
    tmp.write_text(json.dumps(claim))
    os.replace(tmp, path)


def read_claim(path: str | Path) -> dict[str, Any] | None:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def _replace_own_attempt(job: CellJob) -> None:
    """Delete the store an earlier attempt of this same study run left incomplete.

    That happens when the engine retries the cell after its worker died (a killed local or
    Dask worker, on this host or another): the store is ours, its rows are a prefix of what we
    would write. It is deleted only once its writer is gone: at once when the marker says so or
    the process is dead on this host, else when its heartbeat has gone silent (a worker the
    engine gave up on may still be writing, e.g. across a network partition). A writer still
    alive after that is left alone and `sample()` refuses the store, so the cell fails saying
    which process writes it. Stores of other study runs are never touched here (the study
    decides about those up front).
    """
    from devinterp_ui.store.liveness import HEARTBEAT_TIMEOUT
    from devinterp_ui.study.stores import remove_store, store_state

    claim = read_claim(job.claim_file)
    if not claim or claim.get("run_id") != job.run_id:
        return
    deadline = time.monotonic() + HEARTBEAT_TIMEOUT + 5.0
    state = store_state(Path(job.store))
    # A pool that lost a worker terminates the others; give their exit (or, on another host,
    # the silence of their heartbeat) a moment to land.
    while state.writer_alive and time.monotonic() < deadline:
        time.sleep(0.2)
        state = store_state(Path(job.store))
    if state.exists and not state.completed and not state.writer_alive:
        remove_store(Path(job.store))
