"""All chains in one batched call: `chain_schedule="vectorized"`.

The chains' parameters are stacked along a leading chain dim, and `torch.func.vmap` runs the
forward and backward passes of every chain at once (one big kernel instead of C small ones):
that is the gradient estimator of a `ChainGroup` (devinterp_ui.chain), which updates each chain
with the same kernel step as the other schedules. Each chain keeps its own noise generator, batch
feed and optimiser state (applied to its slice of the stack), so the samples are statistically the same as the other schedules; the arithmetic of the
batched kernels rounds differently, so they are not bit-identical (see docs/performance.md).

Needs a model `torch.func.functional_call` can run under `vmap`: plain tensor ops, no in-place
updates of buffers, no data-dependent Python control flow; `loss_fn(model, batch)` is called with
the chain's weights swapped into `model` (torch.func.functional_call), so it may use `model(...)`
and the parameters directly.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.func import functional_call, grad, vmap

from devinterp_ui import kernel
from devinterp_ui.chain import ChainGroup, SharedSegments
from devinterp_ui.data import BatchFeed, DataSource
from devinterp_ui.losses import LossFn, as_per_position
from devinterp_ui.segments import SegmentLayout
from devinterp_ui.sgld import SGLDHyper


class _LossOf(torch.nn.Module):
    """`loss_fn(model, batch)` as a module, so `functional_call` can swap in a chain's weights
    for every use of them inside the call, `model(...)` and direct `model.w` alike."""

    def __init__(self, model: torch.nn.Module, loss_fn: LossFn):
        super().__init__()
        self.model = model
        object.__setattr__(self, "_loss_fn", loss_fn)

    def forward(self, batch):
        return self._loss_fn(self.model, batch)


class VmappedGradient:
    """The gradient estimator of C chains at once: `torch.func.vmap` over the chain dim of
    `stacked` ({name: (C, *shape)} views of the stacked segments).

    `grads(rows)` -> ([(C, *shape) gradient per sampled parameter], (C, B, P) losses), rows one
    array per chain (with `shared_batches`, every chain's are the same and only the first is
    used: one batch for all); `of_chain(grads, i)`: chain i's list; `evaluate(rows, batch,
    where)` -> (C, B, P) losses on one batch.
    """

    def __init__(self, model, stacked: dict, source: DataSource, loss_fn, device, shared_batches):
        self.stacked, self.source, self.device = stacked, source, device
        self.shared_batches = shared_batches
        self.names = list(stacked)
        self._loss_module = _LossOf(model, loss_fn)

        def per_row_losses(params, batch):
            # Frozen parameters and buffers stay the module's own, shared by every chain.
            swapped = {f"model.{n}": p for n, p in params.items()}
            losses = functional_call(self._loss_module, swapped, (batch,))
            return as_per_position(losses, _rows(batch), "loss_fn")

        def mean_loss(params, batch):
            per = per_row_losses(params, batch)
            return per.mean(), per

        batch_dim = None if shared_batches else 0
        self._grad = vmap(grad(mean_loss, has_aux=True), in_dims=(0, batch_dim))
        self._eval = vmap(per_row_losses, in_dims=(0, None))

    def grads(self, rows: list[np.ndarray]) -> tuple[list[torch.Tensor], torch.Tensor]:
        g, per = self._grad(self.stacked, self._batch(rows))
        return [g[n] for n in self.names], per.detach()

    @staticmethod
    def of_chain(grads: list[torch.Tensor], i: int) -> list[torch.Tensor]:
        """Chain i's gradients: (*shape) views of the (C, *shape) ones."""
        return [g[i] for g in grads]

    def evaluate(self, rows: int, batch, where: str) -> torch.Tensor:
        return self._eval(self.stacked, batch)

    def _batch(self, idx: list[np.ndarray]):
        if self.shared_batches:
            return self.source.batch(idx[0], self.device)
        return _stack([self.source.batch(i, self.device) for i in idx])


def vectorized_group(
    chains: list[int],
    model: torch.nn.Module,
    sampled: dict[str, torch.Tensor | None],
    feeds: list[BatchFeed],
    source: DataSource,
    loss_fn: LossFn,
    hyper: SGLDHyper,
    noise_seeds: list[int],
    grad_accum: int,
    device: torch.device,
    shared_batches: bool,
    init_noise: float | None = None,
) -> ChainGroup:
    """`chains` stepped by one vmapped estimator. Each segment of the sampled parameters (see
    `devinterp_ui.segments`) is stacked as (C, numel) from the checkpoint `model`; the kernel
    updates each chain's row (a float32 master copy of it for a low-precision model)."""
    shared = SharedSegments.of(model, sampled)
    segments, stacked = shared.layout.stack(model, len(chains))
    masters, views = kernel.master_weights(segments)
    estimator = VmappedGradient(model, stacked, source, loss_fn, device, shared_batches)
    rows = range(len(chains))
    return ChainGroup(
        chains,
        estimator,
        shared.layout,
        shared,
        [[seg[c] for seg in masters] for c in rows],
        [[None if v is None else v[c] for v in views] for c in rows],
        feeds,
        noise_seeds,
        hyper,
        grad_accum,
        device,
        init_noise,
    )


def check_vectorizable(model, sampled, source: DataSource, loss_fn: LossFn, device) -> None:
    """Raise ValueError (before any sampling) when torch.func cannot batch this model's chains."""
    try:
        layout = SegmentLayout(model, sampled)
        _, stacked = layout.stack(model, 2)
        probe = VmappedGradient(model, stacked, source, loss_fn, device, shared_batches=True)
        probe.grads([np.arange(min(2, len(source)))])
    except Exception as exc:
        raise ValueError(
            "chain_schedule='vectorized' needs a model torch.func can vmap (plain tensor ops, "
            f"no in-place buffer updates) and a loss_fn that only calls model(...); here it "
            f"failed with {type(exc).__name__}: {exc}. Use chain_schedule='lockstep'."
        ) from exc


def _rows(batch) -> int:
    first = (
        batch
        if isinstance(batch, torch.Tensor)
        else next(iter(batch.values() if isinstance(batch, dict) else batch))
    )
    return int(first.shape[0])


def _stack(batches: list):
    first = batches[0]
    if isinstance(first, torch.Tensor):
        return torch.stack(batches)
    if isinstance(first, dict):
        return {k: torch.stack([b[k] for b in batches]) for k in first}
    return tuple(torch.stack([b[j] for b in batches]) for j in range(len(first)))
