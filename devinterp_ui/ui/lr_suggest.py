"""An lr field with a "Suggest" button: runs the lr advisor in a background thread and fills in
the suggested lr, with h_max, the stability limit and the predicted step-size bias beside it.

    suggest = LrSuggest(lambda: suggest_lr(model, data, n_beta=..., localization=...), lr=1e-4)
    suggest.param.watch(lambda e: form.set_lr(e.new), "value")   # the dashboard's form follows

The advisor takes seconds (Hessian-vector products over a few batches), so the click callback
only starts a thread and returns: the page never freezes. The result is applied on the session's
event loop when there is one (`doc.add_next_tick_callback`), directly otherwise (notebook,
script, tests). Every text shown is HTML-escaped (an error message may quote user input).
"""

from __future__ import annotations

import html
import math
import threading
from collections.abc import Callable
from typing import Any

import panel as pn
import param

from devinterp_ui.analysis import LrAdvice, suggest_lr
from devinterp_ui.ui.form import format_value

__all__ = ["LrSuggest", "advice_html", "form_advice", "rounded_lr"]


def _fmt(x: float | None) -> str:
    if x is None or not isinstance(x, (int, float)):
        return "n/a"
    return f"{x:.4g}" if math.isfinite(x) else "inf"


# Significant digits of a suggested lr. The advisor's estimate (a few Hessian-vector products)
# is good to a few percent at best, so more digits are noise; the suggestion is rounded before it
# is stored, so the field shows exactly the lr that runs.
SUGGESTED_DIGITS = 3


def rounded_lr(x: float) -> float:
    """`x` rounded to SUGGESTED_DIGITS significant digits (2.1879207081256777e-05 -> 2.19e-05).
    A positive finite `x` stays positive: rounding to significant digits never gives 0."""
    return float(f"{x:.{SUGGESTED_DIGITS}g}")


def _pct(x: float | None) -> str:
    if x is None:
        return "n/a"
    return f"{x:.1%}" if math.isfinite(x) else "unstable (past the limit)"


def _suggested_text(x: float) -> str:
    # The suggested lr as the field shows it once filled in (rounded, shortest form).
    return format_value("lr", rounded_lr(x)) if math.isfinite(x) and x > 0 else _fmt(x)


def advice_html(
    advice: LrAdvice | None,
    lr: float | None,
    error: str | None = None,
    previous: float | None = None,
) -> str:
    """The advice as escaped HTML: h_max, the stability limit, the suggested lr, the bias
    predicted at `lr` (the lr in the field) and at `previous` (the lr before the suggestion
    filled the field, when it differs)."""
    if error:
        return f'<div class="lr-suggest-error" style="color:#b3261e">{html.escape(error)}</div>'
    if advice is None:
        return ""
    at = lr if lr is not None else advice.lr
    bias = "" if at is None else f"; predicted bias at lr {_fmt(at)}: {_pct(advice.bias_at(at))}"
    if previous is not None and previous != at:
        bias += f" (at the previous lr {_fmt(previous)}: {_pct(advice.bias_at(previous))})"
    note = "" if advice.converged else " (h_max not converged: raise max_iters)"
    text = (
        f"h_max {_fmt(advice.h_max)}{note}; stable for lr < {_fmt(advice.lr_stable_max)}; "
        f"suggested lr {_suggested_text(advice.lr_suggested)} (target bias {advice.target_bias:.0%}){bias}"
    )
    return f'<div class="lr-suggest-advice" style="font-size:90%">{html.escape(text)}</div>'


