"""The SGLD update rules, as small functions of (weights, gradients, noise, state).

For every sampled parameter, with w0 the checkpoint, g the gradient of the mean mini-batch loss,
m the mask (1 where the entry is sampled), xi ~ N(0, I) and G the preconditioner:

    sgmcmc_sgld:   G = 1
    rmsprop_sgld:  V <- alpha V + (1 - alpha) g^2   (V starts at 0),   G = 1 / (sqrt(V) + eps)

    w <- w - (lr/2) m G (n_beta g + localization (w - w0) + llc_weight_decay w)
           + m sqrt(lr G) noise_level xi
    w <- clamp(w, w0 - b, w0 + b)       when bounding_box_size b is set

Nothing here knows about models, data or storage: tests drive it with hand-made tensors.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

METRIC_NAMES = (
    "scaled_grad",
    "unscaled_grad",
    "localization",
    "weight_decay",
    "noise",
    "distance",
    "dot_grad_prior",
    "dot_grad_noise",
    "dot_prior_noise",
)
"""Per-step diagnostics stored as `metrics_{name}` (see STORE.md)."""


@dataclass(frozen=True)
class SGLDHyper:
    lr: float
    n_beta: float
    localization: float = 0.0
    llc_weight_decay: float = 0.0
    noise_level: float = 1.0
    bounding_box_size: float | None = None
    method: str = "sgmcmc_sgld"
    eps: float = 0.1
    alpha: float = 0.99


@dataclass
class ParamSlot:
    """One sampled parameter of one chain: its weights (updated in place) and fixed companions.

    w: the chain's live tensor. w0: the checkpoint value. mask: float 0/1 tensor or None (all
    entries sampled). v: rmsprop's running mean of g^2 (None for plain SGLD).
    """

    w: torch.Tensor
    w0: torch.Tensor
    mask: torch.Tensor | None = None
    v: torch.Tensor | None = None


def make_slots(
    weights: dict[str, torch.Tensor],
    anchors: dict[str, torch.Tensor],
    masks: dict[str, torch.Tensor | None],
    method: str,
) -> list[ParamSlot]:
    """One chain's slots, in the order of `masks`: its live `weights`, the checkpoint `anchors`,
    masks as 0/1 tensors of the weight's dtype and device, rmsprop state starting at 0."""
    slots = []
    for name, mask in masks.items():
        w = weights[name]
        slots.append(
            ParamSlot(
                w=w,
                w0=anchors[name],
                mask=None if mask is None else mask.to(device=w.device, dtype=w.dtype),
                v=torch.zeros_like(w) if method == "rmsprop_sgld" else None,
            )
        )
    return slots


def add_init_noise(slots: list[ParamSlot], noise_like, scale: float) -> None:
    """w <- w + scale * m * xi on every slot, xi from `noise_like(w)` (the chain's generator)."""
    with torch.no_grad():
        for slot in slots:
            xi = noise_like(slot.w) * scale
            slot.w.add_(xi if slot.mask is None else xi * slot.mask)


def sgld_step(
    slots: list[ParamSlot],
    grads: list[torch.Tensor],
    noises: list[torch.Tensor],
    hp: SGLDHyper,
    with_metrics: bool = False,
) -> dict[str, float] | None:
    """Apply one update to every slot in place; return the step's metrics when asked.

    grads[i], noises[i]: same shape as slots[i].w. Metrics are L2 norms (and dot products) of
    the update's components summed over all slots, masked entries counting as 0.
    """
    acc = None
    if with_metrics:
        # Buckets pay where a kernel launch costs more than its arithmetic (GPUs); on a CPU
        # reducing each parameter at once is cheaper (no concatenation, warm caches).
        on_cpu = not slots or slots[0].w.device.type == "cpu"
        acc = _MetricSums(0 if on_cpu else _MetricSums.BUCKET_NUMEL)
    with torch.no_grad():
        for slot, g, xi in zip(slots, grads, noises, strict=True):
            _update_one(slot, g, xi, hp, acc)
    return acc.result() if acc is not None else None


