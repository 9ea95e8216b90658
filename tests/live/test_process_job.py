"""`DemoProcessJob`: a demo sampled in a child process gives the store a thread gives, stops on
request, and reports a failure in the child with its message (the served dashboard's runs)."""

from __future__ import annotations

import time

import numpy as np
import pytest
import xarray as xr

from devinterp_ui.demo import load_demo
from devinterp_ui.live import SamplingJob
from devinterp_ui.live.process_job import DemoProcessJob

SETTINGS = dict(
    lr=1e-3, n_beta=20.0, localization=10.0, num_chains=2, num_draws=12, batch_size=16, init_seed=3
)


def test_a_child_process_samples_the_same_draws_as_a_thread(tmp_path):
    demo = load_demo("dln")
    thread = SamplingJob(
        demo.model, demo.datasets["train"], {}, loss_fn=demo.loss_fn,
        output_path=tmp_path / "thread.zarr", **SETTINGS,
    ).start()  # fmt: skip
    thread.wait()
    child = DemoProcessJob("dln", demo.step, [], output_path=tmp_path / "child.zarr", **SETTINGS)
    assert child.state == "idle"
    child.start()
    assert child.state == "running"
    assert child.wait(300), "the child did not end"
    assert child.state == "completed", child.error
    assert child.error is None
    progress = child.progress
    assert progress.steps_done == (12, 12) and progress.state == "completed"
    ours, theirs = child.result, thread.result
    np.testing.assert_array_equal(
        ours["sampling_loss_micro"].values, theirs["sampling_loss_micro"].values
    )
    child.close()
    assert child.state == "completed" and child.progress.steps_done == (12, 12)
    xr.open_datatree(str(tmp_path / "child.zarr"), engine="zarr")  # the store stays


def test_stop_ends_the_child_at_a_step_and_leaves_a_stopped_store(tmp_path):
    path = tmp_path / "long.zarr"
    job = DemoProcessJob(
        "dln", load_demo("dln").step, [], output_path=path, **{**SETTINGS, "num_draws": 10**6}
    ).start()
    deadline = time.monotonic() + 300
    while sum(job.progress.steps_done) < 4 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert sum(job.progress.steps_done) >= 4, "the child made no progress"
    job.stop()
    assert job.state in ("stopping", "stopped")
    assert job.wait(120)
    assert job.state == "stopped", job.error
    tree = job.result
    assert tree.attrs["progress"]["status"] == "stopped"
    assert 0 < tree["sampling_loss_micro"].sizes["step"] < 10**6
    job.close()


def test_a_failure_in_the_child_comes_back_with_its_message(tmp_path):
    # batch_size above the demo's rows passes the settings check and fails on the data.
    job = DemoProcessJob(
        "dln", load_demo("dln").step, ["no_such_dataset"], output_path=tmp_path / "bad.zarr",
        **SETTINGS,
    ).start()  # fmt: skip
    assert job.wait(300)
    assert job.state == "failed"
    assert "no_such_dataset" in job.error.message
    assert job.failed_before_store and job.result is None
    job.close()


def test_bad_settings_are_refused_before_any_process_starts(tmp_path):
    with pytest.raises(ValueError, match="lr"):
        DemoProcessJob("dln", 0, [], output_path=tmp_path / "x.zarr", lr=-1.0)
    assert not (tmp_path / "x.zarr").exists()


def test_the_child_samples_at_a_lower_priority_than_the_server(tmp_path):
    import os

    from devinterp_ui.live.process_job import NICE

    job = DemoProcessJob(
        "dln", load_demo("dln").step, [], output_path=tmp_path / "nice.zarr",
        **{**SETTINGS, "num_draws": 10**6},
    ).start()  # fmt: skip
    try:
        ours = os.getpriority(os.PRIO_PROCESS, 0)
        assert os.getpriority(os.PRIO_PROCESS, job._proc.pid) == min(ours + NICE, 19)
    finally:
        job.close()
    assert job.state in ("stopped", "failed", "completed")
