"""Writes the example notebooks (without outputs) from the cell sources below.

The .ipynb files are generated, so edit the cells here and rerun:

    .venv/bin/python notebooks/make_notebooks.py

tests/notebooks/test_notebooks.py checks that the committed notebooks match this script and
carry no outputs, then executes each one at the reduced size (DEVINTERP_UI_NOTEBOOK_SIZE=small).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parent

# Every notebook starts with this cell: the size switch and where the stores go.
SETUP = '''\
import os
import tempfile
from pathlib import Path

# "full" (the default) for a real analysis; the test suite sets "small" for a quick run.
SIZE = os.environ.get("DEVINTERP_UI_NOTEBOOK_SIZE", "full")
assert SIZE in ("small", "full"), f"DEVINTERP_UI_NOTEBOOK_SIZE must be small or full, not {SIZE!r}"
SMALL = SIZE == "small"

# Stores go to a fresh temporary folder (inside $DEVINTERP_UI_RUNS_DIR when set), never the repo.
RUNS_DIR = Path(tempfile.mkdtemp(prefix="notebook-", dir=os.environ.get("DEVINTERP_UI_RUNS_DIR")))


def new_store(name: str) -> Path:
    """A path for a new Zarr store under RUNS_DIR (sample() reuses a completed store at a path)."""
    return Path(tempfile.mkdtemp(prefix=f"{name}-", dir=RUNS_DIR)) / "run.zarr"


print(f"size: {SIZE}; stores in {RUNS_DIR}")'''


def markdown(text: str):
    return new_markdown_cell(text.strip("\n"))


def code(text: str):
    return new_code_cell(text.strip("\n"))


QUICKSTART = [
    markdown("""
# Quickstart: tune SGLD on your model, then analyse the run in the same session

1. Point the dashboard at **your** model and data (the demo language model stands in below).
2. Tune the sampler live in the widget: loss and LLC traces per chain, the SGLD update terms,
   observable losses.
3. The finished run comes back to this Python session as a DataTree: compute the local learning
   coefficient (LLC), Bayesian influence functions (BIF) and susceptibilities from it.

Runs headless too: the cells start the run from code and await it.
"""),
    code(SETUP),
    code("""
import holoviews as hv
import numpy as np

from devinterp_ui import sample
from devinterp_ui.analysis import (
    compute_bif,
    compute_susceptibilities,
    create_param_masks,
    default_nbeta,
    unflatten_susceptibilities,
)
from devinterp_ui.demo import load_demo
from devinterp_ui.ui import Dashboard, notebook

# Panel, Bokeh and HoloViews with their JS inline: works offline, and the saved notebook shows
# its plots when reopened offline. Use it instead of pn.extension() / hv.extension("bokeh").
notebook.extension()
"""),
    markdown("""
## Your model and data

Replace these two lines with your model and data. The model is any `torch.nn.Module`; with the
default loss, `model(input_ids)` returns next-token logits `(B, T, vocab)` (or an object with
`.logits`). The data: an `(N, T)` LongTensor of token ids, a Hugging Face `Dataset` in torch
format, or `(X, Y)` tensors with your own `loss_fn(model, batch)` (see `docs/sampling.md`).
"""),
    code("""
demo = load_demo("tiny_lm")  # the stand-in: a 106k-parameter transformer and its training data
model, data = demo.model, demo.datasets["train"]
"""),
    markdown("""
**Observables** are data sets whose per-token losses are recorded at every draw; BIF and
susceptibilities are computed from them. `(dataset, 1)` evaluates one batch of `batch_size`
fixed rows per draw. The training data itself (`"train"`) is the *sampling task* that
susceptibilities are measured against; two held-out languages of the demo are the probes.
"""),
    code("""
observables = {
    "train": (data, 1),
    # Probes: two held-out languages of the demo; put data sets of your own here.
    "repeat": (demo.datasets["repeat"], 1),  # sequences that repeat a short pattern
    "zipf": (demo.datasets["zipf"], 1),  # tokens drawn from a Zipf distribution
}

