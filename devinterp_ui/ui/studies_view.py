"""`StudiesView`: a study's picture, filling while its cells run.

Sweep: a heat map per localization (or per combination of the grid's other dims), lr across,
n_beta up; colour = LLC (partial while a cell runs, drawn paler), marker = health severity,
hover gives the numbers. Trajectory: LLC against training step with std-over-chains error bars,
the step on a log axis when "log x (step)" is ticked (by default when the positive steps span
more than a factor `LOG_X_SPAN`; step 0 cannot go on a log axis and is then left out, the title
says so).
Everything is read from the study's directory (study.json and the cell stores), so a study
started from a notebook, a script or a cluster job is watched the same way as one started here.

Clicking a cell or point sets `selected_store` (the cell's store path): the dashboard watches
that parameter to open the run in its single-run view.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import panel as pn
import param
from bokeh.models import ColorBar, ColumnDataSource, HoverTool, LinearColorMapper, TapTool, Whisker
from bokeh.palettes import Viridis256
from bokeh.plotting import figure

from devinterp_ui.study.grid import format_value
from devinterp_ui.ui import escape
from devinterp_ui.ui.study_table import StudyTable

# Marker per health severity (worst flag of the cell); "unknown": no verdict (yet).
MARKERS = {"ok": "circle", "info": "circle", "warn": "triangle", "error": "x", "unknown": "square"}
MARKER_COLORS = {
    "ok": "white",
    "info": "white",
    "warn": "orange",
    "error": "red",
    "unknown": "grey",
}
HOVER = [
    ("cell", "@cell"),
    ("LLC", "@llc_mean{0.000}"),
    ("std over chains", "@llc_std{0.000}"),
    ("MCSE", "@mcse{0.000}"),
    ("R-hat", "@rhat{0.000}"),
    ("ESS", "@ess{0}"),
    ("status", "@status"),
    ("health", "@severity @flags"),
]
# Checkpoints spread over more than this factor bunch up at the left of a linear axis (a
# demo's are log-spaced from 10 to 3000): the trajectory starts on a log axis.
LOG_X_SPAN = 20.0
TRAJECTORY_TITLE = "LLC over training"
_SERIAL = itertools.count(1)  # tells the models of successive views in one page apart

KEY = (
    "marker = worst health flag: ○ ok or info · △ warn · ✕ error · □ no verdict yet; "
    "pale cell: still running, its LLC from the draws so far. Hover for the numbers, click "
    "to open the run."
)
COLUMNS = (
    "cell",
    "store",
    "status",
    "llc_mean",
    "llc_std",
    "mcse",
    "rhat",
    "ess",
    "severity",
    "flags",
    "partial",
)


class StudiesView(pn.viewable.Viewer):
    """Watches a study directory (or a `Study`) and draws it.

    `refresh()` reads the stores once and updates the plots; when shown in a served page or a
    notebook, a periodic callback calls it every `period_ms`.
    """

    output_dir = param.String(default="", doc="The study's output_dir (holds study.json).")
    study = param.Parameter(
        default=None, doc="A Study handle: its output_dir is watched; Stop stops it."
    )
    period_ms = param.Integer(default=1000, bounds=(100, None), doc="Refresh period when shown.")
    selected_store = param.String(default="", doc="Store path of the last clicked cell or point.")
    status_text = param.String(default="", doc="One line: cells by status.")
    log_x = param.Boolean(
        default=False,
        doc="Trajectory: training step on a log x axis (step 0 left out). Unless set, it "
        "follows the steps: log when the positive ones span more than a factor LOG_X_SPAN.",
    )

    def __init__(self, output_dir: str | Path | None = None, **params: Any):
        if output_dir is not None:
            params["output_dir"] = str(output_dir)
        # log_x follows the study's steps until someone sets it (here or with the toggle).
        self._log_x_auto = "log_x" not in params
        self._log_x_by_rule = False
        super().__init__(**params)
        if self.study is not None and not self.output_dir:
            self.output_dir = str(self.study.output_dir)
        if not self.output_dir:
            raise ValueError("StudiesView needs output_dir= (a study directory) or study=.")
        self.table = StudyTable(self.output_dir)
        self.frame = pd.DataFrame()
        self.sources: dict[str, ColumnDataSource] = {}  # panel title -> one row per cell
        self.figures: dict[str, Any] = {}
        self.mapper = LinearColorMapper(palette=Viridis256, nan_color="#dddddd")
        self._layout_key: tuple | None = None
        self.serial = next(_SERIAL)
        self._callback = None
        self.stop_button = pn.widgets.Button(
            label="Stop every cell", color="danger", visible=self.study is not None
        )
        self.stop_button.on_click(lambda _: self.stop())
        self.status_pane = pn.pane.Str("", sizing_mode="stretch_width")
        self.log_x_toggle = pn.widgets.Checkbox.from_param(
            self.param.log_x, name="log x (step)", visible=False
        )
        self.param.watch(self._on_log_x, "log_x")
        self.plot_area = pn.Column(sizing_mode="stretch_width")
        self.key = pn.pane.HTML(
            f"<small>{escape.text(KEY)}</small>",
            styles={"color": "#555"},
            sizing_mode="stretch_width",
        )
        self.refresh()

    # --- reading ----------------------------------------------------------------------------

    def refresh(self) -> None:
        """Re-read the study and update the figures (rebuilt only when the grid changed)."""
        self.frame = frame = self.table.read()
        if frame.empty:
            self.status_text = f"waiting for a study in {self.output_dir}"
            self.status_pane.object = self.status_text
            return
        trajectory = self.table.kind == "trajectory"
        self.log_x_toggle.visible = trajectory
        if trajectory and self._log_x_auto:
            self._log_x_by_rule = True
            try:
                self.log_x = default_log_x(frame["step"])
            finally:
                self._log_x_by_rule = False
        self._draw(frame)
        counts = frame["status"].value_counts()
        self.status_text = f"{self.table.kind}: " + ", ".join(f"{n} {s}" for s, n in counts.items())
        self.status_pane.object = self.status_text

    def stop(self) -> None:
        if self.study is not None:
            self.study.stop()

    def _draw(self, frame: pd.DataFrame) -> None:
        """Update the figures, rebuilt when the grid or the trajectory's x axis changed."""
        log_x = self.log_x and self.table.kind == "trajectory"
        key = (self.table.kind, tuple(self.table.dims), tuple(frame["cell"]), log_x)
        if key != self._layout_key:
            self._build(frame)
            self._layout_key = key
        self._update(frame)

    def _on_log_x(self, _event) -> None:
        if self._log_x_by_rule:
            return  # refresh() draws next
        self._log_x_auto = False
        if not self.frame.empty:
            # A figure's scale type is fixed once drawn: the trajectory figure is rebuilt.
            self._draw(self.frame)

    # --- layout ------------------------------------------------------------------------------

    def panels(self, frame: pd.DataFrame) -> dict[str, pd.DataFrame]:
        """Heat-map panels: title -> the cells drawn in it (one per value of the other dims)."""
        if self.table.kind == "trajectory":
            part = frame.sort_values("step")
            return {TRAJECTORY_TITLE: part[part["step"] > 0] if self.log_x else part}
        others = [d for d in self.table.dims if d not in ("lr", "n_beta")]
        if not others:
            return {"": frame}
        out = {}
        for values in itertools.product(*(pd.unique(frame[d]) for d in others)):
            mask = np.logical_and.reduce(
                [frame[d] == v for d, v in zip(others, values, strict=True)]
            )
            title = ", ".join(f"{d} = {v}" for d, v in zip(others, values, strict=True))
            if mask.any():  # a directory's cells need not fill the product
                out[title] = frame[mask]
        return out

    def _build(self, frame: pd.DataFrame) -> None:
        self.sources, self.figures = {}, {}
        for i, (title, part) in enumerate(self.panels(frame).items()):
            # Named so a page (or a browser test) can find panel i's cells and figure.
            source = ColumnDataSource(self._columns(part), name=f"study-cells:{self.serial}:{i}")
            source.selected.on_change("indices", self._on_tap(title))
            fig = (
                self._trajectory(source, left_out=len(frame) - len(part))
                if self.table.kind == "trajectory"
                else self._heat(title, source, frame)
            )
            fig.name = f"study-plot:{self.serial}:{i}"
            self.sources[title], self.figures[title] = source, fig
        # Fixed-size panes: a figure added to a tab that was hidden and shown again was laid
        # out with no width (a blank strip with its axis labels clipped).
        figs = [
            pn.pane.Bokeh(f, sizing_mode="fixed", width=f.width, height=f.height)
            for f in self.figures.values()
        ]
        self.plot_area.objects = figs if len(figs) == 1 else [pn.FlexBox(*figs)]

    def _heat(self, title: str, source: ColumnDataSource, frame: pd.DataFrame):
        xs = [_label(v) for v in _axis(frame, "lr")]
        ys = [_label(v) for v in _axis(frame, "n_beta")]
        fig = figure(
            x_range=xs,
            y_range=ys,
            width=420,  # 70 of it the colour bar and its labels
            height=300,
            title=title or "sweep",
            x_axis_label="lr",
            y_axis_label="n_beta",
            tools="tap,save,reset",
            toolbar_location="below",
        )
        rects = fig.rect(
            "x",
            "y",
            1,
            1,
            source=source,
            line_color="white",
            fill_alpha="alpha",
            fill_color={"field": "llc_mean", "transform": self.mapper},
        )
        fig.scatter(
            "x",
            "y",
            source=source,
            marker="marker",
            size=12,
            line_color="black",
            fill_color="marker_color",
        )
        fig.add_tools(HoverTool(renderers=[rects], tooltips=HOVER))
        fig.select_one(TapTool).renderers = [rects]
        # Room for the bar's tick labels: Bokeh does not widen the border for them and clips
        # everything past the first digit.
        fig.min_border_right = 70
        fig.add_layout(ColorBar(color_mapper=self.mapper, title="LLC", width=8), "right")
        return fig

    def _trajectory(self, source: ColumnDataSource, left_out: int = 0):
        """left_out: cells not drawn (step 0 on a log axis), named in the title."""
        title = TRAJECTORY_TITLE
        if left_out:
            title += " (log step: step 0 not shown)"
        fig = figure(
            width=640,
            height=320,
            title=title,
            x_axis_type="log" if self.log_x else "linear",
            x_axis_label="training step (log)" if self.log_x else "training step",
            y_axis_label="LLC (bars: ± std over chains)",
            tools="tap,pan,wheel_zoom,save,reset",
            toolbar_location="below",
        )
        fig.line("step", "llc_mean", source=source, color="black")
        fig.add_layout(Whisker(base="step", lower="lower", upper="upper", source=source))
        points = fig.scatter(
            "step",
            "llc_mean",
            source=source,
            marker="marker",
            size=10,
            line_color="black",
            fill_color="marker_color",
        )
        fig.add_tools(HoverTool(renderers=[points], tooltips=[("step", "@step"), *HOVER]))
        fig.select_one(TapTool).renderers = [points]
        return fig

    # --- data ----------------------------------------------------------------------------------

    def _update(self, frame: pd.DataFrame) -> None:
        finite = frame["llc_mean"][np.isfinite(frame["llc_mean"].astype(float))]
        if len(finite):
            low, high = float(finite.min()), float(finite.max())
            self.mapper.update(low=low, high=high if high > low else low + 1e-9)
        for title, part in self.panels(frame).items():
            self.sources[title].data = self._columns(part)

    def _columns(self, part: pd.DataFrame) -> dict[str, list]:
        cols: dict[str, list] = {c: part[c].tolist() for c in COLUMNS if c in part}
        for d in self.table.dims:
            cols[d] = part[d].tolist()
        severity = [s if s in MARKERS else "unknown" for s in part["severity"]]
        cols["marker"] = [MARKERS[s] for s in severity]
        cols["marker_color"] = [MARKER_COLORS[s] for s in severity]
        cols["alpha"] = [0.45 if p else 1.0 for p in part["partial"]]
        if self.table.kind == "trajectory":
            mean = np.asarray(part["llc_mean"], dtype=float)
            std = np.nan_to_num(np.asarray(part["llc_std"], dtype=float))
            cols["lower"], cols["upper"] = (mean - std).tolist(), (mean + std).tolist()
        else:
            cols["x"] = [_label(v) for v in part.get("lr", [None] * len(part))]
            cols["y"] = [_label(v) for v in part.get("n_beta", [None] * len(part))]
        return cols

    def _on_tap(self, title: str):
        def tapped(_attr, _old, new):
            if new:
                self.selected_store = self.sources[title].data["store"][new[0]]

        return tapped

    # --- showing -----------------------------------------------------------------------------

    def start_polling(self) -> None:
        if self._callback is None:
            self._callback = pn.state.add_periodic_callback(self.refresh, period=self.period_ms)

    def close(self) -> None:
        if self._callback is not None:
            self._callback.stop()
            self._callback = None

    def __panel__(self) -> pn.viewable.Viewable:
        self.start_polling()
        return pn.Column(
            pn.Row(
                self.status_pane, self.log_x_toggle, self.stop_button, sizing_mode="stretch_width"
            ),
            self.plot_area,
            self.key,
            sizing_mode="stretch_width",
        )


def default_log_x(steps) -> bool:
    """Log x for a trajectory whose positive steps span more than a factor LOG_X_SPAN.

    Step 0 (the initialisation) does not count: log-spaced checkpoints usually start there,
    and they are what a log axis is for; the log plot leaves it out and its title says so."""
    steps = np.asarray(list(steps), dtype=float)
    steps = steps[steps > 0]
    if steps.size < 2:
        return False
    return bool(steps.max() / steps.min() > LOG_X_SPAN)


def _axis(frame: pd.DataFrame, dim: str) -> list:
    return sorted(pd.unique(frame[dim])) if dim in frame else [None]


def _label(value: Any) -> str:
    if value is None:
        return "(fixed)"
    return format_value(value)
