"""The chain kernel: `step(state, grads, noise, hp) -> (state, info)`, one update of one chain.

In the spirit of BlackJAX's sgmcmc kernels: a chain's state is explicit (`ChainState`: its
weight slots with their optimiser state, and SGNHT's thermostat), the gradient comes from
outside (a plain autograd estimator or a vmapped one, `devinterp_ui.chain` /
`devinterp_ui.vectorized`), and so does the noise. Every schedule of `sample()` (lockstep,
sequential, vectorized) and every public optimizer (`devinterp_ui.optim`) updates through this
one function, which calls the update rules of `devinterp_ui.sgld` and `devinterp_ui.sgnht`.

Low-precision models: the slots' weights `w` are float32 master copies of the model's bf16/fp16
tensors (`ParamSlot.view`), gradients are cast up before the update and the model's tensors are
refreshed from the masters after it, so updates below the model dtype's resolution accumulate
instead of vanishing.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch

from devinterp_ui.sgld import (
    NoiseDraw,
    ParamSlot,
    SGLDHyper,
    StepMetrics,
    add_init_noise,
    make_slots,
    sgld_step,
)
from devinterp_ui.sgnht import Thermostat, init_momentum, sgnht_slot, update_thermostat

MASTER_DTYPE = torch.float32


@dataclass
class ChainState:
    """One chain: its slots (weights, checkpoint, mask, rmsprop V / SGNHT momentum) and, for
    SGNHT, its thermostat. The tensors are updated in place; `step` returns the same object."""

    slots: list[ParamSlot]
    thermostat: Thermostat | None = None


def is_low_precision(dtype: torch.dtype) -> bool:
    """bf16 and fp16 (and narrower floats): too coarse to accumulate SGLD's small steps."""
    return dtype.is_floating_point and torch.finfo(dtype).bits < 32


def master_weights(
    tensors: list[torch.Tensor],
) -> tuple[list[torch.Tensor], list[torch.Tensor | None]]:
    """(weights the kernel updates, the model's views to refresh): a float32 copy and the
    tensor itself for a low-precision tensor, else the tensor itself and None."""
    weights, views = [], []
    for t in tensors:
        low = is_low_precision(t.dtype)
        weights.append(t.detach().to(MASTER_DTYPE) if low else t)
        views.append(t if low else None)
    return weights, views


def init_state(
    weights: list[torch.Tensor],
    anchors: list[torch.Tensor],
    masks: list[torch.Tensor | None],
    hp: SGLDHyper,
    noise_like: NoiseDraw | list[NoiseDraw],
    init_noise: float | None = None,
    views: list[torch.Tensor | None] | None = None,
) -> ChainState:
    """A chain at the checkpoint. From each slot's noise stream (`noise_like`: one `NoiseDraw`
    per slot, or one for all), in this order: `init_noise`, then SGNHT's initial momentum; each
    slot's noise is drawn piece by piece (`devinterp_ui.sgld.pieces`), as every step's."""
    slots = make_slots(weights, anchors, masks, hp.method, views)
    draws = [noise_like] * len(slots) if callable(noise_like) else list(noise_like)
    if init_noise:
        add_init_noise(slots, draws, init_noise)
    thermostat = None
    if hp.method == "sgnht":
        thermostat = init_momentum(slots, draws, hp)
    _refresh_views(slots)
    return ChainState(slots, thermostat)


class Update:
    """One step of one chain, slot by slot: `slot(k, grad, noise)` for each slot, in any order,
    then `finish()`. A slot's new values depend only on its own gradient, noise and state (and,
    for SGNHT, the thermostat of the step's start), and the metrics and the thermostat's energy
    are added up in slot order at the end, so any order gives the bits of `step`. The update
    inside the backward (`devinterp_ui.backward_update`) reaches the slots as the backward
    completes their gradients."""

    def __init__(self, state: ChainState, hp: SGLDHyper, with_metrics: bool = False):
        self.state, self.hp = state, hp
        self.metrics = StepMetrics() if with_metrics else None
        self.energies: list[torch.Tensor | None] = [None] * len(state.slots)

    def slot(self, k: int, grad: torch.Tensor, noise: torch.Tensor | NoiseDraw) -> None:
        """Update slot `k` from `grad` (cast to the slot's dtype) and its noise (a tensor, or
        the slot's `NoiseDraw`, called per piece)."""
        slot = self.state.slots[k]
        if grad.dtype != slot.w.dtype:
            grad = grad.to(slot.w.dtype)
        if self.metrics is not None:
            self.metrics.key = k
        if self.hp.method == "sgnht":
            z = self.state.thermostat.z
            self.energies[k] = sgnht_slot(slot, grad, noise, z, self.hp, self.metrics)
        else:
            # Through `sgld_step`, one slot at a time (the tests' mutants replace it).
            sgld_step([slot], [grad], [noise], self.hp, self.metrics or False)
        _refresh_views([slot])

    def finish(self) -> StepMetrics | None:
        """The thermostat's update (SGNHT), after every slot; the step's metrics or None."""
        if self.hp.method == "sgnht":
            update_thermostat(self.state.thermostat, self.energies, self.hp)
        return self.metrics


def step(
    state: ChainState,
    grads: Iterable[torch.Tensor],
    noise: Iterable[torch.Tensor | NoiseDraw] | NoiseDraw,
    hp: SGLDHyper,
    with_metrics: bool = False,
) -> tuple[ChainState, StepMetrics | None]:
    """Apply one update of `hp.method` to every slot of `state`; return it and the metrics.

    grads, noise: one tensor per slot, shaped as its `w` (iterables, so each can be made just
    before it is used); grads of the model's dtype are cast to the slot's. `noise` may instead
    hold a `NoiseDraw` per slot (or be one for all): each piece of a slot then gets its noise
    as it is updated, so no noise tensor larger than a piece exists (for GPT-2 a full-size
    draw of the token embedding would be a third of a model copy). Nothing waits for the
    device. info: the step's `StepMetrics` when `with_metrics`, else None.
    """
    if callable(noise):
        noise = [noise] * len(state.slots)
    update = Update(state, hp, with_metrics)
    count = 0
    for k, (g, xi) in enumerate(zip(grads, noise, strict=True)):
        update.slot(k, g, xi)
        count += 1
    if count != len(state.slots):
        raise ValueError(f"{count} gradients for a chain of {len(state.slots)} slots")
    return state, update.finish()


def _refresh_views(slots: list[ParamSlot]) -> None:
    with torch.no_grad():
        for slot in slots:
            if slot.view is not None:
                slot.view.copy_(slot.w)
