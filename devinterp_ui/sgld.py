"""The SGLD update rules, as small functions of (weights, gradients, noise, state).

For every sampled parameter, with w0 the checkpoint, g the gradient of the mean mini-batch loss,
m the mask (1 where the entry is sampled), xi ~ N(0, I) and G the preconditioner:

    sgmcmc_sgld:   G = 1
    rmsprop_sgld:  V <- alpha V + (1 - alpha) g^2   (V starts at 0),   G = 1 / (sqrt(V) + eps)

    w <- w - (lr/2) m G (n_beta g + localization (w - w0) + llc_weight_decay w)
           + m sqrt(lr G) noise_level xi
    w <- clamp(w, w0 - b, w0 + b)       when bounding_box_size b is set

(SGNHT, with momentum and a thermostat, is in `devinterp_ui.sgnht`.) Nothing here knows about
models, data or storage: tests drive it with hand-made tensors. `devinterp_ui.kernel` calls these
for `sample()`'s chains, and `devinterp_ui.optim` for the public optimizers.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
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


NoiseDraw = Callable[[torch.Tensor], torch.Tensor]
"""`draw(like)`: N(0, 1) noise of `like`'s shape, dtype and device from one of a chain's
streams (one per segment, devinterp_ui.noise)."""


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
    diffusion_factor: float = 0.01  # sgnht only

    @property
    def drift_factor(self) -> float:
        """What multiplies the drift (n_beta g + prior terms) in one step: lr/2 for the
        Langevin rules, lr for SGNHT (it kicks the momentum; see devinterp_ui.sgnht)."""
        return self.lr if self.method == "sgnht" else self.lr / 2


@dataclass
class ParamSlot:
    """A tensor of sampled weights of one chain (a segment of several parameters, see
    `devinterp_ui.segments`, or a single one): the weights, updated in place, and fixed companions.

    w: the chain's live tensor (float32 or wider: the master copy when the model computes in
    bf16/fp16). w0: the checkpoint value. mask: float 0/1 tensor or None (all entries sampled).
    v: rmsprop's running mean of g^2 (None otherwise). p: SGNHT's momentum (None otherwise).
    view: the model's own low-precision tensor, refreshed from w after every update by the
    kernel (None when the model computes on w itself).
    """

    w: torch.Tensor
    w0: torch.Tensor
    mask: torch.Tensor | None = None
    v: torch.Tensor | None = None
    p: torch.Tensor | None = None
    view: torch.Tensor | None = None


def make_slots(
    weights: list[torch.Tensor],
    anchors: list[torch.Tensor],
    masks: list[torch.Tensor | None],
    method: str,
    views: list[torch.Tensor | None] | None = None,
) -> list[ParamSlot]:
    """One chain's slots: its live `weights[i]`, the checkpoint `anchors[i]`, 0/1 masks of the
    weights' dtype and device (or None), rmsprop state starting at 0, the model's low-precision
    `views[i]` (or None). SGNHT's momentum is drawn by `devinterp_ui.sgnht.init_momentum`."""
    views = views or [None] * len(weights)
    return [
        ParamSlot(
            w=w,
            w0=w0,
            mask=None if mask is None else mask.to(device=w.device, dtype=w.dtype),
            v=torch.zeros_like(w) if method == "rmsprop_sgld" else None,
            view=view,
        )
        for w, w0, mask, view in zip(weights, anchors, masks, views, strict=True)
    ]


def add_init_noise(slots: list[ParamSlot], noises: Iterable[NoiseDraw], scale: float) -> None:
    """w <- w + scale * m * xi on every slot, xi from its `NoiseDraw` (one per slot: the slot's
    stream, see devinterp_ui.noise), drawn piece by piece as the update's noise is (`pieces`)."""
    with torch.no_grad():
        for slot, draw in zip(slots, noises, strict=True):
            for piece, _, xi in pieces(slot, None, draw):
                xi = xi * scale
                piece.w.add_(xi if piece.mask is None else xi * piece.mask)


