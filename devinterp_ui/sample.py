"""`sample()`: SGLD chains around a checkpoint, streamed into a Zarr v3 store."""

from __future__ import annotations

import copy
import numbers
import shutil
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
import xarray as xr

from devinterp_ui.chain import Observable, evaluate_rows
from devinterp_ui.config import SamplerConfig
from devinterp_ui.data import BatchFeed, DataSource, as_source, fixed_rows, model_fingerprint
from devinterp_ui.losses import LossFn, as_per_position, next_token_loss
from devinterp_ui.params import resolve_param_masks
from devinterp_ui.runner import CHAIN_SCHEDULES, Runner, RunPlan, StepSummary
from devinterp_ui.store.cache import check_existing
from devinterp_ui.store.progress import RunProgress
from devinterp_ui.store.schema import Layout, build_schema, safe_name
from devinterp_ui.store.writer import StoreWriter
from devinterp_ui.vectorized import check_vectorizable


def sample(
    model: torch.nn.Module,
    dataset: Any,
    observables: Mapping[str, Any] | None = None,
    *,
    lr: float,
    n_beta: float,
    param_masks: Mapping[str, torch.Tensor | None] | None = None,
    num_chains: int = 4,
    num_draws: int = 200,
    batch_size: int = 32,
    num_burnin_steps: int = 0,
    num_steps_bw_draws: int = 1,
    num_init_loss_batches: int = 32,
    init_seed: int = 100,
    batches_per_draw: int = 3,
    obs_seed: int = 1337,
    gradient_accumulation_steps: int = 1,
    localization: float = 0.0,
    noise_level: float = 1.0,
    llc_weight_decay: float = 0.0,
    bounding_box_size: float | None = None,
    sampling_method: str = "sgmcmc_sgld",
    sampling_method_kwargs: dict | None = None,
    rmsprop_eps: float | None = None,
    rmsprop_alpha: float | None = None,
    shuffle: bool = True,
    match_sampling_input_ids_across_chains: bool = True,
    init_noise: float | None = None,
    device: str | torch.device | None = None,
    save_metrics: bool = False,
    output_path: str | Path | None = None,
    loss_fn: LossFn | None = None,
    chain_schedule: str = "lockstep",
    progress_callback: Callable[[StepSummary], None] | None = None,
    stop_event: threading.Event | None = None,
    progress_bar: bool = True,
    flush_interval: float = 0.5,
) -> xr.DataTree:
    """Run `num_chains` SGLD chains from the checkpoint `model` and return the sample tree.

    Keyword-compatible with devinterp 2.x `sample`; see docs/sampling.md for every setting.

    Args:
        model: the checkpoint; never modified (chains work on copies).
        dataset: the sampling data: (N, T) token ids, rows with "input_ids", or a tuple
            (X, Y) of tensors / TensorDataset (then `loss_fn` is required).
        observables: {name: dataset} or {name: (dataset, batches_per_draw)}, evaluated after the
            update at every draw on `batch_size * batches_per_draw` fixed rows (seed `obs_seed`).
        lr, n_beta, ...: the sampler settings (`SamplerConfig`), devinterp names and defaults.
        device: where chains run; default: the model's device.
        output_path: the Zarr store directory. A completed store of the same run is returned as
            is; anything else there raises `StoreConflictError`. None: a temporary store,
            loaded into memory and deleted before returning.
        loss_fn: `loss_fn(model, batch)` -> (B,), (B, P) or (B, T-1) losses; default next-token
            cross-entropy on `model(input_ids)` logits.
        chain_schedule: "lockstep" (default: every chain advances one step in turn, so all
            chains' newest rows appear together), "sequential" (one chain after another, one
            model copy: for models too large to hold several; same arrays bit for bit), or
            "vectorized" (all chains in one torch.func.vmap call over stacked parameters: faster
            for small models on a GPU; same samples up to float rounding).
        progress_callback: called after every chain step with a `StepSummary`. A step is read
            back from the device once the next chain step has been launched (so the device
            never waits for the host), and reported then.
        stop_event: a `threading.Event`; once set, every chain ends at the next step boundary
            (the steps already launched finish first: up to one more round when set from
            `progress_callback`), written rows stay intact, status becomes "stopped" and
            `completed` stays unset.
        progress_bar: a tqdm bar over all chain steps.
        flush_interval: seconds between writes to the store (rows and progress marker). Each
            flush rewrites every chunk touched since the last one, so a smaller interval buys
            reader latency with write cost (0 writes after every step: slow, for tests).

    Returns:
        `xarray.DataTree` of the store (arrays and attrs of STORE.md), lazily backed by
        `output_path`, or in memory when output_path is None.

    Raises:
        ValueError/TypeError before any compute for bad settings, data, masks or loss shapes;
        StoreConflictError (a ValueError) when `output_path` holds a different or incomplete run.
        Exceptions from `loss_fn`/the model propagate after the store is marked failed.
    """
    config = SamplerConfig(
        lr=lr,
        n_beta=n_beta,
        num_chains=num_chains,
        num_draws=num_draws,
        batch_size=batch_size,
        num_burnin_steps=num_burnin_steps,
        num_steps_bw_draws=num_steps_bw_draws,
        num_init_loss_batches=num_init_loss_batches,
        init_seed=init_seed,
        batches_per_draw=batches_per_draw,
        obs_seed=obs_seed,
        gradient_accumulation_steps=gradient_accumulation_steps,
        localization=localization,
        noise_level=noise_level,
        llc_weight_decay=llc_weight_decay,
        bounding_box_size=bounding_box_size,
        sampling_method=sampling_method,
        sampling_method_kwargs=sampling_method_kwargs,
        rmsprop_eps=rmsprop_eps,
        rmsprop_alpha=rmsprop_alpha,
        shuffle=shuffle,
        match_sampling_input_ids_across_chains=match_sampling_input_ids_across_chains,
        init_noise=init_noise,
        save_metrics=save_metrics,
    )
    config.validate()
    check_run_options(
        model,
        loss_fn=loss_fn,
        chain_schedule=chain_schedule,
        progress_callback=progress_callback,
        stop_event=stop_event,
        flush_interval=flush_interval,
    )
    config.warn_unusual()

    source = as_source(dataset, "dataset")
    if loss_fn is None and source.kind != "token":
        raise TypeError(
            "dataset is not token data, so the default next-token loss does not apply; pass "
            "loss_fn(model, batch) returning per-sample (B,) or per-position (B, P) losses."
        )
    message = batch_size_error(config.batch_size, len(source))
    if message:
        raise ValueError(message)
    obs = _observables(observables, config, source)
    sampled = resolve_param_masks(model, param_masks)
    device = _device(model, device)
    loss_fn = loss_fn or next_token_loss

    base = copy.deepcopy(model).to(device)
    num_positions = _probe_loss_shape(base, source, obs, loss_fn, config, device)
    if chain_schedule == "vectorized":
        check_vectorizable(base, sampled, source, loss_fn, device)

    layout = Layout(
        num_chains=config.num_chains,
        total_steps=config.total_steps,
        num_draws=config.num_draws,
        batch_size=config.batch_size,
        batch_sampling=config.batch_size * config.gradient_accumulation_steps,
        num_positions=num_positions,
        seq_len=source.seq_len if source.kind == "token" else None,
        observable_rows={o.key: len(o.rows) for o in obs},
        save_metrics=config.save_metrics,
    )
    schema = build_schema(layout)
    identity = {
        "metadata": _metadata(config, obs, layout, schema, sampled, loss_fn),
        "fingerprints": {
            "model": model_fingerprint(model),
            "dataset": source.fingerprint(),
            "observables": {o.key: o.source.fingerprint() for o in obs},
        },
    }

    temporary = output_path is None
    path = (
        Path(tempfile.mkdtemp(prefix="devinterp_ui_")) / "run.zarr"
        if temporary
        else Path(output_path)
    )
    if check_existing(path, identity):
        return xr.open_datatree(str(path), engine="zarr")

    progress = RunProgress.fresh(config.num_chains, config.total_steps, config.num_draws)
    attrs = {
        **identity,
        **_provenance(model, source, obs, sampled, device, chain_schedule, layout),
        "progress": progress.to_json(),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = StoreWriter(path, schema, attrs)
    writer.write_whole("n_beta", config.n_beta)
    for o in obs:
        if source.kind == "token":
            writer.write_whole(f"input_ids_{o.key}", o.source.token_ids(o.rows))
        else:
            writer.write_whole(f"indices_{o.key}", o.rows)
    writer.write_whole("init_loss", _init_losses(base, source, loss_fn, config, device))
    writer.flush(progress)

    plan = RunPlan(
        config=config,
        model=base,
        source=source,
        observables=obs,
        loss_fn=loss_fn,
        sampled=sampled,
        device=device,
        writer=writer,
        progress=progress,
        chain_schedule=chain_schedule,
        progress_callback=progress_callback,
        stop_event=stop_event,
        progress_bar=progress_bar,
        flush_interval=flush_interval,
    )
    Runner(plan).execute()
    _report(progress)

    tree = xr.open_datatree(str(path), engine="zarr")
    if temporary:
        tree = tree.load()
        tree.close()
        shutil.rmtree(path.parent, ignore_errors=True)
    return tree


# --- inputs --------------------------------------------------------------------------------


def check_run_options(
    model,
    *,
    loss_fn=None,
    chain_schedule="lockstep",
    progress_callback=None,
    stop_event=None,
    flush_interval=0.5,
) -> None:
    """The arguments of `sample()` that are neither settings nor data, checked without compute.

    Raises TypeError/ValueError naming the argument; shared with `SamplingJob`.
    """
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"model must be a torch.nn.Module (got {type(model).__name__}).")
    if loss_fn is not None and not callable(loss_fn):
        raise TypeError("loss_fn must be callable as loss_fn(model, batch) -> losses.")
    if chain_schedule not in CHAIN_SCHEDULES:
        raise ValueError(
            f"chain_schedule must be one of {list(CHAIN_SCHEDULES)} (got {chain_schedule!r})."
        )
    if progress_callback is not None and not callable(progress_callback):
        raise TypeError("progress_callback must be callable with one StepSummary argument.")
    if stop_event is not None and not callable(getattr(stop_event, "is_set", None)):
        raise TypeError("stop_event must be a threading.Event (anything with .is_set()).")
    if (
        isinstance(flush_interval, bool)
        or not isinstance(flush_interval, (int, float))
        or not flush_interval >= 0
    ):
        raise ValueError(
            f"flush_interval must be a number of seconds >= 0 (got {flush_interval!r})."
        )


