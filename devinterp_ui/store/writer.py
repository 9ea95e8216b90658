"""The one writer of a sample store.

Rows accumulate in an in-memory copy of each array's current chunk (per chain); `flush()` writes
every touched chunk whole, then the progress marker. Whole-chunk writes need no read-back, each
key write is atomic (zarr >= 3.1.3 writes to a temporary file and renames), and the marker goes
last, so a reader in another process sees a consistent prefix at any moment, even after the
writer is killed.
"""

from __future__ import annotations

import os
import uuid
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from devinterp_ui.store.progress import RunProgress
from devinterp_ui.store.schema import ArraySpec


@dataclass
class _ChunkBuffer:
    chunk: int
    data: np.ndarray
    dirty: bool = False


class StoreWriter:
    """Creates the store at `path` with `schema` and `attrs`, then streams rows into it."""

    def __init__(self, path: str | Path, schema: dict[str, ArraySpec], attrs: dict[str, Any]):
        self.path = Path(path)
        self.schema = schema
        # Built beside the target and renamed into place, so a store at `path` always has
        # every array, the consolidated metadata and the root attributes from its first moment.
        building = self.path.with_name(f".{self.path.name}.{uuid.uuid4().hex[:8]}.building")
        root = zarr.open_group(str(building), mode="w", zarr_format=3)
        for spec in schema.values():
            root.create_array(
                spec.name,
                shape=spec.shape,
                chunks=spec.chunks if spec.shape else "auto",
                dtype=spec.dtype,
                fill_value=spec.fill_value,
                dimension_names=spec.dims,
            )
        root.attrs.update(attrs)
        with warnings.catch_warnings():
            # Consolidated metadata is not in the v3 spec yet, but xarray reads it and warns
            # (and opens slower) without it; the layout never changes after creation.
            warnings.simplefilter("ignore")
            zarr.consolidate_metadata(str(building))
        if self.path.is_dir():
            self.path.rmdir()  # only ever an empty directory here (see store.cache)
        os.replace(building, self.path)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.root = zarr.open_group(str(self.path), mode="r+")
        self.arrays: dict[str, zarr.Array] = {name: self.root[name] for name in schema}
        self._buffers: dict[tuple[str, int], _ChunkBuffer] = {}

    def write_whole(self, name: str, value: Any) -> None:
        """Write a whole array at once (inputs, n_beta, init_loss)."""
        self.arrays[name][...] = np.asarray(value, dtype=self.schema[name].dtype)

    def write_row(self, name: str, chain: int, row: int, value: Any) -> None:
        """Stage row `row` of `name` for `chain`; it reaches disk at the next `flush()`."""
        spec = self.schema[name]
        rows = spec.rows_per_chunk
        chunk = row // rows
        key = (name, chain)
        buf = self._buffers.get(key)
        if buf is None or buf.chunk != chunk:
            if buf is not None and buf.dirty:
                self._write_chunk(name, chain, buf)
            data = np.full((rows, *spec.shape[2:]), spec.fill_value, dtype=spec.dtype)
            buf = self._buffers[key] = _ChunkBuffer(chunk, data)
        buf.data[row - chunk * rows] = np.asarray(value, dtype=spec.dtype)
        buf.dirty = True

    def flush(self, progress: RunProgress, attrs: dict[str, Any] | None = None) -> None:
        """Write every staged row, then the progress marker (and any extra root attrs)."""
        for (name, chain), buf in self._buffers.items():
            if buf.dirty:
                self._write_chunk(name, chain, buf)
        self.root.attrs.update({**(attrs or {}), "progress": progress.to_json()})

    def set_attrs(self, attrs: dict[str, Any]) -> None:
        self.root.attrs.update(attrs)

    def _write_chunk(self, name: str, chain: int, buf: _ChunkBuffer) -> None:
        rows = self.schema[name].rows_per_chunk
        total = self.schema[name].shape[1]
        start = buf.chunk * rows
        stop = min(start + rows, total)
        self.arrays[name][chain, start:stop] = buf.data[: stop - start]
        buf.dirty = False
