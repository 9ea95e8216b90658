"""Every sample store under a runs directory, summarised from its root attributes alone.

The run library lists runs from earlier sessions and other processes, so it cannot rely on
memory: it scans the directory. To stay fast with thousands of stores, a scan reads only each
store's root `zarr.json` (settings, progress marker, provenance, the final LLC the sampler
recorded), and only when that file's mtime changed since the last scan (`RunIndex` caches by
mtime). Traces are read from a store's arrays only when asked (`read_traces`), through
`StoreReader`, and cached by the same mtime.

The LLC column: a finished store carries its final LLC in its root attrs (`llc_summary`,
written by the sampler when the run ends, see analysis/llc_summary.py). For a finished store
without one (older, or its writer was killed), `llc()` computes the same summary from the
store's arrays in a background thread, never on the caller's (a server's event loop), and keeps
it in memory: the dashboard only reads stores, it never writes into them. No UI imports: tested
and benched alone.
"""

from __future__ import annotations

import contextlib
import math
import os
import queue
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from devinterp_ui.analysis.llc_summary import recorded_llc_summary, store_llc_summary
from devinterp_ui.live.marker import (
    FINISHED_STATUSES,
    READER_STATUSES,
    MarkerUnreadable,
    read_root_attrs,
    status_from_attrs,
)
from devinterp_ui.live.reader import StoreReader
from devinterp_ui.ui.decimate import BucketSeries
from devinterp_ui.ui.results import full_settings

UNKNOWN = "unknown"  # a zarr group that is not a sample store, or a marker we cannot read


@dataclass(frozen=True)
class RunSummary:
    """One store as the library lists it.

    status: a reader status (running, stopped, failed, completed, killed, stale, starting) or
    "unknown". started_at: unix seconds (None when the store does not say). duration_s: from the
    start to the marker's last update. steps_done: rows written, summed over chains.
    llc: the final LLC summary recorded in the store (analysis/llc_summary.py), else None.
    """

    path: str
    name: str
    status: str
    settings: dict[str, Any]
    started_at: float | None
    duration_s: float | None
    steps_done: int
    total_steps: int
    model: str
    mtime_ns: int
    llc: dict[str, Any] | None = None


@dataclass(frozen=True)
class RunTraces:
    """A store's traces, decimated to `budget` points per chain.

    loss, llc: per chain, (step, value) arrays of the mean loss and the running LLC.
    mean_loss, mean_llc: (step, value) of their mean over chains, at steps every chain wrote.
    llc_per_chain: each chain's last running LLC; llc_mean, llc_std: over chains (NaN if none).
    """

    loss: list[tuple[np.ndarray, np.ndarray]]
    llc: list[tuple[np.ndarray, np.ndarray]]
    mean_loss: tuple[np.ndarray, np.ndarray]
    mean_llc: tuple[np.ndarray, np.ndarray]
    llc_per_chain: np.ndarray
    llc_mean: float
    llc_std: float


