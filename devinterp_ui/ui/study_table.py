"""The rows a Studies view draws: one per cell, finished cells from their stores, running
cells from a `StoreReader` that follows them (their partial LLC), refreshed on each poll."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd

from devinterp_ui.live import StoreReader
from devinterp_ui.study.manifest import read_manifest, unstarted_status
from devinterp_ui.study.result import RowCache, manifest_cells
from devinterp_ui.study.summary import summarize

LIVE = ("running", "starting")  # statuses whose rows are still growing


class StudyTable:
    """Reads the study in `output_dir` (its study.json and cell stores) into a DataFrame.

    Columns: the grid dims (or `step`), cell, store, status, partial (True while the row comes
    from a running cell's rows so far), llc_mean, llc_std, mcse, rhat, ess, severity, flags.
    """

    def __init__(self, output_dir: str | Path):
        self.output_dir = Path(output_dir)
        self.kind: str | None = None
        self.dims: list[str] = []
        self._cache = RowCache()
        self._readers: dict[str, StoreReader] = {}

    def read(self) -> pd.DataFrame:
        manifest = read_manifest(self.output_dir) if self.output_dir.is_dir() else None
        if manifest is None:
            self.kind, self.dims = None, []
            return pd.DataFrame()
        cells = manifest_cells(manifest)
        self.kind = manifest["kind"]
        self.dims = list(cells[0].coords) if cells else []
        unstarted = unstarted_status(self.output_dir, manifest)
        rows = []
        for cell in cells:
            store = self.output_dir / cell.store_name()
            row = self._cache.row(store, summarize_live=False)
            row["partial"] = False
            if row["status"] == "absent":
                row["status"] = unstarted
            elif row["status"] in LIVE:
                row.update(self._partial(cell.name, store))
            else:
                self._forget(cell.name)
            rows.append({**cell.coords, "cell": cell.name, **row})
        return pd.DataFrame(rows)

    def _partial(self, name: str, store: Path) -> dict[str, Any]:
        """The running cell's summary from every row written so far (read incrementally)."""
        reader = self._readers.get(name)
        if reader is None:
            try:
                reader = self._readers[name] = StoreReader(store, metrics=False)
            except FileNotFoundError:
                return {}
        try:
            new = reader.read_new()
        except (OSError, ValueError, KeyError, RuntimeError):
            return {}
        rows = reader.accumulated()
        if rows.sizes.get("step", 0) == 0:
            return {"partial": True}
        out = summarize(rows, chain_status=list(new.status.chain_status))
        if not math.isfinite(out["llc_mean"]):
            out.pop("llc_mean")
        return {**out, "partial": True}

    def _forget(self, name: str) -> None:
        self._readers.pop(name, None)
