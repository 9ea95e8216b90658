"""What a store says about its run: the identity (`metadata`, `fingerprints`: two runs reuse
one store only when these agree) and the provenance (recorded, never compared)."""

from __future__ import annotations

import time

import torch

from devinterp_ui.chain import Observable
from devinterp_ui.config import SamplerConfig
from devinterp_ui.data import DataSource, model_fingerprint
from devinterp_ui.params import sampled_set_record
from devinterp_ui.store.schema import Layout


def store_identity(
    model: torch.nn.Module,
    source: DataSource,
    config: SamplerConfig,
    obs: list[Observable],
    layout: Layout,
    schema: dict,
    sampled: dict[str, torch.Tensor | None],
    loss_fn,
) -> dict:
    """Root attrs `metadata` and `fingerprints` of the run.

    `metadata.config.sampler` holds every setting (`model_mode` included), `param_masks`: the
    sampled set as {name: {"numel", "sampled", "mask"}} (see `sampled_set_record`: the same
    for None, "full" and an explicit full dict, different for any two sets of entries), and
    `loss_fn` (its qualified name).
    """
    sampler = config.to_json()
    sampler["param_masks"] = sampled_set_record(model, sampled)
    sampler["loss_fn"] = getattr(loss_fn, "__qualname__", type(loss_fn).__name__)
    metadata = {
        "config": {
            "sampler": sampler,
            "observables": [
                {
                    "type": "ObserveDifferentDataset",
                    "obs_id": o.key,
                    "name": o.name,
                    "batches_per_draw": o.batches_per_draw,
                }
                for o in obs
            ],
            "chain_buffer_size": schema["sampling_loss_micro"].rows_per_chunk,
            "shared_observable_dims": ["token", "token_pos"],
            "tokenizer_context_length": layout.seq_len or 1,
        }
    }
    fingerprints = {
        "model": model_fingerprint(model),
        "dataset": source.fingerprint(),
        "observables": {o.key: o.source.fingerprint() for o in obs},
    }
    return {"metadata": metadata, "fingerprints": fingerprints}


def provenance(model, source, obs, sampled, device, chain_schedule, layout) -> dict:
    """Root attrs `metrics_numel` and `provenance`: versions, sizes, device, schedule, time."""
    from devinterp_ui import __version__

    params = dict(model.named_parameters())
    numel = sum(params[n].numel() if m is None else int(m.sum()) for n, m in sampled.items())
    return {
        "metrics_numel": int(numel),
        "provenance": {
            "devinterp_ui_version": __version__,
            "torch_version": torch.__version__,
            "model_class": f"{type(model).__module__}.{type(model).__qualname__}",
            "model_num_params": int(sum(p.numel() for p in params.values())),
            "num_sampled_params": int(numel),
            "data_kind": source.kind,
            "dataset_size": len(source),
            "observable_sizes": {o.key: len(o.source) for o in obs},
            "num_positions": layout.num_positions,
            "device": str(device),
            "chain_schedule": chain_schedule,
            "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        },
    }
