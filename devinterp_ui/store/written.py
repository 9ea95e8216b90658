"""The marker is the truth: rows beyond its counts are not part of the run.

A writer killed between a chunk write and the marker write (or one whose disk filled up) can
leave a few rows on disk past `steps_written`/`draws_written`: whole rows, but rows the marker
never counted, and a reader cannot know they are complete. Every consumer in this package
(`StoreReader`, `compute_llc`, the dashboard) reads only counted rows; anyone reading a store
with xarray directly can do the same with `mask_unwritten`.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from devinterp_ui.store.progress import rows_written

ROW_DIMS = ("step", "draw")


def written_mask(attrs: dict, dim: str, num_chains: int, length: int) -> xr.DataArray | None:
    """(chain, dim) bool: True where the marker in root `attrs` counts the row; None when the
    store has no marker (every row counts, as in a devinterp 2.x store)."""
    counts = rows_written(attrs)
    if counts is None:
        return None
    written = np.asarray(counts[ROW_DIMS.index(dim)], dtype=np.int64)
    if written.shape != (num_chains,):
        raise ValueError(
            f"the progress marker counts rows of {written.size} chains but the arrays have "
            f"{num_chains}; the store is inconsistent."
        )
    return xr.DataArray(np.arange(length)[None, :] < written[:, None], dims=("chain", dim))


def mask_unwritten(tree: xr.DataTree | xr.Dataset) -> xr.Dataset:
    """The root dataset of a sample tree with every float row beyond the marker set to NaN.

    Applies to arrays whose first dims are (chain, step) or (chain, draw); integer arrays
    (token ids) are left as stored, so read them only below the marker's counts. Loads the
    masked arrays into memory. A tree without a marker is returned unchanged.
    """
    ds = tree.to_dataset() if isinstance(tree, xr.DataTree) else tree
    out = ds.copy()
    for name, var in ds.data_vars.items():
        if var.dims[:1] != ("chain",) or len(var.dims) < 2 or var.dims[1] not in ROW_DIMS:
            continue
        if var.dtype.kind != "f":
            continue
        mask = written_mask(ds.attrs, var.dims[1], var.sizes["chain"], var.sizes[var.dims[1]])
        if mask is not None:
            out[name] = var.where(mask)
    return out
