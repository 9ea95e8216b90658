"""Which stores a dashboard may open: the runs directory and the roots its operator configured.

"Watch a store" takes a path typed in the page. A served dashboard may be reached by someone
who should not browse the server's disk, so a path is accepted only when it resolves (symlinks
followed, `..` collapsed) to somewhere under an allowed root, and a refused path gets one line
that says the same whatever is there (no "exists", "is a file", "permission denied").

Roots: the runs directory, every entry of `$DEVINTERP_UI_STORE_ROOTS` (separated by
`os.pathsep`, ":" on Linux), and `Dashboard(store_roots=[...])`.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

ROOTS_ENV = "DEVINTERP_UI_STORE_ROOTS"


class StorePathRefused(ValueError):
    """A store path outside the allowed roots."""


def allowed_roots(runs_dir: str | Path, extra: Iterable[str | Path] = ()) -> list[Path]:
    """The resolved roots: `runs_dir`, then `$DEVINTERP_UI_STORE_ROOTS`, then `extra`."""
    env = [p for p in os.environ.get(ROOTS_ENV, "").split(os.pathsep) if p.strip()]
    roots = []
    for root in (runs_dir, *env, *extra):
        resolved = Path(root).expanduser().resolve()
        if resolved not in roots:
            roots.append(resolved)
    return roots


def confine(path: str | Path, roots: list[Path]) -> Path:
    """`path` resolved, when it lies under one of `roots`; else StorePathRefused.

    Relative paths are taken from the server's working directory (where `runs/` usually is).
    """
    text = str(path).strip()
    if not text or "\x00" in text:
        raise StorePathRefused("type the path of a sample store (a directory ending in .zarr).")
    resolved = Path(text).expanduser().resolve()
    if any(resolved == root or resolved.is_relative_to(root) for root in roots):
        return resolved
    shown = ", ".join(str(r) for r in roots)
    raise StorePathRefused(
        f"refused: only stores under {shown} can be opened here (the operator can allow more "
        f"with ${ROOTS_ENV} or Dashboard(store_roots=[...]))."
    )
