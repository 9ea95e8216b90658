"""Whole chunks written straight to the files zarr reads them from.

A run rewrites tens of small chunks at every flush (each array's open chunk, per chain; the
metrics alone are nine arrays). Through `zarr.Array.__setitem__` each chunk costs about 1.2 ms of
CPU (selection, event-loop hand-offs, a thread per codec call), which on a small machine competes
with the chains for the cores and the GIL: it was most of what `save_metrics=True` added to a
run (docs/performance.md). Encoding a chunk by hand with the codecs in the array's own metadata
and writing it as zarr would (same key, temporary file renamed into place) costs about 0.2 ms.

Only arrays whose codec chain is exactly `bytes` + `zstd` (zarr 3's default for numeric arrays,
which the writer asks for explicitly) in a local directory qualify; `ChunkFiles.for_array`
returns None for anything else and the caller goes through zarr. tests/core/test_chunk_files.py
checks the files are byte for byte those zarr writes.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import numcodecs
import numpy as np
import zarr
from zarr.codecs import BytesCodec, ZstdCodec


class ChunkFiles:
    """Encodes and writes whole chunks of one zarr v3 array stored under `directory`."""

    def __init__(self, array: zarr.Array, directory: Path, level: int):
        self._metadata = array.metadata
        self._directory = directory
        self._dtype = np.dtype(array.dtype).newbyteorder("<")
        self._chunk_shape = tuple(array.chunks)
        self._zstd = numcodecs.Zstd(level=level)
        self._made: set[Path] = set()  # chunk directories known to exist

    @classmethod
    def for_array(cls, array: zarr.Array, store_root: Path) -> ChunkFiles | None:
        """A writer for `array` of the group at `store_root`, or None where zarr must write."""
        codecs = getattr(array.metadata, "codecs", None)
        if array.metadata.zarr_format != 3 or codecs is None or len(codecs) != 2:
            return None
        layout, compressor = codecs
        if not (
            isinstance(layout, BytesCodec)
            and (layout.endian is None or layout.endian.name == "little")
            and isinstance(compressor, ZstdCodec)
            and not compressor.checksum
            and np.dtype(array.dtype).kind in "fiub"
        ):
            return None
        return cls(array, store_root / array.path, compressor.level)

    def write(self, chunk_coords: tuple[int, ...], data: np.ndarray) -> None:
        """Write the chunk at `chunk_coords` (in chunk units); `data` has the chunk's full shape."""
        if data.shape != self._chunk_shape:
            raise ValueError(f"chunk of shape {data.shape}, expected {self._chunk_shape}")
        raw = np.ascontiguousarray(data, dtype=self._dtype)
        encoded = self._zstd.encode(raw)
        path = self._directory / self._metadata.encode_chunk_key(chunk_coords)
        if path.parent not in self._made:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._made.add(path.parent)
        # As zarr's LocalStore does: a reader sees the old chunk or the new one, never a part.
        partial = path.with_name(f"{path.name}.{uuid.uuid4().hex}.partial")
        try:
            with open(partial, "wb") as f:
                f.write(encoded)
            os.replace(partial, path)
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
