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


@pytest.mark.parametrize("method", ["sgmcmc_sgld", "rmsprop_sgld", "sgnht"])
def test_updating_a_large_slot_in_pieces_gives_the_same_numbers(monkeypatch, method):
    from devinterp_ui import sgld

    hp = SGLDHyper(
        lr=0.01,
        n_beta=3.0,
        localization=2.0,
        llc_weight_decay=0.1,
        bounding_box_size=0.05,
        method=method,
        diffusion_factor=0.05,
    )
    gen = torch.Generator().manual_seed(0)
    w0 = torch.randn(10, generator=gen)
    mask = (torch.rand(10, generator=gen) > 0.3).float()
    grads = [torch.randn(10, generator=gen) for _ in range(3)]
    noise = torch.randn(40, generator=gen)

    def run():
        # The noise as a stream read in order, whatever the size of each draw: a slot whole
        # takes 10 entries at once, in pieces 3, 3 and 4.
        taken = 0

        def draw(like):
            nonlocal taken
            taken += like.numel()
            return noise[taken - like.numel() : taken].view(like.shape).clone()

        st = kernel.init_state([w0.clone()], [w0], [mask], hp, draw)
        metrics = [kernel.step(st, [g.clone()], draw, hp, True)[1].values() for g in grads]
        assert taken == (40 if method == "sgnht" else 30)
        return st.slots[0].w, metrics

    whole_w, whole_m = run()
    monkeypatch.setattr(sgld, "RANDN_BLOCK", 2)
    monkeypatch.setattr(sgld, "UPDATE_NUMEL", 3)  # pieces of 3, 3, 3, 1 entries; the last
    # piece, shorter than RANDN_BLOCK, joins the one before: 3, 3, 4
    piece_w, piece_m = run()
    torch.testing.assert_close(piece_w, whole_w, rtol=0, atol=1e-7)
    for a, b in zip(piece_m, whole_m, strict=True):
        assert a == pytest.approx(b, rel=1e-6, abs=1e-12)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(
    ("n", "count"),
    [(16, 1), (17, 1), ((1 << 20) + 5, 1), (3 * (1 << 20) + 15, 3), (3 * (1 << 20) + 16, 4)],
)
def test_noise_drawn_piece_by_piece_is_the_noise_of_one_draw(n, count, dtype):
    """The kernel draws a large slot's noise per piece (sgld.pieces); on the CPU generator the
    numbers, and the generator's state after them, are those of one draw of the whole slot."""
    from devinterp_ui import sgld

    w = torch.zeros(n, dtype=dtype)
    gen = torch.Generator().manual_seed(3)
    whole = torch.randn(n, generator=gen, dtype=dtype)
    after_whole = torch.randn(4, generator=gen)
    gen.manual_seed(3)
    slot = sgld.ParamSlot(w=w, w0=w)
    draw = lambda t: torch.randn(t.shape, generator=gen, dtype=dtype)  # noqa: E731
    got = [x for _, _, x in sgld.pieces(slot, None, draw)]
    assert len(got) == count
    assert torch.equal(torch.cat(got), whole)
    assert torch.equal(torch.randn(4, generator=gen), after_whole)


def test_pieces_never_leave_a_last_piece_shorter_than_a_randn_block():
    from devinterp_ui.sgld import RANDN_BLOCK, piece_bounds

    assert piece_bounds(10, 16) == [(0, 10)]
    assert piece_bounds(40, 16) == [(0, 16), (16, 40)]  # 8 left over: joins the piece before
    assert piece_bounds(48, 16) == [(0, 16), (16, 32), (32, 48)]
    assert all(b - a >= RANDN_BLOCK for a, b in piece_bounds(5 * (1 << 20) + 3, 1 << 20))
