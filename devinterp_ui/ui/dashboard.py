"""The dashboard: small viewers composed, and the loop that feeds them from the store.

    RunControl (form, Start/Stop) --settings--> SamplingJob (thread) --> sample() --> store
    LivePlots <-- read_new() <-- StoreReader(store), polled every `poll_ms` on the UI's loop
    Result, RunLibrary (every store under runs_dir), StoreWatcher (open a store), DemoPicker

One `Dashboard` per browser session or notebook cell; it owns its job, reader and plots, so
nothing mutable is shared between sessions. Start returns at once: the job's thread checks the
inputs, copies the model and creates the store; the poll loop picks the store up when it exists.
"""

from __future__ import annotations

import contextlib
import functools
import os
import time
import weakref
from pathlib import Path
from typing import Any

import panel as pn
import param
import xarray as xr

from devinterp_ui.analysis import compute_llc, default_nbeta
from devinterp_ui.config import SETTINGS
from devinterp_ui.data import as_source
from devinterp_ui.live import SamplingJob, StoreReader
from devinterp_ui.live.job_state import FINISHED_STATES
from devinterp_ui.sample import batch_size_error
from devinterp_ui.store.schema import safe_name
from devinterp_ui.ui import notebook
from devinterp_ui.ui.demo_picker import DemoPicker
from devinterp_ui.ui.form import SettingsForm
from devinterp_ui.ui.health_panel import HealthPanel
from devinterp_ui.ui.plots import LivePlots
from devinterp_ui.ui.result import Result
from devinterp_ui.ui.results import RunRecord, full_settings, summarize
from devinterp_ui.ui.run_control import RunControl
from devinterp_ui.ui.run_library import RunLibrary
from devinterp_ui.ui.run_rows import status_line
from devinterp_ui.ui.store_watcher import StoreWatcher
from devinterp_ui.ui.study_launcher import StudyLauncher

# Polls in a row in which the marker declares rows the arrays do not deliver, before the
# dashboard calls the store unreadable (the reader retries through a metadata rewrite, which
# takes one poll, not ten).
STUCK_POLLS = 10


