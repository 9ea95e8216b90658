"""Models whose learning coefficient is known in closed form, and a check of sample() + compute_llc.

Each `KnownAnswer` is a supervised problem (X, Y) with per-sample loss 0.5 ||y - f(x)||^2 (the
negative log-likelihood of a unit-variance Gaussian up to a constant, so that
n_beta (E[L_n] - L_n(w0)) estimates lambda), a checkpoint w0 at which the local learning
coefficient equals the closed form, and sampler settings derived from the loss curvature at w0:

- n_beta = n / ln n;
- lr such that lr * n_beta * h_max = 0.05 (h_max: largest Hessian eigenvalue of L_n at w0), which
  keeps the step-size bias, roughly a factor 1 / (1 - lr n_beta h / 4), near 1%;
- localization: none for the regular model; gamma = 1% of n_beta * h_min for the deep linear
  networks, where it only has to pull back the flat directions of the later layers; a box
  prior for the normal crossing, whose loss is flat along both axes;
- burn-in of 3 relaxation times 1 / (lr n_beta h_min), h_min the smallest nonzero eigenvalue.

`run_known_answer(problem, size)` runs the public `sample()` and returns the estimate next to the
truth. `size="reduced"` is the default test suite's budget, `"full"` the documented one.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from devinterp_ui.analysis.llc import compute_llc, default_nbeta
from devinterp_ui.theory import (
    dln_learning_coefficient,
    normal_crossing_learning_coefficient,
    regular_learning_coefficient,
)

__all__ = [
    "KnownAnswer",
    "KnownAnswerResult",
    "deep_linear_network",
    "gaussian_nll",
    "localized_regular_model",
    "normal_crossing",
    "regular_model",
    "run_known_answer",
    "standard_problems",
]

STEP_TARGET = 0.05  # lr * n_beta * h_max
CHAINS = 4
SIZES = ("reduced", "full")


def gaussian_nll(model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """Per-sample 0.5 ||y - f(x)||^2 (nats, up to a constant): (X (B, ...), Y (B, ...)) -> (B,)."""
    x, y = batch
    residual = y - model(x)
    return 0.5 * residual.pow(2).reshape(len(residual), -1).sum(dim=1)


@dataclass
class KnownAnswer:
    """One accuracy check: a model at a checkpoint, its data, the truth and the sampler settings.

    steps: post-burn-in SGLD steps per chain, per size ("reduced": the default test suite,
    "full": the documented accuracy run).
    tolerance: (low, high) relative error bounds per size, e.g. {"full": (-0.05, 0.05), ...}.
    reference: the exact expectation of n_beta (L_n(w) - L_n(w0)) under the sampled (tempered,
    localized, discretised) distribution when it is computable, else None.
    """

    name: str
    description: str
    true_lambda: float
    model: nn.Module
    X: torch.Tensor
    Y: torch.Tensor
    sample_kwargs: dict[str, Any]
    steps: dict[str, int]
    tolerance: dict[str, tuple[float, float]]
    reference: float | None = None
    notes: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class KnownAnswerResult:
    name: str
    true_lambda: float
    reference: float | None
    estimate: float
    std: float  # across chains
    per_chain: list[float]
    relative_error: float  # (estimate - true) / true
    tolerance: tuple[float, float]
    passed: bool
    seconds: float
    size: str
    settings: dict[str, Any]


def _settings(
    n: int, h_max: float, h_min: float, batch_size: int, localize: bool
) -> dict[str, Any]:
    n_beta = default_nbeta(n)
    lr = STEP_TARGET / (n_beta * h_max)
    return {
        "n_beta": n_beta,
        "lr": lr,
        "localization": 0.01 * n_beta * h_min if localize else 0.0,
        "num_burnin_steps": int(math.ceil(3 / (lr * n_beta * h_min))),
        "batch_size": batch_size,
        # Init loss over one full epoch, so that L_n(w0) is exact.
        "num_init_loss_batches": n // batch_size,
    }


def regular_model(d: int = 10, n: int = 1_000, seed: int = 0) -> KnownAnswer:
    """Full-rank linear regression y = w.x + eps (eps ~ N(0, 1)) at its least-squares solution.

    Full-batch SGLD (batch = n), so the sampled distribution is exactly Gaussian and its
    expectation is known in closed form, discretisation included.
    """
    gen = torch.Generator().manual_seed(seed)
    X = torch.randn(n, d, generator=gen, dtype=torch.float64)
    w_true = torch.randn(d, 1, generator=gen, dtype=torch.float64)
    Y = X @ w_true + torch.randn(n, 1, generator=gen, dtype=torch.float64)
    w_hat = torch.linalg.lstsq(X, Y).solution
    model = nn.Linear(d, 1, bias=False)
    with torch.no_grad():
        model.weight.copy_(w_hat.T.float())
    hessian = (X.T @ X / n).numpy()
    h = np.linalg.eigvalsh(hessian)
    kwargs = _settings(n, float(h.max()), float(h.min()), batch_size=n, localize=False)
    return KnownAnswer(
        name=f"regular (linear regression, d={d})",
        description=f"y = w.x + N(0,1) noise, x ~ N(0, I_{d}), n={n}, checkpoint = least squares",
        true_lambda=regular_learning_coefficient(d),
        model=model,
        X=X.float(),
        Y=Y.float(),
        sample_kwargs=kwargs,
        steps={"reduced": 2_500, "full": 20_000},
        tolerance={"reduced": (-0.10, 0.10), "full": (-0.05, 0.05)},
        reference=_gaussian_reference(h, kwargs),
        extra={"hessian_eigenvalues": h.tolist()},
    )


def localized_regular_model(d: int = 10, n: int = 1_000, seed: int = 0) -> KnownAnswer:
    """The regular model with localization gamma = n_beta * mean(h): lambda_hat drops to ~d/4.

    Not a learning coefficient: a check that the localization term acts exactly as the update
    rule says (a sampler without it reports ~d/2).
    """
    problem = regular_model(d, n, seed)
    h = np.asarray(problem.extra["hessian_eigenvalues"])
    kwargs = dict(problem.sample_kwargs)
    kwargs["localization"] = kwargs["n_beta"] * float(h.mean())
    kwargs["lr"] = STEP_TARGET / (kwargs["n_beta"] * float(h.max()) + kwargs["localization"])
    kwargs["num_burnin_steps"] = int(math.ceil(3 / (kwargs["lr"] * kwargs["localization"])))
    reference = _gaussian_reference(h, kwargs)
    problem.name = f"localized regular (d={d}, gamma = n_beta mean h)"
    problem.description += "; strong localization"
    problem.sample_kwargs = kwargs
    problem.true_lambda = reference  # the check compares against the exact expectation
    problem.reference = reference
    problem.steps = {"reduced": 1_500, "full": 10_000}
    problem.tolerance = {"reduced": (-0.10, 0.10), "full": (-0.05, 0.05)}
    problem.notes = "true value = exact expectation of the localized Gaussian posterior"
    return problem


def _gaussian_reference(h: np.ndarray, kwargs: dict[str, Any]) -> float:
    """E[n_beta K] for full-batch SGLD on K = 0.5 u^T diag(h) u with localization gamma.

    Per eigendirection, precision P = n_beta h + gamma; the chain u <- (1 - lr P / 2) u +
    sqrt(lr) xi has stationary variance 1 / (P (1 - lr P / 4)).
    """
    p = kwargs["n_beta"] * h
    big_p = p + kwargs["localization"]
    return float(0.5 * np.sum(p / (big_p * (1 - kwargs["lr"] * big_p / 4))))


def deep_linear_network(
    widths: list[int], n: int = 1_000, seed: int = 0, teacher_scale: float = 2.0
) -> KnownAnswer:
    """Bias-free linear layers widths[0] -> ... -> widths[-1] at a rank-0 noiseless teacher.

    Teacher: W_1 = 0, each later layer teacher_scale x (orthonormal columns), so the product of
    the later layers A is injective and Y = 0. Near it only W_1 changes the function, through
    A W_1, so the local learning coefficient is widths[0] * widths[1] / 2; the widths used here
    are ones where that equals Aoyagi's global value (e.g. [M, H, N] with M + H < N), so no
    more singular point nearby attracts the posterior. Mini-batches of 100 rows.
    """
    widths = [int(w) for w in widths]
    true_lambda = dln_learning_coefficient(widths, 0)
    local = widths[0] * widths[1] / 2
    if abs(true_lambda - local) > 1e-9:
        raise ValueError(
            f"widths {widths}: local learning coefficient {local} at this teacher differs from "
            f"the global {true_lambda}; pick widths where they agree"
        )
    gen = torch.Generator().manual_seed(seed)
    layers = [nn.Linear(a, b, bias=False) for a, b in zip(widths[:-1], widths[1:], strict=True)]
    with torch.no_grad():
        layers[0].weight.zero_()
        for layer in layers[1:]:
            out_dim, in_dim = layer.weight.shape
            if out_dim < in_dim:
                raise ValueError(f"widths {widths}: layers after the first must not narrow")
            q, r = torch.linalg.qr(torch.randn(out_dim, in_dim, generator=gen, dtype=torch.float64))
            layer.weight.copy_((teacher_scale * q * torch.sign(torch.diagonal(r))).float())
    model = nn.Sequential(*layers)
    X = torch.randn(n, widths[0], generator=gen)
    Y = torch.zeros(n, widths[-1])
    sigma = np.linalg.eigvalsh((X.T @ X / n).double().numpy())
    gain = teacher_scale ** (2 * (len(widths) - 2))  # squared singular values of A
    kwargs = _settings(
        n, gain * float(sigma.max()), gain * float(sigma.min()), batch_size=100, localize=True
    )
    return KnownAnswer(
        name=f"deep linear network {widths}, rank 0",
        description=(
            f"widths {widths}, teacher W1 = 0 and later layers {teacher_scale} x orthonormal "
            f"columns, x ~ N(0, I), Y = 0 (noiseless), n={n}"
        ),
        true_lambda=true_lambda,
        model=model,
        X=X,
        Y=Y,
        sample_kwargs=kwargs,
        steps={"reduced": 1_000, "full": 10_000},
        tolerance={"reduced": (-0.15, 0.15), "full": (-0.15, 0.15)},
        notes=f"local lambda at the teacher = {widths[0]}*{widths[1]}/2 = Aoyagi's global value",
    )


class NormalCrossingModel(nn.Module):
    """f(x) = x * w1 * w2^2 with scalar weights."""

    def __init__(self) -> None:
        super().__init__()
        self.w1 = nn.Parameter(torch.zeros(()))
        self.w2 = nn.Parameter(torch.zeros(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.w1 * self.w2**2


def normal_crossing(n: int = 1_500, seed: int = 0, box: float = 1.0) -> KnownAnswer:
    """y = x w1 w2^2 at the noiseless teacher w = 0: K(w) = 0.5 E[x^2] w1^2 w2^4, lambda = 1/4.

    The loss is flat along both axes, so the posterior needs a prior: a box |w_i| <= box
    (bounding_box_size) and no Gaussian localization. Its exact tempered expectation (computed by
    quadrature) approaches 1/4 only like n^(-1/4), which is why the tolerance is one-sided wide.
    Full-batch SGLD.
    """
    gen = torch.Generator().manual_seed(seed)
    X = torch.randn(n, generator=gen)
    Y = torch.zeros(n)
    n_beta = default_nbeta(n)
    strength = n_beta * 0.5 * float((X.double() ** 2).mean()) * box**6  # N in N w1^2 w2^4
    # Largest curvature the posterior visits: along the w2 axis, d2/dw1^2 = 2 N w2^4 <= 2 N.
    h_max = 2 * strength / n_beta / box**2
    lr = 0.1 / (n_beta * h_max)
    kwargs = {
        "n_beta": n_beta,
        "lr": lr,
        "localization": 0.0,
        "bounding_box_size": box,
        "num_burnin_steps": int(math.ceil(box**2 / lr)),  # one diffusion time across the box
        "batch_size": n,
        "num_init_loss_batches": 1,
    }
    return KnownAnswer(
        name="normal crossing y = x w1 w2^2",
        description=f"x ~ N(0,1), Y = 0 (noiseless), n={n}, prior: box |w_i| <= {box}",
        true_lambda=normal_crossing_learning_coefficient([1, 2]),
        model=NormalCrossingModel(),
        X=X,
        Y=Y,
        sample_kwargs=kwargs,
        steps={"reduced": 4_000, "full": 30_000},
        tolerance={"reduced": (-0.35, 0.15), "full": (-0.35, 0.15)},
        reference=normal_crossing_box_expectation(strength),
        notes=f"N = n_beta E[x^2]/2 box^6 = {strength:.1f}",
    )


def normal_crossing_box_expectation(strength: float, grid: int = 200_001) -> float:
    """E[N w1^2 w2^4] under exp(-N w1^2 w2^4) on the unit box [-1, 1]^2.

    Integrating w1 out exactly: with a = N w2^4, I0(a) = int e^{-a x^2} dx over [-1, 1]
    = sqrt(pi/a) erf(sqrt a), and a * I2(a) = I0(a)/2 - e^{-a}, so
    E = 1/2 - int_0^1 e^{-N w^4} dw / int_0^1 I0(N w^4) dw.
    """
    w = torch.linspace(0.0, 1.0, grid, dtype=torch.float64)
    a = strength * w**4
    root = a.sqrt()
    i0 = torch.where(a > 1e-12, math.sqrt(math.pi) * torch.erf(root) / root.clamp_min(1e-300), 2.0)
    num = torch.trapezoid(torch.exp(-a), w)
    den = torch.trapezoid(i0, w)
    return float(0.5 - num / den)


def standard_problems() -> list[KnownAnswer]:
    """The checks reported in docs/accuracy.md."""
    return [
        regular_model(),
        localized_regular_model(),
        deep_linear_network([4, 3, 8]),
        deep_linear_network([5, 3, 9]),
        deep_linear_network([4, 3, 6, 10]),
        normal_crossing(),
    ]


def run_known_answer(
    problem: KnownAnswer, size: str = "reduced", seed: int = 100, **overrides: Any
) -> KnownAnswerResult:
    """Sample the problem's checkpoint with the public `sample()` and compare compute_llc to it.

    size: "reduced" (default test suite) or "full" (documented accuracy); overrides go to
    `sample()` (e.g. num_draws).
    """
    from devinterp_ui.sample import sample  # deferred: the package root imports this package

    if size not in SIZES:
        raise ValueError(f"size must be one of {SIZES}, got {size!r}")
    steps = problem.steps[size]
    kwargs = {
        "num_chains": CHAINS,
        "num_draws": steps,
        "init_seed": seed,
        "progress_bar": False,
        **problem.sample_kwargs,
        **overrides,
    }
    start = time.perf_counter()
    tree = sample(problem.model, (problem.X, problem.Y), {}, loss_fn=gaussian_nll, **kwargs)
    seconds = time.perf_counter() - start
    out = compute_llc(tree)
    estimate = float(out["llc_mean"])
    rel = (estimate - problem.true_lambda) / problem.true_lambda
    low, high = problem.tolerance[size]
    return KnownAnswerResult(
        name=problem.name,
        true_lambda=problem.true_lambda,
        reference=problem.reference,
        estimate=estimate,
        std=float(out["llc_std"]),
        per_chain=[float(v) for v in out["llc_per_chain"].values],
        relative_error=rel,
        tolerance=(low, high),
        passed=bool(low <= rel <= high),
        seconds=seconds,
        size=size,
        settings={k: v for k, v in kwargs.items() if k != "progress_bar"},
    )
