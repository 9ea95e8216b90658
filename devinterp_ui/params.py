"""Which parameters a run samples: resolving and checking `param_masks`."""

from __future__ import annotations

import difflib
from collections.abc import Mapping

import torch


def resolve_param_masks(
    model: torch.nn.Module, param_masks: Mapping[str, torch.Tensor | None] | None
) -> dict[str, torch.Tensor | None]:
    """{parameter name: bool mask or None (every entry)} of the sampled parameters.

    None samples every parameter with `requires_grad`. A dict samples exactly its keys (whatever
    their `requires_grad`), each restricted to the nonzero entries of its mask; the rest is frozen.
    Raises ValueError/TypeError, naming the key, for unknown names, masks of the wrong shape or
    dtype, and restrictions that sample nothing.
    """
    named = dict(model.named_parameters())
    if not named:
        raise ValueError(
            "the model has no parameters to sample; pass a torch.nn.Module with parameters."
        )
    if param_masks is None:
        chosen = {name: None for name, p in named.items() if p.requires_grad}
        if not chosen:
            raise ValueError(
                "the model has no trainable parameters (every requires_grad is False); "
                "unfreeze some, or list the ones to sample in param_masks={name: None}."
            )
        return chosen
    if not isinstance(param_masks, Mapping):
        raise TypeError(
            f"param_masks must be a dict {{parameter name: mask or None}} (got {type(param_masks).__name__})."
        )
    if not param_masks:
        raise ValueError(
            "param_masks is empty, so no parameter would be sampled; pass None to sample every "
            "parameter or list at least one parameter name."
        )
    out: dict[str, torch.Tensor | None] = {}
    for name, mask in param_masks.items():
        if name not in named:
            close = difflib.get_close_matches(str(name), list(named), n=5)
            hint = f" (similar: {close})" if close else ""
            raise ValueError(
                f"param_masks key {name!r} is not a parameter of the model{hint}; keys must be "
                "names from model.named_parameters()."
            )
        out[name] = None if mask is None else _check_mask(name, mask, named[name])
    if all(m is not None and not bool(m.any()) for m in out.values()):
        raise ValueError(
            "param_masks selects no entry (every mask is all zeros): the restriction is empty; "
            "give at least one mask a nonzero entry."
        )
    return out


def _check_mask(name: str, mask, param: torch.Tensor) -> torch.Tensor:
    mask = torch.as_tensor(mask)
    if tuple(mask.shape) != tuple(param.shape):
        raise ValueError(
            f"param_masks[{name!r}] has shape {tuple(mask.shape)} but the parameter has shape "
            f"{tuple(param.shape)}; pass a mask of the parameter's shape or None for all entries."
        )
    if mask.dtype != torch.bool:
        if not bool(((mask == 0) | (mask == 1)).all()):
            raise ValueError(
                f"param_masks[{name!r}] must be boolean or hold only 0 and 1 (found other values)."
            )
        mask = mask != 0
    return mask.detach().cpu()
