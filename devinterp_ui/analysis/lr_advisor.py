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
    iterations, converged: Hessian-vector products (Lanczos steps) taken, and whether the
        eigenvalue's error bound reached rtol.
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
    rtol: float = 1e-3,
    seed: int = 0,
    keep_graphs: bool | None = None,
) -> LrAdvice:
    """Advise an SGLD lr from the curvature at the checkpoint.

    The Hessian is that of the mean loss over `num_batches` fixed batches of `batch_size` rows
    (chosen by `seed`), as `sample()` computes it (`loss_fn`, default next-token cross-entropy),
    over the parameters `param_masks` selects (as `sample()`); h_max by Lanczos with
    Hessian-vector products (double backward), started from the gradient at the checkpoint,
    at most `max_iters` products, stopping when the Kahan-Parlett bound on the distance of the
    top Ritz value to an eigenvalue is within `rtol` (relative; 6 products on the demo LM).
    The model's weights are left as they were.

    keep_graphs: True keeps each batch's gradient graph (built once, with the start's
        gradient) so that a product is one backward through it per batch, about 1.5x cheaper
        than rebuilding it (forward + backward + double backward) each time; memory: the graphs
        of all `num_batches` batches at once. False holds one batch's graph at a time. None
        (default): True for models under KEEP_GRAPHS_MAX_PARAMS sampled entries, else False.

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

    if keep_graphs is None:
        keep_graphs = sum(p.numel() for p in params) <= KEEP_GRAPHS_MAX_PARAMS
    h, iters, converged = hessian_top_eigenvalue(
        _batch_losses(model, fn, batches),
        params,
        mask_list,
        max_iters,
        rtol,
        seed,
        keep_graphs=bool(keep_graphs),
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


KEEP_GRAPHS_MAX_PARAMS = 10_000_000
"""Largest model (sampled entries) whose batch graphs `suggest_lr` keeps by default: the demo
LM (106k) and models of that kind pay a few MB for a ~1.5x cheaper product; a large model's
graphs over several batches could exhaust memory, so it rebuilds one batch's at a time."""


def hessian_top_eigenvalue(
    losses, params, masks, max_iters: int, rtol: float, seed: int, *, keep_graphs: bool = False
) -> tuple[float, int, bool]:
    """(h_max, Hessian-vector products, converged): the largest eigenvalue of the Hessian of
    the mean of `losses` (callables, one per batch, each returning a scalar loss) over
    `params`, restricted to the entries of `masks` (None = all).

    Lanczos with full reorthogonalisation (`_lanczos`): the top Ritz value of the Krylov space
    of m products is far closer to the top eigenvalue than the m-th power-iteration estimate
    (error ~ q^(2m) against q^m, better still for clustered spectra), and it is the largest
    *algebraic* eigenvalue, so a dominant negative one needs no second, shifted run.
    The start is the gradient of the mean loss plus a little noise (`_start`): one backward
    per batch (a quarter of a product) that saves about two products on the demo LM.
    Memory: (products + 2) parameter-sized vectors.
    """
    saved = [p.requires_grad for p in params]
    for p in params:
        p.requires_grad_(True)
    try:
        gen = torch.Generator().manual_seed(int(seed))
        noise = [
            _masked(torch.randn(p.shape, generator=gen).to(p), m)
            for p, m in zip(params, masks, strict=True)
        ]
        if keep_graphs:
            graphs = [_grad_graph(loss_of_batch, params) for loss_of_batch in losses]
            grad = _mean_masked([[_detached(g) for g in gs] for gs in graphs], params, masks)
            hvp = lambda x: _hvp_kept(graphs, params, masks, x)  # noqa: E731
        else:
            grad = _gradient(losses, params, masks)
            hvp = lambda x: _hvp(losses, params, masks, x)  # noqa: E731
        if not all(bool(torch.isfinite(g).all()) for g in grad):
            raise ValueError(
                "the loss's gradient at the checkpoint is not finite (NaN/Inf); check the model "
                "and loss_fn at these weights."
            )
        return _lanczos(hvp, _start(grad, noise), max_iters, rtol)
    finally:
        for p, s in zip(params, saved, strict=True):
            p.requires_grad_(s)


START_NOISE = 0.1
"""Weight of the random part of the Lanczos start (unit-norm gradient + 0.1 x unit-norm noise):
enough that an eigenvector the gradient happens to miss is still in the Krylov space, small
enough to keep the gradient's head start (the drift of SGLD points along the stiff directions
first: its components there are the ones that are not at a minimum, or the batches' noise)."""


def _gradient(losses, params, masks) -> list[torch.Tensor]:
    """Gradient of the mean loss over the batches, masked (zeros at an exact minimum)."""
    total = [torch.zeros_like(p) for p in params]
    for loss_of_batch in losses:
        grads = torch.autograd.grad(loss_of_batch(), params, allow_unused=True)
        for t, g in zip(total, grads, strict=True):
            if g is not None:
                t.add_(g.detach(), alpha=1.0 / len(losses))
    return [_masked(t, m) for t, m in zip(total, masks, strict=True)]


