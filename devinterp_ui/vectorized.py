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

from devinterp_ui.chain import Observable, StepOutcome
from devinterp_ui.data import BatchFeed, DataSource
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
    """C chains of one model, stepped together. Parameters live in `stacked[name]` (C, *shape)."""

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

        named = dict(model.named_parameters())
        self.names = list(sampled)
        self._loss_module = _LossOf(model, loss_fn)
        self.stacked = {
            n: named[n].detach().unsqueeze(0).repeat(self.num_chains, *[1] * named[n].ndim).clone()
            for n in self.names
        }
        anchors = {n: named[n].detach() for n in self.names}
        self.slots = [
            make_slots({n: self.stacked[n][c] for n in self.names}, anchors, sampled, hyper.method)
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

    def step(self, with_metrics: bool, active: list[bool]) -> list[StepOutcome]:
        """One SGLD step of every chain; chains not `active` are computed but never updated."""
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
        loss_rows = torch.cat(losses, dim=1).float().cpu()  # (C, B * accum, P)
        outcomes = []
        for c in range(self.num_chains):
            finite = bool(torch.isfinite(loss_rows[c]).all())
            metrics = None
            if finite and active[c]:
                noises = [self._noise(c, slot.w) for slot in self.slots[c]]
                metrics = sgld_step(
                    self.slots[c],
                    [grads[n][c] for n in self.names],
                    noises,
                    self.hyper,
                    with_metrics,
                )
            chain_rows = np.concatenate([r[c] for r in rows])
            outcomes.append(StepOutcome(loss_rows[c], chain_rows, finite, metrics))
        return outcomes

    def _batch(self, idx: list[np.ndarray]):
        if self.shared_batches:
            return self.source.batch(idx[0], self.device)
        batches = [self.source.batch(i, self.device) for i in idx]
        return _stack(batches)

    def observe(
        self, observables: list[Observable], batch_size: int
    ) -> list[dict[str, torch.Tensor]]:
        """Per chain: {key: (R, P) losses} at the chains' current weights."""
        out: list[dict[str, torch.Tensor]] = [{} for _ in range(self.num_chains)]
        parts = []
        with torch.no_grad():
            for obs in observables:
                parts += [
                    self._eval(self.stacked, batch).float()
                    for _, batch in obs.batches(batch_size, self.device)
                ]
        if not parts:
            return out
        # One device-to-host copy for every observable (they share P).
        losses = torch.cat(parts, dim=1).cpu().split([len(o.rows) for o in observables], dim=1)
        for obs, obs_losses in zip(observables, losses, strict=True):
            for c in range(self.num_chains):
                out[c][obs.key] = obs_losses[c]
        return out


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
