"""Studies: many `sample()` runs as one, a settings sweep or the LLC over a training trajectory.

>>> study = sweep(model, data, grid={"lr": [1e-4, 3e-4], "n_beta": [30, 100]},
...               output_dir="runs/sweep", num_chains=4, num_draws=200)
>>> study.wait(); table = study.result()        # xr.Dataset over (lr, n_beta)
>>> traj = llc_trajectory({0: m0, 100: m100}, data, output_dir="runs/traj", lr=1e-4, n_beta=30)

Modules: `grid` (cells and their names), `validation` (every cell checked up front),
`manifest` (study.json), `driver` (whether the process driving a study run is still there),
`executors` (local pool, any Executor, Dask), `cell_job` (what a worker runs), `stores` (a cell
store's state), `summary` (LLC and health of one cell), `result` (the table), `handle`
(`Study`), `api` (`sweep`, `llc_trajectory`). See docs/studies.md.
"""

from devinterp_ui.study.api import llc_trajectory, sweep
from devinterp_ui.study.executors import LocalExecutor
from devinterp_ui.study.grid import Cell
from devinterp_ui.study.handle import Study, StudyProgress
from devinterp_ui.study.manifest import StudyConflictError
from devinterp_ui.study.result import read_study

__all__ = [
    "Cell",
    "LocalExecutor",
    "Study",
    "StudyConflictError",
    "StudyProgress",
    "llc_trajectory",
    "read_study",
    "sweep",
]
