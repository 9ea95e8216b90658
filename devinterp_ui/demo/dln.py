"""A deep linear network (DLN) regression problem whose learning coefficient is known.

Model: bias-free ``nn.Linear`` layers in an ``nn.Sequential``, ``f(x) = W_L ... W_1 x`` with
``widths = [input_dim, hidden_1, ..., output_dim]``.

Teacher: ``W_1 = 0`` and every later layer injective (a random matrix with orthonormal columns
times ``teacher_scale``), so the end-to-end map is 0 (rank 0) and the data are noiseless:
``Y = 0``. Near this teacher only ``W_1`` changes the function, and it does so injectively, so
the *local* learning coefficient is ``hidden_1 * input_dim / 2``. That equals Aoyagi's *global*
value for rank 0 only for some widths (for two layers ``[M, H, N]``: when ``M + H < N``); the
constructor checks the two agree and refuses widths where they do not, so the checkpoint (the
student initialised AT the teacher) has ``true_lambda`` as its LLC.

Loss: per sample ``0.5 * sum_j (y_j - f(x)_j)**2`` (nats), the negative log-likelihood of a
Gaussian with unit variance up to a constant, so ``n_beta * (E[L] - L(w0))`` estimates lambda.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

DEFAULT_WIDTHS: tuple[int, ...] = (4, 3, 8)


@dataclass(frozen=True)
class DLNProblem:
    """A generated DLN problem.

    - ``model``: the student, a copy of the teacher (the true parameter).
    - ``X``: (n, input_dim) float32 standard Gaussian inputs; ``Y``: (n, output_dim), all zero.
    - ``true_lambda``: the learning coefficient at the teacher (Aoyagi 2024, rank 0).
    """

    widths: tuple[int, ...]
    seed: int
    teacher_scale: float
    model: nn.Sequential
    X: torch.Tensor
    Y: torch.Tensor
    true_lambda: float
    rank: int = field(default=0)

    def describe(self) -> dict:
        """JSON-safe record of how the problem was generated (the DLN's "manifest")."""
        return {
            "name": "dln",
            "widths": list(self.widths),
            "teacher_rank": self.rank,
            "teacher": "W_1 = 0, later layers teacher_scale * (orthonormal columns)",
            "teacher_scale": self.teacher_scale,
            "seed": self.seed,
            "n": len(self.X),
            "inputs": "standard Gaussian",
            "noise": "none (Y = teacher(X) = 0)",
            "loss": "0.5 * sum_j (y_j - f(x)_j)^2 per sample",
            "true_lambda": self.true_lambda,
            "true_lambda_source": "devinterp_ui.theory.dln_learning_coefficient(widths, 0)",
        }


def make_dln_model(widths: tuple[int, ...] | list[int]) -> nn.Sequential:
    """Bias-free linear layers ``widths[i] -> widths[i + 1]`` in an ``nn.Sequential``.

    Parameter names are ``"0.weight"``, ``"1.weight"``, ... in data-flow order.
    """
    return nn.Sequential(
        *(nn.Linear(a, b, bias=False) for a, b in zip(widths[:-1], widths[1:], strict=True))
    )


def dln_loss(model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """Per-sample loss ``0.5 * ||y - f(x)||^2``: batch (X (B, in), Y (B, out)) -> (B,)."""
    x, y = batch
    return 0.5 * (y - model(x)).pow(2).sum(dim=-1)


def make_dln_problem(
    widths: tuple[int, ...] | list[int] = DEFAULT_WIDTHS,
    n: int = 10_000,
    seed: int = 0,
    teacher_scale: float = 1.0,
) -> DLNProblem:
    """Generate the problem deterministically from ``seed``.

    Raises ``ValueError`` for widths where the teacher cannot be built (a later layer narrower
    than the one before it, so not injective) or where its local learning coefficient differs
    from the global closed form (then no checkpoint-based estimate could match the formula).
    """
    widths = tuple(int(w) for w in widths)
    if len(widths) < 3:
        raise ValueError(f"a DLN needs at least one hidden layer: widths={list(widths)}")
    if any(b < a for a, b in zip(widths[1:-1], widths[2:], strict=False)):
        raise ValueError(
            f"widths={list(widths)}: layers after the first must not narrow, "
            "else the teacher's later layers cannot be injective"
        )
    from devinterp_ui.theory import dln_learning_coefficient  # lazy: theory is a sibling module

    true_lambda = float(dln_learning_coefficient(list(widths), 0))
    local_lambda = widths[0] * widths[1] / 2
    if abs(true_lambda - local_lambda) > 1e-9:
        raise ValueError(
            f"widths={list(widths)}: the teacher's local learning coefficient "
            f"({local_lambda}) differs from the global closed form ({true_lambda}); "
            "for two layers [M, H, N] choose M + H < N, e.g. [4, 3, 8]"
        )

    generator = torch.Generator().manual_seed(seed)
    model = make_dln_model(widths)
    with torch.no_grad():
        model[0].weight.zero_()
        for layer in list(model)[1:]:
            # QR of a Gaussian matrix: orthonormal columns, so every later layer is injective
            # and the curvature in W_1's directions is teacher_scale**(2(L-1)) * Cov(x).
            gaussian = torch.randn(layer.weight.shape, generator=generator, dtype=torch.float64)
            q, r = torch.linalg.qr(gaussian)
            q = q * torch.sign(torch.diagonal(r))  # unique QR: make the result seed-determined
            layer.weight.copy_((teacher_scale * q).to(torch.float32))
    X = torch.randn(n, widths[0], generator=generator)
    with torch.no_grad():
        Y = model(X)
    return DLNProblem(
        widths=widths,
        seed=seed,
        teacher_scale=teacher_scale,
        model=model,
        X=X,
        Y=Y,
        true_lambda=true_lambda,
    )
