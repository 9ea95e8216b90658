"""Studies on a real Dask cluster: distributed.LocalCluster with two worker processes.

Stores go to a path every worker sees (here the test's tmp dir; on a cluster a shared
filesystem). One cluster serves the module's tests.
"""

from __future__ import annotations

import functools
import os
import time

import pytest

distributed = pytest.importorskip("distributed")

from worker_faults import assert_stores_whole, kill_a_running_cell  # noqa: E402

from devinterp_ui.study import llc_trajectory, sweep  # noqa: E402


@pytest.fixture(scope="module")
def client():
    cluster = distributed.LocalCluster(
        n_workers=2, processes=True, threads_per_worker=1, dashboard_address=None
    )
    client = distributed.Client(cluster)
    yield client
    client.close()
    cluster.close()


def test_a_sweep_runs_on_the_dask_workers_with_one_torch_thread_per_task(
    client, model, tokens, settings, tmp_path
):
    study = sweep(
        model,
        tokens,
        grid={"lr": [1e-3, 2e-3], "n_beta": [10.0]},
        output_dir=tmp_path / "s",
        executor=client.get_executor(),
        **settings,
    )
    assert study.wait(timeout=300)
    assert (study.result()["status"] == "completed").all()
    workers = set(client.run(os.getpid).values())
    outcomes = list(study.outcomes.values())
    assert {o["pid"] for o in outcomes} <= workers and os.getpid() not in workers
    assert {o["torch_threads"] for o in outcomes} == {1}


def test_the_demo_trajectory_runs_on_the_dask_workers(client, tmp_path):
    from devinterp_ui.demo import load_demo

    demo = load_demo("tiny_lm")
    steps = demo.steps[2:4]
    study = llc_trajectory(
        {s: functools.partial(demo.model_at, s) for s in steps},
        demo.datasets["train"][:256],
        output_dir=tmp_path / "t",
        executor=client.get_executor(),
        **{
            **demo.sampler_settings,
            "num_chains": 2,
            "num_draws": 8,
            "batch_size": 8,
            "num_init_loss_batches": 4,
        },
    )
    assert study.wait(timeout=300)
    result = study.result()
    assert result["step"].values.tolist() == steps
    assert (result["status"] == "completed").all()
    assert result["llc_mean"].notnull().all()


def test_a_killed_worker_costs_only_its_own_cell(client, model, tokens, settings, tmp_path):
    out = tmp_path / "s"
    study = sweep(
        model,
        tokens,
        grid={"lr": [1e-3, 2e-3, 3e-3], "n_beta": [10.0]},
        output_dir=out,
        executor=client.get_executor(),
        **{**settings, "num_draws": 800, "flush_interval": 0.5},
    )
    killed = kill_a_running_cell(out)
    assert study.wait(timeout=400)
    result = study.result()
    status = {c.name: str(result["status"].sel(c.coords).item()) for c in study.cells}
    assert status.pop(killed) in ("completed", "failed"), study.outcomes  # retried, or says so
    assert set(status.values()) == {"completed"}, study.outcomes
    assert_stores_whole(out)


def wait_for_running_cells(out, n: int, timeout: float = 180.0) -> list[str]:
    """Names of `n` cells that have written rows (their workers are mid-run)."""
    from devinterp_ui.live import StoreReader

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        running = []
        for store in sorted(out.glob("*.zarr")):
            try:
                rows = StoreReader(store, metrics=False).status().steps_written
            except (FileNotFoundError, RuntimeError, KeyError, ValueError):
                continue
            if rows and min(rows) > 0:
                running.append(store.name.removesuffix(".zarr"))
        if len(running) >= n:
            return running
        time.sleep(0.1)
    raise TimeoutError(f"fewer than {n} cells started writing rows")


def test_stop_ends_running_and_queued_cells_on_the_dask_workers(
    client, model, tokens, settings, tmp_path
):
    """Two cells run (one per worker), two wait in Dask's queue; stop() ends all four: the
    running ones at their next step with their rows kept, the queued ones without a store."""
    out = tmp_path / "s"
    study = sweep(
        model,
        tokens,
        grid={"lr": [1e-3, 2e-3], "n_beta": [10.0, 20.0]},
        output_dir=out,
        executor=client.get_executor(),
        **{**settings, "num_draws": 100_000, "flush_interval": 0.5},
    )
    running = wait_for_running_cells(out, 2)
    study.stop()
    assert study.wait(timeout=120), study  # returns: nothing waits for 100 000 draws
    progress = study.progress
    assert progress.finished and progress.stopped == 4 and progress.failed == 0, progress
    result = study.result()
    status = {c.name: str(result["status"].sel(c.coords).item()) for c in study.cells}
    assert set(status.values()) == {"stopped"}, status
    assert sorted(p.name.removesuffix(".zarr") for p in out.glob("*.zarr")) == sorted(running)
    for name in running:  # readable, says stopped, kept its rows, far from done
        tree = study.open(name)
        marker = tree.attrs["progress"]
        assert marker["status"] == "stopped" and tree.attrs.get("completed") != 1
        assert 0 < min(marker["chains"]["steps_written"]) < marker["total_steps"]
        tree.close()
    assert_stores_whole(out)
    # The workers are free again: nothing of the stopped study still runs on them.
    assert not any(client.processing().values()), client.processing()
