"""`Result`: the LLC of a finished (or stopped) run, its per-chain table and downloads."""

from __future__ import annotations

import math

import panel as pn
import param

from devinterp_ui.ui import escape
from devinterp_ui.ui.results import RunRecord, plots_html, summary_csv


class Result(pn.viewable.Viewer):
    """Shows `record` (a `RunRecord`) once its summary is in; empty before the first run.

    plots: the run's `LivePlots`, for the HTML download. true_lambda: shown beside the LLC for
    known-lambda demos.
    """

    record = param.ClassSelector(class_=RunRecord, default=None, allow_None=True)
    plots = param.Parameter(default=None, doc="The run's LivePlots (for the HTML export).")
    true_lambda = param.Number(default=None, allow_None=True)

    def __init__(self, **params):
        super().__init__(**params)
        self.head = pn.pane.HTML("", sizing_mode="stretch_width")
        self.table = pn.pane.DataFrame(None, index=False, sizing_mode="stretch_width")
        self.downloads = pn.Row()
        self.param.watch(lambda _e: self._render(), ["record"])
        self._render()

    def show(self, record: RunRecord, plots=None, true_lambda: float | None = None) -> None:
        """Display `record` (call again after its summary changed)."""
        self.plots, self.true_lambda = plots, true_lambda
        if self.record is record:
            self._render()
        else:
            self.record = record

    def clear(self) -> None:
        self.record = None

    @property
    def text(self) -> str:
        """The head's HTML (tests read it)."""
        return self.head.object

    def _render(self) -> None:
        record = self.record
        if record is None:
            self.head.object, self.table.object, self.downloads.objects = "", None, []
            return
        where = f"Run {record.run_id} <b>{escape.text(record.status)}</b> · store "
        where += escape.code(record.path)
        if record.per_chain is None:
            self.head.object = f"<p>{where}</p>"
            self.table.object, self.downloads.objects = None, []
            return
        truth = f" · true λ = {self.true_lambda:g}" if self.true_lambda is not None else ""
        if math.isfinite(record.llc_mean):
            llc = f"LLC = {record.llc_mean:.4g} ± {record.llc_std:.2g}"
            llc += f"<small> (std over chains){truth}</small>"
        else:  # every chain failed (a failed chain gives no LLC) or none has a used step
            llc = f"No LLC<small> (no chain gave one: see the health flags){truth}</small>"
        self.head.object = f"<h3>{llc}</h3><p>{where}</p>"
        self.table.object = record.per_chain
        csv = pn.widgets.FileDownload(
            callback=lambda: summary_csv(record),
            filename=f"run{record.run_id}_llc.csv",
            label="Download summary (CSV)",
            color="default",
            width=220,
        )
        parts = [csv]
        plots = self.plots
        if plots is not None:
            parts.append(
                pn.widgets.FileDownload(
                    callback=lambda: plots_html(plots, f"run {record.run_id}"),
                    filename=f"run{record.run_id}_plots.html",
                    label="Download plots (HTML)",
                    color="default",
                    width=220,
                )
            )
        self.downloads.objects = parts

    def __panel__(self) -> pn.viewable.Viewable:
        return pn.Column(self.head, self.table, self.downloads, sizing_mode="stretch_width")
