"""Which entries of an attention module's parameters belong to each head.

`head_layout(model, attention)` reads the head count from the module or the config and
everything else from the projection shapes:

    head_dim = output-projection inputs / n_heads
    n_kv     = key-projection outputs / head_dim              (separate q, k, v)
             = (fused outputs - n_heads * head_dim) / (2 * head_dim)   ([Q | K | V] fused)

so multi-query (GPT-BigCode, Falcon-7B) and grouped-query attention (LLaMA-family) need no
flag. Fused q/k/v comes in three orders, told apart by the projection's name and, for Falcon,
its config (the only family whose order depends on settings):

    "concat"     [Q | K | V]                           c_attn, qkv_proj, Wqkv, W_pack, in_proj
    "per_head"   n_heads blocks of [q_h k_h v_h]       query_key_value (GPT-NeoX, BLOOM, ...)
    "per_group"  n_kv blocks of [q.. k_g v_g]          Falcon's new decoder architecture

Per-head extras are cut too: parameters with one entry per head (attention sinks), q/k norms
spanning every head, gates with one output block per head. A parameter of the module that
fits none of these (and is not the output bias or a norm shared by all heads) makes head
restrictions raise rather than guess.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from devinterp_ui.analysis.transformer_layouts import (
    AttentionModule,
    config_value,
    is_hooked_attention,
    meaningful_parts,
    model_configs,
)

__all__ = ["HeadCut", "HeadLayout", "head_layout"]

_HEAD_KEYS = ("num_heads", "n_heads", "num_attention_heads", "n_head", "num_attn_heads")
_CONFIG_HEAD_KEYS = (
    "n_heads",
    "n_head",
    "num_attention_heads",
    "decoder_attention_heads",
    "num_heads",
)
_PER_HEAD_FUSED = {"query_key_value"}


@dataclass(frozen=True)
class HeadCut:
    """How heads are laid out along axis `dim` of parameter `param`.

    kind: "q" (n_heads blocks of `block` entries), "kv" (n_kv blocks), or a fused order
    ("concat", "per_head", "per_group", blocks of head_dim).
    """

    param: str
    dim: int
    kind: str
    block: int


@dataclass(frozen=True)
class HeadLayout:
    """The heads of one attention module: counts, cuts, and parameters shared by all heads."""

    attention: str
    n_heads: int
    n_kv: int
    head_dim: int
    cuts: tuple[HeadCut, ...]
    shared: tuple[str, ...]
    coupled: tuple[str, ...] = ()  # norms over every head's q or k: heads not independent

    def select(self, heads: list[int], shapes: dict[str, torch.Size]) -> dict[str, torch.Tensor]:
        """{parameter: bool mask of its shape} of the entries of `heads` (their k/v heads too)."""
        masks = {}
        for cut in self.cuts:
            shape = shapes[cut.param]
            size = shape[cut.dim]
            selected = torch.zeros(size, dtype=torch.bool)
            for h in heads:
                for start, stop in self._ranges(cut, h):
                    selected[start:stop] = True
            view = [1] * len(shape)
            view[cut.dim] = size
            masks[cut.param] = selected.view(view).expand(shape).clone()
        return masks

    def _ranges(self, cut: HeadCut, h: int) -> list[tuple[int, int]]:
        n, kv, hd, b = self.n_heads, self.n_kv, self.head_dim, cut.block
        group = n // kv
        g = h // group
        if cut.kind == "q":
            return [(h * b, (h + 1) * b)]
        if cut.kind == "kv":
            return [(g * b, (g + 1) * b)]
        if cut.kind == "concat":
            k0, v0 = n * hd, n * hd + kv * hd
            return [
                (h * hd, (h + 1) * hd),
                (k0 + g * hd, k0 + (g + 1) * hd),
                (v0 + g * hd, v0 + (g + 1) * hd),
            ]
        if cut.kind == "per_head":
            return [(3 * h * hd, 3 * (h + 1) * hd)]
        if cut.kind == "per_group":
            base = g * (group + 2) * hd
            q = base + (h % group) * hd
            return [(q, q + hd), (base + group * hd, base + (group + 2) * hd)]
        raise AssertionError(cut.kind)


def head_layout(
    model: nn.Module,
    attention: AttentionModule,
    *,
    n_heads: int | None = None,
    n_kv_heads: int | None = None,
) -> HeadLayout:
    """The head cuts of `attention`; explicit `n_heads` / `n_kv_heads` override what is read.

    Raises ValueError, naming the module and what was found, when the head count is unknown,
    the shapes do not split into heads, or a parameter's head layout is not understood.
    """
    where = f"attention module {attention.path} ({type(attention.module).__name__})"
    if is_hooked_attention(attention.module):
        return _hooked_layout(model, attention, n_heads, n_kv_heads, where)
    if isinstance(attention.module, nn.MultiheadAttention):
        return _torch_mha_layout(attention, n_heads, where)
    roles: dict[str, list] = {}
    for proj in attention.projections:
        roles.setdefault(proj.role, []).append(proj)
    for role, projs in roles.items():
        if len(projs) > 1:
            raise ValueError(
                f"{where} has several {role!r} projections ({[p.name for p in projs]}); "
                "select its parameters by name or glob instead."
            )
    one = {role: projs[0] for role, projs in roles.items()}
    n = n_heads or _head_count(model, attention.module)
    if n is None:
        raise ValueError(
            f"cannot find the number of attention heads of {where}: neither the module nor "
            "model.config has n_heads / n_head / num_attention_heads; pass n_heads=... to "
            "create_param_masks."
        )
    o = one["o"]
    hd = _divide(o.size_in, n, f"{where}: output projection {o.name} has {o.size_in} inputs")
    cuts = [HeadCut(o.weight, 1 - o.out_dim, "q", hd)]
    shared = [o.bias] if o.bias else []
    if "qkv" in one:
        qkv = one["qkv"]
        order, kv = _fused_order(model, attention, qkv, n, hd, n_kv_heads, where)
        cuts += [HeadCut(qkv.weight, qkv.out_dim, order, hd)]
        cuts += [HeadCut(qkv.bias, 0, order, hd)] if qkv.bias else []
    else:
        q, k, v = one["q"], one["k"], one["v"]
        if q.size_out != n * hd:
            raise ValueError(
                f"{where}: query projection {q.name} has {q.size_out} outputs, not n_heads x "
                f"head_dim = {n} x {hd} (gated queries or another layout are not understood)."
            )
        kv = n_kv_heads or _divide(k.size_out, hd, f"{where}: key projection {k.name}")
        if v.size_out != kv * hd:
            raise ValueError(
                f"{where}: value projection {v.name} has {v.size_out} outputs, not {kv} x {hd}."
            )
        for proj, kind in ((q, "q"), (k, "kv"), (v, "kv")):
            cuts.append(HeadCut(proj.weight, proj.out_dim, kind, hd))
            if proj.bias:
                cuts.append(HeadCut(proj.bias, 0, kind, hd))
    if kv < 1 or n % kv:
        raise ValueError(f"{where}: {n} heads do not split into {kv} key/value heads.")
    known = {c.param for c in cuts} | set(shared)
    extra, extra_shared, coupled = _extras(attention, n, kv, hd, known, where, o.size_out)
    return HeadLayout(
        attention.path, n, kv, hd, tuple(cuts + extra), tuple(shared + extra_shared), tuple(coupled)
    )


def _torch_mha_layout(attention, n_heads, where) -> HeadLayout:
    """torch.nn.MultiheadAttention: in_proj_weight is [Q | K | V] (or q/k/v_proj_weight when
    kdim/vdim differ), out_proj a Linear; every head has its own k/v head."""
    mha = attention.module
    names = dict(zip((id(p) for p in mha.parameters()), attention.params, strict=True))
    n = n_heads or mha.num_heads
    hd = mha.embed_dim // n
    if mha.bias_k is not None or mha.bias_v is not None:
        raise ValueError(f"{where}: add_bias_kv=True (bias_k / bias_v) is not understood.")
    cuts = [HeadCut(names[id(mha.out_proj.weight)], 1, "q", hd)]
    shared = [names[id(mha.out_proj.bias)]] if mha.out_proj.bias is not None else []
    if mha.in_proj_weight is not None:
        cuts.append(HeadCut(names[id(mha.in_proj_weight)], 0, "concat", hd))
    else:
        for key, kind in (("q_proj_weight", "q"), ("k_proj_weight", "kv"), ("v_proj_weight", "kv")):
            cuts.append(HeadCut(names[id(getattr(mha, key))], 0, kind, hd))
    if mha.in_proj_bias is not None:
        cuts.append(HeadCut(names[id(mha.in_proj_bias)], 0, "concat", hd))
    return HeadLayout(attention.path, n, n, hd, tuple(cuts), tuple(shared))


def _hooked_layout(model, attention, n_heads, n_kv_heads, where) -> HeadLayout:
    """HookedTransformer: every per-head tensor has heads on dim 0, one index per head."""
    names = dict(zip((id(p) for p in attention.module.parameters()), attention.params, strict=True))
    own = {k: p for k, p in attention.module._parameters.items() if p is not None}
    n = n_heads or int(own["W_Q"].shape[0])
    kv_tensor = own.get("_W_K", own.get("W_K"))
    kv = n_kv_heads or int(kv_tensor.shape[0])
    hd = int(own["W_Q"].shape[-1])
    cuts, shared = [], []
    for key, p in own.items():
        if key in ("W_Q", "b_Q", "W_O"):
            cuts.append(HeadCut(names[id(p)], 0, "q", 1))
        elif key in ("W_K", "W_V", "_W_K", "_W_V", "b_K", "b_V", "_b_K", "_b_V"):
            cuts.append(HeadCut(names[id(p)], 0, "kv" if int(p.shape[0]) == kv else "q", 1))
        elif key == "b_O":
            shared.append(names[id(p)])
        else:
            raise ValueError(
                f"{where} holds {key} {tuple(p.shape)} whose head layout is not understood."
            )
    if n % kv:
        raise ValueError(f"{where}: {n} heads do not split into {kv} key/value heads.")
    return HeadLayout(attention.path, n, kv, hd, tuple(cuts), tuple(shared))


def _head_count(model: nn.Module, module: nn.Module) -> int | None:
    """n_heads from the attention module (or a submodule / its config), else the model's."""
    for sub in module.modules():
        value = config_value(sub, _HEAD_KEYS)
        cfg = getattr(sub, "config", None)
        if not value and cfg is not None and not isinstance(cfg, nn.Module):
            value = config_value(cfg, _CONFIG_HEAD_KEYS)
        if value:
            return value
    for cfg in model_configs(model):
        value = config_value(cfg, _CONFIG_HEAD_KEYS)
        if value:
            return value
    return None


