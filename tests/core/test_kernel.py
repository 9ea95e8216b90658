"""The chain kernel: one step function for every method, float32 master weights for bf16."""

import pytest
import torch

from devinterp_ui import kernel
from devinterp_ui.sgld import SGLDHyper


def state_of(w, method="sgmcmc_sgld", views=None, noise=None):
    hp = SGLDHyper(lr=0.01, n_beta=2.0, method=method)
    draws = iter(noise or [])
    st = kernel.init_state([w], [w.clone()], [None], hp, lambda t: next(draws), views=views)
    return st, hp


@pytest.mark.parametrize("method", ["sgmcmc_sgld", "rmsprop_sgld", "sgnht"])
def test_step_returns_the_same_state_updated_in_place_and_metrics_on_request(method):
    w = torch.zeros(3)
    st, hp = state_of(w, method, noise=[torch.ones(3)])
    out, info = kernel.step(st, [torch.ones(3)], [torch.zeros(3)], hp, with_metrics=True)
    assert out is st and st.slots[0].w is w
    assert not torch.equal(w, torch.zeros(3))
    assert info.values()["scaled_grad"] > 0
    assert kernel.step(st, [torch.ones(3)], [torch.zeros(3)], hp)[1] is None


def test_sgnht_state_carries_a_thermostat_the_others_do_not():
    assert state_of(torch.zeros(2), "sgnht", noise=[torch.ones(2)])[0].thermostat is not None
    assert state_of(torch.zeros(2))[0].thermostat is None


def test_low_precision_weights_get_float32_masters_and_their_views_follow():
    model_tensor = torch.full((4,), 1.0, dtype=torch.bfloat16)
    (master,), (view,) = kernel.master_weights([model_tensor])
    assert master.dtype == torch.float32 and view is model_tensor
    st, hp = state_of(master, views=[view])
    # 1e-4 per step is far below bf16's resolution at 1.0 (2^-7): only the master keeps it.
    for _ in range(100):
        kernel.step(st, [torch.full((4,), 1e-2, dtype=torch.bfloat16)], [torch.zeros(4)], hp)
    torch.testing.assert_close(master, torch.full((4,), 1.0 - 100 * 0.005 * 2.0 * 1e-2))
    torch.testing.assert_close(model_tensor, master.to(torch.bfloat16))
    assert model_tensor[0] != 1.0


def test_float32_weights_are_updated_directly():
    t = torch.zeros(2)
    (w,), (view,) = kernel.master_weights([t])
    assert w is t and view is None
