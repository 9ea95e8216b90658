"""The dashboard as a component, without a browser: form, Start/Stop, results, history, stores."""

import threading

import numpy as np
import pytest
from tiny_models import TinyLM

from devinterp_ui import sample
from devinterp_ui.config import SETTINGS
from devinterp_ui.ui.dashboard import Dashboard
from devinterp_ui.ui.form import BASIC, HIDDEN


@pytest.fixture
def dashboard(make_dashboard, data):
    return make_dashboard({"train": data, "half": data[:32]}, num_burnin_steps=2)


def api_error(data, **settings) -> str:
    base = dict(lr=1e-3, n_beta=20.0, num_chains=2, num_draws=8, batch_size=8, progress_bar=False)
    base.update(settings)
    with pytest.raises((ValueError, TypeError)) as info:
        sample(TinyLM(), data, {}, **base)
    return str(info.value)


def test_form_has_a_widget_for_every_setting(dashboard):
    assert set(dashboard.form.widgets) == set(SETTINGS) - set(HIDDEN)
    assert set(BASIC) <= set(dashboard.form.widgets)


def test_form_starts_from_given_settings(dashboard):
    values = dashboard.form.values
    assert values["lr"] == 1e-3 and values["num_chains"] == 2 and values["save_metrics"] is True
    assert dashboard.form.valid
    assert not dashboard.control.start_button.disabled


@pytest.mark.parametrize(
    ("name", "value"),
    [("lr", -1.0), ("num_chains", 0), ("localization", -2.0), ("num_steps_bw_draws", 0)],
)
def test_invalid_field_shows_the_api_message_and_disables_start(dashboard, data, name, value):
    dashboard.form.set_values({name: value})
    assert not dashboard.form.valid
    assert dashboard.control.start_button.disabled
    message = dashboard.form.messages[name]
    assert message.visible
    assert message.object == api_error(data, **{name: value})


def test_fixing_the_field_clears_the_message_and_enables_start(dashboard):
    dashboard.form.set_values({"lr": -1.0})
    dashboard.form.set_values({"lr": 1e-3})
    assert dashboard.form.valid and not dashboard.control.start_button.disabled
    assert not dashboard.form.messages["lr"].visible


def test_cross_field_error_is_shown_next_to_the_alias(dashboard, data):
    dashboard.form.set_values({"rmsprop_eps": 0.1})
    assert dashboard.form.messages["rmsprop_eps"].object == api_error(data, rmsprop_eps=0.1)
    assert dashboard.control.start_button.disabled


def test_batch_size_larger_than_the_data_uses_the_api_message(dashboard, data):
    dashboard.form.set_values({"batch_size": 100})
    assert dashboard.form.messages["batch_size"].object == api_error(data, batch_size=100)


def test_n_beta_hint_names_both_choices_of_n(dashboard):
    hint = dashboard.form.n_beta_hint.object
    assert "n = batch × accumulation = 8: <b>3.847</b>" in hint
    assert "n = dataset rows = 64: <b>15.39</b>" in hint
    dashboard.form.set_values({"gradient_accumulation_steps": 2})
    assert "accumulation = 16:" in dashboard.form.n_beta_hint.object


def test_start_runs_to_completion_and_shows_the_result(dashboard):
    dashboard.start()
    assert dashboard.running and dashboard.control.stop_button.disabled is False
    assert dashboard.wait(120)
    assert not dashboard.running
    tree = dashboard.result
    assert tree.attrs["completed"] == 1
    llc = dashboard.llc()
    assert np.isfinite(float(llc["llc_mean"]))
    record = dashboard.current
    assert record.status == "completed"
    assert record.llc_mean == pytest.approx(float(llc["llc_mean"]))
    assert list(record.per_chain["chain"]) == [0, 1]
    text = dashboard.result_view.text
    assert "LLC =" in text and record.path in text
    assert "completed" in dashboard.status_text
    assert dashboard.control.progress_bar.value == 1000


def test_plots_hold_every_chain_after_a_run(dashboard):
    dashboard.start()
    dashboard.wait(120)
    plots = dashboard.plots
    for source in plots.loss.sources:
        assert len(source.data["x"]) == 2 + 8
    for source in plots.llc.sources:
        assert len(source.data["x"]) == 8  # burn-in steps have no running LLC
    for lines in plots.observable_lines.values():
        assert all(len(s.data["x"]) == 8 for s in lines.sources)
    assert all(len(s.data["x"]) > 0 for s in plots.norms["noise"].sources)
    assert plots.init_span.visible


def test_settings_paste_into_a_headless_sample_call(dashboard, data):
    dashboard.start()
    dashboard.wait(120)
    tree = sample(
        dashboard.model,
        data,
        {"train": data, "half": data[:32]},
        progress_bar=False,
        **dashboard.settings,
    )
    np.testing.assert_array_equal(
        tree["sampling_loss_micro"].values, dashboard.result["sampling_loss_micro"].values
    )