def sgld_step(
    slots: list[ParamSlot],
    grads: Iterable[torch.Tensor],
    noises: Iterable[torch.Tensor | NoiseDraw],
    hp: SGLDHyper,
    with_metrics: bool | StepMetrics = False,
) -> StepMetrics | None:
    """Apply one update to every slot in place; return the step's metrics when asked.

    grads, noises: one per slot, same shape as its w (iterables, so the caller can make each
    one just before it is used); a noise may also be a `NoiseDraw`, called for each piece of
    the slot as it is updated (see `pieces`). Metrics are L2 norms (and dot products) of the
    update's components summed over all slots, masked entries counting as 0; they stay on the
    device until `StepMetrics.values()` (see there). with_metrics may be a `StepMetrics` to add
    into (the kernel updates a step's slots one call at a time, see `kernel.Update`).
    """
    if isinstance(with_metrics, StepMetrics):
        acc = with_metrics
    else:
        acc = StepMetrics() if with_metrics else None
    with torch.no_grad():
        for slot, g, xi in zip(slots, grads, noises, strict=True):
            for piece, g_piece, xi_piece in pieces(slot, g, xi):
                _update_one(piece, g_piece, xi_piece, hp, acc)
    return acc


UPDATE_NUMEL = 1 << 20
"""Entries updated at once: the update's temporaries (drift, distance, noise, metrics) stay a
few times 4 MiB even for one huge parameter (a 50k-token embedding is a third of GPT-2).
A multiple of `RANDN_BLOCK`, so that noise drawn piece by piece is the noise of one draw."""

RANDN_BLOCK = 16
"""torch's CPU `randn` turns uniforms into normals in blocks of 16 entries and redraws the last
16 of a tensor whose size is not a multiple of 16: draws of consecutive pieces give the numbers
of one draw of the whole when every piece but the last is a multiple of 16 entries and the last
has at least 16 (tests/core/test_kernel.py checks it). CUDA's generator does not promise this."""


def piece_bounds(n: int, numel: int) -> list[tuple[int, int]]:
    """[(start, stop)] of consecutive pieces of `n` entries, `numel` each but the last; a last
    piece shorter than `RANDN_BLOCK` joins the one before (see `RANDN_BLOCK`)."""
    starts = list(range(0, n, numel)) or [0]
    if len(starts) > 1 and n - starts[-1] < RANDN_BLOCK:
        starts.pop()
    return list(zip(starts, [*starts[1:], n], strict=True))


def pieces(
    slot: ParamSlot,
    g: torch.Tensor | None,
    xi: torch.Tensor | NoiseDraw,
    numel: int | None = None,
):
    """(slot, g, xi) cut into consecutive flat pieces of about `numel` entries (`piece_bounds`;
    views, so an update of a piece updates the slot). Elementwise rules give the same numbers
    either way. Non-contiguous tensors (a parameter viewed transposed) are left whole.

    xi: the slot's noise, or a `NoiseDraw` called once per piece, in order, as the piece is
    reached: then no noise tensor larger than a piece exists, and on the CPU the numbers are
    those of one draw for the whole slot (`RANDN_BLOCK`). g: None where there is no gradient
    (init noise).
    """
    numel = numel or UPDATE_NUMEL
    draw = None if isinstance(xi, torch.Tensor) else xi
    tensors = [slot.w, slot.w0, slot.mask, slot.v, slot.p, g, None if draw else xi]
    whole = slot.w.numel() <= numel or not all(
        t is None or (t.is_contiguous() and t.numel() == slot.w.numel()) for t in tensors
    )
    if whole:
        yield slot, g, xi if draw is None else draw(slot.w)
        return
    flat = [None if t is None else t.view(-1) for t in tensors]
    for start, stop in piece_bounds(slot.w.numel(), numel):
        w, w0, m, v, p, gp, xp = (None if t is None else t[start:stop] for t in flat)
        yield ParamSlot(w=w, w0=w0, mask=m, v=v, p=p), gp, xp if draw is None else draw(w)


def _update_one(slot: ParamSlot, g: torch.Tensor, xi: torch.Tensor, hp: SGLDHyper, acc) -> None:
    w, w0, m = slot.w, slot.w0, slot.mask
    if hp.method == "rmsprop_sgld":
        slot.v.mul_(hp.alpha).addcmul_(g, g, value=1 - hp.alpha)
        precond = 1.0 / (slot.v.sqrt() + hp.eps)
    else:
        precond = None

    half_lr = hp.lr / 2
    # dist and the weight-decay term are taken before w moves; the metrics need them too.
    dist = w - w0 if (hp.localization or acc is not None) else None
    wd_term = w * hp.llc_weight_decay if hp.llc_weight_decay else None

    drift = g * hp.n_beta
    if hp.localization:
        drift.add_(dist, alpha=hp.localization)
    if wd_term is not None:
        drift += wd_term
    step = drift.mul_(half_lr if precond is None else precond * half_lr)

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
        acc.add(g, dist, wd_term, noise, precond, hp, m)


