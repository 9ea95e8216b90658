"""Train the demo tiny LM and save its trajectory: ``python -m devinterp_ui.demo.train``.

Trains :class:`~devinterp_ui.demo.tiny_lm.TinyLM` on the mixture of the synthetic languages
(:mod:`devinterp_ui.demo.corpus`) with AdamW, and writes log-spaced checkpoints (state_dicts) plus
``manifest.json`` (model config, corpus config, this recipe, the per-step training loss, held-out
losses per language at every checkpoint, sha256 of every file and of the generated data) to
``assets/tiny_lm/``. Takes about two minutes on one CPU thread.

Reproducible: fixed seeds, one CPU thread and ``torch.use_deterministic_algorithms(True)``;
rerunning on the same machine and torch version rewrites byte-identical checkpoints. Another CPU
or torch build may differ in the last bits (different float kernels).
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from devinterp_ui.demo.corpus import LANGUAGES, CorpusConfig, make_corpus
from devinterp_ui.demo.tiny_lm import TinyLM, TinyLMConfig, next_token_loss
from devinterp_ui.demo.trajectory import (
    MANIFEST_FILE,
    checkpoint_file_name,
    file_sha256,
    tensor_sha256,
    trajectory_dir,
)


@dataclass(frozen=True)
class TrainingRecipe:
    """How the trajectory is made. ``lr`` peaks after a linear warm-up, then follows a cosine
    down to ``final_lr_fraction * lr`` at ``total_steps``."""

    init_seed: int = 0
    batch_seed: int = 1
    batch_size: int = 64
    total_steps: int = 3000
    lr: float = 3e-3
    warmup_steps: int = 100
    final_lr_fraction: float = 0.1
    betas: tuple[float, float] = (0.9, 0.99)
    weight_decay: float = 0.0
    grad_clip_norm: float = 1.0
    n_checkpoints: int = 8

    def lr_at(self, step: int) -> float:
        """Learning rate of update ``step`` (0-based)."""
        if step < self.warmup_steps:
            return self.lr * (step + 1) / self.warmup_steps
        progress = (step - self.warmup_steps) / max(1, self.total_steps - self.warmup_steps)
        cosine = 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))
        return self.lr * (self.final_lr_fraction + (1 - self.final_lr_fraction) * cosine)


def checkpoint_steps(total_steps: int, n_checkpoints: int) -> list[int]:
    """Step 0 plus ``n_checkpoints - 1`` log-spaced steps from 10 to ``total_steps``."""
    spaced = np.geomspace(10, total_steps, n_checkpoints - 1)
    return sorted({0, *(int(round(s)) for s in spaced)})


def train_tiny_lm(
    recipe: TrainingRecipe,
    model_config: TinyLMConfig,
    train_data: torch.Tensor,
    on_checkpoint: Callable[[int, TinyLM], None],
    stop_after: int | None = None,
) -> list[float]:
    """Train from scratch; call ``on_checkpoint(step, model)`` at every checkpoint step.

    ``train_data``: (N, seq_len) token ids. ``stop_after``: last update to run (default
    ``recipe.total_steps``), for tests that replay the start of the trajectory.
    Returns the mean training-batch loss (nats/token) of every update.
    Runs single-threaded and deterministic; the caller's thread count is restored.
    """
    threads, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    try:
        return _train(recipe, model_config, train_data, on_checkpoint, stop_after)
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(deterministic)


def _train(recipe, model_config, train_data, on_checkpoint, stop_after) -> list[float]:
    torch.manual_seed(recipe.init_seed)
    model = TinyLM(model_config)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=recipe.lr, betas=recipe.betas, weight_decay=recipe.weight_decay
    )
    batches = torch.Generator().manual_seed(recipe.batch_seed)
    saves = set(checkpoint_steps(recipe.total_steps, recipe.n_checkpoints))
    last = recipe.total_steps if stop_after is None else stop_after
    order, cursor, losses = torch.randperm(len(train_data), generator=batches), 0, []
    if 0 in saves:
        on_checkpoint(0, model)
    for step in range(last):
        if cursor + recipe.batch_size > len(order):  # new epoch, drop the ragged tail
            order, cursor = torch.randperm(len(train_data), generator=batches), 0
        batch = train_data[order[cursor : cursor + recipe.batch_size]]
        cursor += recipe.batch_size
        for group in optimizer.param_groups:
            group["lr"] = recipe.lr_at(step)
        loss = next_token_loss(model, batch).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), recipe.grad_clip_norm)
        optimizer.step()
        losses.append(loss.item())
        if step + 1 in saves:
            on_checkpoint(step + 1, model)
    return losses


@torch.no_grad()
def heldout_losses(model: TinyLM, heldout: dict[str, torch.Tensor]) -> dict[str, float]:
    """Mean next-token loss (nats/token) per held-out language, plus their mean under "mean"."""
    model.eval()
    losses = {name: next_token_loss(model, data).mean().item() for name, data in heldout.items()}
    model.train()
    return {**losses, "mean": float(np.mean(list(losses.values())))}


def make_trajectory(
    out_root: Path | None = None,
    recipe: TrainingRecipe | None = None,
    model_config: TinyLMConfig | None = None,
    corpus_config: CorpusConfig | None = None,
) -> dict:
    """Train and write checkpoints + manifest under ``<out_root>/tiny_lm``; return the manifest."""
    recipe, model_config = recipe or TrainingRecipe(), model_config or TinyLMConfig()
    corpus_config = corpus_config or CorpusConfig(
        vocab_size=model_config.vocab_size, seq_len=model_config.seq_len
    )
    corpus = make_corpus(corpus_config)
    out = trajectory_dir(out_root)
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.glob("step_*.pt"):
        stale.unlink()
    records = []

    def save(step: int, model: TinyLM) -> None:
        path = out / checkpoint_file_name(step)
        torch.save(model.state_dict(), path)
        heldout = heldout_losses(model, corpus.heldout)
        records.append(
            {
                "step": step,
                "file": path.name,
                "sha256": file_sha256(path),
                "heldout_loss": {k: round(v, 6) for k, v in heldout.items()},
            }
        )
        print(f"step {step:6d}  held-out loss {heldout['mean']:.4f}  " + _per_language(heldout))

    started = time.perf_counter()
    losses = train_tiny_lm(recipe, model_config, corpus.train, save)
    manifest = {
        "name": "tiny_lm",
        "format_version": 1,
        "made_by": "python -m devinterp_ui.demo.train",
        "reproducibility": (
            "fixed seeds (recipe.init_seed, recipe.batch_seed, corpus.seed), 1 CPU thread, "
            "torch.use_deterministic_algorithms(True); the data are regenerated from corpus.seed "
            "and checked against data_sha256 on load"
        ),
        "model": {
            "class": "devinterp_ui.demo.tiny_lm.TinyLM",
            "config": model_config.to_dict(),
            "n_params": sum(p.numel() for p in TinyLM(model_config).parameters()),
        },
        "corpus": {**corpus_config.to_dict(), "languages": list(LANGUAGES)},
        "data_sha256": {
            "train": tensor_sha256(corpus.train),
            **{name: tensor_sha256(data) for name, data in corpus.heldout.items()},
        },
        "training": {
            **asdict(recipe),
            "optimizer": "AdamW",
            "loss": "next-token cross-entropy (nats/token), mean over batch and positions",
            "lr_schedule": "linear warm-up, then cosine to final_lr_fraction * lr",
            "wall_time_s": round(time.perf_counter() - started, 1),
            "torch_version": torch.__version__,
            "numpy_version": np.__version__,
            "python_version": platform.python_version(),
            "machine": platform.machine(),
        },
        "loss_curve": {
            "description": "training-batch loss of each update; step s is the loss before update s",
            "train_loss": [round(v, 5) for v in losses],
        },
        "checkpoints": records,
    }
    (out / MANIFEST_FILE).write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest


def _per_language(losses: dict[str, float]) -> str:
    return "  ".join(f"{k} {v:.3f}" for k, v in losses.items() if k != "mean")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out", type=Path, default=None, help="assets root (default: the repository's assets/)"
    )
    parser.add_argument("--steps", type=int, default=TrainingRecipe.total_steps)
    args = parser.parse_args(argv)
    manifest = make_trajectory(args.out, TrainingRecipe(total_steps=args.steps))
    print(
        f"wrote {len(manifest['checkpoints'])} checkpoints to {trajectory_dir(args.out)} "
        f"in {manifest['training']['wall_time_s']} s"
    )


if __name__ == "__main__":
    main()
