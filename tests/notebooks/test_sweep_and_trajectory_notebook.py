"""notebooks/sweep_and_trajectory.ipynb: committed clean, and it runs at the reduced size.

The notebook asserts its own results (every sweep cell completed with a finite LLC, one point
per checkpoint, the rerun reusing every cell); this checks what it showed.
"""

from __future__ import annotations

import nbformat
from test_notebooks import NOTEBOOKS, PANEL_MIMETYPE, execute, outputs_of, stdout_of

NAME = "sweep_and_trajectory.ipynb"


def test_sweep_and_trajectory_is_committed_without_outputs():
    nb = nbformat.read(NOTEBOOKS / NAME, as_version=4)
    nbformat.validate(nb)
    first = next(c for c in nb.cells if c.cell_type == "code")
    assert 'os.environ.get("DEVINTERP_UI_NOTEBOOK_SIZE", "full")' in first.source
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None


def test_sweep_and_trajectory_runs_shows_both_studies_and_picks_a_cell(tmp_path):
    from devinterp_ui.demo import load_demo

    nb = execute(NAME, tmp_path)
    for first_line in ("view = StudiesView(study=study)", "trajectory_view = StudiesView("):
        assert any(PANEL_MIMETYPE in o.get("data", {}) for o in outputs_of(nb, first_line))
    text = stdout_of(nb)
    assert "chosen: {'lr': " in text
    steps = load_demo("tiny_lm").steps[-3:]
    assert [line.split(":")[0] for line in text.splitlines() if line.startswith("step")] == [
        f"step {s:5d}" for s in steps
    ]
