"""One row of a study's result from one cell's store: LLC, its uncertainty and a health verdict.

The figures are the analysis package's: `diagnose` (the LLC as `compute_llc` gives it, R-hat,
ESS and MCSE via arviz-stats) and `health` / `worst_severity` (the flags, docs/tuning.md).
A cell with too few rows to diagnose (a run stopped at its first steps) gets the plain
`compute_llc` estimate, NaN for the rest and severity "unknown".
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import xarray as xr

from devinterp_ui.analysis import compute_llc, diagnose, health, worst_severity

UNKNOWN = "unknown"  # severity when no health verdict could be formed
SEVERITY_ORDER = ("ok", "info", "warn", "error")
FIELDS = ("llc_mean", "llc_std", "mcse", "rhat", "ess", "severity", "flags")


def empty_summary() -> dict[str, Any]:
    """The row of a cell without usable rows yet (queued, or failed before sampling)."""
    nan = math.nan
    return {
        "llc_mean": nan,
        "llc_std": nan,
        "mcse": nan,
        "rhat": nan,
        "ess": nan,
        "severity": UNKNOWN,
        "flags": "",
    }


def summarize(source: xr.DataTree | xr.Dataset, chain_status=None) -> dict[str, Any]:
    """{llc_mean, llc_std (std over chains), mcse, rhat, ess (bulk), severity, flags} of a
    sample tree (complete or not: unwritten rows are skipped) or of a running store's
    `StoreReader.accumulated()` (pass `chain_status=` from the reader's last status).
    flags: the health codes, comma-joined, in the order `health` reports them."""
    try:
        diagnostics = (
            diagnose(source)
            if chain_status is None
            else diagnose(source, chain_status=chain_status)
        )
    except (ValueError, KeyError, IndexError, ZeroDivisionError):
        return _plain(source)  # too few rows to diagnose yet
    try:
        flags = health(source, diagnostics=diagnostics)  # the tree's traces, diagnosed once
    except (ValueError, KeyError, IndexError, ZeroDivisionError):
        flags = None  # a run's first rows (one draw per chain) can be too few to judge
    return {
        "llc_mean": _scalar(diagnostics["llc_mean"]),
        "llc_std": _scalar(diagnostics["llc_std"]),
        "mcse": _scalar(diagnostics["mcse"]),
        "rhat": _scalar(diagnostics["rhat"]),
        "ess": _scalar(diagnostics["ess_bulk"]),
        "severity": UNKNOWN if flags is None else worst_severity(flags),
        "flags": "" if flags is None else ",".join(dict.fromkeys(f.code for f in flags)),
    }


def _plain(source) -> dict[str, Any]:
    out = empty_summary()
    try:
        llc = compute_llc(source)
    except (ValueError, KeyError, IndexError):
        return out
    out["llc_mean"] = _scalar(llc["llc_mean"])
    out["llc_std"] = _scalar(llc["llc_std"])
    return out


def _scalar(value: Any) -> float:
    try:
        return float(np.asarray(value))
    except (TypeError, ValueError):
        return math.nan
