"""The dashboard's poll loop (a mixin of `Dashboard`): read new rows of the watched store into the
plots and the health panel, refresh the status line, and finish up once the run has ended
(summary, result view, run library, a pending restart). Also the burn-in slider's wiring.

It uses the Dashboard's attributes: job, reader, plots, current, control, health, result_view,
library, plot_area, poll_ms, plot_budget, true_lambda, running, start() and `_gate` (a
`PollGate`: the periodic poll yields the event loop to clicks when polls grow costly).
"""

from __future__ import annotations

import contextlib
import time
import weakref
from pathlib import Path

import panel as pn
import xarray as xr

from devinterp_ui.live import StoreReader
from devinterp_ui.live.job_state import FINISHED_STATES
from devinterp_ui.ui.plots import LivePlots
from devinterp_ui.ui.results import summarize
from devinterp_ui.ui.run_rows import status_line

# Polls in a row in which the marker declares rows the arrays do not deliver, and for how
# long, before the dashboard calls the store unreadable and stops the run. The reader retries
# through a metadata rewrite, which usually takes one poll; but a writer thread starved on a
# loaded machine (in a notebook it shares the kernel's GIL) can take seconds, and ten 400 ms
# polls alone once stopped a healthy notebook run part-way. Both must be exceeded.
STUCK_POLLS = 10
STUCK_SECONDS = 30.0


class PollLoop:
    """Polling and finishing for `Dashboard` (see the module docstring)."""

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
        self._stuck_since = 0.0
        self.plot_area.objects = [self.plots]
        self.result_view.clear()
        self.health.reset()
        self._burnin_override = None

    def _ensure_polling(self) -> None:
        if self._callback is None:
            self._gate.open()
            self._callback = pn.state.add_periodic_callback(self._tick, period=self.poll_ms)

    def _stop_polling(self) -> None:
        self._gate.close()
        if self._callback is not None:
            self._callback.stop()
            self._callback = None

    def _tick(self) -> None:
        """The periodic callback: poll unless this session has had its share of the server's
        event loop (a `PollGate`: costly polls back off so that clicks and typing stay quick)."""
        if not self._gate.due():
            return
        started = self._gate.now()
        try:
            self.poll()
        finally:
            self._gate.spent(started)

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
        # Judged before the status line is read: the job's state can flip in between, and a
        # line read first would say "running" for good once the run ends in this poll.
        finished = (
            job.state in FINISHED_STATES and (new.status.finished or job.error is not None)
            if job is not None
            else new.status.finished
        )
        state, done, total, extra, errors = status_line(new.status, job)
        self.control.show_status(state, done, total, str(self.reader.path), extra, errors)
        if finished:
            self._finish()

    def _on_burnin(self, event) -> None:
        """The burn-in slider moved: reshade the plots and, once the run has its tree,
        recompute the LLC, the per-chain table and the CSV from the stored draws (no rerun)."""
        self._burnin_override = int(event.new)
        if self.plots is not None:
            self.plots.set_burnin(event.new)
        record = self.current
        if record is not None and record.tree is not None and not self.running:
            try:
                summarize(record, record.tree, burnin=self._burnin_override)
            except (KeyError, ValueError) as exc:
                self.control.show_error(f"could not compute the LLC: {exc}")
                return
            self.result_view.show(record, self.plots, self.result_view.true_lambda)

    def _update_health(self, source, **kwargs) -> None:
        """Diagnostics may refuse too few rows (a run stopped at once): that is no store error."""
        # The Suggest button's advice (same model and data) enables the step_bias flag.
        suggest = getattr(self, "lr_suggest", None)
        advice = suggest.advice if suggest is not None else None
        with contextlib.suppress(ValueError):  # the panel keeps saying "no draws yet"
            self.health.update(source, advice=advice, **kwargs)

    def _check_rows_arrive(self, new) -> None:
        """Raise when the marker declares rows the reader has not delivered for a while: the
        arrays cannot be read (the reader retries quietly, expecting a rewrite in progress)."""
        self._rows_seen += new.steps.sizes.get("row", 0)
        declared = sum(new.status.steps_written)
        if declared > self._rows_seen:
            if self._stuck_polls == 0:
                self._stuck_since = time.monotonic()
            self._stuck_polls += 1
        else:
            self._stuck_polls = 0
        stuck_for = time.monotonic() - self._stuck_since if self._stuck_polls else 0.0
        if self._stuck_polls > STUCK_POLLS and stuck_for > STUCK_SECONDS:
            raise OSError(
                f"the marker declares {declared} rows but the arrays gave {self._rows_seen}: "
                "an array is missing or unreadable"
            )

    def _finish(self, read_result: bool = True) -> None:
        self._stop_polling()
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
            # The final verdict comes first and on its own: a run whose chains all failed has
            # no LLC to summarize, and that is exactly when its flags (nonfinite) must show.
            # The marker as the reader last read it: the tree's own attrs may predate the
            # final marker (it was opened with the metadata of the store's creation).
            status = self.reader.status().chain_status if self.reader is not None else None
            self._update_health(tree, finished=True, chain_status=status)
            try:
                summarize(record, tree, burnin=self._burnin_override)
            except (KeyError, ValueError) as exc:
                self.control.show_error(f"could not compute the LLC: {exc}")
        elif read_result and self.reader is not None:
            # No tree (a job whose every chain failed keeps none): the final verdict comes from
            # the rows read, with the marker read now. The last live update cannot stand in: the
            # panel's throttle drops updates within min_interval of the previous one, and that
            # poll may have read the marker before the chains' failure reached it.
            status = self.reader.status().chain_status  # first: refreshes the attrs below
            self._update_health(self.reader.accumulated(), finished=True, chain_status=status)
        if job is not None:
            job.close()  # the run has ended: a child process's private files go (not the store)
        truth = self.true_lambda if job is not None else None
        self.result_view.show(record, self.plots, truth)
        self.library.note_llc(record.path, record.llc_mean, record.llc_std)
        self.library.refresh()
        if self._restart_pending:
            self._restart_pending = False
            self.start()

    # --- session end: stop the job and the loop ----------------------------------------

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
        self._stop_polling()
        self.library.stop_refreshing()


def _open_tree(path: Path) -> xr.DataTree | None:
    try:
        return xr.open_datatree(str(path), engine="zarr").load()
    except (OSError, ValueError, KeyError):
        return None
