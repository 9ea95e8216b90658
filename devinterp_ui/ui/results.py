"""What a finished (or stopped) run leaves on the page: LLC summary, exports, overlays."""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr
from bokeh.embed import file_html
from bokeh.layouts import gridplot
from bokeh.models import Legend, LegendItem
from bokeh.plotting import figure
from bokeh.resources import INLINE

from devinterp_ui.analysis import compute_llc
from devinterp_ui.ui.plots import LivePlots, chain_color


@dataclass
class RunRecord:
    """One run of this dashboard session (or one store opened by path)."""

    run_id: int
    path: str
    settings: dict[str, Any]
    status: str = "running"
    llc_mean: float = float("nan")
    llc_std: float = float("nan")
    per_chain: pd.DataFrame | None = None
    tree: xr.DataTree | None = field(default=None, repr=False)
    label: str = ""

    def row(self) -> dict[str, Any]:
        s = self.settings
        return {
            "run": self.run_id,
            "label": self.label,
            "status": self.status,
            "LLC": _round(self.llc_mean),
            "± std": _round(self.llc_std),
            "lr": s.get("lr"),
            "n_beta": s.get("n_beta"),
            "localization": s.get("localization"),
            "chains": s.get("num_chains"),
            "draws": s.get("num_draws"),
            "store": self.path,
        }


def _round(x: float) -> float:
    return round(float(x), 4) if np.isfinite(x) else float("nan")


def summarize(record: RunRecord, tree: xr.DataTree) -> RunRecord:
    """Fill in the LLC summary of `record` from its tree (completed or trimmed after a stop)."""
    llc = compute_llc(tree)
    progress = tree.attrs.get("progress", {}).get("chains", {})
    chains = llc.sizes["chain"]
    statuses = progress.get("status", ["?"] * chains)
    record.tree = tree
    record.llc_mean = float(llc["llc_mean"])
    record.llc_std = float(llc["llc_std"])
    final = llc["loss_trace"].values
    record.per_chain = pd.DataFrame(
        {
            "chain": np.arange(chains),
            "LLC": np.round(llc["llc_per_chain"].values, 4),
            "steps used": llc["n_steps_used"].values,
            "last loss": np.round([_last_finite(final[c]) for c in range(chains)], 4),
            "status": statuses[:chains],
        }
    )
    return record


def _last_finite(row: np.ndarray) -> float:
    finite = row[np.isfinite(row)]
    return float(finite[-1]) if finite.size else float("nan")


def summary_csv(record: RunRecord) -> io.StringIO:
    """Per-chain LLC table as CSV, preceded by `# name=value` lines for the settings."""
    out = io.StringIO()
    out.write(f"# store={record.path}\n# status={record.status}\n")
    out.write(f"# llc_mean={record.llc_mean}\n# llc_std={record.llc_std}\n")
    for name, value in record.settings.items():
        out.write(f"# {name}={value}\n")
    if record.per_chain is not None:
        record.per_chain.to_csv(out, index=False)
    out.seek(0)
    return out


def plots_html(plots: LivePlots, title: str) -> io.StringIO:
    """A standalone HTML page (Bokeh's JS inlined, no network needed) of the current plots."""
    figures = []
    for lines in plots.all_lines:
        src = lines.fig
        fig = figure(
            title=src.title.text,
            height=260,
            width=480,
            y_axis_type="log" if src.y_scale.__class__.__name__ == "LogScale" else "linear",
        )
        fig.xaxis.axis_label = src.xaxis[0].axis_label
        fig.yaxis.axis_label = src.yaxis[0].axis_label
        for c, source in enumerate(lines.sources):
            fig.line(
                list(source.data["x"]), list(source.data["y"]), color=chain_color(c), line_width=1.5
            )
        figures.append(fig)
    html = file_html(gridplot(figures, ncols=2), INLINE, title)
    return io.StringIO(html)


def overlay_figure(a: RunRecord, b: RunRecord):
    """Mean loss trace and running LLC (mean over chains) of two runs, one colour per run."""
    loss = figure(
        title="Mean sampling loss per step", height=280, width=520, sizing_mode="stretch_width"
    )
    llc = figure(
        title="Running LLC (mean over chains)", height=280, width=520, sizing_mode="stretch_width"
    )
    loss.xaxis.axis_label = llc.xaxis.axis_label = "step"
    loss.yaxis.axis_label = "loss (nats)"
    llc.yaxis.axis_label = "λ̂"
    items_loss, items_llc = [], []
    for record, color in ((a, "#1f77b4"), (b, "#d62728")):
        ds = compute_llc(record.tree)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns during burn-in
            mean_loss = np.nanmean(ds["loss_trace"].values, axis=0)
            mean_llc = np.nanmean(ds["llc_running"].values, axis=0)
        steps = ds["step"].values if "step" in ds.coords else np.arange(ds.sizes["step"])
        label = f"run {record.run_id} (lr={record.settings.get('lr')}, n_beta={record.settings.get('n_beta')})"
        r1 = loss.line(steps, mean_loss, color=color, line_width=2)
        r2 = llc.line(steps, mean_llc, color=color, line_width=2)
        items_loss.append(LegendItem(label=label, renderers=[r1]))
        items_llc.append(LegendItem(label=label, renderers=[r2]))
    loss.add_layout(Legend(items=items_loss, location="bottom_right"))
    llc.add_layout(Legend(items=items_llc, location="bottom_right"))
    return gridplot([[loss, llc]], sizing_mode="stretch_width")
