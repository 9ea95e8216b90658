"""Start returns at once, edits during a run apply to the next one, Restart swaps runs, and a
dashboard outside a server session is freed like any object."""

import gc
import threading
import weakref

import pytest
import torch
from tiny_models import TinyLM

from devinterp_ui.losses import next_token_loss
from devinterp_ui.ui.dashboard import Dashboard

BASE = dict(lr=1e-3, n_beta=20.0, num_chains=2, batch_size=8, num_init_loss_batches=1)


def make(data, tmp_path, loss_fn=None, **settings):
    torch.manual_seed(0)
    return Dashboard(TinyLM(), data, {}, loss_fn=loss_fn, runs_dir=tmp_path, **{**BASE, **settings})


def test_start_returns_before_the_inputs_are_checked(data, tmp_path):
    release = threading.Event()

    def held_loss(model, batch):
        release.wait(30)  # the probe forward pass waits here
        return next_token_loss(model, batch)

    # Should start() wait for the store (as before), this timer would free it after 3 s and
    # the store would exist by the time start() returned.
    timer = threading.Timer(3.0, release.set)
    timer.start()
    dash = make(data, tmp_path, loss_fn=held_loss, num_draws=4)
    job = dash.start()
    assert dash.running
    assert not job.store_created
    assert "starting" in dash.status_text
    release.set()
    assert dash.wait(60)
    assert dash.current.status == "completed"
    timer.cancel()


def test_an_input_error_found_in_the_thread_shows_on_the_page(data, tmp_path):
    def wrong_shape(model, batch):
        return next_token_loss(model, batch).sum()  # a scalar, not per-sample losses

    dash = make(data, tmp_path, loss_fn=wrong_shape, num_draws=4)
    job = dash.start()
    assert dash.wait(60)
    assert job.state == "failed" and job.failed_before_store
    assert not dash.running
    assert dash.control.error_pane.visible
    assert "loss_fn" in dash.control.error_html
    assert not dash.control.start_button.disabled


def test_a_dict_of_input_ids_counts_its_rows_as_sample_does(data, tmp_path):
    dash = Dashboard(TinyLM(), {"input_ids": data}, {}, runs_dir=tmp_path, **BASE)
    assert dash.form.valid, dash.form.errors
    assert not dash.control.start_button.disabled
    assert "n = dataset rows = 64" in dash.form.n_beta_hint.object


def test_a_dataset_sample_refuses_shows_its_message_in_the_form(tmp_path):
    dash = Dashboard(TinyLM(), {"tokens": torch.zeros(4, 3)}, {}, runs_dir=tmp_path, **BASE)
    assert not dash.form.valid
    assert "input_ids" in " ".join(dash.form.errors.values())


@pytest.fixture
def slow(data, tmp_path):
    def slow_loss(model, batch):
        threading.Event().wait(0.01)
        return next_token_loss(model, batch)

    return make(data, tmp_path, loss_fn=slow_loss, num_draws=2000)


def test_fields_edited_during_a_run_are_marked_for_the_next_run(slow):
    slow.start()
    slow.form.set_values({"lr": 2e-3})
    assert set(slow.control.pending) == {"lr"}
    assert slow.control.pending_pane.visible
    assert "Applies to the next run: lr 0.001 → 0.002" in slow.control.pending_pane.object
    assert slow.form.widgets["lr"].styles.get("outline")
    slow.form.set_values({"lr": 1e-3})  # back to the running value: no longer pending
    assert slow.control.pending == {}
    assert not slow.form.widgets["lr"].styles.get("outline")
    slow.stop()
    slow.wait(60)


def test_restart_stops_the_run_and_starts_one_with_the_new_settings(slow):
    first = slow.start()
    slow.form.set_values({"lr": 2e-3, "num_draws": 5})
    assert slow.control.restart_button.visible and not slow.control.restart_button.disabled
    slow.restart()
    first.wait(60)
    slow.poll()  # the loop sees the old run end and starts the new one
    second = slow.job
    assert second is not first and first.state == "stopped"
    assert slow.running and slow.control.pending == {}
    assert slow.wait(120)
    assert second.config.lr == 2e-3
    table = slow.library.table.object
    statuses = dict(zip(table["lr"], table["status"], strict=True))
    assert statuses == {1e-3: "stopped", 2e-3: "completed"}


def test_a_dashboard_outside_a_server_session_is_freed(data, tmp_path):
    dash = make(data, tmp_path, num_draws=3)
    dash.start()
    dash.wait(60)
    ref = weakref.ref(dash)
    del dash
    gc.collect()
    assert ref() is None


def test_a_job_started_without_waiting_reports_an_input_error_in_its_state(data):
    from devinterp_ui.live import SamplingJob

    job = SamplingJob(TinyLM(), data, **{**BASE, "batch_size": 1000})
    job.start(wait=False)  # returns at once; the data check runs in the thread
    assert job.wait(30)
    assert job.state == "failed" and job.failed_before_store
    assert "batch_size=1000 is larger than the dataset" in job.error.message
