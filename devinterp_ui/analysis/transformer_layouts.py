"""Where the layers, attention heads, embedding and unembedding live in known transformers.

A layout names parameters the way `model.named_parameters()` does, so that weight restrictions
work without importing the model's library (no `transformers` dependency). Known: the demo
`TinyLM`, GPT-2 style (`transformer.h.{i}`, Conv1D weights stored (in, out)) and LLaMA style
(`model.layers.{i}`, grouped-query attention). Conventions follow devinterp 2.x: "embed" is the
token embedding only, "unembed" the unembedding matrix (and its bias), layer norms belong to a
layer but to neither its "attn" nor its "mlp" part.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

__all__ = ["LAYOUTS", "HeadSlice", "TransformerLayout", "detect_layout", "head_counts"]


@dataclass(frozen=True)
class HeadSlice:
    """How heads are laid out along one axis of a parameter.

    dim: the axis. kind: "q" = n_heads contiguous blocks (queries, and the output projection's
    input side); "kv" = n_kv_heads contiguous blocks (keys/values; grouped-query attention);
    "qkv" = queries, keys, values concatenated along `dim` (GPT-2's c_attn).
    """

    dim: int
    kind: str


@dataclass(frozen=True)
class TransformerLayout:
    name: str
    layer_prefix: str  # "blocks.{i}." : every parameter of layer i starts with this
    embed: tuple[str, ...]
    unembed: tuple[str, ...]
    attn: str  # submodule prefix of attention inside a layer
    mlp: str  # submodule prefix of the MLP inside a layer
    heads: dict[str, HeadSlice] = field(default_factory=dict)  # name inside a layer -> slice

    def layer(self, i: int) -> str:
        return self.layer_prefix.format(i=i)


def _qkv_heads(q: str, k: str, v: str, o: str) -> dict[str, HeadSlice]:
    heads = {f"{o}.weight": HeadSlice(1, "q")}
    for name, kind in ((q, "q"), (k, "kv"), (v, "kv")):
        heads[f"{name}.weight"] = HeadSlice(0, kind)
        heads[f"{name}.bias"] = HeadSlice(0, kind)
    return heads


LAYOUTS: tuple[TransformerLayout, ...] = (
    TransformerLayout(
        name="tiny_lm",
        layer_prefix="blocks.{i}.",
        embed=("tok_emb.weight",),
        unembed=("unembed.weight", "unembed.bias"),
        attn="attn.",
        mlp="mlp.",
        heads=_qkv_heads("attn.q", "attn.k", "attn.v", "attn.o"),
    ),
    TransformerLayout(
        name="gpt2",
        layer_prefix="transformer.h.{i}.",
        embed=("transformer.wte.weight",),
        unembed=("lm_head.weight",),
        attn="attn.",
        mlp="mlp.",
        heads={
            # Conv1D stores (in_features, out_features): c_attn's outputs are its columns.
            "attn.c_attn.weight": HeadSlice(1, "qkv"),
            "attn.c_attn.bias": HeadSlice(0, "qkv"),
            "attn.c_proj.weight": HeadSlice(0, "q"),
        },
    ),
    TransformerLayout(
        name="llama",
        layer_prefix="model.layers.{i}.",
        embed=("model.embed_tokens.weight",),
        unembed=("lm_head.weight",),
        attn="self_attn.",
        mlp="mlp.",
        heads=_qkv_heads(
            "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj"
        ),
    ),
)


def detect_layout(names: list[str]) -> TransformerLayout | None:
    """The layout whose layer-0 head parameters and embedding are all present, if any."""
    present = set(names)
    for layout in LAYOUTS:
        markers = [layout.layer(0) + n for n in layout.heads if n.endswith("weight")]
        if layout.embed[0] in present and all(m in present for m in markers):
            return layout
    return None


def _config_value(config: object, names: tuple[str, ...]) -> int | None:
    for name in names:
        value = config.get(name) if isinstance(config, dict) else getattr(config, name, None)
        if value is not None:
            return int(value)
    return None


def head_counts(
    model: torch.nn.Module, n_heads: int | None = None, n_kv_heads: int | None = None
) -> tuple[int, int]:
    """(n_heads, n_kv_heads): explicit arguments, else `model.config`; n_kv defaults to n_heads.

    Raises ValueError when the head count is neither given nor in the config.
    """
    config = getattr(model, "config", None)
    if n_heads is None and config is not None:
        n_heads = _config_value(config, ("n_heads", "n_head", "num_attention_heads"))
    if n_heads is None:
        raise ValueError(
            "cannot find the number of attention heads: model.config has none of n_heads, "
            "n_head, num_attention_heads; pass n_heads=... to create_param_masks."
        )
    if n_kv_heads is None and config is not None:
        n_kv_heads = _config_value(
            config, ("num_key_value_heads", "n_kv_heads", "n_key_value_heads", "n_kv_head")
        )
    n_kv_heads = n_heads if n_kv_heads is None else n_kv_heads
    if n_heads < 1 or n_kv_heads < 1 or n_heads % n_kv_heads:
        raise ValueError(
            f"n_heads ({n_heads}) must be a positive multiple of n_kv_heads ({n_kv_heads})"
        )
    return n_heads, n_kv_heads
