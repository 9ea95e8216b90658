"""`Study`: the handle `sweep()` and `llc_trajectory()` return, like `SamplingJob` for one run.

A monitor thread submits the cells, collects their outcomes and retries a cell whose local
worker process died (a broken pool is replaced once per cell); everything else the handle
reports it reads from the stores, so `result()` is the same whether a cell ran now or was reused.
"""

from __future__ import annotations

import concurrent.futures as cf
import threading
import time
from collections.abc import Mapping
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import xarray as xr

from devinterp_ui.study.cell_job import CellJob, read_claim, run_cell
from devinterp_ui.study.driver import DriverRecord
from devinterp_ui.study.executors import LocalExecutor, is_dask
from devinterp_ui.study.grid import Cell
from devinterp_ui.study.manifest import BOOKKEEPING
from devinterp_ui.study.result import RowCache, assemble

MAX_LOCAL_ATTEMPTS = 2  # a cell whose local worker process died runs once more, then fails


@dataclass(frozen=True)
class StudyProgress:
    """Cells by state. done: completed now or reused; failed: failed runs, lost workers and
    refused cells; stopped: stopped by `stop()`; left: incomplete stores left as they were."""

    total: int
    queued: int
    running: int
    done: int
    failed: int
    stopped: int
    left: int

    @property
    def finished(self) -> bool:
        return self.queued == 0 and self.running == 0