def _start(grad: list[torch.Tensor], noise: list[torch.Tensor]) -> list[torch.Tensor]:
    """Unit gradient + START_NOISE x unit noise; the noise alone when the gradient is 0 or not
    finite (the curvature check then reports a non-finite product if the loss is broken)."""
    noise = _normalised(noise)
    g_norm = math.sqrt(_dot(grad, grad))
    if not (math.isfinite(g_norm) and g_norm > 0):
        return noise
    return [g / g_norm + START_NOISE * r for g, r in zip(grad, noise, strict=True)]


def _lanczos(hvp, v, max_iters: int, rtol: float) -> tuple[float, int, bool]:
    """Top eigenvalue of the symmetric operator `hvp` (lists of tensors) from start `v`.

    Stopping rule: after step m the top Ritz pair (theta, y) of the tridiagonal T_m has
    residual ||H y - theta y|| = r = beta_m |s_m| (s_m: last entry of T_m's eigenvector), and
    some eigenvalue lies within min(r, r^2 / gap) of theta (Kahan-Parlett; gap: distance from
    theta to the rest of the spectrum, estimated by the next Ritz value). Stop when that bound
    is within rtol |theta|, or when beta_m = 0 (the Krylov space is invariant: theta exact).
    """
    q = _normalised(v)
    basis: list[list[torch.Tensor]] = []
    alphas: list[float] = []
    betas: list[float] = []
    theta = 0.0
    for m in range(1, max_iters + 1):
        basis.append(q)
        w = hvp(q)
        alpha = _dot(w, q)
        if not math.isfinite(alpha):
            raise ValueError(
                "the loss's curvature at the checkpoint is not finite (NaN/Inf Hessian-vector "
                "product); check the model and loss_fn at these weights."
            )
        alphas.append(alpha)
        # Full reorthogonalisation (twice is enough, Kahan's rule): without it, rounding
        # brings back copies of converged Ritz vectors and the recurrence loses its meaning.
        for _ in range(2):
            for b in basis:
                c = _dot(w, b)
                w = [a - c * x for a, x in zip(w, b, strict=True)]
        beta = math.sqrt(_dot(w, w))
        t = np.diag(alphas) + np.diag(betas, 1) + np.diag(betas, -1)
        ritz, vecs = np.linalg.eigh(t)
        theta = float(ritz[-1])
        resid = beta * abs(float(vecs[-1, -1]))
        scale = max(abs(theta), 1e-30)
        if beta <= 1e-12 * max(scale, abs(alpha)):
            return theta, m, True
        if m >= 2:
            gap = theta - float(ritz[-2])
            bound = min(resid, resid * resid / gap) if gap > 0 else resid
            if bound <= rtol * scale:
                return theta, m, True
        betas.append(beta)
        q = [a / beta for a in w]
    return theta, max_iters, False


def _dot(a: list[torch.Tensor], b: list[torch.Tensor]) -> float:
    return float(sum((x * y).sum() for x, y in zip(a, b, strict=True)))


def _grad_graph(loss_of_batch, params) -> list[torch.Tensor | None]:
    """One batch's gradient with its graph kept (create_graph), None for unused parameters."""
    return list(torch.autograd.grad(loss_of_batch(), params, create_graph=True, allow_unused=True))


def _detached(g: torch.Tensor | None) -> torch.Tensor | None:
    return None if g is None else g.detach()


def _mean_masked(per_batch, params, masks) -> list[torch.Tensor]:
    """Mean over batches of per-batch lists of tensors (None = zero), masked."""
    total = [torch.zeros_like(p) for p in params]
    for tensors in per_batch:
        for t, g in zip(total, tensors, strict=True):
            if g is not None:
                t.add_(g, alpha=1.0 / len(per_batch))
    return [_masked(t, m) for t, m in zip(total, masks, strict=True)]


def _hvp_kept(graphs, params, masks, v) -> list[torch.Tensor]:
    """H v for the mean over batches through the kept gradient graphs: one backward each."""
    per_batch = []
    for grads in graphs:
        dot = sum((g * x).sum() for g, x in zip(grads, v, strict=True) if g is not None)
        if not (isinstance(dot, torch.Tensor) and dot.requires_grad):
            continue  # the gradient does not depend on the weights: no curvature
        hv = torch.autograd.grad(dot, params, retain_graph=True, allow_unused=True)
        per_batch.append([_detached(h) for h in hv])
    out = _mean_masked(per_batch, params, masks)
    scale = len(per_batch) / len(graphs)
    return [t * scale for t in out] if scale != 1.0 else out


def _hvp(losses, params, masks, v) -> list[torch.Tensor]:
    """H v for the mean over batches, by double backward, one batch at a time (so the graph of
    one batch is alive at once)."""
    total = [torch.zeros_like(p) for p in params]
    for loss_of_batch in losses:
        loss = loss_of_batch()
        grads = torch.autograd.grad(loss, params, create_graph=True, allow_unused=True)
        dot = sum((g * x).sum() for g, x in zip(grads, v, strict=True) if g is not None)
        if not (isinstance(dot, torch.Tensor) and dot.requires_grad):
            continue  # the gradient does not depend on the weights: no curvature
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
