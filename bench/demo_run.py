"""Health check of the demos' suggested sampler settings: one timed run, figures printed.

    .venv/bin/python bench/demo_run.py                   # tiny_lm, final checkpoint
    .venv/bin/python bench/demo_run.py --demo dln        # DLN, compared with its true lambda
    .venv/bin/python bench/demo_run.py --step 448 --set lr=5e-5 --set localization=300
    .venv/bin/python bench/demo_run.py --observables     # also time the per-language observables

Prints: wall time of ``sample()``, LLC per chain, their mean and std, the initial loss, and a
rise-and-plateau summary of the loss trace (mean of each tenth of the chain).

For token data the trace is also shown *paired*: each step's loss minus the checkpoint's loss on
the very same batch (``sampling_input_ids_micro``). The tiny LM's training mixture makes batch
losses vary by ~0.2 nats with the mix of languages in the batch, which hides the rise and the
plateau in the raw trace; the paired excess removes that noise. The health checks use it when
available. Exits non-zero when the run is not healthy: a non-finite value, an LLC <= 0, chains
that disagree by more than 25% of the mean, a trace that did not rise, or one still climbing at
the end (last fifth above the one before by more than 10% of the rise).
"""

from __future__ import annotations

import argparse
import ast
import os
import sys
import time

import numpy as np
import torch

from devinterp_ui import sample
from devinterp_ui.demo import load_demo, next_token_loss


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--demo", default="tiny_lm")
    parser.add_argument("--step", type=int, default=None)
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="override a setting"
    )
    parser.add_argument(
        "--observables", action="store_true", help="also evaluate every held-out language"
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads (default 1: on a shared 2-core machine two OpenMP threads "
        "spin against other processes and run several times slower)",
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    demo = load_demo(args.demo, args.step)
    settings = dict(demo.sampler_settings)
    for item in args.set:
        key, value = item.split("=", 1)
        settings[key] = ast.literal_eval(value)
    # Off by default: the LLC needs none, and four observables at the default 3 x 32 rows per
    # draw cost ~4x the SGLD step itself.
    observables = {}
    if args.observables:
        observables = {k: v for k, v in demo.datasets.items() if k != "train"}
    shown = {k: v for k, v in settings.items() if k != "loss_fn"}
    print(f"demo {demo.name} step {demo.step}; settings {shown}; observables {list(observables)}")
    print(f"torch threads {torch.get_num_threads()}; load average {os.getloadavg()[0]:.1f}")

    started, cpu_started = time.perf_counter(), time.process_time()
    tree = sample(demo.model, demo.datasets["train"], observables, progress_bar=False, **settings)
    wall = time.perf_counter() - started
    print(
        f"CPU time of sample() (this process, all threads): {time.process_time() - cpu_started:.1f} s"
    )
    baseline = None
    if demo.loss_fn is None:
        baseline = checkpoint_loss_on_sampled_batches(demo.model, tree)
    return report(tree, settings, wall, demo.true_lambda, baseline)


@torch.no_grad()
def checkpoint_loss_on_sampled_batches(model: torch.nn.Module, tree) -> np.ndarray:
    """(chain, step) mean next-token loss of the checkpoint on each SGLD step's batch."""
    ids = torch.as_tensor(tree.to_dataset()["sampling_input_ids_micro"].values)
    out = np.empty(ids.shape[:2])
    for chain in range(ids.shape[0]):
        if chain and torch.equal(ids[chain], ids[0]):  # matched batch order: computed already
            out[chain] = out[0]
            continue
        for step in range(ids.shape[1]):
            out[chain, step] = next_token_loss(model, ids[chain, step]).mean().item()
    return out


def report(
    tree, settings: dict, wall: float, true_lambda: float | None, baseline: np.ndarray | None
) -> int:
    root = tree.to_dataset()
    n_beta = float(root["n_beta"])
    burnin = settings.get("num_burnin_steps", 0)
    # (chain, step): mean loss of each SGLD step over its batch and positions
    trace = root["sampling_loss_micro"].mean(("batch_sampling", "token_pos")).values
    init = float(root["init_loss"].mean())
    llc_per_chain = n_beta * (trace[:, burnin:].mean(axis=1) - init)
    mean, std = llc_per_chain.mean(), llc_per_chain.std()
    raw_tenths = _tenths(trace)
    # the rise is judged on the paired excess when there is one (see the module docstring)
    tenths = _tenths(trace - baseline) if baseline is not None else raw_tenths - init
    rise = tenths[0]
    late_drift = tenths[8:].mean() - tenths[6:8].mean()
    total_rise = tenths[8:].mean()

    print(f"wall time of sample(): {wall:.1f} s")
    print(f"init loss: {init:.4f}")
    print("LLC per chain: " + ", ".join(f"{v:.2f}" for v in llc_per_chain))
    print(f"LLC mean {mean:.2f}  std {std:.2f}  (n_beta {n_beta:.1f})")
    if true_lambda is not None:
        print(
            f"true lambda {true_lambda:.3f}; relative error {(mean - true_lambda) / true_lambda:+.1%}"
        )
    print("loss trace, mean of each tenth of the chain (averaged over chains):")
    print("  " + " ".join(f"{v:.4f}" for v in raw_tenths))
    if baseline is not None:
        paired_llc = n_beta * (trace - baseline)[:, burnin:].mean(axis=1)
        print("paired excess (loss minus the checkpoint's loss on the same batch), by tenth:")
        print("  " + " ".join(f"{v:+.4f}" for v in tenths))
        print("paired LLC per chain: " + ", ".join(f"{v:.2f}" for v in paired_llc))
    print(
        f"rise in first tenth {rise:+.4f}; rise at the end {total_rise:+.4f}; "
        f"last fifth minus the one before {late_drift:+.4f} "
        f"({late_drift / max(total_rise, 1e-12):+.1%} of the rise)"
    )

    problems = []
    if not np.isfinite(trace).all() or not np.isfinite(llc_per_chain).all():
        problems.append("non-finite loss or LLC")
    if mean <= 0:
        problems.append("LLC not positive")
    if std > 0.25 * abs(mean):
        problems.append("chains disagree (std > 25% of mean)")
    if total_rise <= 0:
        problems.append("loss did not rise")
    elif late_drift > 0.1 * total_rise:
        problems.append("loss still climbing at the end (> 10% of the rise in the last fifth)")
    print("HEALTHY" if not problems else "UNHEALTHY: " + "; ".join(problems))
    return 1 if problems else 0


def _tenths(trace: np.ndarray) -> np.ndarray:
    """(chain, step) -> (10,): mean over chains of each tenth of the steps."""
    return np.array([part.mean() for part in np.array_split(trace, 10, axis=1)])


if __name__ == "__main__":
    sys.exit(main())
