"""Half-built stores: one left by a writer that died is cleared away by the next run at that
path; two writers starting on one path leave one store and a clear conflict for the loser."""

import os
import subprocess
import sys
import threading

import pytest

from devinterp_ui import StoreConflictError, sample
from devinterp_ui.store import writer as writer_module
from devinterp_ui.store.cleanup import BUILD_HOST as _HOST
from devinterp_ui.store.cleanup import remove_stale_builds
from devinterp_ui.store.writer import StoreWriter


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def build_dir(tmp_path, name, host, pid):
    d = tmp_path / f".{name}.{host}-{pid}.deadbeef.building"
    (d / "sampling_loss").mkdir(parents=True)
    return d


def test_builds_of_dead_writers_on_this_host_are_removed(tmp_path):
    stale = build_dir(tmp_path, "run.zarr", _HOST, dead_pid())
    live = build_dir(tmp_path, "run.zarr", _HOST, os.getpid())
    elsewhere = build_dir(tmp_path, "run.zarr", "another-host", dead_pid())
    other_store = build_dir(tmp_path, "other.zarr", _HOST, dead_pid())
    assert remove_stale_builds(tmp_path / "run.zarr") == [stale]
    assert not stale.exists()
    assert live.exists() and elsewhere.exists() and other_store.exists()


def test_sample_clears_a_stale_build_beside_its_output(tiny_lm, token_data, tmp_path):
    stale = build_dir(tmp_path, "run.zarr", _HOST, dead_pid())
    sample(
        tiny_lm,
        token_data,
        {},
        lr=1e-3,
        n_beta=10.0,
        num_chains=1,
        num_draws=2,
        batch_size=8,
        num_init_loss_batches=1,
        progress_bar=False,
        output_path=tmp_path / "run.zarr",
    )
    assert not stale.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.zarr"]


# --- two writers on one path -------------------------------------------------------------------

RUN = {
    "n_beta": 10.0,
    "num_chains": 1,
    "num_draws": 20,
    "batch_size": 8,
    "num_init_loss_batches": 1,
    "progress_bar": False,
}


def race(monkeypatch, tiny_lm, token_data, path, lrs):
    """Run sample() at `path` in one thread per key (a float: that lr; a str: lr=1e-3), all
    past their existence check before any creates the store (the window that two processes
    starting at once share)."""
    real_create, barrier = writer_module.create_store, threading.Barrier(len(lrs), timeout=60)

    def wait_then_create(path, schema, attrs):
        barrier.wait()  # each writer has checked the path and found nothing
        return real_create(path, schema, attrs)

    monkeypatch.setattr(writer_module, "create_store", wait_then_create)
    outcomes: dict[object, object] = {}

    def run(key):
        lr = key if isinstance(key, float) else 1e-3  # str keys: the same settings twice
        try:
            outcomes[key] = sample(tiny_lm, token_data, {}, lr=lr, output_path=path, **RUN)
        except BaseException as exc:  # noqa: BLE001 - the outcome under test
            outcomes[lr] = exc

    threads = [threading.Thread(target=run, args=(lr,)) for lr in lrs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    return outcomes


def test_the_loser_of_two_writers_with_different_settings_gets_a_conflict(
    tiny_lm, token_data, tmp_path, monkeypatch
):
    outcomes = race(monkeypatch, tiny_lm, token_data, tmp_path / "run.zarr", [1e-3, 2e-3])
    errors = [o for o in outcomes.values() if isinstance(o, BaseException)]
    assert len(errors) == 1, outcomes
    assert isinstance(errors[0], StoreConflictError), repr(errors[0])
    assert "different configuration" in str(errors[0]) and "lr" in str(errors[0])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.zarr"]  # no .building left


def test_the_loser_of_two_writers_with_the_same_settings_is_told_to_wait(
    tiny_lm, token_data, tmp_path, monkeypatch
):
    outcomes = race(monkeypatch, tiny_lm, token_data, tmp_path / "run.zarr", ["a", "b"])
    errors = [o for o in outcomes.values() if isinstance(o, BaseException)]
    assert len(errors) == 1, outcomes
    assert isinstance(errors[0], StoreConflictError), repr(errors[0])
    # The winner is still sampling, or already done: either way the loser is told what to do.
    assert "being written right now" in str(errors[0]) or "call sample() again" in str(errors[0])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.zarr"]


def test_a_writer_that_finds_a_store_appeared_meanwhile_removes_its_build(tmp_path):
    from devinterp_ui.store.progress import RunProgress
    from devinterp_ui.store.schema import Layout, build_schema

    schema = build_schema(Layout(1, 4, 2, 2, 2, 3, 4, {}, False))
    progress = RunProgress.fresh(1, 4, 2).to_json()
    first = StoreWriter(tmp_path / "run.zarr", schema, {"metadata": {"a": 1}, "progress": progress})
    try:
        with pytest.raises(StoreConflictError, match=r"different configuration: metadata\.a"):
            StoreWriter(tmp_path / "run.zarr", schema, {"metadata": {"a": 2}, "progress": progress})
        with pytest.raises(StoreConflictError, match="being written right now"):
            StoreWriter(tmp_path / "run.zarr", schema, {"metadata": {"a": 1}, "progress": progress})
    finally:
        first.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.zarr"]


def test_a_build_that_fails_leaves_nothing_behind(tmp_path, monkeypatch):
    import errno

    import zarr

    from devinterp_ui.store.progress import RunProgress
    from devinterp_ui.store.schema import Layout, build_schema

    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(zarr, "consolidate_metadata", disk_full)
    schema = build_schema(Layout(1, 4, 2, 2, 2, 3, 4, {}, False))
    with pytest.raises(OSError, match="No space left"):
        StoreWriter(
            tmp_path / "run.zarr", schema, {"progress": RunProgress.fresh(1, 4, 2).to_json()}
        )
    assert list(tmp_path.iterdir()) == []


def test_store_conflict_error_is_a_value_error_and_a_runtime_error():
    """devinterp 2.x raises RuntimeError for an existing store; code written for it still
    catches ours."""
    assert issubclass(StoreConflictError, ValueError)
    assert issubclass(StoreConflictError, RuntimeError)
