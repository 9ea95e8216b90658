"""The sampler settings form, built from the one declaration, `devinterp_ui.config.SamplerConfig`.

Each widget comes from its parameter's declaration (type, default, doc, bounds), and each field
shows, right under it, exactly the message `sample()` would raise for its value
(`devinterp_ui.config.setting_errors`); `valid` is False (and the dashboard's Start button
disabled) while any message shows.

Numbers are typed as text, so that what the field shows is what is stored: text that is not a
number is kept and reported under its field (a numeric widget would drop it silently), floats
are shown exactly (shortest round-trip form; `lr` in scientific notation), never rounded to 0.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from typing import Any

import numpy as np
import panel as pn
import param

from devinterp_ui.config import SETTING_NAMES, SETTINGS, declaration, setting_errors

# The basic fields, in the order a researcher tunes them; everything else is "advanced".
BASIC = (
    "lr",
    "n_beta",
    "localization",
    "num_chains",
    "num_draws",
    "num_burnin_steps",
    "num_steps_bw_draws",
    "batch_size",
    "sampling_method",
)
# Settings with no widget: dicts are set through their aliases (rmsprop_eps, rmsprop_alpha).
HIDDEN = tuple(n for n in SETTING_NAMES if SETTINGS[n]["kind"] == "object")
# Shown in scientific notation: step sizes live on a log scale.
SCIENTIFIC = ("lr",)

ERROR_STYLE = {"color": "#b3261e", "font-size": "12px", "margin-top": "-6px"}
# The message text sits in a <pre>: wrap it within the field's column, in the page's font.
ERROR_SHEET = "pre { white-space: pre-wrap; font-family: inherit; margin: 0; }"


class FieldMessage(pn.pane.Str):
    """A message shown as plain text: `object` is the message itself, and the page gets it
    HTML-escaped, so nothing typed into a field can reach the page as markup. (`pn.pane.Str`
    alone sends its text as HTML inside a <pre>: markup in it would render and run.)"""

    def _transform_object(self, obj: Any) -> dict[str, Any]:
        text = "" if obj is None else str(obj)
        return super()._transform_object(html.escape(text) if text else text)


def format_value(name: str, value: Any) -> str:
    """The text a number field shows for `value`: exact (it parses back to the same float)."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    kind = SETTINGS[name]["kind"]
    if kind in ("int", "seed") and not isinstance(value, bool) and float(value).is_integer():
        return str(int(value))
    if name in SCIENTIFIC and isinstance(value, (int, float)) and value != 0:
        return np.format_float_scientific(float(value), unique=True, trim="-")
    return repr(float(value)) if isinstance(value, (int, float)) else str(value)


def parse_value(name: str, text: str) -> Any:
    """The value typed into a number field: None when empty, a number when it parses, else
    the text itself (so validation says it is not a number)."""
    text = (text or "").strip()
    if not text:
        return None
    kind = SETTINGS[name]["kind"]
    try:
        number = float(text)
    except ValueError:
        return text
    if kind in ("int", "seed"):
        try:
            return int(text)
        except ValueError:
            return int(number) if number.is_integer() else number
    return number


def _is_number_for(name: str, value: Any) -> bool:
    """`value` has the type the setting takes (a number, or None where None is allowed)."""
    if value is None:
        return SETTINGS[name]["kind"] == "optional_float"
    return isinstance(value, (int, float))


def _description(name: str) -> str:
    p = declaration(name)
    low, high = p.bounds if getattr(p, "bounds", None) else (None, None)
    default = "required" if SETTINGS[name]["default"] is None else f"default {p.default!r}"
    extra = ""
    if low is not None or high is not None:
        extra = f" Range: {low if low is not None else '-inf'} to {high if high is not None else 'inf'}."
    return f"{p.doc} ({default}).{extra}"


def _widget(name: str, value: Any) -> pn.widgets.Widget:
    """The widget for one setting, chosen by its declared parameter type."""
    p = declaration(name)
    common = {"label": name, "description": _description(name), "sizing_mode": "stretch_width"}
    if isinstance(p, param.Boolean):
        return pn.widgets.Checkbox(value=bool(value), label=name)
    if isinstance(p, param.Selector):
        return pn.widgets.Select(value=value, options=list(p.objects), **common)
    if isinstance(p, param.Number):  # Integer is a Number
        return pn.widgets.TextInput(
            value=format_value(name, value),
            placeholder="required" if p.default is None and name in ("lr", "n_beta") else "",
            **common,
        )
    raise ValueError(f"no widget for setting {name!r} of type {type(p).__name__}")