def batch_size_error(batch_size: int, rows: int) -> str | None:
    """The message for a batch larger than the dataset (shared with the dashboard's form)."""
    if batch_size <= rows:
        return None
    return f"batch_size={batch_size} is larger than the dataset ({rows} rows); pass batch_size <= {rows}."


def _observables(observables, config: SamplerConfig, source: DataSource) -> list[Observable]:
    if observables is None:
        return []
    if not isinstance(observables, Mapping):
        raise TypeError(
            "observables must be a dict {name: dataset} or {name: (dataset, batches_per_draw)} "
            f"(got {type(observables).__name__}); pass {{}} for none."
        )
    out: list[Observable] = []
    keys: dict[str, str] = {}
    for name, value in observables.items():
        if not isinstance(name, str):
            raise TypeError(f"observable names must be strings (got {name!r}).")
        data, per_draw = _observable_entry(name, value, config)
        key = safe_name(name)
        if key in keys:
            raise ValueError(
                f"observables {keys[key]!r} and {name!r} both become array name 'loss_{key}'; "
                "rename one of them."
            )
        keys[key] = name
        obs_source = as_source(data, f"observables[{name!r}]")
        if obs_source.kind != source.kind or obs_source.seq_len != source.seq_len:
            raise ValueError(
                f"observables[{name!r}] must be data of the same form as the sampling dataset "
                f"({_describe(source)}; got {_describe(obs_source)}): the stores share the "
                "'token' and 'token_pos' dims."
            )
        rows = config.batch_size * per_draw
        if rows > len(obs_source):
            raise ValueError(
                f"observables[{name!r}] has {len(obs_source)} rows but each draw evaluates "
                f"batch_size x batches_per_draw = {config.batch_size} x {per_draw} = {rows}; "
                "give it more rows or lower batches_per_draw."
            )
        out.append(
            Observable(
                name, key, obs_source, per_draw, fixed_rows(len(obs_source), rows, config.obs_seed)
            )
        )
    return out


