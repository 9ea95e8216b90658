"""The Health panel without a browser: numbers beside the LLC, badges, escaping, burn-in slider."""

import numpy as np
import pytest
import xarray as xr
from bokeh.document import Document

from devinterp_ui.analysis import diagnose
from devinterp_ui.ui.health_panel import HealthPanel

INIT, N_BETA = 2.0, 10.0


def rows_of(loss, **attrs):
    loss = np.asarray(loss, dtype=np.float64)
    chains, steps = loss.shape
    chain, step = np.meshgrid(np.arange(chains), np.arange(steps), indexing="ij")
    ds = xr.Dataset(
        {"loss": ("row", loss.ravel())},
        coords={"chain": ("row", chain.ravel()), "step": ("row", step.ravel())},
    )
    ds.attrs.update(n_beta=N_BETA, init_loss=INIT, **attrs)
    return ds


def healthy(level=0.3, steps=400, seed=0):
    return INIT + level + 0.05 * np.random.default_rng(seed).standard_normal((4, steps))


def test_a_healthy_run_shows_llc_mcse_spread_rhat_and_ess_and_no_warning():
    panel = HealthPanel()
    rows = rows_of(healthy())
    assert panel.update(rows)
    d = diagnose(rows)
    text = panel._summary.object
    assert f"{float(d['llc_mean']):.4g}" in text and f"{float(d['mcse']):.3g}" in text
    assert "std over chains" in text and "not an error bar" in text and "ESS-based" in text
    assert "R-hat" in text and "ESS bulk" in text and "ESS tail" in text
    assert "health-llc-warning" not in text
    assert panel.severity == "ok" and "No health flag" in panel._flags_pane.object


def test_a_long_run_says_its_convergence_figures_come_from_a_thinned_trace():
    panel = HealthPanel()
    rows = rows_of(healthy(steps=6_000))
    panel.update(rows, max_draws=2_000)
    assert panel.diagnostics.attrs["thin"] == 3
    assert "every k-th draw, k = 3" in panel._summary.object
    panel.update(rows_of(healthy()), force=True)
    assert "health-thin" not in panel._summary.object


def test_a_flagged_run_shows_badges_with_advice_and_a_warning_beside_the_llc():
    panel = HealthPanel()
    panel.update(rows_of(healthy(level=-0.3)))
    assert panel.severity == "warn"
    flags_html = panel._flags_pane.object
    assert "below_init" in flags_html and "negative_llc" in flags_html
    assert flags_html.count("health-advice") == len(panel.flags)
    assert "health-llc-warning" in panel._summary.object


def test_text_from_a_store_is_escaped():
    loss = healthy()
    loss[1, 10:] = np.nan
    evil = '<img src=x onerror="alert(1)">'
    rows = rows_of(
        loss,
        chain_status=["completed", "failed", "completed", "completed"],
        chain_errors=[None, evil, None, None],
    )
    panel = HealthPanel()
    panel.update(rows)
    page = panel._flags_pane.object
    assert "<img" not in page and "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;" in page
    assert panel.severity == "error"


def test_the_burnin_slider_recomputes_the_llc_and_flags_from_the_stored_draws():
    ramp = np.minimum(np.arange(1000) / 100.0, 1.0)
    loss = INIT + 0.5 * ramp[None, :] + 0.02 * np.random.default_rng(1).standard_normal((4, 1000))
    panel = HealthPanel()
    panel.update(rows_of(loss))
    before = float(panel.diagnostics["llc_mean"])
    assert "burnin_short" in {f.code for f in panel.flags}
    assert panel.slider.end == 999
    panel.slider.value = 150
    assert panel.burnin == 150 and panel.diagnostics.attrs["burnin"] == 150
    assert float(panel.diagnostics["llc_mean"]) > before
    assert "burnin_short" not in {f.code for f in panel.flags}
    assert "150 steps" in panel._summary.object


