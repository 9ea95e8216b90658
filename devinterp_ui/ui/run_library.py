"""`RunLibrary`: every run under the runs directory, sortable and filterable; traces on select.

Lists stores from earlier sessions and other processes too (see `RunIndex`: root attributes
only, cached by mtime). The LLC column shows the final LLC each store records; for older stores
the index computes it in a background thread, and the table redraws when it arrives. Select one row to see its chains' traces, read from its store; select
several (Ctrl/Shift-click) to overlay their mean traces, one colour per run.

The table is plain HTML (pandas escapes every cell), sorted and filtered on the server: it needs
no JavaScript beyond Panel's own, so it works offline and in every session. (Panel's Tabulator
loads its resources only into the first session of a server unless `pn.extension("tabulator")`
is called, and then re-fetches stylesheets from a CDN on updates.)
"""

from __future__ import annotations

import asyncio
import datetime as dt
import math
import threading
from pathlib import Path

import pandas as pd
import panel as pn
import param
from bokeh.models import Legend, LegendItem
from bokeh.palettes import Category10_10

from devinterp_ui.config import SETTINGS
from devinterp_ui.live.marker import MarkerUnreadable
from devinterp_ui.ui import escape
from devinterp_ui.ui.figures import chain_color, fit_ranges, make_figure
from devinterp_ui.ui.run_index import RunIndex, RunSummary

# The settings a researcher compares first come right after the status; the rest follow.
LEADING = ("lr", "n_beta", "localization", "num_chains", "num_draws")
MAX_OVERLAY = 10  # one colour each; more runs in one plot cannot be told apart


