"""Cells of notebooks/sweep_and_trajectory.ipynb (assembled by make_notebooks.py).

`cells(markdown, code, setup)` takes make_notebooks.py's cell builders and its setup cell, so
every notebook starts the same way.
"""

from __future__ import annotations


def cells(markdown, code, setup):
    return [
        markdown("""
# Sweep the sampler's settings, pick the healthiest, then the LLC over training

1. A **sweep** of the demo language model over lr x n_beta x localization: every cell is an
   ordinary `sample()` run into its own store, each with its diagnostics (R-hat, ESS, MCSE) and
   health flags. The Studies view fills cell by cell while it runs.
2. Choose the **healthiest** cell: no warning or error flag, then the smallest Monte Carlo error
   relative to the estimate.
3. With that cell's settings, the **LLC over the demo's training trajectory**: one estimate per
   checkpoint, with error bars.

The same calls run on a Dask cluster: pass `executor=distributed.Client(...).get_executor()`
(docs/studies.md, also for Slurm).
"""),
        code(setup),
        code("""
import functools

import numpy as np

from devinterp_ui import llc_trajectory, sweep
from devinterp_ui.demo import load_demo
from devinterp_ui.study import LocalExecutor
from devinterp_ui.ui import notebook
from devinterp_ui.ui.studies_view import StudiesView

notebook.extension()  # instead of pn.extension(): the JS inline, so it renders offline

demo = load_demo("tiny_lm")
data = demo.datasets["train"]
n_beta = demo.sampler_settings["n_beta"]  # n / ln n for the 16384 training sequences

fixed = dict(
    num_chains=2 if SMALL else 4,
    num_draws=30 if SMALL else 200,
    batch_size=16 if SMALL else 32,
)
fixed["num_init_loss_batches"] = fixed["num_draws"]  # init loss over the batches the chains see
grid = {
    "lr": [1e-5, 3e-5] if SMALL else [1e-5, 3e-5, 1e-4],
    "n_beta": [round(n_beta / 3, 3), n_beta],
    "localization": [1000.0] if SMALL else [100.0, 1000.0],
}
# The default executor splits this machine's cores between worker processes; the reduced run
# keeps one cell at a time in this kernel.
executor = LocalExecutor(max_workers=1) if SMALL else None
grid
"""),
        markdown("""
## The sweep

`sweep()` checks every cell's settings before the first one starts, then returns a `Study`
handle at once. The view below reads the study's directory: colour is the LLC, the marker the
worst health flag (circle: fine, triangle: warning, x: error, square: no verdict yet); hover a
cell for its numbers.
"""),
        code("""
study = sweep(demo.model, data, grid=grid, output_dir=RUNS_DIR / "sweep", executor=executor,
              **fixed)
view = StudiesView(study=study)
view
"""),
        code("""
while not study.wait(timeout=1.0):
    view.refresh()
view.refresh()
print(study)
table = study.result()
assert (table["status"] == "completed").all(), table["status"].values
assert np.isfinite(table["llc_mean"]).all()
table[["llc_mean", "llc_std", "mcse", "rhat", "ess", "severity", "flags"]].to_dataframe()
"""),
        markdown("""
## The healthiest cell

Rank the cells by their worst flag, then by the MCSE relative to the LLC (a cell whose
estimate is precise for its size). A cell with a warning can still be the best of a sweep: the
flags say what to change (docs/tuning.md).
"""),
        code("""
rank = {"ok": 0, "info": 1, "warn": 2, "error": 3, "unknown": 4}
frame = table.to_dataframe().reset_index()
frame["rank"] = frame["severity"].map(rank)
frame["relative_mcse"] = (frame["mcse"] / frame["llc_mean"].abs()).fillna(np.inf)
best = frame.sort_values(["rank", "relative_mcse", "llc_std"]).iloc[0]
chosen = {k: float(best[k]) for k in ("lr", "n_beta", "localization")}
print(f"chosen: {chosen}: LLC {best['llc_mean']:.2f}, severity {best['severity']}, "
      f"flags {best['flags'] or 'none'}")
"""),
        markdown("""
## The LLC over training, with the chosen settings

One cell per checkpoint; each checkpoint is loaded in the worker from a factory, so nothing
large is sent around. The first checkpoints are far from a minimum (SGLD descends there and the
estimate can be negative): read the curve from where the training loss flattens.
"""),
        code("""
steps = demo.steps[-3:] if SMALL else demo.steps
trajectory = llc_trajectory(
    {step: functools.partial(demo.model_at, step) for step in steps},
    data,
    output_dir=RUNS_DIR / "trajectory",
    executor=executor,
    **fixed,
    **chosen,
)
trajectory_view = StudiesView(study=trajectory)
trajectory_view
"""),
        code("""
while not trajectory.wait(timeout=1.0):
    trajectory_view.refresh()
trajectory_view.refresh()
over_training = trajectory.result()
for step in over_training["step"].values:
    row = over_training.sel(step=step)
    print(f"step {int(step):5d}: LLC = {float(row['llc_mean']):.2f} ± {float(row['llc_std']):.2f} "
          f"({row['severity'].item()})")
assert over_training["step"].values.tolist() == steps
assert np.isfinite(over_training["llc_mean"]).all()
assert float(over_training["llc_mean"].sel(step=steps[-1])) > 0  # the trained model sits in a basin
"""),
        markdown("""
Every cell is an ordinary store: `study.open(cell)` gives its DataTree for `compute_llc`,
`compute_bif` or the dashboard's single-run view. Running these cells again reuses the finished
stores (nothing is sampled twice); change a fixed setting and the study asks for a new
`output_dir`.
"""),
        code("""
tree = trajectory.open(steps[-1])
print(tree.attrs["metadata"]["config"]["sampler"]["lr"], tree.sizes["chain"], "chains")
again = sweep(demo.model, data, grid=grid, output_dir=RUNS_DIR / "sweep", executor=executor,
              **fixed)
again.wait()
assert all(o.get("note") == "reused" for o in again.outcomes.values())
print(again)
"""),
    ]
