"""Closed-form learning coefficients (real log canonical thresholds) of small models.

These are the "true" answers the LLC estimator is checked against. Every function returns
lambda for a model with a unit-variance Gaussian likelihood (per-sample loss
0.5 * ||y - f(x)||^2), so that the estimator n_beta * (E[L_n] - L_n(w0)) converges to it.

Sources:
- regular models: lambda = d / 2 (Watanabe 2009).
- normal crossing K(w) = prod_i w_i^(2 k_i): lambda = min_i 1 / (2 k_i) (Watanabe 2009, ch. 2).
- reduced-rank regression (two-layer linear networks): Aoyagi & Watanabe (2005), "Stochastic
  complexities of reduced rank regression in Bayesian estimation", Neural Networks 18(7).
- deep linear networks: Aoyagi (2024), "Consideration on the learning efficiency of
  multiple-layered neural networks with linear units", Neural Networks 172, Theorem 1.
"""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction
from math import ceil

__all__ = [
    "dln_learning_coefficient",
    "normal_crossing_learning_coefficient",
    "regular_learning_coefficient",
    "rrr_learning_coefficient",
]


def regular_learning_coefficient(d: int) -> float:
    """lambda of a regular model with ``d`` identifiable parameters: d / 2."""
    if d < 0:
        raise ValueError(f"d must be >= 0, got {d}")
    return d / 2


def normal_crossing_learning_coefficient(k: Sequence[int | float]) -> float:
    """lambda of K(w) = prod_i w_i^(2 k_i) at w = 0: min over i with k_i > 0 of 1 / (2 k_i).

    Coordinates with k_i == 0 do not enter K and do not bound lambda. Example: the model
    y = x * w1 * w2^2 has K proportional to w1^2 w2^4, so k = (1, 2) and lambda = 1/4.
    """
    ks = [float(ki) for ki in k]
    if any(ki < 0 for ki in ks):
        raise ValueError(f"exponents k must be >= 0, got {list(k)}")
    positive = [ki for ki in ks if ki > 0]
    if not positive:
        raise ValueError("at least one exponent k_i must be > 0 (otherwise K is constant)")
    return min(1.0 / (2.0 * ki) for ki in positive)


def rrr_learning_coefficient(M: int, N: int, H: int, r: int) -> float:
    """Reduced-rank regression y = B A x (A: H x M, B: N x H), true product of rank r.

    Aoyagi & Watanabe (2005), Main Theorem. M = input dimension, N = output dimension,
    H = inner width, r = rank of the true matrix (0 <= r <= min(M, N, H)).
    """
    if min(M, N, H) < 1:
        raise ValueError(f"dimensions must be >= 1, got M={M}, N={N}, H={H}")
    if not 0 <= r <= min(M, N, H):
        raise ValueError(f"rank r must lie in [0, min(M, N, H)] = [0, {min(M, N, H)}], got {r}")
    if N + r > M + H:  # case 2
        return (H * M - H * r + N * r) / 2
    if M + r > N + H:  # case 3
        return (H * N - H * r + M * r) / 2
    if H + r > M + N:  # case 4: the inner width never binds
        return M * N / 2
    # case 1 (N + r <= M + H, M + r <= N + H, H + r <= M + N): parity of M + N + H + r matters
    num = 2 * (H + r) * (M + N) - (M - N) ** 2 - (H + r) ** 2
    if (M + N + H + r) % 2 == 1:
        num += 1
    return num / 8


def _aoyagi_subset(reduced: list[int]) -> list[int]:
    """Aoyagi's set Sigma (as values): the ell+1 smallest reduced widths such that

    (1) max(Sigma) < min(rest), (2) sum(Sigma) >= ell * max(Sigma),
    (3) sum(Sigma) < ell * min(rest) (vacuous when rest is empty).
    Aoyagi (2024) shows such a set exists and is unique; condition (1) forces it to be a
    prefix of the sorted widths, so trying every prefix finds it.
    """
    m = sorted(reduced)
    for size in range(2, len(m) + 1):
        sigma, rest = m[:size], m[size:]
        ell = size - 1
        s = sum(sigma)
        if rest and not max(sigma) < min(rest):
            continue
        if s < ell * max(sigma):
            continue
        if rest and not s < ell * min(rest):
            continue
        return sigma
    # Unreachable by Aoyagi's existence result; kept so that a bug cannot pass silently.
    raise AssertionError(f"no admissible subset for reduced widths {reduced}")


def dln_learning_coefficient(widths: Sequence[int], rank: int) -> float:
    """Learning coefficient of a deep linear network y = W_L ... W_1 x at a true matrix of rank r.

    Args:
        widths: [input_dim, hidden_1, ..., hidden_{L-1}, output_dim] in the order data flows
            through the layers (so W_i has shape (widths[i], widths[i-1])). Length >= 2.
        rank: rank r of the teacher's end-to-end matrix, 0 <= r <= min(widths).

    Returns:
        lambda (float). Aoyagi (2024), Theorem 1: with reduced widths M_i = H_i - r and the
        subset Sigma of size ell + 1 described in ``_aoyagi_subset``, S = sum(Sigma),
        a = S - (ceil(S / ell) - 1) * ell,

            lambda = (-r^2 + r (H_1 + H_{L+1})) / 2 + a (ell - a) / (4 ell)
                     - (ell - 1) S^2 / (4 ell) + (1/2) sum_{i<j in Sigma} M_i M_j.

        For two layers this equals ``rrr_learning_coefficient``; for one layer, in*out/2.
    """
    hs = [int(h) for h in widths]
    if len(hs) < 2:
        raise ValueError(f"widths needs at least [input_dim, output_dim], got {list(widths)}")
    if min(hs) < 1:
        raise ValueError(f"all widths must be >= 1, got {hs}")
    if not 0 <= rank <= min(hs):
        raise ValueError(f"rank must lie in [0, min(widths)] = [0, {min(hs)}], got {rank}")
    r = int(rank)
    sigma = _aoyagi_subset([h - r for h in hs])
    ell = len(sigma) - 1
    s = sum(sigma)
    a = s - (ceil(Fraction(s, ell)) - 1) * ell
    pairs = sum(sigma[i] * sigma[j] for i in range(len(sigma)) for j in range(i + 1, len(sigma)))
    # Exact rational arithmetic: the terms are quarter-integers over ell and must cancel exactly.
    lam = (
        Fraction(-(r**2) + r * (hs[0] + hs[-1]), 2)
        + Fraction(a * (ell - a), 4 * ell)
        - Fraction((ell - 1) * s * s, 4 * ell)
        + Fraction(pairs, 2)
    )
    return float(lam)
