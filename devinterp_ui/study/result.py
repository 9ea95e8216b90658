"""A study's result table: one row per cell read from its store, laid out over the grid dims.

`read_study(output_dir)` works on any study directory (running, finished, from another process),
which is what the dashboard's Studies view and a notebook watching a cluster job use.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from devinterp_ui.study import summary
from devinterp_ui.study.grid import Cell, grid_axes
from devinterp_ui.study.manifest import read_manifest, unstarted_status
from devinterp_ui.study.stores import store_state

NUMERIC = ("llc_mean", "llc_std", "mcse", "rhat", "ess", "wall_time")
TEXT = ("severity", "flags", "status", "store", "error")


class RowCache:
    """Summaries of stores keyed by (status, marker time): a finished cell is read once."""

    def __init__(self):
        self._rows: dict[str, tuple[tuple, dict[str, Any]]] = {}

    def row(self, store: Path, summarize_live: bool = True) -> dict[str, Any]:
        """{llc_mean, llc_std, mcse, rhat, ess, severity, flags, status, wall_time, store}.

        summarize_live=False leaves a running store's figures NaN (a caller that follows its
        rows with a StoreReader computes them incrementally instead of reopening the tree).
        """
        state = store_state(store)
        key = (state.status, state.updated_at)
        hit = self._rows.get(str(store))
        if hit is not None and hit[0] == key:
            return dict(hit[1])
        row = {**summary.empty_summary(), "status": state.status, "store": str(store)}
        row["wall_time"] = (
            state.updated_at - state.started_at
            if state.updated_at is not None and state.started_at is not None
            else math.nan
        )
        row["error"] = ""
        live = state.status in ("running", "starting")
        if state.exists and state.status != "foreign" and (summarize_live or not live):
            row.update(_summarize(store))
        self._rows[str(store)] = (key, row)
        return dict(row)


def _summarize(store: Path) -> dict[str, Any]:
    try:
        tree = xr.open_datatree(str(store), engine="zarr")
    except (OSError, ValueError, KeyError) as exc:
        return {"error": f"unreadable store: {exc}"}
    try:
        return summary.summarize(tree)
    except (OSError, ValueError, KeyError) as exc:
        return {"error": f"cannot summarize: {exc}"}
    finally:
        tree.close()


def assemble(
    kind: str, cells: Sequence[Cell], rows: Mapping[str, Mapping[str, Any]], **attrs: Any
) -> xr.Dataset:
    """The result Dataset over the cells' dims (a sweep's grid keys, or `step`).

    Data vars (each over the dims): llc_mean, llc_std (std over chains), mcse (ESS-based
    standard error of llc_mean), rhat, ess (bulk), wall_time (seconds from the store's start to
    its last write) as float64 (NaN where unknown); severity ("ok"/"info"/"warn"/"error"/
    "unknown"), flags (comma-joined health codes), status (queued, running, completed, stopped,
    failed, killed, stale, abandoned, absent, ...), store (path), error (text) as strings. Grid points
    without a cell (a directory's cells need not fill a product) read status "absent".
    """
    axes = grid_axes(cells)
    dims = list(axes)
    shape = tuple(len(v) for v in axes.values())
    data = {name: np.full(shape, np.nan) for name in NUMERIC}
    text = {name: np.full(shape, "", dtype=object) for name in TEXT}
    text["status"][...] = "absent"
    text["severity"][...] = summary.UNKNOWN
    for cell in cells:
        row = rows.get(cell.name)
        if row is None:
            continue
        index = tuple(axes[d].index(cell.coords[d]) for d in dims)
        for name in NUMERIC:
            value = row.get(name, math.nan)
            data[name][index] = math.nan if value is None else float(value)
        for name in TEXT:
            text[name][index] = str(row.get(name) or ("" if name != "severity" else "unknown"))
    variables = {n: (dims, v) for n, v in data.items()}
    variables.update({n: (dims, v.astype(str)) for n, v in text.items()})
    coords = {d: np.asarray(v) for d, v in axes.items()}
    return xr.Dataset(
        variables,
        coords=coords,
        attrs={
            "kind": kind,
            "diagnostics": "devinterp_ui.analysis.diagnose and health",
            **{k: str(v) for k, v in attrs.items()},
        },
    )


def manifest_cells(manifest: Mapping[str, Any]) -> list[Cell]:
    return [Cell(c["name"], dict(c["coords"])) for c in manifest.get("cells", [])]


def read_study(output_dir: str | Path, cache: RowCache | None = None) -> xr.Dataset:
    """The result of the study in `output_dir` as its stores say now (see `assemble`).

    Raises FileNotFoundError when `output_dir` holds no study.json.
    """
    output_dir = Path(output_dir)
    manifest = read_manifest(output_dir)
    if manifest is None:
        raise FileNotFoundError(
            f"no study in {str(output_dir)!r} (no study.json); pass the output_dir given to "
            "sweep() or llc_trajectory()."
        )
    cache = cache or RowCache()
    cells = manifest_cells(manifest)
    unstarted = unstarted_status(output_dir, manifest)
    rows = {}
    for cell in cells:
        row = cache.row(output_dir / cell.store_name())
        if row["status"] == "absent":
            row["status"] = unstarted
        rows[cell.name] = row
    return assemble(manifest["kind"], cells, rows, output_dir=output_dir)
