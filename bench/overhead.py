"""sample() against a bare PyTorch loop doing the same work, interleaved A B A B in one process.

The bare loop steps the same chains on the same number of batches with the same SGLD update
(sgmcmc_sgld with localization, one noise draw per parameter from a per-chain generator), the
same observable forward passes (batch_size x batches_per_draw rows per observable per draw, in
batches of batch_size, after the update) and the same init-loss forward passes
(num_init_loss_batches batches once, as sample() does when chains share their batches), and
records nothing. "bare" updates parameter by parameter, as a hand-written loop does;
"bare-packed" updates one flat vector per chain, as sample() does (devinterp_ui/segments.py).
The ratio sample / bare is what a user sees against their own loop; sample / bare-packed is what
sample() records: store writes, metrics, progress, bookkeeping. Both wall-clock and whole-process
CPU time (all threads) are reported: on a shared machine the CPU time is disturbed less, but it
also counts the store writer's thread, which runs beside the sampler on a spare core. `--check-work` counts the rows each one feeds through the model (a forward hook) to
show that the work is the same.

    python bench/overhead.py                      # demo LM, 4 chains x 200 draws, metrics off and on
    python bench/overhead.py --draws 50 --reps 2  # quicker
    python bench/overhead.py --check-work         # rows forwarded by sample() vs the bare loop
    python bench/overhead.py --device cuda        # on a GPU machine
    python bench/overhead.py --flush-interval 1e9 # store written only at the end: its share

Each rep runs every variant once, in turn, the starting one rotating from rep to rep (bare,
bare-packed, sample, sample+metrics, then bare-packed, sample, ...); the ratios
reported are medians over reps of (variant time / the same rep's bare time), so slow drift in the
machine's load cancels out; the spread is the min..max of those per-rep ratios.
"""

from __future__ import annotations

import argparse
import copy
import math
import statistics
import tempfile
import time
from pathlib import Path

import torch

from devinterp_ui import sample
from devinterp_ui.losses import next_token_loss