class RunIndex:
    """The stores directly under `runs_dir` (directories holding a `zarr.json`).

    `scan()` returns a `RunSummary` per store, oldest first; a store unchanged since the last
    scan costs one `stat`. Thread-safe; one index may serve every session of a server.
    """

    def __init__(self, runs_dir: str | Path):
        self.runs_dir = Path(runs_dir)
        self._lock = threading.Lock()
        self._summaries: dict[str, RunSummary] = {}
        self._traces: dict[str, tuple[int, RunTraces]] = {}
        # LLCs computed here for stores that record none: path -> (mtime_ns, (mean, std)).
        self._computed: dict[str, tuple[int, tuple[float, float]]] = {}
        self._queued: set[str] = set()
        self._todo: queue.Queue[RunSummary] = queue.Queue()
        self._worker: threading.Thread | None = None
        self._listeners: list[weakref.WeakMethod | Callable[[], Any]] = []
        self.llc_version = 0  # rises each time computed LLCs arrive (a table redraws on it)

    def scan(self) -> list[RunSummary]:
        found: dict[str, RunSummary] = {}
        try:
            entries = list(os.scandir(self.runs_dir))
        except FileNotFoundError:
            entries = []
        for entry in entries:
            if not entry.is_dir(follow_symlinks=False):
                continue
            try:
                mtime = os.stat(os.path.join(entry.path, "zarr.json")).st_mtime_ns
            except OSError:
                continue  # not a zarr store (or one being created)
            with self._lock:
                cached = self._summaries.get(entry.path)
            if cached is None or cached.mtime_ns != mtime or cached.status == "running":
                # A running store is judged again even when unchanged: its writer may have died.
                cached = summarize_store(Path(entry.path), mtime)
            found[entry.path] = cached
        with self._lock:
            self._summaries = found
        return sorted(found.values(), key=lambda s: (s.started_at or 0.0, s.name))

    def traces(self, summary: RunSummary, budget: int = 600) -> RunTraces:
        """The store's traces, read once per store version (mtime)."""
        with self._lock:
            cached = self._traces.get(summary.path)
        if cached is not None and cached[0] == summary.mtime_ns:
            return cached[1]
        traces = read_traces(summary.path, budget)
        with self._lock:
            self._traces[summary.path] = (summary.mtime_ns, traces)
        return traces

    # --- the LLC column ------------------------------------------------------------------------

    def llc(self, summary: RunSummary) -> tuple[float, float]:
        """(llc_mean, llc_std) of a run: the summary its store records, else one computed here
        earlier; NaNs while that is pending (it is then queued for the background thread) and
        for a run not finished (running, starting, stale) or not a sample store."""
        if summary.llc is not None:
            return _pair(summary.llc)
        with self._lock:
            cached = self._computed.get(summary.path)
            if cached is not None and cached[0] == summary.mtime_ns:
                return cached[1]
            if summary.status not in FINISHED_STATUSES or summary.path in self._queued:
                return math.nan, math.nan
            self._queued.add(summary.path)
            if self._worker is None or not self._worker.is_alive():
                self._worker = threading.Thread(
                    target=self._compute_queued, name="run-index-llc", daemon=True
                )
                self._worker.start()
            # Under the lock: the worker ends only when it sees the queue empty under it.
            self._todo.put(summary)
        return math.nan, math.nan

    def on_llc(self, callback: Callable[[], Any]) -> None:
        """Call `callback()` (from the background thread) when computed LLCs arrived: at most
        once a second, and when the queue has drained. A bound method is held weakly, so a
        listening table does not outlive its session."""
        ref = weakref.WeakMethod(callback) if hasattr(callback, "__self__") else callback
        with self._lock:
            self._listeners.append(ref)

    def wait_llc(self, timeout: float) -> bool:
        """Block until every queued LLC is computed; True when none is left (tests, bench)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if not self._queued:
                    return True
            time.sleep(0.02)
        return False

    def _compute_queued(self) -> None:
        last_notice = time.monotonic()
        while True:
            try:
                summary = self._todo.get(timeout=5.0)
            except queue.Empty:
                with self._lock:
                    if self._todo.empty():
                        self._worker = None
                        return
                continue
            try:
                pair = _pair(store_llc_summary(summary.path))
            except Exception:  # noqa: BLE001 - a store that cannot give an LLC shows none
                pair = (math.nan, math.nan)
            with self._lock:
                self._computed[summary.path] = (summary.mtime_ns, pair)
                self._queued.discard(summary.path)
                self.llc_version += 1
            drained = self._todo.empty()
            if drained or time.monotonic() - last_notice >= 1.0:
                last_notice = time.monotonic()
                self._notify()

    def _notify(self) -> None:
        with self._lock:
            refs = list(self._listeners)
        alive = []
        for ref in refs:
            callback = ref() if isinstance(ref, weakref.WeakMethod) else ref
            if callback is None:
                continue
            alive.append(ref)
            # One broken listener must not stop the others.
            with contextlib.suppress(Exception):
                callback()
        with self._lock:
            self._listeners = [r for r in self._listeners if r in alive or r not in refs]


def summarize_store(path: Path, mtime_ns: int = 0) -> RunSummary:
    """A `RunSummary` from the root attributes of the store at `path` (no array is read)."""
    try:
        attrs = read_root_attrs(path, retries=2)
    except (OSError, MarkerUnreadable):
        attrs = {}
    sampler = ((attrs.get("metadata") or {}).get("config") or {}).get("sampler")
    marker = attrs.get("progress")
    if not isinstance(sampler, dict) or not isinstance(marker, dict):
        return _foreign(path, mtime_ns)
    try:
        status = status_from_attrs(attrs, None, stale_after=300.0)
    except (KeyError, TypeError, ValueError):
        return _foreign(path, mtime_ns)
    started = _number(status.started_at)
    updated = _number(status.updated_at)
    provenance = attrs.get("provenance") or {}
    model = str(provenance.get("model_class", "")).rsplit(".", 1)[-1]
    return RunSummary(
        path=str(path),
        name=path.name,
        status=status.status if status.status in READER_STATUSES else UNKNOWN,
        settings=full_settings(sampler),
        started_at=started,
        duration_s=(updated - started) if started is not None and updated is not None else None,
        steps_done=sum(status.steps_written),
        total_steps=status.total_steps * max(status.num_chains, 1),
        model=model,
        mtime_ns=mtime_ns,
        llc=recorded_llc_summary(attrs),
    )


def _foreign(path: Path, mtime_ns: int) -> RunSummary:
    return RunSummary(str(path), path.name, UNKNOWN, {}, None, None, 0, 0, "", mtime_ns)


def _pair(summary: dict[str, Any]) -> tuple[float, float]:
    """(llc_mean, llc_std) of an LLC summary, None (not finite) as NaN."""
    mean, std = summary.get("llc_mean"), summary.get("llc_std")
    return (
        float(mean) if mean is not None else math.nan,
        float(std) if std is not None else math.nan,
    )


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


def read_traces(path: str | Path, budget: int = 600) -> RunTraces:
    """Every written row of the store at `path`, through `StoreReader`, decimated per chain.

    Raises FileNotFoundError / MarkerUnreadable for a path that holds no sample store.
    """
    reader = StoreReader(path, metrics=False)
    steps = reader.read_new().steps
    chain = steps["chain"].values
    num_chains = int(chain.max()) + 1 if chain.size else 0
    loss, llc, last = [], [], []
    for c in range(num_chains):
        sel = chain == c
        x = steps["step"].values[sel].astype(float)
        loss.append(_decimate(x, steps["loss"].values[sel], budget))
        llc.append(_decimate(x, steps["llc"].values[sel], budget))
        finite = steps["llc"].values[sel]
        finite = finite[np.isfinite(finite)]
        last.append(finite[-1] if finite.size else np.nan)
    per_chain = np.asarray(last, dtype=float)
    finite = per_chain[np.isfinite(per_chain)]
    mean_loss, mean_llc = _chain_means(steps, budget)
    return RunTraces(
        loss=loss,
        llc=llc,
        mean_loss=mean_loss,
        mean_llc=mean_llc,
        llc_per_chain=per_chain,
        llc_mean=float(finite.mean()) if finite.size else math.nan,
        llc_std=float(finite.std(ddof=1)) if finite.size > 1 else math.nan,
    )


Trace = tuple[np.ndarray, np.ndarray]


def _chain_means(steps, budget: int) -> tuple[Trace, Trace]:
    """Mean over chains of loss and running LLC at each step every chain has written."""
    if not steps.sizes.get("row", 0):
        return (np.zeros(0), np.zeros(0)), (np.zeros(0), np.zeros(0))
    frame = steps[["loss", "llc"]].to_dataframe()
    grouped = frame.groupby("step")
    counts = grouped.size()
    means = grouped.mean().loc[counts.index[counts == counts.max()]]
    x = means.index.to_numpy(dtype=float)
    return (
        _decimate(x, means["loss"].to_numpy(), budget),
        _decimate(x, means["llc"].to_numpy(), budget),
    )


def _decimate(x: np.ndarray, y: np.ndarray, budget: int) -> Trace:
    """(x, y) of the finite points, as at most `budget` bucket means."""
    series = BucketSeries(budget)
    keep = np.isfinite(y)
    series.extend(x[keep], y[keep])
    return series.arrays()