def test_setting_burnin_from_code_moves_the_slider():
    panel = HealthPanel()
    panel.update(rows_of(healthy()))
    panel.burnin = 40
    assert panel.slider.value == 40 and panel.diagnostics.attrs["num_draws"] == 360


def test_updates_while_rows_arrive_are_rate_limited_unless_forced_or_finished():
    panel = HealthPanel(min_interval=60.0)
    assert panel.update(rows_of(healthy(steps=50)))
    assert not panel.update(rows_of(healthy(steps=60)))
    assert panel.diagnostics.attrs["num_draws"] == 50
    assert panel.update(rows_of(healthy(steps=70)), finished=True)
    assert panel.diagnostics.attrs["num_draws"] == 70


def test_a_run_with_too_few_draws_says_so():
    panel = HealthPanel()
    panel.update(rows_of(healthy(steps=3)))
    assert "low_ess" in {f.code for f in panel.flags}
    assert "n/a" in panel._summary.object  # R-hat/ESS cannot be told yet


@pytest.mark.parametrize("source", ["empty", "rows"])
def test_the_panel_renders_to_bokeh_models(source):
    panel = HealthPanel()
    if source == "rows":
        panel.update(rows_of(healthy()))
    root = panel.__panel__().get_root(Document())
    assert root is not None


def test_a_real_run_with_a_failed_chain_shows_the_samplers_error_and_advice(tmp_path):
    import warnings

    import torch
    from tiny_models import ExplodesAbove, exploding_loss

    from devinterp_ui import sample

    starts = [
        float(torch.randn(1, generator=torch.Generator().manual_seed(100 + c))) for c in (0, 1)
    ]
    data = (torch.zeros(16, 1),)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tree = sample(
            # Above the checkpoint (w = 0, so the probe is finite) and below chain 0's start.
            ExplodesAbove(max(starts) / 2),
            data,
            {},
            loss_fn=exploding_loss,
            lr=1e-6,
            n_beta=1e-3,
            num_chains=2,
            num_draws=12,
            batch_size=4,
            init_noise=1.0,
            output_path=tmp_path / "nan.zarr",
            progress_bar=False,
        )
    panel = HealthPanel()
    panel.update(tree)
    assert panel.severity == "error"
    page = panel._flags_pane.object
    assert "non-finite sampling loss at step 0" in page and "bounding_box_size" in page


def test_reset_starts_the_next_run_from_its_own_recorded_burnin():
    panel = HealthPanel()
    panel.update(rows_of(healthy()))
    panel.burnin = 100
    panel.reset()
    assert (
        panel.diagnostics is None and panel.flags == [] and "No draws yet" in panel._summary.object
    )
    panel.update(rows_of(healthy(), num_burnin_steps=7))
    assert panel.burnin == 7 and panel.diagnostics.attrs["burnin"] == 7


def test_the_runs_burnin_holds_while_the_run_has_fewer_steps_than_it():
    """A live run's first update can come with 1 step of a 2-step burn-in: the panel still says
    2, and keeps saying 2 as steps arrive (it once took the 1 step seen as the burn-in)."""
    panel = HealthPanel()
    panel.update(rows_of(healthy(steps=1), num_burnin_steps=2))
    assert panel.burnin == 2 and panel.slider.value == 2
    assert "after a burn-in of 2 steps" in panel._summary.object
    panel.update(rows_of(healthy(steps=40), num_burnin_steps=2), force=True)
    assert panel.burnin == 2 and panel.diagnostics.attrs["burnin"] == 2
    assert panel.diagnostics.attrs["num_draws"] == 38
    assert "after a burn-in of 2 steps" in panel._summary.object
    # A burn-in the user chose still wins over the run's.
    panel.burnin = 5
    panel.update(rows_of(healthy(steps=60), num_burnin_steps=2), force=True)
    assert panel.burnin == 5 and panel.diagnostics.attrs["num_draws"] == 55
