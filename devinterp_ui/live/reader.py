"""`StoreReader`: follow a sample store while it grows, whoever writes it.

Each `read_new()` reads the progress marker first, then only the rows that marker declares
written and this reader has not returned yet, straight from the Zarr arrays. So a poll never
returns a partial row, and its cost grows with the new rows, not with the run's length (at most
one extra chunk per chain and array is decoded). The running LLC comes from the package's one
estimator (`devinterp_ui.analysis.llc.running_llc`, which `compute_llc` uses too), continued
from the sums of the rows read before, so it ends at the number `compute_llc` gives.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr
import zarr
from zarr.core.sync import sync  # the bridge to Zarr's I/O loop that zarr.Array itself uses

from devinterp_ui.analysis.llc import initial_loss, running_llc
from devinterp_ui.live.marker import StoreStatus, status_from_attrs
from devinterp_ui.live.new_rows import NewRows, empty_draws, empty_steps
from devinterp_ui.sgld import METRIC_NAMES
from devinterp_ui.store.cleanup import remove_partial_files
from devinterp_ui.store.liveness import HEARTBEAT_TIMEOUT, HeartbeatWatch
from devinterp_ui.store.progress import KILLED, MarkerUnreadable, read_root_attrs

STEP_LOSS = "sampling_loss_micro"  # (chain, step, batch_sampling, token_pos)
DRAW_LOSS = "sampling_loss"  # (chain, draw, batch, token_pos)

__all__ = ["NewRows", "StoreReader", "wait_for_store"]

# Chains sharing one new row range [start, stop), read together: (chains, start, stop).
Range = tuple[list[int], int, int]


class StoreReader:
    """Follows the sample store at `path` (a directory written by `sample()`).

    Works on a store written by this process or another, running, stopped, failed, killed or
    completed. Not thread-safe: use one reader per polling thread.

    metrics: which SGLD diagnostics `read_new()` returns, when the run saved them: True (all),
        False (none), or names from `devinterp_ui.sgld.METRIC_NAMES` ("noise", "distance", ...).
        Each is its own array, so every metric adds one chunk read per chain to a poll.
    heartbeat_timeout: seconds without a heartbeat from the writer after which a run that
        says "running" is reported "stale" (its writer thread died or hung; see
        devinterp_ui.store.liveness).
    stale_after: the same for stores without a heartbeat file, judged on marker updates.

    The first poll that finds the writer killed (or the run completed) removes the temporary
    `*.partial` files a killed writer left inside the store.

    Raises FileNotFoundError when `path` holds no Zarr store, ValueError for unknown metrics.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        metrics: bool | Iterable[str] = True,
        stale_after: float = 300.0,
        heartbeat_timeout: float = HEARTBEAT_TIMEOUT,
    ):
        self.path = Path(path)
        if not (self.path / "zarr.json").is_file():
            raise FileNotFoundError(
                f"no sample store at {str(self.path)!r} (no zarr.json); pass the output_path "
                "sample() or SamplingJob writes to."
            )
        self.metrics = _metric_names(metrics)
        self.stale_after = float(stale_after)
        self.heartbeat_timeout = float(heartbeat_timeout)
        self._attrs: dict[str, Any] = {}
        self._last_status: StoreStatus | None = None
        self._arrays: dict[str, zarr.Array] | None = None
        self._steps_read: np.ndarray | None = None  # (chain,) rows already returned
        self._draws_read: np.ndarray | None = None
        self._trace: np.ndarray | None = None  # (chain, total_steps) step losses read, else NaN
        self._carry: tuple[np.ndarray, np.ndarray] | None = None  # per chain (sum, count)
        self._init: np.ndarray | None = None  # (chain, token_pos) init_loss as stored, once read
        self._swept = False  # the temporary files of a dead writer are removed (once)
        self._heartbeat = HeartbeatWatch(self.path)

    # --- what the run is -------------------------------------------------------------------

    @property
    def metadata(self) -> dict[str, Any]:
        """Root attribute `metadata` ({"config": {...}}), or {} before the writer set it."""
        if "metadata" not in self._attrs:
            self.status()
        return self._attrs.get("metadata") or {}

    @property
    def config(self) -> dict[str, Any]:
        """The sampler settings (`metadata["config"]["sampler"]`), or {} before they exist."""
        return (self.metadata.get("config") or {}).get("sampler") or {}

    @property
    def observables(self) -> list[str]:
        """Identifier-safe observable names: the store holds `loss_{name}` for each."""
        obs = (self.metadata.get("config") or {}).get("observables") or []
        return [o["obs_id"] for o in obs]

    @property
    def attrs(self) -> dict[str, Any]:
        """All root attributes as of the last poll."""
        return dict(self._attrs)

    def status(self) -> StoreStatus:
        """Re-read the marker. While it cannot be parsed, the previous snapshot is returned
        (MarkerUnreadable when there is none: the path holds no sample store)."""
        return self._poll()[0]

    def _poll(self) -> tuple[StoreStatus, bool]:
        """(snapshot, fresh): fresh is False when the previous snapshot stands in."""
        try:
            attrs = read_root_attrs(self.path)
        except MarkerUnreadable:
            if self._last_status is not None:
                return self._last_status, False
            raise
        self._attrs = attrs
        # Only a marker-less store that says completed (e.g. devinterp 2.x) is sized from its arrays.
        bare = "progress" not in attrs and attrs.get("completed") == 1
        shape_rows = self._shape_rows() if bare else None
        self._last_status = status_from_attrs(
            attrs,
            shape_rows,
            self.stale_after,
            heartbeat_age=self._heartbeat.age(),
            heartbeat_timeout=self.heartbeat_timeout,
        )
        if not self._swept and (self._last_status.status == KILLED or attrs.get("completed") == 1):
            with contextlib.suppress(OSError):
                remove_partial_files(self.path, attrs)
            self._swept = True
        return self._last_status, True

    # --- new rows ------------------------------------------------------------------------------

    def read_new(self) -> NewRows:
        """Rows written since the previous call (all rows on the first call); see `NewRows`.

        Never returns a row the marker does not declare whole; a row is returned once only.
        """
        snap, fresh = self._poll()
        if not fresh or snap.num_chains == 0 or not self._open(snap):
            return NewRows(empty_steps(), empty_draws(), snap)
        steps_to = np.asarray(snap.steps_written, dtype=np.int64)
        draws_to = np.asarray(snap.draws_written, dtype=np.int64)
        step_ranges = _ranges(self._steps_read, steps_to)
        draw_ranges = _ranges(self._draws_read, draws_to)
        step_names = [n for n in self._arrays if n == STEP_LOSS or n.startswith("metrics_")]
        draw_names = [f"loss_{o}" for o in self.observables]
        if step_ranges and self._init is None:
            # init_loss lands before any step row, but possibly after the first marker.
            self._init = np.asarray(self._arrays["init_loss"][...])
        wanted = {n: step_ranges for n in step_names if step_ranges}
        wanted.update({n: draw_ranges for n in draw_names if draw_ranges})
        means = self._row_means(wanted) if wanted else {}
        steps = self._steps_table(step_ranges, means)
        draws = self._draws_table(draw_ranges, means)
        # Advance only once every read succeeded, so a failed poll is retried whole.
        self._steps_read = np.maximum(self._steps_read, steps_to)
        self._draws_read = np.maximum(self._draws_read, draws_to)
        return NewRows(steps, draws, snap)

    def rewind(self) -> None:
        """Forget what was returned: the next `read_new()` returns every written row again."""
        if self._steps_read is not None:
            self._steps_read[:] = 0
            self._draws_read[:] = 0
            self._trace[:] = np.nan
            self._carry[0][:] = 0.0
            self._carry[1][:] = 0.0

    @property
    def init_loss(self) -> float | None:
        """L_n(w0), the initial loss averaged over chains and positions as the LLC uses it;
        None until a `read_new()` has found step rows (init_loss lands before them)."""
        return None if self._init is None else initial_loss(self._init)

    def accumulated(self) -> xr.Dataset:
        """Every step row the reader has returned so far, as `compute_llc` and the diagnostics
        take it: `loss_trace` (chain, step) float64, the `loss` of each step row (NaN where not
        read yet; steps 0..the furthest step read), `init_loss` (chain, token_pos) as stored,
        and the store's root attrs (metadata with n_beta and num_burnin_steps). Before any step
        row: a `loss_trace` with no steps and no `init_loss`.

        `compute_llc(reader.accumulated())` is the live LLC, per chain and pooled, by the same
        function as the finished tree's.
        """
        if self._trace is None:
            trace = np.zeros((0, 0))
        else:
            trace = self._trace[:, : int(self._steps_read.max(initial=0))]
        data = {"loss_trace": (("chain", "step"), trace.copy())}
        if self._init is not None:
            data["init_loss"] = (("chain", "token_pos"), self._init.reshape(len(trace), -1))
        return xr.Dataset(data, attrs=dict(self._attrs))

    def _open(self, snap: StoreStatus) -> bool:
        """Open the arrays once the writer has created them all (True), else False."""
        if self._arrays is not None:
            return True
        if snap.recorded_status is None and not snap.completed:
            return False  # the marker goes in once every array exists
        try:
            group = zarr.open_group(str(self.path), mode="r")
            names = [STEP_LOSS, "init_loss", *(f"loss_{o}" for o in self.observables)]
            saved = set(group.array_keys())
            names += [f"metrics_{m}" for m in self.metrics if f"metrics_{m}" in saved]
            arrays = {name: group[name] for name in names}
        except (OSError, ValueError, KeyError):
            return False  # caught mid-rewrite of the metadata: the next poll tries again
        num_chains = snap.num_chains
        self._steps_read = np.zeros(num_chains, dtype=np.int64)
        self._draws_read = np.zeros(num_chains, dtype=np.int64)
        self._trace = np.full((num_chains, int(arrays[STEP_LOSS].shape[1])), np.nan)
        self._carry = (np.zeros(num_chains), np.zeros(num_chains))  # running_llc's sums
        self._arrays = arrays
        return True

    def _steps_table(self, ranges: list[Range], means: dict[str, np.ndarray]) -> xr.Dataset:
        if not ranges:
            return empty_steps()
        chain, step, order = _row_coords(ranges)
        loss = means[STEP_LOSS][order]
        data = {"loss": ("row", loss), "llc": ("row", self._running_llc(chain, step, loss))}
        for name in sorted(means):
            if name.startswith("metrics_"):
                data[name] = ("row", means[name][order])
        return xr.Dataset(data, coords={"chain": ("row", chain), "step": ("row", step)})

    def _draws_table(self, ranges: list[Range], means: dict[str, np.ndarray]) -> xr.Dataset:
        if not ranges:
            return empty_draws(self.observables)
        chain, draw, order = _row_coords(ranges)
        cfg = self.config
        step = int(cfg.get("num_burnin_steps", 0)) + draw * int(cfg.get("num_steps_bw_draws", 1))
        data = {f"loss_{o}": ("row", means[f"loss_{o}"][order]) for o in self.observables}
        coords = {"chain": ("row", chain), "draw": ("row", draw), "step": ("row", step)}
        return xr.Dataset(data, coords=coords)

    def _row_means(self, wanted: dict[str, list[Range]]) -> dict[str, np.ndarray]:
        """{name: (rows,) mean of each requested row over the dims after (chain, row)}, rows in
        range-group order, chain-major within a group. (chain, step) arrays come back as they
        are (float32); the others as float64 means.

        Every block is requested at once on Zarr's I/O loop: one synchronous read per block
        would cost a thread hand-off each, which dominates a poll on a busy machine.
        """
        requests = [(name, r) for name, ranges in wanted.items() for r in ranges]

        async def read_all():
            return await asyncio.gather(
                *(
                    self._arrays[name].async_array.get_orthogonal_selection(
                        (chains, slice(start, stop))
                    )
                    for name, (chains, start, stop) in requests
                )
            )

        parts: dict[str, list[np.ndarray]] = {name: [] for name in wanted}
        for (name, _), block in zip(requests, sync(read_all()), strict=True):
            block = np.asarray(block)  # (chains, stop - start, ...)
            if block.ndim > 2:
                block = block.reshape(*block.shape[:2], -1).mean(axis=2, dtype=np.float64)
            parts[name].append(block.ravel())
        return {name: np.concatenate(p) for name, p in parts.items()}

    def _running_llc(self, chain: np.ndarray, step: np.ndarray, loss: np.ndarray) -> np.ndarray:
        """Per new row, the chain's running LLC after that step, by `running_llc` (the estimator
        of `compute_llc`) continued from the sums of the rows read before."""
        self._trace[chain, step] = loss
        init = initial_loss(self._init)
        llc = np.full(loss.shape, np.nan)
        for c in np.unique(chain):
            rows = np.flatnonzero(chain == c)  # contiguous steps, sorted
            start = int(step[rows[0]])
            running, carry = running_llc(
                loss[rows][None, :],
                init_loss=init,
                n_beta=float(self.config.get("n_beta", np.nan)),
                num_burnin_steps=int(self.config.get("num_burnin_steps", 0)),
                start=start,
                carry=(self._carry[0][c : c + 1], self._carry[1][c : c + 1]),
            )
            llc[rows] = running[0]
            self._carry[0][c], self._carry[1][c] = carry[0][0], carry[1][0]
        return llc

    def _shape_rows(self) -> tuple[int, int, int] | None:
        """(chains, steps, draws) from the array shapes, for stores without a marker."""
        try:
            group = zarr.open_group(str(self.path), mode="r")
            steps = group[STEP_LOSS].shape
            draws = group[DRAW_LOSS].shape
        except (KeyError, FileNotFoundError, ValueError):
            return None
        return int(steps[0]), int(steps[1]), int(draws[1])


