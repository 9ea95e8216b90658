"""The Health panel: the LLC with its error bar and convergence figures, the health flags as
coloured badges with their advice, and a burn-in slider that recomputes them from stored draws.

    panel = HealthPanel()
    panel.update(tree)                          # a finished tree,
    panel.update(reader.accumulated())          # a run being written (no SGLD metrics), or
    panel.update(rows, settings=reader.config,  # the rows a StoreReader returned so far
                 chain_status=new.status.chain_status)
    panel.param.watch(on_burnin, "burnin")      # the dashboard recomputes its plots/table/CSV
    panel.reset()                               # before showing another run

Every text shown (flag messages quote the sampler's own error text, read from a store) is
HTML-escaped before it reaches the page.
"""

from __future__ import annotations

import html
import math
import time
from typing import Any

import panel as pn
import param
import xarray as xr

from devinterp_ui.analysis import Flag, diagnose, health, worst_severity

__all__ = ["SEVERITY_COLOURS", "HealthPanel", "flag_badge_html", "summary_html"]

SEVERITY_COLOURS = {
    "ok": "#2e7d32",
    "info": "#1565c0",
    "warn": "#b26a00",
    "error": "#c62828",
}


def _num(x: Any, digits: int = 4) -> str:
    try:
        x = float(x)
    except (TypeError, ValueError):
        return "n/a"
    return f"{x:.{digits}g}" if math.isfinite(x) else "n/a"


def flag_badge_html(flag: Flag) -> str:
    """One flag as a coloured badge, its message and its advice (all escaped)."""
    colour = SEVERITY_COLOURS.get(flag.severity, "#555")
    chains = f" (chains {', '.join(str(c) for c in flag.chains)})" if flag.chains else ""
    return (
        f'<div class="health-flag health-{html.escape(flag.severity)}" '
        f'style="margin:4px 0;padding:4px 6px;border-left:4px solid {colour}">'
        f'<span class="health-badge" style="background:{colour};color:white;padding:1px 6px;'
        f'border-radius:8px;font-size:85%">{html.escape(flag.severity)}: '
        f"{html.escape(flag.code)}</span> "
        f'<span class="health-message">{html.escape(flag.message + chains)}</span><br>'
        f'<span class="health-advice" style="color:#444">Try: {html.escape(flag.advice)}</span>'
        "</div>"
    )


def _thin_note(diag: xr.Dataset) -> str:
    """Says when R-hat/ESS/MCSE came from a thinned trace (diagnose's MAX_DIAG_DRAWS rule)."""
    k = int(diag.attrs.get("thin", 1))
    if k <= 1:
        return ""
    return (
        f' <small class="health-thin">(R-hat, ESS and MCSE from every k-th draw, k = {k}, '
        "to keep updates fast; the LLC uses every draw)</small>"
    )


def summary_html(diag: xr.Dataset | None, flags: list[Flag]) -> str:
    """The LLC with its ESS-based standard error, the spread over chains, R-hat and ESS."""
    if diag is None:
        return '<div class="health-summary">No draws yet.</div>'
    worst = worst_severity(flags)
    warn = ""
    if worst in ("warn", "error"):
        colour = SEVERITY_COLOURS[worst]
        warn = (
            f' <span class="health-llc-warning" style="color:{colour};font-weight:bold">'
            f"&#9888; {html.escape(worst)}: see the flags below before trusting this number"
            "</span>"
        )
    status = list(diag.attrs.get("chain_status", []))
    if status and all(s == "failed" for s in status):
        # Their rows before the failure are finite but diverging: no LLC (as the result block).
        warn += ' <small class="health-no-llc">(every chain failed: no LLC)</small>'
    return (
        '<div class="health-summary">'
        f'<b>LLC</b> <span class="health-llc">{_num(diag["llc_mean"])}</span>'
        f' &plusmn; <span class="health-mcse">{_num(diag["mcse"], 3)}</span>'
        " <small>(MCSE: ESS-based standard error of the mean)</small>"
        f"{warn}<br>"
        f'std over chains <span class="health-std">{_num(diag["llc_std"], 3)}</span>'
        " <small>(spread of the per-chain LLCs, not an error bar)</small><br>"
        f'R-hat <span class="health-rhat">{_num(diag["rhat"], 4)}</span>'
        f' &middot; ESS bulk <span class="health-ess-bulk">{_num(diag["ess_bulk"], 4)}</span>'
        f' &middot; ESS tail <span class="health-ess-tail">{_num(diag["ess_tail"], 4)}</span>'
        f" &middot; {int(diag.attrs.get('num_draws', 0))} draws per chain after a burn-in of "
        f"{int(diag.attrs.get('burnin', 0))} steps{_thin_note(diag)}"
        "</div>"
    )