def _sync(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def bare_loop(
    model,
    data,
    observables,
    *,
    lr,
    n_beta,
    localization=0.0,
    num_chains,
    num_draws,
    batch_size,
    batches_per_draw=3,
    num_init_loss_batches=32,
    init_seed=100,
    device="cpu",
    packed=False,
    **_ignored,
):
    """The compute sample() cannot avoid, for sgmcmc_sgld, no burn-in, one step per draw.

    packed=False updates parameter by parameter, as a hand-written loop (or devinterp's
    optimizer) does; packed=True first moves each chain's parameters into one flat vector and
    updates that, as sample() does (devinterp_ui/segments.py), so the ratio against it
    isolates what sample() records.
    """
    data = data.to(device)
    obs_rows = {
        name: d[: batch_size * batches_per_draw].to(device) for name, d in observables.items()
    }
    base = copy.deepcopy(model).to(device)
    anchor = [p.detach().clone() for p in base.parameters()]
    gen = torch.Generator().manual_seed(init_seed)
    order = torch.randperm(len(data), generator=gen).to(device)
    with torch.no_grad():  # init loss: the checkpoint's loss on the chains' first batches
        for i in range(num_init_loss_batches):
            next_token_loss(base, data[order[i * batch_size : (i + 1) * batch_size]]).sum(0)
    chains = [copy.deepcopy(base) for _ in range(num_chains)]
    params = [list(m.parameters()) for m in chains]
    flats = [_pack(ps) for ps in params] if packed else None
    anchor_flat = torch.cat([a.reshape(-1) for a in anchor])
    gens = [torch.Generator(device=device).manual_seed(init_seed + c) for c in range(num_chains)]
    sqrt_lr = math.sqrt(lr)
    for step in range(num_draws):
        start = (step * batch_size) % (len(data) - batch_size)
        batch = data[order[start : start + batch_size]]
        for c, m in enumerate(chains):
            loss = next_token_loss(m, batch).mean()
            grads = torch.autograd.grad(loss, params[c])
            with torch.no_grad():
                if packed:
                    w, g = flats[c], torch.cat([g.reshape(-1) for g in grads])
                    drift = g * n_beta + (w - anchor_flat) * localization
                    w.sub_(drift * (lr / 2))
                    w.add_(torch.randn(w.shape, generator=gens[c], device=device) * sqrt_lr)
                else:
                    for p, g, p0 in zip(params[c], grads, anchor, strict=True):
                        drift = g * n_beta + (p - p0) * localization
                        p.sub_(drift * (lr / 2))
                        p.add_(torch.randn(p.shape, generator=gens[c], device=device) * sqrt_lr)
                for rows in obs_rows.values():
                    for i in range(0, len(rows), batch_size):
                        next_token_loss(m, rows[i : i + batch_size])
    _sync(device)


def _pack(params: list[torch.Tensor]) -> torch.Tensor:
    """One flat tensor holding `params`, which become views of it."""
    flat = torch.cat([p.detach().reshape(-1) for p in params])
    for p, view in zip(params, flat.split([p.numel() for p in params]), strict=True):
        p.data = view.view(p.shape)
    return flat


def demo_setup(chains: int, draws: int, init_batches: int = 32):
    """(model, data, observables, settings) of the demo LM for `chains` x `draws`."""
    from devinterp_ui.demo import load_demo

    demo = load_demo("tiny_lm")
    settings = {
        **demo.sampler_settings,
        "num_chains": chains,
        "num_draws": draws,
        "num_burnin_steps": 0,
        "num_steps_bw_draws": 1,
        "batches_per_draw": 3,
        "num_init_loss_batches": init_batches,
    }
    observables = {k: v for k, v in demo.datasets.items() if k != "train"}
    return demo.model, demo.datasets["train"], observables, settings


def run_sample(
    model, data, observables, settings, *, save_metrics: bool, device="cpu", **extra
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        sample(
            model,
            data,
            observables,
            output_path=Path(tmp) / "r.zarr",
            progress_bar=False,
            save_metrics=save_metrics,
            device=device,
            **settings,
            **extra,
        )
    _sync(device)


def count_rows(fn, model) -> int:
    """Rows fed through `model` (and the copies fn makes of it) while fn() runs."""
    seen = [0]
    handle = model.register_forward_pre_hook(
        lambda mod, args: seen.__setitem__(0, seen[0] + int(args[0].shape[0]))
    )
    try:
        fn()
    finally:
        handle.remove()
    return seen[0]


def interleaved(
    runs: dict,
    reps: int,
    log=print,
    deadline: float | None = None,
    cpu: dict[str, list[float]] | None = None,
) -> dict[str, list[float]]:
    """Time every fn of `runs` once per rep, in turn; returns name -> seconds per rep.

    deadline: a time.perf_counter() value after which no further rep starts (one always runs).
    cpu: filled with name -> CPU seconds of the whole process (all threads) per rep, which
    other jobs on a shared machine disturb less than the wall clock.
    """
    times: dict[str, list[float]] = {k: [] for k in runs}
    if cpu is not None:
        cpu.update({k: [] for k in runs})
    for rep in range(reps):
        if rep and deadline is not None and time.perf_counter() > deadline:
            log(f"deadline reached: {rep} of {reps} reps")
            break
        names = list(runs)
        names = names[rep % len(names) :] + names[: rep % len(names)]  # no fixed position
        for name in names:
            t0, c0 = time.perf_counter(), time.process_time()
            runs[name]()
            times[name].append(time.perf_counter() - t0)
            if cpu is not None:
                cpu[name].append(time.process_time() - c0)
        log(f"rep {rep}: " + ", ".join(f"{k} {v[-1]:.2f}s" for k, v in times.items()))
    return times


def ratios(times: dict[str, list[float]], base: str = "bare") -> dict[str, tuple]:
    """name -> (median s, min s, max s, median ratio, min ratio, max ratio) against `base`."""
    out = {}
    for name, values in times.items():
        r = [v / b for v, b in zip(values, times[base], strict=True)]
        out[name] = (
            statistics.median(values),
            min(values),
            max(values),
            statistics.median(r),
            min(r),
            max(r),
        )
    return out


# What sample() adds, method by method (wrapped where they exist, so the same script measures
# an older version of the package too). Observables are timed apart from `_record`.
BREAKDOWN = [
    ("devinterp_ui.store.writer", "StoreWriter", "write_row"),
    ("devinterp_ui.store.writer", "StoreWriter", "flush"),
    ("devinterp_ui.store.writer", "StoreWriter", "set_attrs"),
    ("devinterp_ui.store.writer", "StoreWriter", "close"),
    ("devinterp_ui.sgld", "StepMetrics", "add"),
    ("devinterp_ui.sgld", "StepMetrics", "values"),
    ("devinterp_ui.store.chunk_files", "ChunkFiles", "write"),
    ("devinterp_ui.runner", "Runner", "_resolve"),
    ("devinterp_ui.data", "TokenTensorSource", "token_ids"),
    ("devinterp_ui.runner", "Runner", "_record"),
    ("devinterp_ui.chain", "ChainGroup", "observe"),
    ("devinterp_ui.chain", "ChainGroup", "step"),
]


def breakdown(model, data, observables, settings, device="cpu") -> dict[str, float]:
    """Seconds spent in each BREAKDOWN method during one sample() run with metrics."""
    import functools
    import importlib

    spent: dict[str, float] = {}
    originals = []
    for module, cls_name, meth in BREAKDOWN:
        cls = getattr(importlib.import_module(module), cls_name, None)
        fn = getattr(cls, meth, None) if cls is not None else None
        if fn is None:
            continue
        key = f"{cls_name}.{meth}"

        def timed(*a, _fn=fn, _key=key, **k):
            t0 = time.perf_counter()
            try:
                return _fn(*a, **k)
            finally:
                spent[_key] = spent.get(_key, 0.0) + time.perf_counter() - t0

        originals.append((cls, meth, fn))
        setattr(cls, meth, functools.wraps(fn)(timed))
    try:
        t0 = time.perf_counter()
        run_sample(model, data, observables, settings, save_metrics=True, device=device)
        spent["total sample()"] = time.perf_counter() - t0
    finally:
        for cls, meth, fn in originals:
            setattr(cls, meth, fn)
    return spent


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--draws", type=int, default=200)
    parser.add_argument("--chains", type=int, default=4)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--check-work", action="store_true", help="count rows forwarded by each (3 draws) and exit"
    )
    parser.add_argument(
        "--flush-interval",
        type=float,
        default=0.5,
        help="sample()'s flush_interval; 1e9 = write only at the end",
    )
    parser.add_argument(
        "--breakdown",
        action="store_true",
        help="time spent in the store writer, metrics, bookkeeping; then exit",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    if args.check_work:
        model, data, observables, settings = demo_setup(args.chains, 3)
        bare = count_rows(
            lambda: bare_loop(model, data, observables, device=args.device, **settings), model
        )
        samp = count_rows(
            lambda: run_sample(
                model, data, observables, settings, save_metrics=False, device=args.device
            ),
            model,
        )
        probe = 2 * (1 + len(observables))  # sample() checks loss shapes on 2 rows each
        print(
            f"rows through the model, {args.chains} chains x 3 draws: bare {bare}, "
            f"sample {samp} (of which {probe} for its loss-shape probe)"
        )
        return

    if args.breakdown:
        model, data, observables, settings = demo_setup(args.chains, args.draws)
        spent = breakdown(model, data, observables, settings, args.device)
        steps = args.chains * args.draws
        print(
            f"sample(save_metrics=True), demo LM, {args.chains} chains x {args.draws} draws: "
            f"ms per chain step in (inclusive times; _resolve includes _record; ChunkFiles.write runs in the writer thread)"
        )
        for key, value in sorted(spent.items(), key=lambda kv: -kv[1]):
            print(
                f"  {key:28s} {1e3 * value / steps:9.3f} ms   {100 * value / spent['total sample()']:5.1f}%"
            )
        return

    model, data, observables, settings = demo_setup(args.chains, args.draws)
    runs = {
        "bare": lambda: bare_loop(model, data, observables, device=args.device, **settings),
        "bare-packed": lambda: bare_loop(
            model, data, observables, device=args.device, packed=True, **settings
        ),
        "sample": lambda: run_sample(
            model,
            data,
            observables,
            settings,
            save_metrics=False,
            device=args.device,
            flush_interval=args.flush_interval,
        ),
        "sample+metrics": lambda: run_sample(
            model,
            data,
            observables,
            settings,
            save_metrics=True,
            device=args.device,
            flush_interval=args.flush_interval,
        ),
    }
    cpu: dict[str, list[float]] = {}
    times = interleaved(runs, args.reps, log=lambda s: print(s, flush=True), cpu=cpu)
    print(
        f"\ndemo LM, {args.chains} chains x {args.draws} draws, {len(observables)} observables, "
        f"device {args.device}, {args.threads} thread(s), {args.reps} reps interleaved"
    )
    for label, measured in (("wall clock", times), ("CPU time, all threads", cpu)):
        print(f"{label}: median (min..max); x bare, x bare-packed: median (min..max) per rep")
        against = {base: ratios(measured, base) for base in ("bare", "bare-packed")}
        for name, (med, lo, hi, *_) in against["bare"].items():
            cells = "   ".join(
                f"{r[name][3]:5.3f} ({r[name][4]:.3f}..{r[name][5]:.3f})" for r in against.values()
            )
            print(f"  {name:16s} {med:7.2f} s ({lo:.2f}..{hi:.2f})   {cells}")


if __name__ == "__main__":
    main()
