"""Leftovers of writers that died: half-built stores beside a path, temporary files inside one.

Both kinds are removed only when no live writer can still own them, judged on this host by
process id: a build directory names its process, a store's marker names its writer.
"""

from __future__ import annotations

import shutil
import socket
from pathlib import Path
from typing import Any

from devinterp_ui.store.liveness import process_alive, writer_alive

# Host names may hold dots; the build directory's name uses dots as separators.
BUILD_HOST = socket.gethostname().replace(".", "_")
# Zarr's LocalStore and ChunkFiles write every key to `<name>.<uuid>.partial` and rename it.
PARTIAL_GLOB = "*.partial"


def building_name(path: Path, pid: int, token: str) -> Path:
    """Where the writer of process `pid` builds the store for `path` before renaming it."""
    return path.with_name(f".{path.name}.{BUILD_HOST}-{pid}.{token}.building")


def remove_stale_builds(path: Path) -> list[Path]:
    """Delete the half-built stores beside `path` left by writers that died while creating it.

    A store is built in `.<name>.<host>-<pid>.<random>.building` and renamed into place; a
    writer killed in between leaves that directory. It is stale when its host is this one and
    its process is gone; builds of live processes and of other hosts are left alone. Returns
    what was deleted.
    """
    removed = []
    for candidate in path.parent.glob(f".{path.name}.*.building"):
        owner = candidate.name[len(path.name) + 2 :].split(".")[0]
        host, _, pid = owner.rpartition("-")
        if host != BUILD_HOST or not pid.isdigit() or process_alive(int(pid)) is not False:
            continue
        shutil.rmtree(candidate, ignore_errors=True)
        removed.append(candidate)
    return removed


def remove_partial_files(path: Path, attrs: dict[str, Any]) -> list[Path]:
    """Delete the temporary `*.partial` files inside the store at `path` (root attrs `attrs`)
    once no writer can still rename them into place: the run is `completed` (the writer's last
    act), or its writing process on this host is gone. Otherwise (a live writer, or one on
    another host) nothing is touched. Returns what was deleted; unremovable files (a read-only
    store) are skipped silently.
    """
    marker = attrs.get("progress") if isinstance(attrs.get("progress"), dict) else {}
    done = attrs.get("completed") == 1
    if not done and writer_alive(marker.get("pid"), marker.get("host")) is not False:
        return []
    removed = []
    for partial in path.rglob(PARTIAL_GLOB):
        try:
            partial.unlink()
        except OSError:
            continue
        removed.append(partial)
    return removed
