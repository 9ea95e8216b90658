"""The dashboard as a notebook widget, in this process: what Jupyter receives when it is shown.

Panel renders a component to a bokeh model; Jupyter shows it through `_repr_mimebundle_` (the
Panel/HoloViews mimetype that the notebook extension loaded by `pn.extension()` renders) or,
inside ipywidgets layouts, as a jupyter_bokeh `BokehModel` widget. The notebooks in
tests/notebooks/test_notebooks.py check the same inside a real kernel.
"""

from __future__ import annotations

import asyncio
import importlib.util
import sys
from pathlib import Path

import ipywidgets as widgets
import numpy as np
import panel as pn
import pytest
import torch
import xarray as xr
from bokeh.document import Document
from bokeh.models import ColumnDataSource, ImportedStyleSheet, Model
from jupyter_bokeh import BokehModel
from pyviz_comms import Comm
from tiny_models import TinyLM

from devinterp_ui.ui import notebook
from devinterp_ui.ui.dashboard import Dashboard

PANEL_MIMETYPE = "application/vnd.holoviews_exec.v0+json"


@pytest.fixture(scope="module", autouse=True)
def extension():
    pn.extension()


@pytest.fixture
def dashboard(make_dashboard):
    return make_dashboard(num_draws=6)


def sources_with_rows(model: Model, rows: int) -> list[ColumnDataSource]:
    return [
        ref
        for ref in model.references()
        if isinstance(ref, ColumnDataSource) and len(ref.data.get("x", ())) == rows
    ]


def test_dashboard_renders_to_a_bokeh_model(dashboard):
    root = pn.panel(dashboard).get_root()
    assert isinstance(root, Model)
    labels = {getattr(ref, "label", None) for ref in root.references()}
    assert {"▶ Start", "■ Stop"} <= labels


def test_repr_mimebundle_carries_the_panel_mimetype(dashboard):
    data, metadata = dashboard._repr_mimebundle_()
    assert PANEL_MIMETYPE in data
    assert "text/html" in data
    assert PANEL_MIMETYPE in metadata


def test_ipywidget_is_a_jupyter_bokeh_widget_that_fits_in_a_vbox(dashboard):
    widget = pn.ipywidget(dashboard)
    assert isinstance(widget, BokehModel)
    assert isinstance(widget, widgets.DOMWidget)
    box = widgets.VBox([widgets.HTML("<b>my controls</b>"), widget])
    assert box.children[1] is widget
    assert widget.render_bundle["docs_json"]  # what the jupyter_bokeh front end renders


def test_ipywidget_view_shows_the_traces_of_a_run_started_from_code(dashboard):
    widget = pn.ipywidget(dashboard)
    dashboard.start()
    assert dashboard.wait(120)
    assert dashboard.current.status == "completed"
    # The loss plot's per-chain sources in the widget's document hold every step of the run.
    assert len(sources_with_rows(widget._model, 6)) >= 2
    assert np.isfinite(float(dashboard.llc()["llc_mean"]))


def test_settings_typed_in_the_widget_come_back_as_sample_arguments(dashboard):
    dashboard.form.set_values({"lr": 2e-3, "num_draws": 9})  # as typed: the form formats them
    settings = dashboard.settings
    assert settings["lr"] == 2e-3 and settings["num_draws"] == 9
    assert settings["n_beta"] == 20.0


def test_a_second_view_while_the_first_is_live_raises_one_clear_error(dashboard):
    doc = Document()
    doc.add_root(pn.panel(dashboard).get_root(doc))  # shown, as a notebook output is
    with pytest.raises(RuntimeError, match="already shown in another output") as info:
        pn.ipywidget(dashboard)
    assert "release_view(dashboard)" in str(info.value)
    assert "second Dashboard" in str(info.value)


def test_a_released_dashboard_shows_again_and_the_new_view_follows_a_run(dashboard):
    doc = Document()
    first = pn.panel(dashboard).get_root(doc)
    doc.add_root(first)
    dashboard.start()
    assert dashboard.wait(120)  # the first view holds this run's figures
    notebook.release_view(dashboard)
    widget = pn.ipywidget(dashboard)
    dashboard.start()
    assert dashboard.wait(120)
    assert len(sources_with_rows(widget._model, 6)) >= 2
    assert first.document is None  # released: out of its Document, no longer updated


@pytest.mark.parametrize(
    ("first", "second", "moves"),
    [
        (("cell-a", 1), ("cell-a", 2), True),  # the same cell run again: its output is replaced
        (("cell-a", 1), ("cell-b", 2), False),  # another cell
        (("cell-a", 1), ("cell-a", 1), False),  # twice in one run of a cell
        (None, None, False),  # a front end that sends no cell id
    ],
)
def test_rerunning_the_cell_that_shows_the_dashboard_moves_it_to_the_new_output(
    dashboard, monkeypatch, first, second, moves
):
    monkeypatch.setattr(notebook, "_cell", lambda: first)
    doc = Document()
    old = pn.panel(dashboard).get_root(doc)
    doc.add_root(old)
    monkeypatch.setattr(notebook, "_cell", lambda: second)
    if moves:
        new_doc = Document()
        new_doc.add_root(pn.panel(dashboard).get_root(new_doc))
        assert old.document is None  # the replaced output let go
    else:
        with pytest.raises(RuntimeError, match="already shown"):
            pn.panel(dashboard).get_root(Document())


