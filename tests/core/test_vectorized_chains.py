"""chain_schedule="vectorized": the same samples as lockstep, up to float rounding."""

import numpy as np
import pytest
import torch
from tiny_models import WeightEcho, echo_loss

from devinterp_ui import sample

SETTINGS = dict(
    lr=1e-3,
    n_beta=20.0,
    num_chains=3,
    num_draws=6,
    batch_size=8,
    num_burnin_steps=2,
    num_init_loss_batches=2,
    progress_bar=False,
    save_metrics=True,
)


def assert_close_trees(a, b, atol=1e-4):
    assert set(a.data_vars) == set(b.data_vars)
    for name in a.data_vars:
        x, y = a[name].values, b[name].values
        if x.dtype.kind == "f":
            np.testing.assert_allclose(x, y, rtol=1e-4, atol=atol, err_msg=name)
        else:
            np.testing.assert_array_equal(x, y, err_msg=name)


@pytest.mark.parametrize(
    "extra",
    [
        {},
        {"match_sampling_input_ids_across_chains": False},
        {"gradient_accumulation_steps": 2},
        {"sampling_method": "rmsprop_sgld", "localization": 10.0, "init_noise": 0.01},
        {"bounding_box_size": 0.01, "llc_weight_decay": 0.1},
    ],
)
def test_vectorized_matches_lockstep(tiny_lm, token_data, extra):
    obs = {"o": token_data[:48]}
    lock = sample(tiny_lm, token_data, obs, **SETTINGS, **extra)
    vec = sample(tiny_lm, token_data, obs, chain_schedule="vectorized", **SETTINGS, **extra)
    assert_close_trees(lock, vec)


def test_vectorized_respects_masks(echo_data):
    settings = dict(SETTINGS, loss_fn=echo_loss, param_masks={"w": torch.tensor([1, 0, 1])})
    lock = sample(WeightEcho(), echo_data, {}, **settings)
    vec = sample(WeightEcho(), echo_data, {}, chain_schedule="vectorized", **settings)
    assert_close_trees(lock, vec, atol=1e-6)
    assert (vec["sampling_loss_micro"].values[..., 1] == np.float32(0.5)).all()


class InPlaceBuffer(torch.nn.Module):
    """Updates a buffer in place during forward: something vmap cannot batch."""

    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Embedding(11, 11)
        self.register_buffer("calls", torch.zeros(()))

    def forward(self, ids):
        self.calls.add_(1)
        return self.lin(ids)


def test_model_that_cannot_be_vmapped_is_refused_before_sampling(token_data, tmp_path):
    with pytest.raises(
        ValueError, match="chain_schedule='vectorized' needs a model torch.func can vmap"
    ):
        sample(
            InPlaceBuffer(),
            token_data,
            {},
            chain_schedule="vectorized",
            output_path=tmp_path / "r.zarr",
            **SETTINGS,
        )
    assert not (tmp_path / "r.zarr").exists()
