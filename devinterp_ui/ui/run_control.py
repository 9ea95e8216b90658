"""`RunControl`: the settings form, Start / Stop / Restart, progress and status of the run.

It owns no job: the Dashboard passes what the buttons do and reports progress back through
`show_status`. Everything it displays that came from a store or a user is escaped.

Tune while you watch: while a run goes, a field edited away from the running settings is
outlined and listed under the form as "applies to the next run"; "Restart with these settings"
stops the run (it stays in the run library as stopped) and starts one with the form's values.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import panel as pn
import param

from devinterp_ui.ui import escape
from devinterp_ui.ui.form import SettingsForm, setting_of

PENDING_STYLE = {"outline": "2px solid #e0a800", "border-radius": "4px"}
NOTE_STYLE = {"font-size": "12px", "color": "#5f4b00"}
ERROR_STYLE = {
    "color": "#6a1b14",
    "background": "#fbe9e7",
    "border": "1px solid #e5a49c",
    "border-radius": "4px",
    "padding": "4px 10px",
}


class RunControl(pn.viewable.Viewer):
    """Form, buttons and status. on_start(), on_stop(), on_restart(): what the buttons do.

    running: a run is going (Start disabled, Stop and Restart enabled).
    run_settings: the settings of the running run (to tell edited fields apart).
    """

    running = param.Boolean(default=False)
    status_html = param.String(default="Ready.", doc="Status line (HTML, escaped).")
    error_html = param.String(default="", doc="The last error (HTML, escaped), or ''.")
    pending = param.Dict(default={}, doc="{setting: (running value, form value)} while running.")
    run_settings = param.Dict(default={})

    def __init__(
        self,
        form: SettingsForm,
        observables: pn.widgets.MultiChoice,
        on_start: Callable[[], Any],
        on_stop: Callable[[], Any],
        on_restart: Callable[[], Any],
        **params,
    ):
        super().__init__(**params)
        self.form = form
        self.observable_picker = observables
        self.start_button = pn.widgets.Button(label="▶ Start", color="primary", width=110)
        self.stop_button = pn.widgets.Button(
            label="■ Stop", color="danger", width=110, disabled=True
        )
        self.restart_button = pn.widgets.Button(
            label="↻ Restart with these settings", width=230, visible=False
        )
        self.start_button.on_click(lambda _e: self._guard(on_start))
        self.stop_button.on_click(lambda _e: self._guard(on_stop))
        self.restart_button.on_click(lambda _e: self._guard(on_restart))
        self.progress_bar = pn.indicators.Progress(
            value=0, max=1000, sizing_mode="stretch_width", bar_color="primary", height=14
        )
        self.status_pane = pn.pane.HTML(
            self.param.status_html, margin=(0, 10), sizing_mode="stretch_width"
        )
        self.error_pane = pn.pane.HTML(
            self.param.error_html, styles=ERROR_STYLE, sizing_mode="stretch_width", visible=False
        )
        self.pending_pane = pn.pane.HTML(
            "", styles=NOTE_STYLE, sizing_mode="stretch_width", visible=False, margin=(0, 10)
        )
        self._plain_styles: dict[str, dict] = {}
        for widget in form.widgets.values():
            widget.param.watch(self._update_pending, "value")
        form.param.watch(self._sync_buttons, "valid")
        self.param.watch(self._sync_buttons, "running")
        self.param.watch(self._update_pending, ["running", "run_settings"])
        self.param.watch(lambda e: setattr(self.error_pane, "visible", bool(e.new)), "error_html")
        self._sync_buttons()

    # --- what the Dashboard calls ---------------------------------------------------------------

    def show_error(self, message: str, details: str | None = None) -> None:
        """Show `message` (plain text; a leading setting name is bolded) and optional details
        (e.g. a traceback, shown preformatted). Both are escaped."""
        field = setting_of(message)
        head = f"<b>{escape.text(field)}</b>: " if field else ""
        html = head + escape.text(message)
        if details:
            html += escape.block(details)
        self.error_html = html

    def clear_error(self) -> None:
        self.error_html = ""

    def show_status(
        self, state: str, done: int, total: int, store: str, extra: str = "", errors: list[str] = ()
    ) -> None:
        """Status line: state, chain steps done of total, `extra` (plain), store, chain errors."""
        self.progress_bar.value = int(1000 * done / total) if total else 0
        text = f"<b>{escape.text(state)}</b> · {done}/{total} chain steps"
        if extra:
            text += f" · {escape.text(extra)}"
        text += f" · store {escape.code(store)}"
        if errors:
            text += "<br>" + "<br>".join(escape.text(e) for e in errors)
        self.status_html = text

    # --- internals --------------------------------------------------------------------------------

    def _guard(self, action: Callable[[], Any]) -> None:
        """A button's action: its errors go to the page, not to the server log."""
        try:
            action()
        except (TypeError, ValueError, RuntimeError, OSError) as exc:
            self.show_error(str(exc))

    def _sync_buttons(self, *_events) -> None:
        self.start_button.disabled = self.running or not self.form.valid
        self.stop_button.disabled = not self.running
        self.restart_button.disabled = not (self.running and self.form.valid)

    def _update_pending(self, *_events) -> None:
        pending = {}
        if self.running and self.run_settings:
            for name, value in self.form.values.items():
                before = self.run_settings.get(name)
                if name in self.run_settings and not _same(before, value):
                    pending[name] = (before, value)
        self.pending = pending
        for name, widget in self.form.widgets.items():
            if name in pending:
                self._plain_styles.setdefault(name, dict(widget.styles or {}))
                widget.styles = {**self._plain_styles[name], **PENDING_STYLE}
            elif name in self._plain_styles:
                widget.styles = self._plain_styles.pop(name)
        if pending:
            changes = ", ".join(
                f"{escape.text(n)} {escape.text(_fmt(a))} → {escape.text(_fmt(b))}"
                for n, (a, b) in pending.items()
            )
            self.pending_pane.object = f"Applies to the next run: {changes}."
        self.pending_pane.visible = bool(pending)
        self.restart_button.visible = self.running
        self._sync_buttons()

    def __panel__(self) -> pn.viewable.Viewable:
        return pn.Column(
            self.form,
            self.observable_picker,
            self.pending_pane,
            pn.Row(self.start_button, self.stop_button),
            self.restart_button,
            self.progress_bar,
            self.status_pane,
            self.error_pane,
            sizing_mode="stretch_width",
        )


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)
