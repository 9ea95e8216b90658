"""The lr advisor: top Hessian eigenvalue at the checkpoint, stability limit and step-size bias.

The bias model (docs/tuning.md derives it): along a Hessian eigendirection with curvature h,
x = w - w0, SGLD with exact gradients steps

    x' = (1 - a) x + sqrt(lr) xi,     a = (lr / 2) k,   k = n_beta h + localization.

The chain is stable for |1 - a| < 1, i.e. lr < 4 / k, and its stationary variance is
lr / (1 - (1 - a)^2) = lr / (a (2 - a)), against the posterior's 1 / k = lr / (2a):

    Var_SGLD / Var_posterior = 1 / (1 - lr k / 4).

The LLC of a quadratic, n_beta E[L - L0] = sum_i n_beta h_i Var_i / 2, is inflated direction by
direction by that factor, most along h_max; so bias(lr) = 1 / (1 - lr k_max / 4) - 1 bounds the
relative step-size bias of the LLC (it is exact when the curvature is isotropic). Minibatch
gradient noise adds variance on top, which this model leaves out (docs/tuning.md).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from devinterp_ui.data import as_source, fixed_rows
from devinterp_ui.losses import LossFn, as_per_position, next_token_loss
from devinterp_ui.params import resolve_param_masks

__all__ = ["LrAdvice", "bias_for", "hessian_top_eigenvalue", "suggest_lr"]


def bias_for(lr: float, k: float) -> float:
    """Relative variance inflation 1 / (1 - lr k / 4) - 1 (inf at or past the limit 4 / k)."""
    x = lr * k / 4.0
    return math.inf if x >= 1.0 else 1.0 / (1.0 - x) - 1.0


@dataclass(frozen=True)
class LrAdvice:
    """What `suggest_lr` found.

    h_max: top Hessian eigenvalue of the sampling loss (mean over rows and positions, nats) at
        the checkpoint, over the sampled parameters. k_max = n_beta h_max + localization.
    lr_stable_max: 4 / k_max, the lr beyond which the stiffest direction diverges.
    lr_suggested: the lr whose predicted bias is target_bias: 4 b / ((1 + b) k_max).
    lr / bias: the lr asked about (None if none) and bias_at(lr).
    iterations, converged: power iteration steps and whether the eigenvalue settled to rtol.
    """

    h_max: float
    n_beta: float
    localization: float
    target_bias: float
    lr_stable_max: float
    lr_suggested: float
    lr: float | None
    bias: float | None
    iterations: int
    converged: bool
    num_batches: int
    batch_size: int

    @property
    def k_max(self) -> float:
        return self.n_beta * max(self.h_max, 0.0) + self.localization

    def bias_at(self, lr: float) -> float:
        """Predicted relative step-size bias of the LLC at `lr` (inf past the stability limit)."""
        return bias_for(float(lr), self.k_max)


def suggest_lr(
    model: torch.nn.Module,
    dataset: Any,
    *,
    n_beta: float,
    localization: float = 0.0,
    loss_fn: LossFn | None = None,
    target_bias: float = 0.05,
    lr: float | None = None,
    param_masks: Mapping[str, torch.Tensor | None] | None = None,
    batch_size: int = 32,
    num_batches: int = 4,
    max_iters: int = 50,
    rtol: float = 1e-2,
    seed: int = 0,
) -> LrAdvice:
    """Advise an SGLD lr from the curvature at the checkpoint.

    The Hessian is that of the mean loss over `num_batches` fixed batches of `batch_size` rows
    (chosen by `seed`), as `sample()` computes it (`loss_fn`, default next-token cross-entropy),
    over the parameters `param_masks` selects (as `sample()`); h_max by power iteration with
    Hessian-vector products (double backward), at most `max_iters` steps, stopping when the
    estimated remaining error of the eigenvalue (from the ratio of successive changes) is
    within `rtol` (relative). Costs about 2 x num_batches forward +
    backward passes per iteration. The model's weights are left as they were.

    Raises ValueError/TypeError naming the parameter, before any compute, for bad settings.
    """
    _check(n_beta, localization, target_bias, lr, batch_size, num_batches, max_iters, rtol)
    source = as_source(dataset, "dataset")
    if batch_size > len(source):
        raise ValueError(
            f"batch_size={batch_size} exceeds the dataset's {len(source)} rows; lower batch_size."
        )
    masks = resolve_param_masks(model, param_masks)
    named = dict(model.named_parameters())
    params = [named[n] for n in masks]
    device = params[0].device
    count = min(num_batches * batch_size, len(source))
    rows = fixed_rows(len(source), count, seed)
    chunks = [rows[i : i + batch_size] for i in range(0, count, batch_size)]
    batches = [(source.batch(idx, device), len(idx)) for idx in chunks]
    fn = loss_fn if loss_fn is not None else next_token_loss
    mask_list = [
        None if m is None else m.to(device=p.device, dtype=p.dtype)
        for m, p in zip(masks.values(), params, strict=True)
    ]

    h, iters, converged = hessian_top_eigenvalue(
        _batch_losses(model, fn, batches), params, mask_list, max_iters, rtol, seed
    )
    k = n_beta * max(h, 0.0) + localization
    stable = 4.0 / k if k > 0 else math.inf
    suggested = 4.0 * target_bias / ((1.0 + target_bias) * k) if k > 0 else math.inf
    return LrAdvice(
        h_max=h,
        n_beta=float(n_beta),
        localization=float(localization),
        target_bias=float(target_bias),
        lr_stable_max=stable,
        lr_suggested=suggested,
        lr=None if lr is None else float(lr),
        bias=None if lr is None else bias_for(float(lr), k),
        iterations=iters,
        converged=converged,
        num_batches=len(batches),
        batch_size=batch_size,
    )


def _batch_losses(model, fn, batches) -> list:
    """One callable per batch giving the mean of its per-row (per-position) losses, as the
    sampler's loss."""

    def one(batch, rows):
        return lambda: as_per_position(fn(model, batch), rows, "loss_fn").mean()

    return [one(b, n) for b, n in batches]


