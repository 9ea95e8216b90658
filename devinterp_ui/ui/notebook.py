"""The dashboard in Jupyter: offline set-up, runs that keep the kernel free, one live view.

    from devinterp_ui.ui import notebook
    notebook.extension()                 # once per notebook, instead of pn.extension()
    dashboard = Dashboard(model, data, observables, **settings)
    dashboard                            # inline (or pn.ipywidget(dashboard) in an ipywidgets layout)
    dashboard.start()                    # returns at once; the plots fill while you work on
    tree = await dashboard.run()         # or: start (unless running) and await the end

Why each piece exists:
- `extension()`: `pn.extension()` and `hv.extension("bokeh")` load BokehJS and Panel's JS from a
  CDN by default, so with no network every output stays blank. Inline resources put the JS into
  the notebook's outputs instead: the widget works offline and a saved notebook shows its plots
  when reopened offline (trusted notebooks only: Jupyter runs no JS from untrusted outputs).
- `extension()` also makes the page's messages to the kernel safe for the live plots: applied
  on the kernel's main thread (ipykernel 7 delivers them on a subshell thread), without
  dropping the plots' held updates, and with no echo of the kernel's own events (see "Panel's
  notebook comm" below).
- `run()` / `wait()`: Panel's periodic callback that feeds the plots runs on the kernel's event
  loop, which a blocking cell starves. `run()` awaits on that loop; `wait()` blocks the cell but
  polls the store itself, so the plots still move (comm messages leave through the kernel's
  IOPub thread), and says in its docstring that it blocks.
- `guard_view()` / `release_view()`: the live plots are Bokeh figures, and a Bokeh model belongs
  to one Document, so a second simultaneous view would fail deep inside Bokeh ("Models must be
  owned by only a single document"). A second view is refused up front with one message naming
  the fixes; re-running the cell that shows the dashboard moves it to the new output, and a
  view whose output was cleared (Jupyter tells the kernel) frees the dashboard.

This module imports no notebook-only package at import time: the served app imports it too.
"""

from __future__ import annotations

import asyncio
import importlib.util
import threading
import time
import weakref
from typing import TYPE_CHECKING, Any

import panel as pn

if TYPE_CHECKING:
    import xarray as xr

    from devinterp_ui.ui.dashboard import Dashboard

INSTALL_HINT = (
    "install the notebook extra: scripts/bootstrap.sh notebook (or pip install -e '.[notebook]')"
)

# The packages a notebook view needs besides Panel: the ipywidgets view (pn.ipywidget) is a
# jupyter_bokeh widget, tqdm.auto draws ipywidgets bars, the example notebooks plot with HoloViews.
NOTEBOOK_PACKAGES = ("jupyter_bokeh", "ipywidgets", "holoviews")
# Panel extensions the dashboard's own components need loaded up front: in a notebook a
# component whose JS was not loaded by the extension call renders nothing (the run library is
# a Tabulator: "Tabulator is not defined").
DASHBOARD_EXTENSIONS = ("tabulator",)


def extension(*extensions: str, **config: Any) -> None:
    """Load Panel (and HoloViews' Bokeh backend) into this notebook with inline JS: no CDN.

    Call once per notebook, in place of `pn.extension()` and `hv.extension("bokeh")`;
    `extensions` and `config` go to `pn.extension` (e.g. `extension("vega", sizing_mode=...)`),
    with the extensions the dashboard needs (`DASHBOARD_EXTENSIONS`) always loaded.
    Later `pn.extension()` / `hv.extension()` calls stay inline too (both defaults are switched).
    The JS lands in this cell's output (3 MB, kept under two mimetypes: a saved notebook grows
    by about 6 MB), so saved notebooks render offline once trusted (`jupyter trust
    notebook.ipynb`; notebooks Jupyter saved for you are).

    Raises ImportError naming the install command when jupyter_bokeh, ipywidgets or HoloViews
    are missing (pn.ipywidget and the progress bars need them).
    """
    missing = [name for name in NOTEBOOK_PACKAGES if importlib.util.find_spec(name) is None]
    if missing:
        raise ImportError(f"the notebook widget needs {', '.join(missing)}: {INSTALL_HINT}.")
    import holoviews as hv

    pn.config.inline = True
    hv.notebook_extension.inline = True
    # HoloViews first: pn.extension() then sees it loaded and sends only what is still missing
    # (one copy of BokehJS in the outputs, not two).
    hv.extension("bokeh", logo=False)
    wanted = [*DASHBOARD_EXTENSIONS, *(e for e in extensions if e not in DASHBOARD_EXTENSIONS)]
    pn.extension(*wanted, inline=True, **config)
    _inline_stylesheet_updates()
    _keep_pending_events_on_page_messages()
    _stop_page_echo()


