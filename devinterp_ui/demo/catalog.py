"""The demo catalogue: ``list_demos()`` for pickers, ``load_demo(name, step)`` for everything else.

Demos:

- ``tiny_lm``: a 106k-parameter causal transformer trained on four synthetic languages, with a
  log-spaced checkpoint trajectory in ``assets/tiny_lm`` (made by ``python -m
  devinterp_ui.demo.train``). Data are regenerated from the manifest's seed and checked against
  its hashes.
- ``dln``: a deep linear network at a noiseless teacher whose learning coefficient is known in
  closed form; everything is generated from a seed, no assets.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from devinterp_ui.demo.corpus import LANGUAGE_DESCRIPTIONS, CorpusConfig, make_corpus
from devinterp_ui.demo.dln import dln_loss, make_dln_problem
from devinterp_ui.demo.sampler_settings import dln_sampler_settings, tiny_lm_sampler_settings
from devinterp_ui.demo.trajectory import (
    available_steps,
    load_checkpoint,
    read_manifest,
    tensor_sha256,
)

Dataset = torch.Tensor | tuple[torch.Tensor, ...]


@dataclass(frozen=True)
class DemoInfo:
    """What a picker shows before anything is loaded."""

    name: str
    description: str
    data_kind: str  # "tokens": (N, T) LongTensors; "supervised": (X, Y) tuples
    has_true_lambda: bool


@dataclass
class Demo:
    """A loaded demo, ready for ``sample(demo.model, demo.datasets["train"], ...)``.

    - ``model``: the network at ``step``, in eval mode.
    - ``datasets``: name -> dataset. Always ``"train"`` (what the model was trained on). The LM adds
      one held-out (n, T) LongTensor per language; the DLN's ``"train"`` is an ``(X, Y)`` tuple.
    - ``sampler_settings``: suggested ``sample()`` keyword arguments (lr, n_beta, localization,
      num_chains, num_draws, num_burnin_steps, num_steps_bw_draws, batch_size; the LM adds
      num_init_loss_batches, the DLN its loss_fn), so ``sample(model, data, obs, **settings)``
      works as is. :mod:`devinterp_ui.demo.sampler_settings` says why each value.
    - ``loss_fn``: ``None`` for the LM (the sampler's default next-token cross-entropy applies);
      ``loss_fn(model, (X, Y)) -> (B,)`` for the DLN.
    - ``steps``: the checkpoints that exist (the DLN has one state, listed as step 0).
    - ``manifest``: how the demo was made (JSON-safe dict).
    - ``true_lambda``: the known learning coefficient, or ``None``.
    """

    name: str
    step: int
    model: nn.Module
    datasets: dict[str, Dataset] = field(repr=False)
    sampler_settings: dict[str, Any]
    loss_fn: Callable[[nn.Module, Any], torch.Tensor] | None
    steps: list[int]
    manifest: dict = field(repr=False)  # the LM's holds a 3000-point loss curve
    true_lambda: float | None = None
    description: str = ""
    _load_model: Callable[[int], nn.Module] | None = field(default=None, repr=False)

    def model_at(self, step: int) -> nn.Module:
        """A fresh copy of the model at another checkpoint (same data and settings apply)."""
        _check_step(self.name, step, self.steps)
        return self._load_model(step)


_DEMOS: dict[str, DemoInfo] = {
    "tiny_lm": DemoInfo(
        name="tiny_lm",
        description=(
            "2-layer, 4-head causal transformer (106k params) trained on a mixture of four "
            "synthetic languages; 8 log-spaced checkpoints"
        ),
        data_kind="tokens",
        has_true_lambda=False,
    ),
    "dln": DemoInfo(
        name="dln",
        description=(
            "deep linear network [4, 3, 8] at a rank-0 noiseless teacher; true lambda = 6 "
            "(Aoyagi 2024)"
        ),
        data_kind="supervised",
        has_true_lambda=True,
    ),
}


def list_demos() -> dict[str, DemoInfo]:
    """Name -> :class:`DemoInfo` of every demo, in display order. Loads nothing."""
    return dict(_DEMOS)


def load_demo(name: str, step: int | None = None) -> Demo:
    """Load demo ``name`` at checkpoint ``step`` (default: the last one).

    ``name`` may be spelt with hyphens or underscores (``"tiny-lm"`` or ``"tiny_lm"``).
    Raises ``ValueError`` for an unknown name or step (the message lists what exists) and
    ``FileNotFoundError`` when the LM's assets are missing (the message says how to make them).
    """
    key = demo_key(name)
    if key == "tiny_lm":
        return _load_tiny_lm(step)
    if key == "dln":
        return _load_dln(step)
    raise ValueError(
        f"unknown demo {name!r}; available demos: {', '.join(_DEMOS)} "
        "(hyphens work too, e.g. 'tiny-lm')"
    )


def demo_key(name: str) -> str:
    """The catalogue's name for `name`: case and hyphen/underscore spelling do not matter."""
    if not isinstance(name, str):
        raise TypeError(f"demo name must be a string (got {type(name).__name__}).")
    return name.strip().lower().replace("-", "_")


def _check_step(name: str, step: int, steps: list[int]) -> None:
    if step not in steps:
        raise ValueError(
            f"no checkpoint at step {step!r} of demo {name!r}; "
            f"available steps: {', '.join(map(str, steps))}"
        )


def _load_tiny_lm(step: int | None) -> Demo:
    manifest = read_manifest()
    steps = available_steps(manifest)
    step = steps[-1] if step is None else step
    _check_step("tiny_lm", step, steps)
    corpus_config = CorpusConfig(
        **{k: v for k, v in manifest["corpus"].items() if k in CorpusConfig.__dataclass_fields__}
    )
    corpus = make_corpus(corpus_config)
    datasets = {"train": corpus.train, **corpus.heldout}
    _check_data_hashes(datasets, manifest["data_sha256"])
    return Demo(
        name="tiny_lm",
        step=step,
        model=load_checkpoint(step, manifest),
        datasets=datasets,
        sampler_settings=tiny_lm_sampler_settings(len(corpus.train)),
        loss_fn=None,
        steps=steps,
        manifest=manifest,
        description=_DEMOS["tiny_lm"].description
        + ". Held-out languages: "
        + "; ".join(f"{k}: {v}" for k, v in LANGUAGE_DESCRIPTIONS.items()),
        _load_model=lambda s: load_checkpoint(s, manifest),
    )


def _check_data_hashes(datasets: dict[str, torch.Tensor], expected: dict[str, str]) -> None:
    # The data are not shipped but regenerated; a changed generator (or numpy stream) would
    # silently pair the checkpoints with data they never saw, so refuse instead.
    for name, digest in expected.items():
        if tensor_sha256(datasets[name]) != digest:
            raise RuntimeError(
                f"regenerated demo dataset {name!r} differs from the one the checkpoints were "
                "trained on (sha256 mismatch); rerun `python -m devinterp_ui.demo.train`"
            )


def _load_dln(step: int | None) -> Demo:
    if step is not None:
        _check_step("dln", step, [0])
    teacher_scale = 1.0
    problem = make_dln_problem(teacher_scale=teacher_scale)
    settings = dln_sampler_settings(len(problem.X), curvature=teacher_scale**2)
    return Demo(
        name="dln",
        step=0,
        model=problem.model,
        datasets={"train": (problem.X, problem.Y)},
        sampler_settings={**settings, "loss_fn": dln_loss},
        loss_fn=dln_loss,
        steps=[0],
        manifest=problem.describe(),
        true_lambda=problem.true_lambda,
        description=_DEMOS["dln"].description,
        _load_model=lambda s: make_dln_problem(teacher_scale=teacher_scale).model,
    )
