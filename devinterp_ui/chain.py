"""Chains stepped through the kernel: `ChainGroup` (one or more chains, one gradient estimator).

A group takes each chain's next mini-batches, asks its gradient estimator for every chain's
gradients and losses (`PlainGradient` here: one chain on its own model copy; or the vmapped
estimator of `devinterp_ui.vectorized`: all chains in one call), and updates each chain with
`devinterp_ui.kernel.step`. The losses (and metrics) come back to the host one step later
(`PendingStep`), so the device never waits. Which groups step when is `devinterp_ui.schedules`;
what is recorded is `devinterp_ui.runner`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from devinterp_ui import kernel
from devinterp_ui.backward_update import backward_updating, updates_in_backward
from devinterp_ui.data import BatchFeed, DataSource
from devinterp_ui.host_copy import HostCopy
from devinterp_ui.losses import LossFn, as_per_position
from devinterp_ui.noise import segment_draws
from devinterp_ui.segments import SegmentLayout
from devinterp_ui.sgld import SGLDHyper, StepMetrics


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

    copy: holds the losses first, (C, B, P) for the C chains of the group that stepped (`chain`
    picks this one); `gram_at`: where this step's metric sums are in it.
    """

    copy: HostCopy
    rows: np.ndarray
    metrics: StepMetrics | None = None
    gram_at: int = 1
    chain: int = 0

    def resolve(self) -> StepOutcome:
        host = self.copy.wait()
        losses = host[0][self.chain]
        metrics = None if self.metrics is None else self.metrics.values(host[self.gram_at])
        return StepOutcome(losses, self.rows, bool(torch.isfinite(losses).all()), metrics)


