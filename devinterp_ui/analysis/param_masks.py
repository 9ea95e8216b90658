"""Weight restrictions: which parameters (or entries) a susceptibility run may move.

`create_param_masks(model, restriction)` returns the `param_masks` argument of `sample()`:
{parameter name: None (whole parameter) or a bool tensor of the parameter's shape}; parameters
not listed stay frozen.
"""

from __future__ import annotations

import fnmatch
import re

import torch

from devinterp_ui.analysis.transformer_layouts import (
    LAYOUTS,
    TransformerLayout,
    detect_layout,
    head_counts,
)

__all__ = ["create_param_masks", "merge_param_masks"]

ParamMasks = dict[str, "torch.Tensor | None"]

_HEAD = re.compile(r"l(\d+)\s*h(\d+)")
_GROUP = re.compile(r"l(\d+)\s*g(\d+)")
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
        "l{i} attn"/"mlp"  layer i's attention / MLP submodule
        "l{i}h{j}"         head j of layer i: its rows of q, k, v (weights and biases) and its
                           input columns of the output projection, as bool masks. With
                           grouped-query attention the head's shared k/v head is included.
        "l{i}g{j}"         key/value group j of layer i: its query heads and their shared k/v head
        "embed"/"unembed"  token embedding / unembedding (devinterp 2.x convention)
        a parameter name, a module name (every parameter under it) or a glob on parameter
        names ("blocks.*.mlp.*"); a list of any of these is their union.
    Layer/head naming is recognised for the demo TinyLM, GPT-2 and LLaMA parameter names; head
    counts come from `model.config` (n_heads / n_head / num_attention_heads,
    num_key_value_heads) unless given as arguments.

    Raises ValueError for out-of-range layers or heads, patterns that match no parameter, and
    layer/head restrictions on a model whose naming is not recognised.
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

    layout = detect_layout(list(aliases))
    if key in ("embed", "unembed"):
        names = getattr(_require_layout(layout, spec), key)
        selected = [aliases[n] for n in names if n in aliases]
        if not selected:
            raise ValueError(f"restriction {spec!r}: the model has none of {list(names)}")
        return dict.fromkeys(selected)

    if m := _HEAD.fullmatch(key):
        layout = _require_layout(layout, spec)
        layer, head = int(m[1]), int(m[2])
        _check_layer(layout, params, layer)
        heads, kv = head_counts(model, n_heads, n_kv_heads)
        if head >= heads:
            raise ValueError(
                f"head {head} out of range: the model has {heads} heads (0..{heads - 1})"
            )
        return _head_masks(layout, params, layer, [head], heads, kv)
    if m := _GROUP.fullmatch(key):
        layout = _require_layout(layout, spec)
        layer, group = int(m[1]), int(m[2])
        _check_layer(layout, params, layer)
        heads, kv = head_counts(model, n_heads, n_kv_heads)
        if group >= kv:
            raise ValueError(f"group {group} out of range: the model has {kv} key/value heads")
        size = heads // kv
        return _head_masks(
            layout, params, layer, list(range(group * size, (group + 1) * size)), heads, kv
        )
    if m := _LAYER.fullmatch(key):
        layout = _require_layout(layout, spec)
        layer = int(m[1])
        _check_layer(layout, params, layer)
        prefix = layout.layer(layer) + {"attn": layout.attn, "mlp": layout.mlp, None: ""}[m[2]]
        return _by_predicate(params, lambda n: n.startswith(prefix), spec)

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


def _require_layout(layout: TransformerLayout | None, spec: str) -> TransformerLayout:
    if layout is None:
        known = ", ".join(layout.name for layout in LAYOUTS)
        raise ValueError(
            f"restriction {spec!r} needs a recognised transformer naming ({known}); this model's "
            "parameters are named otherwise. Use parameter names or glob patterns instead, "
            "e.g. 'layers.0.*'."
        )
    return layout


def _check_layer(layout: TransformerLayout, params: dict, layer: int) -> None:
    n_layers = 0
    while any(n.startswith(layout.layer(n_layers)) for n in params):
        n_layers += 1
    if layer >= n_layers:
        raise ValueError(
            f"layer {layer} out of range: the model has {n_layers} layers (0..{n_layers - 1})"
        )


def _by_predicate(params: dict, keep, spec: str) -> ParamMasks:
    selected = [n for n in params if keep(n)]
    if not selected:
        sample_names = ", ".join(list(params)[:8])
        raise ValueError(
            f"restriction {spec!r} matches no parameter; names look like: {sample_names}, ..."
        )
    return dict.fromkeys(selected)


def _head_masks(
    layout: TransformerLayout,
    params: dict[str, torch.Tensor],
    layer: int,
    heads: list[int],
    n_heads: int,
    n_kv: int,
) -> ParamMasks:
    prefix = layout.layer(layer)
    group = n_heads // n_kv
    masks: ParamMasks = {}
    for short, where in layout.heads.items():
        p = params.get(prefix + short)
        if p is None:
            continue  # e.g. a bias the model does not have
        size = p.shape[where.dim]
        per_head = {"q": n_heads, "kv": n_kv, "qkv": n_heads + 2 * n_kv}[where.kind]
        if size % per_head:
            raise ValueError(
                f"{prefix + short} has {size} entries along dim {where.dim}, not a multiple of "
                f"{per_head} heads; pass the right n_heads / n_kv_heads."
            )
        hd = size // per_head
        selected = torch.zeros(size, dtype=torch.bool)
        for h in heads:
            kv_h = h // group
            if where.kind == "q":
                selected[h * hd : (h + 1) * hd] = True
            elif where.kind == "kv":
                selected[kv_h * hd : (kv_h + 1) * hd] = True
            else:  # q | k | v concatenated
                q_size, kv_size = n_heads * hd, n_kv * hd
                selected[h * hd : (h + 1) * hd] = True
                for start in (q_size, q_size + kv_size):
                    selected[start + kv_h * hd : start + (kv_h + 1) * hd] = True
        shape = [1] * p.dim()
        shape[where.dim] = size
        mask = selected.view(shape).expand(p.shape).clone().to(p.device)
        masks[prefix + short] = mask
    return masks