def test_stop_ends_the_run_and_keeps_whole_draws(data, tmp_path):
    slow = threading.Event()

    def slow_loss(model, batch):
        from devinterp_ui.losses import next_token_loss

        slow.wait(0.02)
        return next_token_loss(model, batch)

    dash = Dashboard(
        TinyLM(),
        data,
        {},
        loss_fn=slow_loss,
        runs_dir=tmp_path,
        lr=1e-3,
        n_beta=20.0,
        num_chains=2,
        num_draws=500,
        batch_size=8,
        num_init_loss_batches=1,
    )
    dash.start()
    dash.stop()
    assert dash.wait(60)
    assert dash.current.status == "stopped"
    assert dash.result is not None
    assert dash.result.attrs["progress"]["status"] == "stopped"
    assert np.isfinite(dash.result["sampling_loss"].values).all()


def test_failed_run_shows_its_error(data, tmp_path):
    calls = {"n": 0}

    def failing(model, batch):
        from devinterp_ui.losses import next_token_loss

        calls["n"] += 1
        if calls["n"] > 5:
            raise RuntimeError("loss exploded on purpose")
        return next_token_loss(model, batch)

    dash = Dashboard(
        TinyLM(),
        data,
        {},
        loss_fn=failing,
        runs_dir=tmp_path,
        lr=1e-3,
        n_beta=20.0,
        num_chains=2,
        num_draws=50,
        batch_size=8,
        num_init_loss_batches=1,
    )
    dash.start()
    dash.wait(60)
    assert dash.current.status == "failed"
    assert dash.control.error_pane.visible
    assert "loss exploded on purpose" in dash.control.error_html
    assert "Traceback" in dash.control.error_html


def test_starting_twice_is_refused(dashboard):
    dashboard.start()
    with pytest.raises(RuntimeError, match="already going on"):
        dashboard.start()
    dashboard.wait(120)


def test_library_lists_this_sessions_runs_with_every_setting(dashboard):
    dashboard.start()
    dashboard.wait(120)
    dashboard.form.set_values({"lr": 2e-3})
    dashboard.start()
    dashboard.wait(120)
    table = dashboard.library.table.object
    assert list(table["lr"]) == [2e-3, 1e-3]  # newest first
    assert list(table["status"]) == ["completed", "completed"]
    # Settings at their defaults are listed too (they were None before).
    assert list(table["num_chains"]) == [2, 2] and list(table["num_draws"]) == [8, 8]
    assert list(table["init_seed"]) == [SETTINGS["init_seed"]["default"]] * 2


def test_open_store_follows_a_store_written_elsewhere(dashboard, data, tmp_path):
    path = tmp_path / "elsewhere.zarr"
    sample(
        TinyLM(),
        data,
        {"o": data},
        lr=1e-3,
        n_beta=20.0,
        num_chains=3,
        num_draws=6,
        batch_size=8,
        output_path=path,
        save_metrics=True,
        progress_bar=False,
    )
    dashboard.open_store(str(path))
    dashboard.poll()
    assert not dashboard.running
    assert len(dashboard.plots.loss.sources) == 3
    assert all(len(s.data["x"]) == 6 for s in dashboard.plots.loss.sources)
    assert dashboard.current.status == "completed"
    assert np.isfinite(dashboard.current.llc_mean)


def test_open_store_with_a_bad_path_says_so(dashboard, tmp_path):
    dashboard.open_store(str(tmp_path / "missing.zarr"))
    assert "no sample store" in dashboard.watcher.message
    assert not dashboard.running


def test_csv_and_html_exports(dashboard):
    from devinterp_ui.ui.results import plots_html, summary_csv

    dashboard.start()
    dashboard.wait(120)
    csv = summary_csv(dashboard.current).read()
    assert "# lr=0.001" in csv and "chain,LLC" in csv
    html = plots_html(dashboard.plots, "run").read()
    assert "<html" in html.lower() and "Bokeh" in html


def test_two_dashboards_share_nothing_mutable(data, tmp_path):
    a = Dashboard(
        TinyLM(), data, {}, runs_dir=tmp_path, lr=1e-3, n_beta=20.0, num_draws=4, batch_size=8
    )
    b = Dashboard(
        TinyLM(), data, {}, runs_dir=tmp_path, lr=1e-3, n_beta=20.0, num_draws=4, batch_size=8
    )
    a.form.set_values({"lr": 5e-3})
    assert b.form.values["lr"] == 1e-3
    assert a.form.widgets["lr"] is not b.form.widgets["lr"]
    a.start()
    b.start()
    a.wait(60)
    b.wait(60)
    assert a.current.path != b.current.path
    assert a.plots is not b.plots and a.runs is not b.runs


def test_known_lambda_demo_draws_true_lambda(tmp_path):
    dash = Dashboard.from_demo("dln", runs_dir=tmp_path)
    assert dash.true_lambda is not None
    dash.form.set_values({"num_draws": 5, "num_chains": 1})
    dash.start()
    dash.wait(60)
    assert dash.plots.true_span.visible
    assert dash.plots.true_span.location == pytest.approx(dash.true_lambda)


def test_the_health_panel_sits_beside_the_result_and_reads_the_run(dashboard):
    dashboard.start()
    dashboard.wait(120)
    assert dashboard.health.diagnostics is not None
    assert dashboard.health.severity in ("ok", "info", "warn", "error")
    tabs = dashboard.main
    assert [name for name in tabs._names] == ["Run", "Studies"]


def test_the_studies_tab_samples_what_the_form_says(dashboard):
    dashboard.form.set_values({"num_draws": 7})
    assert dashboard.studies.settings["num_draws"] == 7
    assert dashboard.studies.model is dashboard.model
