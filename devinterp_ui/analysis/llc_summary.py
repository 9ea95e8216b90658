"""The final LLC of a run, as a small record kept in its store's root attrs (`llc_summary`).

A list of a thousand runs cannot open a thousand stores to show their LLCs, so the sampler
records the summary once, when the run ends (`Runner` writes it with the last marker): the
numbers `compute_llc` gives for the store at its own burn-in, the one estimator. A reader takes
it from the root `zarr.json` it already reads (`recorded_llc_summary`); for a store without one
(written before this record existed, or by a writer that was killed) `store_llc_summary`
computes the same record from the store's arrays.

    {"llc_mean": float | None, "llc_std": float | None,    # None: not finite (no usable chain)
     "llc_per_chain": [float | None] * C, "n_steps_used": [int] * C,
     "num_burnin_steps": int, "n_beta": float}
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import xarray as xr

from devinterp_ui.analysis.llc import compute_llc

__all__ = ["LLC_SUMMARY", "llc_summary", "recorded_llc_summary", "store_llc_summary"]

LLC_SUMMARY = "llc_summary"  # the root attribute's name


def llc_summary(tree: xr.DataTree | xr.Dataset) -> dict[str, Any]:
    """`compute_llc(tree)` at the run's own burn-in, as JSON-ready numbers (NaN -> None, as
    JSON has no NaN). Raises what `compute_llc` raises (KeyError for a tree that is not a run)."""
    llc = compute_llc(tree)
    return {
        "llc_mean": _finite(llc["llc_mean"]),
        "llc_std": _finite(llc["llc_std"]),
        "llc_per_chain": [_finite(v) for v in llc["llc_per_chain"].values],
        "n_steps_used": [int(n) for n in llc["n_steps_used"].values],
        "num_burnin_steps": int(llc.attrs["num_burnin_steps"]),
        "n_beta": float(llc.attrs["n_beta"]),
    }


def store_llc_summary(path: str | Path) -> dict[str, Any]:
    """`llc_summary` of the store at `path`, read from its arrays (loss rows and init loss).
    Raises FileNotFoundError / KeyError / ValueError for a path that holds no sample store."""
    tree = xr.open_datatree(str(path), engine="zarr")
    try:
        return llc_summary(tree)
    finally:
        tree.close()


def recorded_llc_summary(attrs: dict[str, Any]) -> dict[str, Any] | None:
    """The summary recorded in root `attrs`, or None when there is none (or it is malformed:
    a reader then computes it rather than trust it)."""
    summary = attrs.get(LLC_SUMMARY)
    if not isinstance(summary, dict):
        return None
    for key in ("llc_mean", "llc_std"):
        value = summary.get(key)
        if value is not None and not isinstance(value, (int, float)):
            return None
    return summary


def _finite(value: Any) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None
