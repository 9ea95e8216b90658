"""Shared by the executor tests: wait for a cell to be mid-run, then kill its worker process."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import numpy as np
import xarray as xr

from devinterp_ui import compute_llc
from devinterp_ui.live import StoreReader


def kill_a_running_cell(output_dir: Path, timeout: float = 120.0) -> str:
    """SIGKILL the worker process of the first cell that has written rows; returns its name."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for claim in sorted((output_dir / ".study").glob("*.claim.json")):
            name = claim.name.removesuffix(".claim.json")
            store = output_dir / f"{name}.zarr"
            try:
                rows = StoreReader(store, metrics=False).status().steps_written
            except (FileNotFoundError, RuntimeError, KeyError, ValueError):
                continue
            if rows and min(rows) > 0:
                os.kill(json.loads(claim.read_text())["pid"], signal.SIGKILL)
                return name
        time.sleep(0.05)
    raise TimeoutError("no cell started writing rows")


def assert_stores_whole(output_dir: Path) -> None:
    """Every store opens; completed ones give a finite LLC over every row; none claims to run."""
    for store in sorted(output_dir.glob("*.zarr")):
        status = StoreReader(store, metrics=False).status()
        assert status.status in ("completed", "killed", "failed", "stopped"), (store, status)
        tree = xr.open_datatree(str(store), engine="zarr")
        llc = compute_llc(tree)
        if status.completed:
            assert np.isfinite(float(llc["llc_mean"])), store
            assert set(status.steps_written) == {status.total_steps}
        tree.close()
