"""Head restrictions on tiny random `transformers` models of many types (nothing downloaded).

For each model type, one head's (or one k/v group's) restriction must be exactly that head:
- the dead-head check: with the head's output zeroed (its input columns of the output
  projection), the attention entries that lose their gradient are exactly the selected ones;
- sampling moves only the selected entries, and moves every one of them.
"""

import os

import pytest
import torch
from tiny_hf_models import (
    EXTRA_MODEL_TYPES,
    MODEL_TYPES,
    VOCAB,
    assert_dead_head,
    assert_sampling_moves_exactly,
    case_id,
    grads_of,
    tiny_model,
    zero_head_inputs,
)

from devinterp_ui.analysis import create_param_masks
from devinterp_ui.analysis.attention_heads import head_layout
from devinterp_ui.analysis.transformer_layouts import describe_model

pytest.importorskip("transformers")

IDS = torch.randint(1, VOCAB, (4, 6), generator=torch.Generator().manual_seed(0))


def _restriction(model):
    """(restriction, heads it kills, attention layout) for head 1's k/v group in layer 0."""
    layer = describe_model(model).layers[0]
    attention = [a for a in layer.attention if "encoder_attn" not in a.path][0]
    heads = head_layout(model, attention)
    group = heads.n_heads // heads.n_kv
    g = 1 // group
    spec = "l0h1" if group == 1 else f"l0g{g}"
    return spec, list(range(g * group, (g + 1) * group)), attention, heads


FULL = os.environ.get("DEVINTERP_UI_FULL") == "1"
CASES = [pytest.param(c, id=case_id(c)) for c in MODEL_TYPES] + [
    pytest.param(
        c,
        id=case_id(c),
        marks=[pytest.mark.slow, pytest.mark.skipif(not FULL, reason="DEVINTERP_UI_FULL=1")],
    )
    for c in EXTRA_MODEL_TYPES
]


@pytest.mark.parametrize("case", CASES)
def test_one_head_restriction_is_exactly_that_head(case):
    model_type, overrides, n_kv = case
    model = tiny_model(model_type, **overrides)
    spec, killed, attention, heads = _restriction(model)
    assert heads.n_kv == n_kv
    masks = create_param_masks(model, spec)
    params = dict(model.named_parameters())
    o_proj = model.get_submodule(next(p.name for p in attention.projections if p.role == "o"))
    kill = zero_head_inputs(o_proj, killed, heads.head_dim)
    alive, dead = grads_of(model, IDS), grads_of(model, IDS, kill)
    scale = max(float(alive[n].abs().max()) for n in attention.params)
    checked = 0
    for name in attention.params:
        if name in heads.coupled or (heads.coupled and name in _coupled_projections(attention)):
            continue  # a norm over every head's q/k couples the heads: no dead-head identity
        mask = masks.get(name)
        if name in masks and mask is None:
            mask = torch.ones_like(params[name], dtype=torch.bool)
        elif mask is None:
            mask = torch.zeros_like(params[name], dtype=torch.bool)
        # Key biases carry only rounding noise: "live" is relative to the largest gradient.
        checked += assert_dead_head(name, mask, alive[name], dead[name], 1e-5 * scale)
    assert checked > 0
    assert set(masks) <= set(attention.params)

    assert_sampling_moves_exactly(model, IDS, masks)


def _coupled_projections(attention):
    return {p.weight for p in attention.projections if p.role in ("q", "k")} | {
        p.bias for p in attention.projections if p.role in ("q", "k") and p.bias
    }


def test_gpt_bigcode_multi_query_head_is_sliced_along_linear_outputs():
    model = tiny_model("gpt_bigcode", multi_query=True)
    masks = create_param_masks(model, "l0h1")
    w = masks["transformer.h.0.attn.c_attn.weight"]  # nn.Linear: (out = 32 + 8 + 8, in = 32)
    assert w.shape == (48, 32)
    rows = w.all(dim=1).nonzero().flatten().tolist()
    assert rows == [*range(8, 16), *range(32, 48)]  # q of head 1, the one shared k and v


def test_codegen_fused_qkv_raises_instead_of_guessing():
    model = tiny_model("codegen")
    with pytest.raises(ValueError, match="CodeGen.*not understood"):
        create_param_masks(model, "l0h0")
    assert create_param_masks(model, "l0 attn")  # the layer's attention is still understood


def test_model_without_a_layer_stack_raises_with_what_is_understood():
    model = tiny_model("xlm")  # attention and MLPs in parallel lists, not blocks
    with pytest.raises(ValueError, match="nn.ModuleList of identical modules"):
        create_param_masks(model, "l0h0")


def test_fused_experts_are_cut_along_the_expert_axis():
    model = tiny_model("mixtral")
    masks = create_param_masks(model, "l0e1")
    assert set(masks) == {
        "model.layers.0.mlp.experts.gate_up_proj",
        "model.layers.0.mlp.experts.down_proj",
    }
    for mask in masks.values():
        assert mask[1].all() and not mask[0].any() and not mask[2:].any()
    with pytest.raises(ValueError, match="expert 4 out of range"):
        create_param_masks(model, "l0e4")


def test_gpt_oss_head_includes_its_attention_sink():
    masks = create_param_masks(tiny_model("gpt_oss"), "l0h2")
    assert masks["model.layers.0.self_attn.sinks"].tolist() == [False, False, True, False]


def test_mlp_holds_router_and_experts_not_norms():
    model = tiny_model("qwen2_moe")
    mlp = create_param_masks(model, "l0 mlp")
    assert any("experts" in n for n in mlp) and any(n.endswith("gate.weight") for n in mlp)
    assert not any("layernorm" in n for n in mlp)


def test_bert_attention_excludes_its_residual_layer_norm():
    attn = create_param_masks(tiny_model("bert"), "l0 attn")
    assert "bert.encoder.layer.0.attention.output.dense.weight" in attn
    assert not any("LayerNorm" in n for n in attn)
