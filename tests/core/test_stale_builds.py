"""A store half-built by a writer that died is cleared away by the next run at that path."""

import os
import subprocess
import sys

from devinterp_ui import sample
from devinterp_ui.store.writer import _HOST, remove_stale_builds


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