def _observable_entry(name: str, value: Any, config: SamplerConfig) -> tuple[Any, int]:
    """(dataset, batches_per_draw) from `dataset` or `(dataset, batches_per_draw)`."""
    if (
        isinstance(value, tuple)
        and len(value) == 2
        and isinstance(value[1], numbers.Integral)
        and not isinstance(value[1], bool)
    ):
        data, per_draw = value
        if per_draw < 1:
            raise ValueError(
                f"observables[{name!r}] batches_per_draw must be >= 1 (got {per_draw})."
            )
        return data, int(per_draw)
    return value, config.batches_per_draw


def _describe(source: DataSource) -> str:
    if source.kind == "token":
        return f"token ids of length {source.seq_len}"
    return "supervised rows"


def _device(model: torch.nn.Module, device) -> torch.device:
    if device is None:
        first = next(model.parameters(), None)
        return first.device if first is not None else torch.device("cpu")
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(
            f"device {device!r} is not a torch device; pass e.g. 'cpu' or 'cuda:0'."
        ) from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device='cuda' but torch sees no CUDA device; pass device='cpu'.")
    return device


def _probe_loss_shape(model, source, obs, loss_fn, config, device) -> int:
    """P (positions per row) from `loss_fn` on the first rows; every observable must agree."""
    rows = np.arange(min(config.batch_size, 2))
    positions = evaluate_rows(
        model, source, rows, loss_fn, config.batch_size, device, "loss_fn"
    ).shape[1]
    for o in obs:
        p = evaluate_rows(
            model,
            o.source,
            o.rows[:2],
            loss_fn,
            config.batch_size,
            device,
            f"loss_fn on observable {o.name!r}",
        ).shape[1]
        if p != positions:
            raise ValueError(
                f"loss_fn returns {p} positions per row on observable {o.name!r} but {positions} "
                "on the sampling dataset; the store shares one 'token_pos' dim."
            )
    return int(positions)


