"""SGNHT (sampling_method="sgnht"): each term against its formula, and sample()'s trajectory
replayed by hand from the chain's noise stream (docs/sampling.md, SGNHT)."""

import math

import numpy as np
import pytest
import torch
from tiny_models import WeightEcho, echo_loss

from devinterp_ui import sample
from devinterp_ui.sgld import ParamSlot, SGLDHyper
from devinterp_ui.sgnht import Thermostat, init_momentum, sgnht_step

W = torch.tensor([0.5, -1.0, 2.0])
W0 = torch.tensor([0.4, -1.5, 2.5])
G = torch.tensor([0.3, -0.2, 1.0])
XI = torch.tensor([1.1, -0.7, 0.2])
P = torch.tensor([0.05, -0.02, 0.01])


def hyper(**kw):
    base = dict(lr=0.01, n_beta=0.0, noise_level=0.0, method="sgnht", diffusion_factor=0.02)
    return SGLDHyper(**{**base, **kw})


def step_once(hp, z=0.0, mask=None, p=P, metrics=False, w0=W0):
    slot = ParamSlot(w=W.clone(), w0=w0.clone(), mask=mask, p=p.clone())
    thermo = Thermostat(torch.tensor(z), 3 if mask is None else int(mask.sum()))
    out = sgnht_step([slot], [G.clone()], [XI.clone()], thermo, hp, with_metrics=metrics)
    return slot, thermo, None if out is None else out.values()


def test_gradient_kicks_the_momentum_by_lr_times_n_beta():
    slot, _, _ = step_once(hyper(n_beta=7.0))
    torch.testing.assert_close(slot.p, P - 0.01 * 7.0 * G)
    torch.testing.assert_close(slot.w, W + slot.p)


def test_thermostat_adds_friction_proportional_to_the_momentum():
    slot, _, _ = step_once(hyper(), z=0.3)
    torch.testing.assert_close(slot.p, P - 0.3 * P)


def test_diffusion_has_scale_sqrt_two_a_lr_times_noise_level():
    slot, _, _ = step_once(hyper(noise_level=0.5))
    torch.testing.assert_close(slot.p, P + math.sqrt(2 * 0.02 * 0.01) * 0.5 * XI)


def test_prior_terms_kick_like_the_gradient():
    slot, _, _ = step_once(hyper(n_beta=2.0, localization=5.0, llc_weight_decay=3.0))
    torch.testing.assert_close(slot.p, P - 0.01 * (2.0 * G + 5.0 * (W - W0) + 3.0 * W))


def test_thermostat_moves_by_mean_kinetic_energy_minus_lr():
    slot, thermo, _ = step_once(hyper(n_beta=1.0, noise_level=1.0), z=0.1)
    expected = 0.1 + float((slot.p**2).mean()) - 0.01
    assert float(thermo.z) == pytest.approx(expected, rel=1e-6)


def test_mask_freezes_entries_and_counts_only_sampled_ones_in_the_energy():
    mask = torch.tensor([1.0, 0.0, 1.0])
    hp = hyper(n_beta=4.0, localization=1.0, noise_level=1.0)
    slot, thermo, _ = step_once(hp, z=0.0, mask=mask, p=P * mask)
    assert slot.w[1] == W[1] and slot.p[1] == 0
    assert float(thermo.z) == pytest.approx(float((slot.p**2).sum()) / 2 - 0.01, rel=1e-6)


def test_bounding_box_clamps_and_reflects_the_momentum_at_the_wall():
    hp = hyper(bounding_box_size=0.25)
    p = torch.tensor([0.5, -0.1, -0.3])  # entries 0 and 2 leave the box; entry 1 stays inside
    slot, _, _ = step_once(hp, p=p, w0=W)
    torch.testing.assert_close(slot.w, W + torch.tensor([0.25, -0.1, -0.25]))
    torch.testing.assert_close(slot.p, torch.tensor([-0.5, -0.1, 0.3]))


