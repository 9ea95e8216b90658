"""`<output_dir>/study.json`: what study a directory holds, so a different one is refused.

    {
      "format": "devinterp_ui.study/1",
      "kind": "sweep" | "trajectory",
      "identity": {"dims": [...], "settings": {...}, "data": {...}, "models": {...}},
      "cells": [{"name": "lr=0.0001__n_beta=30.0", "coords": {"lr": 0.0001, "n_beta": 30.0}}],
      "updated_at": unix seconds,
      "run_id": the study run that wrote it last (its stop file is .study/stop-<run_id>, its
                driver record .study/driver-<run_id>.json; see driver.py)
    }

The identity holds everything but the grid's values: a study run again with more values on an
axis is the same study (its completed cells are reused); other fixed settings, data, models or
axes make a different study, which must go to another output_dir.
"""

from __future__ import annotations

import hashlib
import json
import numbers
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from devinterp_ui.store.cache import StoreConflictError
from devinterp_ui.study.driver import driver_alive
from devinterp_ui.study.grid import Cell

MANIFEST = "study.json"
FORMAT = "devinterp_ui.study/1"
BOOKKEEPING = ".study"  # claims, stop files and driver records live here, beside the stores


class StudyConflictError(StoreConflictError):
    """`output_dir` holds a different study (or stores that belong to no study)."""


def json_safe(value: Any) -> Any:
    """A JSON form of a setting value that tells different values apart (tensors by hash,
    functions by qualified name)."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    try:
        import torch

        if isinstance(value, torch.Tensor):
            t = value.detach().cpu().contiguous()
            digest = hashlib.sha256(f"{t.dtype}{tuple(t.shape)}".encode())
            digest.update(t.numpy().tobytes())
            return f"tensor:{digest.hexdigest()[:16]}"
    except ImportError:  # pragma: no cover
        pass
    if callable(value):
        return f"{getattr(value, '__module__', '?')}.{getattr(value, '__qualname__', type(value).__name__)}"
    return f"<{type(value).__name__}>"


def read_manifest(output_dir: Path) -> dict[str, Any] | None:
    try:
        return json.loads((output_dir / MANIFEST).read_text())
    except FileNotFoundError:
        return None
    except ValueError as exc:
        raise StudyConflictError(
            f"{str(output_dir / MANIFEST)!r} is not a study manifest ({exc}); pass another "
            "output_dir or delete that file."
        ) from None


def claim_output_dir(
    output_dir: Path,
    kind: str,
    identity: dict[str, Any],
    cells: Sequence[Cell],
    run_id: str | None = None,
) -> dict[str, Any]:
    """Check that `output_dir` is empty, or holds this same study, and record the study there.

    Raises StudyConflictError naming what differs and what to do.
    """
    identity = json.loads(json.dumps(identity))
    if output_dir.exists() and not output_dir.is_dir():
        raise StudyConflictError(f"output_dir {str(output_dir)!r} is a file; pass a directory.")
    stored = read_manifest(output_dir) if output_dir.exists() else None
    if stored is None:
        if output_dir.exists() and any(p.suffix == ".zarr" for p in output_dir.iterdir()):
            raise StudyConflictError(
                f"output_dir {str(output_dir)!r} holds stores but no {MANIFEST}: they belong to no "
                "study; pass an empty or new output_dir."
            )
        previous: list[dict[str, Any]] = []
    else:
        _check_same(output_dir, stored, kind, identity)
        previous = stored.get("cells", [])
    known = {c["name"] for c in previous}
    merged = previous + [{"name": c.name, "coords": c.coords} for c in cells if c.name not in known]
    manifest = {
        "format": FORMAT,
        "kind": kind,
        "identity": identity,
        "cells": merged,
        "updated_at": time.time(),
        "run_id": run_id,
    }
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / BOOKKEEPING).mkdir(exist_ok=True)
    tmp = output_dir / f".{MANIFEST}.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(manifest, indent=1))
    os.replace(tmp, output_dir / MANIFEST)
    return manifest


def unstarted_status(output_dir: Path, manifest: dict[str, Any]) -> str:
    """What a cell without a store is, read from the directory alone.

    "stopped": the last study run was stopped (its cells not started never will be).
    "queued": its driver (the process that called sweep()/llc_trajectory()) still runs, or
        there is no driver record (a directory from before them: cannot tell).
    "abandoned": that driver ended or died without starting the cell; running the same study
        again starts it (completed cells are reused).
    """
    run_id = manifest.get("run_id")
    if not run_id:
        return "queued"
    book = output_dir / BOOKKEEPING
    if (book / f"stop-{run_id}").exists():
        return "stopped"
    return "abandoned" if driver_alive(book, run_id) is False else "queued"


def _check_same(output_dir: Path, stored: dict, kind: str, identity: dict) -> None:
    where = f"output_dir {str(output_dir)!r}"
    if stored.get("format") != FORMAT:
        raise StudyConflictError(f"{where} holds a {MANIFEST} of another format; use a new dir.")
    if stored.get("kind") != kind:
        raise StudyConflictError(
            f"{where} holds a {stored.get('kind')} study, not a {kind}; pass another output_dir."
        )
    old = stored.get("identity") or {}
    diffs = [k for k in sorted(set(old) | set(identity)) if old.get(k) != identity.get(k)]
    if diffs:
        detail = []
        for key in diffs:
            a, b = old.get(key), identity.get(key)
            if isinstance(a, dict) and isinstance(b, dict):
                inner = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
                detail.append(f"{key}: {', '.join(map(str, inner))}")
            else:
                detail.append(f"{key}: stored {a!r}, requested {b!r}")
        raise StudyConflictError(
            f"{where} holds a different study ({'; '.join(detail)} differ); pass another "
            "output_dir, or delete that one to replace it."
        )