async def run(dashboard: Dashboard, timeout: float | None = None) -> xr.DataTree | None:
    """Start a run (unless one is going) and await its end without blocking the kernel.

    Returns `dashboard.result` (the DataTree; None when the run failed before its store).
    While awaiting, the kernel's event loop keeps serving the plots and the Stop button.
    Raises TimeoutError after `timeout` seconds (the run goes on: `dashboard.stop()` ends it);
    an interrupted or cancelled await stops the run at its next step.
    """
    if not dashboard.running:
        dashboard.start()
    deadline = None if timeout is None else time.monotonic() + timeout
    try:
        while dashboard.running:
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(
                    f"the run is still going after {timeout:g} s; dashboard.stop() ends it."
                )
            # The dashboard's periodic callback polls on this same loop; poll here only where
            # none runs (polling twice as often would also trip its stuck-store check).
            if getattr(dashboard, "_callback", None) is None:
                dashboard.poll()
            await asyncio.sleep(dashboard.poll_ms / 1000)
    except (asyncio.CancelledError, KeyboardInterrupt):
        dashboard.stop()
        raise
    return dashboard.result


def wait(dashboard: Dashboard, timeout: float | None = None) -> bool:
    """Block this thread (in a notebook: the cell and the kernel) until the run ends.

    Returns True once the run has finished, False after `timeout` seconds. The plots keep
    moving meanwhile (this polls the store every `poll_ms`), but the kernel runs no other cell
    and the Stop button answers only afterwards: in a notebook prefer `dashboard.start()` alone
    or `await dashboard.run()`.
    """
    job = dashboard.job
    if job is None:
        dashboard.poll()
        return True
    deadline = None if timeout is None else time.monotonic() + timeout
    period = dashboard.poll_ms / 1000
    while True:
        left = None if deadline is None else max(deadline - time.monotonic(), 0.0)
        done = job.wait(period if left is None else min(period, left))
        dashboard.poll()
        if done or (left is not None and left <= 0):
            break
    # The job's thread has ended: a few more polls read its last rows and show the result.
    for _ in range(3):
        if not (done and dashboard.running):
            break
        dashboard.poll()
    return done


def layout(dashboard: Dashboard) -> pn.viewable.Viewable:
    """The dashboard at notebook width: the controls above the plots, the plots full width.

    A JupyterLab cell is 800-1100 px wide; beside the 420 px controls the plot grids got about
    400 px, which truncated every small-plot title.
    """
    return pn.Column(
        pn.Column(
            dashboard.controls, max_width=NOTEBOOK_CONTROLS_WIDTH, sizing_mode="stretch_width"
        ),
        dashboard.main,
        sizing_mode="stretch_width",
    )


NOTEBOOK_CONTROLS_WIDTH = 760  # two form columns of ~360 px: every label and hint fits


# --- Panel's own stylesheets, inline ---------------------------------------------------------
# Panel 1.9 inlines its CSS in the first render of an inline output only: a pane updated later
# (a Markdown pane's text, a new result table) sends its stylesheets again as links to
# cdn.holoviz.org (holoviz/panel#8707 covers one of these paths), and a pn.ipywidget view is
# never inlined. Offline, those components lose their styling and the console fills with
# failed requests. The wrapper below swaps each such link for the same file from Panel's
# installed dist/ folder, one InlineStyleSheet per file and Document (a Bokeh model belongs to
# one Document).


def _inline(stylesheets: list, doc) -> list:
    from bokeh.models import ImportedStyleSheet, InlineStyleSheet
    from panel.io.resources import CDN_DIST, DIST_DIR

    # The cache lives on the Document, so it goes with it (a dict keyed by Documents would keep
    # them alive: each sheet refers back to its Document).
    cache = {} if doc is None else doc.__dict__.setdefault("_devinterp_ui_sheets", {})
    out = []
    for sheet in stylesheets:
        url = getattr(sheet, "url", None) if isinstance(sheet, ImportedStyleSheet) else None
        if url and url.startswith(CDN_DIST):
            path = DIST_DIR / url.removeprefix(CDN_DIST).split("?")[0]
            if path.is_file():
                if path not in cache:
                    cache[path] = InlineStyleSheet(css=path.read_text(encoding="utf-8"))
                sheet = cache[path]
        out.append(sheet)
    return out


