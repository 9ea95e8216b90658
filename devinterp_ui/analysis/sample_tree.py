"""Read-only access to a sample tree (the `xr.DataTree` that `sample()` returns or a store opens).

Post-processing never writes to a tree. Everything here takes the tree as given (in memory or
lazily backed by Zarr) and fails with an error that names what is missing and how to get it.
"""

from __future__ import annotations

import json
from typing import Any

import xarray as xr

from devinterp_ui.store.schema import safe_name

__all__ = [
    "observable_ids",
    "require_arrays",
    "root_dataset",
    "sampler_setting",
    "tree_n_beta",
]


def root_dataset(tree: xr.DataTree | xr.Dataset) -> xr.Dataset:
    """The root node's arrays and attrs (STORE.md); a plain Dataset is accepted as is."""
    if isinstance(tree, xr.Dataset):
        return tree
    if isinstance(tree, xr.DataTree):
        return tree.to_dataset()
    raise TypeError(
        f"expected the xr.DataTree returned by sample() (or opened with "
        f"xr.open_datatree(path, engine='zarr')), got {type(tree).__name__}"
    )


def _metadata(ds: xr.Dataset) -> dict[str, Any]:
    meta = ds.attrs.get("metadata", {})
    # Some writers store attrs as JSON text rather than a nested mapping.
    if isinstance(meta, str):
        meta = json.loads(meta)
    return meta if isinstance(meta, dict) else {}


def sampler_setting(ds: xr.Dataset, name: str, default: Any = None) -> Any:
    """`metadata["config"]["sampler"][name]`, or `default` when the tree does not record it."""
    sampler = _metadata(ds).get("config", {}).get("sampler", {}) or {}
    value = sampler.get(name, default)
    return default if value is None else value


def tree_n_beta(ds: xr.Dataset) -> float:
    """The run's inverse temperature: metadata config sampler `n_beta`, else the `n_beta` array.

    Raises KeyError when neither is present.
    """
    value = sampler_setting(ds, "n_beta")
    if value is not None:
        return float(value)
    if "n_beta" in ds.variables:
        return float(ds["n_beta"].values)
    raise KeyError(
        "the sample tree records no n_beta: expected root attr "
        "metadata['config']['sampler']['n_beta'] or a scalar array 'n_beta' (both are written "
        "by sample()); add one to a hand-built tree."
    )


def require_arrays(ds: xr.Dataset, names: list[str], needed_for: str) -> None:
    """Raise KeyError listing the arrays of `names` that `ds` lacks, and what has them."""
    missing = [n for n in names if n not in ds.variables]
    if missing:
        have = sorted(str(v) for v in ds.data_vars)
        raise KeyError(
            f"{needed_for} needs array(s) {missing} in the sample tree, which has {have}. "
            "Pass the tree returned by sample() (or opened from its store) for a run that "
            "wrote them."
        )


def observable_ids(ds: xr.Dataset) -> list[str]:
    """Identifier-safe names of the observables in the tree (from its `loss_{obs}` arrays), sorted."""
    return sorted(
        str(v)[len("loss_") :]
        for v in ds.data_vars
        if str(v).startswith("loss_") and str(v) != "sampling_loss"
    )


def to_observable_id(name: str) -> str:
    """An observable's user-facing name as the store spells it (see STORE.md)."""
    return safe_name(name)