def _metric_names(metrics: bool | Iterable[str]) -> tuple[str, ...]:
    if metrics is True:
        return METRIC_NAMES
    if metrics is False or metrics is None:
        return ()
    if isinstance(metrics, str):
        metrics = [metrics]
    names = tuple(metrics)
    unknown = sorted(set(names) - set(METRIC_NAMES))
    if unknown:
        raise ValueError(
            f"unknown metrics {unknown}; choose from {list(METRIC_NAMES)}, or pass True / False."
        )
    return names


def _ranges(done: np.ndarray, to: np.ndarray) -> list[Range]:
    """Group chains by their new row range [done, to): lockstep chains share one read."""
    groups: dict[tuple[int, int], list[int]] = {}
    for c, (a, b) in enumerate(zip(done.tolist(), to.tolist(), strict=True)):
        if b > a:
            groups.setdefault((a, b), []).append(c)
    return [(cs, a, b) for (a, b), cs in groups.items()]


def _row_coords(ranges: list[Range]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(chain, row index, order): coords of the output rows sorted by chain then index, and the
    permutation that sorts the rows `_row_means` returns (chain-major within each range group).
    """
    chain, index = [], []
    for chains, start, stop in ranges:
        n = stop - start
        chain.append(np.repeat(np.asarray(chains, dtype=np.int64), n))
        index.append(np.tile(np.arange(start, stop, dtype=np.int64), len(chains)))
    chain, index = np.concatenate(chain), np.concatenate(index)
    order = np.lexsort((index, chain))
    return chain[order], index[order], order


def wait_for_store(path: str | Path, timeout: float, poll: float = 0.05) -> StoreReader:
    """A reader of `path` once the writer has created it; TimeoutError after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return StoreReader(path)
        except FileNotFoundError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"no sample store appeared at {str(path)!r}") from None
            time.sleep(poll)
