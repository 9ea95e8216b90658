"""create_param_masks on the demo TinyLM and on fake GPT-2 / LLaMA modules (same names/shapes)."""

from types import SimpleNamespace

import pytest
import torch
from torch import nn

from devinterp_ui.analysis import create_param_masks, merge_param_masks
from devinterp_ui.demo.tiny_lm import TinyLM, TinyLMConfig

D, HEADS, HD = 16, 4, 4


class Conv1D(nn.Module):
    """GPT-2's Conv1D: weight stored (in_features, out_features)."""

    def __init__(self, n_in, n_out):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(n_in, n_out))
        self.bias = nn.Parameter(torch.zeros(n_out))


class RMSNorm(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d))


def fake_gpt2(n_layers=2, tie=False):
    def block():
        return nn.ModuleDict(
            {
                "ln_1": nn.LayerNorm(D),
                "attn": nn.ModuleDict({"c_attn": Conv1D(D, 3 * D), "c_proj": Conv1D(D, D)}),
                "ln_2": nn.LayerNorm(D),
                "mlp": nn.ModuleDict({"c_fc": Conv1D(D, 4 * D), "c_proj": Conv1D(4 * D, D)}),
            }
        )

    model = nn.Module()
    model.transformer = nn.ModuleDict(
        {
            "wte": nn.Embedding(50, D),
            "wpe": nn.Embedding(8, D),
            "h": nn.ModuleList(block() for _ in range(n_layers)),
            "ln_f": nn.LayerNorm(D),
        }
    )
    model.lm_head = nn.Linear(D, 50, bias=False)
    if tie:
        model.lm_head.weight = model.transformer["wte"].weight
    model.config = SimpleNamespace(n_head=HEADS, model_type="gpt2")
    return model


def fake_llama(n_layers=2, n_kv=2):
    def layer():
        return nn.ModuleDict(
            {
                "self_attn": nn.ModuleDict(
                    {
                        "q_proj": nn.Linear(D, HEADS * HD, bias=False),
                        "k_proj": nn.Linear(D, n_kv * HD, bias=False),
                        "v_proj": nn.Linear(D, n_kv * HD, bias=False),
                        "o_proj": nn.Linear(HEADS * HD, D, bias=False),
                    }
                ),
                "mlp": nn.ModuleDict(
                    {
                        "gate_proj": nn.Linear(D, 32, bias=False),
                        "up_proj": nn.Linear(D, 32, bias=False),
                        "down_proj": nn.Linear(32, D, bias=False),
                    }
                ),
                "input_layernorm": RMSNorm(D),
                "post_attention_layernorm": RMSNorm(D),
            }
        )

    model = nn.Module()
    model.model = nn.ModuleDict(
        {
            "embed_tokens": nn.Embedding(50, D),
            "layers": nn.ModuleList(layer() for _ in range(n_layers)),
            "norm": RMSNorm(D),
        }
    )
    model.lm_head = nn.Linear(D, 50, bias=False)
    model.config = SimpleNamespace(num_attention_heads=HEADS, num_key_value_heads=n_kv)
    return model


@pytest.fixture
def tiny_lm():
    return TinyLM(
        TinyLMConfig(
            vocab_size=8, seq_len=8, d_model=D, n_layers=2, n_heads=HEADS, d_head=HD, d_mlp=32
        )
    )


def _rows(mask, dim):
    """Indices along `dim` where the mask is (entirely) set."""
    other = [d for d in range(mask.dim()) if d != dim]
    full = mask.all(dim=tuple(other)) if other else mask
    return torch.nonzero(full).flatten().tolist()


def test_full_selects_every_parameter_whole(tiny_lm):
    masks = create_param_masks(tiny_lm, "full")
    assert list(masks) == [n for n, _ in tiny_lm.named_parameters()]
    assert all(m is None for m in masks.values())


def test_layer_selects_every_parameter_of_that_layer(tiny_lm):
    masks = create_param_masks(tiny_lm, "l1")
    assert set(masks) == {n for n, _ in tiny_lm.named_parameters() if n.startswith("blocks.1.")}


def test_layer_attn_and_mlp_exclude_layer_norms(tiny_lm):
    attn = create_param_masks(tiny_lm, "l0 attn")
    mlp = create_param_masks(tiny_lm, "L0  MLP")
    assert set(attn) == {f"blocks.0.attn.{m}.{p}" for m in "qkvo" for p in ("weight", "bias")}
    assert set(mlp) == {
        f"blocks.0.mlp.{m}.{p}" for m in ("fc_in", "fc_out") for p in ("weight", "bias")
    }


