"""Claims and cells left by other hosts: `.study/<cell>.claim.json` says which study run,
process and host writes a cell. A retry of the same run replaces the store a lost worker (here
or on another host) left, but only once that writer is gone; a store of an earlier run is left
alone unless `rerun_incomplete=True`, and never while its writer's heartbeat is fresh.

"Another host" is a real store whose marker is rewritten to name a host and pid that are not
this machine's (what a worker on a cluster node leaves on the shared filesystem); the store's
heartbeat file says how long ago that writer last beat.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import threading
import time
from pathlib import Path

import pytest
from test_sweep import stopped_store

from devinterp_ui.live.reader import StoreReader
from devinterp_ui.study import sweep
from devinterp_ui.study.cell_job import CellJob, read_claim, run_cell
from devinterp_ui.study.manifest import BOOKKEEPING

CELL = "lr=0.002__n_beta=10.0"
GRID = {"lr": [2e-3], "n_beta": [10.0]}
OTHER_HOST, OTHER_PID = "node-17.cluster", 4242


def written_elsewhere(store: Path, heartbeat_age: float) -> None:
    """Make `store` look like a run another host is (or was) writing: marker running, that
    host's pid, its last heartbeat `heartbeat_age` seconds ago."""
    meta = json.loads((store / "zarr.json").read_text())
    marker = meta["attributes"]["progress"]
    marker.update(status="running", host=OTHER_HOST, pid=OTHER_PID, updated_at=time.time())
    marker["chains"]["status"] = ["running"] * len(marker["chains"]["status"])
    (store / "zarr.json").write_text(json.dumps(meta))
    beat = time.time() - heartbeat_age
    os.utime(store / ".heartbeat", (beat, beat))


def claim(out: Path, run_id: str, host: str = OTHER_HOST, pid: int = OTHER_PID) -> Path:
    path = out / BOOKKEEPING / f"{CELL}.claim.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"run_id": run_id, "pid": pid, "host": host, "started_at": 0.0}))
    return path


def job(model, tokens, settings, out: Path, run_id: str) -> CellJob:
    """The job the study sends for CELL (what an engine's retry runs again)."""
    return CellJob(
        name=CELL,
        store=str(out / f"{CELL}.zarr"),
        model=model,
        dataset=tokens,
        observables=None,
        settings={**settings, "lr": 2e-3, "n_beta": 10.0},
        run_id=run_id,
        stop_file=str(out / BOOKKEEPING / f"stop-{run_id}"),
        claim_file=str(out / BOOKKEEPING / f"{CELL}.claim.json"),
    )


def replace_with_a_store_from_elsewhere(model, tokens, settings, here, out, beat_age):
    """A study directory whose one cell holds another host's incomplete run."""
    assert sweep(model, tokens, grid=GRID, output_dir=out, executor=here, **settings).wait(120)
    store = out / f"{CELL}.zarr"
    shutil.rmtree(store)
    stopped_store(model, tokens, settings, store, lr=2e-3, n_beta=10.0)
    written_elsewhere(store, heartbeat_age=beat_age)
    return store


def test_the_claim_names_the_study_run_the_process_and_the_host(
    model, tokens, settings, here, tmp_path
):
    before = time.time()
    study = sweep(model, tokens, grid=GRID, output_dir=tmp_path, executor=here, **settings)
    assert study.wait(timeout=120)
    written = read_claim(tmp_path / BOOKKEEPING / f"{CELL}.claim.json")
    assert set(written) == {"run_id", "pid", "host", "started_at"}
    assert written["run_id"] == study.run_id
    assert (written["pid"], written["host"]) == (os.getpid(), socket.gethostname())
    assert before <= written["started_at"] <= time.time()
    # Written by rename: no temporary file is left beside it (nor beside the driver record).
    assert sorted(p.name for p in (tmp_path / BOOKKEEPING).iterdir()) == sorted(
        [f"{CELL}.claim.json", f"driver-{study.run_id}.json"]
    )


def test_a_retry_replaces_the_store_a_lost_worker_on_another_host_left(
    model, tokens, settings, tmp_path
):
    store = tmp_path / f"{CELL}.zarr"
    stopped_store(model, tokens, settings, store, lr=2e-3, n_beta=10.0)
    written_elsewhere(store, heartbeat_age=60.0)  # that worker is gone: no beat for a minute
    claim(tmp_path, "run-1")
    outcome = run_cell(job(model, tokens, settings, tmp_path, "run-1"))
    assert outcome["status"] == "completed", outcome["error"]
    assert StoreReader(store, metrics=False).status().completed
    now = read_claim(tmp_path / BOOKKEEPING / f"{CELL}.claim.json")
    assert (now["host"], now["pid"]) == (socket.gethostname(), os.getpid())


