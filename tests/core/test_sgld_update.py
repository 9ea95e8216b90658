"""Each term of the SGLD update rules against its formula (SAMPLING.md, Update rules)."""

import math

import pytest
import torch

from devinterp_ui.sgld import ParamSlot, SGLDHyper, sgld_step

W = torch.tensor([0.5, -1.0, 2.0])
W0 = torch.tensor([0.4, -1.5, 2.5])
G = torch.tensor([0.3, -0.2, 1.0])
XI = torch.tensor([1.1, -0.7, 0.2])


def step_once(hp, w=W, w0=W0, g=G, xi=XI, mask=None, v=None, metrics=False):
    slot = ParamSlot(w=w.clone(), w0=w0.clone(), mask=mask, v=v)
    out = sgld_step([slot], [g.clone()], [xi.clone()], hp, with_metrics=metrics)
    return slot, None if out is None else out.values()


def test_gradient_term_has_drift_factor_half_lr_times_n_beta():
    slot, _ = step_once(SGLDHyper(lr=0.01, n_beta=7.0, noise_level=0.0))
    torch.testing.assert_close(slot.w, W - 0.005 * 7.0 * G)


def test_noise_term_has_scale_sqrt_lr_times_noise_level():
    hp = SGLDHyper(lr=0.01, n_beta=0.0, noise_level=0.3)
    slot, _ = step_once(hp)
    torch.testing.assert_close(slot.w, W + math.sqrt(0.01) * 0.3 * XI)


def test_localization_pulls_towards_checkpoint_with_factor_half_lr():
    slot, _ = step_once(SGLDHyper(lr=0.02, n_beta=0.0, localization=5.0, noise_level=0.0))
    torch.testing.assert_close(slot.w, W - 0.01 * 5.0 * (W - W0))


def test_weight_decay_pulls_towards_zero_with_factor_half_lr():
    slot, _ = step_once(SGLDHyper(lr=0.02, n_beta=0.0, llc_weight_decay=3.0, noise_level=0.0))
    torch.testing.assert_close(slot.w, W - 0.01 * 3.0 * W)


def test_all_terms_add_up():
    hp = SGLDHyper(lr=0.01, n_beta=4.0, localization=2.0, llc_weight_decay=0.5, noise_level=1.0)
    slot, _ = step_once(hp)
    expected = W - 0.005 * (4.0 * G + 2.0 * (W - W0) + 0.5 * W) + 0.1 * XI
    torch.testing.assert_close(slot.w, expected)


def test_rmsprop_state_is_running_mean_of_squared_gradient_from_zero():
    hp = SGLDHyper(lr=0.01, n_beta=1.0, method="rmsprop_sgld", eps=0.1, alpha=0.9)
    slot, _ = step_once(hp, v=torch.zeros(3))
    torch.testing.assert_close(slot.v, 0.1 * G**2)
    g2 = torch.tensor([1.0, 2.0, 3.0])
    sgld_step([slot], [g2], [XI.clone()], hp)
    torch.testing.assert_close(slot.v, 0.9 * 0.1 * G**2 + 0.1 * g2**2)


def test_rmsprop_preconditions_drift_and_noise():
    hp = SGLDHyper(
        lr=0.01, n_beta=3.0, localization=2.0, method="rmsprop_sgld", eps=0.1, alpha=0.99
    )
    slot, _ = step_once(hp, v=torch.zeros(3))
    v = 0.01 * G**2
    precond = 1 / (v.sqrt() + 0.1)
    expected = W - 0.005 * precond * (3.0 * G + 2.0 * (W - W0)) + torch.sqrt(0.01 * precond) * XI
    torch.testing.assert_close(slot.w, expected)


def test_mask_freezes_unmasked_entries():
    mask = torch.tensor([1.0, 0.0, 1.0])
    hp = SGLDHyper(lr=0.01, n_beta=4.0, localization=1.0, llc_weight_decay=1.0)
    slot, _ = step_once(hp, mask=mask)
    assert slot.w[1] == W[1]
    full, _ = step_once(hp)
    torch.testing.assert_close(slot.w[[0, 2]], full.w[[0, 2]])


def test_bounding_box_clamps_to_checkpoint_plus_minus_size():
    hp = SGLDHyper(lr=1.0, n_beta=0.0, noise_level=1.0, bounding_box_size=0.25)
    slot, _ = step_once(hp, xi=torch.tensor([10.0, -10.0, 0.1]))
    torch.testing.assert_close(
        slot.w,
        torch.stack(
            [W0[0] + 0.25, W0[1] - 0.25, torch.clamp(W[2] + 0.1, W0[2] - 0.25, W0[2] + 0.25)]
        ),
    )


