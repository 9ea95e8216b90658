"""Chain schedules: which chain groups step when, and on which model copies.

A schedule is a generator of `Round`s (every group in `groups` takes step `step`, in order) and
`CHAIN_DONE` markers (a chain finished: read back and flush before the next starts). It makes
the `ChainGroup`s through `build(chains, model)` and knows nothing of what is recorded
(`devinterp_ui.runner` does that) nor of the update rule (`devinterp_ui.kernel`).

- "lockstep": one group per chain, each on its own copy of the checkpoint; every round steps
  every chain once, so all chains' newest rows appear together.
- "sequential": one chain after another on one reused model copy (for models too large to hold
  several); the arrays are the same bit for bit as lockstep's.
- "vectorized": one group of every chain, stacked and stepped by one vmapped estimator.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch

CHAIN_SCHEDULES = ("lockstep", "sequential", "vectorized")

CHAIN_DONE = "chain done"
"""Yielded by the sequential schedule after each chain's last round."""


@dataclass(frozen=True)
class Round:
    step: int
    groups: tuple


def rounds(
    schedule: str,
    checkpoint: torch.nn.Module,
    num_chains: int,
    total_steps: int,
    build: Callable[[list[int], torch.nn.Module], object],
    active: list[bool],
    state: dict[str, torch.Tensor] | None = None,
) -> Iterator[Round | str]:
    """The rounds of `schedule`. `active[c]` (read as the run goes) turns False once chain c
    completed or failed: its group is left out of later rounds (a vectorized group keeps
    stepping while any of its chains is active).

    Without `state`, `checkpoint` is never modified. With `state` (a state dict holding the
    checkpoint's values, e.g. views of the caller's model and copies of the buffers), the
    checkpoint itself serves as one chain's copy, so a run holds one model copy fewer: the
    last lockstep chain's (the others are copied from it first), or the sequential schedule's
    work copy, loaded from `state` before each chain. Vectorized ignores `state`."""
    if schedule == "lockstep":
        own = num_chains - 1 if state is not None else num_chains
        groups = [build([c], copy.deepcopy(checkpoint)) for c in range(own)]
        groups += [build([c], checkpoint) for c in range(own, num_chains)]
        for step in range(total_steps):
            yield Round(step, tuple(g for g in groups if _any_active(g, active)))
    elif schedule == "vectorized":
        group = build(list(range(num_chains)), checkpoint)
        for step in range(total_steps):
            yield Round(step, (group,))
    elif schedule == "sequential":
        if state is None:
            work, state = copy.deepcopy(checkpoint), checkpoint.state_dict()
        else:
            work = checkpoint
        for c in range(num_chains):
            work.load_state_dict(state)
            group = build([c], work)
            for step in range(total_steps):
                if not active[c]:
                    break
                yield Round(step, (group,))
            yield CHAIN_DONE
    else:
        raise ValueError(
            f"chain_schedule must be one of {list(CHAIN_SCHEDULES)} (got {schedule!r})."
        )


def _any_active(group, active: list[bool]) -> bool:
    return any(active[c] for c in group.chains)
