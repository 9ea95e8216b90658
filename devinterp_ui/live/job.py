"""`SamplingJob`: one `sample()` run in a background thread, with stop, progress and result.

Usable from a script, a notebook or a server: every public method is thread-safe and returns
promptly, except `wait()` (blocks up to its timeout) and `start()` (blocks until `sample()` has
checked its inputs and created the store, so bad arguments raise in the caller).
"""

from __future__ import annotations

import atexit
import inspect
import shutil
import tempfile
import threading
import time
import traceback
import weakref
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import xarray as xr

from devinterp_ui.config import SETTINGS, validate_settings
from devinterp_ui.live.job_state import (
    COMPLETED,
    FAILED,
    IDLE,
    RUNNING,
    STOPPED,
    STOPPING,
    JobError,
    JobProgress,
    recent_rate,
)
from devinterp_ui.live.marker import read_root_attrs
from devinterp_ui.runner import StepSummary
from devinterp_ui.sample import check_run_options, sample
from devinterp_ui.store.progress import RUNNING as CHAIN_RUNNING

# Arguments the job sets itself; everything else of sample()'s signature passes through.
_JOB_OWNED = ("stop_event",)
_RUN_OPTIONS = ("loss_fn", "chain_schedule", "progress_callback", "flush_interval")
_SAMPLE_KWARGS = tuple(inspect.signature(sample).parameters)[3:]
# Seconds of recent steps the steps/s estimate averages over.
_RATE_WINDOW_S = 10.0

_running_jobs: weakref.WeakSet[SamplingJob] = weakref.WeakSet()


