"""The live plots' updates through Panel's notebook comm (docs/known_gaps.md, issue 14).

ipykernel 7 hands the page's comm messages to a subshell thread, where Panel applied them to the
Document the dashboard's polls edit on the kernel's main thread (patches then named models the
page was never sent, and the lines stopped). The wrapper applies them on the thread that
installed it. In a notebook Panel also holds the Bokeh Document: a ColumnDataSource's `stream` waits, as a held
event, for the next push. Panel applies each message from the page between `doc.hold()` and
`doc.unhold()`, and `unhold` handed the held events to a notebook Document's change callbacks
(it has none): a poll's streamed points that no push had sent yet never reached the page. The
dashboard's wrapper (`notebook._keep_pending_events_on_page_messages`) keeps them and pushes
them. No kernel or browser here: a Document rendered as Panel renders a notebook output, with a
comm that records what it would send.
"""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import panel as pn
import pytest
from bokeh.document import Document
from panel.io.model import add_to_doc
from panel.models.comm_manager import CommManager

from devinterp_ui.ui import notebook
from devinterp_ui.ui.figures import ChainLines, make_figure


class RecordingComm:
    """What `panel.io.notebook.push` needs of a pyviz_comms Comm."""

    id = "kernel-comm"
    _comm = True

    def __init__(self):
        self.sent: list = []

    def send(self, data=None, buffers=None):
        self.sent.append(data)


@pytest.fixture
def sent(monkeypatch):
    """The events each push sends (kind, model id, attr), in order."""
    import panel.io.notebook as pnb

    out: list[tuple[str, str, str | None]] = []

    def send(comm, msg):
        for event in msg.content.get("events", []):
            out.append((event["kind"], event["model"]["id"], event.get("attr")))

    monkeypatch.setattr(pnb, "send", send)
    return out


@pytest.fixture
def output():
    """A loss line and a text box in a Document held as in a notebook output."""
    notebook._keep_pending_events_on_page_messages()
    lines = ChainLines("loss", make_figure("loss", "step", "loss"), 1, 100)
    box = pn.widgets.TextInput(value="")
    view = pn.Column(pn.pane.Bokeh(lines.fig), box)
    doc, comm = Document(), RecordingComm()
    root = view.get_root(doc, comm)
    add_to_doc(root, doc, True)
    assert doc.callbacks.hold_value == "combine"
    ref = root.ref["id"]
    manager = CommManager(comm_id=comm.id, plot_id=ref)
    return lines, box, view, doc, ref, manager


def page_message(model, attr: str, new) -> dict:
    """A PATCH-DOC message from the page, as the client comm hands it to Panel."""
    event = {"kind": "ModelChanged", "model": {"id": model.id}, "attr": attr, "new": new}
    return {
        "header": {"msgid": "page-1", "msgtype": "PATCH-DOC"},
        "metadata": {},
        "content": {"events": [event]},
        "_buffers": {},
    }


def test_points_streamed_before_a_page_message_still_reach_the_page(output, sent):
    lines, box, view, doc, ref, manager = output
    lines.extend(0, np.arange(5.0), np.ones(5))
    lines.push()  # a poll after which nothing pushed: the points wait as held events
    (source,) = lines.sources
    assert ("ColumnsStreamed", source.id, "data") not in sent
    # The page types into the box (any message from the page) before the next push.
    view._on_msg(ref, manager, page_message(box._models[ref][0], "value", "typed"))
    assert box.value == "typed"  # the page's change is applied
    assert ("ColumnsStreamed", source.id, "data") in sent  # and the points were pushed
    assert doc.callbacks._held_events == []


def test_a_held_range_the_page_has_set_since_is_not_sent_back(output, sent):
    lines, box, view, doc, ref, manager = output
    lines.extend(0, np.arange(5.0), np.arange(5.0))
    lines.push()  # fits the ranges: start/end changes held with the points
    x_range = lines.fig.x_range
    kernel_start = x_range.start
    # The user pans before the next push: the page's value wins, the kernel's is not re-sent.
    view._on_msg(ref, manager, page_message(x_range, "start", kernel_start - 10))
    assert x_range.start == kernel_start - 10
    assert ("ModelChanged", x_range.id, "start") not in sent
    assert ("ModelChanged", x_range.id, "end") in sent
    assert ("ColumnsStreamed", lines.sources[0].id, "data") in sent


def test_a_page_message_from_a_subshell_thread_is_applied_on_the_kernels_thread(output, sent):
    lines, box, view, doc, ref, manager = output
    from panel.viewable import MimeRenderMixin

    panel_on_msg = MimeRenderMixin._on_msg._devinterp_ui_wrapped
    loop = asyncio.new_event_loop()  # the kernel's loop, on this (the kernel's main) thread
    on_msg = notebook._page_message_handler(panel_on_msg, threading.get_ident(), loop)
    threads: list[int] = []
    box.param.watch(lambda _e: threads.append(threading.get_ident()), "value")
    lines.extend(0, np.arange(3.0), np.ones(3))
    lines.push()
    message = page_message(box._models[ref][0], "value", "from the page")

    async def kernel():
        subshell = threading.Thread(target=on_msg, args=(view, ref, manager, message))
        subshell.start()
        while subshell.is_alive() or not threads:
            await asyncio.sleep(0.01)

    try:
        loop.run_until_complete(asyncio.wait_for(kernel(), 10))
    finally:
        loop.close()
    assert threads == [threading.get_ident()]  # applied here, not in the subshell thread
    assert box.value == "from the page"
    assert ("ColumnsStreamed", lines.sources[0].id, "data") in sent


def test_extension_loads_the_page_patch_that_stops_the_echo():
    # The page side cannot run here (tests/notebooks does): the snippet skips exactly the
    # events the page applied from the kernel.
    assert "event.sync === false" in notebook.NO_ECHO_JS
    assert "_document_changed" in notebook.NO_ECHO_JS