class Study:
    """A running or finished study. Create it with `sweep()` or `llc_trajectory()`.

    cells: the study's cells in grid order; output_dir: where the stores and study.json are.
    """

    def __init__(
        self,
        kind: str,
        output_dir: Path,
        cells: list[Cell],
        jobs: dict[str, CellJob],
        payloads: dict[str, Any],
        preset: dict[str, dict[str, Any]],
        executor: cf.Executor,
        owns_executor: bool,
        run_id: str,
    ):
        self.kind = kind
        self.output_dir = output_dir
        self.cells = cells
        self.run_id = run_id
        self._jobs = jobs
        self._payloads = payloads
        self._outcomes: dict[str, dict[str, Any]] = dict(preset)  # reused / left cells
        self._executor = executor
        self._owns = owns_executor
        self._futures: dict[cf.Future, str] = {}
        self._attempts: dict[str, int] = {}
        self._lock = threading.Lock()
        self._finished = threading.Event()
        self._stopping = False
        self._cache = RowCache()
        self.started_at = time.time()
        self._monitor = threading.Thread(target=self._watch, name="study-monitor", daemon=True)
        # Says on disk, for as long as the monitor runs, that this process will start the
        # cells not started yet: readers of the directory tell "queued" from "abandoned".
        self._driver = DriverRecord(output_dir / BOOKKEEPING, run_id)

    def start(self) -> Study:
        self._driver.start()
        try:
            with self._lock:
                for name in self._jobs:
                    self._submit(name)
        except BaseException:
            self._driver.end()  # no monitor will start the cells: say so on disk
            raise
        self._monitor.start()
        return self

    # --- control ---------------------------------------------------------------------------

    def stop(self) -> None:
        """Stop every cell: queued ones never start, running ones end at the next step boundary
        with their rows kept (status "stopped"; rerun them with rerun_incomplete=True)."""
        self._stopping = True
        Path(self._jobs_stop_file()).touch()
        if is_dask(self._executor):
            # Dask's executor keeps every future pending until its result arrives, so cancel()
            # would also cancel running cells: Dask drops their outcome while the worker thread
            # goes on writing, and wait() could return before their stores are closed. The stop
            # file ends them all instead: queued cells return "stopped" as soon as they start.
            return
        with self._lock:
            for future in list(self._futures):
                future.cancel()  # only futures not running yet are cancelled

    def wait(self, timeout: float | None = None) -> bool:
        """Block until every cell has finished; False when `timeout` seconds passed first."""
        return self._finished.wait(timeout)

    @property
    def done(self) -> bool:
        return self._finished.is_set()

    # --- what it did -------------------------------------------------------------------------

    @property
    def progress(self) -> StudyProgress:
        counts = dict.fromkeys(("queued", "running", "done", "failed", "stopped", "left"), 0)
        for cell in self.cells:
            counts[self._state(cell.name)] += 1
        return StudyProgress(total=len(self.cells), **counts)

    @property
    def outcomes(self) -> dict[str, dict[str, Any]]:
        """{cell name: outcome} of finished cells (status, error, wall_time, pid, host)."""
        with self._lock:
            return {k: dict(v) for k, v in self._outcomes.items()}

    def result(self) -> xr.Dataset:
        """The result over the grid dims (or `step`) as the stores say now; see `assemble`."""
        outcomes = self.outcomes
        rows = {}
        for cell in self.cells:
            row = self._cache.row(self.output_dir / cell.store_name())
            outcome = outcomes.get(cell.name)
            state = self._state(cell.name)
            if outcome is not None:
                if outcome.get("error"):
                    row["error"] = outcome["error"].splitlines()[0]
                if row["status"] in ("absent", "foreign"):
                    row["status"] = outcome["status"]
                if outcome.get("status") == "failed" and row["status"] != "completed":
                    row["status"] = "failed"
            elif row["status"] == "absent":
                row["status"] = state
            rows[cell.name] = row
        return assemble(self.kind, self.cells, rows, output_dir=self.output_dir, run_id=self.run_id)

    def open(self, cell: str | Cell | Mapping[str, Any] | int) -> xr.DataTree:
        """That cell's DataTree, read from its store. `cell`: a name, a `Cell`, its coords
        ({"lr": 1e-4, "n_beta": 30.0}) or, for a trajectory, the step. KeyError if unknown;
        FileNotFoundError if its store does not exist (yet)."""
        found = self.cell(cell)
        path = self.output_dir / found.store_name()
        if not (path / "zarr.json").is_file():
            raise FileNotFoundError(f"cell {found.name} has no store yet at {str(path)!r}.")
        return xr.open_datatree(str(path), engine="zarr")

    def cell(self, key: str | Cell | Mapping[str, Any] | int) -> Cell:
        if isinstance(key, Cell):
            key = key.name
        if isinstance(key, int) and not isinstance(key, bool):
            key = {"step": key}
        for c in self.cells:
            if (isinstance(key, str) and c.name == key) or (
                isinstance(key, Mapping) and c.coords == dict(key)
            ):
                return c
        raise KeyError(f"no cell {key!r} in this study; cells: {[c.name for c in self.cells]}")

    def store_path(self, cell: str | Cell | Mapping[str, Any] | int) -> Path:
        return self.output_dir / self.cell(cell).store_name()

    def __repr__(self) -> str:
        p = self.progress
        return (
            f"Study({self.kind}, {p.total} cells: {p.done} done, {p.running} running, "
            f"{p.queued} queued, {p.failed} failed, {p.stopped} stopped; {self.output_dir})"
        )

    # --- internals ---------------------------------------------------------------------------

    def _jobs_stop_file(self) -> str:
        if self._jobs:
            return next(iter(self._jobs.values())).stop_file
        return str(self.output_dir / ".study" / f"stop-{self.run_id}")

    def _state(self, name: str) -> str:
        with self._lock:
            outcome = self._outcomes.get(name)
        if outcome is not None:
            status = outcome["status"]
            if status == "completed":
                return "done"
            if status == "stopped":
                return "stopped"
            if status == "left":
                return "left"
            return "failed"
        job = self._jobs.get(name)
        claim = read_claim(job.claim_file) if job else None
        if claim and claim.get("run_id") == self.run_id:
            return "running"
        return "queued"

    def _submit(self, name: str) -> None:
        self._attempts[name] = self._attempts.get(name, 0) + 1
        payload = self._payloads.get(name, self._jobs[name])
        self._futures[self._executor.submit(run_cell, payload)] = name

    def _watch(self) -> None:
        try:
            while True:
                with self._lock:
                    pending = list(self._futures)
                if not pending:
                    break
                done, _ = cf.wait(pending, timeout=0.5, return_when=cf.FIRST_COMPLETED)
                broken = []
                with self._lock:
                    for future in done:
                        name = self._futures.pop(future)
                        outcome = _outcome_of(future, name)
                        if outcome is None:
                            broken.append(name)
                        else:
                            self._outcomes[name] = outcome
                    if broken:
                        self._retry(broken)
        finally:
            if self._owns:
                self._executor.shutdown(wait=False, cancel_futures=True)
            self._driver.end()  # before wait() returns, so a caller reads the record ended
            self._finished.set()

    def _retry(self, broken: list[str]) -> None:
        """Cells whose process pool broke (a worker died): rerun once in a fresh pool."""
        retry = isinstance(self._executor, LocalExecutor) and not self._stopping
        if retry:
            # Every other queued future of a broken pool fails too; collect them all first.
            for future, name in list(self._futures.items()):
                del self._futures[future]
                outcome = _outcome_of(future, name) if future.done() else None
                if outcome is None:
                    broken.append(name)
                else:
                    self._outcomes[name] = outcome
            self._executor.renew()
        for name in dict.fromkeys(broken):
            if retry and self._attempts.get(name, 0) < MAX_LOCAL_ATTEMPTS:
                self._submit(name)
            else:
                self._outcomes[name] = {
                    "name": name,
                    "status": "stopped" if self._stopping else "failed",
                    "error": "the worker process running this cell died",
                    "wall_time": None,
                }


def _outcome_of(future: cf.Future, name: str) -> dict[str, Any] | None:
    """The cell's outcome; None when its process pool broke (the cell may be retried)."""
    if future.cancelled():
        return {"name": name, "status": "stopped", "error": None, "wall_time": None}
    exc = future.exception()
    if exc is None:
        return future.result()
    if isinstance(exc, BrokenProcessPool):
        return None
    # A lost Dask worker after its retries (KilledWorker), or a failure outside run_cell.
    return {
        "name": name,
        "status": "failed",
        "error": f"{type(exc).__name__}: {exc}",
        "wall_time": None,
    }