def _init_losses(model, source, loss_fn, config: SamplerConfig, device) -> np.ndarray:
    """(chain, P): mean loss at the checkpoint over the first num_init_loss_batches x
    gradient_accumulation_steps batches of each chain's sampling feed."""
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
            feed = BatchFeed(len(source), config.batch_size, seed, config.shuffle)
            total = None
            with torch.no_grad():
                for _ in range(num_batches):
                    idx = feed.next()
                    per = as_per_position(
                        loss_fn(model, source.batch(idx, device)), len(idx), "loss_fn"
                    )
                    batch_sum = per.double().sum(0)
                    total = batch_sum if total is None else total + batch_sum
            cache[seed] = (total / (num_batches * config.batch_size)).float().cpu().numpy()
        out.append(cache[seed])
    return np.stack(out)


# --- store attributes ------------------------------------------------------------------------


def _metadata(config, obs, layout, schema, sampled, loss_fn) -> dict:
    sampler = config.to_json()
    sampler["param_masks"] = (
        None
        if all(m is None for m in sampled.values()) and len(sampled)
        else {name: None if m is None else int(m.sum()) for name, m in sampled.items()}
    )
    sampler["loss_fn"] = getattr(loss_fn, "__qualname__", type(loss_fn).__name__)
    return {
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


def _provenance(model, source, obs, sampled, device, chain_schedule, layout) -> dict:
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


def _report(progress: RunProgress) -> None:
    failed = [(i, c.error) for i, c in enumerate(progress.chains) if c.status == "failed"]
    if failed:
        detail = "; ".join(f"chain {i}: {err}" for i, err in failed)
        warnings.warn(
            f"{len(failed)} of {len(progress.chains)} chains failed ({detail}); their rows stop "
            "there. Lower lr, raise localization or set bounding_box_size.",
            RuntimeWarning,
            stacklevel=3,
        )