class LrSuggest(pn.viewable.Viewer):
    """An lr field, a Suggest button and the advice.

    compute: called with no argument in a background thread; returns an `LrAdvice`
        (typically a closure over `suggest_lr` with the form's n_beta and localization).

    Params:
        value: the suggested lr, rounded to SUGGESTED_DIGITS significant digits (None until a
            suggestion arrives); also written to `lr`.
        lr: the lr in the field (the user's; the predicted bias is shown at it).
        busy: True while compute runs (the button is disabled; a second click is ignored).
        advice: the last `LrAdvice`; error: the last failure's message (None after a success).
    """

    value = param.Number(
        default=None, allow_None=True, bounds=(0, None), inclusive_bounds=(False, True)
    )
    lr = param.Number(default=None, allow_None=True, bounds=(0, None))
    busy = param.Boolean(default=False)
    advice = param.ClassSelector(class_=LrAdvice, default=None, allow_None=True)
    error = param.String(default=None, allow_None=True)

    def __init__(self, compute: Callable[[], LrAdvice], **params: Any):
        if not callable(compute):
            raise TypeError(f"compute must be a callable returning an LrAdvice, got {compute!r}")
        super().__init__(**params)
        self._compute = compute
        self._thread: threading.Thread | None = None
        self._previous: float | None = None
        self._controls: pn.Column | None = None
        self.lr_input = pn.widgets.FloatInput(
            label="lr", value=self.lr, start=0.0, width=140, placeholder="e.g. 1e-4"
        )
        self.button = pn.widgets.Button(label="Suggest", color="primary", width=90)
        self._info = pn.pane.HTML("", sizing_mode="stretch_width")
        self.lr_input.link(self, value="lr")
        self.param.watch(self._on_lr, "lr")
        self.button.on_click(self._on_click)
        self._layout = pn.Column(
            pn.Row(self.lr_input, self.button, align="end"), self._info, sizing_mode="stretch_width"
        )

    def __panel__(self) -> pn.viewable.Viewable:
        return self._layout

    @property
    def controls(self) -> pn.Column:
        """The Suggest button and the advice, without the lr field: to sit under another lr
        field (the dashboard's form), kept in step with `link_form`."""
        if self._controls is None:
            self._controls = pn.Column(
                self.button, self._info, margin=(0, 10), sizing_mode="stretch_width"
            )
        return self._controls

    def link_form(self, form: Any) -> None:
        """Keep a SettingsForm's lr field and this viewer in step: a suggestion (`value`) is
        written into the form's lr; the form's lr, when it parses as a number, becomes `lr`
        (the predicted bias is shown at it)."""

        def from_form(*_events: Any) -> None:
            lr = form.typed_values.get("lr")
            if isinstance(lr, (int, float)) and not isinstance(lr, bool) and lr >= 0:
                self.lr = float(lr)

        def to_form(event: Any) -> None:
            if event.new is not None:
                form.set_values({"lr": event.new})

        form.widgets["lr"].param.watch(from_form, "value")
        # onlychanged=False: the same suggestion again still overwrites an lr typed since.
        self.param.watch(to_form, "value", onlychanged=False)
        from_form()

    def suggest(self) -> bool:
        """Start the advisor in a thread (what the button does); False when one is running."""
        if self.busy:
            return False
        self._previous = self.lr
        self.param.update(busy=True, error=None)
        self.button.param.update(disabled=True, label="Suggesting…")
        doc = pn.state.curdoc
        self._thread = threading.Thread(target=self._run, args=(doc,), daemon=True)
        self._thread.start()
        return True

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the running suggestion has been applied; True when none is left."""
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
        return not self.busy

    def _on_click(self, _event: Any) -> None:
        self.suggest()

    def _run(self, doc: Any) -> None:
        try:
            result, error = self._compute(), None
            if not isinstance(result, LrAdvice):
                result, error = None, f"the advisor returned {type(result).__name__}, not LrAdvice"
        except Exception as exc:  # shown in the page; the session stays usable
            result, error = None, f"lr advisor failed: {type(exc).__name__}: {exc}"
        if doc is not None and getattr(doc, "session_context", None) is not None:
            doc.add_next_tick_callback(lambda: self._apply(result, error))
        else:
            self._apply(result, error)

    def _apply(self, advice: LrAdvice | None, error: str | None) -> None:
        if advice is not None:
            suggested = advice.lr_suggested
            ok = math.isfinite(suggested) and suggested > 0
            if ok:
                suggested = rounded_lr(suggested)
            if not ok:
                error = "no finite lr to suggest: the curvature at the checkpoint is not positive"
            self.param.update(
                advice=advice,
                error=error,
                **({"value": suggested, "lr": suggested} if ok else {}),
            )
            if ok:
                self.lr_input.value = suggested
        else:
            self.error = error
        self._show()
        self.button.param.update(disabled=False, label="Suggest")
        self.busy = False

    def _show(self) -> None:
        self._info.object = advice_html(self.advice, self.lr, self.error, self._previous)

    def _on_lr(self, event: Any) -> None:
        # `lr` set from outside (the dashboard's form) shows in the field too.
        if self.lr_input.value != event.new:
            self.lr_input.value = event.new
        if not self.busy:
            self._show()


def form_advice(form: Any, model: Any, dataset: Any, loss_fn: Any = None) -> LrAdvice:
    """`suggest_lr` on `model` and `dataset` with a SettingsForm's n_beta, localization,
    batch_size and lr (what the dashboard's Suggest runs, in its thread). Raises ValueError
    naming the fields to fix while one the advisor needs shows an error."""
    values = form.values
    bad = [n for n in ("n_beta", "localization", "batch_size") if n in form.errors]
    if bad or values["n_beta"] is None:
        raise ValueError(f"fix {', '.join(bad or ['n_beta'])} in the form first")
    return suggest_lr(
        model,
        dataset,
        n_beta=values["n_beta"],
        localization=values["localization"],
        loss_fn=loss_fn,
        batch_size=values["batch_size"],
        lr=values["lr"],
    )
