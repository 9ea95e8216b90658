"""One SGLD chain: its own model copy, noise generator, batch feed and optimiser state."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from devinterp_ui.data import BatchFeed, DataSource
from devinterp_ui.host_copy import HostCopy
from devinterp_ui.losses import LossFn, as_per_position
from devinterp_ui.segments import SegmentLayout
from devinterp_ui.sgld import SGLDHyper, StepMetrics, add_init_noise, make_slots, sgld_step


@dataclass
class Observable:
    """A dataset evaluated at every draw on fixed rows.

    name: as the user gave it; key: identifier-safe name used in array names.
    rows: (R,) row indices into `source`, R = batch_size x batches_per_draw.
    """

    name: str
    key: str
    source: DataSource
    batches_per_draw: int
    rows: np.ndarray
    # The fixed rows collated on a device, made at the first draw and shared by every chain:
    # the same rows every draw, so gathering and copying them once is enough.
    _batches: dict = field(default_factory=dict, repr=False, compare=False)

    def batches(self, batch_size: int, device: torch.device) -> list[tuple[int, Any]]:
        """[(rows in batch, batch on `device`)] of `rows` in batches of `batch_size`."""
        key = (batch_size, str(device))
        if key not in self._batches:
            self._batches[key] = [
                (len(idx), self.source.batch(idx, device))
                for idx in (
                    self.rows[start : start + batch_size]
                    for start in range(0, len(self.rows), batch_size)
                )
            ]
        return self._batches[key]


@dataclass
class StepOutcome:
    """What one step produced, on the host. losses: (batch_sampling, P); rows: the row
    indices used; finite: every loss is finite (else the chain fails at this step)."""

    losses: torch.Tensor
    rows: np.ndarray
    finite: bool
    metrics: dict[str, float] | None


@dataclass
class PendingStep:
    """A step whose losses (and metrics) are still on their way from the device.

    copy: holds the losses first, (B, P), or (C, B, P) for every chain of a vectorized step
    (then `chain` picks this one); `gram_at`: where this step's metric sums are in it.
    """

    copy: HostCopy
    rows: np.ndarray
    metrics: StepMetrics | None = None
    gram_at: int = 1
    chain: int | None = None

    def resolve(self) -> StepOutcome:
        host = self.copy.wait()
        losses = host[0] if self.chain is None else host[0][self.chain]
        metrics = None if self.metrics is None else self.metrics.values(host[self.gram_at])
        return StepOutcome(losses, self.rows, bool(torch.isfinite(losses).all()), metrics)


class PendingObservation:
    """Every observable's losses at one draw, on their way from the device: (sum of rows, P),
    or (C, sum of rows, P) for a vectorized step."""

    def __init__(self, copy: HostCopy | None, observables: list[Observable]):
        self.copy, self.observables = copy, observables

    def resolve(self, chain: int | None = None) -> dict[str, torch.Tensor]:
        """{key: (R, P) losses} of every observable (of `chain` for a vectorized step)."""
        if self.copy is None:
            return {}
        (losses,) = self.copy.wait()
        if chain is not None:
            losses = losses[chain]
        parts = losses.split([len(obs.rows) for obs in self.observables])
        return {obs.key: part for obs, part in zip(self.observables, parts, strict=True)}


def evaluate_rows(
    model: torch.nn.Module,
    source: DataSource,
    rows: np.ndarray,
    loss_fn: LossFn,
    batch_size: int,
    device: torch.device,
    where: str,
) -> torch.Tensor:
    """(len(rows), P) losses of `model` on `rows`, in batches of `batch_size`, on CPU."""
    out = []
    with torch.no_grad():
        for start in range(0, len(rows), batch_size):
            idx = rows[start : start + batch_size]
            per = as_per_position(loss_fn(model, source.batch(idx, device)), len(idx), where)
            out.append(per.float())
    # One device-to-host copy for all batches: on a GPU each copy is a sync.
    return torch.cat(out).cpu()


@dataclass(frozen=True)
class SharedSegments:
    """What every chain of a run shares: how the sampled parameters are packed (the layout's
    `sampled` comes from `resolve_param_masks`), the checkpoint's segments and their masks."""

    layout: SegmentLayout
    anchors: list[torch.Tensor]
    masks: list[torch.Tensor | None]

    @classmethod
    def of(cls, checkpoint: torch.nn.Module, sampled: dict[str, torch.Tensor | None]):
        """Packs `checkpoint` (values unchanged): its segments are the anchors."""
        layout = SegmentLayout(checkpoint, sampled)
        anchors = layout.pack(checkpoint)
        return cls(layout, anchors, layout.masks(anchors))


