"""A TransformerLens model (4.x: a `TransformerBridge` around a TL-native model, built from a
config, nothing downloaded): called for logits, and its heads restricted exactly."""

import pytest
import torch

from devinterp_ui import sample
from devinterp_ui.analysis import create_param_masks
from devinterp_ui.analysis.attention_heads import head_layout
from devinterp_ui.analysis.transformer_layouts import describe_model
from devinterp_ui.losses import next_token_loss

native = pytest.importorskip("transformer_lens.model_bridge.sources.native")

IDS = torch.randint(0, 50, (4, 6), generator=torch.Generator().manual_seed(0))


def _bridge(**extra):
    torch.manual_seed(0)
    config = dict(
        n_layers=2, d_model=32, n_ctx=16, d_head=8, n_heads=4, d_vocab=50, act_fn="gelu", d_mlp=64
    )
    return native.boot({**config, **extra})


def test_called_with_return_type_logits():
    model = _bridge()
    seen = {}
    model.register_forward_pre_hook(lambda m, a, kw: seen.update(kw), with_kwargs=True)
    assert next_token_loss(model, IDS).shape == (4, 5)
    assert seen["return_type"] == "logits"


@pytest.mark.parametrize("n_kv", [4, 2])
def test_dead_head_and_sampling_move_exactly_the_head(n_kv):
    model = _bridge(n_key_value_heads=n_kv)
    layer = describe_model(model).layers[1]
    attention = layer.attention[0]
    heads = head_layout(model, attention)
    assert (heads.n_heads, heads.n_kv, heads.head_dim) == (4, n_kv, 8)
    killed = [1] if n_kv == 4 else [0, 1]
    masks = create_param_masks(model, "l1h1" if n_kv == 4 else "l1g0")
    o_proj = model.get_submodule(next(p.name for p in attention.projections if p.role == "o"))

    def grads(kill):
        handle = None
        if kill:

            def zero(module, args):
                x = args[0].clone()
                for h in killed:
                    x[..., h * 8 : (h + 1) * 8] = 0
                return (x, *args[1:])

            handle = o_proj.register_forward_pre_hook(zero)
        model.zero_grad()
        next_token_loss(model, IDS).mean().backward()
        if handle:
            handle.remove()
        return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    alive, dead = grads(False), grads(True)
    for name in attention.params:
        mask = masks.get(name, torch.zeros_like(alive[name], dtype=torch.bool))
        live = alive[name].abs() > 1e-7
        assert torch.equal(mask & live, live & (dead[name] == 0)), name

    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    seen = {}

    def recording_loss(m, batch):
        seen.update({n: p.detach().clone() for n, p in m.named_parameters()})
        return next_token_loss(m, batch)

    sample(
        model,
        IDS,
        {},
        lr=1e-3,
        n_beta=4.0,
        param_masks=masks,
        num_chains=1,
        num_draws=2,
        batch_size=2,
        num_init_loss_batches=1,
        loss_fn=recording_loss,
        progress_bar=False,
    )
    for name, value in seen.items():
        moved = value != before[name]
        assert torch.equal(moved, masks[name]) if name in masks else not moved.any(), name
