"""The dashboard: small viewers composed, and the loop that feeds them from the store.

    RunControl (form, Start/Stop) --settings--> SamplingJob (thread) --> sample() --> store
    LivePlots <-- read_new() <-- StoreReader(store), polled every `poll_ms` on the UI's loop
    Result, RunLibrary (every store under runs_dir), StoreWatcher (open a store), DemoPicker

One `Dashboard` per browser session or notebook cell; it owns its job, reader and plots, so
nothing mutable is shared between sessions. Start returns at once: the job's thread checks the
inputs, copies the model and creates the store; the poll loop picks the store up when it exists.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import panel as pn
import param
import xarray as xr

from devinterp_ui.analysis import compute_llc, default_nbeta
from devinterp_ui.config import SETTINGS
from devinterp_ui.data import as_source
from devinterp_ui.live import SamplingJob, StoreReader
from devinterp_ui.live.process_job import DemoProcessJob
from devinterp_ui.sample import batch_size_error
from devinterp_ui.store.schema import safe_name
from devinterp_ui.ui import notebook
from devinterp_ui.ui.demo_picker import DemoPicker
from devinterp_ui.ui.form import SettingsForm
from devinterp_ui.ui.health_panel import HealthPanel
from devinterp_ui.ui.lr_suggest import LrSuggest, form_advice
from devinterp_ui.ui.plots import LivePlots
from devinterp_ui.ui.poll_gate import PollGate
from devinterp_ui.ui.poll_loop import PollLoop
from devinterp_ui.ui.result import Result
from devinterp_ui.ui.results import RunRecord, full_settings
from devinterp_ui.ui.run_control import RunControl
from devinterp_ui.ui.run_library import RunLibrary
from devinterp_ui.ui.store_watcher import StoreWatcher
from devinterp_ui.ui.studies_wiring import StudiesWiring


class Dashboard(PollLoop, StudiesWiring, pn.viewable.Viewer):
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
        processes: bool = False,
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
        # Demo runs in child processes (what the served app does): see live/process_job.py.
        self.processes = processes
        self.poll_ms, self.plot_budget = poll_ms, plot_budget
        self.job: SamplingJob | None = None
        self.reader: StoreReader | None = None
        self.plots: LivePlots | None = None
        self.runs: list[RunRecord] = []
        self.current: RunRecord | None = None
        self.demo = None
        self._callback = None
        self._gate = PollGate()
        self._restart_pending = False
        self._dataset_rows: int | None = None
        self._data_error: str | None = None

        # "Suggest" under the lr field: the lr advisor on the current model and data, with
        # the form's n_beta, localization and batch size (see `_advise_lr`).
        self.lr_suggest = LrSuggest(
            lambda: form_advice(self.form, self.model, self.dataset, self.loss_fn)
        )
        self.form = SettingsForm(
            check=self._check_with_data, field_extras={"lr": self.lr_suggest.controls}
        )
        self.lr_suggest.link_form(self.form)
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
        # The slider's burn-in (None until moved) also drives the shading, the LLC, the table
        # and the CSV; the panel changes `burnin` silently when it recomputes by itself.
        self._burnin_override: int | None = None
        self.health.param.watch(self._on_burnin, "burnin")

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
        self._make_studies()
        self.tabs: pn.Tabs | None = None
        self._register_session_end()

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
        self.lr_suggest.advice = None  # advice about another model would mislead step_bias
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
            job = self._make_job(observables, path, settings)
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

    def _make_job(self, observables, path: Path, settings) -> SamplingJob | DemoProcessJob:
        """A thread for the caller's model; a child process for a demo when `processes`
        (a demo can be rebuilt there from its name, and the server's page stays quick)."""
        demo = self.demo
        if self.processes and demo is not None and self.model is demo.model:
            return DemoProcessJob(
                demo.name, demo.step, list(observables), output_path=path, **settings
            )
        return SamplingJob(
            self.model, self.dataset, observables, loss_fn=self.loss_fn, output_path=path,
            **settings,
        )  # fmt: skip

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
        self.tabs = pn.Tabs(("Run", run), ("Studies", self.studies), sizing_mode="stretch_width")
        return self.tabs

    def __panel__(self) -> pn.viewable.Viewable:
        return pn.Row(pn.Column(self.controls, width=420), self.main, sizing_mode="stretch_width")
