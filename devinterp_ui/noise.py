"""Each segment of a chain draws its noise from a stream of its own.

A chain's sampled parameters are packed into segments (`devinterp_ui.segments`). Segment 0 draws
from a generator seeded with the chain's seed itself, segment k >= 1 from one seeded with
`segment_seed(seed, k)`. With one stream per segment, a segment's noise does not depend on the
order in which the step reaches the segments: the update inside the backward
(`devinterp_ui.backward_update`) updates them in the order the backward completes their
gradients (about last to first), the plain step in segment order, and both give the same bits.
A model whose sampled parameters fit one segment draws exactly as one generator seeded with the
chain's seed (as before segments had streams of their own).
"""

from __future__ import annotations

import torch

from devinterp_ui.sgld import NoiseDraw

_MASK64 = (1 << 64) - 1


def segment_seed(seed: int, k: int) -> int:
    """The seed of segment `k`'s stream of a chain seeded `seed`: `seed` itself for k = 0, else
    SplitMix64 of (seed, k) (a well-mixed 64-bit value, so that nearby chain seeds and segment
    indices give unrelated Mersenne Twister / Philox states)."""
    if k == 0:
        return int(seed)
    z = (int(seed) + k * 0x9E3779B97F4A7C15) & _MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return z ^ (z >> 31)


def draw_from(generator: torch.Generator | None) -> NoiseDraw:
    """`draw(like)`: N(0, 1) noise of `like`'s shape, dtype and device from `generator` (None:
    torch's default generator of `like`'s device)."""

    def draw(like: torch.Tensor) -> torch.Tensor:
        return torch.randn(like.shape, generator=generator, device=like.device, dtype=like.dtype)

    return draw


def segment_draws(seed: int, segments: int, device: torch.device) -> list[NoiseDraw]:
    """One `NoiseDraw` per segment of a chain seeded `seed`, each on a generator of its own on
    `device` (see the module docstring)."""
    return [
        draw_from(torch.Generator(device=device).manual_seed(segment_seed(seed, k)))
        for k in range(segments)
    ]
