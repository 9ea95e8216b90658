"""Where cells run: a local pool by default, any `concurrent.futures.Executor`, or Dask.

The study only calls `executor.submit(run_cell, payload)` and reads the returned futures, so
`distributed.Client(...).get_executor()` (Dask on a laptop, a cluster, or Slurm through
dask-jobqueue) works as any other executor does.

Threads: torch's intra-op pool defaults to every core of the machine in every process, so two
cells side by side each asking for all cores run slower than one. Each cell therefore sets
`torch.set_num_threads(torch_threads)` before sampling: the local pool splits the cores between
its workers, a Dask worker runs each task on one thread (Dask gives a task one thread's worth of
the worker's cores), other executors are left alone unless `torch_threads` is passed.
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import os
import pickle
from typing import Any


def cpu_count() -> int:
    """Cores this process may use (the affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - macOS, Windows
        return os.cpu_count() or 1


def _set_threads(n: int) -> None:
    import torch

    torch.set_num_threads(n)
    os.environ["OMP_NUM_THREADS"] = str(n)


class LocalExecutor(cf.Executor):
    """The default: `max_workers` cells at once on this machine, cores split between them.

    max_workers: cells run at once (default: min(cells, cores)). With one worker the cell runs
        in a thread of this process (nothing is pickled, torch keeps its thread count); with
        more, each worker is a fresh ("spawn") process with cores // workers torch threads.
    """

    def __init__(self, max_workers: int | None = None, *, cells: int | None = None):
        cores = cpu_count()
        workers = max_workers or min(cells or cores, cores)
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise ValueError(f"max_workers must be an integer >= 1 (got {max_workers!r}).")
        self.max_workers = workers
        self.torch_threads = max(1, cores // workers)
        self._pool = self._new_pool()

    @property
    def in_process(self) -> bool:
        return self.max_workers == 1

    def _new_pool(self) -> cf.Executor:
        if self.in_process:
            return cf.ThreadPoolExecutor(1, thread_name_prefix="study-cell")
        # spawn, not fork: a forked child inherits torch's OpenMP pool in a broken state.
        return cf.ProcessPoolExecutor(
            self.max_workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_set_threads,
            initargs=(self.torch_threads,),
        )

    def renew(self) -> None:
        """Replace a broken process pool (a worker was killed) with a fresh one."""
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._pool = self._new_pool()

    def submit(self, fn, /, *args, **kwargs) -> cf.Future:
        return self._pool.submit(fn, *args, **kwargs)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self._pool.shutdown(wait=wait, cancel_futures=cancel_futures)

    def __repr__(self) -> str:
        kind = "in-process thread" if self.in_process else "spawned processes"
        return f"LocalExecutor({self.max_workers} workers, {kind}, {self.torch_threads} torch threads each)"


def is_dask(executor: Any) -> bool:
    return type(executor).__module__.startswith("distributed")


def in_process(executor: Any) -> bool:
    """True when cells run in this process (nothing needs pickling)."""
    if isinstance(executor, LocalExecutor):
        return executor.in_process
    return isinstance(executor, cf.ThreadPoolExecutor)


def torch_threads_for(executor: Any, requested: int | None) -> int | None:
    """Threads each cell sets (None: leave torch alone); see the module docstring."""
    if requested is not None:
        if isinstance(requested, bool) or not isinstance(requested, int) or requested < 1:
            raise ValueError(f"torch_threads must be an integer >= 1 (got {requested!r}).")
        return requested
    if isinstance(executor, LocalExecutor):
        return None if executor.in_process else executor.torch_threads
    if is_dask(executor):
        return 1
    return None


def check_executor(executor: Any) -> None:
    if not isinstance(executor, cf.Executor):
        raise TypeError(
            "executor must be a concurrent.futures.Executor (e.g. ProcessPoolExecutor, or "
            f"distributed.Client(...).get_executor()); got {type(executor).__name__}."
        )


def pickler():
    """cloudpickle (models and loaders defined in a notebook travel by value), else pickle."""
    try:
        import cloudpickle
    except ImportError:  # pragma: no cover - cloudpickle comes with the `study` extra
        return pickle
    return cloudpickle


def dumps_for(executor: Any, what: str, obj: Any) -> bytes | None:
    """The payload bytes a process executor will carry, or None for in-process executors.

    Raises TypeError up front when `obj` cannot be pickled, naming `what` and suggesting a
    factory, instead of every cell failing in its worker.
    """
    if in_process(executor):
        return None
    try:
        return pickler().dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as exc:
        raise TypeError(
            f"{what} cannot be sent to the executor's worker processes ({type(exc).__name__}: "
            f"{exc}). Pass a factory instead, a function that builds it in the worker (e.g. "
            "functools.partial(make_model, config)), or (path, loader) for a checkpoint; or run "
            "in this process with executor=LocalExecutor(max_workers=1)."
        ) from exc