def test_metrics_are_norms_of_update_components():
    mask = torch.tensor([1.0, 1.0, 0.0])
    hp = SGLDHyper(lr=0.04, n_beta=2.0, localization=3.0, llc_weight_decay=0.5, noise_level=1.0)
    _, m = step_once(hp, mask=mask, metrics=True)
    grad = 0.02 * 2.0 * G * mask
    loc = 0.02 * 3.0 * (W - W0) * mask
    wd = 0.02 * 0.5 * W * mask
    noise = 0.2 * XI * mask
    assert m["scaled_grad"] == pytest.approx(float(grad.norm()), rel=1e-6)
    assert m["unscaled_grad"] == pytest.approx(float(grad.norm()), rel=1e-6)
    assert m["localization"] == pytest.approx(float(loc.norm()), rel=1e-6)
    assert m["weight_decay"] == pytest.approx(float(wd.norm()), rel=1e-6)
    assert m["noise"] == pytest.approx(float(noise.norm()), rel=1e-6)
    assert m["distance"] == pytest.approx(float(((W - W0) * mask).norm()), rel=1e-6)
    assert m["dot_grad_prior"] == pytest.approx(float(grad @ (loc + wd)), rel=1e-6)
    assert m["dot_grad_noise"] == pytest.approx(float(grad @ noise), rel=1e-6)
    assert m["dot_prior_noise"] == pytest.approx(float((loc + wd) @ noise), rel=1e-6)


def test_rmsprop_metrics_separate_scaled_from_unscaled_gradient():
    hp = SGLDHyper(lr=0.04, n_beta=2.0, method="rmsprop_sgld", eps=0.1, alpha=0.5)
    _, m = step_once(hp, v=torch.zeros(3), metrics=True)
    precond = 1 / ((0.5 * G**2).sqrt() + 0.1)
    assert m["scaled_grad"] == pytest.approx(float((0.02 * 2.0 * precond * G).norm()), rel=1e-6)
    assert m["unscaled_grad"] == pytest.approx(float((0.02 * 2.0 * G).norm()), rel=1e-6)
    assert m["noise"] == pytest.approx(float((torch.sqrt(0.04 * precond) * XI).norm()), rel=1e-6)


def test_rmsprop_metrics_with_every_term_and_a_mask():
    mask = torch.tensor([1.0, 0.0, 1.0])
    hp = SGLDHyper(
        lr=0.04,
        n_beta=2.0,
        localization=3.0,
        llc_weight_decay=0.5,
        noise_level=0.7,
        method="rmsprop_sgld",
        eps=0.1,
        alpha=0.5,
    )
    _, m = step_once(hp, mask=mask, v=torch.zeros(3), metrics=True)
    precond = 1 / ((0.5 * G**2).sqrt() + 0.1)
    grad = 0.02 * precond * 2.0 * G * mask
    loc = 0.02 * precond * 3.0 * (W - W0) * mask
    wd = 0.02 * precond * 0.5 * W * mask
    noise = torch.sqrt(0.04 * precond) * 0.7 * XI * mask
    expected = {
        "scaled_grad": grad.norm(),
        "unscaled_grad": (0.02 * 2.0 * G * mask).norm(),
        "localization": loc.norm(),
        "weight_decay": wd.norm(),
        "noise": noise.norm(),
        "distance": ((W - W0) * mask).norm(),
        "dot_grad_prior": grad @ (loc + wd),
        "dot_grad_noise": grad @ noise,
        "dot_prior_noise": (loc + wd) @ noise,
    }
    assert m.keys() == expected.keys()
    for name, value in expected.items():
        assert m[name] == pytest.approx(float(value), rel=1e-6), name


def test_metrics_of_a_vector_longer_than_one_piece_sum_every_piece(monkeypatch):
    from devinterp_ui import sgld

    hp = SGLDHyper(lr=0.04, n_beta=2.0, localization=3.0)
    whole = step_once(hp, metrics=True)[1]
    monkeypatch.setattr(sgld.StepMetrics, "PIECE_NUMEL", 2)  # pieces of 2 + 1 entries
    pieces = step_once(hp, metrics=True)[1]
    assert pieces == pytest.approx(whole, rel=1e-12)
