"""The public optimizers follow sample()'s chains step by step: same update functions, same
terms, same noise stream (a generator seeded init_seed + chain)."""

import copy

import numpy as np
import pytest
import torch
from tiny_models import WeightEcho, echo_loss

from devinterp_ui import sample
from devinterp_ui.losses import next_token_loss
from devinterp_ui.optim import SGLD, SGNHT, RMSpropSGLD

METHODS = {
    "sgmcmc_sgld": (SGLD, {}, {}),
    "rmsprop_sgld": (RMSpropSGLD, {"eps": 0.2, "alpha": 0.9}, {"eps": 0.2, "alpha": 0.9}),
    "sgnht": (SGNHT, {"diffusion_factor": 0.05}, {"diffusion_factor": 0.05}),
}
TERMS = dict(localization=30.0, llc_weight_decay=0.5, bounding_box_size=0.03)


def optimizer_terms(terms):
    out = dict(terms)
    out["weight_decay"] = out.pop("llc_weight_decay", 0.0)
    return out


def replay_chains(cls, make_model, steps, loss_at, chains=2, **opt_kwargs):
    """sample()'s chains replayed in a user's loop: per chain c, a model from `make_model()`
    and an optimizer `cls(**opt_kwargs)` with a generator seeded 100 + c (init_seed + c), then
    `steps` steps, each backpropagating `loss_at(model, c, step)` before the update."""
    for c in range(chains):
        model = make_model()
        generator = torch.Generator().manual_seed(100 + c)
        opt = cls(model.parameters(), generator=generator, **opt_kwargs)
        for step in range(steps):
            opt.zero_grad()
            loss_at(model, c, step).backward()
            opt.step()


@pytest.mark.parametrize("method", list(METHODS))
def test_optimizer_reproduces_the_stored_trajectory_with_every_term_and_a_mask(echo_data, method):
    cls, opt_kwargs, sample_kwargs = METHODS[method]
    mask = torch.tensor([True, False, True])
    tree = sample(
        WeightEcho(),
        echo_data,
        {},
        lr=1e-3,
        n_beta=10.0,
        num_chains=2,
        num_draws=10,
        batch_size=4,
        loss_fn=echo_loss,
        progress_bar=False,
        num_init_loss_batches=1,
        param_masks={"w": mask},
        sampling_method=method,
        sampling_method_kwargs=sample_kwargs or None,
        **TERMS,
    )
    stored = tree["sampling_loss_micro"].values[:, :, 0, :]  # (chain, step, d): w at each step
    trajectory = {0: [], 1: []}

    def echo_step(model, c, step):
        trajectory[c].append(model.w.detach().clone().numpy())
        return echo_loss(model, (torch.zeros(4, 1),)).mean()

    replay_chains(
        cls,
        WeightEcho,
        stored.shape[1],
        echo_step,
        lr=1e-3,
        n_beta=10.0,
        masks=[mask],
        **optimizer_terms(TERMS),
        **opt_kwargs,
    )
    for c in range(2):
        np.testing.assert_allclose(np.stack(trajectory[c]), stored[c], rtol=0, atol=1e-6)


@pytest.mark.parametrize("segment_numel", [None, 32], ids=["one_segment", "three_segments"])
@pytest.mark.parametrize("method", list(METHODS))
def test_optimizer_on_a_multi_parameter_model_gives_the_stored_losses(
    tiny_lm, token_data, method, segment_numel, monkeypatch
):
    """With 32-entry segments the tiny LM has three (one per parameter), each with its own
    noise stream (sample() updating them inside the backward, the optimizer after it): the same
    trajectory; a wrong stream for segment 1 or 2 fails it."""
    cls, opt_kwargs, sample_kwargs = METHODS[method]
    if segment_numel:
        import devinterp_ui.segments as segments_module

        monkeypatch.setattr(segments_module, "SEGMENT_NUMEL", segment_numel)
    tree = sample(
        tiny_lm,
        token_data,
        {},
        lr=1e-3,
        n_beta=20.0,
        num_chains=2,
        num_draws=8,
        batch_size=8,
        localization=5.0,
        progress_bar=False,
        num_init_loss_batches=1,
        sampling_method=method,
        sampling_method_kwargs=sample_kwargs or None,
        match_sampling_input_ids_across_chains=False,
    )
    ids = torch.as_tensor(tree["sampling_input_ids_micro"].values)  # (chain, step, B, T)
    stored = tree["sampling_loss_micro"].values  # (chain, step, B, T-1)

    def lm_step(model, c, step):
        per_row = next_token_loss(model, ids[c, step])
        np.testing.assert_allclose(
            per_row.detach().numpy(), stored[c, step], rtol=1e-5, atol=1e-6, err_msg=str(step)
        )
        return per_row.mean()

    replay_chains(
        cls,
        lambda: copy.deepcopy(tiny_lm),
        ids.shape[1],
        lm_step,
        lr=1e-3,
        n_beta=20.0,
        localization=5.0,
        **opt_kwargs,
    )