class HealthPanel(pn.viewable.Viewer):
    """Diagnostics and flags of one run, recomputed on `update()` and when `burnin` changes.

    Params (the dashboard may watch them):
        diagnostics: the last `diagnose()` Dataset (None before any draw).
        flags: the last `health()` flags.
        severity: worst_severity(flags) ("ok" before any draw).
        burnin: steps left out; the slider sets it, and setting it recomputes.
        max_burnin: the slider's end (the steps the run has so far).
        min_interval: seconds between recomputes on `update()` while a run grows (a finished
            run, `force=True` and burn-in changes always recompute).
    """

    diagnostics = param.ClassSelector(class_=xr.Dataset, default=None, allow_None=True)
    flags = param.List(default=[], item_type=Flag)
    severity = param.Selector(default="ok", objects=["ok", "info", "warn", "error"])
    burnin = param.Integer(default=0, bounds=(0, None), doc="Steps left out as burn-in.")
    max_burnin = param.Integer(default=0, bounds=(0, None))
    min_interval = param.Number(default=2.0, bounds=(0, None))

    def __init__(self, **params: Any):
        super().__init__(**params)
        self._source: Any = None
        self._kwargs: dict[str, Any] = {}
        self._advice: Any = None
        self._last = -math.inf
        self._moved = False  # the user chose a burn-in: it wins over the run's own
        self._summary = pn.pane.HTML(summary_html(None, []), sizing_mode="stretch_width")
        self._flags_pane = pn.pane.HTML("", sizing_mode="stretch_width")
        self.slider = pn.widgets.IntSlider(
            label="Burn-in (steps)",
            start=0,
            end=max(self.max_burnin, 1),
            value=self.burnin,
            sizing_mode="stretch_width",
        )
        self.slider.link(self, value="burnin")
        self.param.watch(self._on_burnin, "burnin")
        self._layout = pn.Column(
            pn.pane.HTML("<b>Health</b>"),
            self._summary,
            self._flags_pane,
            self.slider,
            sizing_mode="stretch_width",
        )

    def __panel__(self) -> pn.viewable.Viewable:
        return self._layout

    def update(
        self,
        source: xr.DataTree | xr.Dataset,
        *,
        advice: Any = None,
        force: bool = False,
        finished: bool = False,
        **diagnose_kwargs: Any,
    ) -> bool:
        """Diagnose `source` (a tree, or reader rows with `settings=`/`chain_status=` as
        `diagnose` takes them) at the current burn-in; True when it recomputed.

        Keeps `source` so that the burn-in slider can recompute without new rows.
        """
        self._source, self._kwargs = source, diagnose_kwargs
        if advice is not None:
            self._advice = advice
        now = time.monotonic()
        if not (force or finished) and now - self._last < self.min_interval:
            return False
        self._last = now
        self._recompute()
        return True

    def reset(self) -> None:
        """Forget the run: the next `update()` starts from that run's recorded burn-in."""
        self._source, self._kwargs, self._advice, self._last = None, {}, None, -math.inf
        self._moved = False
        self.param.update(diagnostics=None, flags=[], severity="ok")
        self._summary.object = summary_html(None, [])
        self._flags_pane.object = ""

    def _on_burnin(self, _event: Any) -> None:
        self._moved = True  # a burn-in chosen before the first rows arrive is kept
        if self._source is not None:
            self._recompute()

    def _recompute(self) -> None:
        # Until the slider moves, the burn-in is the run's own setting, read afresh each time
        # (one source: diagnose's): a live run's first rows can be fewer than its burn-in, and
        # taking the steps seen then as the burn-in showed 1 for a run set to 2.
        burnin = self.burnin if self._moved else None
        diag = diagnose(self._source, burnin, **self._kwargs)
        flags = health(diag, advice=self._advice, diagnostics=diag)
        chosen = int(diag.attrs["burnin"])
        with param.parameterized.discard_events(self):
            self.max_burnin = max(int(diag.attrs["num_steps"]) - 1, chosen, 0)
            self.burnin = chosen
        self.slider.end = max(self.max_burnin, 1)
        if self.slider.value != self.burnin:
            self.slider.value = self.burnin
        self.param.update(diagnostics=diag, flags=flags, severity=worst_severity(flags))
        self._summary.object = summary_html(diag, flags)
        self._flags_pane.object = "".join(flag_badge_html(f) for f in flags) or (
            f'<div class="health-ok" style="color:{SEVERITY_COLOURS["ok"]}">'
            "No health flag: nothing looks wrong with this run.</div>"
        )
