"""What a finished (or stopped) run leaves behind: its record, LLC summary and exports.

No widgets here: `RunRecord` and the export functions are plain data and text, used by the
`Result` viewer (ui/result.py) and by the run library.
"""

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
from bokeh.plotting import figure
from bokeh.resources import INLINE

from devinterp_ui.analysis import compute_llc
from devinterp_ui.analysis.diagnostics import without_failed
from devinterp_ui.config import SETTINGS
from devinterp_ui.ui.figures import chain_color


@dataclass
class RunRecord:
    """One run shown by a dashboard (started there, or a store opened by path).

    settings: every sampler setting of the run (`full_settings`), defaults included.
    """

    run_id: int
    path: str
    settings: dict[str, Any]
    status: str = "running"
    llc_mean: float = float("nan")
    llc_std: float = float("nan")
    per_chain: pd.DataFrame | None = None
    tree: xr.DataTree | None = field(default=None, repr=False)
    label: str = ""
    burnin: int | None = None  # steps left out of the LLC; None: the run's num_burnin_steps

    def row(self) -> dict[str, Any]:
        """The run as a table row: status, LLC, then every setting."""
        return {
            "run": self.run_id,
            "label": self.label,
            "status": self.status,
            "LLC": _round(self.llc_mean),
            "± std": _round(self.llc_std),
            **full_settings(self.settings),
            "store": self.path,
        }


def full_settings(settings: dict[str, Any]) -> dict[str, Any]:
    """Every setting of `SETTINGS`, in declaration order: `settings`' value, else the default.

    Exports and tables list them all, so that a row read later says exactly what ran, even
    after a default changes.
    """
    return {name: settings.get(name, meta["default"]) for name, meta in SETTINGS.items()}


def _round(x: float) -> float:
    return round(float(x), 4) if np.isfinite(x) else float("nan")


def summarize(record: RunRecord, tree: xr.DataTree, burnin: int | None = None) -> RunRecord:
    """Fill in the LLC summary of `record` from its tree (completed or trimmed after a stop),
    leaving out `burnin` steps (None: the run's own num_burnin_steps)."""
    llc = compute_llc(tree, num_burnin_steps=burnin)
    record.burnin = burnin
    progress = tree.attrs.get("progress", {}).get("chains", {})
    chains = llc.sizes["chain"]
    statuses = progress.get("status", ["?"] * chains)
    # A failed chain gives no LLC: the Health panel's rule (diagnose), so the two agree.
    per_chain = without_failed(llc["llc_per_chain"], statuses)
    record.tree = tree
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # every chain failed: NaN
        record.llc_mean = float(per_chain.mean())
        record.llc_std = float(per_chain.std())
    final = llc["loss_trace"].values
    record.per_chain = pd.DataFrame(
        {
            "chain": np.arange(chains),
            "LLC": np.round(per_chain.values, 4),
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
    """Per-chain LLC table as CSV, preceded by `# name=value` lines for every setting."""
    out = io.StringIO()
    out.write(f"# store={record.path}\n# status={record.status}\n")
    out.write(f"# llc_mean={record.llc_mean}\n# llc_std={record.llc_std}\n")
    if record.burnin is not None:  # the burn-in slider moved: the LLC leaves out these steps
        out.write(f"# llc_burnin_steps={record.burnin}\n")
    for name, value in full_settings(record.settings).items():
        out.write(f"# {name}={value}\n")
    if record.per_chain is not None:
        record.per_chain.to_csv(out, index=False)
    out.seek(0)
    return out


def plots_html(plots, title: str) -> io.StringIO:
    """A standalone HTML page (Bokeh's JS inlined, no network needed) of a `LivePlots`' lines."""
    figures = []
    for lines in plots.all_lines:
        if not lines.points():
            continue
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
