"""Where the tiny LM's training trajectory lives on disk, and how to read it back.

Layout (written by ``python -m devinterp_ui.demo.train``)::

    assets/tiny_lm/manifest.json        model config, corpus config, training recipe, loss curve,
                                        one record per checkpoint (step, file, sha256, held-out loss)
    assets/tiny_lm/step_000000.pt ...   state_dicts only (float32), loaded with weights_only=True

``assets/`` is the repository's top-level folder; set ``DEVINTERP_UI_ASSETS`` to read (or write)
another copy, e.g. for an installed (non-editable) package.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch

from devinterp_ui.demo.tiny_lm import TinyLM, TinyLMConfig

TRAJECTORY_NAME = "tiny_lm"
MANIFEST_FILE = "manifest.json"


def assets_dir() -> Path:
    """The assets root: ``$DEVINTERP_UI_ASSETS`` if set, else ``<repository>/assets``."""
    override = os.environ.get("DEVINTERP_UI_ASSETS")
    if override:
        return Path(override)
    return Path(__file__).resolve().parents[2] / "assets"


def trajectory_dir(root: Path | None = None) -> Path:
    return (root or assets_dir()) / TRAJECTORY_NAME


def checkpoint_file_name(step: int) -> str:
    return f"step_{step:06d}.pt"


def read_manifest(root: Path | None = None) -> dict:
    """The trajectory's manifest; ``FileNotFoundError`` says how to regenerate it."""
    path = trajectory_dir(root) / MANIFEST_FILE
    if not path.exists():
        raise FileNotFoundError(
            f"no demo trajectory at {path}; create it with `python -m devinterp_ui.demo.train` "
            "(or point DEVINTERP_UI_ASSETS at an assets folder that has one)"
        )
    return json.loads(path.read_text())


def available_steps(manifest: dict) -> list[int]:
    return [record["step"] for record in manifest["checkpoints"]]


def load_checkpoint(step: int, manifest: dict, root: Path | None = None) -> TinyLM:
    """The model at ``step`` (must be one of ``available_steps``), in eval mode on the CPU."""
    records = {record["step"]: record for record in manifest["checkpoints"]}
    if step not in records:
        raise ValueError(
            f"no checkpoint at step {step} of 'tiny_lm'; available steps: "
            f"{', '.join(map(str, sorted(records)))}"
        )
    model = TinyLM(TinyLMConfig(**manifest["model"]["config"]))
    path = trajectory_dir(root) / records[step]["file"]
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return model.eval()


def file_sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def tensor_sha256(tensor: torch.Tensor) -> str:
    """Hash of a tensor's dtype, shape and bytes; used to pin generated data in the manifest."""
    contiguous = tensor.detach().cpu().contiguous()
    digest = hashlib.sha256(f"{contiguous.dtype}{tuple(contiguous.shape)}".encode())
    digest.update(contiguous.numpy().tobytes())
    return digest.hexdigest()
