"""Where a transformer keeps its layers, attention, MLP, experts, embedding and unembedding.

Found from the module structure and the config, not from a table of families, so that any
model built the usual way is understood (the `transformers` model types devinterp 2.x
covers, TransformerLens bridges, the demo TinyLM, hand-written models with the usual names):

- **layers**: the `nn.ModuleList` of identical blocks that hold an attention module (the
  decoder's when a model has an encoder and a decoder stack);
- **attention**: the smallest module of a block that holds query, key, value (separate or
  one fused projection) and output projections, recognised by their role names (`q_proj`,
  `query`, `Wq`, `c_attn`, `query_key_value`, `o_proj`, `dense`, ...; see `ROLE_NAMES`);
- **heads** (`attention_heads.py`): cut from the projection shapes: head_dim = output
  projection inputs / n_heads, the number of key/value heads from the key projection's size
  (multi-query and grouped-query attention need no config flag), `Conv1D` (weights stored
  (in, out)) told from `nn.Linear` by its type;
- **mlp**: every other parameter of the block outside norms (so MoE routers and experts are
  in it); **experts**: the `experts` module list, or fused expert tensors (E, ...);
- **embed / unembed**: `get_input_embeddings()` / `get_output_embeddings()` of a
  `transformers` model, else the usual attribute names.

Conventions follow devinterp 2.x: "embed" is the token embedding only, "unembed" the
unembedding matrix (and its bias); layer norms belong to a layer but to neither its attention
nor its MLP. Whatever is not understood raises `ValueError` naming what was found.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from torch import nn

__all__ = [
    "ROLE_NAMES",
    "LayerLayout",
    "ModelLayout",
    "Projection",
    "describe_model",
]

# Wrapper modules whose name says nothing about the role (TransformerLens bridges wrap every
# HF/TL-native module in `_original_component`; PEFT in `base_layer`).
_WRAPPERS = {"_original_component", "base_layer", "original_module"}

# Role of a projection inside an attention module, by its (lower-cased) attribute name.
ROLE_NAMES: dict[str, frozenset[str]] = {
    "q": frozenset({"q_proj", "q", "query", "wq", "q_lin", "project_q", "to_q", "w_q"}),
    "k": frozenset({"k_proj", "k", "key", "wk", "k_lin", "project_k", "to_k", "w_k"}),
    "v": frozenset({"v_proj", "v", "value", "wv", "v_lin", "project_v", "to_v", "w_v"}),
    "qkv": frozenset({"c_attn", "query_key_value", "qkv_proj", "wqkv", "qkv", "w_pack", "in_proj"}),
    "o": frozenset(
        {"o_proj", "o", "out_proj", "dense", "c_proj", "wo", "out_lin", "attention_out", "w_o"}
    ),
}
_ROLE_OF = {name: role for role, names in ROLE_NAMES.items() for name in names}
_EMBED_ATTRS = ("tok_emb", "embed", "wte", "embed_tokens", "word_embeddings", "embed_in")
_UNEMBED_ATTRS = ("unembed", "lm_head", "embed_out", "output_projection", "proj_out")
_DECODER_WORDS = ("decoder",)


@dataclass(frozen=True)
class Projection:
    """A linear map inside an attention module.

    name: the module's path (from the model root once in a `LayerLayout`); role: "q", "k", "v", "qkv" or "o"; weight/bias: canonical
    parameter names (bias None when absent); out_dim: the weight axis of the outputs (1 for
    GPT-2's Conv1D, which stores (in, out), else 0); size_out/size_in: feature counts.
    """

    name: str
    role: str
    weight: str
    bias: str | None
    out_dim: int
    size_out: int
    size_in: int


@dataclass
class AttentionModule:
    """One attention module of a layer: its path, projections and other parameters."""

    path: str
    module: nn.Module
    projections: list[Projection]
    params: list[str]  # every canonical parameter name under the module, norms included
    norms: dict[str, nn.Module] = field(default_factory=dict)  # path -> norm module inside


@dataclass
class LayerLayout:
    """One block: parameter names by part (canonical names, model order)."""

    index: int
    path: str
    params: list[str]
    attention: list[AttentionModule]
    attn: list[str]
    mlp: list[str]
    norms: list[str]
    experts: list[list[str]] | None  # expert j -> its parameter names (module list experts)
    fused_experts: list[str] | None  # parameters holding every expert along dim 0


@dataclass
class ModelLayout:
    """What `describe_model` found: layers, embed and unembed."""

    stack: str
    layers: list[LayerLayout]
    embed: list[str]
    unembed: list[str]


def canonical_names(model: nn.Module) -> dict[int, str]:
    """id(parameter) -> the name `model.named_parameters()` gives it (tied weights: first)."""
    out: dict[int, str] = {}
    for name, p in model.named_parameters():
        out.setdefault(id(p), name)
    return out


def describe_model(model: nn.Module) -> ModelLayout:
    """Layers, attention, MLP, experts, embed and unembed of `model` (see module docstring).

    Raises ValueError when no layer stack with attention is found, or when several are and
    none is the decoder's, saying what was found.
    """
    names = canonical_names(model)
    path, stack = _layer_stack(model)
    layers = [_layer(i, f"{path}.{i}", block, names) for i, block in enumerate(stack)]
    return ModelLayout(
        stack=path,
        layers=layers,
        embed=_embedding(model, names, "input", path),
        unembed=_embedding(model, names, "output", path),
    )


def meaningful_parts(path: str) -> list[str]:
    """The path's components without wrapper names and list indices."""
    return [p for p in path.split(".") if p and p not in _WRAPPERS]


def _layer_stack(model: nn.Module) -> tuple[str, nn.ModuleList]:
    stacks = []
    for path, mod in model.named_modules():
        if not isinstance(mod, nn.ModuleList) or len(mod) == 0:
            continue
        if len({type(child) for child in mod}) != 1:
            continue
        if _attention_modules(mod[0], {}):
            stacks.append((path, mod))
    if len(stacks) == 1:
        return stacks[0]
    decoder = [s for s in stacks if any(w in s[0].lower() for w in _DECODER_WORDS)]
    if len(decoder) == 1:
        return decoder[0]
    if not stacks:
        raise ValueError(
            "layer/head restrictions need a transformer whose blocks form one nn.ModuleList "
            "of identical modules with an attention module (query/key/value and output "
            f"projections named like {sorted(ROLE_NAMES['q'])[:4]} ...); this "
            f"{type(model).__name__} has none. Use parameter names, module names or glob "
            "patterns instead, e.g. 'layers.0.*'."
        )
    raise ValueError(
        f"{type(model).__name__} has several layer stacks {[s[0] for s in stacks]} and none "
        "is the decoder's; select parameters by name or glob instead."
    )


def _linear_like(mod: nn.Module) -> bool:
    w = mod._parameters.get("weight")
    return w is not None and w.dim() == 2 and not isinstance(mod, nn.Embedding)


def _is_conv1d(mod: nn.Module) -> bool:
    """GPT-2's Conv1D stores its weight (in_features, out_features)."""
    return type(mod).__name__ == "Conv1D" or hasattr(mod, "nf")


def _is_norm(mod: nn.Module) -> bool:
    return "norm" in type(mod).__name__.lower()


def _projections(root: nn.Module, names: dict[int, str]) -> list[Projection]:
    found = []
    for path, mod in root.named_modules():
        if not path or not _linear_like(mod):
            continue
        parts = meaningful_parts(path)
        role = _ROLE_OF.get(parts[-1].lower()) if parts else None
        if role is None:
            continue
        w = mod._parameters["weight"]
        b = mod._parameters.get("bias")
        out_dim = 1 if _is_conv1d(mod) else 0
        found.append(
            Projection(
                name=path,
                role=role,
                weight=names[id(w)],
                bias=names[id(b)] if b is not None else None,
                out_dim=out_dim,
                size_out=int(w.shape[out_dim]),
                size_in=int(w.shape[1 - out_dim]),
            )
        )
    return found


def _has_attention_roles(projs: list[Projection]) -> bool:
    roles = {p.role for p in projs}
    return "o" in roles and ("qkv" in roles or {"q", "k", "v"} <= roles)


def _attention_modules(block: nn.Module, names: dict[int, str]) -> list[tuple[str, nn.Module]]:
    """The smallest modules under `block` (not `block` itself) holding q, k, v and o."""
    names = names or {id(p): n for n, p in block.named_parameters()}
    candidates = []
    for path, mod in block.named_modules():
        if path and (
            _has_attention_roles(_projections(mod, names))
            or is_hooked_attention(mod)
            or isinstance(mod, nn.MultiheadAttention)
        ):
            candidates.append((path, mod))
    return [
        (p, m)
        for p, m in candidates
        if not any(q != p and q.startswith(p + ".") for q, _ in candidates)
    ]


def is_hooked_attention(mod: nn.Module) -> bool:
    """TransformerLens' HookedTransformer attention (2.x/3.x): per-head tensors W_Q (n, d, hd),
    W_K/W_V (or _W_K/_W_V with grouped-query attention), W_O (n, hd, d), held directly."""
    own = set(mod._parameters)
    return {"W_Q", "W_O"} <= own and bool({"W_K", "_W_K"} & own) and bool({"W_V", "_W_V"} & own)


def _layer(index: int, path: str, block: nn.Module, names: dict[int, str]) -> LayerLayout:
    params = [names[id(p)] for p in block.parameters()]
    direct = {names[id(p)] for p in block._parameters.values() if p is not None}
    attention = []
    in_attention: set[str] = set()
    for sub, mod in _attention_modules(block, names):
        attn_params = [names[id(p)] for p in mod.parameters()]
        norms = {f"{path}.{n}": m for n, m in mod.named_modules() if n and _is_norm(m)}
        full = f"{path}.{sub}"
        projs = [replace(p, name=f"{full}.{p.name}") for p in _projections(mod, names)]
        attention.append(AttentionModule(full, mod, projs, attn_params, norms))
        in_attention.update(attn_params)
    norm_params: list[str] = []
    for sub, mod in block.named_modules():
        if not (sub and _is_norm(mod)):
            continue
        parts = meaningful_parts(sub)
        inside = any((f"{path}.{sub}").startswith(a.path + ".") for a in attention)
        # q_norm / k_norm (Qwen3, OLMo-2, Persimmon) act on queries or keys: attention's.
        if inside and parts and parts[-1].lower().startswith(("q", "k")):
            continue
        norm_params.extend(names[id(p)] for p in mod.parameters())
    norm_set = set(norm_params)
    attn = [n for n in params if n in in_attention and n not in norm_set]
    mlp = [n for n in params if n not in in_attention and n not in norm_set and n not in direct]
    experts, fused = _experts(block, names, set(mlp))
    return LayerLayout(index, path, params, attention, attn, mlp, norm_params, experts, fused)


def _experts(
    block: nn.Module, names: dict[int, str], mlp: set[str]
) -> tuple[list[list[str]] | None, list[str] | None]:
    """Routed experts: a module list named `experts`, or fused (E, ...) expert tensors (every
    such module of the block: GraniteMoE keeps its input and output experts apart)."""
    fused: list[str] = []
    counts: set[int] = set()
    taken: list[str] = []
    for sub, mod in block.named_modules():
        parts = meaningful_parts(sub)
        if not parts or "shared" in parts[-1].lower():
            continue
        if any(sub.startswith(t + ".") for t in taken):
            continue
        named_experts = parts[-1].lower() == "experts"
        if isinstance(mod, nn.ModuleList) and named_experts:
            return [[names[id(p)] for p in child.parameters()] for child in mod], None
        if named_experts or "experts" in type(mod).__name__.lower():
            params = list(mod.parameters())
            lead = {int(p.shape[0]) for p in params if p.dim() >= 1}
            if params and len(lead) == 1 and all(names[id(p)] in mlp for p in params):
                fused += [names[id(p)] for p in params]
                counts |= lead
                taken.append(sub)
    if fused and len(counts) == 1:
        return None, fused
    return None, None


def _embedding(model: nn.Module, names: dict[int, str], side: str, stack: str) -> list[str]:
    """The token embedding ("input") or unembedding ("output") parameters, [] if none."""
    getter = getattr(model, f"get_{side}_embeddings", None)
    mod = None
    if callable(getter):
        try:
            mod = getter()
        except (NotImplementedError, AttributeError, TypeError):
            mod = None
    if mod is None:
        # Outside the layer stack, the first module named like a token embedding (an
        # nn.Embedding) or an unembedding (a linear map).
        wanted = _EMBED_ATTRS if side == "input" else _UNEMBED_ATTRS
        for path, candidate in model.named_modules():
            parts = meaningful_parts(path)
            if not parts or parts[-1].lower() not in wanted or path.startswith(stack + "."):
                continue
            inner = [
                m for m in candidate.modules() if isinstance(m, nn.Embedding) or _linear_like(m)
            ]
            if {"W_E", "W_U"} & set(candidate._parameters):  # HookedTransformer Embed / Unembed
                mod = candidate
            elif side == "input" and inner and isinstance(inner[0], nn.Embedding):
                mod = inner[0]
            elif side == "output" and inner and _linear_like(inner[0]):
                mod = candidate
            if mod is not None:
                break
    if mod is None:
        return []
    return list(dict.fromkeys(names[id(p)] for p in mod.parameters() if id(p) in names))


def config_value(obj: object, keys: tuple[str, ...]) -> int | None:
    """The first of `keys` set on a config object or dict, as int."""
    if obj is None:
        return None
    for key in keys:
        value = obj.get(key) if isinstance(obj, dict) else getattr(obj, key, None)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return int(value)
    return None


def model_configs(model: nn.Module) -> list[object]:
    """Config objects to read sizes from: `model.config` (transformers, TinyLM), `model.cfg`
    (TransformerLens), and a text sub-config when the model nests one."""
    out = []
    for attr in ("config", "cfg"):
        cfg = getattr(model, attr, None)
        if cfg is not None:
            out.append(cfg)
            text = getattr(cfg, "text_config", None) if not isinstance(cfg, dict) else None
            if text is not None and text is not cfg:
                out.append(text)
    return out
