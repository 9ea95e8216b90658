"""Per-row losses: the default next-token cross-entropy and the shape contract of `loss_fn`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

LossFn = Callable[[torch.nn.Module, Any], torch.Tensor]


def next_token_loss(model: torch.nn.Module, input_ids: torch.Tensor) -> torch.Tensor:
    """Per-token cross-entropy of predicting token t+1 from tokens <= t.

    input_ids: (B, T) int64. The model returns logits (B, T, V), or an object with `.logits`.
    Returns (B, T-1) float losses in nats.
    """
    out = model(input_ids)
    logits = getattr(out, "logits", out)
    if not isinstance(logits, torch.Tensor) or logits.ndim != 3:
        shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise TypeError(
            f"the default loss needs model(input_ids) to return logits (B, T, V) or an object with "
            f".logits (got {shape}); pass loss_fn=... for other models."
        )
    pred = logits[:, :-1]
    target = input_ids[:, 1:]
    losses = F.cross_entropy(pred.reshape(-1, pred.shape[-1]), target.reshape(-1), reduction="none")
    return losses.view(target.shape)


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
