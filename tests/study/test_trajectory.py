"""LLC over training: one ordinary sample() per checkpoint, the table over `step`."""

from __future__ import annotations

import functools

import pytest
import torch
from tiny_models import TinyLM

from devinterp_ui import compute_llc
from devinterp_ui.study import llc_trajectory


def trained(seed: int) -> TinyLM:
    torch.manual_seed(seed)
    return TinyLM()


def load(path):
    model = TinyLM()
    model.load_state_dict(torch.load(path, weights_only=True))
    return model


def test_checkpoints_as_models_factories_or_paths_give_one_row_per_step(
    tokens, settings, here, tmp_path
):
    torch.save(trained(2).state_dict(), tmp_path / "step2.pt")
    checkpoints = {
        0: trained(0),
        10: functools.partial(trained, 1),
        2: (tmp_path / "step2.pt", load),
    }
    study = llc_trajectory(
        checkpoints,
        tokens,
        output_dir=tmp_path / "traj",
        executor=here,
        lr=1e-3,
        n_beta=10.0,
        **settings,
    )
    assert study.wait(timeout=120)
    result = study.result()
    assert result["llc_mean"].dims == ("step",)
    assert result["step"].values.tolist() == [0, 2, 10]
    assert (result["status"] == "completed").all()
    for step in (0, 2, 10):
        tree = study.open(step)
        assert float(result["llc_mean"].sel(step=step)) == pytest.approx(
            float(compute_llc(tree)["llc_mean"])
        )
    # Each cell sampled its own checkpoint: the stores' model fingerprints differ.
    prints = {study.open(s).attrs["fingerprints"]["model"] for s in (0, 2, 10)}
    assert len(prints) == 3
    assert sorted(p.name for p in (tmp_path / "traj").glob("*.zarr")) == [
        "step=000000.zarr",
        "step=000002.zarr",
        "step=000010.zarr",
    ]


def test_a_different_checkpoint_at_a_step_is_a_different_study(tokens, settings, here, tmp_path):
    from devinterp_ui.study import StudyConflictError

    kw = dict(output_dir=tmp_path / "traj", executor=here, lr=1e-3, n_beta=10.0, **settings)
    llc_trajectory({0: trained(0)}, tokens, **kw).wait()
    with pytest.raises(StudyConflictError, match="models"):
        llc_trajectory({0: trained(5)}, tokens, **kw)
