"""The dashboard's Suggest button under the lr field: the lr advisor on the dashboard's own model
and data with the form's n_beta / localization / batch size; its suggestion fills the form's lr,
and an lr typed into the form is the lr the predicted bias is shown at."""

import pytest
from tiny_models import TinyLM

from devinterp_ui.analysis import suggest_lr
from devinterp_ui.ui.form import format_value


@pytest.fixture
def dashboard(make_dashboard):
    return make_dashboard()


def test_suggest_sits_under_the_lr_field_and_fills_the_forms_lr(dashboard, data):
    assert dashboard.lr_suggest.controls is dashboard.form.field_extras["lr"]
    assert dashboard.lr_suggest.lr == pytest.approx(1e-3)  # the form's lr, before any click
    dashboard.form.set_values({"localization": 50.0})
    dashboard.lr_suggest.button.clicks += 1
    assert dashboard.lr_suggest.wait(60)
    advice = dashboard.lr_suggest.advice
    assert dashboard.lr_suggest.error is None, dashboard.lr_suggest.error
    # The advisor ran with the form's settings on the dashboard's model and data.
    expected = suggest_lr(dashboard.model, data, n_beta=20.0, localization=50.0, batch_size=8)
    assert advice.h_max == pytest.approx(expected.h_max, rel=1e-4)
    assert advice.n_beta == 20.0 and advice.localization == 50.0
    assert dashboard.form.values["lr"] == pytest.approx(advice.lr_suggested, rel=5e-3)
    assert dashboard.form.valid


def test_the_suggested_lr_shows_rounded_and_the_form_stores_what_it_shows(dashboard):
    dashboard.lr_suggest.suggest()
    assert dashboard.lr_suggest.wait(60)
    exact = dashboard.lr_suggest.advice.lr_suggested
    shown = dashboard.form.widgets["lr"].value
    # Three significant digits in scientific notation (not 2.1879207081256777e-05) ...
    mantissa, exponent = shown.split("e")
    assert len(mantissa.replace(".", "").lstrip("-")) <= 3, shown
    assert float(shown) == pytest.approx(exact, rel=5e-3)
    # ... and the number that runs is exactly the number shown, never 0.
    stored = dashboard.form.values["lr"]
    assert stored == float(shown) > 0
    assert dashboard.lr_suggest.value == stored
    assert f"suggested lr {shown} " in dashboard.lr_suggest._info.object
    assert format_value("lr", stored) == shown


def test_an_lr_typed_in_the_form_is_where_the_bias_is_shown(dashboard):
    dashboard.lr_suggest.suggest()
    assert dashboard.lr_suggest.wait(60)
    dashboard.form.widgets["lr"].value = "2e-05"
    assert dashboard.lr_suggest.lr == pytest.approx(2e-5)
    assert "predicted bias at lr 2e-05" in dashboard.lr_suggest._info.object
    dashboard.form.widgets["lr"].value = "not a number"  # ignored, the form shows the error
    assert dashboard.lr_suggest.lr == pytest.approx(2e-5)
    # The same suggestion again overwrites what was typed.
    dashboard.lr_suggest.suggest()
    assert dashboard.lr_suggest.wait(60)
    assert dashboard.form.values["lr"] == dashboard.lr_suggest.value


def test_suggest_with_an_invalid_n_beta_says_what_to_fix(dashboard):
    dashboard.form.widgets["n_beta"].value = "-3"
    dashboard.lr_suggest.suggest()
    assert dashboard.lr_suggest.wait(30)
    assert "fix n_beta in the form first" in dashboard.lr_suggest.error
    assert dashboard.form.values["lr"] == pytest.approx(1e-3)


def test_after_suggest_a_run_past_the_stable_lr_is_flagged_step_bias(dashboard):
    dashboard.lr_suggest.suggest()
    assert dashboard.lr_suggest.wait(60)
    limit = dashboard.lr_suggest.advice.lr_stable_max
    dashboard.form.set_values(
        {"lr": 2 * limit, "num_chains": 2, "num_draws": 6, "num_burnin_steps": 1}
    )
    dashboard.start()
    assert dashboard.wait(120)
    codes = {f.code for f in dashboard.health.flags}
    assert "step_bias" in codes, dashboard.health.flags


def test_new_data_forgets_the_old_advice(dashboard, data):
    dashboard.lr_suggest.suggest()
    assert dashboard.lr_suggest.wait(60)
    dashboard.set_data(TinyLM(), data, {"train": data})
    assert dashboard.lr_suggest.advice is None