def test_closing_the_ipywidget_view_frees_the_dashboard(dashboard):
    widget = pn.ipywidget(dashboard)
    widget._view_count = 1  # the front end counts its views: one shown ...
    widget._view_count = 0  # ... then closed (cell cleared or re-run)
    doc = Document()
    doc.add_root(pn.panel(dashboard).get_root(doc))  # no error: the old view let go


def test_run_is_awaitable_and_returns_the_finished_tree(dashboard):
    tree = asyncio.run(dashboard.run(timeout=120))
    assert tree is dashboard.result and isinstance(tree, xr.DataTree)
    assert dashboard.current.status == "completed" and not dashboard.running


def test_run_past_its_timeout_raises_and_leaves_the_run_to_stop(dashboard):
    dashboard.form.set_values({"num_draws": 5000})
    with pytest.raises(TimeoutError, match=r"dashboard\.stop\(\) ends it"):
        asyncio.run(dashboard.run(timeout=0.2))
    assert dashboard.running
    dashboard.stop()
    assert dashboard.wait(120)
    assert dashboard.current.status == "stopped"


def test_cancelling_the_awaited_run_stops_it(dashboard):
    dashboard.form.set_values({"num_draws": 5000})

    async def interrupt():
        task = asyncio.ensure_future(dashboard.run())
        await asyncio.sleep(0.5)
        task.cancel()  # what interrupting the kernel does to an awaiting cell
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(interrupt())
    assert dashboard.wait(120)
    assert dashboard.current.status == "stopped"


def test_wait_blocks_but_keeps_reading_rows_into_the_plots(tmp_path):
    data = torch.randint(0, 11, (64, 6), generator=torch.Generator().manual_seed(3))
    dash = Dashboard(
        TinyLM(), data, {}, runs_dir=tmp_path, poll_ms=20, lr=1e-3, n_beta=20.0,
        num_chains=2, num_draws=80, batch_size=8, num_init_loss_batches=2,
    )  # fmt: skip
    seen = []
    poll = dash.poll

    def counting_poll():
        poll()
        if dash.plots is not None:
            line = dash.plots.loss.fig.select_one({"name": "loss:chain0"})  # as the page reads it
            seen.append(len(line.data["x"]))

    dash.poll = counting_poll
    dash.start()
    assert dash.wait(120)
    assert seen[-1] == 80
    assert any(0 < n < 80 for n in seen), seen  # rows reached the plots while wait() blocked


@pytest.fixture
def restore_inline(monkeypatch):
    """extension() switches process-wide defaults: put them back for the other tests."""
    import holoviews as hv

    monkeypatch.setattr(pn.config, "inline", pn.config.inline)
    # In a kernel this is holoviews.ipython.notebook_extension; outside IPython a stand-in.
    monkeypatch.setattr(hv.notebook_extension, "inline", False, raising=False)


def test_extension_switches_panel_and_holoviews_to_inline_resources(restore_inline):
    import holoviews as hv

    notebook.extension()
    assert pn.config.inline and hv.notebook_extension.inline
    # The dashboard's run library is a Tabulator: its JS must be loaded with the extension.
    assert "tabulator" in pn.extension._loaded_extensions


def test_extension_names_the_install_command_when_a_widget_package_is_missing(
    monkeypatch, restore_inline
):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name: None if name == "jupyter_bokeh" else real(name)
    )
    with pytest.raises(ImportError, match=r"jupyter_bokeh.*scripts/bootstrap.sh notebook"):
        notebook.extension()


def test_panes_updated_after_the_first_render_keep_their_stylesheets_inline(restore_inline):
    notebook.extension()
    text, later = pn.pane.Markdown("first"), pn.Column()
    root = pn.Column(text, later).get_root(Document(), comm=Comm())
    text.object = "second"  # Panel 1.9 resends the pane's stylesheets as CDN links here
    later.objects = [pn.pane.Markdown("added")]  # a pane added after the first render
    remote = [
        sheet.url
        for model in root.references()
        for sheet in getattr(model, "stylesheets", [])
        if isinstance(sheet, ImportedStyleSheet)
    ]
    assert remote == []


@pytest.mark.parametrize(
    "extension",
    [
        "labextensions/@pyviz/jupyterlab_pyviz",  # renders Panel's mimetype in JupyterLab
        "labextensions/@bokeh/jupyter_bokeh",  # renders pn.ipywidget in JupyterLab
        "labextensions/@jupyter-widgets/jupyterlab-manager",  # ipywidgets in JupyterLab
        "nbextensions/jupyter_bokeh",  # pn.ipywidget in classic Notebook
    ],
)
def test_the_jupyter_front_end_extensions_are_installed(extension):
    assert (Path(sys.prefix) / "share" / "jupyter" / extension).is_dir()
