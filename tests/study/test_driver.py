"""The driver record `.study/driver-<run_id>.json`: cells a study run has not started read
"queued" while the process driving it lives, and "abandoned" once it ended or died."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from devinterp_ui.live import StoreReader
from devinterp_ui.store.liveness import HEARTBEAT_TIMEOUT
from devinterp_ui.study import read_study, sweep
from devinterp_ui.study.driver import driver_path, read_driver
from devinterp_ui.study.grid import grid_cells
from devinterp_ui.study.manifest import BOOKKEEPING, claim_output_dir
from devinterp_ui.study.stores import store_state

TESTS = Path(__file__).resolve().parents[1]
ROOT = TESTS.parent

# Two quick cells, then two long ones: the first long cell is killed mid-run, the last never
# starts. A single in-process worker runs them in grid order.
CHILD = textwrap.dedent(
    """
    import sys
    import torch
    from tiny_models import TinyLM
    from devinterp_ui.study import LocalExecutor, sweep

    torch.manual_seed(0)
    tokens = torch.randint(0, 11, (64, 6), generator=torch.Generator().manual_seed(1))
    study = sweep(
        TinyLM(), tokens, grid={"num_draws": [12, 20000], "n_beta": [10.0, 20.0]},
        output_dir=sys.argv[1], executor=LocalExecutor(max_workers=1), lr=1e-3,
        num_chains=2, batch_size=8, num_init_loss_batches=2, flush_interval=0.2,
    )
    study.wait()
    """
)
QUICK = ["num_draws=12__n_beta=10.0", "num_draws=12__n_beta=20.0"]
KILLED, NEVER = "num_draws=20000__n_beta=10.0", "num_draws=20000__n_beta=20.0"


def statuses(out: Path) -> dict[str, str]:
    table = read_study(out)
    return {
        Path(store).name.removesuffix(".zarr"): status
        for store, status in zip(
            table["store"].values.ravel(), table["status"].values.ravel(), strict=True
        )
    }


def wait_for_rows(store: Path, proc: subprocess.Popen, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stderr.read().decode()
        try:
            rows = StoreReader(store, metrics=False).status().steps_written
        except (FileNotFoundError, RuntimeError, KeyError, ValueError):
            rows = []
        if rows and min(rows) > 0:
            return
        time.sleep(0.1)
    raise TimeoutError(f"{store.name} wrote no rows")


def a_study_without_stores(out: Path, run_id: str = "run-1") -> None:
    """study.json naming two cells and the run `run_id`, as a driver writes it before any cell
    has started."""
    cells = grid_cells({"lr": [1e-3, 2e-3], "n_beta": [10.0]})
    claim_output_dir(out, "sweep", {"dims": ["lr", "n_beta"]}, cells, run_id=run_id)


def write_record(out: Path, run_id: str, beat_age: float, **fields) -> None:
    path = driver_path(out / BOOKKEEPING, run_id)
    record = {"run_id": run_id, "pid": 4242, "host": "node-17.cluster", "ended": False}
    path.write_text(json.dumps({**record, **fields}))
    beat = time.time() - beat_age
    os.utime(path, (beat, beat))


def test_a_killed_driver_leaves_its_unstarted_cells_abandoned(tmp_path):
    out = tmp_path / "sweep"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(TESTS)])}
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(out)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        wait_for_rows(out / f"{KILLED}.zarr", proc)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    record = read_driver(out / BOOKKEEPING, json.loads((out / "study.json").read_text())["run_id"])
    assert record["pid"] == proc.pid and record["ended"] is False
    killed_status = store_state(out / f"{KILLED}.zarr").status
    assert killed_status in ("killed", "stale")  # its writer, the driver's thread, is gone
    deadline = time.monotonic() + 5.0
    while statuses(out)[NEVER] != "abandoned" and time.monotonic() < deadline:
        time.sleep(0.2)
    assert statuses(out) == {
        QUICK[0]: "completed",
        QUICK[1]: "completed",
        KILLED: killed_status,
        NEVER: "abandoned",
    }


def test_unstarted_cells_read_queued_while_their_driver_runs(
    model, tokens, settings, here, tmp_path
):
    out = tmp_path / "sweep"
    study = sweep(
        model,
        tokens,
        grid={"lr": [1e-3, 2e-3], "n_beta": [10.0]},
        output_dir=out,
        executor=here,
        **{**settings, "num_draws": 3000, "flush_interval": 0.5},
    )
    try:
        first, second = (c.name for c in study.cells)
        deadline = time.monotonic() + 60
        while statuses(out)[first] == "queued" and time.monotonic() < deadline:
            time.sleep(0.1)
        record = read_driver(out / BOOKKEEPING, study.run_id)
        assert (record["pid"], record["host"], record["ended"]) == (
            os.getpid(),
            socket.gethostname(),
            False,
        )
        assert statuses(out)[second] == "queued"
    finally:
        study.stop()
        assert study.wait(timeout=60)
    assert read_driver(out / BOOKKEEPING, study.run_id)["ended"] is True
    assert statuses(out)[second] == "stopped"  # the stop file wins over "abandoned"


def test_a_directory_without_a_driver_record_reads_queued(tmp_path):
    """A study directory from before driver records: nothing says whether anyone will start
    its cells."""
    a_study_without_stores(tmp_path)
    assert set(statuses(tmp_path).values()) == {"queued"}


def test_a_driver_that_ended_leaves_no_cell_queued(tmp_path):
    a_study_without_stores(tmp_path)
    write_record(tmp_path, "run-1", beat_age=0.0, host=socket.gethostname(), ended=True)
    assert set(statuses(tmp_path).values()) == {"abandoned"}


def test_another_hosts_driver_is_alive_while_its_heartbeat_is_fresh(tmp_path):
    a_study_without_stores(tmp_path)
    write_record(tmp_path, "run-1", beat_age=1.0)
    assert set(statuses(tmp_path).values()) == {"queued"}
    write_record(tmp_path, "run-1", beat_age=HEARTBEAT_TIMEOUT + 5.0)
    assert set(statuses(tmp_path).values()) == {"abandoned"}


def test_a_finished_study_marks_its_driver_record_ended(model, tokens, settings, here, tmp_path):
    study = sweep(
        model,
        tokens,
        grid={"lr": [1e-3], "n_beta": [10.0]},
        output_dir=tmp_path,
        **settings,
        executor=here,
    )
    assert study.wait(timeout=120)
    record = read_driver(tmp_path / BOOKKEEPING, study.run_id)
    assert record["ended"] is True and record["pid"] == os.getpid()
    assert not list((tmp_path / BOOKKEEPING).glob(".*.tmp"))  # written by rename
