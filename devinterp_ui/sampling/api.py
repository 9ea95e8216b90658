"""`sample()`: SGLD chains around a checkpoint, streamed into a Zarr v3 store.

The API in one place; each step it takes lives in its own module of this package:
settings (`devinterp_ui.config`), input checks (`inputs`, `observables`), the checkpoint copy
(`checkpoint`), the one forward-pass probe (`probe`), the init loss (`init_loss`), the store's
identity and provenance (`identity`); the chains themselves run in `devinterp_ui.runner`.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
import xarray as xr

from devinterp_ui.config import SamplerConfig, validate_settings
from devinterp_ui.data import DataSource
from devinterp_ui.losses import LossFn, next_token_loss
from devinterp_ui.params import resolve_param_masks
from devinterp_ui.runner import Runner, RunPlan, StepSummary
from devinterp_ui.sampling.checkpoint import resolve_device, working_copy
from devinterp_ui.sampling.identity import provenance, store_identity
from devinterp_ui.sampling.init_loss import init_losses
from devinterp_ui.sampling.inputs import (
    as_dataset,
    batch_size_error,
    check_all_token_ids,
    check_chains_fit,
    check_output_path,
    check_run_options,
    check_store_fits,
    vocab_size,
)
from devinterp_ui.sampling.observables import build_observables
from devinterp_ui.sampling.probe import probe_loss
from devinterp_ui.store.cache import check_existing
from devinterp_ui.store.progress import RunProgress
from devinterp_ui.store.schema import Layout, build_schema
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
    model_mode: str = "train",
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
        model: the checkpoint; never modified (chains work on copies). Its parameters are
            read as the chains' anchors without a copy, so leave it unchanged until sample()
            returns.
        dataset: the sampling data: (N, T) token ids, rows with "input_ids", or a tuple
            (X, Y) of tensors / TensorDataset (then `loss_fn` is required).
        observables: {name: dataset} or {name: (dataset, batches_per_draw)}, evaluated after the
            update at every draw on `batch_size * batches_per_draw` fixed rows (seed `obs_seed`).
        lr, n_beta, ...: the sampler settings (`SamplerConfig`), devinterp names and defaults.
        param_masks: {parameter name: bool mask or None (whole tensor)}; None samples the
            full model, every parameter (frozen ones too, with a warning), as
            `create_param_masks(model, "full")` and devinterp 2.0.1 do.
        model_mode: "train" (default, as devinterp 2.x: `model.train()` before the init loss
            and sampling) or "eval"; applied to the chains' copies, never to `model`. Warns
            when the model has dropout or batch-norm layers, whose output the mode changes.
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
        ValueError/TypeError before any compute and before any store exists, naming the
        argument and the fix: bad settings or run options, data forms, token ids outside the
        model's vocabulary, masks, output paths that cannot be created, a store larger than
        the free disk space, chains that cannot fit in memory; then, from a forward pass on a
        2-row probe, losses of the wrong shape, NaN/Inf at the checkpoint, or without a
        gradient path to the sampled parameters. StoreConflictError (a ValueError) when
        `output_path` holds a different or incomplete run. Exceptions from `loss_fn`/the
        model propagate after the store is marked failed. The temporary store of
        `output_path=None` is removed on every exception.
    """
    config = validate_settings(
        dict(
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
            model_mode=model_mode,
        )
    )
    check_run_options(
        model,
        loss_fn=loss_fn,
        chain_schedule=chain_schedule,
        progress_callback=progress_callback,
        stop_event=stop_event,
        flush_interval=flush_interval,
    )
    config.warn_unusual()
    path = check_output_path(output_path)

    source = as_dataset(dataset, "dataset", loss_fn)
    if loss_fn is None and source.kind != "token":
        raise TypeError(
            "dataset is not token data, so the default next-token loss does not apply; pass "
            "loss_fn(model, batch) returning per-sample (B,) or per-position (B, P) losses."
        )
    message = batch_size_error(config.batch_size, len(source))
    if message:
        raise ValueError(message)
    obs = build_observables(observables, config, source, loss_fn)
    sampled = resolve_param_masks(model, param_masks)
    device = resolve_device(model, device)
    largest = check_all_token_ids(source, obs, vocab_size(model))
    check_chains_fit(model, config.num_chains, chain_schedule, device)
    # A store already at output_path is reused or refused below, never rewritten: only a new
    # one needs the space. A lower bound of its size (one loss per row) refuses hopeless sizes
    # before any forward pass; the exact size is checked once the probe has fixed the
    # positions per row.
    new_store = path is None or not path.exists()
    if new_store:
        check_store_fits(path, build_schema(_layout(config, source, obs, 1)), largest)
    loss_fn = loss_fn or next_token_loss

    base = working_copy(model, device, config.model_mode)
    num_positions = probe_loss(base, source, obs, loss_fn, sampled, config.batch_size, device)
    if chain_schedule == "vectorized":
        check_vectorizable(base, sampled, source, loss_fn, device)
    layout = _layout(config, source, obs, num_positions)
    schema = build_schema(layout)
    if new_store:
        check_store_fits(path, schema, largest)
    identity = store_identity(model, source, config, obs, layout, schema, sampled, loss_fn)

    temporary = path is None
    if temporary:
        path = Path(tempfile.mkdtemp(prefix="devinterp_ui_")) / "run.zarr"
    try:
        if check_existing(path, identity):
            return xr.open_datatree(str(path), engine="zarr")
        progress = RunProgress.fresh(config.num_chains, config.total_steps, config.num_draws)
        attrs = {
            **identity,
            **provenance(model, source, obs, sampled, device, chain_schedule, layout),
            "progress": progress.to_json(),
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        writer = StoreWriter(path, schema, attrs)
        try:
            _write_inputs(
                writer, config, source, obs, base, loss_fn, device, num_positions, stop_event
            )
            writer.flush(progress)
        except BaseException as exc:
            # Before the runner owns the store (an init loss that raises, Ctrl-C): mark it
            # failed, so no reader takes it for a run that is still going.
            writer.fail(exc)
            raise

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
            checkpoint=model,
        )
        del base  # the plan's reference is the only one: a chain's copy, freed with it
        Runner(plan).execute()
        _report(progress)

        tree = xr.open_datatree(str(path), engine="zarr")
        if temporary:
            tree = tree.load()
            tree.close()
        return tree
    finally:
        if temporary:
            shutil.rmtree(path.parent, ignore_errors=True)


def _write_inputs(writer, config, source, obs, base, loss_fn, device, num_positions, stop_event):
    """The arrays written once before the chains run: n_beta, observable rows, init_loss."""
    writer.write_whole("n_beta", config.n_beta)
    for o in obs:
        if source.kind == "token":
            writer.write_whole(f"input_ids_{o.key}", o.source.token_ids(o.rows))
        else:
            writer.write_whole(f"indices_{o.key}", o.rows)
    writer.write_whole(
        "init_loss", init_losses(base, source, loss_fn, config, device, num_positions, stop_event)
    )


def _layout(config: SamplerConfig, source: DataSource, obs, num_positions: int) -> Layout:
    return Layout(
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