class StepMetrics:
    """The step's metrics from one Gram matrix per slot.

    Every component of the update is a scalar times one of a few vectors (masked): the gradient
    g, the distance w - w0, the weight-decay term lambda w and the noise, each also multiplied by
    the preconditioner G where there is one. `add` stacks those vectors and takes all their
    inner products in one float64 matrix product; `values` takes the sum over slots and scales
    the entries into norms and dot products. Against one float64 copy and one reduction per
    component and pair (nine dot products), this converts 3-6 vectors instead of six scaled
    copies, and on a GPU is a handful of kernels. The sums stay on the slots' device:
    `values()` copies them (a sync on a GPU), or the caller copies `gram` to the host without
    waiting (see devinterp_ui.host_copy) and passes the copy to `values()`.
    """

    PIECE_NUMEL = 1 << 20
    """Entries reduced at once: at most 6 vectors x 12 bytes x 2^20 = 72 MiB of temporaries."""

    def __init__(self) -> None:
        # Sums per slot (`key`: the slot being updated), added up in slot order by `gram`: the
        # step may reach its slots in any order (inside the backward, about last to first) and
        # still give the bits of a step in slot order.
        self._parts: dict[int, torch.Tensor] = {}
        self.key = 0
        self.index: dict[str, int] = {}
        self.hp: SGLDHyper | None = None

    @property
    def gram(self) -> torch.Tensor | None:
        """The Gram matrix of the step, summed over its slots in slot order (None: no slot)."""
        total = None
        for key in sorted(self._parts):
            total = self._parts[key] if total is None else total + self._parts[key]
        return total

    def add(self, g, dist, wd_term, noise, precond, hp, m) -> None:
        """g, dist = w - w0, wd_term = lambda w (or None): before the update; noise: the masked
        noise term as applied; precond: G (None for plain SGLD); m: 0/1 mask or None."""

        def masked(t):
            return t if m is None else t * m

        g, dist = masked(g), masked(dist)
        vectors = {"grad": g, "dist": dist, "noise": noise}
        # Scaled components: preconditioned where there is a preconditioner, else the same
        # vectors (so plain SGLD stacks three or four vectors, not six).
        vectors["scaled_grad"] = g if precond is None else precond * g
        if hp.localization:
            vectors["scaled_dist"] = dist if precond is None else precond * dist
        if wd_term is not None:
            wd = masked(wd_term)
            vectors["scaled_wd"] = wd if precond is None else precond * wd
        unique: list[torch.Tensor] = []
        index = {}
        for key, v in vectors.items():
            pos = next((i for i, u in enumerate(unique) if u is v), None)
            if pos is None:
                pos = len(unique)
                unique.append(v)
            index[key] = pos
        flat = [v.reshape(-1) for v in unique]
        # In pieces, so the float64 copies stay small even for one huge parameter (an embedding).
        for start in range(0, flat[0].numel(), self.PIECE_NUMEL):
            x = torch.stack([v[start : start + self.PIECE_NUMEL] for v in flat]).double()
            gram = x @ x.T
            part = self._parts.get(self.key)
            self._parts[self.key] = gram if part is None else part + gram
        self.index, self.hp = index, hp

    def values(self, gram: torch.Tensor | None = None) -> dict[str, float]:
        """{metric name: value} from `gram` (a host copy of `self.gram`; default: self.gram)."""
        hp, i = self.hp, self.index
        gram = (self.gram if gram is None else gram).tolist()

        def dot(a: str, b: str) -> float:
            return gram[i[a]][i[b]] if a in i and b in i else 0.0

        half = hp.drift_factor
        c_grad = half * hp.n_beta
        c_loc = half * hp.localization
        c_wd = half  # the wd vector already carries lambda

        def prior_dot(other: str) -> float:
            return c_loc * dot("scaled_dist", other) + c_wd * dot("scaled_wd", other)

        sq = {
            "scaled_grad": c_grad**2 * dot("scaled_grad", "scaled_grad"),
            "unscaled_grad": c_grad**2 * dot("grad", "grad"),
            "localization": c_loc**2 * dot("scaled_dist", "scaled_dist"),
            "weight_decay": c_wd**2 * dot("scaled_wd", "scaled_wd"),
            "noise": dot("noise", "noise"),
            "distance": dot("dist", "dist"),
        }
        out = {name: math.sqrt(max(v, 0.0)) for name, v in sq.items()}
        out["dot_grad_prior"] = c_grad * prior_dot("scaled_grad")
        out["dot_grad_noise"] = c_grad * dot("scaled_grad", "noise")
        out["dot_prior_noise"] = prior_dot("noise")
        return out
