"""LrSuggest: Suggest runs the lr advisor in a thread (the click returns at once), then fills the
lr field and shows h_max, the stability limit, the suggested lr and the predicted bias."""

import threading

import pytest
import torch

from devinterp_ui.analysis import suggest_lr
from devinterp_ui.ui.form import format_value
from devinterp_ui.ui.lr_suggest import LrSuggest, advice_html, rounded_lr


class Quadratic(torch.nn.Module):
    """Loss 0.5 sum_i h_i w_i^2 on every row (Hessian diag(h), top eigenvalue max h)."""

    def __init__(self, h):
        super().__init__()
        self.register_buffer("h", torch.tensor(h))
        self.w = torch.nn.Parameter(torch.zeros(len(h)))


def quadratic_loss(model, batch):
    return (0.5 * (model.h * model.w**2).sum()).expand(batch[0].shape[0])


ROWS = (torch.zeros(16, 1),)


def advisor(n_beta=10.0, gate=None):
    """A real suggest_lr on a quadratic with h_max = 4; waits on `gate` first when given."""

    def compute():
        if gate is not None:
            assert gate.wait(10), "the test never released the advisor"
        return suggest_lr(
            Quadratic([4.0, 1.0]), ROWS, n_beta=n_beta, loss_fn=quadratic_loss, batch_size=8
        )

    return compute


def test_the_click_returns_at_once_and_the_thread_fills_in_the_suggested_lr():
    gate = threading.Event()
    view = LrSuggest(advisor(gate=gate), lr=0.02)
    view.button.clicks += 1  # what a click does
    # The advisor is still held at the gate, so the click returned without running it (run in
    # the callback, it would have waited at the gate and failed, leaving busy False).
    assert view.busy and view.button.disabled and view.value is None
    assert view.button.label == "Suggesting…"
    gate.set()
    assert view.wait(10)
    advice = view.advice
    assert advice.h_max == pytest.approx(4.0, rel=0.01)
    assert view.value == rounded_lr(advice.lr_suggested)
    assert view.lr == view.lr_input.value == view.value
    assert not view.busy and not view.button.disabled and view.error is None
    shown = view._info.object
    assert f"h_max {advice.h_max:.4g}" in shown
    assert f"stable for lr &lt; {advice.lr_stable_max:.4g}" in shown
    assert f"suggested lr {format_value('lr', view.value)} " in shown
    # The bias at the suggested lr is the target; at the user's previous lr it is bias_at(0.02).
    assert "predicted bias at lr" in shown and "5.0%" in shown
    assert f"at the previous lr 0.02: {advice.bias_at(0.02):.1%}" in shown


def test_a_dashboard_can_watch_value():
    seen = []
    view = LrSuggest(advisor())
    view.param.watch(lambda e: seen.append(e.new), "value")
    view.suggest()
    assert view.wait(10)
    assert seen == [rounded_lr(view.advice.lr_suggested)]


def test_a_second_click_while_busy_starts_nothing():
    gate, calls = threading.Event(), []
    inner = advisor(gate=gate)

    def compute():
        calls.append(1)
        return inner()

    view = LrSuggest(compute)
    assert view.suggest()
    assert not view.suggest()
    view.button.clicks += 1
    gate.set()
    assert view.wait(10)
    assert len(calls) == 1


def test_a_failing_advisor_shows_its_error_escaped_and_frees_the_button():
    def compute():
        raise ValueError("n_beta must be > 0, got <img src=x onerror=alert(1)>")

    view = LrSuggest(compute, lr=0.01)
    view.suggest()
    assert view.wait(10)
    assert not view.busy and not view.button.disabled
    assert view.value is None and view.lr == 0.01
    assert "ValueError" in view.error and "n_beta" in view.error
    shown = view._info.object
    assert "<img" not in shown and "&lt;img src=x" in shown


def test_editing_the_lr_updates_the_predicted_bias():
    view = LrSuggest(advisor())
    view.suggest()
    assert view.wait(10)
    limit = view.advice.lr_stable_max
    view.lr_input.value = limit * 0.5
    assert view.lr == pytest.approx(limit * 0.5)
    # bias 1 / (1 - lr k / 4) - 1 at half the limit (lr k / 4 = 1/2) is 100%.
    assert "100.0%" in view._info.object
    view.lr_input.value = limit * 2
    assert "unstable" in view._info.object


def test_an_lr_set_by_the_form_shows_in_the_field():
    view = LrSuggest(advisor(), lr=0.01)
    assert view.lr_input.value == 0.01
    view.lr = 0.003
    assert view.lr_input.value == 0.003


@pytest.mark.parametrize(
    "exact, shown",
    [
        (2.1879207081256777e-05, 2.19e-05),
        (0.012345, 0.0123),
        (3.14159e-9, 3.14e-9),
        (5e-324, 5e-324),
    ],
)
def test_a_suggestion_is_rounded_to_three_significant_digits_and_never_to_zero(exact, shown):
    assert rounded_lr(exact) == shown > 0


def test_advice_html_before_any_advice_and_a_bad_compute():
    assert advice_html(None, 0.1) == ""
    with pytest.raises(TypeError, match="compute"):
        LrSuggest(None)
