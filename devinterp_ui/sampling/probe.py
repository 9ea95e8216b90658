"""The checks that need one forward pass: `loss_fn` on a probe of at most 2 rows, before any
store exists. They fix the store's `token_pos` size and refuse losses that cannot be sampled."""

from __future__ import annotations

import numpy as np
import torch

from devinterp_ui.chain import Observable
from devinterp_ui.data import DataSource
from devinterp_ui.losses import LossFn, as_per_position

PROBE_ROWS = 2


def probe_loss(
    model: torch.nn.Module,
    source: DataSource,
    obs: list[Observable],
    loss_fn: LossFn,
    sampled: dict[str, torch.Tensor | None],
    batch_size: int,
    device: torch.device,
) -> int:
    """P (positions per row) of `loss_fn` on the first rows; every observable must agree.

    Raises TypeError/ValueError when the losses have the wrong type or shape, are NaN/Inf at
    the checkpoint, or have no gradient path to the sampled parameters (every chain would fail
    at step 0). One forward on the dataset's probe (its autograd graph is walked, not run
    backward), one forward per observable.
    """
    rows = np.arange(min(batch_size, PROBE_ROWS, len(source)))
    where = f"loss_fn (checked on a {len(rows)}-row probe batch of the dataset)"
    params = dict(model.named_parameters())
    flags = {name: p.requires_grad for name, p in params.items()}
    try:
        for name in sampled:
            params[name].requires_grad_(True)
        with torch.enable_grad():
            per = as_per_position(loss_fn(model, source.batch(rows, device)), len(rows), where)
            _check_finite(per, where)
            _check_gradient_path(per, [params[n] for n in sampled], where)
    finally:
        for name, flag in flags.items():
            params[name].requires_grad_(flag)
    positions = int(per.shape[1])
    for o in obs:
        o_rows = o.rows[:PROBE_ROWS]
        o_where = f"loss_fn on observable {o.name!r} (checked on a {len(o_rows)}-row probe)"
        with torch.no_grad():
            o_per = as_per_position(
                loss_fn(model, o.source.batch(o_rows, device)), len(o_rows), o_where
            )
        _check_finite(o_per, o_where)
        if o_per.shape[1] != positions:
            raise ValueError(
                f"loss_fn returns {o_per.shape[1]} positions per row on observable {o.name!r} "
                f"but {positions} on the sampling dataset; the store shares one 'token_pos' dim."
            )
    return positions


def _check_finite(per: torch.Tensor, where: str) -> None:
    finite = torch.isfinite(per.detach())
    if not bool(finite.all()):
        bad = int((~finite).sum())
        raise ValueError(
            f"{where} returns NaN/Inf at the checkpoint ({bad} of {per.numel()} losses); every "
            "chain would fail at step 0. Check the model's weights and loss_fn (e.g. log of 0, "
            "division by 0) before sampling."
        )


def _check_gradient_path(per: torch.Tensor, params: list[torch.Tensor], where: str) -> None:
    message = (
        f"{where} has no gradient path to the sampled parameters: the loss does not depend on "
        "them (detached, computed under no_grad, or from another model), so SGLD would only "
        "add noise. Compute the loss from model(batch) without .detach()/no_grad, or sample "
        "the parameters the loss uses (param_masks)."
    )
    if not per.requires_grad or not _reaches(per.grad_fn, {id(p) for p in params}):
        raise ValueError(message)


def _reaches(root, targets: set[int]) -> bool:
    """Whether the autograd graph under `root` accumulates into a tensor of `targets` (ids):
    exactly when a backward would give one of them a gradient. Walks the graph instead of
    running the backward, whose gradients would be a whole model copy at the probe."""
    seen, todo = set(), [root]
    while todo:
        node = todo.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        variable = getattr(node, "variable", None)  # AccumulateGrad: a leaf's gradient
        if variable is not None and id(variable) in targets:
            return True
        todo.extend(fn for fn, _ in node.next_functions)
    return False