def test_tiny_lm_head_selects_its_qkv_rows_and_output_columns(tiny_lm):
    masks = create_param_masks(tiny_lm, "l1h2")
    block = range(2 * HD, 3 * HD)
    for m in "qkv":
        assert _rows(masks[f"blocks.1.attn.{m}.weight"], 0) == list(block)
        assert masks[f"blocks.1.attn.{m}.weight"].sum() == HD * D
        assert _rows(masks[f"blocks.1.attn.{m}.bias"], 0) == list(block)
    assert _rows(masks["blocks.1.attn.o.weight"], 1) == list(block)
    assert "blocks.1.attn.o.bias" not in masks


def test_head_masks_have_parameter_shapes_and_bool_dtype(tiny_lm):
    params = dict(tiny_lm.named_parameters())
    for name, mask in create_param_masks(tiny_lm, "l0h0").items():
        assert mask.shape == params[name].shape
        assert mask.dtype == torch.bool


def test_tiny_lm_embed_and_unembed(tiny_lm):
    assert list(create_param_masks(tiny_lm, "embed")) == ["tok_emb.weight"]
    assert list(create_param_masks(tiny_lm, "unembed")) == ["unembed.weight", "unembed.bias"]


def test_gpt2_head_selects_q_k_v_columns_of_fused_c_attn():
    masks = create_param_masks(fake_gpt2(), "l1h1")
    w = masks["transformer.h.1.attn.c_attn.weight"]
    expected = [*range(HD, 2 * HD), *range(D + HD, D + 2 * HD), *range(2 * D + HD, 2 * D + 2 * HD)]
    assert _rows(w, 1) == expected
    assert w.sum() == D * 3 * HD
    assert _rows(masks["transformer.h.1.attn.c_attn.bias"], 0) == expected
    assert _rows(masks["transformer.h.1.attn.c_proj.weight"], 0) == list(range(HD, 2 * HD))


def test_gpt2_layer_attn_embed_and_unembed():
    model = fake_gpt2()
    assert set(create_param_masks(model, "l0 attn")) == {
        f"transformer.h.0.attn.{m}.{p}" for m in ("c_attn", "c_proj") for p in ("weight", "bias")
    }
    assert list(create_param_masks(model, "embed")) == ["transformer.wte.weight"]
    assert list(create_param_masks(model, "unembed")) == ["lm_head.weight"]


def test_tied_unembedding_is_selected_under_the_name_sample_uses():
    assert list(create_param_masks(fake_gpt2(tie=True), "unembed")) == ["transformer.wte.weight"]


def test_llama_gqa_head_selects_its_shared_kv_head():
    masks = create_param_masks(fake_llama(n_kv=2), "l0h3")
    assert _rows(masks["model.layers.0.self_attn.q_proj.weight"], 0) == list(range(3 * HD, 4 * HD))
    assert _rows(masks["model.layers.0.self_attn.k_proj.weight"], 0) == list(range(HD, 2 * HD))
    assert _rows(masks["model.layers.0.self_attn.v_proj.weight"], 0) == list(range(HD, 2 * HD))
    assert _rows(masks["model.layers.0.self_attn.o_proj.weight"], 1) == list(range(3 * HD, 4 * HD))


def test_llama_group_selects_its_query_heads_and_kv_head():
    masks = create_param_masks(fake_llama(n_kv=2), "l1g1")
    assert _rows(masks["model.layers.1.self_attn.q_proj.weight"], 0) == list(range(2 * HD, 4 * HD))
    assert _rows(masks["model.layers.1.self_attn.k_proj.weight"], 0) == list(range(HD, 2 * HD))


def test_llama_layer_mlp_embed_unembed():
    model = fake_llama()
    assert set(create_param_masks(model, "l1 mlp")) == {
        f"model.layers.1.mlp.{m}_proj.weight" for m in ("gate", "up", "down")
    }
    assert list(create_param_masks(model, "embed")) == ["model.embed_tokens.weight"]
    assert list(create_param_masks(model, "unembed")) == ["lm_head.weight"]


def test_list_of_heads_is_the_union_of_their_masks(tiny_lm):
    masks = create_param_masks(tiny_lm, ["l0h0", "l0h1"])
    assert _rows(masks["blocks.0.attn.q.weight"], 0) == list(range(0, 2 * HD))


def test_union_with_a_whole_parameter_keeps_it_whole(tiny_lm):
    masks = create_param_masks(tiny_lm, ["l0h1", "l0 attn", "embed"])
    assert masks["blocks.0.attn.q.weight"] is None
    assert "tok_emb.weight" in masks


def test_merge_does_not_modify_its_inputs(tiny_lm):
    a = create_param_masks(tiny_lm, "l0h0")
    before = a["blocks.0.attn.q.weight"].clone()
    merge_param_masks([a, create_param_masks(tiny_lm, "l0h1")])
    assert torch.equal(a["blocks.0.attn.q.weight"], before)


