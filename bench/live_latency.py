"""Latency from a chain step's completion to `StoreReader.read_new()` returning it elsewhere.

A writer process runs `sample()` on a small token LM and records, per (chain, step), the time
its step finished (progress_callback). This process follows the store with a `StoreReader`,
polling at --poll-hz, and records when each (chain, step) row came back. Both clocks are
`time.time()` on one host. Prints median / 95th percentile / max latency in seconds.

    python bench/live_latency.py                      # flush_interval 0.5 s (default), 4 Hz
    python bench/live_latency.py --flush-interval 0.1 --poll-hz 10
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def writer(args: argparse.Namespace) -> None:
    """Run the sampler into args.store; dump {"chain,step": finish time} to args.times."""
    from toy_run import sample_toy_lm

    finished: dict[str, float] = {}

    def record(summary) -> None:
        finished[f"{summary.chain},{summary.step}"] = time.time()

    sample_toy_lm(
        store=args.store,
        chains=args.chains,
        steps=args.steps,
        threads=args.threads,
        flush_interval=args.flush_interval,
        progress_callback=record,
    )
    Path(args.times).write_text(json.dumps(finished))


def follow(store: Path, writer_proc: subprocess.Popen, poll_hz: float) -> dict[str, float]:
    """Poll `store` until the writer is done; {"chain,step": time read_new returned it}."""
    from devinterp_ui.live import StoreReader

    while not (store / "zarr.json").is_file():
        if writer_proc.poll() is not None:
            raise RuntimeError("the writer exited before creating the store")
        time.sleep(0.01)
    reader = StoreReader(store)
    seen: dict[str, float] = {}
    period = 1.0 / poll_hz
    next_poll = time.monotonic()
    while True:
        rows = reader.read_new()
        now = time.time()
        for c, s in zip(rows.steps["chain"].values, rows.steps["step"].values, strict=True):
            seen[f"{c},{s}"] = now
        if rows.status.finished:
            return seen
        next_poll += period
        time.sleep(max(0.0, next_poll - time.monotonic()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--role", choices=["bench", "writer"], default="bench")
    parser.add_argument("--store")
    parser.add_argument("--times")
    parser.add_argument("--chains", type=int, default=4)
    parser.add_argument("--steps", type=int, default=1500, help="draws (= steps) per chain")
    parser.add_argument("--flush-interval", type=float, default=0.5)
    parser.add_argument("--poll-hz", type=float, default=4.0)
    parser.add_argument("--threads", type=int, default=1, help="torch threads of the writer")
    args = parser.parse_args()
    if args.role == "writer":
        return writer(args)

    with tempfile.TemporaryDirectory() as tmp:
        store, times = Path(tmp) / "run.zarr", Path(tmp) / "times.json"
        cmd = [sys.executable, __file__, "--role", "writer", "--store", str(store)]
        cmd += ["--times", str(times), "--chains", str(args.chains), "--steps", str(args.steps)]
        cmd += ["--flush-interval", str(args.flush_interval), "--threads", str(args.threads)]
        proc = subprocess.Popen(cmd)
        seen = follow(store, proc, args.poll_hz)
        if proc.wait() != 0:
            raise SystemExit("writer failed")
        finished = json.loads(times.read_text())
    missing = set(finished) - set(seen)
    latency = np.array([seen[k] - finished[k] for k in finished if k in seen])
    print(
        f"flush_interval={args.flush_interval}s poll={args.poll_hz}Hz chains={args.chains} "
        f"rows={latency.size} missing={len(missing)}\n"
        f"latency s: median {np.median(latency):.3f}  p95 {np.percentile(latency, 95):.3f}  "
        f"max {latency.max():.3f}  min {latency.min():.3f}"
    )


if __name__ == "__main__":
    main()
