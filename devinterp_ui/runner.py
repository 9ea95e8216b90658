"""Executes a validated run: steps chains on a schedule and streams rows to the store.

The schedule (`devinterp_ui.schedules`) says which `ChainGroup` steps when; each group steps
its chains through the kernel (`devinterp_ui.kernel`); this module reads the steps back one
step late and records their rows (`_record`), progress and faults.

`sample()` prepares a `RunPlan` (inputs checked, store created); `execute()` does the compute.
Faults follow STORE.md: a chain with a non-finite loss stops alone and is marked failed; an
exception or KeyboardInterrupt marks the run failed/stopped after flushing what was written.
"""

from __future__ import annotations

import contextlib
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from tqdm.auto import tqdm

from devinterp_ui.chain import (
    ChainGroup,
    Observable,
    PendingObservation,
    PendingStep,
    SharedSegments,
    StepOutcome,
    plain_group,
)
from devinterp_ui.config import SamplerConfig
from devinterp_ui.data import BatchFeed, DataSource
from devinterp_ui.losses import LossFn
from devinterp_ui.schedules import CHAIN_DONE, CHAIN_SCHEDULES, rounds
from devinterp_ui.sgld import SGLDHyper
from devinterp_ui.store.progress import COMPLETED, FAILED, RUNNING, STOPPED, RunProgress
from devinterp_ui.store.writer import StoreWriter
from devinterp_ui.vectorized import vectorized_group

__all__ = ["CHAIN_SCHEDULES", "RunPlan", "Runner", "StepSummary", "hyper_of"]


@dataclass(frozen=True)
class StepSummary:
    """What `progress_callback` receives after every chain step.

    loss: mean sampling loss of the step's batch (nats per token or per sample).
    draw: the draw index when this step is a draw, else None.
    metrics: the step's SGLD diagnostics (with save_metrics=True), else None.
    status: the chain's status after the step ("running", "completed", "failed").
    """

    chain: int
    step: int
    draw: int | None
    loss: float
    metrics: dict[str, float] | None
    status: str
    elapsed: float


@dataclass
class RunPlan:
    config: SamplerConfig
    # The working copy of the checkpoint on `device`, in model_mode. With `checkpoint` given it
    # serves as one chain's copy (modified); else it is the anchor and never modified.
    model: torch.nn.Module
    source: DataSource
    observables: list[Observable]
    loss_fn: LossFn
    sampled: dict[str, torch.Tensor | None]
    device: torch.device
    writer: StoreWriter
    progress: RunProgress
    chain_schedule: str = "lockstep"
    progress_callback: Callable[[StepSummary], None] | None = None
    stop_event: threading.Event | None = None
    progress_bar: bool = True
    flush_interval: float = 0.5
    final_attrs: dict = field(default_factory=dict)
    # The caller's model (read, never modified): the lockstep/sequential chains' anchors are
    # read from it without a copy, so `model` can be a chain's copy (docs/performance.md §11).
    checkpoint: torch.nn.Module | None = None

    def data_seed(self, chain: int) -> int:
        cfg = self.config
        return (
            cfg.init_seed if cfg.match_sampling_input_ids_across_chains else cfg.init_seed + chain
        )

    def feed(self, chain: int) -> BatchFeed:
        return BatchFeed(
            len(self.source), self.config.batch_size, self.data_seed(chain), self.config.shuffle
        )


def hyper_of(config: SamplerConfig) -> SGLDHyper:
    return SGLDHyper(
        lr=float(config.lr),
        n_beta=float(config.n_beta),
        localization=float(config.localization),
        llc_weight_decay=float(config.llc_weight_decay),
        noise_level=float(config.noise_level),
        bounding_box_size=None
        if config.bounding_box_size is None
        else float(config.bounding_box_size),
        method=config.sampling_method,
        **config.method_kwargs(),
    )


