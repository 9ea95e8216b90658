"""The sampler settings form, built from the one declaration in `devinterp_ui.config.SETTINGS`.

Each field shows, right under it, exactly the message `sample()` would raise for its value;
`valid` is False (and the dashboard's Start button disabled) while any message shows.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import panel as pn
import param

from devinterp_ui.config import SETTINGS, SamplerConfig, field_error

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
HIDDEN = ("sampling_method_kwargs",)

ERROR_STYLE = {"color": "#b3261e", "font-size": "12px", "margin-top": "-6px"}


def _widget(name: str, value: Any) -> pn.widgets.Widget:
    meta = SETTINGS[name]
    kind = meta["kind"]
    common = {"label": name, "description": meta["doc"], "sizing_mode": "stretch_width"}
    if kind in ("float", "optional_float"):
        return pn.widgets.FloatInput(value=value, format="0.[000000]", **common)
    if kind in ("int", "seed"):
        return pn.widgets.IntInput(value=value, **common)
    if kind == "bool":
        return pn.widgets.Checkbox(value=bool(value), label=name)
    if kind == "choice":
        return pn.widgets.Select(value=value, options=list(meta["choices"]), **common)
    raise ValueError(f"no widget for setting kind {kind!r}")


class SettingsForm(pn.viewable.Viewer):
    """Widgets for every sampler setting; `values` is a dict ready for `sample(**values)`.

    check: optional extra validation with data in hand (e.g. batch_size vs dataset rows),
    returning {setting name or "form": message}.
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
        defaults = {name: meta["default"] for name, meta in SETTINGS.items()}
        defaults.update(values or {})
        names = [n for n in SETTINGS if n not in HIDDEN]
        self.widgets = {n: _widget(n, defaults[n]) for n in names}
        self.messages = {
            n: pn.pane.HTML("", styles=ERROR_STYLE, visible=False, margin=(0, 10)) for n in names
        }
        self.form_message = pn.pane.Alert("", alert_type="danger", visible=False)
        self.n_beta_hint = pn.pane.HTML(
            "", styles={"font-size": "12px", "color": "#555"}, margin=(-6, 10, 0, 10)
        )
        self._extra_basic = extra_basic or []
        for w in self.widgets.values():
            w.param.watch(self._revalidate, "value")
        self._revalidate()

    # --- values -----------------------------------------------------------------------------

    @property
    def values(self) -> dict[str, Any]:
        return {n: w.value for n, w in self.widgets.items()}

    def set_values(self, values: dict[str, Any]) -> None:
        for name, value in values.items():
            if name in self.widgets:
                self.widgets[name].value = value

    # --- validation -------------------------------------------------------------------------

    def _revalidate(self, *_events) -> None:
        values = self.values
        errors = {n: msg for n, v in values.items() if (msg := field_error(n, v))}
        if not errors:
            cross = SamplerConfig(**values).cross_field_error()
            if cross:
                errors[setting_of(cross) or "form"] = cross
        if not errors and self._check is not None:
            errors.update(self._check(values))
        for name, pane in self.messages.items():
            pane.object = errors.get(name, "")
            pane.visible = name in errors
        unplaced = [m for n, m in errors.items() if n not in self.messages]
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
