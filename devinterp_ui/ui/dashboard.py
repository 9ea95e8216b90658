"""The dashboard: settings form, Start/Stop, live plots from the store, results and run history.

One `Dashboard` per browser session or notebook cell; it owns its job, reader and plots, so
nothing mutable is shared between sessions. Data flows one way:

    form --settings--> SamplingJob (thread) --> sample() --> store
    plots <-- read_new() <-- StoreReader(store)   (polled every `poll_ms` on the UI's loop)
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import panel as pn
import param
import xarray as xr
import zarr

from devinterp_ui.analysis import compute_llc, default_nbeta
from devinterp_ui.config import SETTINGS
from devinterp_ui.live import SamplingJob, StoreReader
from devinterp_ui.sample import batch_size_error
from devinterp_ui.store.schema import safe_name
from devinterp_ui.ui import notebook
from devinterp_ui.ui.form import SettingsForm, setting_of
from devinterp_ui.ui.plots import LivePlots
from devinterp_ui.ui.results import RunRecord, overlay_figure, plots_html, summarize, summary_csv

FINISHED = ("stopped", "completed", "failed")  # SamplingJob states after its thread ended


class Dashboard(pn.viewable.Viewer):
    """Tune SGLD live on your own model and data.

    Dashboard(model, dataset, observables, loss_fn=None, **settings) in a notebook, after
    `pn.extension()`; `Dashboard.from_demo()` for the shipped demos (with a picker).
    From code: `start()`, `stop()`, `wait(timeout)`, `result` (the DataTree), `job`, `llc()`,
    `settings` (a dict to paste into a headless `sample()` call).
    """

    status_text = param.String(default="Ready.")
    running = param.Boolean(default=False)

    def __init__(
        self,
        model=None,
        dataset=None,
        observables: dict[str, Any] | None = None,
        *,
        loss_fn=None,
        true_lambda: float | None = None,
        runs_dir: str | Path | None = None,
        poll_ms: int = 400,
        plot_budget: int = 600,
        demo: str | None = None,
        demo_step: int | None = None,
        **settings,
    ):
        super().__init__()
        unknown = sorted(set(settings) - set(SETTINGS))
        if unknown:
            raise TypeError(
                f"Dashboard got unknown setting(s) {unknown}; settings are sample()'s: "
                f"{', '.join(SETTINGS)}."
            )
        self.runs_dir = Path(runs_dir or os.environ.get("DEVINTERP_UI_RUNS_DIR", "runs"))
        self.poll_ms = poll_ms
        self.plot_budget = plot_budget
        self.job: SamplingJob | None = None
        self.reader: StoreReader | None = None
        self.plots: LivePlots | None = None
        self.runs: list[RunRecord] = []
        self.current: RunRecord | None = None
        self._callback = None
        self._demo_name = demo

        self.form = SettingsForm(check=self._check_with_data)
        self.observable_picker = pn.widgets.MultiChoice(
            label="observables", options=[], sizing_mode="stretch_width"
        )
        self.form._extra_basic = [self.observable_picker]
        self.form.widgets["batch_size"].param.watch(self._update_hint, "value")
        self.form.widgets["gradient_accumulation_steps"].param.watch(self._update_hint, "value")

        # The dashboard plots the SGLD terms, so it records them unless told not to.
        settings = {"save_metrics": True, **settings}
        if model is None:
            self._load_demo(demo or "tiny_lm", demo_step)
            self.form.set_values(settings)
        else:
            self.set_data(
                model, dataset, observables or {}, loss_fn=loss_fn, true_lambda=true_lambda
            )
            self.form.set_values(settings)
        self._build_widgets()
        pn.state.on_session_destroyed(self._on_session_destroyed)

    # --- construction ---------------------------------------------------------------------------

    @classmethod
    def from_demo(cls, name: str = "tiny_lm", step: int | None = None, **kwargs) -> Dashboard:
        return cls(demo=name, demo_step=step, **kwargs)

    def set_data(
        self,
        model,
        dataset,
        observables: dict[str, Any],
        *,
        loss_fn=None,
        true_lambda: float | None = None,
    ) -> None:
        """Point the dashboard at a model and its data (the next Start samples these)."""
        self.model, self.dataset, self.loss_fn = model, dataset, loss_fn
        self.observable_data = dict(observables)
        self.true_lambda = true_lambda
        self.observable_picker.options = list(self.observable_data)
        self.observable_picker.value = list(self.observable_data)
        self._dataset_rows = _rows(dataset)
        self._update_hint()
        self.form.revalidate()

    def _load_demo(self, name: str, step: int | None) -> None:
        from devinterp_ui.demo import load_demo

        demo = load_demo(name, step)
        self.demo = demo
        settings = {k: v for k, v in demo.sampler_settings.items() if k in SETTINGS}
        # Every observable costs forward passes at each draw; one batch each keeps the demo
        # responsive (raise batches_per_draw under "Advanced" for smoother observable traces).
        settings.setdefault("batches_per_draw", 1)
        observables = {k: v for k, v in demo.datasets.items()}
        self.set_data(
            demo.model,
            demo.datasets["train"],
            observables,
            loss_fn=demo.loss_fn,
            true_lambda=demo.true_lambda,
        )
        self.form.set_values(settings)

    def _build_widgets(self) -> None:
        self.start_button = pn.widgets.Button(label="▶ Start", color="primary", width=110)
        self.stop_button = pn.widgets.Button(
            label="■ Stop", color="danger", width=110, disabled=True
        )
        self.start_button.on_click(lambda _e: self.start())
        self.stop_button.on_click(lambda _e: self.stop())
        self.form.param.watch(self._sync_buttons, "valid")
        self.param.watch(self._sync_buttons, "running")
        self.progress_bar = pn.indicators.Progress(
            value=0, max=1000, sizing_mode="stretch_width", bar_color="primary", height=14
        )
        self.status_pane = pn.pane.Markdown(self.param.status_text, margin=(0, 10))
        self.error_pane = pn.pane.Alert(
            "", alert_type="danger", visible=False, sizing_mode="stretch_width"
        )
        self.plot_area = pn.Column(
            pn.pane.Markdown("Press **Start** to sample; traces appear here as the chains run."),
            sizing_mode="stretch_width",
        )
        self.result_pane = pn.Column(sizing_mode="stretch_width")
        self.runs_table = pn.pane.DataFrame(
            None, index=False, sizing_mode="stretch_width", max_height=240
        )
        self.overlay_a = pn.widgets.Select(label="run A", options=[], width=120)
        self.overlay_b = pn.widgets.Select(label="run B", options=[], width=120)
        self.overlay_button = pn.widgets.Button(label="Overlay", width=100)
        self.overlay_button.on_click(lambda _e: self.overlay())
        self.overlay_area = pn.Column(sizing_mode="stretch_width")
        self.open_path = pn.widgets.TextInput(
            label="store path", placeholder="runs/xyz.zarr", sizing_mode="stretch_width"
        )
        self.open_button = pn.widgets.Button(label="Open store", width=110)
        self.open_button.on_click(lambda _e: self.open_store(self.open_path.value))
        self.demo_picker = (
            self._demo_picker() if self._demo_name or getattr(self, "demo", None) else None
        )
        self._sync_buttons()

    def _demo_picker(self) -> pn.Column:
        from devinterp_ui.demo import list_demos

        demos = list_demos()
        self.demo_select = pn.widgets.Select(
            label="demo", options=list(demos), value=self.demo.name, sizing_mode="stretch_width"
        )
        self.step_select = pn.widgets.Select(
            label="checkpoint (training step)",
            options=list(self.demo.steps),
            value=self.demo.step,
            sizing_mode="stretch_width",
        )
        self.demo_select.param.watch(self._on_demo_change, "value")
        self.step_select.param.watch(self._on_step_change, "value")
        self.demo_info = pn.pane.Markdown(f"<small>{self.demo.description}</small>", margin=(0, 10))
        return pn.Column(
            self.demo_select, self.step_select, self.demo_info, sizing_mode="stretch_width"
        )

    def _on_demo_change(self, event) -> None:
        if self.running:
            return
        self._load_demo(event.new, None)
        self.step_select.options = list(self.demo.steps)
        self.step_select.value = self.demo.step
        self.demo_info.object = f"<small>{self.demo.description}</small>"

    def _on_step_change(self, event) -> None:
        if self.running or event.new is None or event.new == self.demo.step:
            return
        model = self.demo.model_at(event.new)
        self.demo.model, self.demo.step = model, event.new
        self.model = model

    # --- settings and checks ----------------------------------------------------------------------

    @property
    def settings(self) -> dict[str, Any]:
        """The form's settings: paste into `sample(model, dataset, observables, **settings)`."""
        out = {}
        for name, value in self.form.values.items():
            if value != SETTINGS[name]["default"]:
                out[name] = value
        return out

    def _check_with_data(self, values: dict[str, Any]) -> dict[str, str]:
        """Data-dependent checks with the messages sample() raises (see devinterp_ui.sample)."""
        rows = getattr(self, "_dataset_rows", None)
        message = batch_size_error(values["batch_size"], rows) if rows is not None else None
        return {"batch_size": message} if message else {}

    def _update_hint(self, *_events) -> None:
        rows = getattr(self, "_dataset_rows", None)
        values = self.form.values
        batch = values["batch_size"] * values["gradient_accumulation_steps"]
        parts = []
        if batch and batch > 1:
            parts.append(
                f"n/ln n, n = batch × accumulation = {batch}: <b>{default_nbeta(batch):.4g}</b> "
                "(devinterp's default; matches the mini-batch noise)"
            )
        if rows and rows > 1:
            parts.append(
                f"n = dataset rows = {rows}: <b>{default_nbeta(rows):.4g}</b> "
                "(full-data posterior; needs a smaller lr)"
            )
        self.form.n_beta_hint.object = "<br>".join(parts)

    def _sync_buttons(self, *_events) -> None:
        if not hasattr(self, "start_button"):
            return
        self.start_button.disabled = self.running or not self.form.valid
        self.stop_button.disabled = not self.running

    # --- running ------------------------------------------------------------------------------------

    def start(self) -> SamplingJob:
        """Start a run with the form's settings; returns the job. Raises while one is running or
        while the form shows errors (the message says which)."""
        if self.running:
            raise RuntimeError("a run is already going on in this dashboard; stop it first.")
        if not self.form.valid:
            raise ValueError("the settings have errors: " + "; ".join(self.form.errors.values()))
        settings = self.form.values
        observables = {name: self.observable_data[name] for name in self.observable_picker.value}
        run_id = len(self.runs) + 1
        self.runs_dir.mkdir(parents=True, exist_ok=True)
        path = (
            self.runs_dir
            / f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}-{id(self) % 10000:04d}-run{run_id}.zarr"
        )
        try:
            job = SamplingJob(
                self.model,
                self.dataset,
                observables,
                loss_fn=self.loss_fn,
                output_path=path,
                **settings,
            )
            # The plots go up before the thread starts, so a page that cannot show them leaves
            # no orphan run behind.
            self._show_plots(
                settings["num_chains"],
                [safe_name(o) for o in observables],
                settings["num_burnin_steps"],
                self.true_lambda,
            )
            job.start()
        except (TypeError, ValueError, RuntimeError) as exc:
            self._show_error(str(exc))
            raise
        self.job = job
        self.current = RunRecord(run_id, str(path), self.settings, label=self._label())
        self.runs.append(self.current)
        self._follow(StoreReader(path))
        self.running = True
        return job

    def stop(self) -> None:
        """End the run at the next step boundary (rows written so far stay)."""
        if self.job is not None:
            self.job.stop()
            self.status_text = "Stopping at the next step…"

    # --- notebook hooks: the behaviour lives in devinterp_ui/ui/notebook.py ---------------------

    def wait(self, timeout: float | None = None) -> bool:
        """BLOCKS the caller (in a notebook, the kernel) until the run ends (True) or `timeout`
        passed (False); the plots keep updating. In a notebook prefer `await dashboard.run()`."""
        return notebook.wait(self, timeout)

    async def run(self, timeout: float | None = None) -> xr.DataTree | None:
        """`await dashboard.run()`: start (unless running), await the end, return the tree."""
        return await notebook.run(self, timeout)

    def _create_view(self):  # every pn.panel / inline display / pn.ipywidget of this dashboard
        return notebook.guard_view(self, notebook.layout(self))

    def _cleanup(self, root=None) -> None:  # pn.ipywidget calls it when its view closes
        notebook.release_view(self, root)

    # --- end of notebook hooks ----------------------------------------------------------------

    @property
    def result(self) -> xr.DataTree | None:
        """The last run's DataTree (trimmed to whole draws after a stop), else None."""
        return self.current.tree if self.current is not None else None

    def llc(self, include_burnin: bool = False) -> xr.Dataset:
        """compute_llc on the last run's tree."""
        if self.result is None:
            raise RuntimeError("no finished run yet: start() one and wait() for it.")
        return compute_llc(self.result, include_burnin=include_burnin)

    def _label(self) -> str:
        demo = getattr(self, "demo", None)
        return f"{demo.name}@{demo.step}" if demo is not None else type(self.model).__name__

    # --- watching a store ---------------------------------------------------------------------------

    def open_store(self, path: str) -> None:
        """Watch a store written elsewhere (another process, a notebook, a finished run)."""
        if self.running:
            self._show_error("stop the current run before opening another store.")
            return
        try:
            reader = StoreReader(path)
        except FileNotFoundError as exc:
            self._show_error(str(exc))
            return
        self.job = None
        settings = dict(reader.config)
        self.current = RunRecord(len(self.runs) + 1, str(path), settings, label="opened")
        self.runs.append(self.current)
        self._watch(reader)
        self.running = True
        # The first poll comes from the periodic callback, once the new plots reached the page:
        # rows streamed into sources the browser has not received yet would be lost.

    def _watch(self, reader: StoreReader) -> None:
        """Plot a store written elsewhere: its own chains, burn-in and observables."""
        config = reader.config
        # The marker may not exist yet (init losses come first); the config is there at creation.
        num_chains = int(config.get("num_chains") or reader.status().num_chains)
        self._show_plots(
            num_chains, reader.observables, int(config.get("num_burnin_steps", 0)), None
        )
        self._follow(reader)

    def _show_plots(
        self, num_chains: int, observables: list[str], burnin: int, true_lambda: float | None
    ) -> None:
        self.error_pane.visible = False
        self.plots = LivePlots(
            num_chains=num_chains,
            observables=observables,
            burnin=burnin,
            true_lambda=true_lambda,
            save_metrics=True,
            budget=self.plot_budget,
        )
        self._init_loss_known = False
        self.plot_area.objects = [self._plot_layout(self.plots)]
        self.result_pane.objects = []

    def _follow(self, reader: StoreReader) -> None:
        self.reader = reader
        if self._callback is None:
            self._callback = pn.state.add_periodic_callback(self.poll, period=self.poll_ms)

    def _plot_layout(self, plots: LivePlots) -> pn.Column:
        def bokeh(fig):
            return pn.pane.Bokeh(fig, sizing_mode="stretch_width")

        def grid(lines, ncols):
            figs = [bokeh(line.fig) for line in lines.values()]
            return pn.GridBox(*figs, ncols=ncols, sizing_mode="stretch_width")

        parts = [pn.Row(bokeh(plots.loss.fig), bokeh(plots.llc.fig), sizing_mode="stretch_width")]
        if plots.norms:
            parts.append(pn.pane.Markdown("#### SGLD update terms (per chain)"))
            parts += [grid(plots.norms, 4), grid(plots.cosines, 3)]
        if plots.observables:
            parts += [pn.pane.Markdown("#### Observables"), grid(plots.observables, 3)]
        return pn.Column(*parts, sizing_mode="stretch_width")

    def poll(self) -> None:
        """Read new rows into the plots and refresh status; finish up once the run has ended."""
        if self.reader is None or self.plots is None:
            return
        new = self.reader.read_new()
        if not self._init_loss_known:
            self._init_loss_known = self._set_init_loss(new.status)
        self.plots.update(new)
        self._refresh_status(new.status)
        if self._run_finished(new.status):
            self._finish()

    def _set_init_loss(self, status) -> bool:
        # init_loss lands right after the store is created, before any step row.
        if not any(status.steps_written):
            return False
        values = zarr.open_array(str(Path(self.reader.path) / "init_loss"), mode="r")[...]
        finite = values[np.isfinite(values)]
        if finite.size == 0:
            return False
        self.plots.set_init_loss(float(finite.mean()))
        return True

    def _run_finished(self, status) -> bool:
        if self.job is not None:
            # The job's thread ends after its last flush; an error may have kept the marker from
            # saying so.
            return self.job.state in FINISHED and (status.finished or self.job.error is not None)
        return status.finished

    def _refresh_status(self, status) -> None:
        total = status.total_steps * max(status.num_chains, 1)
        done = sum(status.steps_written)
        self.progress_bar.value = int(1000 * done / total) if total else 0
        text = f"**{status.status}** · {done}/{total} chain steps"
        if self.job is not None:
            progress = self.job.progress
            text = f"**{progress.state}** · {sum(progress.steps_done)}/{total} chain steps"
            if progress.steps_per_second:
                text += f" · {progress.steps_per_second:.1f} steps/s"
            if progress.eta_seconds is not None and progress.state == "running":
                text += f" · ETA {_duration(progress.eta_seconds)}"
        text += f" · store `{self.reader.path}`"
        failed = [f"chain {i}: {err}" for i, err in enumerate(status.chain_errors) if err]
        if failed:
            text += " · " + "; ".join(failed)
        self.status_text = text

    def _finish(self) -> None:
        if self._callback is not None:
            self._callback.stop()
            self._callback = None
        record = self.current
        self.running = False
        state = self.job.state if self.job is not None else self.reader.status().status
        record.status = state
        if self.job is not None and self.job.error is not None:
            self._show_error(
                f"{self.job.error.message}\n\n```\n{self.job.error.traceback or ''}\n```"
            )
        tree = self.job.result if self.job is not None else _open_tree(self.reader.path)
        if tree is not None and "sampling_loss_micro" in tree:
            try:
                summarize(record, tree)
            except (KeyError, ValueError) as exc:
                self._show_error(f"could not compute the LLC: {exc}")
        self._show_result(record)
        self._refresh_runs()

    # --- results ------------------------------------------------------------------------------------

    def _show_result(self, record: RunRecord) -> None:
        if record.per_chain is None:
            self.result_pane.objects = [
                pn.pane.Markdown(f"Run {record.run_id} {record.status}; store: `{record.path}`")
            ]
            return
        csv = pn.widgets.FileDownload(
            callback=lambda: summary_csv(record),
            filename=f"run{record.run_id}_llc.csv",
            label="Download summary (CSV)",
            color="default",
            width=220,
        )
        plots = self.plots
        html = pn.widgets.FileDownload(
            callback=lambda: plots_html(plots, f"run {record.run_id}"),
            filename=f"run{record.run_id}_plots.html",
            label="Download plots (HTML)",
            color="default",
            width=220,
        )
        truth = (
            f" · true λ = {self.true_lambda:g}"
            if self.true_lambda is not None and self.job is not None
            else ""
        )
        head = pn.pane.Markdown(
            f"### LLC = {record.llc_mean:.4g} ± {record.llc_std:.2g}{truth}\n"
            f"Run {record.run_id} **{record.status}** · store `{record.path}`",
            sizing_mode="stretch_width",
        )
        table = pn.pane.DataFrame(record.per_chain, index=False, sizing_mode="stretch_width")
        self.result_pane.objects = [head, table, pn.Row(csv, html)]

    def _refresh_runs(self) -> None:
        import pandas as pd

        self.runs_table.object = pd.DataFrame([r.row() for r in self.runs])
        finished = [str(r.run_id) for r in self.runs if r.tree is not None]
        self.overlay_a.options = finished
        self.overlay_b.options = finished
        if len(finished) >= 2:
            self.overlay_a.value, self.overlay_b.value = finished[-2], finished[-1]

    def overlay(self, a: int | None = None, b: int | None = None) -> None:
        """Overlay the traces of two finished runs of this session."""
        a = int(a if a is not None else self.overlay_a.value)
        b = int(b if b is not None else self.overlay_b.value)
        records = {r.run_id: r for r in self.runs if r.tree is not None}
        if a not in records or b not in records:
            self._show_error("pick two finished runs to overlay.")
            return
        self.overlay_area.objects = [
            pn.pane.Bokeh(overlay_figure(records[a], records[b]), sizing_mode="stretch_width")
        ]

    def _show_error(self, message: str) -> None:
        field = setting_of(message)
        self.error_pane.object = (f"**{field}**: " if field else "") + message
        self.error_pane.visible = True

    # --- lifecycle ------------------------------------------------------------------------------

    def _on_session_destroyed(self, _context) -> None:
        if self.job is not None:
            self.job.stop()
        if self._callback is not None:
            self._callback.stop()

    # --- layout ---------------------------------------------------------------------------------

    @property
    def controls(self) -> pn.Column:
        parts = []
        if self.demo_picker is not None:
            parts += [pn.pane.Markdown("#### Model"), self.demo_picker]
        parts += [
            pn.pane.Markdown("#### Sampler"),
            self.form,
            pn.Row(self.start_button, self.stop_button),
            self.progress_bar,
            self.status_pane,
            self.error_pane,
            pn.pane.Markdown("#### Watch a store"),
            self.open_path,
            self.open_button,
        ]
        return pn.Column(*parts, sizing_mode="stretch_width")

    @property
    def main(self) -> pn.Column:
        return pn.Column(
            self.plot_area,
            pn.pane.Markdown("## Result"),
            self.result_pane,
            pn.pane.Markdown("## Runs this session"),
            self.runs_table,
            pn.Row(self.overlay_a, self.overlay_b, self.overlay_button),
            self.overlay_area,
            sizing_mode="stretch_width",
        )

    def __panel__(self) -> pn.viewable.Viewable:
        return pn.Row(pn.Column(self.controls, width=420), self.main, sizing_mode="stretch_width")


def _rows(dataset: Any) -> int | None:
    try:
        if isinstance(dataset, (tuple, list)):
            return len(dataset[0])
        return len(dataset)
    except TypeError:
        return None


def _open_tree(path: Path) -> xr.DataTree | None:
    try:
        return xr.open_datatree(str(path), engine="zarr").load()
    except (OSError, ValueError, KeyError):
        return None


def _duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    seconds = int(round(seconds))
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"
