"""Bokeh figures fed by streamed, decimated series: one line per chain, one colour per chain.

`ChainLines` is one figure with a `ColumnDataSource` per chain. New points are streamed and each
series keeps a fixed budget of points (`BucketSeries`), so an update costs the same at step 100
and at step 100k. Chain c has the same colour in every figure.

Two details keep the browser console clean and the page readable:
- a figure stays hidden (`visible` False) until its first point arrives, and the page adds it
  only then (see `LivePlots`); its ranges are `Range1d`s that `ChainLines.push` sets to the
  data's bounds, never NaN. BokehJS logs "could not set initial ranges" (on log axes "could not
  determine ... value") whenever a plot with automatic ranges paints before its glyphs have
  data, which a live plot does at every first paint. Once the user pans or zooms, the ranges
  are left alone (until "reset");
- titles are short, toolbars sit to the right (not on the title row) and hide until hovered;
  axes carry few ticks, so that labels do not overlap on small figures.
"""

from __future__ import annotations

import numpy as np
from bokeh.models import ColumnDataSource, Legend, LegendItem, Range1d
from bokeh.palettes import Category10_10
from bokeh.plotting import figure

from devinterp_ui.ui.decimate import BucketSeries


def chain_color(chain: int) -> str:
    return Category10_10[chain % 10]


def make_figure(
    title: str,
    x_label: str,
    y_label: str,
    *,
    log_y: bool = False,
    height: int = 260,
    width: int = 520,
):
    """A figure that stretches to its container; toolbar right, hidden until hovered."""
    fig = figure(
        title=title,
        height=height,
        width=width,
        x_range=Range1d(0, 1),
        y_range=Range1d(0.1, 10) if log_y else Range1d(0, 1),
        y_axis_type="log" if log_y else "linear",
        tools="pan,wheel_zoom,box_zoom,reset,save",
        toolbar_location="right",
        output_backend="canvas",
        sizing_mode="stretch_width",
        min_width=240,
    )
    fig.toolbar.autohide = True
    fig.xaxis.axis_label = x_label
    fig.yaxis.axis_label = y_label
    fig.title.text_font_size = "13px"
    # Few ticks: at notebook width a small figure is ~250 px wide and 200 high, and a log axis
    # over less than a decade otherwise labels every few hundredths, labels on top of each other.
    fig.xaxis.ticker.desired_num_ticks = 5
    fig.yaxis.ticker.desired_num_ticks = 4 if log_y else 5
    if log_y:
        fig.yaxis.minor_tick_line_color = None
    fig.visible = False  # until the first point: see the module docstring
    return fig


def fit_ranges(fig, xs: list, ys: list, log_y: bool = False) -> None:
    """Set `fig`'s Range1d x and y to the bounds of the points (5% padding; log-aware), unless
    the user moved them since the last fit."""
    x = np.concatenate([np.asarray(v, float) for v in xs]) if xs else np.zeros(0)
    y = np.concatenate([np.asarray(v, float) for v in ys]) if ys else np.zeros(0)
    keep = np.isfinite(x) & np.isfinite(y) & ((y > 0) if log_y else True)
    if not keep.any():
        return
    last = getattr(fig, "_fitted", None)
    now = (fig.x_range.start, fig.x_range.end, fig.y_range.start, fig.y_range.end)
    if last is not None and now != last:
        return  # panned or zoomed in the browser: leave the user's view
    x, y = x[keep], y[keep]
    x0, x1 = _padded(float(x.min()), float(x.max()), False)
    y0, y1 = _padded(float(y.min()), float(y.max()), log_y)
    fig.x_range.update(start=x0, end=x1)
    fig.y_range.update(start=y0, end=y1)
    fig._fitted = (x0, x1, y0, y1)


def _padded(lo: float, hi: float, log: bool) -> tuple[float, float]:
    if log:
        a, b = np.log10(lo), np.log10(hi)
        pad = 0.05 * (b - a) or 0.5
        return float(10 ** (a - pad)), float(10 ** (b + pad))
    pad = 0.05 * (hi - lo) or (abs(hi) * 0.05 or 0.5)
    return lo - pad, hi + pad