class Runner:
    def __init__(self, plan: RunPlan):
        self.plan = plan
        self.cfg = plan.config
        self.hyper = hyper_of(plan.config)
        self.t0 = time.time()
        self.last_flush = 0.0
        self.active = [True] * self.cfg.num_chains  # False once a chain completed or failed
        # Steps launched but not yet read back: (chain, step, step's numbers, observables, or
        # None). A step is read back only after the next one (the next round, vectorized) has
        # been launched, so the device never waits for the host (see host_copy.py).
        self._pending: deque[tuple[int, int, PendingStep, Callable | None]] = deque()
        self._lag = self.cfg.num_chains if plan.chain_schedule == "vectorized" else 1
        self._shared: SharedSegments | None = None  # what the plain groups share
        self.bar = tqdm(
            total=self.cfg.num_chains * self.cfg.total_steps,
            disable=not plan.progress_bar,
            desc="SGLD",
            unit="step",
            leave=True,
        )

    # --- schedules ---------------------------------------------------------------------------

    def execute(self) -> RunProgress:
        progress = self.plan.progress
        try:
            self._run_schedule()
            self._resolve(keep=0)
        except BaseException as exc:
            with contextlib.suppress(Exception):  # the first error is the one to report
                self._resolve(keep=0)  # the steps that did finish still count
            status = STOPPED if isinstance(exc, KeyboardInterrupt) else FAILED
            progress.status = status
            progress.error = "".join(traceback.format_exception(exc))
            for chain in progress.chains:
                if chain.status == RUNNING:
                    chain.status = status
            try:
                self._flush(wait=True)
            finally:
                self.plan.writer.close()
            raise
        finally:
            self.bar.close()
        try:
            self._finish()
        finally:
            self.plan.writer.close()  # ends the writer thread; everything has landed
        return progress

    def _run_schedule(self) -> None:
        plan, state = self.plan, None
        if plan.chain_schedule != "vectorized" and plan.checkpoint is not None:
            # Anchors read from the caller's model; the working copy becomes a chain's copy,
            # reloaded (sequential) from the caller's parameters and the working copy's buffers
            # as they are now (after the probe and init loss, as the chains' copies see them).
            self._shared = SharedSegments.read_from(plan.checkpoint, plan.sampled, plan.device)
            params = dict(plan.checkpoint.named_parameters(remove_duplicate=False))
            state = {
                k: params[k].detach() if k in params else v.clone()
                for k, v in plan.model.state_dict().items()
            }
        elif plan.chain_schedule != "vectorized":
            # Packed before any copy is made: the copies and the sequential schedule's saved
            # state then share the packed storage instead of holding the unpacked one.
            self._shared = SharedSegments.of(plan.model, plan.sampled)
        items = rounds(
            plan.chain_schedule,
            plan.model,
            self.cfg.num_chains,
            self.cfg.total_steps,
            self._build,
            self.active,
            state,
        )
        for item in items:
            if item is CHAIN_DONE:
                self._resolve(keep=0)
                self._flush()
                continue
            if self._stop_requested():
                return self._stop()
            for group in item.groups:
                # Checked again here: reading back the previous step may have ended a chain.
                if any(self.active[c] for c in group.chains):
                    self._step(group, item.step)
            self._maybe_flush()

    def _build(self, chains: list[int], model: torch.nn.Module) -> ChainGroup:
        """The group of `chains` on `model` (a private copy, or the checkpoint to stack)."""
        cfg, plan = self.cfg, self.plan
        if plan.chain_schedule == "vectorized":
            return vectorized_group(
                chains=chains,
                model=model,
                sampled=plan.sampled,
                feeds=[plan.feed(c) for c in chains],
                source=plan.source,
                loss_fn=plan.loss_fn,
                hyper=self.hyper,
                noise_seeds=[cfg.init_seed + c for c in chains],
                grad_accum=cfg.gradient_accumulation_steps,
                device=plan.device,
                shared_batches=cfg.match_sampling_input_ids_across_chains,
                init_noise=cfg.init_noise,
            )
        (c,) = chains
        return plain_group(
            index=c,
            model=model,
            shared=self._shared,
            feed=plan.feed(c),
            source=plan.source,
            loss_fn=plan.loss_fn,
            hyper=self.hyper,
            noise_seed=cfg.init_seed + c,
            grad_accum=cfg.gradient_accumulation_steps,
            device=plan.device,
            init_noise=cfg.init_noise,
        )

    # --- one step ----------------------------------------------------------------------------

    def _step(self, group: ChainGroup, step: int) -> None:
        pending = group.step(self.cfg.save_metrics, self.active)
        # Every chain's observables in one pass (batched, vectorized), after every update.
        observed: PendingObservation | None = (
            group.observe(self.plan.observables, self.cfg.batch_size)
            if self.cfg.is_draw(step)
            else None
        )
        for i, (c, out) in enumerate(zip(group.chains, pending, strict=True)):
            if self.active[c]:
                self._launched(c, step, out, observed and (lambda i=i, o=observed: o.resolve(i)))

    def _launched(self, c: int, step: int, out: PendingStep, observe: Callable | None) -> None:
        self._pending.append((c, step, out, observe))
        self._resolve(keep=self._lag)

    def _resolve(self, keep: int) -> None:
        """Read back and record launched steps, oldest first, until `keep` are left."""
        while len(self._pending) > keep:
            c, step, out, observe = self._pending.popleft()
            if self.active[c]:  # else launched after its chain failed: discarded
                self._record(c, step, out.resolve(), observe or dict)

    def _record(
        self, c: int, step: int, out: StepOutcome, observe: Callable[[], dict[str, torch.Tensor]]
    ) -> None:
        """Stage chain c's rows of `step`, evaluate observables at a draw, update progress."""
        cfg, writer = self.cfg, self.plan.writer
        state = self.plan.progress.chains[c]
        writer.write_row("sampling_loss_micro", c, step, out.losses)
        if self.plan.source.kind == "token":
            writer.write_row(
                "sampling_input_ids_micro", c, step, self.plan.source.token_ids(out.rows)
            )
        else:
            writer.write_row("sampling_indices_micro", c, step, out.rows)
        if out.metrics is not None and out.finite:  # a failed step's update does not count
            for name, value in out.metrics.items():
                writer.write_row(f"metrics_{name}", c, step, value)
        draw = None
        if not out.finite:
            self._fail(c, f"non-finite sampling loss at step {step}")
        elif cfg.is_draw(step):
            draw = cfg.draw_index(step)
            writer.write_row("sampling_loss", c, draw, out.losses[: cfg.batch_size])
            obs_losses = observe()
            for key, losses in obs_losses.items():
                writer.write_row(f"loss_{key}", c, draw, losses)
            state.draws_written = draw + 1
            bad = [k for k, v in obs_losses.items() if not bool(torch.isfinite(v).all())]
            if bad:
                self._fail(c, f"non-finite loss on observable(s) {bad} at step {step}")
        state.steps_written = step + 1
        if self.active[c] and step + 1 == cfg.total_steps:
            state.status = COMPLETED
            self.active[c] = False
        self.bar.update(1)
        if self.plan.progress_callback is not None:
            self.plan.progress_callback(
                StepSummary(
                    c,
                    step,
                    draw,
                    float(out.losses.mean()),
                    out.metrics if out.finite else None,
                    state.status,
                    time.time() - self.t0,
                )
            )

    def _fail(self, c: int, message: str) -> None:
        self.active[c] = False
        state = self.plan.progress.chains[c]
        state.status, state.error = FAILED, message
        if self.plan.progress_bar:
            self.bar.write(f"chain {c}: {message}; the other chains go on")

    # --- stop, flush, finish -------------------------------------------------------------------

    def _stop_requested(self) -> bool:
        return self.plan.stop_event is not None and self.plan.stop_event.is_set()

    def _stop(self) -> None:
        self._resolve(keep=0)
        progress = self.plan.progress
        progress.status = STOPPED
        for chain in progress.chains:
            if chain.status == RUNNING:
                chain.status = STOPPED

    def _maybe_flush(self) -> None:
        if time.time() - self.last_flush >= self.plan.flush_interval:
            # The writer thread compresses and writes while chains step on; with
            # flush_interval=0 every flush lands before the next step, as documented.
            self._flush(wait=self.plan.flush_interval == 0)

    def _flush(self, attrs: dict | None = None, wait: bool = False) -> None:
        self.plan.writer.flush(self.plan.progress, attrs, wait=wait)
        self.last_flush = time.time()

    def _finish(self) -> None:
        progress = self.plan.progress
        wall = {"wall_time_s": round(time.time() - self.t0, 3)}
        if progress.status == STOPPED:
            self._flush(wall, wait=True)
            summary = self._llc_summary()
            if summary:
                self.plan.writer.set_attrs(summary)
            return
        done = [c.status == COMPLETED for c in progress.chains]
        progress.status = COMPLETED if any(done) else FAILED
        if not any(done):
            progress.error = "every chain failed: " + "; ".join(
                f"chain {i}: {c.error}" for i, c in enumerate(progress.chains)
            )
        self._flush(wall, wait=True)
        if progress.status == COMPLETED:
            # Last of all, so `completed` is never seen before every row has landed.
            self.plan.writer.set_attrs({**self._llc_summary(), "completed": 1})

    def _llc_summary(self) -> dict:
        """{"llc_summary": the final LLC record} of the store, every row landed (see
        analysis/llc_summary.py: run lists read it instead of the arrays); {} when it cannot be
        computed, which a reader then computes itself: the run's own result never depends on it."""
        from devinterp_ui.analysis.llc_summary import LLC_SUMMARY, store_llc_summary

        try:
            return {LLC_SUMMARY: store_llc_summary(self.plan.writer.path)}
        except Exception:  # noqa: BLE001 - an optional record; the rows are the result
            return {}