class Dashboard(pn.viewable.Viewer):
    """Tune SGLD live on your own model and data.

    Dashboard(model, dataset, observables, loss_fn=None, **settings) in a notebook, after
    `pn.extension()`; `Dashboard.from_demo()` for the shipped demos (with a picker).
    From code: `start()` (returns at once), `stop()`, `wait(timeout)`, `result` (the DataTree),
    `job`, `llc()`, `settings` (a dict to paste into a headless `sample()` call),
    `open_store(path)`. store_roots: directories besides `runs_dir` whose stores "Watch a
    store" may open (also `$DEVINTERP_UI_STORE_ROOTS`).
    """

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
        store_roots=(),
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
        self.poll_ms, self.plot_budget = poll_ms, plot_budget
        self.job: SamplingJob | None = None
        self.reader: StoreReader | None = None
        self.plots: LivePlots | None = None
        self.runs: list[RunRecord] = []
        self.current: RunRecord | None = None
        self.demo = None
        self._callback = None
        self._restart_pending = False
        self._dataset_rows: int | None = None
        self._data_error: str | None = None

        self.form = SettingsForm(check=self._check_with_data)
        self.observable_picker = pn.widgets.MultiChoice(
            label="observables", options=[], sizing_mode="stretch_width"
        )
        self.control = RunControl(
            self.form,
            self.observable_picker,
            on_start=self.start,
            on_stop=self.stop,
            on_restart=self.restart,
        )
        self.param.watch(lambda e: setattr(self.control, "running", e.new), "running")
        for name in ("batch_size", "gradient_accumulation_steps"):
            self.form.widgets[name].param.watch(self._update_hint, "value")
        self.result_view = Result()
        self.library = RunLibrary(self.runs_dir)
        self.watcher = StoreWatcher(self.runs_dir, on_open=self._watch, store_roots=store_roots)
        self.plot_area = pn.Column(
            pn.pane.Markdown("Press **Start** to sample; traces appear here as the chains run."),
            sizing_mode="stretch_width",
        )
        self.health = HealthPanel()

        # The dashboard plots the SGLD terms, so it records them unless told not to.
        settings = {"save_metrics": True, **settings}
        if model is None:
            from devinterp_ui.demo import load_demo

            self._use_demo(load_demo(demo or "tiny_lm", demo_step), True)
            self.demo_picker = DemoPicker(self.demo, on_load=self._use_demo)
            self.param.watch(lambda e: setattr(self.demo_picker, "locked", e.new), "running")
        else:
            self.demo_picker = None
            self.set_data(
                model, dataset, observables or {}, loss_fn=loss_fn, true_lambda=true_lambda
            )
        self.form.set_values(settings)
        self.studies = StudyLauncher(
            model=self.model,
            dataset=self.dataset,
            observables=self.observable_data,
            settings=self._study_settings(),
            checkpoints=self._demo_checkpoints(),
            runs_dir=str(self.runs_dir / "studies"),
        )
        for widget in self.form.widgets.values():
            widget.param.watch(self._sync_studies, "value")
        self._register_session_end()

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
        """Point the dashboard at a model and its data (the next Start samples these).

        The row count comes from `as_source`, the sampler's own reading of the data, so every
        form `sample()` accepts (e.g. {"input_ids": (N, T)}) counts its rows as it does.
        """
        self.model, self.dataset, self.loss_fn = model, dataset, loss_fn
        self.observable_data = dict(observables)
        self.true_lambda = true_lambda
        self.observable_picker.options = list(self.observable_data)
        self.observable_picker.value = list(self.observable_data)
        try:
            self._dataset_rows, self._data_error = len(as_source(dataset, "dataset")), None
        except (TypeError, ValueError) as exc:
            self._dataset_rows, self._data_error = None, str(exc)
        self._update_hint()
        self.form.revalidate()
        self._sync_studies()

    def _use_demo(self, demo, new_demo: bool) -> None:
        self.demo = demo
        observables = dict(demo.datasets)
        self.set_data(
            demo.model,
            demo.datasets["train"],
            observables,
            loss_fn=demo.loss_fn,
            true_lambda=demo.true_lambda,
        )
        if new_demo:
            settings = {k: v for k, v in demo.sampler_settings.items() if k in SETTINGS}
            # Every observable costs forward passes at each draw; one batch each keeps the demo
            # responsive (raise batches_per_draw under "Advanced" for smoother observable traces).
            settings.setdefault("batches_per_draw", 1)
            self.form.set_values(settings)

    def _study_settings(self) -> dict[str, Any]:
        settings = dict(self.form.values)
        if self.loss_fn is not None:
            settings["loss_fn"] = self.loss_fn
        return settings

    def _demo_checkpoints(self) -> dict[int, Any] | None:
        demo = self.demo
        if demo is None or len(demo.steps) < 2:
            return None
        return {step: functools.partial(demo.model_at, step) for step in demo.steps}

    def _sync_studies(self, *_events) -> None:
        """The Studies tab samples what the form says (and the current model and data)."""
        if not hasattr(self, "studies"):
            return
        self.studies.param.update(
            model=self.model,
            dataset=self.dataset,
            observables=self.observable_data,
            settings=self._study_settings(),
        )

    # --- settings and checks ----------------------------------------------------------------------

    @property
    def settings(self) -> dict[str, Any]:
        """The form's settings that differ from the defaults: paste into
        `sample(model, dataset, observables, **settings)`."""
        return {n: v for n, v in self.form.values.items() if v != SETTINGS[n]["default"]}

    def _check_with_data(self, values: dict[str, Any]) -> dict[str, str]:
        """Data-dependent checks with the messages sample() raises (see devinterp_ui.sample)."""
        if self._data_error:
            return {"form": self._data_error}
        rows = self._dataset_rows
        message = batch_size_error(values["batch_size"], rows) if rows is not None else None
        return {"batch_size": message} if message else {}

    def _update_hint(self, *_events) -> None:
        rows, values = self._dataset_rows, self.form.values
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

    # --- running ------------------------------------------------------------------------------------

    def start(self) -> SamplingJob:
        """Start a run with the form's settings and return its job at once (the job's thread
        checks the data and creates the store; an error there shows on the page and in
        `job.error`). Raises while a run is going or while the form shows errors."""
        if self.running:
            raise RuntimeError("a run is already going on in this dashboard; stop it first.")
        if not self.form.valid:
            raise ValueError("the settings have errors: " + "; ".join(self.form.errors.values()))
        settings = self.form.values
        observables = {name: self.observable_data[name] for name in self.observable_picker.value}
        self.runs_dir.mkdir(parents=True, exist_ok=True)
        run_id = len(self.runs) + 1
        stamp = f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}-{id(self) % 10000:04d}"
        path = self.runs_dir / f"{stamp}-run{run_id}.zarr"
        try:
            job = SamplingJob(
                self.model,
                self.dataset,
                observables,
                loss_fn=self.loss_fn,
                output_path=path,
                **settings,
            )
        except (TypeError, ValueError, RuntimeError) as exc:
            self.control.show_error(str(exc))
            raise
        self._show_plots(
            settings["num_chains"],
            [safe_name(o) for o in observables],
            settings["num_burnin_steps"],
            self.true_lambda,
            prior=bool(settings["localization"] or settings["llc_weight_decay"]),
        )
        job.start(wait=False)
        self.job, self.reader = job, None
        self.current = RunRecord(run_id, str(path), full_settings(settings), label=self._label())
        self.runs.append(self.current)
        self.control.run_settings = dict(settings)
        self.control.show_status("starting", 0, 0, str(path), "checking inputs, initial loss")
        self.running = True
        self._ensure_polling()
        return job

    def stop(self) -> None:
        """End the run at the next step boundary (rows written so far stay)."""
        if self.job is not None:
            self.job.stop()
            self.control.status_html = "Stopping at the next step…"
        elif self.running:
            self._finish()  # a watched store: stop following it

    def restart(self) -> None:
        """Stop the current run and start one with the form's settings once it has ended (the
        stopped run stays in the run library); without a run, just start."""
        if not self.running:
            self.start()
            return
        if not self.form.valid:
            raise ValueError("the settings have errors: " + "; ".join(self.form.errors.values()))
        self._restart_pending = True
        self.stop()

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
    def status_text(self) -> str:
        """The status line as shown (HTML)."""
        return self.control.status_html

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
        demo = self.demo
        return f"{demo.name}@{demo.step}" if demo is not None else type(self.model).__name__

    # --- watching a store ---------------------------------------------------------------------------

    def open_store(self, path: str) -> None:
        """Watch a store written elsewhere (another process, a notebook, a finished run); the
        path must lie under the runs directory or a configured store root."""
        self.watcher.open(str(path))

    def _watch(self, reader: StoreReader) -> None:
        """Plot a checked store (from StoreWatcher): its own chains, burn-in and observables."""
        if self.running:
            raise RuntimeError("stop the current run before opening another store.")
        config = reader.config
        self.job = None
        self.current = RunRecord(
            len(self.runs) + 1, str(reader.path), full_settings(config), label="opened"
        )
        self.runs.append(self.current)
        num_chains = int(config.get("num_chains") or reader.status().num_chains)
        prior = bool(config.get("localization") or config.get("llc_weight_decay"))
        self._show_plots(
            num_chains, reader.observables, int(config.get("num_burnin_steps", 0)), None, prior
        )
        self.reader = reader
        self.control.run_settings = {}
        self.running = True
        # The first poll comes from the periodic callback, once the new plots reached the page:
        # rows streamed into sources the browser has not received yet would be lost.
        self._ensure_polling()

    # --- the poll loop ------------------------------------------------------------------------------

    def _show_plots(self, num_chains, observables, burnin, true_lambda, prior=True) -> None:
        self.control.clear_error()
        self.plots = LivePlots(
            num_chains=num_chains,
            observables=observables,
            burnin=burnin,
            true_lambda=true_lambda,
            prior=prior,
            save_metrics=True,
            budget=self.plot_budget,
        )
        self._init_loss_known = False
        self._rows_seen = self._stuck_polls = 0
        self.plot_area.objects = [self.plots]
        self.result_view.clear()
        self.health.reset()

    def _ensure_polling(self) -> None:
        if self._callback is None:
            self._callback = pn.state.add_periodic_callback(self.poll, period=self.poll_ms)

    def poll(self) -> None:
        """Read new rows into the plots and refresh status; finish up once the run has ended.

        A store that cannot be read (a foreign group, an array gone bad) ends the watch with one
        message instead of a traceback at every poll.
        """
        if not self.running or self.plots is None:
            return
        try:
            self._poll()
        except Exception as exc:  # anything a broken store raises: say it once, stay usable
            self.control.show_error(f"cannot read the store: {type(exc).__name__}: {exc}")
            if self.job is not None:
                self.job.stop()
            self._finish(read_result=False)

    def _poll(self) -> None:
        job = self.job
        if self.reader is None:
            if job is not None and job.store_created:
                self.reader = StoreReader(job.output_path)
            elif job is not None and job.state in FINISHED_STATES:
                self._finish()
                return
            else:
                return
        new = self.reader.read_new()
        self._check_rows_arrive(new)
        if not self._init_loss_known and self.reader.init_loss is not None:
            self.plots.set_init_loss(self.reader.init_loss)
            self._init_loss_known = True
        self.plots.update(new)
        if self._init_loss_known:  # step rows have arrived: something to diagnose
            self._update_health(self.reader.accumulated(), chain_status=new.status.chain_status)
        state, done, total, extra, errors = status_line(new.status, job)
        self.control.show_status(state, done, total, str(self.reader.path), extra, errors)
        finished = (
            job.state in FINISHED_STATES and (new.status.finished or job.error is not None)
            if job is not None
            else new.status.finished
        )
        if finished:
            self._finish()

    def _update_health(self, source, **kwargs) -> None:
        """Diagnostics may refuse too few rows (a run stopped at once): that is no store error."""
        with contextlib.suppress(ValueError):  # the panel keeps saying "no draws yet"
            self.health.update(source, **kwargs)

    def _check_rows_arrive(self, new) -> None:
        """Raise when the marker declares rows the reader has not delivered for a while: the
        arrays cannot be read (the reader retries quietly, expecting a rewrite in progress)."""
        self._rows_seen += new.steps.sizes.get("row", 0)
        declared = sum(new.status.steps_written)
        self._stuck_polls = self._stuck_polls + 1 if declared > self._rows_seen else 0
        if self._stuck_polls > STUCK_POLLS:
            raise OSError(
                f"the marker declares {declared} rows but the arrays gave {self._rows_seen}: "
                "an array is missing or unreadable"
            )

    def _finish(self, read_result: bool = True) -> None:
        if self._callback is not None:
            self._callback.stop()
            self._callback = None
        record, job = self.current, self.job
        self.running = False
        self.control.run_settings = {}
        if job is not None:
            record.status = job.state
        elif self.reader is not None:
            record.status = self.reader.status().status
        if job is not None and job.error is not None:
            self.control.show_error(job.error.message, job.error.traceback)
        tree = None
        if read_result:
            tree = job.result if job is not None else _open_tree(self.reader.path)
            if job is None and (tree is None or "sampling_loss_micro" not in tree):
                self.control.show_error(
                    "cannot read the store: its sampling_loss_micro array is missing or "
                    "unreadable, so there is no result to show."
                )
        if tree is not None and "sampling_loss_micro" in tree:
            try:
                summarize(record, tree)
                self._update_health(tree, finished=True)
            except (KeyError, ValueError) as exc:
                self.control.show_error(f"could not compute the LLC: {exc}")
        truth = self.true_lambda if job is not None else None
        self.result_view.show(record, self.plots, truth)
        self.library.note_llc(record.path, record.llc_mean, record.llc_std)
        self.library.refresh()
        if self._restart_pending:
            self._restart_pending = False
            self.start()

    # --- lifecycle ------------------------------------------------------------------------------

    def _register_session_end(self) -> None:
        """In a server session, stop the job when the session ends. Outside one (notebook,
        script) nothing is registered: Panel would keep the callback, and with it this
        dashboard, its model and data, for the life of the process."""
        doc = pn.state.curdoc
        if doc is None or getattr(doc, "session_context", None) is None:
            return
        ref = weakref.ref(self)

        def ended(_context) -> None:
            dashboard = ref()
            if dashboard is not None:
                dashboard._on_session_destroyed()

        doc.on_session_destroyed(ended)
        self.library.start_refreshing()

    def _on_session_destroyed(self) -> None:
        self._restart_pending = False
        if self.job is not None:
            self.job.stop()
        if self._callback is not None:
            self._callback.stop()
            self._callback = None
        self.library.stop_refreshing()

    # --- layout ---------------------------------------------------------------------------------

    @property
    def controls(self) -> pn.Column:
        parts = []
        if self.demo_picker is not None:
            parts += [pn.pane.Markdown("#### Model"), self.demo_picker]
        parts += [
            pn.pane.Markdown("#### Sampler"),
            self.control,
            pn.pane.Markdown("#### Watch a store"),
            self.watcher,
        ]
        return pn.Column(*parts, sizing_mode="stretch_width")

    @property
    def main(self) -> pn.Column:
        live = pn.Column(
            self.plot_area,
            pn.pane.Markdown("## Result"),
            pn.Row(self.result_view, self.health, sizing_mode="stretch_width"),
            sizing_mode="stretch_width",
        )
        library = pn.Column(
            pn.pane.Markdown("## Run library"), self.library, sizing_mode="stretch_width"
        )
        run = pn.Column(live, library, sizing_mode="stretch_width")
        return pn.Tabs(("Run", run), ("Studies", self.studies), sizing_mode="stretch_width")

    def __panel__(self) -> pn.viewable.Viewable:
        return pn.Row(pn.Column(self.controls, width=420), self.main, sizing_mode="stretch_width")


def _open_tree(path: Path) -> xr.DataTree | None:
    try:
        return xr.open_datatree(str(path), engine="zarr").load()
    except (OSError, ValueError, KeyError):
        return None
