"""One SGLD chain: its own model copy, noise generator, batch feed and optimiser state."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from devinterp_ui.data import BatchFeed, DataSource
from devinterp_ui.losses import LossFn, as_per_position
from devinterp_ui.sgld import SGLDHyper, add_init_noise, make_slots, sgld_step


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
    """What one step produced. losses: (batch_sampling, P) on CPU; rows: the row indices used."""

    losses: torch.Tensor
    rows: np.ndarray
    finite: bool
    metrics: dict[str, float] | None


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


class Chain:
    """Chain `index`: `model` is its private copy, already at the checkpoint.

    sampled: {name: mask or None} from `resolve_param_masks`. anchors: {name: checkpoint tensor}
    on the chain's device (shared read-only between chains).
    """

    def __init__(
        self,
        index: int,
        model: torch.nn.Module,
        sampled: dict[str, torch.Tensor | None],
        anchors: dict[str, torch.Tensor],
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

        named = dict(model.named_parameters())
        for name, p in named.items():
            p.requires_grad_(name in sampled)
        self.params = [named[name] for name in sampled]
        self.slots = make_slots(named, anchors, sampled, hyper.method)
        if init_noise:
            add_init_noise(self.slots, self._noise_like, init_noise)

    def _noise_like(self, t: torch.Tensor) -> torch.Tensor:
        return torch.randn(t.shape, generator=self.gen, device=t.device, dtype=t.dtype)

    def step(self, with_metrics: bool) -> StepOutcome:
        """Loss and gradient on the next `grad_accum` mini-batches, then one SGLD update.

        The update is skipped when any loss is non-finite (the caller marks the chain failed).
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
        loss_rows = torch.cat(losses).float().cpu()
        finite = bool(torch.isfinite(loss_rows).all())
        metrics = None
        if finite:
            noises = [self._noise_like(slot.w) for slot in self.slots]
            metrics = sgld_step(self.slots, grads, noises, self.hyper, with_metrics)
        return StepOutcome(loss_rows, np.concatenate(rows), finite, metrics)

    def observe(self, observables: list[Observable], batch_size: int) -> dict[str, torch.Tensor]:
        """{key: (R, P) losses} of every observable at the chain's current weights."""
        parts = []
        with torch.no_grad():
            for obs in observables:
                where = f"loss_fn on observable {obs.name!r}"
                parts += [
                    as_per_position(self.loss_fn(self.model, batch), rows, where).float()
                    for rows, batch in obs.batches(batch_size, self.device)
                ]
        if not parts:
            return {}
        # One device-to-host copy for every observable (they share P): on a GPU each is a sync.
        losses = torch.cat(parts).cpu().split([len(obs.rows) for obs in observables])
        return {obs.key: rows for obs, rows in zip(observables, losses, strict=True)}
