"""The one writer of a sample store.

Rows accumulate in an in-memory copy of each array's current chunk (per chain); `flush()` writes
every touched chunk whole, then the progress marker. Whole-chunk writes need no read-back, each
key write is atomic (zarr >= 3.1.3 writes to a temporary file and renames), and the marker goes
last, so a reader in another process sees a consistent prefix at any moment, even after the
writer is killed.

Compression and file writes run in a background thread, so the sampling thread only copies the
touched rows of each chunk (see docs/performance.md). `flush()` hands the chunks and the marker
that counts them to that thread and returns; the thread writes every chunk it was handed before
the marker, so the ordering guarantee holds. When the thread falls behind, pending flushes merge:
a newer copy of a chunk replaces an older one (it holds every row the older one held) and only
the newest marker is written. `flush(wait=True)`, `drain()`, `set_attrs()` and `close()` return
once everything handed over is on disk, and raise any error the thread met.

Faults (docs/guarantees.md): the same thread keeps the store's heartbeat (store.liveness) from
creation to `close()`. When a write fails (a full disk, any exception) the thread rewrites the
marker as failed, keeping the row counts of the last marker that landed, and ends; if even that
write fails, the heartbeat stops and readers report the run stale within seconds. Either way
the next `flush()`/`drain()` raises `StoreWriteError`, as a failed synchronous write
(`write_whole`, `set_attrs`) does at once, after marking the run failed the same way.
"""

from __future__ import annotations

import contextlib
import threading
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from devinterp_ui.store import liveness
from devinterp_ui.store.chunk_files import ChunkFiles
from devinterp_ui.store.cleanup import BUILD_HOST, remove_stale_builds
from devinterp_ui.store.create import create_store
from devinterp_ui.store.progress import FAILED, STOPPED, RunProgress, ended_marker
from devinterp_ui.store.schema import ArraySpec

_HOST = BUILD_HOST  # kept for callers of the old name
__all__ = ["StoreWriteError", "StoreWriter", "remove_stale_builds"]


class StoreWriteError(RuntimeError):
    """A write to the store failed (the cause is chained: e.g. an OSError with errno ENOSPC
    for a full disk). The marker says failed where it could still be written; rows written
    before stay readable."""


@dataclass
class _ChunkBuffer:
    chunk: int
    data: np.ndarray
    dirty: bool = False
    filled: int = 0  # rows 0..filled-1 of the chunk may hold data; the rest is fill value


@dataclass
class _ChunkWrite:
    """A chunk to write: its first `len(data)` rows, the rest being fill value."""

    name: str
    chain: int
    chunk: int
    data: np.ndarray


