"""Bad studies are refused before any cell runs, naming the cell and the parameter."""

from __future__ import annotations

import concurrent.futures as cf
import json

import pytest
import torch

from devinterp_ui.study import StudyConflictError, llc_trajectory, sweep

GRID = {"lr": [1e-3], "n_beta": [10.0]}


class HoldsALambda(torch.nn.Module):
    """Cannot be pickled: a lambda attribute (as models built in a notebook often carry)."""

    def __init__(self):
        super().__init__()
        self.head = torch.nn.Linear(2, 2)
        self.hook = lambda x: x
        self.lock = __import__("threading").Lock()


@pytest.mark.parametrize(
    ("grid", "kwargs", "error", "match"),
    [
        ({"lrr": [1e-3]}, {}, ValueError, "'lrr' is not a sample\\(\\) setting"),
        ({"output_path": ["x"]}, {}, ValueError, "set by the study itself"),
        (GRID, {"num_chain": 2}, TypeError, "'num_chain' is not a sample\\(\\) keyword"),
        (GRID, {"output_path": "x"}, TypeError, "output_path= is set by the study"),
        ({"lr": [1e-3], "n_beta": [10.0]}, {"lr": 1e-3}, ValueError, "both in the grid"),
        (
            {"lr": [1e-3, -1.0], "n_beta": [10.0]},
            {},
            ValueError,
            r"cell lr=-1.0__n_beta=10.0: lr must be > 0",
        ),
        (
            {"lr": [1e-3], "n_beta": [10.0], "batch_size": [8, 1000]},
            {},
            ValueError,
            r"cell lr=0.001__n_beta=10.0__batch_size=1000: batch_size=1000 is larger",
        ),
        (
            {"lr": [1e-3], "n_beta": [10.0], "num_chains": [2, 2.5]},
            {},
            TypeError,
            r"cell .*num_chains=2.5: num_chains must be an integer",
        ),
        ({"lr": [1e-3]}, {}, ValueError, r"cell lr=0.001: n_beta is required"),
        (
            {"lr": [1e-3], "n_beta": [10.0], "chain_schedule": ["lockstep", "bogus"]},
            {},
            ValueError,
            r"cell .*chain_schedule=bogus: chain_schedule must be one of",
        ),
        ({}, {}, ValueError, "non-empty dict"),
        ({"lr": []}, {}, ValueError, "is empty"),
    ],
)
def test_bad_grids_and_settings_are_refused_before_anything_exists(
    model, tokens, settings, tmp_path, grid, kwargs, error, match
):
    out = tmp_path / "study"
    with pytest.raises(error, match=match):
        fixed = {k: v for k, v in settings.items() if k not in grid}
        sweep(model, tokens, grid=grid, output_dir=out, **fixed, **kwargs)
    assert not out.exists()


def test_a_model_that_cannot_reach_worker_processes_is_refused_suggesting_a_factory(
    tokens, settings, tmp_path
):
    with cf.ProcessPoolExecutor(1) as pool, pytest.raises(TypeError, match="Pass a factory"):
        sweep(
            HoldsALambda(), tokens, grid=GRID, output_dir=tmp_path / "s", executor=pool, **settings
        )
    assert not (tmp_path / "s").exists()


def test_an_executor_must_be_an_executor(model, tokens, settings, tmp_path):
    with pytest.raises(TypeError, match="concurrent.futures.Executor"):
        sweep(model, tokens, grid=GRID, output_dir=tmp_path / "s", executor="dask", **settings)


def test_an_output_dir_holding_a_different_study_is_refused(
    model, tokens, settings, here, tmp_path
):
    out = tmp_path / "study"
    sweep(model, tokens, grid=GRID, output_dir=out, executor=here, **settings).wait()
    manifest = (out / "study.json").read_text()
    with pytest.raises(StudyConflictError, match="different study.*settings: num_draws"):
        sweep(
            model, tokens, grid=GRID, output_dir=out, executor=here, **{**settings, "num_draws": 13}
        )
    with pytest.raises(StudyConflictError, match="settings|dims"):
        sweep(
            model,
            tokens,
            grid={"lr": [1e-3], "localization": [1.0]},
            output_dir=out,
            executor=here,
            **{**settings, "n_beta": 10.0},
        )
    with pytest.raises(StudyConflictError, match="holds a sweep study, not a trajectory"):
        llc_trajectory(
            {0: model}, tokens, output_dir=out, executor=here, lr=1e-3, n_beta=10.0, **settings
        )
    assert (out / "study.json").read_text() == manifest  # untouched by the refusals
    assert json.loads(manifest)["kind"] == "sweep"


def test_a_directory_of_stores_that_belong_to_no_study_is_refused(
    model, tokens, settings, tmp_path
):
    (tmp_path / "old.zarr").mkdir()
    with pytest.raises(StudyConflictError, match="belong to no study"):
        sweep(model, tokens, grid=GRID, output_dir=tmp_path, **settings)


@pytest.mark.parametrize(
    ("checkpoints", "error", "match"),
    [
        ({}, ValueError, "non-empty dict"),
        ({-1: torch.nn.Linear(2, 2)}, ValueError, "training steps"),
        ({"10": torch.nn.Linear(2, 2)}, ValueError, "training steps"),
        ({10: "step10.pt"}, TypeError, r"checkpoints\[10\] must be a torch.nn.Module"),
        ({10: lambda: "not a model"}, TypeError, r"checkpoints\[10\]: the model factory returned"),
    ],
)
def test_bad_checkpoints_are_refused(tokens, settings, tmp_path, checkpoints, error, match):
    with pytest.raises(error, match=match):
        llc_trajectory(
            checkpoints, tokens, output_dir=tmp_path / "t", lr=1e-3, n_beta=10.0, **settings
        )
    assert not (tmp_path / "t").exists()
