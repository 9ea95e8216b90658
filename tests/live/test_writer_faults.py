"""A write that fails (a full disk) or a writer thread that dies or hangs leaves a store that
says so: the marker reads failed, or the reader reports the run stale within seconds."""

from __future__ import annotations

import errno
import threading
import time

import numpy as np
import pytest
import xarray as xr
from live_fixtures import observables_of

from devinterp_ui import compute_llc, sample
from devinterp_ui.live import StoreReader
from devinterp_ui.live.job import SamplingJob
from devinterp_ui.store import liveness
from devinterp_ui.store.chunk_files import ChunkFiles
from devinterp_ui.store.progress import RunProgress
from devinterp_ui.store.schema import Layout, build_schema
from devinterp_ui.store.writer import StoreWriteError, StoreWriter

DISK_FULL = OSError(errno.ENOSPC, "No space left on device")


@pytest.fixture
def fast_heartbeat(monkeypatch):
    """Beats every 50 ms, so a reader with heartbeat_timeout=1 judges within a second."""
    monkeypatch.setattr(liveness, "HEARTBEAT_INTERVAL", 0.05)


def fail_chunk_writes_after(monkeypatch, calls: int, error: BaseException) -> None:
    """Every ChunkFiles.write after the first `calls` raises `error` (the disk filled up)."""
    real, count = ChunkFiles.write, [0]

    def write(self, coords, data):
        count[0] += 1
        if count[0] > calls:
            raise error
        return real(self, coords, data)

    monkeypatch.setattr(ChunkFiles, "write", write)