class SettingsForm(pn.viewable.Viewer):
    """Widgets for every sampler setting; `values` is a dict ready for `sample(**values)`.

    check: optional extra validation with data in hand (e.g. batch_size vs dataset rows),
    returning {setting name or "form": message}; run only when every setting is valid.

    `typed_values` is what the fields hold, parsed: a number field whose text is not a number
    gives that text, an empty field None; validation reads it, so the message under the field
    says what is wrong. `values` is the same except that such a field keeps its last number, so
    code computing with `values` (hints) never meets a string; `valid` is False meanwhile, and
    Start with it.
    """

    valid = param.Boolean(default=True, doc="No field shows an error.")
    errors = param.Dict(default={}, doc="{setting name or 'form': message}.")

    def __init__(
        self,
        values: dict[str, Any] | None = None,
        check: Callable[[dict[str, Any]], dict[str, str]] | None = None,
        extra_basic: list[pn.viewable.Viewable] | None = None,
        **params,
    ):
        super().__init__(**params)
        self._check = check
        defaults = {name: SETTINGS[name]["default"] for name in SETTING_NAMES}
        defaults.update(values or {})
        names = [n for n in SETTING_NAMES if n not in HIDDEN]
        self.widgets = {n: _widget(n, defaults[n]) for n in names}
        self.messages = {
            n: FieldMessage(
                "",
                styles=ERROR_STYLE,
                stylesheets=[ERROR_SHEET],
                visible=False,
                margin=(0, 10),
                sizing_mode="stretch_width",
            )
            for n in names
        }
        self.form_message = pn.pane.Alert("", alert_type="danger", visible=False)
        self.n_beta_hint = pn.pane.HTML(
            "", styles={"font-size": "12px", "color": "#555"}, margin=(-6, 10, 0, 10)
        )
        self._extra_basic = extra_basic or []
        self._last_number = {
            n: defaults[n] for n in names if isinstance(self.widgets[n], pn.widgets.TextInput)
        }
        for w in self.widgets.values():
            w.param.watch(self._revalidate, "value")
        self._revalidate()

    # --- values -----------------------------------------------------------------------------

    @property
    def typed_values(self) -> dict[str, Any]:
        out = {}
        for name, w in self.widgets.items():
            out[name] = (
                parse_value(name, w.value) if isinstance(w, pn.widgets.TextInput) else w.value
            )
        return out

    @property
    def values(self) -> dict[str, Any]:
        out = self.typed_values
        for name, last in self._last_number.items():
            if not _is_number_for(name, out[name]):
                out[name] = last
        return out

    def set_values(self, values: dict[str, Any]) -> None:
        for name, value in values.items():
            w = self.widgets.get(name)
            if w is None:
                continue
            w.value = format_value(name, value) if isinstance(w, pn.widgets.TextInput) else value

    # --- validation -------------------------------------------------------------------------

    def _revalidate(self, *_events) -> None:
        values = self.typed_values
        for name in self._last_number:
            if _is_number_for(name, values[name]):
                self._last_number[name] = values[name]
        errors = setting_errors(values)
        if not errors and self._check is not None:
            errors.update(self._check(values))
        for name, pane in self.messages.items():
            pane.object = errors.get(name, "")
            pane.visible = name in errors
        unplaced = [html.escape(m) for n, m in errors.items() if n not in self.messages]
        self.form_message.object = "<br>".join(unplaced)
        self.form_message.visible = bool(unplaced)
        self.errors = errors
        self.valid = not errors

    def revalidate(self) -> None:
        """Re-run every check (after the data behind `check` changed)."""
        self._revalidate()

    # --- layout -----------------------------------------------------------------------------

    def _field(self, name: str) -> pn.Column:
        parts = [self.widgets[name], self.messages[name]]
        if name == "n_beta":
            parts.append(self.n_beta_hint)
        return pn.Column(*parts, margin=0, sizing_mode="stretch_width")

    def __panel__(self) -> pn.viewable.Viewable:
        basic = pn.GridBox(
            *[self._field(n) for n in BASIC],
            *self._extra_basic,
            ncols=2,
            sizing_mode="stretch_width",
        )
        advanced = [n for n in self.widgets if n not in BASIC]
        return pn.Column(
            basic,
            pn.Card(
                pn.GridBox(
                    *[self._field(n) for n in advanced], ncols=2, sizing_mode="stretch_width"
                ),
                title="Advanced",
                collapsed=True,
                sizing_mode="stretch_width",
            ),
            self.form_message,
            sizing_mode="stretch_width",
        )


def setting_of(message: str) -> str | None:
    """The setting a core error message starts with ("lr must be ..." -> "lr"), if any: where
    the message belongs in the form."""
    match = re.match(r"[A-Za-z_]+", message)
    return match.group(0) if match and match.group(0) in SETTINGS else None
