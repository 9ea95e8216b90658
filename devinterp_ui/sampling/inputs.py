"""Input checks of `sample()` that need no compute: run options, data forms, token ids, seeds
(in the settings), output paths, and whether the store and the chains fit.

Every check raises TypeError/ValueError naming the argument and the fix, before any forward
pass and before any store (or temporary directory) exists.
"""

from __future__ import annotations

import math
import os
import shutil
import stat
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from devinterp_ui.data import DataSource, as_source
from devinterp_ui.runner import CHAIN_SCHEDULES

# Rows read per slice when scanning token ids for the vocabulary check.
_SCAN_ROWS = 4096


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
        or not math.isfinite(flush_interval)
        or not flush_interval >= 0
    ):
        raise ValueError(
            f"flush_interval must be a finite number of seconds >= 0 (got {flush_interval!r}); "
            "pass e.g. flush_interval=0.5."
        )


def batch_size_error(batch_size: int, rows: int) -> str | None:
    """The message for a batch larger than the dataset (shared with the dashboard's form)."""
    if batch_size <= rows:
        return None
    return f"batch_size={batch_size} is larger than the dataset ({rows} rows); pass batch_size <= {rows}."


def as_dataset(data: Any, name: str, loss_fn) -> DataSource:
    """`as_source(data, name)` after refusing the forms users pass by mistake: a path, a list
    of token lists, a TensorDataset of token ids alone (without a loss_fn)."""
    if isinstance(data, (str, bytes, os.PathLike)):
        raise TypeError(
            f"{name} is a path ({str(data)!r}), not data; load it first, e.g. "
            "torch.load(path) for a tensor or datasets.load_from_disk(path).with_format('torch') "
            "for a Hugging Face dataset."
        )
    if (
        isinstance(data, (list, tuple))
        and data
        and isinstance(data[0], (list, tuple))
        and all(isinstance(x, (int, np.integer)) for x in data[0])
    ):
        raise TypeError(
            f"{name} is a {type(data).__name__} of token lists; pass "
            f"torch.tensor({name}) (an (N, T) tensor of token ids) instead."
        )
    if (
        loss_fn is None
        and isinstance(data, torch.utils.data.TensorDataset)
        and len(data.tensors) == 1
        and data.tensors[0].ndim == 2
        and not data.tensors[0].dtype.is_floating_point
    ):
        raise TypeError(
            f"{name} is a TensorDataset holding only token ids; pass the (N, T) tensor itself "
            f"({name}.tensors[0]) for token data, or a loss_fn for other data."
        )
    return as_source(data, name)


def vocab_size(model: torch.nn.Module) -> int | None:
    """Rows of the model's token embedding: Hugging Face `get_input_embeddings()`,
    TransformerLens `cfg.d_vocab`, else the first `nn.Embedding`; None when there is none."""
    get = getattr(model, "get_input_embeddings", None)
    if callable(get):
        try:
            emb = get()
        except (NotImplementedError, AttributeError):
            emb = None
        if isinstance(emb, torch.nn.Embedding):
            return int(emb.num_embeddings)
    d_vocab = getattr(getattr(model, "cfg", None), "d_vocab", None)
    if isinstance(d_vocab, int) and d_vocab > 0:
        return d_vocab
    for module in model.modules():
        if isinstance(module, torch.nn.Embedding):
            return int(module.num_embeddings)
    return None


def check_token_ids(source: DataSource, name: str, vocab: int | None) -> int | None:
    """Every token id of token data is >= 0 and < vocab (when the vocabulary is known).

    Returns the largest id (None for data other than tokens). Raises ValueError naming the
    first bad row and id. Reads every row once, in slices.
    """
    if source.kind != "token":
        return None
    n = len(source)
    largest = 0
    for start in range(0, n, _SCAN_ROWS):
        ids = source.token_ids(np.arange(start, min(n, start + _SCAN_ROWS)))
        largest = max(largest, int(ids.max()))
        bad = ids < 0
        if vocab is not None:
            bad |= ids >= vocab
        if bool(bad.any()):
            row, col = (int(i) for i in torch.nonzero(bad)[0])
            value = int(ids[row, col])
            allowed = f"0..{vocab - 1} (the model's vocabulary)" if vocab else ">= 0"
            raise ValueError(
                f"{name} row {start + row} holds token id {value} at position {col}; token ids "
                f"must be in {allowed}. Re-tokenize with the model's tokenizer, or drop that row."
            )
    return largest


def check_all_token_ids(source: DataSource, obs: list, vocab: int | None) -> int:
    """`check_token_ids` on the dataset and every observable; returns the largest integer the
    store will hold (token id or row index), for `check_store_fits`."""
    largest = [len(source), check_token_ids(source, "dataset", vocab) or 0]
    for o in obs:
        found = check_token_ids(o.source, f"observables[{o.name!r}]", vocab)
        largest += [len(o.source), found or 0]
    return max(largest)