def _divide(total: int, parts: int, what: str) -> int:
    if parts < 1 or total % parts:
        raise ValueError(f"{what}, which does not split into {parts} equal heads.")
    return total // parts


def _fused_order(model, attention, qkv, n, hd, n_kv, where) -> tuple[str, int]:
    cls = type(attention.module).__name__
    name = meaningful_parts(qkv.name)[-1].lower()
    if "codegen" in cls.lower():
        raise ValueError(
            f"{where}: CodeGen's fused qkv_proj interleaves model-parallel shards; its head "
            "layout is not understood. Select its parameters by name instead."
        )
    if "falcon" in cls.lower():
        cfg = next(iter(model_configs(model)), None)
        if getattr(cfg, "new_decoder_architecture", False):
            kv = n_kv or config_value(cfg, ("num_kv_heads", "n_head_kv")) or n
            order = "per_group"
        elif getattr(cfg, "multi_query", False):
            order, kv = "concat", n_kv or 1
        else:
            order, kv = "per_head", n
    elif "bigcode" in cls.lower():
        # GPT-BigCode: [Q | K | V] with one k/v head under multi_query, else per head.
        multi = bool(getattr(next(iter(model_configs(model)), None), "multi_query", True))
        order, kv = ("concat", n_kv or 1) if multi else ("per_head", n)
    elif name in _PER_HEAD_FUSED:
        order, kv = "per_head", n
    else:
        order = "concat"
        rest = qkv.size_out - n * hd
        kv = n_kv or (rest // (2 * hd) if rest > 0 and rest % (2 * hd) == 0 else 0)
    expected = {"concat": (n + 2 * kv) * hd, "per_head": 3 * n * hd, "per_group": (n + 2 * kv) * hd}
    if kv < 1 or qkv.size_out != expected[order]:
        raise ValueError(
            f"{where}: fused projection {qkv.name} has {qkv.size_out} outputs, which is not "
            f"{order} q/k/v for {n} heads of {hd} (pass n_heads / n_kv_heads if they differ "
            "from the config)."
        )
    return order, kv


def _extras(
    attention, n, kv, hd, known, where, width
) -> tuple[list[HeadCut], list[str], list[str]]:
    """Cuts for per-head extras (sinks, q/k norms, gates); shared norms; raise on the rest."""
    cuts, shared, coupled = [], [], []
    names = dict(
        zip((id(p) for p in attention.module.parameters()), attention.params, strict=False)
    )
    for sub, mod in attention.module.named_modules():
        for pname, p in mod._parameters.items():
            if p is None or names.get(id(p)) in known:
                continue
            name = names[id(p)]
            known = known | {name}
            leaf = meaningful_parts(sub)[-1].lower() if meaningful_parts(sub) else ""
            is_norm = "norm" in type(mod).__name__.lower()
            if is_norm and not leaf.startswith(("q", "k")):
                continue  # a residual-stream norm kept inside the module (BERT): the layer's
            if is_norm and p.numel() == hd:
                shared.append(name)  # one norm over head_dim, shared by every head
            elif is_norm and p.dim() == 1 and p.numel() in (n * hd, kv * hd):
                # One norm over every head's queries (OLMo-2): each head owns its entries, but
                # the normalisation couples the heads' queries (see HeadLayout.coupled).
                kind = "q" if p.numel() == n * hd and not leaf.startswith("k") else "kv"
                cuts.append(HeadCut(name, 0, kind, hd))
                coupled.append(name)
            elif not is_norm and p.dim() >= 1 and int(p.shape[0]) == n and pname != "weight":
                cuts.append(HeadCut(name, 0, "q", 1))  # sinks and other (n_heads, ...) tensors
            elif pname.endswith("bias") and p.dim() == 1 and p.numel() == width:
                shared.append(name)  # an output bias held apart from its projection
            elif "gate" in leaf and pname in ("weight", "bias") and int(p.shape[0]) == n * hd:
                cuts.append(HeadCut(name, 0, "q", hd))  # per-head output gate (nn.Linear)
            else:
                raise ValueError(
                    f"{where} holds {name} {tuple(p.shape)} whose head layout is not understood "
                    f"(understood: q/k/v/o projections, fused q/k/v, per-head tensors of "
                    f"{n} entries, q/k norms, per-head gates). Select by name instead."
                )
    return cuts, shared, coupled
