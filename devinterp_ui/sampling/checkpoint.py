"""The checkpoint the chains start from: its device, and the working copy in `model_mode`."""

from __future__ import annotations

import copy
import warnings

import torch

# Layers whose output depends on train/eval mode, so the mode changes the loss.
MODE_DEPENDENT = (
    torch.nn.modules.dropout._DropoutNd,
    torch.nn.modules.batchnorm._BatchNorm,
    torch.nn.modules.instancenorm._InstanceNorm,
)


def resolve_device(model: torch.nn.Module, device) -> torch.device:
    """`device` as a torch.device (default: the model's); ValueError naming the fix."""
    if device is None:
        first = next(model.parameters(), None)
        return first.device if first is not None else torch.device("cpu")
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(
            f"device {device!r} is not a torch device; pass e.g. 'cpu' or 'cuda:0'."
        ) from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device='cuda' but torch sees no CUDA device; pass device='cpu'.")
    return device


def working_copy(model: torch.nn.Module, device: torch.device, model_mode: str) -> torch.nn.Module:
    """A deep copy of `model` on `device`, put in `model_mode` ("train" or "eval"); the user's
    model is never modified. Warns when the model has layers the mode changes (dropout,
    batch/instance norm), naming them and the other choice."""
    layers = sorted({type(m).__name__ for m in model.modules() if isinstance(m, MODE_DEPENDENT)})
    if layers:
        other = "eval" if model_mode == "train" else "train"
        effect = (
            "dropout is active and batch norm uses batch statistics (and updates its running "
            "stats), so the loss is noisier and differs from eval mode"
            if model_mode == "train"
            else "dropout is off and batch norm uses its running statistics, unlike devinterp "
            "2.x, which samples in train mode"
        )
        warnings.warn(
            f"the model has {', '.join(layers)} layers and samples with "
            f"model_mode={model_mode!r}: {effect}. Pass model_mode={other!r} for the other "
            "choice; the store records the mode.",
            UserWarning,
            stacklevel=3,
        )
    base = copy.deepcopy(model).to(device)
    base.train(model_mode == "train")
    return base
