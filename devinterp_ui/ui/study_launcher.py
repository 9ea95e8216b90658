"""`StudyLauncher`: start a sweep or a trajectory from the page, then watch it in a StudiesView.

Sweep: type the values per axis (lr, n_beta, localization: comma-separated numbers; an empty
field keeps that setting fixed), Start.
Trajectory: pick checkpoints (from `checkpoints`, e.g. a demo's `{step: factory}`), Start.
Every other `sample()` setting comes from `settings` (the dashboard passes its form's values).
Bad input is shown under the fields, naming the axis or the cell, before anything runs.
Watch: type the output_dir of a study started elsewhere (a notebook, a script, a cluster job),
Watch; the path must lie under `runs_dir` or one of `store_roots` (see `store_roots`).
"""

from __future__ import annotations

import html
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import panel as pn
import param

from devinterp_ui.study import llc_trajectory, sweep
from devinterp_ui.study.manifest import MANIFEST
from devinterp_ui.ui.store_roots import StorePathRefused, allowed_roots, confine
from devinterp_ui.ui.studies_view import StudiesView

AXES = ("lr", "n_beta", "localization")


def parse_values(axis: str, text: str) -> list[float]:
    """ "1e-5, 3e-5" -> [1e-05, 3e-05]; ValueError naming the axis and the bad entry."""
    values = []
    for part in text.replace(";", ",").split(","):
        part = part.strip()
        if not part:
            continue
        try:
            values.append(float(part))
        except ValueError:
            raise ValueError(
                f"{axis} values: {part!r} is not a number; type numbers separated by commas, "
                "e.g. 1e-5, 3e-5."
            ) from None
    if not values:
        raise ValueError(f"{axis} values: give at least one number.")
    return values


class StudyLauncher(pn.viewable.Viewer):
    """Start studies of `model` on `dataset` into `runs_dir`; shows the running study below."""

    model = param.Parameter(doc="The checkpoint a sweep samples (torch.nn.Module or factory).")
    dataset = param.Parameter(doc="The sampling data, as for sample().")
    observables = param.Dict(default=None, allow_None=True, doc="As for sample().")
    settings = param.Dict(default={}, doc="Fixed sample() keywords (everything but the axes).")
    checkpoints = param.Dict(default=None, allow_None=True, doc="{step: model or factory}.")
    runs_dir = param.String(default="runs", doc="Each study gets a new directory inside.")
    executor = param.Parameter(default=None, doc="As for sweep(); None: the local pool.")
    store_roots = param.List(default=[], doc="Directories besides runs_dir that Watch may open.")
    kind = param.Selector(default="sweep", objects=["sweep", "trajectory"])
    selected_store = param.String(
        default="", doc="Store of the cell last clicked in the running study's view."
    )

    def __init__(self, **params: Any):
        super().__init__(**params)
        self.inputs = {
            axis: pn.widgets.TextInput(label=f"{axis} values", value=self._default(axis))
            for axis in AXES
        }
        steps = sorted(self.checkpoints or {})
        self.steps = pn.widgets.MultiChoice(label="checkpoints", options=steps, value=steps)
        self.kind_picker = pn.widgets.RadioButtonGroup.from_param(self.param.kind)
        self.start_button = pn.widgets.Button(label="Start study", color="primary")
        self.start_button.on_click(lambda _e: self.start())
        self.error = pn.pane.Alert("", alert_type="danger", visible=False)
        self.watch_input = pn.widgets.TextInput(
            label="watch a study directory",
            placeholder="output_dir of a sweep() or llc_trajectory()",
            sizing_mode="stretch_width",
        )
        self.watch_button = pn.widgets.Button(label="Watch", width=90)
        self.watch_button.on_click(lambda _e: self.watch())
        self.view_area = pn.Column(sizing_mode="stretch_width")
        self.study = None
        self.view: StudiesView | None = None

    def _default(self, axis: str) -> str:
        value = self.settings.get(axis)
        return "" if value is None else repr(float(value))

    def grid(self) -> dict[str, list[float]]:
        """The typed axes; an empty field is no axis (the fixed setting, or its default)."""
        grid = {
            axis: parse_values(axis, self.inputs[axis].value)
            for axis in AXES
            if self.inputs[axis].value.strip()
        }
        if not grid:
            raise ValueError("type the values of at least one axis (lr, n_beta, localization).")
        return grid

    def start(self):
        """Start the chosen study; returns it (None when the input was refused: see `error`)."""
        self.error.visible = False
        try:
            study = self._launch()
        except (ValueError, TypeError) as exc:
            self._fail(str(exc))
            return None
        self.study = study
        self._show(StudiesView(study=study))
        return study

    def watch(self, path: str | None = None) -> StudiesView | None:
        """Show the study in `path` (default: the Watch field's); None after an error."""
        self.error.visible = False
        text = self.watch_input.value if path is None else str(path)
        try:
            roots = allowed_roots(self.runs_dir, self.store_roots)
            where = confine(text, roots)
        except StorePathRefused as exc:
            self._fail(str(exc).replace("stores", "studies"))
            return None
        if not (where / MANIFEST).is_file():
            self._fail(
                f"no study in {text.strip()!r} (no {MANIFEST}): type the output_dir given to "
                "sweep() or llc_trajectory()."
            )
            return None
        self.study = None
        view = StudiesView(where)
        self._show(view)
        return view

    def _show(self, view: StudiesView) -> None:
        if self.view is not None:
            self.view.close()
        self.view = view
        # Forward the view's clicks: the dashboard watches the launcher, which outlives views.
        view.param.watch(lambda e: setattr(self, "selected_store", e.new), "selected_store")
        self.view_area.objects = [view]

    def _fail(self, message: str) -> None:
        # The message can quote what was typed: escaped, the Alert renders Markdown and HTML.
        # Text content, never an attribute: <, > and & are enough, quotes stay readable.
        self.error.object = html.escape(message, quote=False)
        self.error.visible = True

    def _launch(self):
        stamp = time.strftime("%Y%m%d-%H%M%S")
        out = Path(self.runs_dir) / f"{self.kind}-{stamp}-{time.time_ns() % 10**6:06d}"
        if self.kind == "sweep":
            grid = self.grid()
            fixed = {k: v for k, v in self.settings.items() if k not in grid}
            return sweep(
                self.model,
                self.dataset,
                self.observables,
                grid=grid,
                output_dir=out,
                executor=self.executor,
                **fixed,
            )
        if not self.checkpoints:
            raise ValueError("no checkpoints to choose from: pass checkpoints={step: model}.")
        if not self.steps.value:
            raise ValueError("checkpoints: pick at least one.")
        chosen: Mapping[int, Any] = {s: self.checkpoints[s] for s in self.steps.value}
        return llc_trajectory(
            dict(chosen),
            self.dataset,
            self.observables,
            output_dir=out,
            executor=self.executor,
            **self.settings,
        )

    def __panel__(self) -> pn.viewable.Viewable:
        def fields(kind: str):
            return pn.Column(*self.inputs.values()) if kind == "sweep" else self.steps

        return pn.Column(
            self.kind_picker,
            pn.bind(fields, self.param.kind),
            self.start_button,
            pn.Row(self.watch_input, self.watch_button, sizing_mode="stretch_width"),
            self.error,
            self.view_area,
            sizing_mode="stretch_width",
        )


def demo_checkpoints(demo) -> dict[int, Callable]:
    """{step: factory} of a loaded demo's trajectory, for `checkpoints=`."""
    import functools

    return {step: functools.partial(demo.model_at, step) for step in demo.steps}