def _update_one(slot: ParamSlot, g: torch.Tensor, xi: torch.Tensor, hp: SGLDHyper, acc) -> None:
    w, w0, m = slot.w, slot.w0, slot.mask
    if hp.method == "rmsprop_sgld":
        slot.v.mul_(hp.alpha).addcmul_(g, g, value=1 - hp.alpha)
        precond = 1.0 / (slot.v.sqrt() + hp.eps)
    else:
        precond = None

    half_lr = hp.lr / 2
    grad_term = g * hp.n_beta
    dist = w - w0
    prior_term = dist * hp.localization if hp.localization else None
    wd_term = w * hp.llc_weight_decay if hp.llc_weight_decay else None

    drift = grad_term.clone()
    if prior_term is not None:
        drift += prior_term
    if wd_term is not None:
        drift += wd_term
    drift_scale = half_lr if precond is None else precond * half_lr
    step = drift * drift_scale

    noise_scale = math.sqrt(hp.lr) * hp.noise_level
    noise = xi * (noise_scale if precond is None else precond.sqrt() * noise_scale)

    if m is not None:
        step *= m
        noise *= m
    w.sub_(step).add_(noise)

    if hp.bounding_box_size is not None:
        b = hp.bounding_box_size
        torch.clamp_(w, min=w0 - b, max=w0 + b)

    if acc is not None:
        acc.add(grad_term, prior_term, wd_term, g, dist, noise, drift_scale, half_lr, hp, m)


class _MetricSums:
    """Accumulates squared norms and dot products across parameters, on the parameters' device.

    Each parameter's update components are kept (flattened) until about `BUCKET_NUMEL` entries
    have gathered, then reduced together: a handful of kernels per bucket instead of some
    twenty-five per parameter, which matters where each kernel launch costs more than its
    arithmetic (small models, GPUs). Products and sums are in float64 as before. Sums stay
    tensors until `result()`, so a step costs one device-to-host copy.
    """

    # A bucket holds at most this many entries plus one parameter, as 6 float32 + 7 float64
    # copies (~5 MB per 2^16 entries), and a step reduces at most once per parameter.
    BUCKET_NUMEL = 1 << 18

    def __init__(self, bucket_numel: int = BUCKET_NUMEL) -> None:
        self.bucket_numel = bucket_numel
        self.parts: list[torch.Tensor] = []
        self._bucket: dict[str, list[torch.Tensor]] = {k: [] for k in _COMPONENTS}
        self._numel = 0

    def add(self, grad_term, prior_term, wd_term, g, dist, noise, drift_scale, half_lr, hp, m):
        def masked(t):
            return t if m is None else t * m

        b = self._bucket
        b["scaled"].append(masked(grad_term * drift_scale).reshape(-1))
        b["unscaled"].append(masked(g * (half_lr * hp.n_beta)).reshape(-1))
        if prior_term is not None:
            b["loc"].append(masked(prior_term * drift_scale).reshape(-1))
        if wd_term is not None:
            b["wd"].append(masked(wd_term * drift_scale).reshape(-1))
        b["noise"].append(noise.reshape(-1))
        b["dist"].append(masked(dist).reshape(-1))
        self._numel += noise.numel()
        if self._numel >= self.bucket_numel:
            self._reduce()

    def _reduce(self) -> None:
        b = self._bucket
        if not b["noise"]:
            return

        def flat(key):
            # loc / wd are present for every parameter or for none (localization and
            # llc_weight_decay are global), so the lists line up entry for entry.
            parts = b[key]
            if not parts:
                return None
            return (parts[0] if len(parts) == 1 else torch.cat(parts)).double()

        scaled, unscaled, noise, dist = (
            flat("scaled"),
            flat("unscaled"),
            flat("noise"),
            flat("dist"),
        )
        loc, wd = flat("loc"), flat("wd")
        zero = torch.zeros((), dtype=torch.float64, device=noise.device)
        prior = loc if wd is None else (wd if loc is None else loc + wd)
        self.parts.append(
            torch.stack(
                [
                    torch.dot(scaled, scaled),
                    torch.dot(unscaled, unscaled),
                    zero if loc is None else torch.dot(loc, loc),
                    zero if wd is None else torch.dot(wd, wd),
                    torch.dot(noise, noise),
                    torch.dot(dist, dist),
                    zero if prior is None else torch.dot(scaled, prior),
                    torch.dot(scaled, noise),
                    zero if prior is None else torch.dot(prior, noise),
                ]
            )
        )
        self._bucket = {k: [] for k in _COMPONENTS}
        self._numel = 0

    def result(self) -> dict[str, float]:
        self._reduce()
        sums = torch.stack(self.parts).sum(0).tolist()
        out = {name: math.sqrt(v) for name, v in zip(METRIC_NAMES[:6], sums[:6], strict=True)}
        out.update(zip(METRIC_NAMES[6:], sums[6:], strict=True))
        return out


_COMPONENTS = ("scaled", "unscaled", "loc", "wd", "noise", "dist")
