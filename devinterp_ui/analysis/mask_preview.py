"""What a weight restriction selects, tensor by tensor, before any run."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from devinterp_ui.analysis.param_masks import create_param_masks

__all__ = ["MaskPreview", "format_preview", "preview_param_masks"]


@dataclass(frozen=True)
class MaskPreview:
    """One selected tensor.

    tensor: parameter name as `sample()` uses it; shape: its shape; slice: what is selected,
    "all" or "dim d: [a:b] [c:e]" (half-open index ranges along one axis) or "N scattered
    entries"; count: selected entries; total: entries of the tensor.
    """

    tensor: str
    shape: tuple[int, ...]
    slice: str
    count: int
    total: int


def preview_param_masks(
    model: torch.nn.Module,
    restriction,
    *,
    n_heads: int | None = None,
    n_kv_heads: int | None = None,
) -> list[MaskPreview]:
    """One `MaskPreview` per tensor `create_param_masks(model, restriction)` selects, in model
    order. Raises what `create_param_masks` raises."""
    masks = create_param_masks(model, restriction, n_heads=n_heads, n_kv_heads=n_kv_heads)
    params = dict(model.named_parameters())
    rows = []
    for name in params:
        if name not in masks:
            continue
        shape = tuple(params[name].shape)
        total = int(params[name].numel())
        mask = masks[name]
        if mask is None:
            rows.append(MaskPreview(name, shape, "all", total, total))
        else:
            mask = mask.bool().cpu()
            rows.append(MaskPreview(name, shape, describe_mask(mask), int(mask.sum()), total))
    return rows


def format_preview(rows: list[MaskPreview]) -> str:
    """The preview as an aligned text table, with the total at the bottom."""
    width = max([len(r.tensor) for r in rows] + [6])
    lines = [f"{'tensor':<{width}}  {'shape':<16}  {'count':>10}  slice"]
    for r in rows:
        lines.append(f"{r.tensor:<{width}}  {str(r.shape):<16}  {r.count:>10}  {r.slice}")
    lines.append(f"{'total':<{width}}  {'':<16}  {sum(r.count for r in rows):>10}")
    return "\n".join(lines)


def describe_mask(mask: torch.Tensor) -> str:
    """ "all", "dim d: [a:b] ..." when the mask is whole slices along one axis, else a count."""
    if bool(mask.all()):
        return "all"
    for dim in range(mask.dim()):
        others = tuple(d for d in range(mask.dim()) if d != dim)
        line = mask.any(dim=others) if others else mask
        shape = [1] * mask.dim()
        shape[dim] = mask.shape[dim]
        if torch.equal(line.view(shape).expand(mask.shape), mask):
            return f"dim {dim}: " + " ".join(f"[{a}:{b}]" for a, b in _runs(line))
    return f"{int(mask.sum())} scattered entries"


def _runs(line: torch.Tensor) -> list[tuple[int, int]]:
    runs, start = [], None
    for i, on in enumerate(line.tolist() + [False]):
        if on and start is None:
            start = i
        elif not on and start is not None:
            runs.append((start, i))
            start = None
    return runs
