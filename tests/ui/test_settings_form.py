"""The settings form is built from the one declaration and shows exactly what it stores."""

import html

import panel as pn
import pytest

from devinterp_ui.config import METHOD_KWARGS, SETTING_NAMES, declaration, setting_errors
from devinterp_ui.ui.form import HIDDEN, SettingsForm, format_value, parse_value


@pytest.fixture
def form():
    return SettingsForm({"lr": 1e-3, "n_beta": 20.0})


def type_into(form, name, text):
    form.widgets[name].value = text


def test_every_setting_has_a_widget_made_from_its_declaration(form):
    assert set(form.widgets) == set(SETTING_NAMES) - set(HIDDEN)
    assert form.widgets["sampling_method"].options == list(METHOD_KWARGS)
    assert form.widgets["model_mode"].options == ["train", "eval"]
    assert isinstance(form.widgets["shuffle"], pn.widgets.Checkbox)
    for name in ("lr", "num_chains", "init_seed", "bounding_box_size"):
        assert declaration(name).doc in form.widgets[name].description


def test_text_that_is_not_a_number_is_reported_under_its_field(form):
    type_into(form, "lr", "abc")
    assert not form.valid
    message = form.messages["lr"]
    assert message.visible and "'abc' is not a number" in message.object
    assert message.object == setting_errors({"lr": "abc", "n_beta": 20.0})["lr"]
    type_into(form, "num_chains", "four")
    assert "'four' is not a number" in form.messages["num_chains"].object
    # Code computing with `values` keeps the last number; validation sees the text.
    assert form.typed_values["num_chains"] == "four" and form.values["num_chains"] == 4


def test_small_lr_is_shown_in_scientific_notation_and_stored_exactly(form):
    form.set_values({"lr": 1.2345678901234e-9})
    assert form.widgets["lr"].value == "1.2345678901234e-09"
    assert form.values["lr"] == 1.2345678901234e-9
    form.set_values({"lr": 1e-7})
    assert form.widgets["lr"].value == "1e-07"
    assert form.valid


def test_a_typed_small_number_never_becomes_zero(form):
    type_into(form, "lr", "0.0000001")
    assert form.values["lr"] == 1e-7
    assert form.valid
    type_into(form, "lr", "0")
    assert form.values["lr"] == 0.0 and not form.valid
    assert "lr must be > 0" in form.messages["lr"].object


def test_an_empty_optional_field_means_none_and_a_required_one_is_reported(form):
    type_into(form, "bounding_box_size", "")
    assert form.values["bounding_box_size"] is None and form.valid
    type_into(form, "n_beta", " ")
    assert "n_beta is required" in form.messages["n_beta"].object


def test_sgnht_is_a_method_choice(form):
    form.widgets["sampling_method"].value = "sgnht"
    assert form.valid and form.values["sampling_method"] == "sgnht"


def test_a_message_with_markup_is_shown_as_text(form):
    type_into(form, "lr", "<img src=x onerror=alert(1)>")
    pane = form.messages["lr"]
    assert "<img src=x onerror=alert(1)>" in pane.object  # the message itself
    sent = pane._transform_object(pane.object)["object"]  # what the page receives
    assert "<img" not in html.unescape(sent)
    assert "&lt;img src=x onerror=alert(1)&gt;" in html.unescape(sent)


@pytest.mark.parametrize(
    ("name", "value"),
    [("lr", 3e-5), ("lr", 0.01), ("n_beta", 15.390), ("num_chains", 8), ("init_seed", -5)],
)
def test_formatting_round_trips(name, value):
    assert parse_value(name, format_value(name, value)) == value


def test_integer_fields_take_integer_text_only():
    assert parse_value("num_draws", "1e3") == 1000
    assert parse_value("num_draws", "2.5") == 2.5  # then reported: must be an integer
    assert "num_draws must be an integer" in setting_errors({"num_draws": 2.5})["num_draws"]