def hessian_top_eigenvalue(
    losses, params, masks, max_iters: int, rtol: float, seed: int
) -> tuple[float, int, bool]:
    """(h_max, iterations, converged): the largest eigenvalue of the Hessian of the mean of
    `losses` (callables, one per batch, each returning a scalar loss) over `params`,
    restricted to the entries of `masks` (None = all).

    Power iteration finds the eigenvalue of largest magnitude; when that is negative (a saddle),
    a second run on H - lambda I finds the largest one.
    """
    saved = [p.requires_grad for p in params]
    for p in params:
        p.requires_grad_(True)
    try:
        gen = torch.Generator().manual_seed(int(seed))
        v = [
            _masked(torch.randn(p.shape, generator=gen).to(p), m)
            for p, m in zip(params, masks, strict=True)
        ]
        lam, it1, ok1 = _power(losses, params, masks, v, 0.0, max_iters, rtol)
        if lam >= 0:
            return lam, it1, ok1
        top, it2, ok2 = _power(losses, params, masks, v, lam, max_iters, rtol)
        return top + lam, it1 + it2, ok1 and ok2
    finally:
        for p, s in zip(params, saved, strict=True):
            p.requires_grad_(s)


def _power(losses, params, masks, v, shift, max_iters, rtol):
    """Power iteration on H - shift I; returns (eigenvalue, iterations, converged).

    The Rayleigh quotients approach the top eigenvalue geometrically, error ~ q^k, so their
    change d_k understates the error left by a factor q / (1 - q), which is large when the top
    two eigenvalues are close. The ratio of successive changes estimates q (Aitken's delta^2):
    stop when that estimated remaining error is within rtol, and return the extrapolated value.
    """
    v = _normalised(v)
    history: list[float] = []
    for i in range(1, max_iters + 1):
        hv = _hvp(losses, params, masks, v)
        hv = [a - shift * b for a, b in zip(hv, v, strict=True)]
        new = float(sum((a * b).sum() for a, b in zip(hv, v, strict=True)))
        if not math.isfinite(new):
            raise ValueError(
                "the loss's curvature at the checkpoint is not finite (NaN/Inf Hessian-vector "
                "product); check the model and loss_fn at these weights."
            )
        history.append(new)
        done, estimate = _settled(history, rtol)
        if done:
            return estimate, i, True
        norm = math.sqrt(float(sum((a * a).sum() for a in hv)))
        if norm == 0.0:
            return 0.0, i, True  # v is in the null space: the curvature is 0 along it
        v = [a / norm for a in hv]
    return history[-1], max_iters, False


