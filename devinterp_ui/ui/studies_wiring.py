"""The dashboard's Studies tab wiring (a mixin of `Dashboard`): the StudyLauncher samples what
the form says on the current model and data (the demo's checkpoints for trajectories), and a
clicked cell opens that run in the single-run view (Run tab) through `open_store`.

It uses the Dashboard's attributes: form, model, dataset, observable_data, loss_fn, demo,
runs_dir, running, control, tabs and open_store().
"""

from __future__ import annotations

import functools
from typing import Any

from devinterp_ui.ui.study_launcher import StudyLauncher


class StudiesWiring:
    """Builds `self.studies` and keeps it in step with the form (see the module docstring)."""

    def _make_studies(self) -> None:
        self.studies = StudyLauncher(
            model=self.model,
            dataset=self.dataset,
            observables=self.observable_data,
            settings=self._study_settings(),
            checkpoints=self._demo_checkpoints(),
            runs_dir=str(self.runs_dir / "studies"),
            store_roots=[str(r) for r in self.watcher.roots],
        )
        for widget in self.form.widgets.values():
            widget.param.watch(self._sync_studies, "value")
        self.studies.param.watch(self._open_study_cell, "selected_store")

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

    def _open_study_cell(self, event) -> None:
        """A Studies cell was clicked: show that run's traces in the single-run view."""
        if not event.new:
            return
        if self.running:
            self.control.show_error("stop the current run before opening a study's run.")
            return
        self.open_store(event.new)
        if self.tabs is not None:
            self.tabs.active = 0

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
