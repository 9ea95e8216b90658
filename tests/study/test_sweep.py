"""A sweep is its cells' ordinary sample() runs, laid out over the grid; nothing is redone."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import xarray as xr

from devinterp_ui import compute_llc, sample
from devinterp_ui.study import read_study, sweep

GRID = {"lr": [1e-3, 3e-3], "n_beta": [10.0, 30.0]}


def run(model, tokens, settings, here, path, grid=GRID, **kw):
    study = sweep(model, tokens, grid=grid, output_dir=path, executor=here, **settings, **kw)
    assert study.wait(timeout=120)
    return study


def test_result_is_over_the_grid_dims_and_each_cell_is_an_ordinary_sample_run(
    model, tokens, settings, here, tmp_path
):
    study = run(model, tokens, settings, here, tmp_path / "sweep")
    result = study.result()
    assert result["llc_mean"].dims == ("lr", "n_beta")
    assert result["lr"].values.tolist() == GRID["lr"]
    assert (result["status"] == "completed").all()
    by_hand = sample(
        model, tokens, {}, lr=3e-3, n_beta=10.0, output_path=tmp_path / "hand.zarr", **settings
    )
    cell = result.sel(lr=3e-3, n_beta=10.0)
    assert float(cell["llc_mean"]) == pytest.approx(float(compute_llc(by_hand)["llc_mean"]))
    assert float(cell["llc_std"]) == pytest.approx(float(compute_llc(by_hand)["llc_std"]))
    assert str(cell["store"].values).endswith("lr=0.003__n_beta=10.0.zarr")
    assert (result["wall_time"] > 0).all()
    # Diagnostics and health come from devinterp_ui.analysis (arviz-stats), as for one run.
    from devinterp_ui.analysis import diagnose, health, worst_severity

    diagnostics = diagnose(by_hand)
    for var, name in (("mcse", "mcse"), ("rhat", "rhat"), ("ess", "ess_bulk")):
        assert np.isfinite(result[var]).all()
        assert float(cell[var]) == pytest.approx(float(diagnostics[name]))
    flags = health(by_hand)
    assert str(cell["severity"].values) == worst_severity(flags)
    assert str(cell["flags"].values) == ",".join(dict.fromkeys(f.code for f in flags))
    assert set(result["severity"].values.ravel()) <= {"ok", "info", "warn", "error"}


def test_open_returns_the_cells_tree_by_name_or_coords(model, tokens, settings, here, tmp_path):
    study = run(model, tokens, settings, here, tmp_path / "sweep")
    by_coords = study.open({"lr": 1e-3, "n_beta": 30.0})
    by_name = study.open("lr=0.001__n_beta=30.0")
    assert isinstance(by_coords, xr.DataTree)
    assert by_coords.attrs["metadata"]["config"]["sampler"]["n_beta"] == 30.0
    assert by_name.attrs["fingerprints"] == by_coords.attrs["fingerprints"]
    with pytest.raises(KeyError, match="no cell"):
        study.open({"lr": 5.0, "n_beta": 30.0})


def test_running_again_reuses_completed_cells_without_rerunning(
    model, tokens, settings, here, tmp_path
):
    first = run(model, tokens, settings, here, tmp_path / "sweep")
    stamps = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "sweep").glob("*.zarr/zarr.json")}
    again = run(model, tokens, settings, here, tmp_path / "sweep")
    assert again.progress.done == 4 and all(
        o.get("note") == "reused" for o in again.outcomes.values()
    )
    assert stamps == {
        p.name: p.stat().st_mtime_ns for p in (tmp_path / "sweep").glob("*.zarr/zarr.json")
    }
    xr.testing.assert_equal(
        first.result()[["llc_mean", "status"]], again.result()[["llc_mean", "status"]]
    )


def test_a_grown_axis_runs_only_the_new_cells(model, tokens, settings, here, tmp_path):
    run(model, tokens, settings, here, tmp_path / "sweep", grid={"lr": [1e-3], "n_beta": [10.0]})
    grown = run(
        model,
        tokens,
        settings,
        here,
        tmp_path / "sweep",
        grid={"lr": [1e-3, 2e-3], "n_beta": [10.0]},
    )
    notes = {name: o.get("note") for name, o in grown.outcomes.items()}
    assert notes == {"lr=0.001__n_beta=10.0": "reused", "lr=0.002__n_beta=10.0": None}
    assert read_study(tmp_path / "sweep")["lr"].values.tolist() == [1e-3, 2e-3]


def stopped_store(model, tokens, settings, path, **cell):
    """A cell's store as a stopped run leaves it: the cell's own sample() call, stopped at step 3."""
    event = threading.Event()

    def stop_early(summary):
        if summary.step >= 3:
            event.set()

    sample(
        model,
        tokens,
        {},
        output_path=path,
        stop_event=event,
        progress_callback=stop_early,
        **settings,
        **cell,
    )


def test_incomplete_cells_are_left_alone_unless_asked(model, tokens, settings, here, tmp_path):
    path = tmp_path / "sweep"
    run(model, tokens, settings, here, path, grid={"lr": [1e-3], "n_beta": [10.0]})
    stopped_store(
        model, tokens, settings, path / "lr=0.002__n_beta=10.0.zarr", lr=2e-3, n_beta=10.0
    )
    grid = {"lr": [1e-3, 2e-3], "n_beta": [10.0]}
    with pytest.warns(UserWarning, match="rerun_incomplete=True"):
        left = run(model, tokens, settings, here, path, grid=grid)
    assert left.progress.left == 1 and left.progress.done == 1
    assert left.result()["status"].values.ravel().tolist() == ["completed", "stopped"]
    rerun = run(model, tokens, settings, here, path, grid=grid, rerun_incomplete=True)
    assert rerun.result()["status"].values.ravel().tolist() == ["completed", "completed"]
    assert rerun.outcomes["lr=0.001__n_beta=10.0"]["note"] == "reused"


def test_stop_ends_every_cell_and_keeps_their_rows(model, tokens, settings, here, tmp_path):
    holder = []

    def stop_study(summary):
        if summary.step == 5:
            holder[0].stop()

    study = sweep(
        model,
        tokens,
        grid=GRID,
        output_dir=tmp_path / "sweep",
        executor=here,
        progress_callback=stop_study,
        **{**settings, "num_draws": 3000, "flush_interval": 0.5},
    )
    holder.append(study)
    assert study.wait(timeout=60)
    progress = study.progress
    assert progress.finished and progress.failed == 0 and progress.stopped == 4
    status = study.result()["status"].values.ravel().tolist()
    assert (
        status[0] == "stopped"
        and study.open(study.cells[0]).attrs["progress"]["chains"]["steps_written"][0] >= 5
    )
    assert status[1:] == ["stopped"] * 3  # never started: no store, nothing to rerun but them
    # From the directory alone (a dashboard watching it) too: not "queued" for ever.
    assert read_study(tmp_path / "sweep")["status"].values.ravel().tolist() == status


def test_read_study_gives_the_same_table_from_the_directory_alone(
    model, tokens, settings, here, tmp_path
):
    study = run(model, tokens, settings, here, tmp_path / "sweep")
    from_disk = read_study(tmp_path / "sweep")
    np.testing.assert_allclose(from_disk["llc_mean"], study.result()["llc_mean"])
    assert from_disk.attrs["kind"] == "sweep"