def check_output_path(output_path) -> Path | None:
    """`output_path` as a Path, refusing paths a store cannot be created at (before compute).

    An existing path is left to the store cache (reuse or StoreConflictError). Otherwise the
    nearest existing ancestor must be a writable directory.
    """
    if output_path is None:
        return None
    if not isinstance(output_path, (str, os.PathLike)):
        raise TypeError(
            f"output_path must be a str or path (got {type(output_path).__name__}); pass e.g. "
            "output_path='runs/a.zarr', or None for a temporary store."
        )
    path = Path(output_path)
    if path.exists():
        return path
    ancestor = path.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise ValueError(
            f"output_path {str(path)!r} cannot be created: {str(ancestor)!r} is a file, not a "
            "directory; pass an output_path inside a directory."
        )
    if _read_only(ancestor):
        raise ValueError(
            f"output_path {str(path)!r} cannot be created: directory {str(ancestor)!r} is "
            "read-only; pass an output_path in a writable directory, or None for a temporary "
            "store."
        )
    return path


def _read_only(directory: Path) -> bool:
    # A directory with no write bit is read-only by intent even to root (whom os.access
    # always answers yes, except on a read-only file system).
    mode = stat.S_IMODE(directory.stat().st_mode)
    return not os.access(directory, os.W_OK | os.X_OK) or not mode & 0o222


def store_nbytes(schema: dict, largest_int: int | None = None) -> int:
    """Bytes of every array of a store. Uncompressed (an upper bound on its size on disk) by
    default; with `largest_int` (the largest token id or row index it holds), integer arrays
    count only the bytes that value needs, as compression could at best store them, so the
    total is a lower bound."""
    total = 0
    for spec in schema.values():
        itemsize = np.dtype(spec.dtype).itemsize
        if largest_int is not None and np.dtype(spec.dtype).kind in "iu":
            itemsize = max(1, math.ceil(int(largest_int).bit_length() / 8))
        total += math.prod(spec.shape) * itemsize
    return int(total)


def check_store_fits(path: Path | None, schema: dict, largest_int: int) -> None:
    """Refuse a store that cannot fit in the free space where it would be written
    (ValueError). Float arrays count in full (losses barely compress), integer arrays at the
    bytes their largest value needs (token ids and row indices compress well), so a run is
    refused only when it surely cannot fit."""
    need = store_nbytes(schema, largest_int)
    where = Path(tempfile.gettempdir()) if path is None else path
    while not where.exists() and where != where.parent:
        where = where.parent
    free = shutil.disk_usage(where).free
    if need > free:
        raise ValueError(
            f"the store would take at least {_size(need)} (compressed at best; "
            f"{_size(store_nbytes(schema))} uncompressed) but {str(where)!r} has {_size(free)} "
            "free; lower num_draws, num_burnin_steps, num_chains or batch_size, or pass an "
            "output_path on a larger disk."
        )


def check_chains_fit(
    model: torch.nn.Module, num_chains: int, chain_schedule: str, device: torch.device
) -> None:
    """Refuse when the chains' model copies alone exceed the memory of `device` (ValueError).

    What sampling adds to what is already resident: lockstep and vectorized hold one copy per
    chain, sequential one; the checkpoint is read from the caller's model (no copy) when it is
    already on `device`, else copied there once. The gradients are updated segment by segment
    inside the backward (lockstep, sequential) and buffers come on top, so this only refuses
    what surely cannot fit.
    """
    per_copy = sum(t.numel() * t.element_size() for t in model.parameters())
    per_copy += sum(t.numel() * t.element_size() for t in model.buffers())
    first = next(model.parameters(), None)
    on_device = first is not None and _same_device(first.device, device)
    copies = (1 if chain_schedule == "sequential" else num_chains) + (0 if on_device else 1)
    need = copies * per_copy
    available = _available_memory(device)
    if available is not None and need > available:
        raise ValueError(
            f"num_chains={num_chains} needs {copies} more model copies ({_size(need)}) but "
            f"{device} has {_size(available)} available; lower num_chains or pass "
            "chain_schedule='sequential' (one copy at a time)."
        )


def _same_device(a: torch.device, b: torch.device) -> bool:
    return a.type == b.type and (a.index or 0) == (b.index or 0)


def _available_memory(device: torch.device) -> int | None:
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    if device.type != "cpu":
        return None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def _size(nbytes: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if nbytes < 1024 or unit == "PiB":
            return f"{nbytes:.0f} {unit}" if unit == "B" else f"{nbytes:.1f} {unit}"
        nbytes /= 1024
    return f"{nbytes} B"