def _settled(history: list[float], rtol: float) -> tuple[bool, float]:
    """(converged, estimate) from the Rayleigh quotients so far."""
    if len(history) < 3:
        return False, history[-1]
    d0, d1 = history[-2] - history[-3], history[-1] - history[-2]
    scale = max(abs(history[-1]), 1e-30)
    if d1 == 0.0:
        return True, history[-1]
    q = d1 / d0 if d0 != 0.0 else math.inf
    if 0.0 < q < 1.0:
        remaining = d1 * q / (1.0 - q)
        return abs(remaining) <= rtol * scale and abs(d1) <= rtol * scale, history[-1] + remaining
    # Not yet geometric (or noisy): fall back to a small change, ten times stricter.
    return abs(d1) <= 0.1 * rtol * scale, history[-1]


def _hvp(losses, params, masks, v) -> list[torch.Tensor]:
    """H v for the mean over batches, by double backward, one batch at a time (so the graph of
    one batch is alive at once)."""
    total = [torch.zeros_like(p) for p in params]
    for loss_of_batch in losses:
        loss = loss_of_batch()
        grads = torch.autograd.grad(loss, params, create_graph=True)
        dot = sum((g * x).sum() for g, x in zip(grads, v, strict=True))
        hv = torch.autograd.grad(dot, params, allow_unused=True)
        for t, h in zip(total, hv, strict=True):
            if h is not None:
                t.add_(h.detach(), alpha=1.0 / len(losses))
    return [_masked(t, m) for t, m in zip(total, masks, strict=True)]


def _masked(t: torch.Tensor, m: torch.Tensor | None) -> torch.Tensor:
    return t if m is None else t * m


def _normalised(v: list[torch.Tensor]) -> list[torch.Tensor]:
    norm = math.sqrt(float(sum((a * a).sum() for a in v)))
    if norm == 0.0:
        raise ValueError("param_masks selects no entry to take the curvature over.")
    return [a / norm for a in v]


def _check(n_beta, localization, target_bias, lr, batch_size, num_batches, max_iters, rtol):
    def positive(name, x):
        if (
            isinstance(x, bool)
            or not isinstance(x, (int, float, np.floating))
            or not (math.isfinite(float(x)) and float(x) > 0)
        ):
            raise ValueError(f"{name} must be a finite number > 0, got {x!r}")

    positive("n_beta", n_beta)
    positive("target_bias", target_bias)
    positive("rtol", rtol)
    if lr is not None:
        positive("lr", lr)
    if (
        isinstance(localization, bool)
        or not isinstance(localization, (int, float))
        or not (math.isfinite(float(localization)) and localization >= 0)
    ):
        raise ValueError(f"localization must be a finite number >= 0, got {localization!r}")
    for name, x, least in (
        ("batch_size", batch_size, 1),
        ("num_batches", num_batches, 1),
        ("max_iters", max_iters, 2),
    ):
        if isinstance(x, bool) or not isinstance(x, int) or x < least:
            raise ValueError(f"{name} must be an int >= {least}, got {x!r}")
