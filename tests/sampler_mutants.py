"""Deliberately wrong SGLD updates, to prove the known-answer checks can fail.

Never used by the library itself. `wrong_update(kind)` is a context manager that, while active,
replaces `devinterp_ui.sgld.sgld_step` everywhere the sampler looks it up with a version that
breaks the update rule of SAMPLING.md in one way:

- "drift": drift factor lr instead of lr/2 (the posterior is sampled at twice n_beta);
- "noise": noise scale sqrt(2 lr) instead of sqrt(lr) (half n_beta);
- "no_localization": the localization term is dropped.

If a check still passes under a mutant, it cannot tell a correct sampler from a wrong one.
"""

from __future__ import annotations

import dataclasses
import math
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from devinterp_ui import sgld

__all__ = ["MUTANTS", "wrong_update"]

MUTANTS = ("drift", "noise", "no_localization")


def _scaled(xi, factor: float):
    """`xi` times `factor`; a `NoiseDraw` (called per piece) becomes one that scales its draw."""
    if callable(xi):
        return lambda like: xi(like) * factor
    return xi * factor


def _mutant(kind: str, original):
    def step(slots, grads, noises, hp, with_metrics=False):
        if kind == "drift":
            # lr' = 2 lr doubles the drift; dividing the noise by sqrt(2) keeps sqrt(lr) xi.
            hp = dataclasses.replace(hp, lr=2 * hp.lr)
            noises = [_scaled(xi, 1 / math.sqrt(2)) for xi in noises]
        elif kind == "noise":
            noises = [_scaled(xi, math.sqrt(2)) for xi in noises]
        elif kind == "no_localization":
            hp = dataclasses.replace(hp, localization=0.0)
        return original(slots, grads, noises, hp, with_metrics)

    return step


@contextmanager
def wrong_update(kind: str) -> Iterator[None]:
    """Within the block, every chain steps with the `kind` mutant of the SGLD update."""
    if kind not in MUTANTS:
        raise ValueError(f"kind must be one of {MUTANTS}, got {kind!r}")
    original = sgld.sgld_step
    mutant = _mutant(kind, original)
    # The sampler may have imported the function by name: patch every module that holds it.
    patched = [
        module
        for name, module in list(sys.modules.items())
        if name.startswith("devinterp_ui") and getattr(module, "sgld_step", None) is original
    ]
    if not patched:
        raise RuntimeError("devinterp_ui.sgld.sgld_step is not used by any loaded module")
    for module in patched:
        module.sgld_step = mutant
    try:
        yield
    finally:
        for module in patched:
            module.sgld_step = original
