"""GPU measurements of issue 7 in one script: run it once on the GPU machine, paste its table.

    python bench/gpu_suite.py                 # on the GPU machine; ~3-5 min on an H100
    python bench/gpu_suite.py --smoke         # tiny sizes on the CPU, < 1 min: checks the script
    python bench/gpu_suite.py --only A,C      # some sections
    python bench/gpu_suite.py --budget-s 240  # start no new rep after shares of 240 s

Sections (each prints as it finishes; a failing section prints its error and the rest go on):
  A  sample() / bare PyTorch loop on the demo LM, 4 chains x 200 draws, 4 observables,
     save_metrics off and on; interleaved bare, bare-packed (the bare loop with sample()'s
     packed update, see bench/overhead.py), sample, sample+metrics, repeated --reps times.
  B  chain_schedule lockstep vs vectorized, on the demo LM (106k params) and on a wider, deeper
     TinyLM (d_model 512, 8 layers, d_mlp 2048: ~25M params) on the same data, with the bare
     loop as reference; interleaved; wall time and peak GPU memory (in model copies).
  C  store write throughput for GPT-2-small-sized per-token arrays (batch 32 x 1024 tokens,
     4 chains, 4 observables): MB/s with the background writer thread vs synchronous flushes.

Results go to stdout and, when $OUT is set, to $OUT/gpu_results.txt (rewritten after every
section, so a timeout keeps what finished). Imports: torch, numpy, zarr, xarray, tqdm and this
package only.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
import traceback
from pathlib import Path
from types import SimpleNamespace

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/ siblings

from overhead import bare_loop, demo_setup, interleaved, ratios, run_sample  # noqa: E402

LINES: list[str] = []


def emit(line: str = "") -> None:
    print(line, flush=True)
    LINES.append(line)
    out = os.environ.get("OUT")
    if out:
        Path(out).mkdir(parents=True, exist_ok=True)
        (Path(out) / "gpu_results.txt").write_text("\n".join(LINES) + "\n")


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def peak_tracker(device: str):
    """fn -> (fn wrapped to record peak GPU bytes, dict name -> list of peaks)."""
    peaks: dict[str, list[int]] = {}

    def wrap(name, fn):
        def run():
            if device.startswith("cuda"):
                torch.cuda.synchronize()
                torch.cuda.reset_peak_memory_stats()
            fn()
            if device.startswith("cuda"):
                peaks.setdefault(name, []).append(torch.cuda.max_memory_allocated())

        return run

    return wrap, peaks


def table(times, peaks, model_bytes, header, base: str = "bare") -> None:
    emit(header)
    emit(
        f"  {'variant':24s} {'median s':>9s} {'min..max s':>15s} {'x ' + base:>13s} "
        f"{'min..max':>13s} {'peak GPU, model copies':>24s}"
    )
    for name, (med, lo, hi, r, rlo, rhi) in ratios(times, base).items():
        peak = (
            f"{max(peaks[name]) / 2**20:8.1f} MiB = {max(peaks[name]) / model_bytes:5.1f}"
            if name in peaks
            else "-"
        )
        emit(
            f"  {name:24s} {med:9.3f} {lo:7.3f}..{hi:<7.3f} {r:13.3f} {rlo:6.3f}..{rhi:<6.3f} "
            f"{peak:>24s}"
        )


def model_bytes(model) -> int:
    return sum(p.numel() * p.element_size() for p in model.parameters())


def section_a(args) -> None:
    chains, draws = (2, 2) if args.smoke else (4, 200)
    model, data, obs, settings = demo_setup(chains, draws, 2 if args.smoke else 32)
    wrap, peaks = peak_tracker(args.device)
    runs = {
        "bare": wrap("bare", lambda: bare_loop(model, data, obs, device=args.device, **settings)),
        "bare-packed": wrap(
            "bare-packed",
            lambda: bare_loop(model, data, obs, device=args.device, packed=True, **settings),
        ),
        "sample": wrap(
            "sample",
            lambda: run_sample(model, data, obs, settings, save_metrics=False, device=args.device),
        ),
        "sample+metrics": wrap(
            "sample+metrics",
            lambda: run_sample(model, data, obs, settings, save_metrics=True, device=args.device),
        ),
    }
    if not args.smoke:
        runs["bare"]()  # warm-up: CUDA context, kernels, allocator
    times = interleaved(
        runs,
        args.reps,
        log=lambda s: print("   ", s, flush=True),
        deadline=args.t0 + 0.45 * args.budget_s,
    )
    header = (
        f"A. sample() vs bare loop: demo LM ({sum(p.numel() for p in model.parameters()):,} "
        f"params), {chains} chains x {draws} draws, {len(obs)} observables x 96 rows, "
        f"batch 32 x 32 tokens, {args.device}, {len(times['bare'])} of {args.reps} reps interleaved"
    )
    table(times, peaks, model_bytes(model), header)
    emit("   the same against the bare loop with a packed update (what sample() records, alone):")
    table(times, peaks, model_bytes(model), "", base="bare-packed")


def big_lm(smoke: bool):
    from devinterp_ui.demo import TinyLM, TinyLMConfig

    torch.manual_seed(0)
    if smoke:
        cfg = TinyLMConfig(d_model=64, n_layers=3, n_heads=4, d_head=16, d_mlp=256)
    else:
        cfg = TinyLMConfig(d_model=512, n_layers=8, n_heads=8, d_head=64, d_mlp=2048)
    return TinyLM(cfg).eval()


def section_b(args) -> None:
    for label, big in (("demo LM", False), ("wide LM", True)):
        chains = 2 if args.smoke else 4
        draws = 2 if args.smoke else (100 if not big else 50)
        model, data, obs, settings = demo_setup(chains, draws, 2 if args.smoke else 32)
        if big:
            model = big_lm(args.smoke)
            settings = {**settings, "lr": 1e-5}  # an untrained model: keep chains finite
            obs = dict(list(obs.items())[:1])
        wrap, peaks = peak_tracker(args.device)
        runs = {
            "bare": wrap(
                "bare",
                lambda m=model, d=data, o=obs, s=settings: bare_loop(
                    m, d, o, device=args.device, **s
                ),
            ),
            **{
                f"sample {sched}": wrap(
                    f"sample {sched}",
                    lambda m=model, d=data, o=obs, s=settings, sc=sched: run_sample(
                        m, d, o, s, save_metrics=False, device=args.device, chain_schedule=sc
                    ),
                )
                for sched in ("lockstep", "vectorized")
            },
        }
        if not args.smoke:
            runs["sample vectorized"]()  # warm-up, vmap tracing included
        share = 0.65 if not big else 0.8  # of --budget-s, by the end of this part
        times = interleaved(
            runs,
            args.reps,
            log=lambda s: print("   ", s, flush=True),
            deadline=args.t0 + share * args.budget_s,
        )
        n = sum(p.numel() for p in model.parameters())
        table(
            times,
            peaks,
            model_bytes(model),
            f"B. lockstep vs vectorized: {label} ({n:,} params), {chains} chains x {draws} "
            f"draws, {len(obs)} observable(s), batch 32 x 32 tokens, {args.device}, "
            f"{len(times['bare'])} of {args.reps} reps interleaved",
        )


def section_c(args) -> None:
    from store_throughput import format_results, measure

    ns = SimpleNamespace(
        chains=4,
        steps=4 if args.smoke else 32,
        batch=32,
        seq=128 if args.smoke else 1024,
        obs=4,
        flush_interval=0.5,
        step_time=0.0,
        reps=1 if args.smoke else 2,
    )
    emit(
        f"C. store writes, GPT-2-small-sized rows: {ns.chains} chains x {ns.steps} steps, "
        f"batch {ns.batch} x {ns.seq} tokens, {ns.obs} observables x 96 rows, flush every "
        f"{ns.flush_interval} s, {ns.reps} reps interleaved (async = background writer thread, "
        f"sync = flush waits)"
    )
    for line in format_results(measure(ns), ns.chains * ns.steps).splitlines():
        emit(line)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, CPU, < 1 min")
    parser.add_argument("--device", default=None, help="default: cuda if available, else cpu")
    parser.add_argument("--reps", type=int, default=None, help="default 3 (smoke: 1)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--only", default="A,B,C")
    parser.add_argument(
        "--budget-s",
        type=float,
        default=360.0,
        help="no new rep starts after fixed shares of this (A 45%%, B 65/80%%)",
    )
    args = parser.parse_args()
    args.device = args.device or ("cuda" if torch.cuda.is_available() and not args.smoke else "cpu")
    args.reps = args.reps or (1 if args.smoke else 3)
    torch.set_num_threads(args.threads)

    gpu = torch.cuda.get_device_name() if args.device.startswith("cuda") else "-"
    emit(
        f"gpu_suite {'(smoke) ' if args.smoke else ''}{time.strftime('%Y-%m-%d %H:%M:%S')} | "
        f"device {args.device} ({gpu}) | torch {torch.__version__} | python "
        f"{platform.python_version()} | {os.cpu_count()} CPUs, {args.threads} torch thread(s)"
    )
    t_start = args.t0 = time.perf_counter()
    for key, fn in (("A", section_a), ("B", section_b), ("C", section_c)):
        if key not in args.only.split(","):
            continue
        t0 = time.perf_counter()
        try:
            fn(args)
        except Exception:  # noqa: BLE001 - report and go on with the next section
            emit(f"{key}. FAILED:\n" + traceback.format_exc())
        emit(f"   ({key}: {time.perf_counter() - t0:.0f} s)")
        emit()
    emit(f"total {time.perf_counter() - t_start:.0f} s")


if __name__ == "__main__":
    main()