def _inline_stylesheet_updates() -> None:
    """Wrap Panel's Reactive once: the stylesheets of every model it builds or updates go inline.

    `_get_properties` feeds every new model and every HTML/Markdown pane update;
    `_update_model` every other parameter change. Active only while `pn.config.inline` is set.
    """
    from panel.reactive import Reactive

    if getattr(Reactive._update_model, "_devinterp_ui_inline", False):
        return
    get_properties, update_model = Reactive._get_properties, Reactive._update_model

    def _get_properties(self, doc):
        props = get_properties(self, doc)
        if pn.config.inline and props.get("stylesheets"):
            props["stylesheets"] = _inline(props["stylesheets"], doc)
        return props

    def _update_model(self, events, msg, root, model, doc, comm):
        if pn.config.inline and msg.get("stylesheets"):
            msg["stylesheets"] = _inline(msg["stylesheets"], doc)
        return update_model(self, events, msg, root, model, doc, comm)

    _update_model._devinterp_ui_inline = True
    Reactive._get_properties, Reactive._update_model = _get_properties, _update_model


# --- Panel's notebook comm, both ways --------------------------------------------------------
# In a notebook Panel holds the Bokeh Document: model changes (a ColumnDataSource's `stream`, a
# range's `start`) collect as held events and leave with the next push, which follows every
# Panel parameter change. Three things in Panel 1.9 (with ipykernel 7 and JupyterLab 4) lost or
# corrupted the live plots' updates (docs/known_gaps.md, issue 14):
# - ipykernel 7 hands comm messages from the page to a subshell thread: Panel applied them
#   (`MimeRenderMixin._on_msg`) and pushed from that thread while the dashboard's poll edited
#   and pushed the same Document on the kernel's main thread. A Document is not thread-safe:
#   patches went out naming models the page was never sent ("reference ... isn't known" in the
#   page's console), the page refused every later patch touching them, and the lines stopped
#   part-way (at 1 point, or 6, 9, 48 of 150) while the run completed;
# - the kernel applies each page message between `doc.hold()` and `doc.unhold()`, and `unhold`
#   hands every held event to the Document's change callbacks, of which a notebook Document has
#   none: events held but not pushed yet (a poll's streamed points, when nothing pushed after
#   them) were dropped, and the lines ended points short of the run;
# - the page's comm manager (panel/models/comm_manager.ts) sends back every event the page
#   applied from the kernel: it does not skip events with `sync` false, as BokehJS's own server
#   session does. The kernel applied these echoes: each streamed chunk was appended to the
#   kernel's source a second time (a 150-draw run's line held 230 points in the kernel), and an
#   echoed older value (a range, a layout's children) overwrote a newer one.
# `_keep_pending_events_on_page_messages` applies page messages on the kernel's main thread
# (its event loop, where the polls run) and keeps the held events across them, pushing them
# right after; `_stop_page_echo` makes the page skip the events it applied from the kernel.

NO_ECHO_JS = """
(function patch(tries) {
  var B = window.Bokeh, C = null;
  try {
    C = (B && B.Panel && (B.Panel.CommManager || (B.Panel.Panel && B.Panel.Panel.CommManager)))
      || (B && B.Models && B.Models.get && B.Models.get("panel.models.comm_manager.CommManager"));
  } catch (e) { C = null; }
  if (!C || !C.prototype || !C.prototype._document_changed) {
    if (tries > 0) setTimeout(function () { patch(tries - 1); }, 100);
    return;
  }
  if (C.prototype._devinterp_ui_no_echo) return;
  var changed = C.prototype._document_changed;
  C.prototype._document_changed = function (event) {
    // An event applied from the kernel (sync false) goes back to no one: see ui/notebook.py.
    if (event && event.sync === false) return;
    return changed.call(this, event);
  };
  C.prototype._devinterp_ui_no_echo = true;
})(300);
"""


def _stop_page_echo() -> None:
    """Make the page's Panel comm manager skip the events it applied from the kernel."""
    from IPython import get_ipython
    from IPython.display import Javascript, display

    if get_ipython() is not None:  # a kernel (outside one there is no page to patch)
        display(Javascript(NO_ECHO_JS))


def _keep_pending_events_on_page_messages() -> None:
    """Wrap Panel's handler of page messages once: it runs on the thread that calls this (the
    kernel's main thread, whose event loop runs the polls), and the Document's held events
    survive it and are pushed right after (see the comment above)."""
    from panel.viewable import MimeRenderMixin

    if getattr(MimeRenderMixin._on_msg, "_devinterp_ui_wrapped", None) is not None:
        return
    MimeRenderMixin._on_msg = _page_message_handler(
        MimeRenderMixin._on_msg, threading.get_ident(), _current_loop()
    )


def _current_loop() -> asyncio.AbstractEventLoop | None:
    """The event loop of this thread (in a kernel cell: the kernel's), None without one."""
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        pass
    try:
        return asyncio.get_event_loop_policy().get_event_loop()
    except RuntimeError:
        return None