class RunLibrary(pn.viewable.Viewer):
    """The run library of `runs_dir`. `refresh()` rescans (cheap: unchanged stores cost a stat).

    refresh_ms: rescan period while shown in a server session (0: only on `refresh()`).
    """

    runs_dir = param.Path(default=None, check_exists=False, allow_None=True)
    refresh_ms = param.Integer(default=5000, bounds=(0, None))
    selected = param.List(default=[], doc="Store paths of the selected rows.")
    filter_text = param.String(default="", doc="Keep rows with a cell containing this text.")
    sort_by = param.String(default="started", doc="Column the table is sorted by.")
    descending = param.Boolean(default=True)
    max_rows = param.Integer(default=50, bounds=(1, None), doc="Rows shown (filter to narrow).")

    def __init__(self, runs_dir: str | Path, index: RunIndex | None = None, **params):
        super().__init__(runs_dir=str(runs_dir), **params)
        self.index = index or RunIndex(runs_dir)
        self.summaries: list[RunSummary] = []
        self._known_llc: dict[str, tuple[float, float]] = {}
        self._signature: tuple = ()
        self.shown: list[RunSummary] = []  # the table's rows, in order
        # Every setting is a column, so the table is wider than most windows: it scrolls inside
        # its own box (the leading columns first) instead of pushing the page past the window.
        self.table = pn.pane.DataFrame(
            self._frame([]),
            index=False,
            sizing_mode="stretch_width",
            max_height=420,
            styles={"overflow": "auto"},
        )
        self.filter_input = pn.widgets.TextInput.from_param(
            self.param.filter_text, name="filter", placeholder="e.g. completed, 0.001", width=220
        )
        self.sort_select = pn.widgets.Select.from_param(
            self.param.sort_by, name="sort by", options=list(self._frame([]).columns), width=160
        )
        self.order_toggle = pn.widgets.Checkbox.from_param(self.param.descending, name="descending")
        self.picker = pn.widgets.MultiChoice(
            name="show traces of (several: overlaid)", options=[], sizing_mode="stretch_width"
        )
        self.picker.param.watch(self._on_pick, "value")
        self.param.watch(lambda _e: self._redraw(), ["filter_text", "sort_by", "descending"])
        self.count = pn.pane.HTML("", margin=(0, 10))
        self.message = pn.pane.HTML("", sizing_mode="stretch_width", margin=(0, 10))
        self.traces = pn.Column(sizing_mode="stretch_width")
        self.refresh_button = pn.widgets.Button(label="Refresh", width=100)
        self.refresh_button.on_click(lambda _e: self.refresh())
        self._callback = None
        self._redraw_lock = threading.RLock()  # computed LLCs may redraw from another thread
        self._doc = pn.state.curdoc
        # Outside a server session (a notebook kernel) the LLCs computed in the index's thread
        # must still redraw on the loop that owns the Bokeh models: edits from two threads at
        # once can lose the other thread's events (the page kept a run's last points unseen).
        try:
            self._loop = asyncio.get_running_loop()
        except RuntimeError:
            self._loop = None
        self.index.on_llc(self._on_llc_computed)
        self.refresh()

    # --- data ----------------------------------------------------------------------------------

    def refresh(self) -> None:
        """Rescan the runs directory and update the table when anything changed."""
        with self._redraw_lock:
            self.summaries = self.index.scan()
            signature = (
                self.index.llc_version,
                *((s.path, s.mtime_ns, s.status) for s in self.summaries),
            )
            if signature == self._signature:
                return
            self._signature = signature
            self._redraw()

    def _on_llc_computed(self) -> None:
        """LLCs computed in the index's thread: redraw on the session's event loop when there is
        one (or leave it to the periodic refresh), on the notebook kernel's running loop, and
        directly only where no loop runs (a script)."""
        if self._callback is not None:
            return
        doc = self._doc
        if doc is not None and getattr(doc, "session_context", None) is not None:
            doc.add_next_tick_callback(self.refresh)
        elif self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self.refresh)
        else:
            self.refresh()

    def _redraw(self) -> None:
        with self._redraw_lock:
            self._redraw_table()

    def _redraw_table(self) -> None:
        """The table: summaries passing the filter, sorted, at most `max_rows`."""
        frame = self._frame(self.summaries)
        frame["_i"] = range(len(frame))
        needle = self.filter_text.strip().lower()
        if needle and len(frame):
            cells = frame.drop(columns="_i").astype(str)
            hit = cells.apply(lambda col: col.str.lower().str.contains(needle, regex=False))
            frame = frame[hit.any(axis=1)]
        # "started" sorts by the scan's order (start time, then name), finer than the text.
        key = "_i" if self.sort_by == "started" else self.sort_by
        if key in frame.columns:
            frame = frame.sort_values(key, ascending=not self.descending, kind="stable")
        total = len(frame)
        frame = frame.head(self.max_rows)
        self.shown = [self.summaries[i] for i in frame["_i"]]
        shown = frame.drop(columns="_i").reset_index(drop=True)
        # Rendering the table to HTML is the costly part of a rescan, and every session of a
        # server rescans on the one event loop: redraw only what changed.
        if not (isinstance(self.table.object, pd.DataFrame) and self.table.object.equals(shown)):
            self.table.object = shown
        self.count.object = (
            f"{total} runs" if total <= self.max_rows else f"showing {self.max_rows} of {total}"
        )
        names = {s.name: s.path for s in self.summaries}
        self._paths_by_name = names
        self.picker.options = list(reversed(list(names)))
        self.picker.value = [n for n in self.picker.value if n in names]

    def _frame(self, summaries: list[RunSummary]) -> pd.DataFrame:
        rows = []
        for s in summaries:
            llc, std = self.index.llc(s) if hasattr(self, "index") else (math.nan,) * 2
            if not math.isfinite(llc):
                llc, std = getattr(self, "_known_llc", {}).get(s.path, (llc, std))
            settings = s.settings
            rows.append(
                {
                    "run": s.name,
                    "status": s.status,
                    "LLC": _round(llc),
                    "± std": _round(std),
                    **{k: settings.get(k) for k in LEADING},
                    "started": _when(s.started_at),
                    "duration": _duration(s.duration_s),
                    "steps": f"{s.steps_done}/{s.total_steps}",
                    "model": s.model,
                    **{k: _cell(settings.get(k)) for k in SETTINGS if k not in LEADING},
                }
            )
        columns = ["run", "status", "LLC", "± std", *LEADING, "started", "duration", "steps"]
        columns += ["model", *(k for k in SETTINGS if k not in LEADING)]
        return pd.DataFrame(rows, columns=columns)

    def note_llc(self, path: str, mean: float, std: float) -> None:
        """Record the LLC a dashboard computed for the run at `path` (shown in its row)."""
        self._known_llc[str(path)] = (mean, std)
        self._signature = ()  # redraw at the next refresh

    def select(self, paths: list[str]) -> None:
        """Show the traces of the runs at these store paths (as picking them does)."""
        wanted = {str(p) for p in paths}
        self.picker.value = [s.name for s in self.summaries if s.path in wanted]

    def _on_pick(self, event) -> None:
        by_name = {s.name: s for s in self.summaries}
        chosen = [by_name[n] for n in event.new if n in by_name]
        self.selected = [s.path for s in chosen]
        self.show(chosen)

    # --- traces ----------------------------------------------------------------------------------

    def show(self, chosen: list[RunSummary]) -> None:
        """One run: its chains' traces. Several: their mean traces overlaid (up to 10)."""
        self.message.object = ""
        if not chosen:
            self.traces.objects = []
            return
        if len(chosen) > MAX_OVERLAY:
            self.message.object = f"showing the first {MAX_OVERLAY} of {len(chosen)} selected runs"
            chosen = chosen[:MAX_OVERLAY]
        loaded, failed = [], []
        for summary in chosen:
            try:
                loaded.append((summary, self.index.traces(summary)))
            except (OSError, KeyError, ValueError, MarkerUnreadable):
                failed.append(summary.name)
        if failed:
            self.message.object = "not a readable sample store: " + escape.text(", ".join(failed))
        if not loaded:
            self.traces.objects = []
            return
        figs = _single(*loaded[0]) if len(loaded) == 1 else _overlay(loaded)
        self.traces.objects = [
            pn.Row(
                *[pn.pane.Bokeh(f, sizing_mode="stretch_width") for f in figs],
                sizing_mode="stretch_width",
            )
        ]

    # --- layout and lifecycle -----------------------------------------------------------------------

    def start_refreshing(self) -> None:
        """Rescan every `refresh_ms` on the session's event loop (call from a server session)."""
        if self._callback is None and self.refresh_ms:
            self._callback = pn.state.add_periodic_callback(self.refresh, period=self.refresh_ms)

    def stop_refreshing(self) -> None:
        if self._callback is not None:
            self._callback.stop()
            self._callback = None

    def __panel__(self) -> pn.viewable.Viewable:
        where = escape.code(self.runs_dir)
        return pn.Column(
            pn.Row(
                pn.pane.HTML(f"Every store under {where}.", sizing_mode="stretch_width"),
                self.refresh_button,
                sizing_mode="stretch_width",
            ),
            pn.Row(self.filter_input, self.sort_select, self.order_toggle, self.count),
            self.table,
            self.picker,
            self.message,
            self.traces,
            sizing_mode="stretch_width",
        )


