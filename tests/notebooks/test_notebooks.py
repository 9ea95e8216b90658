"""The example notebooks: committed clean, and each one runs top to bottom in a real kernel.

Each notebook asserts its own results in its cells (a finite, positive LLC; one point per
checkpoint; the estimate within tolerance of the true lambda), so executing it without an error
is the check. They run at the reduced size (DEVINTERP_UI_NOTEBOOK_SIZE=small), one kernel thread
each, with stores in a temporary folder; the executed copies land in test-artifacts/notebooks/.
"""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = ROOT / "notebooks"
ARTIFACTS = ROOT / "test-artifacts" / "notebooks"
NAMES = ["quickstart.ipynb", "llc_over_training.ipynb", "known_lambda.ipynb"]
PANEL_MIMETYPE = "application/vnd.holoviews_exec.v0+json"
WIDGET_MIMETYPE = "application/vnd.jupyter.widget-view+json"


def load_generator():
    """notebooks/make_notebooks.py, the notebooks' source (not a package module)."""
    spec = importlib.util.spec_from_file_location("make_notebooks", NOTEBOOKS / "make_notebooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def execute(name: str, workdir: Path) -> nbformat.NotebookNode:
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    runs = workdir / "runs"
    runs.mkdir()
    env = dict(
        os.environ,
        DEVINTERP_UI_NOTEBOOK_SIZE="small",
        DEVINTERP_UI_RUNS_DIR=str(runs),
        OMP_NUM_THREADS="1",
        MKL_NUM_THREADS="1",
    )
    client = NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(workdir)}}
    )
    try:
        client.execute(env=env)
    except CellExecutionError as exc:
        pytest.fail(f"{name} failed (executed copy in {ARTIFACTS / name}):\n{exc}")
    finally:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, ARTIFACTS / name)
    assert "size: small" in stdout_of(nb)
    assert_renders_offline(nb)
    assert "IProgress" not in json.dumps([c.outputs for c in nb.cells if c.cell_type == "code"])
    return nb


# Where a notebook output would fetch JS or CSS from, were it not inline.
CDN_HOSTS = ("cdn.bokeh.org", "cdn.holoviz.org", "unpkg.com", "cdn.jsdelivr.net")
# The bundle of BokehJS and Panel's JS (sent under both: classic Notebook runs the first,
# JupyterLab's pyviz extension the second).
JS_MIMETYPES = ("application/javascript", "application/vnd.holoviews_load.v0+json")


def assert_renders_offline(nb: nbformat.NotebookNode) -> None:
    """BokehJS travels inside the outputs, and no output links JS or CSS from a CDN (the
    notebooks call devinterp_ui.ui.notebook.extension(), which sets Panel and HoloViews inline).
    The bundled JS itself is skipped: it names CDNs in code paths that inline mode never takes."""
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    scripts = [o.get("data", {}).get("application/javascript", "") for o in outputs]
    assert any("Bokeh" in js and len(js) > 1_000_000 for js in scripts), "no inline BokehJS"
    linked = [
        host
        for o in outputs
        for mime, value in o.get("data", {}).items()
        if mime not in JS_MIMETYPES
        for host in CDN_HOSTS
        if host in json.dumps(value)
    ]
    assert linked == [], f"outputs link to {sorted(set(linked))}"


def outputs_of(nb: nbformat.NotebookNode, first_line: str) -> list[dict]:
    cells = [c for c in nb.cells if c.cell_type == "code" and first_line in c.source]
    assert len(cells) == 1, f"no single code cell containing {first_line!r}"
    return cells[0].outputs


def stdout_of(nb: nbformat.NotebookNode) -> str:
    return "".join(
        o.get("text", "")
        for c in nb.cells
        if c.cell_type == "code"
        for o in c.outputs
        if o.output_type == "stream" and o.name == "stdout"
    )


def test_notebooks_match_their_generator():
    assert load_generator().main(check=True) == 0


@pytest.mark.parametrize("name", NAMES)
def test_notebook_is_committed_without_outputs(name):
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    nbformat.validate(nb)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None


@pytest.mark.parametrize("name", NAMES)
def test_notebook_reads_the_size_switch_in_its_first_code_cell(name):
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    first = next(c for c in nb.cells if c.cell_type == "code")
    assert 'os.environ.get("DEVINTERP_UI_NOTEBOOK_SIZE", "full")' in first.source
    assert "tempfile.mkdtemp" in first.source  # stores never land in the repository


# One test per notebook (each runs its notebook once, also under pytest-xdist); the notebook's
# own cells assert its results, these check what it showed.


def test_quickstart_runs_shows_the_dashboard_inline_and_plots_the_analyses(tmp_path):
    nb = execute("quickstart.ipynb", tmp_path)
    (shown,) = [o for o in outputs_of(nb, "dashboard = Dashboard(") if o.get("data")]
    assert PANEL_MIMETYPE in shown.data and "text/html" in shown.data
    for first_line in ("bif = compute_bif(", "per_token = chi.sel("):
        assert any(PANEL_MIMETYPE in o.get("data", {}) for o in outputs_of(nb, first_line))
    assert "LLC = " in stdout_of(nb)


def test_llc_over_training_runs_with_one_estimate_per_checkpoint(tmp_path):
    from devinterp_ui.demo import load_demo

    text = stdout_of(execute("llc_over_training.ipynb", tmp_path))
    steps = load_demo("tiny_lm").steps
    assert [line.split(":")[0] for line in text.splitlines() if line.startswith("step")] == [
        f"step {s:5d}" for s in steps
    ]


def test_known_lambda_runs_and_shows_the_dashboard_inside_an_ipywidgets_vbox(tmp_path):
    nb = execute("known_lambda.ipynb", tmp_path)
    assert "relative error" in stdout_of(nb)
    (shown,) = [o for o in outputs_of(nb, "dashboard = Dashboard.from_demo(") if o.get("data")]
    model_id = shown.data[WIDGET_MIMETYPE]["model_id"]
    state = nb.metadata["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]
    box = state[model_id]
    assert box["model_name"] == "VBoxModel"
    children = [state[ref.removeprefix("IPY_MODEL_")] for ref in box["state"]["children"]]
    assert [c["model_name"] for c in children] == ["HTMLModel", "BokehModel"]
    assert "Start" in json.dumps(children[1]["state"]["render_bundle"])