def _page_message_handler(on_msg, thread: int, loop: asyncio.AbstractEventLoop | None):
    """`on_msg` (Panel's `MimeRenderMixin._on_msg`), run on `thread`: a call from another
    thread (ipykernel's subshell) is handed to `loop`, which runs on `thread`."""

    def _on_msg(self, ref, manager, msg):
        if loop is not None and threading.get_ident() != thread and loop.is_running():
            # A subshell thread: apply it where the polls edit the Document, between two polls.
            loop.call_soon_threadsafe(_apply_page_message, on_msg, self, ref, manager, msg)
            return None
        return _apply_page_message(on_msg, self, ref, manager, msg)

    _on_msg._devinterp_ui_wrapped = on_msg
    return _on_msg


def _apply_page_message(on_msg, view, ref, manager, msg):
    """Panel's `_on_msg`, with the Document's held events set aside and pushed after it."""
    from panel.io.notebook import push
    from panel.io.state import state

    entry = state._views.get(ref)
    doc, comm = (entry[2], entry[3]) if entry is not None else (None, None)
    if doc is None:
        return on_msg(view, ref, manager, msg)
    pending = list(doc.callbacks._held_events)
    doc.callbacks._held_events = []
    try:
        return on_msg(view, ref, manager, msg)
    finally:
        kept = [e for e in pending if not _overwritten(e)]
        if kept:
            doc.callbacks._held_events[:0] = kept
            if comm is not None:
                push(doc, comm)


def _overwritten(event) -> bool:
    """A held property change whose property the page's message has set since (the user's pan
    or zoom wins over the kernel's older, unsent value)."""
    from bokeh.document.events import ModelChangedEvent

    if not isinstance(event, ModelChangedEvent):
        return False
    try:
        now = getattr(event.model, event.attr)
    except AttributeError:
        return False
    if now is event.new:
        return False
    try:
        return not bool(now == event.new)
    except Exception:  # arrays and the like compare elementwise: keep the change
        return False


# --- one live view per dashboard -------------------------------------------------------------

# Per dashboard: its views, each with the notebook cell (id, execution count) that made it.
_views: weakref.WeakKeyDictionary[Any, list[tuple[weakref.ref, tuple | None]]] = (
    weakref.WeakKeyDictionary()
)


def _cell() -> tuple[str, int] | None:
    """(cell id, execution count) of the cell the kernel is running, when Jupyter says."""
    try:
        from IPython import get_ipython

        shell = get_ipython()
        kernel = getattr(shell, "kernel", None)
        cell_id = (kernel.get_parent().get("metadata") or {}).get("cellId") if kernel else None
    except Exception:  # no IPython, or a front end that sends no cell id
        return None
    return (cell_id, shell.execution_count) if cell_id else None


def _live_views(dashboard: Dashboard) -> list[tuple[pn.viewable.Viewable, tuple | None]]:
    views = [(ref(), cell) for ref, cell in _views.get(dashboard, [])]
    return [(v, cell) for v, cell in views if v is not None and v._models]


def guard_view(dashboard: Dashboard, view: pn.viewable.Viewable) -> pn.viewable.Viewable:
    """Register `view` as the dashboard's view; refuse it while another view is live.

    A view that an earlier run of the same notebook cell made is released first: Jupyter
    replaces that output, but tells the kernel only after it started the new run of the cell.
    Raises RuntimeError naming the fixes when the dashboard is shown elsewhere (another cell's
    output, an ipywidget, a served page) and that view was not closed.
    """
    cell = _cell()
    live = _live_views(dashboard)
    if live and cell is not None and all(c and c[0] == cell[0] and c[1] < cell[1] for _, c in live):
        release_view(dashboard)
        live = []
    if live:
        raise RuntimeError(
            "this Dashboard is already shown in another output (a cell or a pn.ipywidget); its "
            "live Bokeh plots can be in one view only. Show it in one place: clear the other "
            "output, or call devinterp_ui.ui.notebook.release_view(dashboard) to move it here "
            "(the old view stops updating), or create a second Dashboard for a second view."
        )
    kept = [(ref, c) for ref, c in _views.get(dashboard, []) if ref() is not None]
    _views[dashboard] = [*kept, (weakref.ref(view), cell)]
    return view


def release_view(dashboard: Dashboard, root=None) -> None:
    """Detach the dashboard from its view(s) (`root`: only the view with that Bokeh root).

    The released outputs stop updating; the dashboard can then be shown again. Jupyter calls
    this (through `Dashboard._cleanup`) when an ipywidget view is closed.
    """
    for view, _cell_of_view in _live_views(dashboard):
        for ref, (model, _parent) in list(view._models.items()):
            if root is not None and ref != root.ref["id"]:
                continue
            view._cleanup(model)
            # Out of its Document too, so that the figures can join another view's Document.
            doc = model.document
            if doc is not None and model in doc.roots:
                doc.remove_root(model)
