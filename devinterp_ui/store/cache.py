"""What to do when `output_path` already exists: reuse a finished identical run, or explain."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from devinterp_ui.store.cleanup import remove_partial_files
from devinterp_ui.store.liveness import HEARTBEAT_TIMEOUT, heartbeat_age, writer_alive
from devinterp_ui.store.progress import MarkerUnreadable, read_root_attrs

# Root attributes that must agree for a stored run to stand in for a requested one.
IDENTITY_ATTRS = ("metadata", "fingerprints")


class StoreConflictError(ValueError, RuntimeError):
    """`output_path` holds something `sample()` must not overwrite or reuse.

    A ValueError (a bad argument: the path) and a RuntimeError (what devinterp 2.x raises for
    an existing store), so code written for either library catches it.
    """


def _root_attrs(path: Path) -> dict[str, Any] | None:
    """The root attributes of a Zarr v3 store, or None when `path` is no such store."""
    try:
        return read_root_attrs(path, retries=2)
    except (OSError, MarkerUnreadable):
        return None


def check_existing(path: Path, identity: dict[str, Any]) -> bool:
    """True when `path` holds a completed run with this identity (reuse it); False when `path`
    does not exist (create it). Raises StoreConflictError saying what differs and what to do.
    """
    if not path.exists():
        return False
    attrs = _root_attrs(path)
    if attrs is None:
        if path.is_dir() and not any(path.iterdir()):
            return False
        raise StoreConflictError(
            f"output_path {str(path)!r} exists and is not a sample store; pass another "
            "output_path or delete it."
        )
    # A store left by a dead writer keeps no temporary files once someone looks at it again.
    remove_partial_files(path, attrs)
    stored = {k: attrs.get(k) for k in IDENTITY_ATTRS}
    requested = json.loads(json.dumps(identity))
    diffs = _differences(stored, requested)
    if diffs:
        shown = "; ".join(f"{k}: stored {a!r}, requested {b!r}" for k, a, b in diffs[:8])
        more = f" (and {len(diffs) - 8} more)" if len(diffs) > 8 else ""
        raise StoreConflictError(
            f"output_path {str(path)!r} holds a run with a different configuration: {shown}{more}. "
            "Delete that directory to replace it, or pass another output_path."
        )
    if attrs.get("completed") != 1:
        progress = attrs.get("progress") or {}
        chains = progress.get("chains") or {}
        if _being_written(path, progress):
            raise StoreConflictError(
                f"output_path {str(path)!r} is being written right now by another run with this "
                f"configuration (process {progress.get('pid')} on {progress.get('host')!r}); "
                "wait for it to finish (then the same call reuses its result), or pass another "
                "output_path."
            )
        raise StoreConflictError(
            f"output_path {str(path)!r} holds an incomplete run with this configuration "
            f"(status {progress.get('status', 'unknown')!r}, steps written per chain "
            f"{chains.get('steps_written')} of {progress.get('total_steps')}); resuming is not "
            "supported: delete that directory to sample again, or open it with "
            "xarray.open_datatree to use the rows written so far."
        )
    return True


def _being_written(path: Path, progress: dict[str, Any]) -> bool:
    """The marker says running and its writer shows signs of life (process, heartbeat)."""
    if progress.get("status") != "running":
        return False
    alive = writer_alive(progress.get("pid"), progress.get("host"))
    if alive is False:
        return False
    age = heartbeat_age(path)
    return age is None and alive is True or age is not None and age <= HEARTBEAT_TIMEOUT


def _differences(a: Any, b: Any, prefix: str = "") -> list[tuple[str, Any, Any]]:
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for key in sorted(set(a) | set(b), key=str):
            out += _differences(a.get(key), b.get(key), f"{prefix}.{key}" if prefix else str(key))
        return out
    return [] if a == b else [(prefix, a, b)]
