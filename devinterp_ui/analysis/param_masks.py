"""Weight restrictions: which parameters (or entries) a susceptibility run may move.

`create_param_masks(model, restriction)` returns the `param_masks` argument of `sample()`:
{parameter name: None (whole parameter) or a bool tensor of the parameter's shape}; parameters
not listed stay frozen.
"""

from __future__ import annotations

import fnmatch
import re

import torch

from devinterp_ui.analysis.attention_heads import head_layout
from devinterp_ui.analysis.transformer_layouts import ModelLayout, describe_model

__all__ = ["create_param_masks", "merge_param_masks"]

ParamMasks = dict[str, "torch.Tensor | None"]

_HEAD = re.compile(r"l(\d+)\s*h(\d+)")
_GROUP = re.compile(r"l(\d+)\s*g(\d+)")
_EXPERT = re.compile(r"l(\d+)\s*e(\d+)")
_LAYER = re.compile(r"l(\d+)(?:\s+(attn|mlp))?")


def create_param_masks(
    model: torch.nn.Module,
    restriction: str | list[str],
    *,
    n_heads: int | None = None,
    n_kv_heads: int | None = None,
) -> ParamMasks:
    """param_masks selecting `restriction` of `model`.

    Restrictions (case-insensitive):
        "full"             every parameter, whole
        "l{i}"             every parameter of layer i (layer norms included)
        "l{i} attn"/"mlp"  layer i's attention / MLP (norms excluded; MoE router and experts
                           are MLP)
        "l{i}h{j}"         head j of layer i's (self-)attention: its rows of q, k, v (weights and
                           biases, fused or separate), its input columns of the output
                           projection and its per-head extras (sinks, q/k norms over every
                           head, gates), as bool masks. With grouped- or multi-query attention
                           the head's shared k/v head is included.
        "l{i}g{j}"         key/value group j of layer i: its query heads and their shared k/v head
        "l{i}e{j}"         routed expert j of layer i's MoE (shared experts and router excluded)
        "embed"/"unembed"  token embedding / unembedding (devinterp 2.x convention)
        a parameter name, a module name (every parameter under it) or a glob on parameter
        names ("blocks.*.mlp.*"); a list of any of these is their union.
    Layers, attention, heads and experts are found from the module structure and config
    (see `transformer_layouts` and `attention_heads`); `n_heads` / `n_kv_heads` override the
    head counts read there. Use `preview_param_masks` to see what a restriction selects.

    Raises ValueError for out-of-range layers, heads or experts, patterns that match no
    parameter, and layer/head restrictions on a model whose structure is not understood (the
    message says what was found).
    """
    if isinstance(restriction, (list, tuple)):
        if not restriction:
            raise ValueError("restriction list is empty")
        if any(isinstance(r, str) and r.strip().lower() == "full" for r in restriction):
            raise ValueError("'full' already selects everything; do not combine it with others")
        return merge_param_masks(
            [
                create_param_masks(model, r, n_heads=n_heads, n_kv_heads=n_kv_heads)
                for r in restriction
            ]
        )
    if not isinstance(restriction, str):
        raise TypeError(
            f"restriction must be a str or list of str, got {type(restriction).__name__}"
        )

    params = dict(model.named_parameters())
    aliases = _aliases(model)
    spec = restriction.strip()
    key = re.sub(r"\s+", " ", spec.lower())
    if key == "full":
        return dict.fromkeys(params)
    if key in ("embed", "unembed"):
        names = getattr(_layout(model, spec), key)
        if not names:
            raise ValueError(
                f"restriction {spec!r}: found no {'token embedding' if key == 'embed' else 'unembedding'} "
                "(get_input_embeddings()/get_output_embeddings() or a module named like "
                "embed_tokens / lm_head); select it by name instead."
            )
        return dict.fromkeys(names)
    if m := (_HEAD.fullmatch(key) or _GROUP.fullmatch(key)):
        layout = _layout(model, spec)
        layer = _layer(layout, int(m[1]))
        heads = head_layout(
            model, _self_attention(layer, spec), n_heads=n_heads, n_kv_heads=n_kv_heads
        )
        j = int(m[2])
        if m.re is _HEAD:
            if j >= heads.n_heads:
                raise ValueError(
                    f"head {j} out of range: the model has {heads.n_heads} heads (0..{heads.n_heads - 1})"
                )
            chosen = [j]
        else:
            if j >= heads.n_kv:
                raise ValueError(
                    f"group {j} out of range: the model has {heads.n_kv} key/value heads"
                )
            size = heads.n_heads // heads.n_kv
            chosen = list(range(j * size, (j + 1) * size))
        shapes = {n: params[n].shape for n in params}
        return {n: mask.to(params[n].device) for n, mask in heads.select(chosen, shapes).items()}
    if m := _EXPERT.fullmatch(key):
        return _expert_masks(model, _layer(_layout(model, spec), int(m[1])), int(m[2]), spec)
    if m := _LAYER.fullmatch(key):
        layer = _layer(_layout(model, spec), int(m[1]))
        part = {None: layer.params, "attn": layer.attn, "mlp": layer.mlp}[m[2]]
        if not part:
            raise ValueError(
                f"restriction {spec!r}: layer {layer.index} ({layer.path}) has no {m[2]} parameters"
            )
        return dict.fromkeys(part)

    if any(ch in spec for ch in "*?["):
        return _by_predicate(params, lambda n: fnmatch.fnmatchcase(n, spec), spec)
    if spec in aliases:
        return {aliases[spec]: None}
    return _by_predicate(params, lambda n: n.startswith(spec + "."), spec)