class ChainLines:
    """Figures with a line per chain, each chain a decimated, streamed series.

    fig: the main figure. log_fig: optionally the same lines on a log y axis (sharing the
    sources, so the points travel once); `set_log(True)` shows it instead of `fig`.
    positive: drop values <= 0 (for figures whose only axis is logarithmic).
    """

    def __init__(
        self,
        key: str,
        fig,
        num_chains: int,
        budget: int,
        *,
        legend: bool = False,
        positive: bool = False,
        log_fig=None,
    ):
        self.key = key
        self.fig = fig
        self.log_fig = log_fig
        self.positive = positive
        self.log = False
        self.series = [BucketSeries(budget) for _ in range(num_chains)]
        # Named "<key>:chain<c>" so browser tests can find each chain's line.
        self.sources = [
            ColumnDataSource(data={"x": [], "y": []}, name=f"{key}:chain{c}")
            for c in range(num_chains)
        ]
        for target in self.figures:
            renderers = [
                target.line("x", "y", source=src, color=chain_color(c), line_width=1.6, alpha=0.9)
                for c, src in enumerate(self.sources)
            ]
            if legend:
                items = [
                    LegendItem(label=f"chain {c}", renderers=[r]) for c, r in enumerate(renderers)
                ]
                target.add_layout(
                    Legend(
                        items=items,
                        location="top_left",
                        orientation="horizontal",
                        label_text_font_size="11px",
                        spacing=4,
                        padding=2,
                    ),
                    "below",
                )

    @property
    def figures(self) -> list:
        return [self.fig] if self.log_fig is None else [self.fig, self.log_fig]

    def extend(self, chain: int, x: np.ndarray, y: np.ndarray) -> None:
        keep = np.isfinite(y) & (y > 0) if self.positive else np.isfinite(y)
        if keep.any():
            self.series[chain].extend(x[keep], y[keep])

    def push(self) -> None:
        """Send what changed since the last push to the browser."""
        for series, source in zip(self.series, self.sources, strict=True):
            reset, x, y = series.take_new()
            if reset:
                source.data = {"x": x, "y": y}
            elif len(x):
                source.stream({"x": x, "y": y})
        self._show()

    def set_log(self, log: bool) -> None:
        """Show the log-y figure (when there is one) instead of the linear one."""
        self.log = bool(log) and self.log_fig is not None
        self._show()

    def _show(self) -> None:
        if self.points() == 0:
            return
        xs = [s.data["x"] for s in self.sources]
        ys = [s.data["y"] for s in self.sources]
        for fig in self.figures:
            fit_ranges(fig, xs, ys, log_y=fig.y_scale.__class__.__name__ == "LogScale")
        shown, hidden = (self.log_fig, self.fig) if self.log else (self.fig, self.log_fig)
        if not shown.visible:
            shown.visible = True
        if hidden is not None and hidden.visible:
            hidden.visible = False

    def points(self) -> int:
        return sum(len(s.data["x"]) for s in self.sources)

    def max_abs(self) -> float:
        """Largest |y| the browser holds (0 when empty)."""
        values = [np.abs(np.asarray(s.data["y"], float)) for s in self.sources if len(s.data["y"])]
        return float(max(v.max() for v in values)) if values else 0.0


def cosine(metrics: dict[str, np.ndarray], dot: str, a: str, b: str) -> np.ndarray | None:
    """dot / (|a| |b|) per step. |prior| = |localization + weight_decay| is exact when one of the
    two is zero (the usual case) and sqrt(|loc|^2 + |wd|^2) otherwise."""
    if dot not in metrics:
        return None
    norms = dict(metrics)
    if "localization" in metrics and "weight_decay" in metrics:
        norms["prior"] = np.sqrt(metrics["localization"] ** 2 + metrics["weight_decay"] ** 2)
    if a not in norms or b not in norms:
        return None
    with np.errstate(divide="ignore", invalid="ignore"):
        out = metrics[dot] / (norms[a] * norms[b])
    return np.where(np.isfinite(out), out, np.nan)
