"""Cost of one diagnose() + health() recompute against the length of the run (reader rows).

    python bench/diagnose_cost.py [--chains 4] [--steps 1000 10000 100000]

Prints seconds per recompute for each length: what a live Health panel pays every time it
refreshes (it refreshes at most every `min_interval` = 2 s while rows arrive).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import xarray as xr

from devinterp_ui.analysis import diagnose, health


def rows(chains: int, steps: int) -> xr.Dataset:
    rng = np.random.default_rng(0)
    loss = 2.3 + 0.05 * rng.standard_normal((chains, steps))
    chain, step = np.meshgrid(np.arange(chains), np.arange(steps), indexing="ij")
    grad = np.ones_like(loss)
    ds = xr.Dataset(
        {
            "loss": ("row", loss.ravel()),
            "metrics_scaled_grad": ("row", grad.ravel()),
            "metrics_localization": ("row", 3 * grad.ravel()),
            "metrics_distance": ("row", grad.ravel()),
        },
        coords={"chain": ("row", chain.ravel()), "step": ("row", step.ravel())},
    )
    ds.attrs.update(n_beta=100.0, init_loss=2.0)
    return ds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chains", type=int, default=4)
    parser.add_argument("--steps", type=int, nargs="+", default=[1_000, 10_000, 100_000])
    args = parser.parse_args()
    for n in args.steps:
        data = rows(args.chains, n)
        t0 = time.perf_counter()
        d = diagnose(data)
        t1 = time.perf_counter()
        health(d)
        t2 = time.perf_counter()
        print(f"{args.chains} x {n:>7} steps: diagnose {t1 - t0:.3f} s, health {t2 - t1:.3f} s")


if __name__ == "__main__":
    main()