def test_glob_pattern_matches_parameter_names(tiny_lm):
    masks = create_param_masks(tiny_lm, "blocks.*.mlp.fc_in.*")
    assert set(masks) == {f"blocks.{i}.mlp.fc_in.{p}" for i in (0, 1) for p in ("weight", "bias")}


def test_module_name_selects_its_parameters(tiny_lm):
    assert set(create_param_masks(tiny_lm, "ln_f")) == {"ln_f.weight", "ln_f.bias"}


def test_pattern_matching_nothing_raises(tiny_lm):
    with pytest.raises(ValueError, match="matches no parameter"):
        create_param_masks(tiny_lm, "encoder.*")


def test_out_of_range_layer_raises(tiny_lm):
    with pytest.raises(ValueError, match="layer 2 out of range.*2 layers"):
        create_param_masks(tiny_lm, "l2 attn")


def test_out_of_range_head_raises(tiny_lm):
    with pytest.raises(ValueError, match="head 4 out of range.*4 heads"):
        create_param_masks(tiny_lm, "l0h4")


def test_layer_restriction_on_unknown_naming_raises_and_suggests_globs():
    model = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))
    with pytest.raises(ValueError, match="glob"):
        create_param_masks(model, "l0")
    assert list(create_param_masks(model, "0.*")) == ["0.weight", "0.bias"]


def test_explicit_head_count_overrides_the_config(tiny_lm):
    masks = create_param_masks(tiny_lm, "l0h1", n_heads=2)
    assert _rows(masks["blocks.0.attn.q.weight"], 0) == list(range(2 * HD, 4 * HD))


def test_missing_head_count_raises():
    model = fake_gpt2()
    del model.config
    with pytest.raises(ValueError, match="n_heads"):
        create_param_masks(model, "l0h0")


def test_preview_lists_tensor_slice_and_count(tiny_lm):
    from devinterp_ui.analysis import format_preview, preview_param_masks

    rows = {r.tensor: r for r in preview_param_masks(tiny_lm, "l1h2")}
    q = rows["blocks.1.attn.q.weight"]
    assert (q.slice, q.count, q.total) == (f"dim 0: [{2 * HD}:{3 * HD}]", HD * D, D * HEADS * HD)
    assert rows["blocks.1.attn.o.weight"].slice == f"dim 1: [{2 * HD}:{3 * HD}]"
    assert "blocks.1.attn.o.bias" not in rows
    whole = preview_param_masks(tiny_lm, "l0 mlp")
    assert all(r.slice == "all" and r.count == r.total for r in whole)
    table = format_preview(whole)
    assert "blocks.0.mlp.fc_in.weight" in table and table.splitlines()[-1].startswith("total")


def test_head_restriction_on_unknown_attention_parameter_raises_instead_of_guessing(tiny_lm):
    tiny_lm.blocks[0].attn.mystery = nn.Parameter(torch.zeros(3, 5))
    with pytest.raises(ValueError, match="mystery.*not understood"):
        create_param_masks(tiny_lm, "l0h0")


def test_expert_restriction_on_a_dense_model_raises(tiny_lm):
    with pytest.raises(ValueError, match="no routed experts"):
        create_param_masks(tiny_lm, "l0e0")


def test_module_list_experts_select_one_expert():
    model = fake_llama(n_layers=1)
    model.model["layers"][0]["mlp"] = nn.ModuleDict(
        {
            "gate": nn.Linear(D, 3, bias=False),
            "experts": nn.ModuleList(nn.Linear(D, D) for _ in range(3)),
        }
    )
    masks = create_param_masks(model, "l0e2")
    assert set(masks) == {f"model.layers.0.mlp.experts.2.{p}" for p in ("weight", "bias")}


class ParallelExperts(nn.Module):
    """GraniteMoE before transformers 5.x: (num_experts, out, in) weights in two modules."""

    def __init__(self, n, n_in, n_out):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(n, n_out, n_in))


def test_experts_kept_in_several_modules_are_all_cut():
    model = fake_llama(n_layers=1)
    model.model["layers"][0]["mlp"] = nn.ModuleDict(
        {
            "router": nn.Linear(D, 3, bias=False),
            "input_linear": ParallelExperts(3, D, 8),
            "output_linear": ParallelExperts(3, 8, D),
        }
    )
    masks = create_param_masks(model, "l0e2")
    assert set(masks) == {
        f"model.layers.0.mlp.{m}.weight" for m in ("input_linear", "output_linear")
    }
    assert all(m[2].all() and m.sum() == m[2].numel() for m in masks.values())