def test_initial_momentum_is_sqrt_lr_noise_and_thermostat_starts_at_the_diffusion_factor():
    slot = ParamSlot(w=W.clone(), w0=W0.clone(), mask=torch.tensor([1.0, 1.0, 0.0]))
    thermo = init_momentum([slot], [XI.clone()], hyper(lr=0.04))
    torch.testing.assert_close(slot.p, 0.2 * XI * slot.mask)
    assert float(thermo.z) == pytest.approx(0.02) and thermo.count == 2


def test_metrics_are_norms_of_the_kick_and_diffusion():
    hp = hyper(n_beta=2.0, localization=3.0, noise_level=1.0)
    _, _, m = step_once(hp, metrics=True)
    assert m["scaled_grad"] == pytest.approx(float((0.01 * 2.0 * G).norm()), rel=1e-6)
    assert m["localization"] == pytest.approx(float((0.01 * 3.0 * (W - W0)).norm()), rel=1e-6)
    noise = math.sqrt(2 * 0.02 * 0.01) * XI
    assert m["noise"] == pytest.approx(float(noise.norm()), rel=1e-6)


# --- sample(): the stored trajectory is the rule --------------------------------------------

D = 3
E0 = 0.5


def replay(w_start, steps, noise, lr, n_beta, a, loc=0.0, wd=0.0, box=None):
    """Float64 weights at the start of each step, from the chain's noise stream."""
    w = w_start.astype(np.float64)
    p = math.sqrt(lr) * noise()
    z = a
    out = [w]
    for _ in range(steps - 1):
        p = p - lr * (n_beta / D + loc * (w - E0) + wd * w)
        p = p - z * p
        p = p + math.sqrt(2 * a * lr) * noise()
        w = w + p
        energy = float(p @ p)
        if box is not None:
            p = np.where(np.abs(w - E0) < box, p, -p)
            w = np.clip(w, E0 - box, E0 + box)
        z = z + energy / D - lr
        out.append(w)
    return np.stack(out)


def noise_stream(chain, seed=100):
    gen = torch.Generator().manual_seed(seed + chain)
    return lambda: torch.randn(D, generator=gen).numpy().astype(np.float64)


@pytest.mark.parametrize("schedule", ["lockstep", "sequential", "vectorized"])
def test_sample_trajectory_matches_the_sgnht_rule_with_every_term(echo_data, schedule):
    settings = dict(
        lr=1e-3,
        n_beta=10.0,
        num_chains=2,
        num_draws=12,
        batch_size=4,
        loss_fn=echo_loss,
        progress_bar=False,
        num_init_loss_batches=1,
        localization=50.0,
        llc_weight_decay=2.0,
        bounding_box_size=0.04,
        sampling_method="sgnht",
        sampling_method_kwargs={"diffusion_factor": 0.05},
        chain_schedule=schedule,
    )
    tree = sample(WeightEcho(D, E0), echo_data, {}, **settings)
    w = tree["sampling_loss_micro"].values[:, :, 0, :]
    for c in range(2):
        expected = replay(w[c, 0], w.shape[1], noise_stream(c), 1e-3, 10.0, 0.05, 50.0, 2.0, 0.04)
        np.testing.assert_allclose(w[c], expected, rtol=0, atol=2e-5)
    assert tree.attrs["metadata"]["config"]["sampler"]["sampling_method_kwargs"] == {
        "diffusion_factor": 0.05
    }


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"eps": 0.1}, "allowed keys: \\['diffusion_factor'\\]"),
        ({"diffusion_factor": 0.0}, "diffusion_factor'\\] must be a finite number > 0"),
    ],
)
def test_sgnht_takes_only_a_positive_diffusion_factor(echo_data, kwargs, message):
    with pytest.raises(ValueError, match=message):
        sample(
            WeightEcho(),
            echo_data,
            {},
            lr=1e-3,
            n_beta=10.0,
            loss_fn=echo_loss,
            sampling_method="sgnht",
            sampling_method_kwargs=kwargs,
        )