def _single(summary: RunSummary, traces) -> list:
    loss = make_figure(f"{_short(summary.name)}: loss per chain", "step", "loss (nats)", height=300)
    llc = make_figure("running LLC per chain", "step", "λ̂", height=300)
    for c, ((lx, ly), (cx, cy)) in enumerate(zip(traces.loss, traces.llc, strict=True)):
        loss.line(lx, ly, color=chain_color(c), line_width=1.5, legend_label=f"chain {c}")
        llc.line(cx, cy, color=chain_color(c), line_width=1.5)
    loss.legend.location = "top_right"
    return _shown(loss, llc)


def _overlay(loaded) -> list:
    loss = make_figure("Mean sampling loss per step", "step", "loss (nats)", height=320)
    llc = make_figure("Running LLC (mean over chains)", "step", "λ̂", height=320)
    items = []
    for k, (summary, traces) in enumerate(loaded):
        color = Category10_10[k % 10]
        s = summary.settings
        label = f"{_short(summary.name, 28)} (lr={s.get('lr')}, n_beta={s.get('n_beta')})"
        r1 = loss.line(*traces.mean_loss, color=color, line_width=2)
        llc.line(*traces.mean_llc, color=color, line_width=2)
        items.append(LegendItem(label=label, renderers=[r1]))
    loss.add_layout(Legend(items=items, label_text_font_size="11px"), "below")
    return _shown(loss, llc)


def _shown(*figs) -> list:
    shown = []
    for fig in figs:
        data = [r.data_source.data for r in fig.renderers]
        if any(len(d.get("x", [])) for d in data):
            fit_ranges(fig, [d["x"] for d in data], [d["y"] for d in data])
            fig.visible = True
            shown.append(fig)
    return shown


def _short(name: str, limit: int = 36) -> str:
    return name if len(name) <= limit else "…" + name[-(limit - 1) :]


def _round(x: float) -> float:
    return round(float(x), 4) if x is not None and math.isfinite(x) else math.nan


def _cell(value):
    """Settings cells hold numbers, booleans or text: dicts and None become text."""
    if value is None or isinstance(value, (dict, list)):
        return "" if value is None else str(value)
    return value


def _when(ts: float | None) -> str:
    if ts is None:
        return ""
    return dt.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S")


def _duration(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return ""
    seconds = int(round(seconds))
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"
