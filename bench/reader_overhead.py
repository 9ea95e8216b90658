"""Sampler slowdown while a `StoreReader` in another process polls the store, and poll cost.

One long `sample()` run (a small token LM, in a subprocess) and one reader process that
alternates --window seconds of polling `read_new()` at --poll-hz with --window seconds of
silence. The sampler's throughput (chain steps per second, from its step timestamps) in each
polling window is compared with the mean of the silent windows either side of it, so that slow
drift in the machine's load cancels out. The reader also records each poll's wall and CPU time
and its new rows, to show that a poll's cost follows the new rows, not the run's length.

    python bench/reader_overhead.py                      # 4 Hz, flush_interval 0.5 s, ~90 s
    python bench/reader_overhead.py --steps 6000 --window 4 --metrics none
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


def sampler(args: argparse.Namespace) -> None:
    """Run the sampler into args.store; write its step completion times to args.out."""
    from toy_run import sample_toy_lm

    times: list[float] = []
    sample_toy_lm(
        store=args.store,
        chains=args.chains,
        steps=args.steps,
        threads=args.threads,
        flush_interval=args.flush_interval,
        progress_callback=lambda s: times.append(time.time()),
        save_metrics=True,
    )
    Path(args.out).write_text(json.dumps(times))


def poller(args: argparse.Namespace) -> None:
    """Alternate silent and polling windows until the run finishes; write what happened."""
    from devinterp_ui.live import StoreReader

    store = Path(args.store)
    while not (store / "zarr.json").is_file():
        time.sleep(0.01)
    reader = StoreReader(store, metrics=args.metrics == "all")
    polls, windows = [], []  # polls: (wall s, cpu s, new step rows, rows so far)
    total, period = 0, 1.0 / args.poll_hz
    finished = False
    while not finished:
        time.sleep(args.window)  # silent window
        start = time.time()
        next_poll = time.monotonic()
        while time.time() - start < args.window:
            t0, c0 = time.perf_counter(), time.process_time()
            rows = reader.read_new()
            took, cpu = time.perf_counter() - t0, time.process_time() - c0
            total += rows.steps.sizes["row"]
            polls.append((took, cpu, rows.steps.sizes["row"], total))
            if rows.status.finished:
                finished = True
                break
            next_poll += period
            time.sleep(max(0.0, next_poll - time.monotonic()))
        windows.append((start, time.time()))
    Path(args.out).write_text(json.dumps({"polls": polls, "windows": windows}))


def rate(times: np.ndarray, a: float, b: float) -> float:
    return float(((times >= a) & (times < b)).sum() / (b - a))


def report(times: np.ndarray, polls: list, windows: list, args) -> None:
    slowdowns = []
    for a, b in windows[:-1]:  # the last window ends with the run
        before = rate(times, a - args.window, a)
        after = rate(times, b, b + args.window)
        if before > 0 and after > 0 and times[-1] > b + args.window:
            slowdowns.append(1 - rate(times, a, b) / ((before + after) / 2))
    s = 100 * np.array(slowdowns)
    print(
        f"sampler: {len(times)} chain steps in {times[-1] - times[0]:.1f} s; "
        f"{len(s)} polling windows of {args.window} s at {args.poll_hz} Hz vs neighbouring "
        f"silent windows: slowdown median {np.median(s):.1f}%, mean {s.mean():.1f}%, "
        f"range {s.min():.1f}% .. {s.max():.1f}%"
    )
    wall = np.array([p[0] for p in polls]) * 1e3
    cpu = np.array([p[1] for p in polls]) * 1e3
    new = np.array([p[2] for p in polls])
    polling_s = sum(b - a for a, b in windows)
    print(
        f"reader (metrics: {args.metrics}): {len(polls)} polls; wall median {np.median(wall):.1f} ms p95 "
        f"{np.percentile(wall, 95):.1f} ms; CPU median {np.median(cpu):.1f} ms p95 "
        f"{np.percentile(cpu, 95):.1f} ms; CPU share while polling "
        f"{100 * cpu.sum() / 1e3 / polling_s:.1f}% of one core"
    )
    steady = new > 0
    steady[np.r_[True, np.diff([p[3] for p in polls]) > 2 * np.median(new[new > 0])]] = False
    third = max(1, steady.sum() // 3)
    early, late = cpu[steady][:third], cpu[steady][-third:]
    print(
        f"polls at the steady {args.poll_hz} Hz pace (median {np.median(new[steady]):.0f} new "
        f"step rows each): CPU median first third {np.median(early):.1f} ms, last third "
        f"{np.median(late):.1f} ms (rows so far: {polls[0][3]} .. {polls[-1][3]})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--role", choices=["bench", "sampler", "poller"], default="bench")
    parser.add_argument("--store")
    parser.add_argument("--out")
    parser.add_argument("--chains", type=int, default=4)
    parser.add_argument("--steps", type=int, default=4000, help="draws (= steps) per chain")
    parser.add_argument("--flush-interval", type=float, default=0.5)
    parser.add_argument("--poll-hz", type=float, default=4.0)
    parser.add_argument("--window", type=float, default=3.0, help="seconds on / off")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of the sampler")
    parser.add_argument("--metrics", choices=["all", "none"], default="all", help="reader reads")
    args = parser.parse_args()
    if args.role == "sampler":
        return sampler(args)
    if args.role == "poller":
        return poller(args)

    with tempfile.TemporaryDirectory() as tmp:
        store, s_out, p_out = Path(tmp) / "run.zarr", Path(tmp) / "s.json", Path(tmp) / "p.json"
        common = [sys.executable, __file__, "--store", str(store), "--poll-hz", str(args.poll_hz)]
        common += ["--window", str(args.window), "--threads", str(args.threads)]
        common += ["--metrics", args.metrics]
        reader = subprocess.Popen([*common, "--role", "poller", "--out", str(p_out)])
        cmd = [*common, "--role", "sampler", "--out", str(s_out), "--chains", str(args.chains)]
        cmd += ["--steps", str(args.steps), "--flush-interval", str(args.flush_interval)]
        if subprocess.call(cmd) != 0:
            raise SystemExit("sampler failed")
        reader.wait(120)
        times = np.sort(np.array(json.loads(s_out.read_text())))
        polled = json.loads(p_out.read_text())
    report(times, polled["polls"], polled["windows"], args)


if __name__ == "__main__":
    main()
