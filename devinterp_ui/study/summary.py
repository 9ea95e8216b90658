"""One row of a study's result from one cell's store: LLC, its uncertainty and a health verdict.

The figures come from the analysis package's `diagnose` (LLC per chain, R-hat, ESS, MCSE via
arviz-stats) and `health` / `worst_severity` (the flags). Where those are not available (an
older analysis package), the LLC comes from `compute_llc`, R-hat/ESS/MCSE are NaN and the
severity is "unknown", so a study still runs and says plainly what it could not judge.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import xarray as xr

from devinterp_ui.analysis.llc import compute_llc

try:  # the tuning assistant's diagnostics (interface in the analysis package's docs)
    from devinterp_ui.analysis import diagnose, health, worst_severity
except ImportError:  # pragma: no cover - exercised only without the diagnostics
    diagnose = health = worst_severity = None

HAVE_DIAGNOSTICS = diagnose is not None
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


def summarize_tree(tree: xr.DataTree) -> dict[str, Any]:
    """{llc_mean, llc_std (std over chains), mcse, rhat, ess (bulk), severity, flags} of a
    sample tree (complete or not: unwritten rows are skipped). flags: comma-joined codes."""
    if HAVE_DIAGNOSTICS:
        try:
            return _from_diagnostics(diagnose(tree), health(tree))
        except (ValueError, KeyError, IndexError, ZeroDivisionError):
            pass  # too few rows to diagnose: fall back to the plain estimate
    out = empty_summary()
    llc = compute_llc(tree)
    out["llc_mean"] = _scalar(llc["llc_mean"])
    out["llc_std"] = _scalar(llc["llc_std"])
    return out


def summarize_rows(steps: xr.Dataset) -> dict[str, Any]:
    """The same row from the step table a `StoreReader` accumulated (a running cell).

    steps: Dataset over `row` with coords chain, step and the reader's running `llc`
        (`NewRows.steps` concatenated), with attrs `settings` (the reader's `config`) and
        `chain_status` (`NewRows.status.chain_status`) for `diagnose`.
    """
    if HAVE_DIAGNOSTICS:
        try:
            diagnostics = diagnose(steps)
            return _from_diagnostics(diagnostics, health(diagnostics))
        except (ValueError, KeyError, IndexError, ZeroDivisionError):
            pass
    out = empty_summary()
    if steps.sizes.get("row", 0) == 0:
        return out
    chain = steps["chain"].values
    llc = steps["llc"].values
    # The reader's llc is each chain's running estimate: its last finite value is the chain's.
    last = [llc[(chain == c) & np.isfinite(llc)][-1:] for c in np.unique(chain)]
    per_chain = np.concatenate(last) if last else np.zeros(0)
    if per_chain.size:
        out["llc_mean"] = float(per_chain.mean())
        out["llc_std"] = float(per_chain.std())
    return out


def _from_diagnostics(diagnostics: xr.Dataset, flags: list) -> dict[str, Any]:
    return {
        "llc_mean": _scalar(diagnostics["llc_mean"]),
        "llc_std": _scalar(diagnostics["llc_std"]),
        "mcse": _scalar(diagnostics["mcse"]),
        "rhat": _scalar(diagnostics["rhat"]),
        "ess": _scalar(diagnostics["ess_bulk"]),
        "severity": worst_severity(flags),
        "flags": ",".join(dict.fromkeys(f.code for f in flags)),
    }


def _scalar(value: Any) -> float:
    try:
        return float(np.asarray(value))
    except (TypeError, ValueError):
        return math.nan
