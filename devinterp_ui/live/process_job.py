"""`DemoProcessJob`: a shipped demo sampled in a child process, with `SamplingJob`'s interface.

Why a process: a served dashboard runs every browser session's callbacks on one event loop in
one process. Sampling threads in that process hold the GIL most of the time on small models,
so with four sessions sampling a form edit took tens of seconds to come back. A child process
samples beside the server instead, at a lower CPU priority (`NICE`), so the operating system
gives the page's clicks precedence and the sampler the rest of the machine.

Only a demo can be rebuilt in a child from its name and step without pickling a model; a
dashboard on the caller's own model (a notebook) keeps its `SamplingJob` thread. The child is
`devinterp_ui.live.demo_worker`; it reports progress and its outcome through JSON files in a
private temporary folder, and the store at `output_path` is the run's record as usual.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from pathlib import Path
from typing import Any

import xarray as xr

from devinterp_ui.config import validate_settings
from devinterp_ui.live.job import trim_to_common_rows
from devinterp_ui.live.job_state import (
    COMPLETED,
    FAILED,
    IDLE,
    RUNNING,
    STOPPED,
    STOPPING,
    JobError,
    JobProgress,
)

# The child's niceness above the server's: the page's clicks first. Mild, because the child
# also competes with the browser and other work on a small machine (10 starved it there).
NICE = 5
# How long stop() waits for a child to end its step and flush before close() kills it.
KILL_AFTER_S = 30.0

_children: weakref.WeakSet[DemoProcessJob] = weakref.WeakSet()


class DemoProcessJob:
    """`sample()` on demo `demo` at checkpoint `step` in a child process.

    observables: names of the demo's datasets to record. settings: `sample()` keywords, checked
    here as `SamplingJob` checks them (TypeError/ValueError before anything starts); checks
    that need the data run in the child and end the job "failed" with their message.
    """

    def __init__(
        self,
        demo: str,
        step: int,
        observables: list[str],
        *,
        output_path: str | Path,
        torch_threads: int = 1,
        **settings: Any,
    ):
        # The declared defaults fill what is not given (the child's sample() uses the same).
        self.config = validate_settings(settings)
        self.output_path = Path(output_path)
        self._spec = {
            "demo": demo,
            "step": int(step),
            "observables": list(observables),
            "output_path": str(self.output_path),
            "settings": settings,
            "torch_threads": int(torch_threads),
        }
        self._lock = threading.Lock()
        self._proc: subprocess.Popen | None = None
        self._folder: Path | None = None
        self._stop_asked = False
        self._outcome: dict | None = None
        self._result: xr.DataTree | None = None
        self._result_read = False
        self._store_was_there = False
        self._started_at: float | None = None
        self._last_progress: dict | None = None

    # --- control -----------------------------------------------------------------------------

    def start(self, wait: bool = False) -> DemoProcessJob:
        """Start the child and return at once (`wait` is accepted for `SamplingJob`'s sake:
        True waits until the store exists or the child has ended)."""
        with self._lock:
            if self._proc is not None:
                raise RuntimeError("this job was already started; a job runs once.")
            self._folder = Path(tempfile.mkdtemp(prefix="devinterp_ui_job_"))
            spec = self._folder / "spec.json"
            spec.write_text(json.dumps(self._spec))
            self._store_was_there = self.output_path.exists()
            self._started_at = time.time()
            log = open(self._folder / "child.log", "wb")  # noqa: SIM115 - the child owns it
            env = dict(os.environ, OMP_NUM_THREADS=str(self._spec["torch_threads"]))
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "devinterp_ui.live.demo_worker", str(spec)],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
            )
            log.close()
            # Set from here, not in a preexec_fn: the server has threads, and a preexec_fn
            # between fork and exec can deadlock then (subprocess's documentation).
            with contextlib.suppress(OSError):  # a child that already ended
                ours = os.getpriority(os.PRIO_PROCESS, 0)
                os.setpriority(os.PRIO_PROCESS, self._proc.pid, min(ours + NICE, 19))
            _children.add(self)
        while wait and not (self.store_created or self._proc.poll() is not None):
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        """Ask the child to end at its next step boundary (SIGTERM); returns at once."""
        with self._lock:
            proc = self._proc
            if proc is None or proc.poll() is not None or self._stop_asked:
                return
            self._stop_asked = True
        with contextlib.suppress(ProcessLookupError):  # ended meanwhile
            proc.send_signal(signal.SIGTERM)

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the child has ended or `timeout` seconds passed; True when ended."""
        if self._proc is None:
            return False
        try:
            self._proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return False
        return True

    def close(self) -> None:
        """Stop the child, wait for it (killing it after `KILL_AFTER_S`), and remove the
        private folder. The store stays."""
        self.stop()
        if self._proc is not None and not self.wait(KILL_AFTER_S):
            self._proc.kill()
            self._proc.wait()
        if self._folder is not None:
            self._read_outcome()
            shutil.rmtree(self._folder, ignore_errors=True)

    # --- state ---------------------------------------------------------------------------------

    @property
    def state(self) -> str:
        """idle, running, stopping, then the child's final state (failed if it died)."""
        if self._proc is None:
            return IDLE
        if self._proc.poll() is None:
            return STOPPING if self._stop_asked else RUNNING
        return self._read_outcome()["state"]

    @property
    def error(self) -> JobError | None:
        if self.state != FAILED:
            return None
        outcome = self._read_outcome()
        return JobError(outcome.get("message") or "the run failed", outcome.get("traceback"))

    @property
    def failed_before_store(self) -> bool:
        return self.state == FAILED and bool(self._read_outcome().get("failed_before_store"))

    @property
    def store_created(self) -> bool:
        return not self._store_was_there and (self.output_path / "zarr.json").is_file()

    @property
    def result(self) -> xr.DataTree | None:
        """The sample tree once the run stopped or completed (as `SamplingJob.result`)."""
        state = self.state
        if state not in (COMPLETED, STOPPED):
            return None
        with self._lock:
            if not self._result_read:
                tree = xr.open_datatree(str(self.output_path), engine="zarr")
                self._result = trim_to_common_rows(tree) if state == STOPPED else tree
                self._result_read = True
            return self._result

    @property
    def progress(self) -> JobProgress:
        state = self.state
        data = None
        if self._folder is not None:
            try:
                data = json.loads((self._folder / "progress.json").read_text())
                self._last_progress = data
            except (OSError, ValueError):  # not written yet, or the folder is closed
                data = self._last_progress
        if data is None:  # the child is still loading the demo
            zeros = (0,) * self.config.num_chains
            elapsed = 0.0 if self._started_at is None else time.time() - self._started_at
            return JobProgress(
                state=state,
                steps_done=zeros,
                draws_done=zeros,
                total_steps=self.config.total_steps,
                total_draws=self.config.num_draws,
                chain_status=("running",) * self.config.num_chains,
                chain_errors=(None,) * self.config.num_chains,
                steps_per_second=None,
                eta_seconds=None,
                elapsed_seconds=elapsed,
            )
        fields = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
        fields["state"] = state
        return JobProgress(**fields)

    def __repr__(self) -> str:
        return f"DemoProcessJob(state={self.state!r}, output_path={str(self.output_path)!r})"

    def _read_outcome(self) -> dict:
        """The child's report; a child that died without one (killed) failed."""
        if self._outcome is not None:
            return self._outcome
        outcome = None
        if self._folder is not None:
            try:
                outcome = json.loads((self._folder / "outcome.json").read_text())
            except (OSError, ValueError):
                outcome = None
        if outcome is None:
            code = self._proc.returncode if self._proc is not None else None
            outcome = {
                "state": FAILED,
                "message": f"the sampling process ended with exit code {code} before "
                f"reporting{_log_tail(self._folder)}",
                "traceback": None,
                "failed_before_store": not self.store_created,
            }
        self._outcome = outcome
        return outcome


def _log_tail(folder: Path | None, chars: int = 600) -> str:
    if folder is None:
        return ""
    try:
        text = (folder / "child.log").read_text(errors="replace").strip()
    except OSError:
        return ""
    return f": {text[-chars:]}" if text else ""


@atexit.register
def _stop_children() -> None:
    """A server that exits stops its children (they also stop when they see it gone)."""
    for job in list(_children):
        job.stop()
