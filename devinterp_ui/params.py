"""Which parameters a run samples: resolving and checking `param_masks`.

"The full model" has one meaning everywhere: every parameter of `model.named_parameters()`,
whole, whatever its `requires_grad` (devinterp 2.0.1 samples every parameter the same way).
`param_masks=None`, `create_param_masks(model, "full")` and susceptibilities' `"full"` all
resolve to it, and the store records the sampled set (`sampled_set_record`), not where it came
from, so the three give one store identity.
"""

from __future__ import annotations

import difflib
import hashlib
import warnings
from collections.abc import Mapping

import torch


def resolve_param_masks(
    model: torch.nn.Module, param_masks: Mapping[str, torch.Tensor | None] | None
) -> dict[str, torch.Tensor | None]:
    """{parameter name: bool mask or None (every entry)} of the sampled parameters, in
    `model.named_parameters()` order whatever the order of `param_masks` (so the same
    restriction gives the same samples and the same store).

    None samples the full model: every parameter, frozen ones (`requires_grad=False`) included,
    with a UserWarning naming them when there are any. A dict samples exactly its keys
    (whatever their `requires_grad`), each restricted to the nonzero entries of its mask; the
    rest stays at the checkpoint. Raises ValueError/TypeError, naming the key, for unknown
    names, masks of the wrong shape or dtype, and restrictions that sample nothing.
    """
    named = dict(model.named_parameters())
    if not named:
        raise ValueError(
            "the model has no parameters to sample; pass a torch.nn.Module with parameters."
        )
    if param_masks is None:
        _warn_frozen(named)
        return dict.fromkeys(named)
    if not isinstance(param_masks, Mapping):
        raise TypeError(
            f"param_masks must be a dict {{parameter name: mask or None}} (got {type(param_masks).__name__})."
        )
    if not param_masks:
        raise ValueError(
            "param_masks is empty, so no parameter would be sampled; pass None to sample every "
            "parameter or list at least one parameter name."
        )
    given: dict[str, torch.Tensor | None] = {}
    for name, mask in param_masks.items():
        if name not in named:
            close = difflib.get_close_matches(str(name), list(named), n=5)
            hint = f" (similar: {close})" if close else ""
            raise ValueError(
                f"param_masks key {name!r} is not a parameter of the model{hint}; keys must be "
                "names from model.named_parameters()."
            )
        given[name] = None if mask is None else _check_mask(name, mask, named[name])
    if all(m is not None and not bool(m.any()) for m in given.values()):
        raise ValueError(
            "param_masks selects no entry (every mask is all zeros): the restriction is empty; "
            "give at least one mask a nonzero entry."
        )
    # A mask selecting every entry samples the whole tensor: record and pack it as such.
    out = {n: None if m is not None and bool(m.all()) else m for n, m in given.items()}
    if set(out) == set(named) and all(m is None for m in out.values()):
        _warn_frozen(named)
    return {n: out[n] for n in named if n in out}


def _warn_frozen(named: dict[str, torch.nn.Parameter]) -> None:
    frozen = [n for n, p in named.items() if not p.requires_grad]
    if frozen:
        shown = ", ".join(frozen[:5]) + (f" and {len(frozen) - 5} more" if len(frozen) > 5 else "")
        warnings.warn(
            f"the full model includes {len(frozen)} frozen parameter(s) (requires_grad=False: "
            f"{shown}); they are sampled like every other parameter, as devinterp 2.0.1 does. "
            "To keep them at the checkpoint, list the parameters to sample in param_masks, "
            "e.g. {n: None for n, p in model.named_parameters() if p.requires_grad}.",
            UserWarning,
            stacklevel=4,
        )


def sampled_set_record(
    model: torch.nn.Module, sampled: Mapping[str, torch.Tensor | None]
) -> dict[str, dict]:
    """What the store's identity records of the sampled set: {name: {"numel": entries of the
    parameter, "sampled": entries sampled, "mask": None (whole tensor) or a hash of the mask}}.

    Two runs that sample different entries never give the same record; the full model gives
    the same record whether it came from None, "full" or an explicit dict.
    """
    named = dict(model.named_parameters())
    out = {}
    for name, mask in sampled.items():
        numel = int(named[name].numel())
        if mask is None:
            out[name] = {"numel": numel, "sampled": numel, "mask": None}
        else:
            digest = hashlib.blake2b(
                mask.to(torch.uint8).contiguous().numpy().tobytes(), digest_size=8
            ).hexdigest()
            out[name] = {"numel": numel, "sampled": int(mask.sum()), "mask": digest}
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
