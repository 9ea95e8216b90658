"""Creating a store: built beside its path and renamed into place, or refused when another
writer got there first.

A store at `path` always has every array, the consolidated metadata and the root attributes
from its first moment, because it appears by one rename. Two writers that both found `path`
empty race for that rename; the loser removes its copy and raises StoreConflictError saying
what is there now (docs/guarantees.md, "A second writer").
"""

from __future__ import annotations

import errno
import os
import shutil
import uuid
import warnings
from pathlib import Path
from typing import Any

import zarr
from zarr.codecs import BytesCodec, ZstdCodec

from devinterp_ui.store import liveness
from devinterp_ui.store.cache import IDENTITY_ATTRS, StoreConflictError, check_existing
from devinterp_ui.store.cleanup import building_name, remove_stale_builds
from devinterp_ui.store.schema import ArraySpec


def create_store(path: Path, schema: dict[str, ArraySpec], attrs: dict[str, Any]) -> None:
    """Create the store at `path` with every array of `schema` and root `attrs`, heartbeat
    included. Raises StoreConflictError when another writer put a store at `path` meanwhile;
    an OSError (e.g. a full disk) propagates. Either way nothing of this call stays behind."""
    remove_stale_builds(path)
    building = building_name(path, os.getpid(), uuid.uuid4().hex[:8])
    try:
        root = zarr.open_group(str(building), mode="w", zarr_format=3)
        for spec in schema.values():
            root.create_array(
                spec.name,
                shape=spec.shape,
                chunks=spec.chunks if spec.shape else "auto",
                dtype=spec.dtype,
                fill_value=spec.fill_value,
                dimension_names=spec.dims,
                # zarr's default, spelled out: ChunkFiles writes row chunks with exactly these.
                serializer=BytesCodec(),
                compressors=ZstdCodec(level=0),
            )
        root.attrs.update(attrs)
        with warnings.catch_warnings():
            # Consolidated metadata is not in the v3 spec yet, but xarray reads it and warns
            # (and opens slower) without it; the layout never changes after creation.
            warnings.simplefilter("ignore")
            zarr.consolidate_metadata(str(building))
        liveness.beat(building)
        _move_into_place(path, building, attrs)
    finally:
        shutil.rmtree(building, ignore_errors=True)  # gone already once renamed


def _move_into_place(path: Path, building: Path, attrs: dict[str, Any]) -> None:
    try:
        if path.is_dir():
            path.rmdir()  # only ever an empty directory here (see store.cache)
        os.replace(building, path)
        return
    except FileNotFoundError:
        pass  # another writer removed the empty directory first: try the rename again
    except OSError as exc:
        if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST):
            raise
        return _lost_race(path, attrs)
    try:
        os.replace(building, path)
    except OSError as exc:
        if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST):
            raise
        _lost_race(path, attrs)


def _lost_race(path: Path, attrs: dict[str, Any]) -> None:
    """Another writer renamed its store into `path` after this one's check: say what is
    there (a different run, or the same run still being written) and give up."""
    identity = {k: attrs.get(k) for k in IDENTITY_ATTRS}
    if check_existing(path, identity):
        raise StoreConflictError(
            f"output_path {str(path)!r} was filled by another writer with this same "
            "run while this one was preparing it; call sample() again to reuse it."
        )
    raise StoreConflictError(  # check_existing raises for anything else; kept for safety
        f"output_path {str(path)!r} was created by another writer meanwhile."
    )