class SamplingJob:
    """`sample(model, dataset, observables, **sample_kwargs)` in a background thread.

    Settings are checked here (TypeError/ValueError as `sample()` raises them); data-dependent
    checks (shapes, loss_fn output, an existing store) raise from `start()`.

    output_path None: the job writes to a temporary store it owns (`output_path` tells where),
    so a `StoreReader` can follow it; `close()` (or garbage collection) deletes it, and `result`
    is then loaded into memory. `progress_bar` defaults to False. `progress_callback`, if given,
    is called after the job's own bookkeeping, in the sampling thread; an exception it raises
    fails the run. `stop_event` is the job's own: call `stop()`.
    """

    def __init__(
        self, model: torch.nn.Module, dataset: Any, observables: Any = None, **sample_kwargs
    ):
        unknown = sorted(set(sample_kwargs) - set(_SAMPLE_KWARGS))
        if unknown:
            raise TypeError(
                f"SamplingJob got unexpected argument(s) {unknown}; it takes sample()'s keyword "
                f"arguments: {', '.join(_SAMPLE_KWARGS)}."
            )
        owned = sorted(set(sample_kwargs) & set(_JOB_OWNED))
        if owned:
            raise TypeError(
                f"SamplingJob sets {owned} itself: call job.stop() to end the run at the next step."
            )
        config = validate_settings({k: v for k, v in sample_kwargs.items() if k in SETTINGS})
        check_run_options(model, **{k: v for k, v in sample_kwargs.items() if k in _RUN_OPTIONS})

        self.config = config
        self._model, self._dataset, self._observables = model, dataset, observables
        self._user_callback: Callable[[StepSummary], None] | None = sample_kwargs.pop(
            "progress_callback", None
        )
        path = sample_kwargs.pop("output_path", None)
        self._owned_dir: Path | None = None
        if path is None:
            self._owned_dir = Path(tempfile.mkdtemp(prefix="devinterp_ui_job_"))
            self._cleanup = weakref.finalize(
                self, shutil.rmtree, str(self._owned_dir), ignore_errors=True
            )
            path = self._owned_dir / "run.zarr"
        self.output_path = Path(path)
        self._kwargs = {"progress_bar": False, **sample_kwargs}

        self._lock = threading.Lock()
        self._stop_event = threading.Event()
        self._done = threading.Event()
        self._thread: threading.Thread | None = None
        self._state = IDLE
        self._result: xr.DataTree | None = None
        self._error: JobError | None = None
        self._failed_before_store = False
        self._store_was_there = False
        num_chains = config.num_chains
        self._steps = [0] * num_chains
        self._draws = [0] * num_chains
        self._chain_status = [CHAIN_RUNNING] * num_chains
        self._chain_errors: list[str | None] = [None] * num_chains
        self._step_times: deque[float] = deque()
        self._started_at: float | None = None
        self._ended_at: float | None = None

    # --- control -----------------------------------------------------------------------------

    def start(self) -> SamplingJob:
        """Start the run in a background thread and return once the store exists.

        Raises RuntimeError when this job was already started (a job runs once: create a new
        one), and re-raises any error `sample()` hits before creating the store (bad data, a
        loss_fn of the wrong shape, StoreConflictError); the job is then "failed".
        """
        with self._lock:
            if self._state != IDLE:
                raise RuntimeError(
                    f"this SamplingJob was already started (state {self._state!r}); a job runs "
                    "once: create a new SamplingJob to sample again."
                )
            self._state = RUNNING
            self._started_at = time.time()
            self._store_was_there = _holds_something(self.output_path)
            self._thread = threading.Thread(
                target=self._run, name=f"SamplingJob({self.output_path.name})", daemon=True
            )
            _running_jobs.add(self)
            self._thread.start()
        while not (self._done.is_set() or self._store_created()):
            self._done.wait(0.01)
        if self._failed_before_store and self._error and self._error.exception is not None:
            raise self._error.exception
        return self

    def stop(self) -> None:
        """Ask the run to end at the next step boundary; returns at once.

        State becomes "stopping", then "stopped" when the thread has flushed and ended (or
        "completed" when the last step had already begun). No effect on a job that is idle or
        finished.
        """
        with self._lock:
            if self._state != RUNNING:
                return
            self._state = STOPPING
            self._stop_event.set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the job has finished or `timeout` seconds passed; True when finished.
        An idle (never started) job returns False at once."""
        if self._thread is None:
            return False
        return self._done.wait(timeout)

    def close(self) -> None:
        """Stop the run, wait for it, and delete the job's own temporary store (if any)."""
        self.stop()
        self.wait()
        if self._owned_dir is not None:
            self._cleanup()

    def __enter__(self) -> SamplingJob:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --- state ---------------------------------------------------------------------------------

    @property
    def state(self) -> str:
        """One of JOB_STATES: idle, running, stopping, stopped, completed, failed."""
        with self._lock:
            return self._state

    @property
    def result(self) -> xr.DataTree | None:
        """The sample tree once the job has stopped or completed, else None.

        Completed: what `sample()` returned (every row; a chain that failed on a non-finite
        loss holds NaN after its failure). Stopped: trimmed to the rows every chain has written,
        see `trim_to_common_rows`; the store at `output_path` keeps every chain's rows. Failed
        (exception, or every chain non-finite): None; read the store for the rows written.
        """
        with self._lock:
            return self._result

    @property
    def error(self) -> JobError | None:
        """Why the job failed (message and traceback), else None."""
        with self._lock:
            return self._error

    @property
    def progress(self) -> JobProgress:
        with self._lock:
            now = self._ended_at or time.time()
            rate = recent_rate(self._step_times)
            remaining = sum(
                self.config.total_steps - s
                for s, st in zip(self._steps, self._chain_status, strict=True)
                if st == CHAIN_RUNNING
            )
            running = self._state in (RUNNING, STOPPING)
            return JobProgress(
                state=self._state,
                steps_done=tuple(self._steps),
                draws_done=tuple(self._draws),
                total_steps=self.config.total_steps,
                total_draws=self.config.num_draws,
                chain_status=tuple(self._chain_status),
                chain_errors=tuple(self._chain_errors),
                steps_per_second=rate,
                eta_seconds=remaining / rate
                if rate and running
                else (0.0 if not running else None),
                elapsed_seconds=0.0 if self._started_at is None else now - self._started_at,
            )

    def reader(self):
        """A `StoreReader` following this job's store (call after `start()`)."""
        from devinterp_ui.live.reader import StoreReader

        return StoreReader(self.output_path)

    def __repr__(self) -> str:
        return f"SamplingJob(state={self.state!r}, output_path={str(self.output_path)!r})"

    # --- the thread ------------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            tree = sample(
                self._model,
                self._dataset,
                self._observables,
                output_path=self.output_path,
                stop_event=self._stop_event,
                progress_callback=self._on_step,
                **self._kwargs,
            )
            self._finish(tree)
        except BaseException as exc:  # the thread must record every way it can end
            error = JobError(
                f"{type(exc).__name__}: {exc}", "".join(traceback.format_exception(exc)), exc
            )
            before_store = not self._store_created()
            if not before_store:
                self._read_final_chains()
            with self._lock:
                self._failed_before_store = before_store
                self._error = error
                self._state = FAILED
                self._ended_at = time.time()
        finally:
            _running_jobs.discard(self)
            self._done.set()

    def _finish(self, tree: xr.DataTree) -> None:
        recorded = (tree.attrs.get("progress") or {}).get("status", COMPLETED)
        if recorded == STOPPED:
            tree = trim_to_common_rows(tree)
        if self._owned_dir is not None:
            tree = tree.load()
        self._read_final_chains()
        with self._lock:
            self._ended_at = time.time()
            if recorded == FAILED:
                message = (tree.attrs.get("progress") or {}).get("error") or "every chain failed"
                self._error = JobError(message, None)
                self._state = FAILED
                return
            self._result = tree
            self._state = STOPPED if recorded == STOPPED else COMPLETED

    def _on_step(self, summary: StepSummary) -> None:
        now = time.time()
        with self._lock:
            c = summary.chain
            self._steps[c] = summary.step + 1
            if summary.draw is not None:
                self._draws[c] = summary.draw + 1
            self._chain_status[c] = summary.status
            self._step_times.append(now)
            while self._step_times and now - self._step_times[0] > _RATE_WINDOW_S:
                self._step_times.popleft()
        if self._user_callback is not None:
            self._user_callback(summary)

    def _read_final_chains(self) -> None:
        """Per-chain status and errors as the store ended (the callback sees no error text)."""
        try:
            progress = read_root_attrs(self.output_path, retries=2).get("progress")
        except (OSError, RuntimeError):
            return
        if not isinstance(progress, dict):
            return
        chains = progress["chains"]
        with self._lock:
            self._steps = [int(n) for n in chains["steps_written"]]
            self._draws = [int(n) for n in chains["draws_written"]]
            self._chain_status = list(chains["status"])
            self._chain_errors = list(chains["error"])

    def _store_created(self) -> bool:
        """True once sample() has passed its checks and created a new store at output_path."""
        return not self._store_was_there and (self.output_path / "zarr.json").is_file()


