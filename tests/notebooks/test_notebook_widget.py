"""The dashboard as a notebook widget, in this process: what Jupyter receives when it is shown.

Panel renders a component to a bokeh model; Jupyter shows it through `_repr_mimebundle_` (the
Panel/HoloViews mimetype that the notebook extension loaded by `pn.extension()` renders) or,
inside ipywidgets layouts, as a jupyter_bokeh `BokehModel` widget. The notebooks in
tests/notebooks/test_notebooks.py check the same inside a real kernel.
"""

from __future__ import annotations

import sys
from pathlib import Path

import ipywidgets as widgets
import numpy as np
import panel as pn
import pytest
import torch
from bokeh.document import Document
from bokeh.models import ColumnDataSource, Model
from jupyter_bokeh import BokehModel
from tiny_models import TinyLM

from devinterp_ui.ui.dashboard import Dashboard

PANEL_MIMETYPE = "application/vnd.holoviews_exec.v0+json"


@pytest.fixture(scope="module", autouse=True)
def extension():
    pn.extension()


@pytest.fixture
def dashboard(tmp_path):
    torch.manual_seed(0)
    data = torch.randint(0, 11, (64, 6), generator=torch.Generator().manual_seed(3))
    return Dashboard(
        TinyLM(),
        data,
        {"train": data},
        runs_dir=tmp_path,
        lr=1e-3,
        n_beta=20.0,
        num_chains=2,
        num_draws=6,
        batch_size=8,
        num_init_loss_batches=2,
        batches_per_draw=1,
    )


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
    dashboard.form.widgets["lr"].value = 2e-3
    dashboard.form.widgets["num_draws"].value = 9
    settings = dashboard.settings
    assert settings["lr"] == 2e-3 and settings["num_draws"] == 9
    assert settings["n_beta"] == 20.0


@pytest.mark.xfail(
    strict=True,
    raises=RuntimeError,
    reason="the live plots are raw Bokeh figures, which belong to one Document: a dashboard "
    "shown twice (two cells, or inline and in an ipywidget) fails at start() with 'Models must "
    "be owned by only a single document'. Notebooks show each dashboard once.",
)
def test_one_dashboard_shown_twice_follows_a_run_in_both_views(dashboard):
    doc = Document()
    inline = pn.panel(dashboard).get_root(doc)
    doc.add_root(inline)  # as a notebook display or a server session does
    widget = pn.ipywidget(dashboard)
    try:
        dashboard.start()
        assert dashboard.wait(120)
    finally:
        if dashboard.job is not None:
            dashboard.job.stop()
            dashboard.job.wait(60)
    assert sources_with_rows(inline, 6) and sources_with_rows(widget._model, 6)


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
