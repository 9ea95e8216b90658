"""`DemoPicker`: choose a shipped demo and its checkpoint along the training trajectory."""

from __future__ import annotations

from collections.abc import Callable

import panel as pn
import param

from devinterp_ui.demo import Demo, list_demos, load_demo
from devinterp_ui.ui import escape


class DemoPicker(pn.viewable.Viewer):
    """Demo and checkpoint selects; `on_load(demo, new_demo)` is called with each loaded `Demo`
    (new_demo False when only the checkpoint changed: the form keeps its settings).

    `locked` (set while a run goes) keeps the selection: the model must not change under a
    running job.
    """

    demo = param.Parameter(default=None, doc="The loaded Demo.")
    locked = param.Boolean(default=False)

    def __init__(self, demo: Demo, on_load: Callable[[Demo, bool], None], **params):
        super().__init__(demo=demo, **params)
        self._on_load = on_load
        self.demo_select = pn.widgets.Select(
            label="demo", options=list(list_demos()), value=demo.name, sizing_mode="stretch_width"
        )
        self.step_select = pn.widgets.Select(
            label="checkpoint (training step)",
            options=list(demo.steps),
            value=demo.step,
            sizing_mode="stretch_width",
        )
        self.info = pn.pane.HTML(self._info(demo), margin=(0, 10))
        self.demo_select.param.watch(self._on_demo, "value")
        self.step_select.param.watch(self._on_step, "value")
        self.param.watch(self._sync_lock, "locked")

    @staticmethod
    def _info(demo: Demo) -> str:
        return f"<small>{escape.text(demo.description)}</small>"

    def _sync_lock(self, *_e) -> None:
        self.demo_select.disabled = self.step_select.disabled = self.locked

    def _on_demo(self, event) -> None:
        if self.locked or event.new == self.demo.name:
            return
        demo = load_demo(event.new)
        self.step_select.options = list(demo.steps)
        self.step_select.value = demo.step
        self._loaded(demo, True)

    def _on_step(self, event) -> None:
        if self.locked or event.new is None or event.new == self.demo.step:
            return
        demo = self.demo
        demo.model, demo.step = demo.model_at(event.new), event.new
        self._loaded(demo, False)

    def _loaded(self, demo: Demo, new_demo: bool) -> None:
        self.demo = demo
        self.info.object = self._info(demo)
        self._on_load(demo, new_demo)

    def __panel__(self) -> pn.viewable.Viewable:
        return pn.Column(self.demo_select, self.step_select, self.info, sizing_mode="stretch_width")
