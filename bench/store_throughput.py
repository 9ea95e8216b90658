"""Store write throughput for GPT-2-small-sized per-token arrays (batch 32 x 1024 tokens).

Drives `StoreWriter` exactly as the runner does (lockstep: every chain's rows of a step, then a
flush when `flush_interval` has passed) with synthetic rows, as fast as it can, so the figures
are an upper bound on the data rate the store sustains, not the sampler's. Per chain step the
rows are: sampling_loss_micro (32 x 1023 float32, 131 kB), sampling_input_ids_micro (32 x 1024
int64, 262 kB), sampling_loss (131 kB), one `loss_{obs}` per observable (96 x 1023 float32,
393 kB) and 9 metrics; about 2.1 MB with 4 observables.

Two modes, interleaved A B A B: `async` (flush hands chunks to the writer thread, the default
in sample()) and `sync` (every flush waits until its chunks are on disk: the writer before the
background thread). Printed per mode: MB/s of rows staged (sum of row bytes / wall time until
the last byte is on disk), and the time the caller (the sampling thread) spent in write_row +
flush per chain step before the final flush (which waits for the writer once per run).

    python bench/store_throughput.py                       # 4 chains x 64 steps, 4 observables
    python bench/store_throughput.py --steps 16 --reps 1   # quick
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from devinterp_ui.sgld import METRIC_NAMES
from devinterp_ui.store.progress import RunProgress
from devinterp_ui.store.schema import Layout, build_schema
from devinterp_ui.store.writer import StoreWriter


def one_run(args, mode: str, rng: np.random.Generator) -> tuple[float, float, float]:
    """(MB staged, wall s until on disk, caller s) for one synthetic run."""
    obs = {f"o{i}": 32 * 3 for i in range(args.obs)}
    layout = Layout(
        num_chains=args.chains,
        total_steps=args.steps,
        num_draws=args.steps,
        batch_size=args.batch,
        batch_sampling=args.batch,
        num_positions=args.seq - 1,
        seq_len=args.seq,
        observable_rows=obs,
        save_metrics=True,
    )
    schema = build_schema(layout)
    loss = rng.standard_normal((args.batch, args.seq - 1)).astype(np.float32) + 3
    ids = rng.integers(0, 50257, (args.batch, args.seq), dtype=np.int64)
    obs_loss = rng.standard_normal((96, args.seq - 1)).astype(np.float32) + 3
    progress = RunProgress.fresh(args.chains, args.steps, args.steps)
    with tempfile.TemporaryDirectory() as tmp:
        writer = StoreWriter(Path(tmp) / "run.zarr", schema, {"progress": progress.to_json()})
        staged = 0
        caller = 0.0
        t0 = time.perf_counter()
        last_flush = t0
        for step in range(args.steps):
            c0 = time.perf_counter()
            for c in range(args.chains):
                # Fresh values each step, as real losses are: a little noise on the same arrays.
                writer.write_row("sampling_loss_micro", c, step, loss + step * 1e-3)
                writer.write_row("sampling_input_ids_micro", c, step, ids)
                writer.write_row("sampling_loss", c, step, loss)
                staged += 2 * loss.nbytes + ids.nbytes
                for key in obs:
                    writer.write_row(f"loss_{key}", c, step, obs_loss)
                    staged += obs_loss.nbytes
                for m in METRIC_NAMES:
                    writer.write_row(f"metrics_{m}", c, step, 1.0)
                progress.chains[c].steps_written = progress.chains[c].draws_written = step + 1
            now = time.perf_counter()
            if now - last_flush >= args.flush_interval:
                writer.flush(progress, wait=mode == "sync")
                last_flush = time.perf_counter()
            caller += time.perf_counter() - c0
            if args.step_time:
                time.sleep(args.step_time)
        # The end of a run: the last flush waits for everything (not counted as caller time:
        # it is paid once per run, not per step).
        writer.flush(progress, wait=True)
        writer.close()
        wall = time.perf_counter() - t0
    return staged / 1e6, wall, caller


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--chains", type=int, default=4)
    parser.add_argument("--steps", type=int, default=64)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--seq", type=int, default=1024)
    parser.add_argument("--obs", type=int, default=4)
    parser.add_argument("--flush-interval", type=float, default=0.5)
    parser.add_argument(
        "--step-time",
        type=float,
        default=0.0,
        help="seconds of simulated compute per lockstep round (sleep)",
    )
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    print(
        f"{args.chains} chains x {args.steps} steps, batch {args.batch} x {args.seq} tokens, "
        f"{args.obs} observables, flush_interval {args.flush_interval} s, {args.reps} reps"
    )
    print(format_results(measure(args), args.chains * args.steps))


def measure(args) -> dict[str, list[tuple[float, float, float]]]:
    rng = np.random.default_rng(0)
    out: dict[str, list] = {"async": [], "sync": []}
    for _ in range(args.reps):
        for mode in out:  # interleaved
            out[mode].append(one_run(args, mode, rng))
    return out


def format_results(results, chain_steps: int) -> str:
    lines = []
    for mode, runs in results.items():
        mbps = [mb / wall for mb, wall, _ in runs]
        per_step = [1e3 * caller / chain_steps for _, _, caller in runs]
        lines.append(
            f"  {mode:5s}: {statistics.median(mbps):7.1f} MB/s rows staged -> on disk "
            f"({min(mbps):.1f}..{max(mbps):.1f}); sampling-thread time "
            f"{statistics.median(per_step):.2f} ms per chain step ({min(per_step):.2f}.."
            f"{max(per_step):.2f}); {runs[0][0]:.0f} MB per run"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