def until(condition, timeout: float = 10.0):
    """Poll `condition()` until it returns something truthy; that value, or None on timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.02)
    return None


def bare_writer(path, chains: int = 1) -> tuple[StoreWriter, RunProgress]:
    """A writer of a small store with a fresh marker, as sample() creates it."""
    layout = Layout(chains, 4, 2, 2, 2, 3, 4, {}, False)
    progress = RunProgress.fresh(chains, 4, 2)
    return StoreWriter(path, build_schema(layout), {"progress": progress.to_json()}), progress


def test_a_full_disk_mid_run_marks_the_store_failed(model, tokens, settings, tmp_path, monkeypatch):
    path = tmp_path / "run.zarr"
    fail_chunk_writes_after(monkeypatch, 40, DISK_FULL)
    with pytest.raises(StoreWriteError, match="No space left on device") as raised:
        sample(
            model, tokens, observables_of(tokens), output_path=path, progress_bar=False, **settings
        )
    assert isinstance(raised.value.__cause__, OSError)
    assert raised.value.__cause__.errno == errno.ENOSPC

    status = StoreReader(path).status()
    assert status.status == "failed" and status.finished
    assert "writing the store failed" in status.error and "No space left" in status.error
    assert set(status.chain_status) == {"failed"}
    assert all("No space left" in e for e in status.chain_errors)
    assert 0 < min(status.steps_written) < 9  # the rows that landed before the disk filled
    data = xr.open_datatree(str(path), engine="zarr").dataset.load()
    for c, steps in enumerate(status.steps_written):
        assert np.isfinite(data["sampling_loss_micro"].values[c, :steps]).all()


def test_rows_after_a_failed_write_count_only_up_to_the_marker(
    model, tokens, settings, tmp_path, monkeypatch
):
    path = tmp_path / "run.zarr"
    fail_chunk_writes_after(monkeypatch, 40, DISK_FULL)
    with pytest.raises(StoreWriteError):
        sample(model, tokens, {}, output_path=path, progress_bar=False, **settings)
    status = StoreReader(path).status()
    tree = xr.open_datatree(str(path), engine="zarr")
    llc = compute_llc(tree)
    assert llc["n_steps_used"].values.tolist() == [
        max(0, n - settings["num_burnin_steps"]) for n in status.steps_written
    ]
    rows = StoreReader(path).read_new()
    assert rows.steps.sizes["row"] == sum(status.steps_written)


def test_a_full_disk_that_refuses_the_marker_too_is_reported_stale_within_seconds(
    model, tokens, settings, tmp_path, monkeypatch, fast_heartbeat
):
    path = tmp_path / "run.zarr"
    fail_chunk_writes_after(monkeypatch, 40, DISK_FULL)

    def no_space(self, status, error):  # the failure marker cannot be written either
        return None

    monkeypatch.setattr(StoreWriter, "_write_ended_marker", no_space)
    with pytest.raises(StoreWriteError):
        sample(model, tokens, {}, output_path=path, progress_bar=False, **settings)
    reader = StoreReader(path, heartbeat_timeout=1.0)
    assert reader.status().recorded_status == "running"  # the marker could not say otherwise
    stale = until(lambda: (s := reader.status()).status == "stale" and s, timeout=10)
    assert stale, reader.status()
    assert stale.writer_alive is True and "no heartbeat from the writer" in stale.note


def test_a_writer_thread_that_dies_marks_the_store_failed(
    model, tokens, settings, tmp_path, monkeypatch
):
    class ThreadDeath(BaseException):
        """Not an Exception: what ends a thread that nobody expected to end."""

    path = tmp_path / "run.zarr"
    fail_chunk_writes_after(monkeypatch, 10, ThreadDeath())
    with pytest.raises(StoreWriteError, match="ThreadDeath"):
        sample(model, tokens, {}, output_path=path, progress_bar=False, **settings)
    status = StoreReader(path).status()
    assert status.status == "failed" and "ThreadDeath" in status.error


def test_a_hung_writer_thread_is_reported_stale_then_running_again(
    model, tokens, settings, tmp_path, monkeypatch, fast_heartbeat
):
    path = tmp_path / "run.zarr"
    real, release, hung = ChunkFiles.write, threading.Event(), threading.Event()

    def write(self, coords, data):
        if not release.is_set():
            hung.set()
            release.wait(30)  # a write stuck in the kernel (a hung network filesystem)
        return real(self, coords, data)

    monkeypatch.setattr(ChunkFiles, "write", write)
    job = SamplingJob(model, tokens, {}, output_path=path, **{**settings, "flush_interval": 0.01})
    job.start()
    try:
        assert hung.wait(10)
        reader = StoreReader(path, heartbeat_timeout=1.0)
        stale = until(lambda: (s := reader.status()).status == "stale" and s, timeout=10)
        assert stale, reader.status()
        assert job.state == "running"  # the sampling thread itself is fine
    finally:
        release.set()
    assert job.wait(30) and job.state == "completed"
    assert reader.status().status == "completed"


def test_a_live_writer_beats_while_nothing_is_flushed(tmp_path, fast_heartbeat):
    """Between store creation and the first flush (the initial loss of a large model can take
    minutes) the heartbeat already runs."""
    writer, progress = bare_writer(tmp_path / "run.zarr", chains=1)
    try:
        time.sleep(0.5)
        age = liveness.heartbeat_age(tmp_path / "run.zarr")
        assert age is not None and age < 0.4
        assert StoreReader(tmp_path / "run.zarr", heartbeat_timeout=1.0).status().status == (
            "running"
        )
    finally:
        writer.close()


def test_fail_marks_a_run_that_never_started_failed(tmp_path):
    """For callers that give up between creating the store and running the chains."""
    writer, progress = bare_writer(tmp_path / "run.zarr", chains=2)
    writer.fail(ValueError("loss_fn returned NaN at the checkpoint"))
    status = StoreReader(tmp_path / "run.zarr").status()
    assert status.status == "failed"
    assert status.error == "ValueError: loss_fn returned NaN at the checkpoint"
    assert status.steps_written == (0, 0) and status.chain_status == ("failed", "failed")


def test_end_marks_a_run_stopped_before_its_chains_ran_stopped(tmp_path):
    writer, progress = bare_writer(tmp_path / "run.zarr", chains=2)
    writer.end("stopped")
    status = StoreReader(tmp_path / "run.zarr").status()
    assert status.status == "stopped" and status.finished and status.error is None
    with pytest.raises(ValueError, match="'failed' or 'stopped'"):
        writer.end("completed")


def test_a_full_disk_on_a_whole_array_write_marks_the_store_failed(tmp_path, monkeypatch):
    """init_loss and the observables' rows are written synchronously, before any flush."""
    writer, progress = bare_writer(tmp_path / "run.zarr", chains=2)
    real = type(writer.arrays["init_loss"]).__setitem__

    def disk_full(self, key, value):
        if self.name.endswith("init_loss"):
            raise DISK_FULL
        return real(self, key, value)

    monkeypatch.setattr(type(writer.arrays["init_loss"]), "__setitem__", disk_full)
    with pytest.raises(StoreWriteError, match="No space left"):
        writer.write_whole("init_loss", np.ones((2, 3)))
    status = StoreReader(tmp_path / "run.zarr").status()
    assert status.status == "failed" and "No space left" in status.error
    with pytest.raises(StoreWriteError):
        writer.flush(progress)