@pytest.mark.filterwarnings("ignore:noise_level")
def test_bf16_parameters_step_through_float32_master_weights():
    torch.manual_seed(0)
    fp32 = torch.nn.Linear(8, 1)
    bf16 = copy.deepcopy(fp32).to(torch.bfloat16)
    x, y = torch.randn(64, 8), torch.randn(64, 1)

    def loss(model):
        return ((model(x.to(model.weight.dtype)).float() - y) ** 2).mean()

    with torch.no_grad():
        start = float(loss(fp32))
    final = {}
    for name, model in (("fp32", fp32), ("bf16", bf16)):
        opt = SGLD(model.parameters(), lr=1e-3, n_beta=1.0, noise_level=0.0)
        for _ in range(300):
            opt.zero_grad()
            loss(model).backward()
            opt.step()
        with torch.no_grad():
            final[name] = float(loss(model))
    assert bf16.weight.dtype == torch.bfloat16
    assert start - final["fp32"] > 0.05
    assert abs(final["bf16"] - final["fp32"]) < 0.05 * (start - final["fp32"]), final


def test_a_saved_and_loaded_sgnht_optimizer_continues_the_same_bf16_chain():
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 1).to(torch.bfloat16)
    x = torch.randn(16, 4, dtype=torch.bfloat16)

    def step(opt, m):
        opt.zero_grad()
        m(x).float().pow(2).mean().backward()
        opt.step()

    opt = SGNHT(model.parameters(), lr=1e-4, n_beta=10.0, localization=1.0)
    for _ in range(3):
        step(opt, model)
    twin = copy.deepcopy(model)
    twin_opt = SGNHT(twin.parameters(), lr=1e-4, n_beta=10.0, localization=1.0)
    twin_opt.load_state_dict(copy.deepcopy(opt.state_dict()))
    for p, q in zip(opt.state.values(), twin_opt.state.values(), strict=True):
        assert p["master"].dtype == q["master"].dtype == torch.float32
        torch.testing.assert_close(p["master"], q["master"], rtol=0, atol=0)
    gen_state = torch.get_rng_state()
    step(opt, model)
    torch.set_rng_state(gen_state)
    step(twin_opt, twin)
    for a, b in zip(model.parameters(), twin.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    first = next(iter(opt.state.values()))["thermostat"]
    assert first is not next(iter(twin_opt.state.values()))["thermostat"]


def test_devinterp_spelling_nbeta_is_accepted_and_bad_settings_are_refused():
    p = torch.nn.Parameter(torch.zeros(3))
    opt = SGLD([p], lr=0.1, nbeta=5.0)
    assert opt.param_groups[0]["n_beta"] == 5.0
    with pytest.raises(TypeError, match="n_beta is required"):
        SGLD([p], lr=0.1)
    with pytest.raises(ValueError, match="lr must be a finite number > 0"):
        SGLD([p], lr=0.0, n_beta=1.0)
    with pytest.raises(ValueError, match="masks has 2 entries for 1 parameters"):
        SGLD([p], lr=0.1, n_beta=1.0, masks=[None, None])
    with pytest.raises(ValueError, match="alpha must be in"):
        RMSpropSGLD([p], lr=0.1, n_beta=1.0, alpha=1.0)
    with pytest.raises(ValueError, match="diffusion_factor must be"):
        SGNHT([p], lr=0.1, n_beta=1.0, diffusion_factor=-1.0)