class StoreWriter:
    """Creates the store at `path` with `schema` and `attrs`, then streams rows into it.

    Raises StoreConflictError when another writer put a store at `path` while this one was
    building (two runs started on one path at once): the loser removes its half-built copy.
    An OSError while building (e.g. a full disk) also leaves nothing behind.
    """

    def __init__(self, path: str | Path, schema: dict[str, ArraySpec], attrs: dict[str, Any]):
        self.path = Path(path)
        self.schema = schema
        self.heartbeat_interval = liveness.HEARTBEAT_INTERVAL
        create_store(self.path, schema, attrs)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.root = zarr.open_group(str(self.path), mode="r+")
        self.arrays: dict[str, zarr.Array] = {name: self.root[name] for name in schema}
        self._chunk_files = {
            name: ChunkFiles.for_array(self.arrays[name], self.path)
            for name, spec in schema.items()
            if spec.row_dim is not None
        }
        self._buffers: dict[tuple[str, int], _ChunkBuffer] = {}
        # Handed to the background thread, guarded by _cond: chunks by (name, chain, chunk),
        # then root attrs (the marker last of all).
        self._cond = threading.Condition()
        self._pending_chunks: dict[tuple[str, int, int], _ChunkWrite] = {}
        self._pending_attrs: dict[str, Any] | None = None
        self._busy = False
        self._closing = False
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None
        # The last marker known to be on disk: what a failure marker keeps the counts of.
        self._landed_marker: dict | None = attrs.get("progress")
        self._last_beat = time.monotonic()
        # Started now, not at the first flush: it keeps the heartbeat while the caller computes
        # the initial loss, which can take long on a large model.
        self._start_thread()

    @property
    def error(self) -> BaseException | None:
        """The exception that stopped the background thread, or None while it is healthy."""
        return self._error

    def fail(self, error: BaseException | str) -> None:
        """Mark the run failed with `error` and end the thread, for callers that give up
        before (or outside) the runner, e.g. when the initial loss raises: see `end`."""
        text = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
        self.end(FAILED, text)

    def end(self, status: str, error: str | None = None) -> None:
        """End the run early with `status` ("failed", or "stopped" for a Stop before the chains
        ran) and end the thread; the marker keeps the counts of the rows that landed. Never
        raises for the write itself (the store may be the very thing that failed)."""
        if status not in (FAILED, STOPPED):
            raise ValueError(f"end() takes status 'failed' or 'stopped' (got {status!r}).")
        with self._cond:
            self._pending_chunks, self._pending_attrs = {}, None
        try:
            self.close()
        except StoreWriteError:
            return  # the thread has written its own failure marker
        self._write_ended_marker(status, error)

    def write_whole(self, name: str, value: Any) -> None:
        """Write a whole array at once (inputs, n_beta, init_loss), synchronously. A failed
        write (a full disk) marks the run failed, then raises StoreWriteError."""
        data = np.asarray(value, dtype=self.schema[name].dtype)
        self._write_now(lambda: self.arrays[name].__setitem__(Ellipsis, data))

    def write_row(self, name: str, chain: int, row: int, value: Any) -> None:
        """Stage row `row` of `name` for `chain`; it reaches disk at the next `flush()`."""
        spec = self.schema[name]
        rows = spec.rows_per_chunk
        chunk = row // rows
        key = (name, chain)
        buf = self._buffers.get(key)
        if buf is None or buf.chunk != chunk:
            if buf is not None and buf.dirty:
                # A full chunk leaves the buffer for good: hand it over without a copy.
                self._hand_over([_ChunkWrite(name, chain, buf.chunk, buf.data[: buf.filled])])
            data = np.full((rows, *spec.shape[2:]), spec.fill_value, dtype=spec.dtype)
            buf = self._buffers[key] = _ChunkBuffer(chunk, data)
        offset = row - chunk * rows
        buf.data[offset] = np.asarray(value, dtype=spec.dtype)
        buf.dirty = True
        buf.filled = max(buf.filled, offset + 1)

    def flush(
        self, progress: RunProgress, attrs: dict[str, Any] | None = None, wait: bool = False
    ) -> None:
        """Write every staged row, then the progress marker (and any extra root attrs).

        Returns at once (the background thread writes) unless `wait`; then it returns once
        all of it is on disk.
        """
        writes = []
        for (name, chain), buf in self._buffers.items():
            if buf.dirty:
                # Only the rows written so far are copied; the thread pads with fill value.
                writes.append(_ChunkWrite(name, chain, buf.chunk, buf.data[: buf.filled].copy()))
                buf.dirty = False
        self._hand_over(writes, {**(attrs or {}), "progress": progress.to_json()})
        if wait:
            self.drain()

    def set_attrs(self, attrs: dict[str, Any]) -> None:
        """Write root attrs after everything handed over so far has landed (e.g. `completed`)."""
        self.drain()
        self._write_now(lambda: self.root.attrs.update(attrs))

    def _write_now(self, write) -> None:
        """Run a synchronous write; on failure mark the run failed (as the thread does) and
        raise StoreWriteError with the cause."""
        try:
            write()
        except Exception as exc:
            self._stop_thread()
            self._record_failure(exc)
            self._raise_error()

    def _stop_thread(self) -> None:
        """End the background thread without draining (after a failure)."""
        with self._cond:
            self._pending_chunks, self._pending_attrs = {}, None
            self._closing = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self._closing = False

    def drain(self) -> None:
        """Block until every flush handed over is on disk; raise the writer thread's error."""
        with self._cond:
            while (
                self._pending_chunks or self._pending_attrs is not None or self._busy
            ) and self._error is None:
                self._cond.wait()
        self._raise_error()

    def close(self) -> None:
        """Drain, then end the background thread (and its heartbeat). The writer can still
        flush afterwards (a new thread starts)."""
        try:
            self.drain()
        finally:
            with self._cond:
                self._closing = True
                self._cond.notify_all()
            if self._thread is not None:
                self._thread.join()
                self._thread = None
            self._closing = False

    # --- the background thread -------------------------------------------------------------

    def _hand_over(self, writes: list[_ChunkWrite], attrs: dict[str, Any] | None = None) -> None:
        self._raise_error()
        with self._cond:
            for w in writes:
                self._pending_chunks[(w.name, w.chain, w.chunk)] = w
            if attrs is not None:
                self._pending_attrs = {**(self._pending_attrs or {}), **attrs}
            if self._thread is None:
                self._start_thread()
            self._cond.notify_all()

    def _start_thread(self) -> None:
        self._thread = threading.Thread(
            target=self._run, name=f"StoreWriter({self.path.name})", daemon=True
        )
        self._thread.start()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not (self._pending_chunks or self._pending_attrs is not None):
                    if self._closing or not self._beat():
                        self._thread = None  # a later flush starts a new one
                        return
                    self._cond.wait(timeout=self.heartbeat_interval)
                chunks, attrs = list(self._pending_chunks.values()), self._pending_attrs
                self._pending_chunks, self._pending_attrs = {}, None
                self._busy = True
            try:
                for w in chunks:
                    self._write_chunk(w)
                    self._beat()
                # Only after every chunk it counts: the marker.
                if attrs is not None:
                    self.root.attrs.update(attrs)
                    self._landed_marker = attrs.get("progress", self._landed_marker)
            except BaseException as exc:  # noqa: BLE001 - handed to the sampling thread
                self._record_failure(exc)
                return
            with self._cond:
                self._busy = False
                self._cond.notify_all()

    def _beat(self) -> bool:
        """Touch the heartbeat when due; a failure only makes readers call the run stale.
        False once the store is gone (deleted by its caller after giving up, e.g. a temporary
        store): the idle thread then ends instead of beating for nobody."""
        now = time.monotonic()
        if now - self._last_beat < self.heartbeat_interval:
            return True
        self._last_beat = now
        if not self.path.is_dir():
            return False
        with contextlib.suppress(OSError):
            liveness.beat(self.path)
        return True

    def _write_ended_marker(self, status: str, error: str | None) -> None:
        """Best effort: the store may be the very thing that fails (a full disk); then the
        heartbeat, which stops with the thread, tells readers instead."""
        if self._landed_marker is None:
            return
        with contextlib.suppress(Exception):
            marker = ended_marker(self._landed_marker, status, error)
            self.root.attrs.update({"progress": marker})

    def _record_failure(self, exc: BaseException) -> None:
        """Write the failure into the marker (if the store still takes a write), then publish
        the error to the sampling thread, in that order: once `drain()` raises, the marker
        already says failed (or never will)."""
        text = f"writing the store failed: {type(exc).__name__}: {exc}"
        self._write_ended_marker(FAILED, text)
        with self._cond:
            self._error = exc
            self._busy = False
            self._pending_chunks, self._pending_attrs = {}, None
            self._cond.notify_all()

    def _raise_error(self) -> None:
        if self._error is not None:
            err = self._error
            raise StoreWriteError(
                f"writing the store {self.path} failed: {type(err).__name__}: {err}"
            ) from err

    def _write_chunk(self, w: _ChunkWrite) -> None:
        spec = self.schema[w.name]
        rows = spec.rows_per_chunk
        start = w.chunk * rows
        stop = min(start + rows, spec.shape[1])
        data = w.data
        files = self._chunk_files.get(w.name)
        # Whole-chunk writes need no read-back: pad the copied rows with the fill value (to the
        # chunk's full shape for a direct write, as zarr stores edge chunks).
        length = rows if files is not None else stop - start
        if len(data) < length:
            full = np.full((length, *spec.shape[2:]), spec.fill_value, dtype=spec.dtype)
            full[: len(data)] = data
            data = full
        if files is not None:
            files.write((w.chain, w.chunk, *[0] * (len(spec.shape) - 2)), data[None, :length])
        else:
            self.arrays[w.name][w.chain, start:stop] = data[: stop - start]
