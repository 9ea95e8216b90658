"""Per-row losses: the default next-token cross-entropy and the shape contract of `loss_fn`."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any

import torch
import torch.nn.functional as F

LossFn = Callable[[torch.nn.Module, Any], torch.Tensor]


def next_token_loss(model: torch.nn.Module, batch: torch.Tensor | Mapping) -> torch.Tensor:
    """Per-token cross-entropy of predicting token t+1 from tokens <= t.

    batch: (B, T) int64 token ids, or {"input_ids": (B, T), "attention_mask": (B, T)} (what a
    dataset with padding hands over; 1 = real token, 0 = padding). The model is called as
    `model_logits` says. Returns (B, T-1) float losses.

    Without a mask the entries are nats per token. With a mask, position t counts when both
    token t and token t+1 are real; each row's counted positions hold cross-entropy x
    (T-1) / (positions counted in the row) and the others 0, so that a row's mean over
    positions is its mean loss over real tokens and padding moves neither the loss, its
    gradient, nor `init_loss`.
    """
    if isinstance(batch, Mapping):
        input_ids = batch["input_ids"]
        mask = batch.get("attention_mask")
    else:
        input_ids, mask = batch, None
    logits = model_logits(model, input_ids, mask)
    pred = logits[:, :-1]
    target = input_ids[:, 1:]
    losses = F.cross_entropy(pred.reshape(-1, pred.shape[-1]), target.reshape(-1), reduction="none")
    losses = losses.view(target.shape)
    if mask is None:
        return losses
    counted = (mask[:, 1:] != 0) & (mask[:, :-1] != 0)
    per_row = counted.sum(dim=1, keepdim=True).clamp(min=1)
    weight = counted.to(losses.dtype) * (counted.shape[1] / per_row.to(losses.dtype))
    return losses * weight


def model_logits(
    model: torch.nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None
) -> torch.Tensor:
    """(B, T, V) logits of `model` on `input_ids`, called the way its library expects.

    - Hugging Face `transformers` models (forward takes `use_cache`): without a KV cache
      (`use_cache=False`), which sampling never reuses and which costs memory per call;
    - TransformerLens models (forward takes `return_type`): `return_type="logits"`;
    - anything else: `model(input_ids)`, returning logits or an object with `.logits`.
    `attention_mask` is passed as `attention_mask=` (TypeError if the forward takes none).
    """
    accepted = _forward_parameters(model)
    kwargs: dict[str, Any] = {}
    if "use_cache" in accepted:
        kwargs["use_cache"] = False
    if "return_type" in accepted:
        kwargs["return_type"] = "logits"
    if attention_mask is not None:
        if "attention_mask" not in accepted and "kwargs" not in accepted:
            raise TypeError(
                f"the data carries an attention_mask but {type(model).__name__}.forward takes "
                "no attention_mask; drop the column or pass loss_fn=..."
            )
        kwargs["attention_mask"] = attention_mask
    out = model(input_ids, **kwargs)
    logits = getattr(out, "logits", out)
    if isinstance(logits, (tuple, list)) and logits and isinstance(logits[0], torch.Tensor):
        logits = logits[0]
    if not isinstance(logits, torch.Tensor) or logits.ndim != 3:
        shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise TypeError(
            f"the default loss needs model(input_ids) to return logits (B, T, V) or an object with "
            f".logits (got {shape}); pass loss_fn=... for other models."
        )
    return logits


_FORWARD_PARAMETERS: dict[type, frozenset[str]] = {}


def _forward_parameters(model: torch.nn.Module) -> frozenset[str]:
    """Names `type(model).forward` accepts ("kwargs" for **kwargs), cached per class."""
    cls = type(model)
    if cls not in _FORWARD_PARAMETERS:
        try:
            params = inspect.signature(cls.forward).parameters.values()
            names = {
                "kwargs" if p.kind is inspect.Parameter.VAR_KEYWORD else p.name for p in params
            }
        except (TypeError, ValueError):
            names = set()
        _FORWARD_PARAMETERS[cls] = frozenset(names)
    return _FORWARD_PARAMETERS[cls]


def as_per_position(losses: Any, batch_rows: int, where: str) -> torch.Tensor:
    """Check `loss_fn`'s output and view it as (B, P): (B,) becomes (B, 1).

    Raises TypeError/ValueError naming `where` when the output is not a float tensor of shape
    (B,), (B, P) or (B, T-1).
    """
    if not isinstance(losses, torch.Tensor):
        raise TypeError(
            f"{where} must return a tensor of per-sample (B,) or per-token (B, P) losses "
            f"(got {type(losses).__name__})."
        )
    if not losses.dtype.is_floating_point:
        raise TypeError(f"{where} must return floating-point losses (got dtype {losses.dtype}).")
    if losses.ndim not in (1, 2) or losses.shape[0] != batch_rows:
        raise ValueError(
            f"{where} must return losses of shape (B,) or (B, P) with B = {batch_rows} rows of "
            f"the batch (got shape {tuple(losses.shape)}); do not reduce over the batch, e.g. use "
            "reduction='none'."
        )
    return losses if losses.ndim == 2 else losses[:, None]
