"""The update rule as `sample()` applies it, read back from the store.

`WeightEcho` makes each recorded loss row equal to the weights at that step, and the gradient of
the mean loss is 1/d per entry, so every chain's trajectory can be replayed by hand with the
chain's own noise stream (a CPU generator seeded init_seed + chain).
"""

import math

import numpy as np
import pytest
import torch
from tiny_models import WeightEcho, echo_loss

from devinterp_ui import sample

D = 3
W0 = 0.5


def run(echo_data, **kwargs):
    settings = dict(
        lr=1e-3,
        n_beta=10.0,
        num_chains=2,
        num_draws=6,
        batch_size=4,
        loss_fn=echo_loss,
        progress_bar=False,
        num_init_loss_batches=1,
    )
    settings.update(kwargs)
    return sample(WeightEcho(D, W0), echo_data, settings.pop("observables", {}), **settings)


def weights(tree) -> np.ndarray:
    """(chain, step, d) weights at the start of each step."""
    return tree["sampling_loss_micro"].values[:, :, 0, :]


def noise_stream(chain: int, seed: int = 100):
    gen = torch.Generator().manual_seed(seed + chain)
    return lambda: torch.randn(D, generator=gen).numpy()


def replay(w_start, steps, draw_noise, lr, n_beta, localization=0.0, wd=0.0, box=None):
    w = w_start.astype(np.float64)
    out = [w]
    for _ in range(steps - 1):
        drift = n_beta / D + localization * (w - W0) + wd * w
        w = w - lr / 2 * drift + math.sqrt(lr) * draw_noise()
        if box is not None:
            w = np.clip(w, W0 - box, W0 + box)
        out.append(w)
    return np.stack(out)


@pytest.mark.parametrize("schedule", ["lockstep", "sequential"])
def test_trajectory_matches_sgld_rule_with_every_term(echo_data, schedule):
    tree = run(echo_data, localization=50.0, llc_weight_decay=2.0, chain_schedule=schedule)
    w = weights(tree)
    for c in range(2):
        expected = replay(w[c, 0], w.shape[1], noise_stream(c), 1e-3, 10.0, 50.0, 2.0)
        np.testing.assert_allclose(w[c], expected, rtol=0, atol=2e-5)


def test_chains_start_at_checkpoint_without_init_noise(echo_data):
    tree = run(echo_data)
    np.testing.assert_array_equal(weights(tree)[:, 0], np.full((2, D), W0, dtype=np.float32))


def test_init_noise_is_drawn_first_from_the_chain_stream(echo_data):
    tree = run(echo_data, init_noise=0.1)
    w = weights(tree)
    for c in range(2):
        noise = noise_stream(c)
        expected_start = W0 + 0.1 * noise()
        np.testing.assert_allclose(w[c, 0], expected_start, atol=1e-6)
        np.testing.assert_allclose(w[c], replay(w[c, 0], w.shape[1], noise, 1e-3, 10.0), atol=2e-5)


def test_mask_freezes_entries_including_init_noise(echo_data):
    mask = torch.tensor([True, False, True])
    tree = run(echo_data, param_masks={"w": mask}, init_noise=0.1)
    w = weights(tree)
    assert np.all(w[:, :, 1] == np.float32(W0))
    assert np.all(w[:, 1:, 0] != np.float32(W0))


def test_bounding_box_keeps_weights_near_checkpoint(echo_data):
    tree = run(echo_data, lr=1.0, n_beta=0.0 + 1e-9, bounding_box_size=0.05)
    w = weights(tree)
    assert np.abs(w - W0).max() <= 0.05 + 1e-6
    assert np.isclose(np.abs(w - W0).max(), 0.05, atol=1e-6)


def test_noise_level_scales_noise(echo_data):
    with pytest.warns(UserWarning, match="noise_level"):
        tree = run(echo_data, noise_level=0.0)
    w = weights(tree)
    steps = np.arange(w.shape[1])
    np.testing.assert_allclose(w[0, :, 0], W0 - steps * 1e-3 / 2 * 10.0 / D, atol=1e-6)


def test_rmsprop_aliases_drive_preconditioner(echo_data):
    tree = run(
        echo_data,
        sampling_method="rmsprop_sgld",
        rmsprop_eps=0.5,
        rmsprop_alpha=0.9,
        noise_level=0.0 + 1.0,
    )
    w = weights(tree).astype(np.float64)
    noise = noise_stream(0)
    g = 1 / D
    v = 0.0
    expected = [w[0, 0]]
    for _ in range(w.shape[1] - 1):
        v = 0.9 * v + 0.1 * g**2
        precond = 1 / (math.sqrt(v) + 0.5)
        prev = expected[-1]
        expected.append(prev - 1e-3 / 2 * precond * 10.0 * g + math.sqrt(1e-3 * precond) * noise())
    np.testing.assert_allclose(w[0], np.stack(expected), atol=2e-5)


def test_draws_follow_burnin_and_thinning(echo_data):
    tree = run(
        echo_data,
        num_burnin_steps=3,
        num_steps_bw_draws=2,
        num_draws=4,
        observables={"obs": echo_data},
    )
    micro = tree["sampling_loss_micro"].values
    assert micro.shape[1] == 3 + 4 * 2
    draws = tree["sampling_loss"].values
    for d in range(4):
        np.testing.assert_array_equal(draws[:, d], micro[:, 3 + 2 * d, :4])


def test_observables_are_evaluated_after_the_draw_step_update(echo_data):
    tree = run(
        echo_data,
        num_burnin_steps=1,
        num_steps_bw_draws=2,
        num_draws=3,
        observables={"obs": echo_data},
    )
    micro = tree["sampling_loss_micro"].values
    obs = tree["loss_obs"].values
    for d in range(2):  # the last draw's next step does not exist
        step = 1 + 2 * d
        np.testing.assert_array_equal(obs[:, d, 0], micro[:, step + 1, 0])


def test_gradient_accumulation_equals_one_big_batch(tiny_lm, token_data):
    common = dict(
        lr=1e-3, n_beta=20.0, num_chains=2, num_draws=8, progress_bar=False, num_init_loss_batches=2
    )
    big = sample(tiny_lm, token_data, {}, batch_size=16, **common)
    accum = sample(tiny_lm, token_data, {}, batch_size=8, gradient_accumulation_steps=2, **common)
    np.testing.assert_array_equal(
        big["sampling_input_ids_micro"].values, accum["sampling_input_ids_micro"].values
    )
    np.testing.assert_allclose(
        big["sampling_loss_micro"].values, accum["sampling_loss_micro"].values, rtol=1e-4, atol=1e-5
    )
    np.testing.assert_allclose(big["init_loss"].values, accum["init_loss"].values, rtol=1e-5)
