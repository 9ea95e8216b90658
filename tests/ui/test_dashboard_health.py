"""The dashboard's Health panel against the run it shows: the final verdict of a run whose every
chain failed names `nonfinite` and shows no LLC (as the result block shows none), and the panel's
burn-in is the run's setting from the first rows on."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import torch
from tiny_models import TinyLM

from devinterp_ui.losses import next_token_loss
from devinterp_ui.ui.dashboard import Dashboard


def _poll_until(dashboard, condition, timeout=120.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        dashboard.poll()
        time.sleep(0.05)


@pytest.fixture
def failing_on_release(data, tmp_path):
    """(dashboard, release): a slow run that goes on until `release` is set; from then on every
    loss is NaN, so every chain fails at its next step (the job keeps no tree)."""
    release = threading.Event()

    def loss(model, batch):
        time.sleep(0.02)  # slow enough that the test acts while the run is going
        losses = next_token_loss(model, batch)
        return losses * float("nan") if release.is_set() else losses

    torch.manual_seed(0)
    dashboard = Dashboard(
        TinyLM(),
        data,
        {},
        loss_fn=loss,
        runs_dir=tmp_path,
        lr=1e-3,
        n_beta=20.0,
        num_chains=2,
        num_draws=5000,
        batch_size=8,
        num_burnin_steps=2,
        num_init_loss_batches=1,
    )
    yield dashboard, release
    release.set()
    if dashboard.job is not None:
        dashboard.job.stop()
        dashboard.job.wait(60)


def _draws(dashboard) -> int:
    diag = dashboard.health.diagnostics
    return -1 if diag is None else int(diag.attrs["num_draws"])


def _codes(dashboard) -> set[str]:
    return {f.code for f in dashboard.health.flags}


def test_every_chain_failing_after_the_last_live_update_still_shows_nonfinite(failing_on_release):
    dashboard, release = failing_on_release
    dashboard.start()
    _poll_until(dashboard, lambda: dashboard.health.diagnostics is not None)
    assert "nonfinite" not in _codes(dashboard)  # the chains are still running
    # Live updates from now on fall inside the panel's throttle (as one 2 s after the last
    # does when the chains fail within 2 s): the final verdict must not depend on them.
    dashboard.health.min_interval = 1e9
    release.set()
    assert dashboard.wait(120)
    assert dashboard.current.status == "failed"
    assert dashboard.result is None  # every chain failed: the job keeps no tree
    assert "nonfinite" in _codes(dashboard)
    assert dashboard.health.severity == "error"
    assert dashboard.health.diagnostics.attrs["chain_status"] == ["failed", "failed"]
    assert "2 of 2 chains failed" in dashboard.health._flags_pane.object


def test_a_run_whose_chains_all_failed_shows_no_llc_in_the_panel_nor_in_the_result(
    failing_on_release,
):
    dashboard, release = failing_on_release
    dashboard.start()
    _poll_until(dashboard, lambda: _draws(dashboard) >= 3)
    release.set()
    assert dashboard.wait(120)
    diag = dashboard.health.diagnostics
    # The chains' rows before their failure are finite, but a failed chain has no LLC.
    assert np.isfinite(diag["loss"].values).any()
    assert np.isnan(diag["llc"].values).all()
    assert np.isnan(float(diag["llc_mean"])) and np.isnan(float(diag["llc_std"]))
    assert '<span class="health-llc">n/a</span>' in dashboard.health._summary.object
    assert "LLC =" not in dashboard.result_view.text  # the result block shows none either
    assert "failed" in dashboard.result_view.text

    # The same store opened by path: its tree is there, and still no LLC comes out of it.
    dashboard.open_store(dashboard.current.path)
    _poll_until(dashboard, lambda: not dashboard.running)
    assert "No LLC" in dashboard.result_view.text and "LLC =" not in dashboard.result_view.text
    assert np.isnan(dashboard.current.per_chain["LLC"]).all()
    assert "nonfinite" in _codes(dashboard)
    assert '<span class="health-llc">n/a</span>' in dashboard.health._summary.object


def test_the_panel_shows_the_runs_burnin_from_the_first_row_on(failing_on_release):
    dashboard, release = failing_on_release
    dashboard.start()
    # The first live update may come with fewer steps than the burn-in (here 2).
    _poll_until(dashboard, lambda: dashboard.health.diagnostics is not None)
    assert dashboard.health.burnin == 2
    assert dashboard.health.slider.value == 2
    assert "after a burn-in of 2 steps" in dashboard.health._summary.object
    rows = dashboard.reader.accumulated().sizes["step"]
    _poll_until(dashboard, lambda: dashboard.reader.accumulated().sizes["step"] > rows + 3)
    dashboard.health.update(dashboard.reader.accumulated(), force=True)
    assert dashboard.health.burnin == 2
    assert dashboard.health.diagnostics.attrs["burnin"] == 2
    assert "after a burn-in of 2 steps" in dashboard.health._summary.object
    assert dashboard._burnin_override is None  # the panel moved nothing on its own


def test_a_failed_chain_gives_no_llc_in_the_result_block_nor_in_the_panel(make_store, tmp_path):
    import xarray as xr

    from devinterp_ui.ui.health_panel import HealthPanel
    from devinterp_ui.ui.results import RunRecord, summarize

    tree = xr.open_datatree(str(make_store(tmp_path / "r.zarr")), engine="zarr").load()
    # Chain 1 as a chain that failed after finite rows (their loss diverging) records it.
    progress = tree.attrs["progress"]
    progress["chains"]["status"] = ["completed", "failed"]
    tree.attrs["progress"] = progress
    record = summarize(RunRecord(1, "r.zarr", {}), tree)
    panel = HealthPanel()
    panel.update(tree)
    diag = panel.diagnostics
    assert np.isfinite(diag["loss"].values[1]).all()
    assert np.isnan(record.per_chain["LLC"][1]) and np.isnan(diag["llc"].values[1])
    assert record.llc_mean == pytest.approx(float(record.per_chain["LLC"][0]), abs=1e-4)
    assert float(diag["llc_mean"]) == pytest.approx(record.llc_mean, rel=1e-5)
    assert record.llc_std == 0.0 and float(diag["llc_std"]) == 0.0
    assert list(record.per_chain["status"]) == ["completed", "failed"]


def test_a_run_ending_while_the_status_line_is_read_still_shows_its_final_state(
    failing_on_release, monkeypatch
):
    """The poll reads the status line and asks whether the job has ended: a job that fails in
    between (here made to, by failing it right after the line is read) must not leave the line
    saying "running" for good."""
    from devinterp_ui.ui import poll_loop

    dashboard, release = failing_on_release
    real = poll_loop.status_line

    def read_then_fail_the_run(status, job=None):
        line = real(status, job)
        if job is not None and not release.is_set():
            release.set()  # every chain fails at its next step
            job.wait(120)
        return line

    dashboard.start()
    _poll_until(dashboard, lambda: dashboard.health.diagnostics is not None)
    monkeypatch.setattr(poll_loop, "status_line", read_then_fail_the_run)
    assert dashboard.wait(120)
    assert dashboard.current.status == "failed"
    assert "<b>failed</b>" in dashboard.status_text
