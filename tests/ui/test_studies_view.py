"""The Studies view without a browser: heat maps per localization, partial LLC of running cells,
the trajectory with error bars, clicks that name a store, and a page that renders."""

from __future__ import annotations

import time

import numpy as np
import panel as pn
import pytest
import torch
from bokeh.models import ColorBar, HoverTool, Whisker
from tiny_models import TinyLM

from devinterp_ui import compute_llc
from devinterp_ui.study import LocalExecutor, llc_trajectory, read_study, sweep
from devinterp_ui.ui.studies_view import MARKERS, StudiesView, default_log_x

GRID = {"lr": [1e-3, 3e-3], "n_beta": [10.0, 30.0], "localization": [0.0, 5.0]}
SETTINGS = {
    "num_chains": 2,
    "num_draws": 12,
    "batch_size": 8,
    "num_init_loss_batches": 2,
    "flush_interval": 0.0,
}


@pytest.fixture
def model():
    torch.manual_seed(0)
    return TinyLM()


@pytest.fixture
def tokens():
    return torch.randint(0, 11, (64, 6), generator=torch.Generator().manual_seed(1))


@pytest.fixture
def here():
    executor = LocalExecutor(max_workers=1)
    yield executor
    executor.shutdown()


@pytest.fixture
def finished_sweep(model, tokens, here, tmp_path):
    study = sweep(
        model, tokens, grid=GRID, output_dir=tmp_path / "sweep", executor=here, **SETTINGS
    )
    assert study.wait(timeout=120)
    return study


def test_a_sweep_draws_one_heat_map_per_localization_coloured_by_llc(finished_sweep):
    view = StudiesView(finished_sweep.output_dir)
    assert list(view.figures) == ["localization = 0.0", "localization = 5.0"]
    result = finished_sweep.result()
    for title, loc in (("localization = 0.0", 0.0), ("localization = 5.0", 5.0)):
        data = view.sources[title].data
        assert sorted(zip(data["lr"], data["n_beta"], strict=True)) == [
            (1e-3, 10.0),
            (1e-3, 30.0),
            (3e-3, 10.0),
            (3e-3, 30.0),
        ]
        for lr, n_beta, llc in zip(data["lr"], data["n_beta"], data["llc_mean"], strict=True):
            expected = float(result["llc_mean"].sel(lr=lr, n_beta=n_beta, localization=loc))
            assert llc == pytest.approx(expected)
        assert set(data["status"]) == {"completed"}
        assert set(data["marker"]) <= set(MARKERS.values())
        fig = view.figures[title]
        assert list(fig.x_range.factors) == ["0.001", "0.003"]
        assert list(fig.y_range.factors) == ["10.0", "30.0"]
        tooltips = dict(fig.select_one(HoverTool).tooltips)
        assert {"LLC", "std over chains", "MCSE", "R-hat", "ESS", "health"} <= set(tooltips)
        assert fig.select_one(ColorBar) is not None
    finite = result["llc_mean"].values[np.isfinite(result["llc_mean"].values)]
    assert view.mapper.low == pytest.approx(finite.min())
    assert view.mapper.high == pytest.approx(finite.max())
    assert "8 completed" in view.status_text


def test_clicking_a_cell_names_its_store(finished_sweep):
    view = StudiesView(finished_sweep.output_dir)
    source = view.sources["localization = 5.0"]
    source.selected.indices = [2]
    assert view.selected_store == source.data["store"][2]
    assert view.selected_store.endswith(".zarr")


def test_a_running_cell_shows_its_partial_llc_and_fills_in_when_done(model, tokens, tmp_path):
    torch.set_num_threads(1)
    grid = {"lr": [1e-3], "n_beta": [10.0]}
    study = sweep(
        model,
        tokens,
        grid=grid,
        output_dir=tmp_path / "s",
        **{**SETTINGS, "num_draws": 3000, "flush_interval": 0.2},
    )
    view = StudiesView(study=study)
    seen = None
    deadline = time.monotonic() + 120
    while seen is None and time.monotonic() < deadline:
        view.refresh()
        data = view.sources[""].data if view.sources else None
        if data and data["status"][0] == "running" and np.isfinite(data["llc_mean"][0]):
            seen = dict(data)
        time.sleep(0.1)
    study.stop()
    assert study.wait(timeout=60)
    assert seen is not None, "never saw a running cell with a partial LLC"
    assert seen["partial"] == [True] and seen["alpha"] == [0.45]
    assert seen["severity"][0] in MARKERS and seen["marker"][0] in MARKERS.values()
    view.refresh()
    data = view.sources[""].data
    assert data["status"] == ["stopped"] and data["partial"] == [False]
    tree = study.open(study.cells[0])
    assert data["llc_mean"][0] == pytest.approx(float(compute_llc(tree)["llc_mean"]), rel=1e-4)


