"""All chains in one batched call: `chain_schedule="vectorized"`.

The chains' parameters are stacked along a leading chain dim, and `torch.func.vmap` runs the
forward and backward passes of every chain at once (one big kernel instead of C small ones).
Each chain keeps its own noise generator, batch feed and SGLD update (applied to its slice of the
stack), so the samples are statistically the same as the other schedules; the arithmetic of the
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

from devinterp_ui.chain import Observable, PendingObservation, PendingStep, SharedSegments
from devinterp_ui.data import BatchFeed, DataSource
from devinterp_ui.host_copy import HostCopy
from devinterp_ui.losses import LossFn, as_per_position
from devinterp_ui.sgld import SGLDHyper, add_init_noise, make_slots, sgld_step


class _LossOf(torch.nn.Module):
    """`loss_fn(model, batch)` as a module, so `functional_call` can swap in a chain's weights
    for every use of them inside the call, `model(...)` and direct `model.w` alike."""

    def __init__(self, model: torch.nn.Module, loss_fn: LossFn):
        super().__init__()
        self.model = model
        object.__setattr__(self, "_loss_fn", loss_fn)

    def forward(self, batch):
        return self._loss_fn(self.model, batch)


class VectorizedChains:
    """C chains of one model, stepped together. Each segment of the sampled parameters (see
    `devinterp_ui.segments`) is stacked as (C, numel); `stacked[name]` (C, *shape) views it."""

    def __init__(
        self,
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
    ):
        self.feeds = feeds
        self.source = source
        self.hyper = hyper
        self.grad_accum = grad_accum
        self.device = device
        self.shared_batches = shared_batches
        self.num_chains = len(feeds)
        self.gens = [torch.Generator(device=device).manual_seed(int(s)) for s in noise_seeds]

        self.names = list(sampled)
        self._loss_module = _LossOf(model, loss_fn)
        shared = SharedSegments.of(model, sampled)
        self.layout = shared.layout
        self._segments, self.stacked = self.layout.stack(model, self.num_chains)
        self.slots = [
            make_slots(
                [seg[c] for seg in self._segments], shared.anchors, shared.masks, hyper.method
            )
            for c in range(self.num_chains)
        ]
        if init_noise:
            for c in range(self.num_chains):
                add_init_noise(self.slots[c], lambda t, c=c: self._noise(c, t), init_noise)

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

    def _noise(self, c: int, t: torch.Tensor) -> torch.Tensor:
        return torch.randn(t.shape, generator=self.gens[c], device=t.device, dtype=t.dtype)

    def step(self, with_metrics: bool, active: list[bool]) -> list[PendingStep]:
        """One SGLD step of every chain; chains not `active` are computed but never updated.

        As `Chain.step`: nothing waits for the device, and a chain with a non-finite loss is
        updated anyway and failed when its step is resolved.
        """
        grads = {n: torch.zeros_like(t) for n, t in self.stacked.items()}
        losses, rows = [], []
        for _ in range(self.grad_accum):
            idx = [feed.next() for feed in self.feeds]
            batch = self._batch(idx)
            g, per = self._grad(self.stacked, batch)
            for n in self.names:
                grads[n].add_(g[n])
            losses.append(per.detach())
            rows.append(idx)
        if self.grad_accum > 1:
            for t in grads.values():
                t.div_(self.grad_accum)
        metrics = [
            sgld_step(
                self.slots[c],
                self.layout.flat_grads([grads[n][c] for n in self.names]),
                (self._noise(c, slot.w) for slot in self.slots[c]),
                self.hyper,
                with_metrics,
            )
            if active[c]
            else None
            for c in range(self.num_chains)
        ]
        grams = [m.gram for m in metrics if m is not None]
        # One copy for every chain: (C, B * accum, P) losses, then each updated chain's sums.
        copy = HostCopy([torch.cat(losses, dim=1).float(), *grams])
        pending, at = [], 1
        for c, m in enumerate(metrics):
            chain_rows = np.concatenate([r[c] for r in rows])
            pending.append(PendingStep(copy, chain_rows, m, gram_at=at, chain=c))
            at += m is not None
        return pending

    def _batch(self, idx: list[np.ndarray]):
        if self.shared_batches:
            return self.source.batch(idx[0], self.device)
        batches = [self.source.batch(i, self.device) for i in idx]
        return _stack(batches)

    def observe(self, observables: list[Observable], batch_size: int) -> PendingObservation:
        """Every chain's losses on every observable; resolve(c) gives chain c's."""
        parts = []
        with torch.no_grad():
            for obs in observables:
                parts += [
                    self._eval(self.stacked, batch).float()
                    for _, batch in obs.batches(batch_size, self.device)
                ]
        # One copy for every observable (they share P).
        copy = HostCopy([torch.cat(parts, dim=1)]) if parts else None
        return PendingObservation(copy, observables)


def check_vectorizable(model, sampled, source: DataSource, loss_fn: LossFn, device) -> None:
    """Raise ValueError (before any sampling) when torch.func cannot batch this model's chains."""
    try:
        probe = VectorizedChains(
            model,
            sampled,
            [BatchFeed(len(source), min(2, len(source)), 0, False)] * 2,
            source,
            loss_fn,
            SGLDHyper(lr=0.0, n_beta=0.0),
            [0, 1],
            1,
            device,
            shared_batches=True,
        )
        probe._grad(probe.stacked, source.batch(np.arange(min(2, len(source))), device))
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
