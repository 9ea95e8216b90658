"""SamplingJob: sample() in a background thread that can be stopped, watched and waited for."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
from live_fixtures import observables_of

from devinterp_ui.live import StoreReader
from devinterp_ui.live.job import SamplingJob
from devinterp_ui.store import StoreConflictError


def stopping_at(step: int, chain: int = 0):
    """A progress_callback that stops the job once `chain` has finished `step`, and the job
    holder it needs (set holder[0] = job before start)."""
    holder: list[SamplingJob] = []

    def callback(summary):
        if summary.chain == chain and summary.step == step:
            holder[0].stop()

    return callback, holder


def run_stopped_at(model, tokens, settings, tmp_path, step, **extra):
    callback, holder = stopping_at(step, extra.pop("stop_chain", 0))
    job = SamplingJob(
        model,
        tokens,
        observables_of(tokens),
        output_path=tmp_path / "run.zarr",
        progress_callback=callback,
        **{**settings, **extra},
    )
    holder.append(job)
    job.start()
    assert job.wait(60)
    return job


def test_new_job_is_idle_with_no_progress(model, tokens, settings):
    job = SamplingJob(model, tokens, **settings)
    progress = job.progress
    assert job.state == "idle"
    assert progress.steps_done == (0, 0)
    assert progress.total_steps == 9 and progress.total_draws == 6
    assert job.result is None and job.error is None
    assert job.wait(0) is False


def test_completed_job_returns_the_tree_with_every_draw(model, tokens, settings, tmp_path):
    job = SamplingJob(
        model, tokens, observables_of(tokens), output_path=tmp_path / "run.zarr", **settings
    )
    job.start()
    assert job.wait(60)
    assert job.state == "completed"
    data = job.result.dataset
    assert data.sizes["draw"] == 6 and data.sizes["step"] == 9
    assert np.isfinite(data["loss_val"].values).all()
    assert job.result.attrs["completed"] == 1


def test_progress_counts_every_step_and_draw_when_done(model, tokens, settings):
    job = SamplingJob(model, tokens, **settings).start()
    job.wait(60)
    progress = job.progress
    assert progress.steps_done == (9, 9) and progress.draws_done == (6, 6)
    assert progress.chain_status == ("completed", "completed")
    assert progress.fraction == 1.0
    assert progress.eta_seconds == 0.0
    assert progress.steps_per_second > 0


def test_progress_reports_rate_and_eta_while_running(model, tokens, settings):
    gate, seen = threading.Event(), []

    def hold_at_step_5(summary):
        if summary.chain == 1 and summary.step == 5:
            gate.wait(30)

    job = SamplingJob(model, tokens, progress_callback=hold_at_step_5, **settings).start()
    while job.progress.steps_done != (6, 6):
        job.wait(0.01)
    seen.append(job.progress)
    gate.set()
    job.wait(60)
    assert seen[0].state == "running"
    assert seen[0].steps_per_second > 0
    assert seen[0].eta_seconds == pytest.approx(2 * 3 / seen[0].steps_per_second)


def test_starting_a_started_job_raises(model, tokens, settings):
    job = SamplingJob(model, tokens, **settings).start()
    with pytest.raises(RuntimeError, match="already started"):
        job.start()
    job.wait(60)
    with pytest.raises(RuntimeError, match="runs once"):
        job.start()


def test_invalid_setting_raises_at_construction(model, tokens, settings):
    with pytest.raises(ValueError, match="lr must be > 0"):
        SamplingJob(model, tokens, **{**settings, "lr": -1.0})


def test_missing_required_setting_raises_at_construction(model, tokens):
    with pytest.raises(ValueError, match="n_beta is required"):
        SamplingJob(model, tokens, lr=1e-3)


def test_unknown_argument_raises_at_construction(model, tokens, settings):
    with pytest.raises(TypeError, match="num_chians"):
        SamplingJob(model, tokens, num_chians=3, **settings)


def test_stop_event_argument_is_refused(model, tokens, settings):
    with pytest.raises(TypeError, match=r"job\.stop\(\)"):
        SamplingJob(model, tokens, stop_event=threading.Event(), **settings)


def test_data_error_raises_from_start(model, tokens, settings):
    job = SamplingJob(model, tokens, **{**settings, "batch_size": 1000})
    with pytest.raises(ValueError, match="batch_size=1000 is larger than the dataset"):
        job.start()
    assert job.state == "failed"
    assert "batch_size=1000" in job.error.message


def test_incomplete_store_at_output_path_raises_from_start(model, tokens, settings, tmp_path):
    run_stopped_at(model, tokens, settings, tmp_path, step=2)
    again = SamplingJob(
        model, tokens, observables_of(tokens), output_path=tmp_path / "run.zarr", **settings
    )
    with pytest.raises(StoreConflictError, match="incomplete run"):
        again.start()
    assert again.state == "failed"


def test_job_without_output_path_writes_a_store_a_reader_can_follow(model, tokens, settings):
    job = SamplingJob(model, tokens, **settings).start()
    job.wait(60)
    rows = StoreReader(job.output_path).read_new()
    assert rows.status.status == "completed"
    assert rows.steps.sizes["row"] == 2 * 9
    assert job.result.dataset["sampling_loss_micro"].shape[:2] == (2, 9)


def test_closing_a_job_deletes_its_own_store_but_keeps_the_result(model, tokens, settings):
    job = SamplingJob(model, tokens, **settings).start()
    job.close()
    assert not job.output_path.exists()
    assert np.isfinite(job.result.dataset["sampling_loss"].values).all()


def test_stop_returns_before_the_run_has_ended(model, tokens, settings):
    gate = threading.Event()

    def hold_at_step_2(summary):
        if summary.step == 2:
            gate.wait(30)

    job = SamplingJob(model, tokens, progress_callback=hold_at_step_2, **settings).start()
    while job.progress.steps_done[0] < 3:
        job.wait(0.01)
    job.stop()  # the sampling thread is held inside step 2, so this cannot wait for it
    assert job.state == "stopping"
    gate.set()
    assert job.wait(60)
    assert job.state == "stopped"


def test_stop_during_burnin_leaves_no_draws(model, tokens, settings, tmp_path):
    job = run_stopped_at(model, tokens, settings, tmp_path, step=1)
    assert job.state == "stopped"
    assert job.result.dataset.sizes["step"] == 2
    assert job.result.dataset.sizes["draw"] == 0
    assert StoreReader(tmp_path / "run.zarr").status().status == "stopped"


def test_stop_at_the_first_draw_keeps_one_draw(model, tokens, settings, tmp_path):
    job = run_stopped_at(model, tokens, settings, tmp_path, step=3)
    data = job.result.dataset
    assert job.state == "stopped"
    assert data.sizes["step"] == 4 and data.sizes["draw"] == 1
    assert np.isfinite(data["loss_val"].values).all()


def test_stop_at_the_last_step_completes_the_run(model, tokens, settings, tmp_path):
    job = run_stopped_at(model, tokens, settings, tmp_path, step=8)
    assert job.state == "completed"
    assert job.result.dataset.sizes["draw"] == 6
    assert StoreReader(tmp_path / "run.zarr").status().completed


def test_stop_one_step_before_the_end_keeps_all_but_the_last_draw(
    model, tokens, settings, tmp_path
):
    job = run_stopped_at(model, tokens, settings, tmp_path, step=7)
    data = job.result.dataset
    assert job.state == "stopped"
    assert data.sizes["step"] == 8 and data.sizes["draw"] == 5
    assert np.isfinite(data["sampling_loss"].values).all()


def test_stopped_result_is_trimmed_to_the_rows_every_chain_wrote(model, tokens, settings, tmp_path):
    # Sequential: chain 0 finishes all 9 steps before chain 1 starts; stop chain 1 at step 4.
    # Step 4 is reported once step 5 is launched, so chain 1 ends after step 5.
    job = run_stopped_at(
        model, tokens, settings, tmp_path, step=4, stop_chain=1, chain_schedule="sequential"
    )
    assert job.progress.steps_done == (9, 6)
    assert job.result.dataset.sizes["step"] == 6
    assert job.result.dataset.sizes["draw"] == 3
    assert job.result.attrs["trimmed_to"] == {"steps": 6, "draws": 3}
    assert np.isfinite(job.result.dataset["sampling_loss_micro"].values).all()


def test_loss_fn_exception_is_reported_with_traceback_and_the_store_says_failed(
    model, tokens, settings, tmp_path
):
    calls = [0]

    def flaky_loss(model, batch):
        calls[0] += 1
        if calls[0] > 12:  # past the shape probe and the init loss: inside the chains
            raise RuntimeError("loss exploded on purpose")
        logits = model(batch)
        return torch.nn.functional.cross_entropy(
            logits[:, :-1].transpose(1, 2), batch[:, 1:], reduction="none"
        )

    job = SamplingJob(
        model, tokens, loss_fn=flaky_loss, output_path=tmp_path / "run.zarr", **settings
    ).start()
    job.wait(60)
    assert job.state == "failed"
    assert job.error.message == "RuntimeError: loss exploded on purpose"
    assert "Traceback" in job.error.traceback and "flaky_loss" in job.error.traceback
    assert job.result is None
    status = StoreReader(tmp_path / "run.zarr").status()
    assert status.status == "failed"
    assert "loss exploded on purpose" in status.error


def test_every_chain_going_non_finite_fails_the_job_without_traceback(model, tokens, settings):
    calls = [0]

    def nan_after_setup(model, batch):
        calls[0] += 1
        losses = torch.nn.functional.cross_entropy(
            model(batch)[:, :-1].transpose(1, 2), batch[:, 1:], reduction="none"
        )
        return losses * float("nan") if calls[0] > 12 else losses

    job = SamplingJob(model, tokens, loss_fn=nan_after_setup, **settings)
    with pytest.warns(RuntimeWarning, match="chains failed"):
        job.start()
        job.wait(60)
    assert job.state == "failed"
    assert "every chain failed" in job.error.message and job.error.traceback is None
    assert job.progress.chain_status == ("failed", "failed")
    assert all("non-finite" in e for e in job.progress.chain_errors)


def test_user_progress_callback_sees_every_step(model, tokens, settings):
    seen = []
    job = SamplingJob(model, tokens, progress_callback=seen.append, **settings).start()
    job.wait(60)
    assert sorted((s.chain, s.step) for s in seen) == [(c, s) for c in range(2) for s in range(9)]


def test_wait_times_out_while_the_run_goes_on(model, tokens, settings):
    gate = threading.Event()
    job = SamplingJob(model, tokens, progress_callback=lambda s: gate.wait(30), **settings)
    job.start()
    assert job.wait(0.05) is False
    assert job.state == "running"
    gate.set()
    assert job.wait(60) is True


def test_a_completed_store_at_output_path_is_reused(model, tokens, settings, tmp_path):
    path = tmp_path / "run.zarr"
    SamplingJob(model, tokens, observables_of(tokens), output_path=path, **settings).start().wait()
    again = SamplingJob(model, tokens, observables_of(tokens), output_path=path, **settings)
    again.start()
    assert again.wait(60)
    assert again.state == "completed"
    assert again.progress.steps_done == (9, 9)
    assert again.result.dataset.sizes["draw"] == 6