def test_a_trajectory_draws_llc_against_step_with_error_bars(model, tokens, here, tmp_path):
    checkpoints = {}
    for step in (30, 0, 10):
        torch.manual_seed(step)
        checkpoints[step] = TinyLM()
    study = llc_trajectory(
        checkpoints,
        tokens,
        output_dir=tmp_path / "t",
        executor=here,
        lr=1e-3,
        n_beta=10.0,
        **SETTINGS,
    )
    assert study.wait(timeout=120)
    view = StudiesView(tmp_path / "t")
    (fig,) = view.figures.values()
    data = next(iter(view.sources.values())).data
    assert data["step"] == [0, 10, 30]
    result = read_study(tmp_path / "t")
    np.testing.assert_allclose(data["llc_mean"], result["llc_mean"].values)
    np.testing.assert_allclose(
        np.asarray(data["upper"]) - np.asarray(data["lower"]), 2 * result["llc_std"].values
    )
    assert fig.select_one(Whisker) is not None
    assert "std over chains" in fig.yaxis.axis_label


def test_a_directory_without_a_study_yet_waits_and_fills_once_one_starts(
    model, tokens, here, tmp_path
):
    view = StudiesView(tmp_path / "later")
    assert "waiting for a study" in view.status_text and view.figures == {}
    sweep(
        model,
        tokens,
        grid={"lr": [1e-3], "n_beta": [10.0]},
        output_dir=tmp_path / "later",
        executor=here,
        **SETTINGS,
    ).wait(timeout=120)
    view.refresh()
    assert view.sources[""].data["status"] == ["completed"]


def test_the_view_renders_as_a_panel_page_and_stop_stops_the_study(finished_sweep):
    view = StudiesView(study=finished_sweep)
    assert view.stop_button.visible
    root = pn.panel(view).get_root()
    assert root is not None
    view.stop_button.clicks += 1
    assert (finished_sweep.output_dir / ".study" / f"stop-{finished_sweep.run_id}").exists()
    view.close()


def test_view_needs_a_directory_or_a_study():
    with pytest.raises(ValueError, match="output_dir"):
        StudiesView()


def trajectory(model_steps, tokens, here, out):
    checkpoints = {}
    for step in model_steps:
        torch.manual_seed(step)
        checkpoints[step] = TinyLM()
    study = llc_trajectory(
        checkpoints, tokens, output_dir=out, executor=here, lr=1e-3, n_beta=10.0, **SETTINGS
    )
    assert study.wait(timeout=120)
    return study


def x_scale(view) -> str:
    (fig,) = view.figures.values()
    return type(fig.x_scale).__name__


def test_the_trajectory_x_axis_is_log_by_default_when_the_steps_span_more_than_20x(
    tokens, here, tmp_path
):
    trajectory((10, 300), tokens, here, tmp_path / "t")
    view = StudiesView(tmp_path / "t")
    assert view.log_x and x_scale(view) == "LogScale"
    assert view.log_x_toggle.visible and view.log_x_toggle.name == "log x (step)"
    view.log_x = False  # what ticking the box off does
    assert x_scale(view) == "LinearScale"
    view.refresh()  # the user's choice stays
    assert not view.log_x and x_scale(view) == "LinearScale"
    assert next(iter(view.sources.values())).data["step"] == [10, 300]


def test_the_default_log_x_rule():
    assert default_log_x([10, 100, 3000])
    assert not default_log_x([100, 1000])  # a factor 10
    assert default_log_x([0, 10, 3000])  # step 0 does not count (left out of the log plot)
    assert not default_log_x([0, 3000])  # one positive step: nothing to spread
    assert not default_log_x([448])


def test_step_0_is_left_out_of_a_log_trajectory_plot_and_the_title_says_so(tokens, here, tmp_path):
    trajectory((0, 10, 300), tokens, here, tmp_path / "t")
    view = StudiesView(tmp_path / "t")
    assert view.log_x  # 10 to 300 spans 30x; step 0 does not count
    (fig,) = view.figures.values()
    assert type(fig.x_scale).__name__ == "LogScale"
    assert "step 0 not shown" in fig.title.text
    data = next(iter(view.sources.values())).data
    assert (
        data["step"] == [10, 300] and len(data["store"]) == 2
    )  # clicks still name the right store
    view.refresh()
    assert next(iter(view.sources.values())).data["step"] == [10, 300]
    view.log_x = False
    (fig,) = view.figures.values()
    assert next(iter(view.sources.values())).data["step"] == [0, 10, 300]
    assert "not shown" not in fig.title.text


def test_a_sweep_has_no_log_x_toggle(finished_sweep):
    view = StudiesView(finished_sweep.output_dir)
    assert not view.log_x_toggle.visible
    assert pn.panel(view).get_root() is not None
    view.close()
