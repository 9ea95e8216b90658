"""`init_loss`: the loss at the checkpoint, per chain, as devinterp 2.x computes it."""

from __future__ import annotations

import numpy as np
import torch

from devinterp_ui.config import SamplerConfig
from devinterp_ui.data import BatchFeed, DataSource
from devinterp_ui.losses import LossFn, as_per_position


def init_losses(
    model: torch.nn.Module,
    source: DataSource,
    loss_fn: LossFn,
    config: SamplerConfig,
    device: torch.device,
    num_positions: int,
    stop_event=None,
) -> np.ndarray:
    """(chain, P) float32: mean loss at the checkpoint over the first
    num_init_loss_batches x gradient_accumulation_steps batches of each chain's sampling feed
    (chains with the same batch order share one computation).

    `stop_event` (anything with `.is_set()`) is checked before every batch: once set, the
    phase ends at once and the rows hold the mean over the batches done so far (NaN when none
    was), so Stop is as prompt here as between SGLD steps; the run then ends "stopped".
    """
    num_batches = config.num_init_loss_batches * config.gradient_accumulation_steps
    cache: dict[int, np.ndarray] = {}
    out = []
    for c in range(config.num_chains):
        seed = (
            config.init_seed
            if config.match_sampling_input_ids_across_chains
            else config.init_seed + c
        )
        if seed not in cache:
            cache[seed] = _mean_loss(
                model, source, loss_fn, config, device, seed, num_batches, stop_event
            )
            if cache[seed] is None:
                cache[seed] = np.full(num_positions, np.nan, dtype=np.float32)
        out.append(cache[seed])
    return np.stack(out)


def _mean_loss(model, source, loss_fn, config, device, seed, num_batches, stop_event):
    feed = BatchFeed(len(source), config.batch_size, seed, config.shuffle)
    total, done = None, 0
    with torch.no_grad():
        for _ in range(num_batches):
            if stop_event is not None and stop_event.is_set():
                break
            idx = feed.next()
            per = as_per_position(loss_fn(model, source.batch(idx, device)), len(idx), "loss_fn")
            batch_sum = per.double().sum(0)
            total = batch_sum if total is None else total + batch_sum
            done += 1
    if total is None:
        return None
    return (total / (done * config.batch_size)).float().cpu().numpy()
