"""Cells of a grid: every combination, first key slowest, names that spell the values."""

from __future__ import annotations

import pytest

from devinterp_ui.study.grid import format_value, grid_cells, trajectory_cells


def test_cells_are_every_combination_with_the_first_key_slowest():
    cells = grid_cells({"lr": [1e-4, 3e-4], "n_beta": [30, 100.0]})
    assert [c.coords for c in cells] == [
        {"lr": 1e-4, "n_beta": 30},
        {"lr": 1e-4, "n_beta": 100.0},
        {"lr": 3e-4, "n_beta": 30},
        {"lr": 3e-4, "n_beta": 100.0},
    ]


def test_names_are_readable_and_deterministic():
    (cell,) = grid_cells({"lr": [3e-05], "n_beta": [1689.0], "sampling_method": ["rmsprop_sgld"]})
    assert cell.name == "lr=3e-05__n_beta=1689.0__sampling_method=rmsprop_sgld"
    assert cell.store_name() == cell.name + ".zarr"
    assert grid_cells({"lr": [3e-05]})[0].name == grid_cells({"lr": [3e-05]})[0].name


def test_close_floats_get_different_names():
    assert format_value(3e-05) != format_value(3.0000001e-05)


def test_trajectory_cells_sort_by_step_with_padded_names():
    assert [c.name for c in trajectory_cells([448, 0, 10])] == [
        "step=000000",
        "step=000010",
        "step=000448",
    ]


@pytest.mark.parametrize(
    ("grid", "match"),
    [
        ({}, "non-empty dict"),
        ({"lr": []}, r"grid\['lr'\] is empty"),
        ({"lr": 1e-4}, r"grid\['lr'\] must be a list"),
        ({"lr": [1e-4, 1e-4]}, "repeats"),
        ({"lr": [float("nan")]}, "finite"),
    ],
)
def test_bad_grids_are_refused_naming_the_axis(grid, match):
    with pytest.raises((ValueError, TypeError), match=match):
        grid_cells(grid)
