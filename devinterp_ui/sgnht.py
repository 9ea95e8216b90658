"""SGNHT: stochastic gradient Nose-Hoover thermostat (Ding et al. 2014), as devinterp 2.x has it.

Per chain, a momentum p (same shape as the sampled weights) and one scalar thermostat z shared
by all of the chain's sampled entries. With w0 the checkpoint, g the gradient of the mean
mini-batch loss, m the mask, xi ~ N(0, I), A = diffusion_factor and n the number of sampled
entries, one step is

    p <- p - lr m (n_beta g + localization (w - w0) + llc_weight_decay w)     (gradient kick)
    p <- p - z p                                                             (friction)
    p <- p + m sqrt(2 A lr) noise_level xi                                   (diffusion)
    w <- w + p
    where |w - w0| >= b: p <- -p, then w <- clamp(w, w0 - b, w0 + b)        (bounding box b)
    z <- z + (sum(p^2) / n - lr)                                             (thermostat)

starting from p = m sqrt(lr) xi (drawn from each segment's stream after `init_noise`) and
z = A. The thermostat drives the mean kinetic energy sum(p^2)/n to lr, which makes the chain
sample exp(-n_beta L - prior) whatever the noise injected. devinterp's SGNHT (devinterp/optim/
sgnht.py) is this rule without the localization, weight-decay, noise-level and mask terms, which
enter here exactly as they enter SGLD's drift (the prior's gradient) and noise.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import torch

from devinterp_ui.sgld import NoiseDraw, ParamSlot, SGLDHyper, StepMetrics, pieces


@dataclass
class Thermostat:
    """z: 0-d tensor on the chain's device (never read on the host while sampling);
    count: n, the number of sampled entries it averages the kinetic energy over."""

    z: torch.Tensor
    count: int


def init_momentum(
    slots: list[ParamSlot], noises: Iterable[torch.Tensor | NoiseDraw], hp: SGLDHyper
) -> Thermostat:
    """p = m sqrt(lr) xi on every slot (xi: one of `noises` per slot, in order; a `NoiseDraw`
    is drawn piece by piece, as the update's noise), z = diffusion_factor."""
    count = 0
    with torch.no_grad():
        for slot, xi in zip(slots, noises, strict=True):
            slot.p = torch.empty_like(slot.w)
            for piece, _, x in pieces(slot, None, xi):
                p = x * math.sqrt(hp.lr)
                piece.p.copy_(p if piece.mask is None else p * piece.mask)
            count += slot.w.numel() if slot.mask is None else int(slot.mask.sum())
    device = slots[0].w.device if slots else torch.device("cpu")
    z = torch.tensor(float(hp.diffusion_factor), dtype=torch.float32, device=device)
    return Thermostat(z, max(count, 1))


def sgnht_step(
    slots: list[ParamSlot],
    grads: Iterable[torch.Tensor],
    noises: Iterable[torch.Tensor | NoiseDraw],
    thermostat: Thermostat,
    hp: SGLDHyper,
    with_metrics: bool = False,
) -> StepMetrics | None:
    """One SGNHT step of every slot in place (momentum, weights), then of the thermostat.

    As `sgld_step`: grads and noises one per slot; the metrics are the norms of the step's
    components (the kick lr n_beta g, the prior terms, the diffusion as applied).
    """
    acc = StepMetrics() if with_metrics else None
    energies = []
    for k, (slot, g, xi) in enumerate(zip(slots, grads, noises, strict=True)):
        if acc is not None:
            acc.key = k
        energies.append(sgnht_slot(slot, g, xi, thermostat.z, hp, acc))
    update_thermostat(thermostat, energies, hp)
    return acc


def sgnht_slot(
    slot: ParamSlot,
    g: torch.Tensor,
    xi: torch.Tensor | NoiseDraw,
    z: torch.Tensor,
    hp: SGLDHyper,
    acc: StepMetrics | None,
) -> torch.Tensor | None:
    """One slot's momentum and weights, with the thermostat `z` of the step's start; returns
    the slot's kinetic energy sum(p^2) (None for a slot with no entries)."""
    energy = None
    with torch.no_grad():
        for piece, g_piece, xi_piece in pieces(slot, g, xi):
            e = _update_one(piece, g_piece, xi_piece, z, hp, acc)
            energy = e if energy is None else energy + e
    return energy


def update_thermostat(
    thermostat: Thermostat, energies: list[torch.Tensor | None], hp: SGLDHyper
) -> None:
    """z <- z + sum(p^2) / n - lr, the energies summed in slot order (whatever order the slots
    were updated in, the same bits)."""
    total = None
    for e in energies:
        if e is not None:
            total = e if total is None else total + e
    if total is not None:
        with torch.no_grad():
            thermostat.z.add_(total.to(thermostat.z.dtype) / thermostat.count - hp.lr)


def _update_one(slot, g, xi, z, hp: SGLDHyper, acc) -> torch.Tensor:
    w, w0, m, p = slot.w, slot.w0, slot.mask, slot.p
    dist = w - w0 if (hp.localization or acc is not None) else None
    wd_term = w * hp.llc_weight_decay if hp.llc_weight_decay else None

    kick = g * hp.n_beta
    if hp.localization:
        kick.add_(dist, alpha=hp.localization)
    if wd_term is not None:
        kick += wd_term
    kick.mul_(hp.lr)
    noise = xi * (math.sqrt(2 * hp.diffusion_factor * hp.lr) * hp.noise_level)
    if m is not None:
        kick *= m
        noise *= m

    p.sub_(kick)
    p.sub_(p * z)
    p.add_(noise)
    w.add_(p)
    flat = p.reshape(-1)
    energy = flat @ flat

    if hp.bounding_box_size is not None:
        b = hp.bounding_box_size
        # Reflect: the momentum of every entry that reached the wall turns back.
        p.mul_(torch.where((w - w0).abs() < b, 1.0, -1.0).to(p.dtype))
        torch.clamp_(w, min=w0 - b, max=w0 + b)

    if acc is not None:
        acc.add(g, dist, wd_term, noise, None, hp, m)
    return energy
