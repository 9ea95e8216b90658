"""chain_schedule="vectorized" vs "lockstep": speed (interleaved) and how close the results are.

    python bench/vectorized.py                     # CPU: demo LM and a wider TinyLM, 4 chains
    python bench/vectorized.py --device cuda       # on a GPU (bench/gpu_suite.py does this too)
    python bench/vectorized.py --equivalence-only  # only the results comparison

Speed: for each model, lockstep and vectorized sample() runs alternate --reps times (same
settings, save_metrics off, one observable); printed: median seconds and vectorized/lockstep.
Equivalence: both schedules on the demo LM, 4 chains x --eq-draws draws, save_metrics on; printed:
the largest differences between the two trees (per-token losses, metrics) and between their
per-chain LLC estimates n_beta * (mean sampling loss - mean init loss).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from overhead import demo_setup  # noqa: E402

from devinterp_ui import sample  # noqa: E402


def llc(tree) -> np.ndarray:
    n_beta = float(tree["n_beta"].values)
    loss = tree["sampling_loss_micro"].values.mean(axis=(1, 2, 3))
    return n_beta * (loss - tree["init_loss"].values.mean(axis=1))


def equivalence(args) -> None:
    model, data, obs, settings = demo_setup(4, args.eq_draws)
    obs = dict(list(obs.items())[:1])
    trees = {
        sched: sample(
            model,
            data,
            obs,
            progress_bar=False,
            save_metrics=True,
            device=args.device,
            chain_schedule=sched,
            **settings,
        )
        for sched in ("lockstep", "vectorized")
    }
    lock, vec = trees["lockstep"], trees["vectorized"]
    print(f"equivalence, demo LM, 4 chains x {args.eq_draws} draws, {args.device}:")
    for name in sorted(lock.data_vars):
        x, y = lock[name].values, vec[name].values
        if x.dtype.kind == "f":
            diff = np.abs(x.astype(np.float64) - y)
            rel = diff / np.maximum(np.abs(x), 1e-12)
            print(f"  {name:28s} max |diff| {np.nanmax(diff):.2e}  max rel {np.nanmax(rel):.2e}")
        else:
            print(f"  {name:28s} identical: {bool(np.array_equal(x, y))}")
    a, b = llc(lock), llc(vec)
    print(f"  LLC per chain lockstep   {np.round(a, 4)}")
    print(f"  LLC per chain vectorized {np.round(b, 4)}  max |diff| {np.abs(a - b).max():.2e}")


def speed(args) -> None:
    from devinterp_ui.demo import TinyLM, TinyLMConfig

    models = {"demo LM": None}
    for d in args.widths:
        models[f"TinyLM d_model {d}"] = TinyLMConfig(
            d_model=d, n_layers=2, n_heads=4, d_head=d // 4, d_mlp=4 * d
        )
    print(
        f"speed, {args.chains} chains x {args.draws} draws, 1 observable, {args.device}, "
        f"{args.reps} reps interleaved:"
    )
    for label, cfg in models.items():
        model, data, obs, settings = demo_setup(args.chains, args.draws, 4)
        obs = dict(list(obs.items())[:1])
        if cfg is not None:
            torch.manual_seed(0)
            model = TinyLM(cfg).eval()
            settings = {**settings, "lr": 1e-5}
        times: dict[str, list[float]] = {"lockstep": [], "vectorized": []}
        for _ in range(args.reps):
            for sched in times:
                t0 = time.perf_counter()
                sample(
                    model,
                    data,
                    obs,
                    progress_bar=False,
                    device=args.device,
                    chain_schedule=sched,
                    **settings,
                )
                if args.device.startswith("cuda"):
                    torch.cuda.synchronize()
                times[sched].append(time.perf_counter() - t0)
        lock, vec = (statistics.median(times[k]) for k in times)
        ratio = [v / lo for v, lo in zip(times["vectorized"], times["lockstep"], strict=True)]
        n = sum(p.numel() for p in model.parameters())
        print(
            f"  {label:20s} {n:>10,} params: lockstep {lock:7.2f} s, vectorized {vec:7.2f} s, "
            f"vectorized/lockstep {statistics.median(ratio):.2f} ({min(ratio):.2f}.."
            f"{max(ratio):.2f})",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--chains", type=int, default=4)
    parser.add_argument("--draws", type=int, default=20)
    parser.add_argument("--eq-draws", type=int, default=50)
    parser.add_argument("--reps", type=int, default=2)
    parser.add_argument("--widths", type=int, nargs="*", default=[256])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--equivalence-only", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    equivalence(args)
    if not args.equivalence_only:
        speed(args)


if __name__ == "__main__":
    main()
