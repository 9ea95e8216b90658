"""Cost of the lr advisor on the demo LM against the run it advises (goal: under 10% of 4 x 200).

    python bench/lr_advisor.py [--chains 4] [--draws 200] [--batches 4] [--iters 50] [--rtol R]
                               [--threads 1] [--repeat 2] [--reference]
                               [--rebuild-graphs]

Both the advisor and the run are timed --repeat times, interleaved, and the fastest of each is
kept (the machine is shared: the minimum is the least disturbed figure).
--reference also runs Lanczos to rtol 1e-8 and prints the default's relative error of h_max.

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
    parser.add_argument("--iters", type=int, default=50, help="most Hessian-vector products")
    parser.add_argument("--rtol", type=float, default=None, help="default: suggest_lr's")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (both timings)")
    parser.add_argument(
        "--rebuild-graphs", action="store_true", help="keep_graphs=False (large-model mode)"
    )
    parser.add_argument("--repeat", type=int, default=2, help="timings of each; min kept")
    parser.add_argument("--reference", action="store_true", help="also h_max to rtol 1e-8")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    demo = load_demo("tiny_lm")
    settings = dict(demo.sampler_settings, num_chains=args.chains, num_draws=args.draws)
    data = demo.datasets["train"]
    print(f"torch threads {torch.get_num_threads()}; demo tiny_lm step {demo.step}")

    def advise():
        return suggest_lr(
            demo.model,
            data,
            n_beta=settings["n_beta"],
            localization=settings["localization"],
            lr=settings["lr"],
            batch_size=settings["batch_size"],
            num_batches=args.batches,
            max_iters=args.iters,
            keep_graphs=False if args.rebuild_graphs else None,
            **({} if args.rtol is None else {"rtol": args.rtol}),
        )

    advice_times, run_times = [], []
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        advice = advise()
        advice_times.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        sample(demo.model, data, {}, progress_bar=False, **settings)
        run_times.append(time.perf_counter() - t0)
    t_advice, t_run = min(advice_times), min(run_times)
    print(
        f"h_max {advice.h_max:.5g} ({advice.iterations} Hessian-vector products, "
        f"converged {advice.converged}); "
        f"lr_stable_max {advice.lr_stable_max:.3g}; lr_suggested (5% bias) "
        f"{advice.lr_suggested:.3g}; bias at lr={settings['lr']:.3g}: {advice.bias:.2%}"
    )
    print(f"advisor: {t_advice:.2f} s (min of {', '.join(f'{t:.2f}' for t in advice_times)})")
    if args.reference:
        exact = suggest_lr(
            demo.model,
            data,
            n_beta=settings["n_beta"],
            batch_size=settings["batch_size"],
            num_batches=args.batches,
            rtol=1e-8,
        )
        print(
            f"reference h_max (rtol 1e-8, {exact.iterations} products) {exact.h_max:.6g}; "
            f"relative error of the default {advice.h_max / exact.h_max - 1:+.2e}"
        )

    print(
        f"sample() {args.chains} x {args.draws}: {t_run:.2f} s "
        f"(min of {', '.join(f'{t:.2f}' for t in run_times)})"
    )
    print(f"advisor / run = {t_advice / t_run:.1%} (goal < 10%)")


if __name__ == "__main__":
    main()