def test_a_retry_waits_for_the_other_hosts_heartbeat_to_go_silent(
    model, tokens, settings, tmp_path
):
    """The engine gave up on a worker that wrote a moment ago: its store is replaced once its
    heartbeat has been silent for the timeout, not before."""
    store = tmp_path / f"{CELL}.zarr"
    stopped_store(model, tokens, settings, store, lr=2e-3, n_beta=10.0)
    written_elsewhere(store, heartbeat_age=0.0)
    claim(tmp_path, "run-1")
    outcome = run_cell(job(model, tokens, settings, tmp_path, "run-1"))
    assert outcome["status"] == "completed", outcome["error"]
    assert StoreReader(store, metrics=False).status().completed


def test_a_retry_never_deletes_a_store_another_host_is_still_writing(
    model, tokens, settings, tmp_path
):
    store = tmp_path / f"{CELL}.zarr"
    stopped_store(model, tokens, settings, store, lr=2e-3, n_beta=10.0)
    written_elsewhere(store, heartbeat_age=0.0)
    rows_before = StoreReader(store, metrics=False).status().steps_written
    claim(tmp_path, "run-1")
    alive = threading.Event()

    def keep_beating():  # the other host's writer thread, still running
        while not alive.wait(0.5):
            os.utime(store / ".heartbeat")

    beater = threading.Thread(target=keep_beating, daemon=True)
    beater.start()
    try:
        outcome = run_cell(job(model, tokens, settings, tmp_path, "run-1"))
    finally:
        alive.set()
        beater.join()
    assert outcome["status"] == "failed"
    assert "being written" in outcome["error"] and OTHER_HOST in outcome["error"]
    status = StoreReader(store, metrics=False).status()
    assert (status.host, status.steps_written) == (OTHER_HOST, rows_before)


def test_an_earlier_runs_claim_does_not_let_a_retry_delete_its_store(
    model, tokens, settings, tmp_path
):
    """Only the study run that claimed a cell may replace its store from a worker."""
    store = tmp_path / f"{CELL}.zarr"
    stopped_store(model, tokens, settings, store, lr=2e-3, n_beta=10.0)
    written_elsewhere(store, heartbeat_age=60.0)
    claim(tmp_path, "an-earlier-run")
    outcome = run_cell(job(model, tokens, settings, tmp_path, "run-2"))
    assert outcome["status"] == "failed" and "incomplete run" in outcome["error"]
    assert StoreReader(store, metrics=False).status().host == OTHER_HOST


def test_a_dead_hosts_cell_is_left_and_reported_until_rerun_incomplete(
    model, tokens, settings, here, tmp_path
):
    """A job that died on another host (its Slurm allocation ended): its cell reads stale, is
    left as it is with a warning, and `rerun_incomplete=True` replaces it under a new claim."""
    replace_with_a_store_from_elsewhere(model, tokens, settings, here, tmp_path, beat_age=60.0)
    claim(tmp_path, "the-dead-job")

    with pytest.warns(UserWarning, match="rerun_incomplete=True"):
        left = sweep(model, tokens, grid=GRID, output_dir=tmp_path, executor=here, **settings)
    assert left.wait(timeout=60)
    assert left.progress.left == 1
    assert left.result()["status"].item() == "stale"
    assert read_claim(tmp_path / BOOKKEEPING / f"{CELL}.claim.json")["run_id"] == "the-dead-job"

    rerun = sweep(
        model,
        tokens,
        grid=GRID,
        output_dir=tmp_path,
        executor=here,
        rerun_incomplete=True,
        **settings,
    )
    assert rerun.wait(timeout=120)
    assert rerun.result()["status"].item() == "completed"
    assert read_claim(tmp_path / BOOKKEEPING / f"{CELL}.claim.json")["run_id"] == rerun.run_id


def test_rerun_incomplete_leaves_a_cell_whose_other_host_writer_still_beats(
    model, tokens, settings, here, tmp_path
):
    store = replace_with_a_store_from_elsewhere(model, tokens, settings, here, tmp_path, 0.0)
    claim(tmp_path, "a-live-job")
    with pytest.warns(UserWarning, match="incomplete runs"):
        study = sweep(
            model,
            tokens,
            grid=GRID,
            output_dir=tmp_path,
            executor=here,
            rerun_incomplete=True,
            **settings,
        )
    assert study.wait(timeout=60)
    assert study.outcomes[CELL]["note"] == "being written by another process"
    assert StoreReader(store, metrics=False).status().host == OTHER_HOST
