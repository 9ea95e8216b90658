"""A TransformerLens model (4.x: a `TransformerBridge` around a TL-native model, built from a
config, nothing downloaded): called for logits, and its heads restricted exactly."""

import pytest
import torch
from tiny_hf_models import (
    assert_dead_head,
    assert_sampling_moves_exactly,
    grads_of,
    zero_head_inputs,
)

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

    kill = zero_head_inputs(o_proj, killed, 8)
    alive, dead = grads_of(model, IDS), grads_of(model, IDS, kill)
    for name in attention.params:
        mask = masks.get(name, torch.zeros_like(alive[name], dtype=torch.bool))
        assert_dead_head(name, mask, alive[name], dead[name], 1e-7)

    assert_sampling_moves_exactly(model, IDS, masks)


class _HookedAttention(torch.nn.Module):
    """HookedTransformer's attention parameters (TransformerLens 2.x/3.x names and shapes)."""

    def __init__(self, d=16, n=4, hd=4, n_kv=4):
        super().__init__()
        kv = "_W_K" if n_kv != n else "W_K"
        self.W_Q = torch.nn.Parameter(torch.randn(n, d, hd) / 4)
        setattr(self, kv, torch.nn.Parameter(torch.randn(n_kv, d, hd) / 4))
        setattr(self, kv.replace("K", "V"), torch.nn.Parameter(torch.randn(n_kv, d, hd) / 4))
        self.W_O = torch.nn.Parameter(torch.randn(n, hd, d) / 4)
        self.b_Q = torch.nn.Parameter(torch.randn(n, hd) / 4)
        self.b_O = torch.nn.Parameter(torch.zeros(d))
        self.hook_z = torch.nn.Identity()
        self.n, self.n_kv = n, n_kv

    def forward(self, x):
        k = getattr(self, "W_K", None)
        k = k if k is not None else self._W_K
        v = getattr(self, "W_V", None)
        v = v if v is not None else self._W_V
        rep = self.n // self.n_kv
        k, v = k.repeat_interleave(rep, 0), v.repeat_interleave(rep, 0)
        q = torch.einsum("btd,ndh->btnh", x, self.W_Q) + self.b_Q
        keys, values = torch.einsum("btd,ndh->btnh", x, k), torch.einsum("btd,ndh->btnh", x, v)
        scores = torch.einsum("bqnh,bknh->bnqk", q, keys)
        causal = torch.ones(x.shape[1], x.shape[1], dtype=torch.bool).tril()
        pattern = scores.masked_fill(~causal, -1e9).softmax(-1)
        z = self.hook_z(torch.einsum("bnqk,bknh->bqnh", pattern, values))
        return torch.einsum("bqnh,nhd->bqd", z, self.W_O) + self.b_O


class _HookedLike(torch.nn.Module):
    """A two-block model named and shaped like a HookedTransformer."""

    def __init__(self, n_kv=4):
        super().__init__()
        self.embed = torch.nn.Module()
        self.embed.W_E = torch.nn.Parameter(torch.randn(50, 16))
        self.blocks = torch.nn.ModuleList()
        for _ in range(2):
            block = torch.nn.Module()
            block.ln1 = torch.nn.LayerNorm(16)
            block.attn = _HookedAttention(n_kv=n_kv)
            block.mlp = torch.nn.Module()
            block.mlp.W_in = torch.nn.Parameter(torch.randn(16, 32) / 4)
            block.mlp.W_out = torch.nn.Parameter(torch.randn(32, 16) / 4)
            self.blocks.append(block)
        self.unembed = torch.nn.Module()
        self.unembed.W_U = torch.nn.Parameter(torch.randn(16, 50) / 4)
        self.unembed.b_U = torch.nn.Parameter(torch.zeros(50))

    def forward(self, ids):
        x = self.embed.W_E[ids]
        for block in self.blocks:
            x = x + block.attn(block.ln1(x))
            x = x + torch.relu(x @ block.mlp.W_in) @ block.mlp.W_out
        return x @ self.unembed.W_U + self.unembed.b_U


@pytest.mark.parametrize("n_kv", [4, 2])
def test_hooked_transformer_layout_cuts_heads_on_dim_0(n_kv):
    torch.manual_seed(0)
    model = _HookedLike(n_kv=n_kv)
    assert list(create_param_masks(model, "embed")) == ["embed.W_E"]
    assert list(create_param_masks(model, "unembed")) == ["unembed.W_U", "unembed.b_U"]
    assert set(create_param_masks(model, "l1 mlp")) == {"blocks.1.mlp.W_in", "blocks.1.mlp.W_out"}
    spec, killed = ("l1h1", [1]) if n_kv == 4 else ("l1g0", [0, 1])
    masks = create_param_masks(model, spec)
    assert "blocks.1.attn.b_O" not in masks
    assert (
        masks["blocks.1.attn.W_Q"][killed].all()
        and masks["blocks.1.attn.W_Q"].sum() == len(killed) * 16 * 4
    )

    def kill():
        return model.blocks[1].attn.hook_z.register_forward_hook(
            lambda m, a, out: out.index_fill(2, torch.tensor(killed), 0.0)
        )

    alive, dead = grads_of(model, IDS), grads_of(model, IDS, kill)
    for name in ("W_Q", "W_K", "W_V", "_W_K", "_W_V", "W_O", "b_Q"):
        full = f"blocks.1.attn.{name}"
        if full in alive:
            assert_dead_head(full, masks[full], alive[full], dead[full], 1e-7)