class Chain:
    """Chain `index`: `model` is its private copy, already at the checkpoint; its sampled
    parameters are packed into segments (see `devinterp_ui.segments`)."""

    def __init__(
        self,
        index: int,
        model: torch.nn.Module,
        shared: SharedSegments,
        feed: BatchFeed,
        source: DataSource,
        loss_fn: LossFn,
        hyper: SGLDHyper,
        noise_seed: int,
        grad_accum: int,
        device: torch.device,
        init_noise: float | None = None,
    ):
        self.index = index
        self.model = model
        self.feed = feed
        self.source = source
        self.loss_fn = loss_fn
        self.hyper = hyper
        self.grad_accum = grad_accum
        self.device = device
        self.gen = torch.Generator(device=device).manual_seed(int(noise_seed))

        self.layout = shared.layout
        sampled = shared.layout.sampled
        named = dict(model.named_parameters())
        for name, p in named.items():
            p.requires_grad_(name in sampled)
        self.params = [named[name] for name in sampled]
        segments = shared.layout.pack(model)
        self.slots = make_slots(segments, shared.anchors, shared.masks, hyper.method)
        if init_noise:
            add_init_noise(self.slots, self._noise_like, init_noise)

    def _noise_like(self, t: torch.Tensor) -> torch.Tensor:
        return torch.randn(t.shape, generator=self.gen, device=t.device, dtype=t.dtype)

    def step(self, with_metrics: bool) -> PendingStep:
        """Loss and gradient on the next `grad_accum` mini-batches, then one SGLD update.

        Nothing here waits for the device. A non-finite loss is found when the step is
        resolved, after its update was applied: the caller then fails the chain at this step
        and discards what the chain computed afterwards.
        """
        grads = None
        losses, rows = [], []
        for _ in range(self.grad_accum):
            idx = self.feed.next()
            per = as_per_position(
                self.loss_fn(self.model, self.source.batch(idx, self.device)), len(idx), "loss_fn"
            )
            g = torch.autograd.grad(per.mean(), self.params, allow_unused=True)
            g = [
                torch.zeros_like(p) if gi is None else gi
                for p, gi in zip(self.params, g, strict=True)
            ]
            if grads is None:
                grads = g
            else:
                for acc, gi in zip(grads, g, strict=True):
                    acc.add_(gi)
            losses.append(per.detach())
            rows.append(idx)
        if self.grad_accum > 1:
            # Equal-size micro-batches: the mean of their means is the mean over the big batch.
            for acc in grads:
                acc.div_(self.grad_accum)
        metrics = sgld_step(
            self.slots,
            self.layout.flat_grads(grads),
            (self._noise_like(slot.w) for slot in self.slots),
            self.hyper,
            with_metrics,
        )
        copies = [torch.cat(losses).float()] + ([metrics.gram] if metrics is not None else [])
        return PendingStep(HostCopy(copies), np.concatenate(rows), metrics)

    def observe(self, observables: list[Observable], batch_size: int) -> PendingObservation:
        """Every observable's losses at the chain's current weights."""
        parts = []
        with torch.no_grad():
            for obs in observables:
                where = f"loss_fn on observable {obs.name!r}"
                parts += [
                    as_per_position(self.loss_fn(self.model, batch), rows, where).float()
                    for rows, batch in obs.batches(batch_size, self.device)
                ]
        # One copy for every observable (they share P): on a GPU each copy would be a sync.
        return PendingObservation(HostCopy([torch.cat(parts)]) if parts else None, observables)