def test_the_writer_thread_ends_when_its_store_is_deleted(tmp_path, fast_heartbeat):
    """A caller that gives up and deletes the store (a temporary one) leaks no beating thread."""
    import shutil

    writer, progress = bare_writer(tmp_path / "run.zarr", chains=1)
    thread = writer._thread
    assert thread.is_alive()
    shutil.rmtree(tmp_path / "run.zarr")
    thread.join(5)
    assert not thread.is_alive()


FILE_LIMIT_SCRIPT = """
import resource, signal, sys
sys.path[:0] = [{tests_dir!r}, {tests_root!r}]
import torch
torch.set_num_threads(1)
from live_fixtures import ToyLM, VOCAB, ROWS, SEQ_LEN
from devinterp_ui import sample
torch.manual_seed(0)
tokens = torch.randint(0, VOCAB, (ROWS, SEQ_LEN), generator=torch.Generator().manual_seed(1))
# The kernel refuses to grow any file past 16 KiB (EFBIG), as a full disk refuses (ENOSPC):
# the root zarr.json (about 8 KiB) still fits, a row chunk stops fitting after ~120 rows.
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (16384, 16384))
try:
    sample(ToyLM(), tokens, {{}}, output_path=sys.argv[1], lr=1e-3, n_beta=10.0, num_chains=2,
           num_draws=400, batch_size=8, num_init_loss_batches=1, progress_bar=False,
           flush_interval=0.0)
    print("NO ERROR")
except Exception as exc:
    print(type(exc).__name__, exc)
"""


def test_a_real_write_refused_by_the_kernel_marks_the_store_failed(tmp_path):
    """A real process whose file writes the kernel refuses (RLIMIT_FSIZE: EFBIG, the same
    failure path as ENOSPC): the store ends failed with the OS error, its rows readable."""
    import subprocess
    import sys
    from pathlib import Path

    here = Path(__file__).parent
    script = tmp_path / "limited.py"
    script.write_text(FILE_LIMIT_SCRIPT.format(tests_dir=str(here), tests_root=str(here.parent)))
    path = tmp_path / "run.zarr"
    done = subprocess.run(
        [sys.executable, str(script), str(path)], capture_output=True, text=True, timeout=300
    )
    assert done.stdout.startswith("StoreWriteError"), (done.stdout, done.stderr[-2000:])
    assert "File too large" in done.stdout
    status = StoreReader(path).status()
    assert status.status == "failed" and "File too large" in status.error
    assert 50 < min(status.steps_written) < 400
    data = xr.open_datatree(str(path), engine="zarr").dataset.load()
    for c, steps in enumerate(status.steps_written):
        assert np.isfinite(data["sampling_loss_micro"].values[c, :steps]).all()
    assert not list(path.rglob("*.partial"))
