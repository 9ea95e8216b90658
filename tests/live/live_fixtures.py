"""The toy LM, data sizes and store helpers of the live-run tests (also used by their subprocesses)."""

from __future__ import annotations

import torch
from tiny_models import TinyLM

VOCAB, SEQ_LEN, ROWS = 12, 6, 96


class ToyLM(TinyLM):
    """Logits (B, T, VOCAB) from token ids (B, T): an embedding then a linear read-out."""

    def __init__(self) -> None:
        super().__init__(VOCAB, 8)


def observables_of(tokens: torch.Tensor) -> dict:
    """One observable, "val": the first 16 rows (two batches of 8)."""
    return {"val": tokens[:16]}


def set_marker(path, **changes) -> dict:
    """Rewrite the store's progress marker with `changes` merged in; returns the new marker.

    Keys "steps_written", "draws_written" and "chain_status" change the per-chain lists.
    """
    import zarr

    group = zarr.open_group(str(path), mode="r+")
    progress = dict(group.attrs["progress"])
    chains = dict(progress["chains"])
    for key, name in (
        ("steps_written", "steps_written"),
        ("draws_written", "draws_written"),
        ("chain_status", "status"),
    ):
        if key in changes:
            chains[name] = list(changes.pop(key))
    progress.update(changes)
    progress["chains"] = chains
    group.attrs["progress"] = progress
    return progress


def age_heartbeat(path, seconds: float) -> None:
    """Make the store's heartbeat look `seconds` old (its writer last beat then)."""
    import os
    import time

    from devinterp_ui.store.liveness import heartbeat_path

    then = time.time() - seconds
    os.utime(heartbeat_path(path), (then, then))