batch_size = 32
num_draws = 30 if SMALL else 200
settings = dict(
    lr=3e-5,  # lr * n_beta * (largest Hessian eigenvalue, ~4 here) ~ 0.2: small step-size bias
    # n = the training sequences the checkpoint was fit to (see default_nbeta's docstring).
    n_beta=round(default_nbeta(len(data)), 3),
    localization=1000.0,  # keeps chains near the checkpoint: the estimate is local
    batch_size=batch_size,
    num_chains=2 if SMALL else 4,
    num_draws=num_draws,
    # The initial loss over the same batches the chains step through, so the spread of the
    # loss from batch to batch cancels in E[L] - L(w0).
    num_init_loss_batches=num_draws,
)
"""),
    markdown("""
## The dashboard, inline

The same component `panel serve app/dashboard.py` serves. Change settings in the form (each
field shows the error `sample()` would raise), press **Start**, watch the traces, press **Stop**
when you have seen enough. Runs write Zarr stores under `RUNS_DIR`.
"""),
    code("""
dashboard = Dashboard(model, data, observables, runs_dir=RUNS_DIR, **settings)
dashboard
"""),
    markdown("""
The dashboard also goes inside ipywidgets layouts: `pn.ipywidget(dashboard)` is a
`jupyter_bokeh` widget (`known_lambda.ipynb` shows one in a `VBox`). A dashboard is shown in one
place at a time (its live plots are Bokeh figures, which belong to one view): showing it again
while that view is live raises an error that names the fixes; for a second view, make a second
`Dashboard`.
"""),
    markdown("""
## Run it

From code here so the notebook also runs headless; pressing **Start** in the widget does the
same. `await dashboard.run()` starts a run (unless one is going) and waits for its end without
blocking the kernel: the plots fill while it runs. `dashboard.start()` alone returns at once and
leaves the kernel free; `dashboard.stop()` ends a run early and keeps the draws written so far.
"""),
    code("""
tree = await dashboard.run()  # the run's DataTree: sampling losses, observable losses, metrics
print(dashboard.job)
assert dashboard.current.status == "completed", dashboard.status_text
assert tree is dashboard.result
"""),
    markdown("## Local learning coefficient"),
    code("""
llc = dashboard.llc()
llc_mean, llc_std = float(llc["llc_mean"]), float(llc["llc_std"])
print(f"LLC = {llc_mean:.2f} ± {llc_std:.2f} over {tree.sizes['chain']} chains")
assert np.isfinite(llc_mean) and llc_mean > 0, llc_mean

running = hv.Overlay(
    [
        hv.Curve(
            (llc["step"].values, llc["llc_running"].sel(chain=c).values),
            "SGLD step",
            "running LLC",
            label=f"chain {c}",
        )
        for c in llc["chain"].values
    ]
)
running.opts(hv.opts.Curve(width=600, height=300, tools=["hover"]), hv.opts.Overlay(legend_position="right"))
"""),
    markdown("""
