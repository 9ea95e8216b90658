"""What a study costs on top of its cells, and what two workers buy.

1. Overhead: the same N cells (demo LM, small runs) once as N `sample()` calls one after
   another in this process ("by hand"), once as `sweep(..., executor=LocalExecutor(1))` (the
   cells in a thread of this process, the study's bookkeeping around them), interleaved
   A B A B over `--reps`, both on one torch thread; reported: median of per-rep (study / by hand) - 1. Each rep writes to
   fresh directories, so nothing is reused.
2. Speed-up: a 6-cell sweep on a 2-worker `distributed.LocalCluster` (processes, one thread
   each) and on the default local executor (spawned processes splitting the cores), against
   the same cells one after another; cluster start-up is reported apart.

    python bench/study_overhead.py                  # 3 cells x 2 chains x 100 draws; 6-cell sweep
    python bench/study_overhead.py --draws 200 --reps 3
    python bench/study_overhead.py --skip-dask      # part 1 only

Figures depend on the machine's load; the core count (affinity) is printed with them.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from devinterp_ui import sample
from devinterp_ui.demo import load_demo
from devinterp_ui.study import LocalExecutor, sweep
from devinterp_ui.study.executors import cpu_count


def settings(draws: int) -> dict:
    demo = load_demo("tiny_lm")
    s = dict(demo.sampler_settings)
    s.update(num_chains=2, num_draws=draws, batch_size=16, num_init_loss_batches=8)
    s.pop("lr")
    return s


def lrs(n: int) -> list[float]:
    return [3e-5 * (1 + 0.25 * i) for i in range(n)]


def by_hand(model, data, kw, lr_values, out: Path) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process, all threads) of the cells one by one."""
    t, c = time.perf_counter(), time.process_time()
    for i, lr in enumerate(lr_values):
        sample(model, data, {}, lr=lr, output_path=out / f"{i}.zarr", progress_bar=False, **kw)
    return time.perf_counter() - t, time.process_time() - c


def as_study(model, data, kw, lr_values, out: Path, executor) -> tuple[float, float]:
    """(wall, CPU of this process) of the same cells as one sweep (worker CPU not counted)."""
    t, c = time.perf_counter(), time.process_time()
    study = sweep(model, data, grid={"lr": lr_values}, output_dir=out, executor=executor, **kw)
    study.wait()
    elapsed = time.perf_counter() - t, time.process_time() - c
    assert study.progress.done == len(lr_values), study
    return elapsed


def _line(label: str, hand: list[float], study: list[float]) -> str:
    ratios = [s / h for s, h in zip(study, hand, strict=True)]
    return (
        f"  {label}: by hand median {statistics.median(hand):.2f} s, study "
        f"{statistics.median(study):.2f} s, study / by hand - 1 = "
        f"{100 * (statistics.median(ratios) - 1):+.1f} % (per rep "
        f"{', '.join(f'{100 * (r - 1):+.1f}' for r in ratios)} %)"
    )


def overhead(model, data, kw, cells: int, reps: int, root: Path) -> None:
    values = lrs(cells)
    wall: dict[str, list[float]] = {"hand": [], "study": []}
    cpu: dict[str, list[float]] = {"hand": [], "study": []}
    for rep in range(reps):
        for which in ("hand", "study") if rep % 2 == 0 else ("study", "hand"):
            out = Path(tempfile.mkdtemp(prefix=f"{which}-", dir=root))
            if which == "hand":
                w, c = by_hand(model, data, kw, values, out)
            else:
                executor = LocalExecutor(max_workers=1)  # in this process, like by hand
                study_kw = {**kw, "torch_threads": torch.get_num_threads()}
                w, c = as_study(model, data, study_kw, values, out, executor)
                executor.shutdown()
            wall[which].append(w)
            cpu[which].append(c)
    print(
        f"overhead, {cells} cells x {kw['num_chains']} chains x {kw['num_draws']} draws, "
        f"{reps} reps, interleaved:"
    )
    print(_line("wall clock", wall["hand"], wall["study"]))
    # CPU seconds of this process are disturbed less by other processes on a shared machine.
    print(_line("CPU time", cpu["hand"], cpu["study"]))


def speedup(model, data, kw, root: Path) -> None:
    import distributed

    values = lrs(6)
    serial = {}
    for threads in sorted({1, cpu_count()}):
        torch.set_num_threads(threads)
        serial[threads] = by_hand(
            model, data, kw, values, Path(tempfile.mkdtemp(prefix="serial-", dir=root))
        )[0]
    base = min(serial.values())
    local = LocalExecutor()
    t_local = as_study(
        model, data, kw, values, Path(tempfile.mkdtemp(prefix="local-", dir=root)), local
    )[0]
    local.shutdown()
    t0 = time.perf_counter()
    with (
        distributed.LocalCluster(
            n_workers=2, processes=True, threads_per_worker=1, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        startup = time.perf_counter() - t0
        t_dask = as_study(
            model,
            data,
            kw,
            values,
            Path(tempfile.mkdtemp(prefix="dask-", dir=root)),
            client.get_executor(),
        )[0]
    print(
        f"6-cell sweep on {cpu_count()} cores ({kw['num_chains']} chains x {kw['num_draws']} draws each):"
    )
    for threads, seconds in serial.items():
        print(f"  one after another in this process, {threads} torch thread(s): {seconds:.2f} s")
    print(f"  {local!r}: {t_local:.2f} s (speed-up {base / t_local:.2f}x over the faster serial)")
    print(
        f"  2-worker LocalCluster (processes, 1 thread each): {t_dask:.2f} s "
        f"(speed-up {base / t_dask:.2f}x; cluster start-up {startup:.2f} s not included)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cells", type=int, default=3)
    parser.add_argument("--draws", type=int, default=100)
    parser.add_argument("--reps", type=int, default=2)
    parser.add_argument("--skip-dask", action="store_true")
    args = parser.parse_args()
    demo = load_demo("tiny_lm")
    model, data = demo.model, demo.datasets["train"]
    kw = settings(args.draws)
    # Part 1 compares like with like on one thread (a loaded machine punishes spinning threads).
    torch.set_num_threads(1)
    print(f"cores (affinity): {cpu_count()}; torch {torch.__version__}")
    with tempfile.TemporaryDirectory(prefix="study-bench-") as root:
        overhead(model, data, kw, args.cells, args.reps, Path(root))
        if not args.skip_dask:
            speedup(model, data, kw, Path(root))


if __name__ == "__main__":
    main()