def trim_to_common_rows(tree: xr.DataTree) -> xr.DataTree:
    """`tree` cut to the rows every chain has written: the result of a stopped run.

    `step` is cut to the fewest steps written by any chain that did not fail, `draw` likewise
    (a failed chain's rows stop at its failure and are NaN after it, as in a completed run;
    when every chain failed, the fewest over all). With the default lockstep schedule chains
    stop together, so nothing but an unfinished last step is lost; with
    chain_schedule="sequential", chains after the running one have no rows and the common
    prefix is empty: read the store for each chain's own rows. Root attr `trimmed_to` =
    {"steps": n, "draws": m} records the cut.
    """
    chains = tree.attrs["progress"]["chains"]
    kept = [i for i, st in enumerate(chains["status"]) if st != FAILED]
    kept = kept or list(range(len(chains["status"])))
    steps = min(int(chains["steps_written"][i]) for i in kept)
    draws = min(int(chains["draws_written"][i]) for i in kept)
    trimmed = tree.isel(step=slice(0, steps), draw=slice(0, draws), missing_dims="ignore")
    trimmed.attrs = {**tree.attrs, "trimmed_to": {"steps": steps, "draws": draws}}
    return trimmed


def _holds_something(path: Path) -> bool:
    """`path` exists and is not an empty directory (sample() would then refuse or reuse it)."""
    if not path.exists():
        return False
    return not (path.is_dir() and not any(path.iterdir()))


@atexit.register
def _stop_running_jobs() -> None:
    """At interpreter exit, stop running jobs so their stores end "stopped", not "killed"."""
    jobs = list(_running_jobs)
    for job in jobs:
        job.stop()
    for job in jobs:
        job.wait(10.0)
