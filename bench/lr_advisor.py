"""Cost of the lr advisor on the demo LM against the run it advises (goal: under 10% of 4 x 200).

    python bench/lr_advisor.py [--chains 4] [--draws 200] [--batches 4] [--iters 50] [--threads 1]

Prints h_max, the advice, the advisor's wall time, the wall time of a sample() run at the
demo's suggested settings, and the ratio.
"""

from __future__ import annotations

import argparse
import time

import torch

from devinterp_ui import sample
from devinterp_ui.analysis import suggest_lr
from devinterp_ui.demo import load_demo


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chains", type=int, default=4)
    parser.add_argument("--draws", type=int, default=200)
    parser.add_argument("--batches", type=int, default=4, help="fixed batches of the Hessian")
    parser.add_argument("--iters", type=int, default=50, help="most power-iteration steps")
    parser.add_argument("--rtol", type=float, default=1e-2)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (both timings)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    demo = load_demo("tiny_lm")
    settings = dict(demo.sampler_settings, num_chains=args.chains, num_draws=args.draws)
    data = demo.datasets["train"]
    print(f"torch threads {torch.get_num_threads()}; demo tiny_lm step {demo.step}")

    t0 = time.perf_counter()
    advice = suggest_lr(
        demo.model,
        data,
        n_beta=settings["n_beta"],
        localization=settings["localization"],
        lr=settings["lr"],
        batch_size=settings["batch_size"],
        num_batches=args.batches,
        max_iters=args.iters,
        rtol=args.rtol,
    )
    t_advice = time.perf_counter() - t0
    print(
        f"h_max {advice.h_max:.4g} ({advice.iterations} iterations, converged {advice.converged}); "
        f"lr_stable_max {advice.lr_stable_max:.3g}; lr_suggested (5% bias) "
        f"{advice.lr_suggested:.3g}; bias at lr={settings['lr']:.3g}: {advice.bias:.2%}"
    )
    print(f"advisor: {t_advice:.2f} s")

    t0 = time.perf_counter()
    sample(demo.model, data, {}, progress_bar=False, **settings)
    t_run = time.perf_counter() - t0
    print(f"sample() {args.chains} x {args.draws}: {t_run:.2f} s")
    print(f"advisor / run = {t_advice / t_run:.1%} (goal < 10%)")


if __name__ == "__main__":
    main()