def merge_param_masks(masks: list[ParamMasks]) -> ParamMasks:
    """Union of several param_masks: None (whole parameter) wins, masks are ORed."""
    merged: ParamMasks = {}
    for entry in masks:
        for name, mask in entry.items():
            if name not in merged:
                merged[name] = None if mask is None else mask.clone()
            elif merged[name] is not None:
                merged[name] = None if mask is None else merged[name] | mask
    return merged


def _aliases(model: torch.nn.Module) -> dict[str, str]:
    """Every parameter name (tied weights under each of their names) -> the name sample() uses."""
    canonical: dict[int, str] = {}
    out: dict[str, str] = {}
    for name, p in model.named_parameters(remove_duplicate=False):
        out[name] = canonical.setdefault(id(p), name)
    return out


def _layout(model: torch.nn.Module, spec: str) -> ModelLayout:
    try:
        return describe_model(model)
    except ValueError as err:
        raise ValueError(f"restriction {spec!r}: {err}") from None


def _layer(layout: ModelLayout, index: int):
    n = len(layout.layers)
    if index >= n:
        raise ValueError(f"layer {index} out of range: the model has {n} layers (0..{n - 1})")
    return layout.layers[index]


def _self_attention(layer, spec: str):
    """The layer's self-attention: its only attention module, else the one not named cross/encoder."""
    if len(layer.attention) == 1:
        return layer.attention[0]
    own = [
        a
        for a in layer.attention
        if not any(w in a.path.lower() for w in ("cross", "encoder_attn"))
    ]
    if len(own) == 1:
        return own[0]
    raise ValueError(
        f"restriction {spec!r}: layer {layer.index} has several attention modules "
        f"{[a.path for a in layer.attention]}; select by name or glob instead."
    )


def _expert_masks(model: torch.nn.Module, layer, expert: int, spec: str) -> ParamMasks:
    if layer.experts is not None:
        if expert >= len(layer.experts):
            raise ValueError(
                f"expert {expert} out of range: layer {layer.index} has {len(layer.experts)} experts"
            )
        return dict.fromkeys(layer.experts[expert])
    if layer.fused_experts:
        params = dict(model.named_parameters())
        count = int(params[layer.fused_experts[0]].shape[0])
        if expert >= count:
            raise ValueError(
                f"expert {expert} out of range: layer {layer.index} has {count} experts"
            )
        masks: ParamMasks = {}
        for name in layer.fused_experts:
            mask = torch.zeros(params[name].shape, dtype=torch.bool, device=params[name].device)
            mask[expert] = True
            masks[name] = mask
        return masks
    raise ValueError(
        f"restriction {spec!r}: layer {layer.index} ({layer.path}) has no routed experts (a "
        "module list named 'experts' or fused (num_experts, ...) expert tensors)."
    )


def _by_predicate(params: dict, keep, spec: str) -> ParamMasks:
    selected = [n for n in params if keep(n)]
    if not selected:
        sample_names = ", ".join(list(params)[:8])
        raise ValueError(
            f"restriction {spec!r} matches no parameter; names look like: {sample_names}, ..."
        )
    return dict.fromkeys(selected)