class PendingObservation:
    """Every observable's losses at one draw, on their way from the device:
    (C, sum of rows, P) for the C chains of a group."""

    def __init__(self, copy: HostCopy | None, observables: list[Observable]):
        self.copy, self.observables = copy, observables

    def resolve(self, chain: int = 0) -> dict[str, torch.Tensor]:
        """{key: (R, P) losses} of every observable for the group's `chain`-th chain."""
        if self.copy is None:
            return {}
        (losses,) = self.copy.wait()
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
    `sampled` comes from `resolve_param_masks`), the checkpoint's segments and their masks
    (float32 for a low-precision model: the kernel's master weights are float32)."""

    layout: SegmentLayout
    anchors: list[torch.Tensor]
    masks: list[torch.Tensor | None]

    @classmethod
    def of(cls, checkpoint: torch.nn.Module, sampled: dict[str, torch.Tensor | None]):
        """Packs `checkpoint` (values unchanged): its segments are the anchors."""
        layout = SegmentLayout(checkpoint, sampled)
        # The checkpoint's own segments (never modified), or float32 copies of them.
        anchors, _ = kernel.master_weights(layout.pack(checkpoint))
        return cls(layout, anchors, layout.masks(anchors))

    @classmethod
    def read_from(
        cls,
        checkpoint: torch.nn.Module,
        sampled: dict[str, torch.Tensor | None],
        device: torch.device,
    ):
        """The anchors read from `checkpoint` (the caller's model) without modifying it: a
        segment of one contiguous parameter already on `device` is a view of that parameter,
        no copy (most of a large model's entries: its big matrices are a segment each); a
        segment of several parameters is a concatenated copy. The caller's model must then
        stay unchanged while the chains run (sample() documents this)."""
        layout = SegmentLayout(checkpoint, sampled)
        named = dict(checkpoint.named_parameters())
        flats = []
        with torch.no_grad():
            for seg in layout.segments:
                parts = [named[n].detach().reshape(-1) for n in seg.names]
                flat = parts[0] if len(parts) == 1 else torch.cat(parts)
                flats.append(flat.to(device))
        anchors, _ = kernel.master_weights(flats)
        return cls(layout, anchors, layout.masks(anchors))


class PlainGradient:
    """One chain's gradient estimator: autograd on its own model copy.

    `grads(rows)` -> ([gradient of the mean loss per sampled parameter], (1, B, P) per-row
    losses), rows: [the chain's row indices]; `of_chain(grads, 0)` gives the chain's list;
    `evaluate(rows, batch, where)` -> (1, B, P) losses without gradients. The leading dim of
    size 1 of the losses is the group's chain dim (see `VmappedGradient`).
    """

    def __init__(self, model: torch.nn.Module, sampled: dict, source: DataSource, loss_fn, device):
        self.model, self.source, self.loss_fn, self.device = model, source, loss_fn, device
        named = dict(model.named_parameters())
        for name, p in named.items():
            p.requires_grad_(name in sampled)
        self.params = [named[name] for name in sampled]

    def loss(self, idx: np.ndarray) -> torch.Tensor:
        """(B, P) per-position losses on rows `idx`, with the autograd graph."""
        return as_per_position(
            self.loss_fn(self.model, self.source.batch(idx, self.device)), len(idx), "loss_fn"
        )

    def updates_in_backward(self, layout: SegmentLayout) -> bool:
        """Whether this model's segments can be updated inside its backward
        (`backward_update.updates_in_backward`, tried on the source's first two rows: two, so
        that batch statistics exist)."""
        return updates_in_backward(
            self.model,
            self.params,
            layout,
            lambda: self.loss(np.arange(min(2, len(self.source)))).mean(),
        )

    def grads(self, rows: list[np.ndarray]) -> tuple[list[torch.Tensor], torch.Tensor]:
        (idx,) = rows
        per = self.loss(idx)
        g = torch.autograd.grad(per.mean(), self.params, allow_unused=True)
        g = [
            torch.zeros_like(p) if gi is None else gi for p, gi in zip(self.params, g, strict=True)
        ]
        return g, per.detach().unsqueeze(0)

    @staticmethod
    def of_chain(grads: list[torch.Tensor], i: int) -> list[torch.Tensor]:
        return grads

    def evaluate(self, rows: int, batch, where: str) -> torch.Tensor:
        return as_per_position(self.loss_fn(self.model, batch), rows, where).unsqueeze(0)


class ChainGroup:
    """Chains `chains` (run-wide indices) stepped together through one gradient estimator.

    states[i], feeds[i], gens[i]: chain `chains[i]`'s kernel state, batch feed and noise
    generator. `weights` (segments of every chain, each flat of its numel) already hold the
    checkpoint; `views`: the model's low-precision tensors behind them, or None.
    """

    def __init__(
        self,
        chains: list[int],
        estimator,
        layout: SegmentLayout,
        shared: SharedSegments,
        weights: list[list[torch.Tensor]],
        views: list[list[torch.Tensor | None]],
        feeds: list[BatchFeed],
        noise_seeds: list[int],
        hyper: SGLDHyper,
        grad_accum: int,
        device: torch.device,
        init_noise: float | None = None,
    ):
        self.chains = list(chains)
        self.estimator = estimator
        self.layout = layout
        self.feeds = feeds
        self.hyper = hyper
        self.grad_accum = grad_accum
        self.device = device
        # Per chain, one noise stream per segment (devinterp_ui.noise): the same bits whatever
        # order a step reaches the segments in.
        self.noise = [segment_draws(int(s), len(layout.segments), device) for s in noise_seeds]
        self.states = [
            kernel.init_state(
                weights[i],
                shared.anchors,
                shared.masks,
                hyper,
                self.noise[i],
                init_noise,
                views[i],
            )
            for i in range(len(self.chains))
        ]
        # The update inside the backward (devinterp_ui.backward_update), for a group of one
        # chain with its own autograd gradient and one mini-batch per step, where the model
        # allows it: the step then never holds the whole model's gradients.
        self.in_backward = (
            len(self.chains) == 1
            and grad_accum == 1
            and isinstance(estimator, PlainGradient)
            and estimator.updates_in_backward(layout)
        )

    def step(self, with_metrics: bool, active: list[bool]) -> list[PendingStep]:
        """Loss and gradient on every chain's next `grad_accum` mini-batches, then one kernel
        step of every chain that is `active` (run-wide flags; the others are computed but never
        updated). One `PendingStep` per chain of the group.

        Nothing here waits for the device. A non-finite loss is found when the step is
        resolved, after its update was applied: the caller then fails the chain at this step
        and discards what the chain computed afterwards.
        """
        if self.in_backward and active[self.chains[0]]:
            return [self._step_in_backward(with_metrics)]
        grads = None
        losses, rows = [], []
        for _ in range(self.grad_accum):
            idx = [feed.next() for feed in self.feeds]
            g, per = self.estimator.grads(idx)
            if grads is None:
                grads = g
            else:
                _add_into(grads, g)
            del g  # else this micro-batch's gradients would live through the update
            losses.append(per)
            rows.append(idx)
        if self.grad_accum > 1:
            # Equal-size micro-batches: the mean of their means is the mean over the big batch.
            _divide(grads, self.grad_accum)
        infos = []
        for i, c in enumerate(self.chains):
            info = None
            if active[c]:
                state = self.states[i]
                _, info = kernel.step(
                    state,
                    self.layout.flat_grads(self.estimator.of_chain(grads, i), release=True),
                    self.noise[i],
                    self.hyper,
                    with_metrics,
                )
            infos.append(info)
        grams = [m.gram for m in infos if m is not None]
        # One copy for every chain: (C, B * accum, P) losses, then each updated chain's sums.
        copy = HostCopy([torch.cat(losses, dim=1).float(), *grams])
        pending, at = [], 1
        for i, m in enumerate(infos):
            chain_rows = np.concatenate([r[i] for r in rows])
            pending.append(PendingStep(copy, chain_rows, m, gram_at=at, chain=i))
            at += m is not None
        return pending

    def _step_in_backward(self, with_metrics: bool) -> PendingStep:
        """The step of a one-chain group with each segment updated inside the backward."""
        idx = self.feeds[0].next()
        noise = self.noise[0]
        update = kernel.Update(self.states[0], self.hyper, with_metrics)
        per = self.estimator.loss(idx)
        backward_updating(
            per.mean(), self.estimator.params, self.layout, lambda k, g: update.slot(k, g, noise[k])
        )
        info = update.finish()
        losses = per.detach().unsqueeze(0)
        copy = HostCopy([losses.float(), *([] if info is None else [info.gram])])
        return PendingStep(copy, np.asarray(idx), info, gram_at=1, chain=0)

    def observe(self, observables: list[Observable], batch_size: int) -> PendingObservation:
        """Every chain's losses on every observable at the current weights; resolve(i) gives
        the group's i-th chain's."""
        parts = []
        with torch.no_grad():
            for obs in observables:
                where = f"loss_fn on observable {obs.name!r}"
                parts += [
                    self.estimator.evaluate(rows, batch, where).float()
                    for rows, batch in obs.batches(batch_size, self.device)
                ]
        # One copy for every observable (they share P): on a GPU each copy would be a sync.
        copy = HostCopy([torch.cat(parts, dim=1)]) if parts else None
        return PendingObservation(copy, observables)


# In functions of their own, so that no loop variable of `ChainGroup.step` keeps a gradient
# alive through the update (the kernel frees each segment's gradient once it is updated).
def _add_into(total: list[torch.Tensor], more: list[torch.Tensor]) -> None:
    for acc, g in zip(total, more, strict=True):
        acc.add_(g)


def _divide(grads: list[torch.Tensor], k: int) -> None:
    for g in grads:
        g.div_(k)


def plain_group(
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
) -> ChainGroup:
    """Chain `index` on `model`, its private copy already at the checkpoint: its sampled
    parameters are packed into segments (see `devinterp_ui.segments`) that the kernel updates."""
    estimator = PlainGradient(model, shared.layout.sampled, source, loss_fn, device)
    weights, views = kernel.master_weights(shared.layout.pack(model))
    return ChainGroup(
        [index],
        estimator,
        shared.layout,
        shared,
        [weights],
        [views],
        [feed],
        [noise_seed],
        hyper,
        grad_accum,
        device,
        init_noise,
    )