The settings typed in the widget, as a dict to paste into a headless `sample()` call (only the
values that differ from `sample()`'s defaults):
"""),
    code("""
dashboard.settings
"""),
    markdown("""
## Bayesian influence functions, per sequence

The correlation across posterior draws between the losses of two sequences: positive when
moving the weights in ways that help one sequence also helps the other.
"""),
    code("""
bif = compute_bif(tree, correlation_method="sequence", loss_keys=["repeat", "zipf"])
influence = bif["influences"]  # (batch_1, batch_2): one row/column per sequence
n = influence.sizes["batch_1"]
assert influence.shape == (2 * batch_size, 2 * batch_size)
assert np.allclose(np.diag(influence.values), 1.0, atol=1e-4)  # each sequence with itself

rows = np.arange(n)
heatmap = hv.Image(
    (rows, rows, influence.values), ["sequence (batch_2)", "sequence (batch_1)"], "correlation"
)
divider = batch_size - 0.5  # repeat rows first, then zipf
heatmap.opts(
    cmap="RdBu_r", clim=(-1, 1), colorbar=True, width=520, height=460, invert_yaxis=True,
    tools=["hover"], title="BIF per sequence: repeat (first 32) | zipf (last 32)",
) * hv.VLine(divider).opts(color="black") * hv.HLine(divider).opts(color="black")
"""),
    markdown("""
## Susceptibilities for two weight restrictions

One more run per restriction, with the same settings (`dashboard.settings`) and observables,
moving only layer 0's or layer 1's attention weights; the dashboard's run is the unrestricted
(`"full"`) one. The susceptibility of a probe token says how its loss responds when the
restricted weights are pushed to lower the training loss.
"""),
    code("""
restrictions = ["l0 attn", "l1 attn"]
runs = {"full": tree}
for name in restrictions:
    runs[name] = sample(
        model,
        data,
        observables,
        param_masks=create_param_masks(model, name),
        output_path=new_store(name.replace(" ", "_")),
        progress_bar=False,
        **dashboard.settings,
    )
sus = compute_susceptibilities(runs, sampling_task="train")
chi = unflatten_susceptibilities(sus)  # (restriction, observable, batch, position)
# devinterp 2.0.1's layout: one column per restriction, none for the full run itself.
assert list(chi["restriction"].values) == restrictions
assert np.isfinite(chi.values).all()
chi.mean(["batch", "position"]).to_pandas()
"""),
    code("""
per_token = chi.sel(restriction=restrictions).stack(token=["batch", "position"])
scatter = hv.Overlay(
    [
        hv.Scatter(
            (per_token.sel(restriction="l0 attn", observable=o).values,
             per_token.sel(restriction="l1 attn", observable=o).values),
            "χ (l0 attn)",
            "χ (l1 attn)",
            label=o,
        ).opts(size=3, alpha=0.5)
        for o in chi["observable"].values
    ]
).opts(width=460, height=400, title="per-token susceptibility", legend_position="top_left")

mean_chi = chi.mean(["batch", "position"]).to_dataframe().reset_index()
bars = hv.Bars(mean_chi, ["restriction", "observable"], "susceptibility").opts(
    width=460, height=400, title="mean susceptibility per probe", tools=["hover"], xrotation=0
)
scatter + bars
"""),
]


LLC_OVER_TRAINING = [
    markdown("""
# The LLC over training

The demo language model was trained for 3000 steps with 8 log-spaced checkpoints. Here: the LLC
at every checkpoint with one sampler setting, next to the training loss. The LLC usually rises as
the model learns structure; its drops and bumps mark changes in what the model computes.
"""),
    code(SETUP),
    code("""
import holoviews as hv
import numpy as np
import pandas as pd

from devinterp_ui import sample
from devinterp_ui.analysis import compute_llc
from devinterp_ui.demo import load_demo
from devinterp_ui.ui import notebook

notebook.extension()  # Bokeh's JS inline: the plots render offline and in the saved notebook

demo = load_demo("tiny_lm")
# One setting for every checkpoint (the demo's suggestion, see devinterp_ui/demo/sampler_settings.py).
settings = {**demo.sampler_settings}
if SMALL:
    settings.update(num_chains=2, num_draws=30, num_init_loss_batches=30)
settings
"""),
    code("""
rows = []
for step in demo.steps:
    tree = sample(
        demo.model_at(step),
        demo.datasets["train"],
        {},
        output_path=new_store(f"step{step}"),
        progress_bar=False,
        **settings,
    )
    llc = compute_llc(tree)
    rows.append(
        {
            "step": step,
            "llc_mean": float(llc["llc_mean"]),
            "llc_std": float(llc["llc_std"]),
            "init_loss": float(llc["init_loss"]),
        }
    )
    print(f"step {step:5d}: LLC = {rows[-1]['llc_mean']:.2f} ± {rows[-1]['llc_std']:.2f}")
table = pd.DataFrame(rows)

assert list(table["step"]) == demo.steps  # one point per checkpoint
assert np.isfinite(table["llc_mean"]).all()
assert table["llc_mean"].iloc[-1] > 0  # the trained model sits in a basin
table
"""),
    markdown("""
The LLC is defined at a local minimum. The first checkpoints are far from one: there SGLD mostly
descends the loss, the sampled loss ends *below* the checkpoint's and the estimate comes out
negative. Read those points as "not at a minimum yet", not
as a complexity. From the point where the loss curve flattens, the estimates are meaningful.

Checkpoints are log-spaced, so both panels use a log x axis (at step + 1, to show step 0).
The x axes are linked: zoom one and the other follows.
"""),
    code("""
x = ("step1", "training step + 1")
table["step1"] = table["step"] + 1
llc_plot = (
    hv.Curve(table, x, ("llc_mean", "LLC")).opts(color="black")
    * hv.ErrorBars(table, x, [("llc_mean", "LLC"), "llc_std"])
    * hv.Scatter(table, x, ("llc_mean", "LLC")).opts(size=7, tools=["hover"])
).opts(title="LLC at each checkpoint", logx=True, width=480, height=360)

curve = demo.manifest["loss_curve"]["train_loss"]
loss = pd.DataFrame({"step1": np.arange(len(curve)) + 1, "loss": curve})
checkpoints = pd.DataFrame(
    {
        "step1": [c["step"] + 1 for c in demo.manifest["checkpoints"]],
        "loss": [c["heldout_loss"]["mean"] for c in demo.manifest["checkpoints"]],
    }
)
y = ("loss", "loss (nats/token)")
loss_plot = (
    hv.Curve(loss, x, y, label="training batch").opts(alpha=0.6)
    * hv.Scatter(checkpoints, x, y, label="held-out, at checkpoints").opts(size=7, color="black")
).opts(title="training loss", logx=True, width=480, height=360, legend_position="top_right")
llc_plot + loss_plot
"""),
]


KNOWN_LAMBDA = [
    markdown("""
# Checking the estimator against a known learning coefficient

A deep linear network at a (rank-0, noiseless) teacher, whose learning coefficient is known in
closed form (Aoyagi 2024): the demo `dln`. First the estimate at a sensible step size, then what
a step size that is too large does to it.
"""),
    code(SETUP),
    code("""
import warnings

import holoviews as hv
import ipywidgets as widgets
import numpy as np
import pandas as pd
import panel as pn

from devinterp_ui import sample
from devinterp_ui.analysis import compute_llc
from devinterp_ui.ui import Dashboard, notebook

notebook.extension()  # instead of pn.extension() and hv.extension("bokeh"): offline, inline JS

# Relative error of the estimate we accept; the small run has fewer draws, so more noise.
TOLERANCE = 0.15 if SMALL else 0.10
"""),
    markdown("""
## The estimate, live

`Dashboard.from_demo("dln")` loads the problem and its suggested settings and draws the true
λ on the LLC plot. Longer burn-in and more draws than the demo's defaults: the chains need ~100
steps to forget their start. Here the dashboard sits inside an ipywidgets layout
(`pn.ipywidget` makes it a `jupyter_bokeh` widget); displaying `dashboard` alone shows it inline.
"""),
    code("""
dashboard = Dashboard.from_demo(
    "dln",
    runs_dir=RUNS_DIR,
    num_chains=4 if SMALL else 8,
    num_draws=400 if SMALL else 1000,
    num_burnin_steps=200,
)
true_lambda = dashboard.true_lambda
note = widgets.HTML(f"<b>Deep linear network, true λ = {true_lambda:g}</b>")
widgets.VBox([note, pn.ipywidget(dashboard)])
"""),
    code("""
await dashboard.run()  # starts the run (unless Start was pressed) and awaits its end
llc = dashboard.llc()
estimate, spread = float(llc["llc_mean"]), float(llc["llc_std"])
error = abs(estimate - true_lambda) / true_lambda
print(f"LLC = {estimate:.2f} ± {spread:.2f} (std over chains); true λ = {true_lambda:g}; "
      f"relative error {error:.1%}")
assert error < TOLERANCE, (estimate, true_lambda)
"""),
    markdown("""
## When the step size is too large

SGLD discretises a diffusion; the error grows with `lr · n_beta · h` (`h` the loss curvature,
here 1). The suggested `lr` makes that 0.05. Rerunning headless with the dashboard's settings
and larger step sizes, the estimate climbs away from the truth: near `lr · n_beta · h` ~ 1 it
overestimates λ about twofold. Check an estimate by halving `lr`: it should barely move.
"""),
    code("""
base = dashboard.settings  # what the form holds: paste-ready sample() arguments
demo = dashboard.demo
multipliers = [1, 3, 10, 30] if SMALL else [0.5, 1, 2, 5, 10, 20, 50]
sweep = []
for m in multipliers:
    run = {**base, "loss_fn": demo.loss_fn, "lr": base["lr"] * m}  # loss_fn: not a form field
    if SMALL:
        run.update(num_chains=2, num_draws=200)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # diverging chains overflow
        tree = sample(
            demo.model,
            demo.datasets["train"],
            {},
            output_path=new_store(f"lr_x{m}"),
            progress_bar=False,
            **run,
        )
        llc_m = compute_llc(tree)
    sweep.append(
        {
            "lr": run["lr"],
            "lr·n_beta·h": run["lr"] * run["n_beta"],
            "llc_mean": float(llc_m["llc_mean"]),
            "llc_std": float(llc_m["llc_std"]),
        }
    )
sweep = pd.DataFrame(sweep)
sweep["relative error"] = (sweep["llc_mean"] - true_lambda) / true_lambda
sweep
"""),
    code("""
# Too large a step: the estimate is far off (or not even finite).
worst = sweep.iloc[-1]
assert not np.isfinite(worst["llc_mean"]) or abs(worst["relative error"]) > 2 * TOLERANCE, worst

finite = sweep[np.isfinite(sweep["llc_mean"])]
band = hv.HSpan(true_lambda * (1 - TOLERANCE), true_lambda * (1 + TOLERANCE)).opts(
    color="green", alpha=0.15
)
(
    band
    * hv.HLine(true_lambda).opts(color="green", line_dash="dashed")
    * hv.Curve(finite, "lr·n_beta·h", ("llc_mean", "LLC estimate")).opts(color="black")
    * hv.ErrorBars(finite, "lr·n_beta·h", [("llc_mean", "LLC estimate"), "llc_std"])
    * hv.Scatter(finite, "lr·n_beta·h", ("llc_mean", "LLC estimate")).opts(size=7, tools=["hover"])
).opts(
    logx=True, width=600, height=380,
    title=f"LLC estimate vs step size (true λ = {true_lambda:g}, band ±{TOLERANCE:.0%})",
)
"""),
]


def _cells_from(file_name: str):
    """Cells kept in a module of their own beside this script (loaded by path, as this is)."""
    spec = importlib.util.spec_from_file_location(file_name.removesuffix(".py"), HERE / file_name)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.cells(markdown, code, SETUP)


NOTEBOOKS = {
    "quickstart.ipynb": QUICKSTART,
    "llc_over_training.ipynb": LLC_OVER_TRAINING,
    "known_lambda.ipynb": KNOWN_LAMBDA,
    "sweep_and_trajectory.ipynb": _cells_from("sweep_and_trajectory_cells.py"),
}


def build(cells) -> nbformat.NotebookNode:
    nb = new_notebook(cells=cells)
    nb.metadata = {
        "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
        "language_info": {"name": "python"},
    }
    # Stable ids keep regenerated files byte-identical.
    for i, cell in enumerate(nb.cells):
        cell["id"] = f"cell-{i:02d}"
    return nb


def render(cells) -> str:
    return nbformat.writes(build(cells)) + "\n"


def main(check: bool = False) -> int:
    stale = []
    for name, cells in NOTEBOOKS.items():
        path = HERE / name
        text = render(cells)
        if check:
            if not path.exists() or path.read_text() != text:
                stale.append(name)
        else:
            path.write_text(text)
    if stale:
        print(f"out of date: {', '.join(stale)}; run python notebooks/make_notebooks.py")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(check="--check" in sys.argv))
