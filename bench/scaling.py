"""How sample()'s time and memory grow with chains, draws, batch size, sequence length, model size.

Every configuration runs in a fresh subprocess (so its peak RSS is its own): the demo LM's data
(truncated to the sequence length asked for) and either the demo checkpoint or a randomly
initialised TinyLM of the width asked for; one observable of 96 rows; save_metrics on;
lockstep. Printed per configuration: seconds per chain step of sample() and of the bare loop
(run in the same subprocess as bare, sample, sample, bare, each the minimum of its two runs;
sample's per-step time is its steady state, first to last step, from progress_callback
stamps), their ratio, sample()'s fixed setup + finish time, and peak RSS above the process's
RSS after loading the model and data.
The bare loop's time per step includes its own small setup (model copies, init loss).

    python bench/scaling.py                  # all axes (~10 min on a busy 2-core machine)
    python bench/scaling.py --axis chains    # one axis
    python bench/scaling.py --memory         # RSS vs chains for a 6.5M-param model: copies/chain

Axes (the others held at 4 chains, 10 draws, batch 32, 32 tokens, demo LM):
    chains 1 2 4 8 | draws 10 20 40 | batch 8 32 128 | seq 8 16 32 | d_model 32 64 128 256
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

AXES = {
    "chains": [1, 2, 4, 8],
    "draws": [10, 20, 40],
    "batch": [8, 32, 128],
    "seq": [8, 16, 32],
    "d_model": [32, 64, 128, 256],
}
BASE = {"chains": 4, "draws": 10, "batch": 32, "seq": 32, "d_model": 64, "layers": 2}


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: kB


def child(cfg: dict) -> dict:
    import torch

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from overhead import bare_loop

    from devinterp_ui import sample
    from devinterp_ui.demo import TinyLM, TinyLMConfig, load_demo

    torch.set_num_threads(cfg["threads"])
    demo = load_demo("tiny_lm")
    data = demo.datasets["train"][:, : cfg["seq"]].contiguous()
    obs = {"repeat": demo.datasets["repeat"][:, : cfg["seq"]].contiguous()}
    if cfg["d_model"] == 64 and cfg["layers"] == 2:
        model = demo.model
    else:
        torch.manual_seed(0)
        d = cfg["d_model"]
        model = TinyLM(
            TinyLMConfig(d_model=d, n_layers=cfg["layers"], n_heads=4, d_head=d // 4, d_mlp=4 * d)
        ).eval()
    settings = {
        **demo.sampler_settings,
        "num_chains": cfg["chains"],
        "num_draws": cfg["draws"],
        "batch_size": cfg["batch"],
        "batches_per_draw": 96 // cfg["batch"] or 1,
        "num_init_loss_batches": 4,
        "lr": 1e-5,
    }
    model_mb = sum(p.numel() * 4 for p in model.parameters()) / 2**20
    start_rss = rss_mb()
    out = {"params": sum(p.numel() for p in model.parameters()), "model_mb": model_mb}

    def run_sample():
        stamps: list[float] = []
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            sample(
                model,
                data,
                obs,
                output_path=Path(tmp) / "r.zarr",
                progress_bar=False,
                save_metrics=True,
                progress_callback=lambda s: stamps.append(time.perf_counter()),
                **settings,
            )
            total = time.perf_counter() - t0
        # Steady-state time per chain step (first to last step), and the rest: setup (copies,
        # fingerprints, init loss, store creation) and finish (final flush, opening the tree).
        step = (stamps[-1] - stamps[0]) / (len(stamps) - 1)
        return step, total - step * len(stamps)

    def run_bare():
        t0 = time.perf_counter()
        bare_loop(model, data, obs, **settings)
        return (time.perf_counter() - t0) / (cfg["chains"] * cfg["draws"])

    if cfg.get("memory_only"):
        run_sample()
    else:
        # bare, sample, sample, bare: the minimum of each pair is the least disturbed by load.
        bare = [run_bare()]
        samples = [run_sample(), run_sample()]
        bare.append(run_bare())
        out["bare_step_s"] = min(bare)
        out["step_s"], out["fixed_s"] = min(samples)
    out["peak_mb"] = rss_mb() - start_rss
    return out


def run(cfg: dict) -> dict:
    res = subprocess.run(
        [sys.executable, __file__, "--child", json.dumps(cfg)],
        capture_output=True,
        text=True,
        check=False,
    )
    if res.returncode:
        raise RuntimeError(res.stderr[-2000:])
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--axis", choices=list(AXES), action="append")
    parser.add_argument("--memory", action="store_true")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--child")
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return

    if args.memory:
        print(
            "peak RSS above the loaded process vs chains, TinyLM d_model 256 x 8 layers "
            "(6.5M params), 5 draws, batch 8 (bare loop not run):"
        )
        rows = []
        for chains in (1, 2, 4, 8):
            cfg = {
                **BASE,
                "chains": chains,
                "draws": 5,
                "batch": 8,
                "d_model": 256,
                "layers": 8,
                "threads": args.threads,
                "memory_only": True,
            }
            r = run(cfg)
            rows.append((chains, r["peak_mb"]))
            print(
                f"  chains {chains}: peak +{r['peak_mb']:7.1f} MB = "
                f"{r['peak_mb'] / r['model_mb']:5.1f} model copies ({r['model_mb']:.1f} MB each)",
                flush=True,
            )
        (c0, m0), (c1, m1) = rows[0], rows[-1]
        print(f"  slope: {(m1 - m0) / (c1 - c0) / r['model_mb']:.2f} model copies per extra chain")
        return

    print(
        f"{'axis':8s} {'value':>6s} {'params':>9s} {'bare s/step':>12s} {'sample s/step':>14s} "
        f"{'ratio':>6s} {'sample setup+finish s':>22s} {'peak RSS +MB':>13s}"
    )
    for axis in args.axis or list(AXES):
        for value in AXES[axis]:
            cfg = {**BASE, axis: value, "threads": args.threads}
            r = run(cfg)
            bare = r["bare_step_s"]
            print(
                f"{axis:8s} {value:6d} {r['params']:9,d} {bare:12.4f} {r['step_s']:14.4f} "
                f"{r['step_s'] / bare:6.2f} {r['fixed_s']:22.2f} {r['peak_mb']:13.1f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
