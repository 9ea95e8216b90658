"""The default executor: worker processes that split the cores, and survive a killed worker."""

from __future__ import annotations

import concurrent.futures as cf
import os

from worker_faults import assert_stores_whole, kill_a_running_cell

from devinterp_ui.study import LocalExecutor, sweep
from devinterp_ui.study.executors import cpu_count

GRID = {"lr": [1e-3, 2e-3], "n_beta": [10.0]}


def test_default_pool_runs_cells_in_worker_processes_with_cores_split_between_them(
    model, tokens, settings, tmp_path
):
    executor = LocalExecutor(max_workers=2)
    study = sweep(
        model, tokens, grid=GRID, output_dir=tmp_path / "s", executor=executor, **settings
    )
    assert study.wait(timeout=300)
    executor.shutdown()
    outcomes = study.outcomes.values()
    assert {o["status"] for o in outcomes} == {"completed"}
    assert all(o["pid"] != os.getpid() for o in outcomes)
    assert {o["torch_threads"] for o in outcomes} == {max(1, cpu_count() // 2)}


def test_without_an_executor_the_study_makes_and_closes_its_own(model, tokens, settings, tmp_path):
    study = sweep(
        model, tokens, grid={"lr": [1e-3], "n_beta": [10.0]}, output_dir=tmp_path / "s", **settings
    )
    assert isinstance(study._executor, LocalExecutor) and study._executor.in_process
    assert study.wait(timeout=120)
    assert study.progress.done == 1


def test_any_concurrent_futures_executor_works(model, tokens, settings, tmp_path):
    with cf.ThreadPoolExecutor(2) as pool:
        study = sweep(
            model, tokens, grid=GRID, output_dir=tmp_path / "s", executor=pool, **settings
        )
        assert study.wait(timeout=120)
    assert (study.result()["status"] == "completed").all()


def test_a_killed_local_worker_reruns_its_cell_in_a_fresh_pool_and_the_others_finish(
    model, tokens, settings, tmp_path
):
    out = tmp_path / "s"
    study = sweep(
        model,
        tokens,
        grid={"lr": [1e-3, 2e-3, 3e-3], "n_beta": [10.0]},
        output_dir=out,
        executor=LocalExecutor(max_workers=2),
        **{**settings, "num_draws": 800, "flush_interval": 0.5},
    )
    killed = kill_a_running_cell(out)
    assert study.wait(timeout=400)
    result = study.result()
    assert result["status"].values.ravel().tolist() == ["completed"] * 3, (killed, study.outcomes)
    assert_stores_whole(out)
