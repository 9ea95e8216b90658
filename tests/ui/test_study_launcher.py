"""Starting a study from the page: values per axis or checkpoints, Start, and the view fills."""

from __future__ import annotations

import panel as pn
import pytest
import torch
from tiny_models import TinyLM

from devinterp_ui.study import LocalExecutor
from devinterp_ui.ui.study_launcher import StudyLauncher, parse_values

SETTINGS = {
    "lr": 1e-3,
    "n_beta": 10.0,
    "num_chains": 2,
    "num_draws": 8,
    "batch_size": 8,
    "num_init_loss_batches": 2,
}


@pytest.fixture
def launcher(tmp_path):
    torch.manual_seed(0)
    executor = LocalExecutor(max_workers=1)
    tokens = torch.randint(0, 11, (64, 6), generator=torch.Generator().manual_seed(1))
    checkpoints = {0: TinyLM(), 5: TinyLM()}
    yield StudyLauncher(
        model=TinyLM(),
        dataset=tokens,
        settings=SETTINGS,
        runs_dir=str(tmp_path),
        checkpoints=checkpoints,
        executor=executor,
    )
    executor.shutdown()


def test_values_parse_from_comma_separated_text():
    assert parse_values("lr", "1e-5, 3e-5;1e-4,") == [1e-5, 3e-5, 1e-4]
    with pytest.raises(ValueError, match="lr values: 'abc' is not a number"):
        parse_values("lr", "1e-5, abc")


def test_the_fields_start_from_the_fixed_settings(launcher):
    assert launcher.inputs["lr"].value == "0.001"
    assert launcher.inputs["localization"].value == ""


def test_start_runs_the_typed_sweep_and_shows_its_view(launcher):
    launcher.inputs["lr"].value = "1e-3, 2e-3"
    launcher.inputs["localization"].value = "0, 5"
    study = launcher.start()
    assert study is not None and not launcher.error.visible
    assert study.wait(timeout=120)
    launcher.view.refresh()
    assert sorted(launcher.view.figures) == ["localization = 0.0", "localization = 5.0"]
    assert study.progress.done == 4
    assert pn.panel(launcher).get_root() is not None


def test_bad_values_are_shown_and_nothing_runs(launcher, tmp_path):
    launcher.inputs["n_beta"].value = "ten"
    assert launcher.start() is None
    assert launcher.error.visible and "n_beta values: 'ten'" in launcher.error.object
    launcher.inputs["n_beta"].value = "10"
    launcher.inputs["lr"].value = "-1"
    assert launcher.start() is None
    assert "cell lr=-1.0" in launcher.error.object
    assert list(tmp_path.iterdir()) == []


def test_a_trajectory_runs_the_picked_checkpoints(launcher):
    launcher.kind = "trajectory"
    launcher.steps.value = [5]
    study = launcher.start()
    assert study.wait(timeout=120)
    assert study.result()["step"].values.tolist() == [5]
    assert study.progress.done == 1
