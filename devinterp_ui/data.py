"""Datasets as the sampler sees them: rows addressed by index, collated into batches.

Accepted forms (no `datasets`/`transformers` dependency):
- token data: a 2-D integer tensor/array (N, T); a Hugging Face `datasets.Dataset` with an
  "input_ids" column (read as whole Arrow columns, any format); a sequence of rows that are
  dicts holding "input_ids" (a torch `Dataset`); a dict {"input_ids": (N, T)}. The batch
  handed to `loss_fn` is the (B, T) LongTensor of token ids, as in devinterp; when the data
  also has an "attention_mask" with padding (zeros) it is {"input_ids", "attention_mask"}.
- supervised data: a tuple/list of equal-length tensors `(X, Y, ...)`, a `TensorDataset`, or a
  sequence whose rows are tuples of tensors; the batch is the tuple of stacked tensors.
- other mapping rows (dicts without "input_ids"): the batch is the dict of stacked tensors.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from devinterp_ui.hf_data import hf_token_columns, ragged_error


def to_device(t: torch.Tensor, device: torch.device | str | None) -> torch.Tensor:
    """A freshly collated host tensor on `device`.

    To a CUDA device the copy goes from page-locked memory without blocking: it is queued behind
    the kernels already launched, where a copy from ordinary memory waits for all of them to
    finish first (a full sync on every batch). PyTorch keeps the page-locked block alive until
    the copy is done.
    """
    if device is not None and torch.device(device).type == "cuda" and t.device.type == "cpu":
        return t.pin_memory().to(device, non_blocking=True)
    return t.to(device)


class DataSource:
    """Index-addressable rows with a collate rule. `kind` is "token" or "rows"."""

    kind: str
    seq_len: int | None = None

    def __len__(self) -> int:
        raise NotImplementedError

    def batch(self, indices: np.ndarray, device: torch.device | str | None) -> Any:
        """The batch handed to `loss_fn` for these row indices, on `device`."""
        raise NotImplementedError

    def token_ids(self, indices: np.ndarray) -> torch.Tensor:
        """(B, T) int64 token ids of these rows (token data only)."""
        raise NotImplementedError

    def fingerprint(self) -> str:
        """A short hash identifying the data, used to tell stores apart."""
        raise NotImplementedError


class TokenTensorSource(DataSource):
    """Token ids held as one (N, T) LongTensor, with an optional (N, T) attention mask.

    Without a mask (or with one that is all ones) a batch is the (B, T) ids; with padding it
    is {"input_ids": (B, T), "attention_mask": (B, T)} (see `losses.next_token_loss`).
    """

    kind = "token"

    def __init__(self, ids: torch.Tensor, attention_mask: torch.Tensor | None = None):
        self.ids = ids
        self.attention_mask = attention_mask
        self.seq_len = int(ids.shape[1])

    def __len__(self) -> int:
        return int(self.ids.shape[0])

    def token_ids(self, indices: np.ndarray) -> torch.Tensor:
        return self.ids[torch.as_tensor(indices, dtype=torch.long)]

    def batch(self, indices, device):
        idx = torch.as_tensor(indices, dtype=torch.long)
        if self.attention_mask is None:
            return to_device(self.ids[idx], device)
        return {
            "input_ids": to_device(self.ids[idx], device),
            "attention_mask": to_device(self.attention_mask[idx], device),
        }

    def fingerprint(self) -> str:
        if self.attention_mask is None:
            return _hash_tensors([self.ids])
        return _hash_tensors([self.ids, self.attention_mask], "attention_mask")


class TokenRowSource(DataSource):
    """Rows that are dicts with "input_ids", read one at a time and stacked."""

    kind = "token"

    def __init__(self, rows: Sequence, seq_len: int):
        self.rows = rows
        self.seq_len = seq_len

    def __len__(self) -> int:
        return len(self.rows)

    def token_ids(self, indices: np.ndarray) -> torch.Tensor:
        return torch.stack([_as_long(self.rows[int(i)]["input_ids"]) for i in indices])

    def batch(self, indices, device):
        return to_device(self.token_ids(indices), device)

    def fingerprint(self) -> str:
        return _hash_tensors([self.token_ids(_probe_indices(len(self)))], len(self))


class TensorTupleSource(DataSource):
    """Supervised data as equal-length tensors (X, Y, ...)."""

    kind = "rows"

    def __init__(self, tensors: Sequence[torch.Tensor]):
        self.tensors = tuple(tensors)

    def __len__(self) -> int:
        return int(self.tensors[0].shape[0])

    def batch(self, indices, device):
        idx = torch.as_tensor(indices, dtype=torch.long)
        return tuple(to_device(t[idx], device) for t in self.tensors)

    def fingerprint(self) -> str:
        return _hash_tensors(self.tensors)


class RowSource(DataSource):
    """Any other indexable rows (tuples or dicts of tensors), stacked field by field."""

    kind = "rows"

    def __init__(self, rows: Sequence):
        self.rows = rows

    def __len__(self) -> int:
        return len(self.rows)

    def batch(self, indices, device):
        rows = [self.rows[int(i)] for i in indices]
        first = rows[0]
        if isinstance(first, Mapping):
            return {
                k: to_device(torch.stack([torch.as_tensor(r[k]) for r in rows]), device)
                for k in first
            }
        if isinstance(first, (tuple, list)):
            return tuple(
                to_device(torch.stack([torch.as_tensor(r[j]) for r in rows]), device)
                for j in range(len(first))
            )
        return to_device(torch.stack([torch.as_tensor(r) for r in rows]), device)

    def fingerprint(self) -> str:
        probe = self.batch(_probe_indices(len(self)), "cpu")
        tensors = list(probe.values()) if isinstance(probe, dict) else list(probe)
        return _hash_tensors(tensors, len(self))


def as_source(data: Any, name: str) -> DataSource:
    """Wrap a user dataset; `name` (e.g. "dataset", "observables['code']") appears in errors.

    Raises TypeError for unsupported objects and ValueError for malformed token rows
    (ragged, shorter than 2 tokens, not integers) before any compute.
    """
    if isinstance(data, np.ndarray):
        data = torch.from_numpy(data)
    if isinstance(data, torch.Tensor):
        return _token_tensor(data, name)
    if isinstance(getattr(data, "column_names", None), dict):  # a DatasetDict of splits
        raise TypeError(
            f"{name} is a dict of dataset splits {sorted(data.column_names)}; pass one split, "
            "e.g. ds['train']."
        )
    if isinstance(data, Mapping):
        if set(data) in ({"input_ids"}, {"input_ids", "attention_mask"}):
            mask = data.get("attention_mask")
            return _token_tensor(
                _as_tensor(data["input_ids"]),
                name,
                None if mask is None else _as_tensor(mask),
            )
        raise TypeError(
            f"{name} is a dict with keys {sorted(data)}; pass a dict {{'input_ids': (N, T) tensor}} "
            "(optionally with 'attention_mask') for token data, or a tuple (X, Y) of tensors for "
            "supervised data."
        )
    if isinstance(data, torch.utils.data.TensorDataset):
        return _tensor_tuple(data.tensors, name)
    if isinstance(data, (tuple, list)) and data and all(isinstance(t, torch.Tensor) for t in data):
        return _tensor_tuple(data, name)
    if hasattr(data, "__len__") and hasattr(data, "__getitem__"):
        return _indexable(data, name)
    raise TypeError(
        f"{name} must be a (N, T) token-id tensor, a dataset of rows with 'input_ids', or a "
        f"tuple (X, Y) of tensors (got {type(data).__name__})."
    )


def _token_tensor(
    ids: torch.Tensor, name: str, attention_mask: torch.Tensor | None = None
) -> TokenTensorSource:
    if ids.ndim != 2:
        raise ValueError(
            f"{name} as a tensor must be 2-D token ids (N, T) (got shape {tuple(ids.shape)}); "
            "for supervised data pass a tuple (X, Y)."
        )
    if ids.dtype.is_floating_point or ids.dtype == torch.bool or ids.is_complex():
        raise TypeError(
            f"{name} token ids must be integers (got dtype {ids.dtype}); cast with .long()."
        )
    _check_seq_len(int(ids.shape[1]), name)
    _check_nonempty(int(ids.shape[0]), name)
    mask = _check_mask(attention_mask, ids, name)
    return TokenTensorSource(ids.long().cpu(), mask)


def _check_mask(mask: torch.Tensor | None, ids: torch.Tensor, name: str) -> torch.Tensor | None:
    """The (N, T) 0/1 mask as int64, or None when absent or all ones (nothing is padded)."""
    if mask is None:
        return None
    if tuple(mask.shape) != tuple(ids.shape):
        raise ValueError(
            f"{name} attention_mask has shape {tuple(mask.shape)} but input_ids {tuple(ids.shape)}; "
            "they must match."
        )
    mask = mask.long().cpu()
    if ((mask != 0) & (mask != 1)).any():
        raise ValueError(f"{name} attention_mask must hold only 0 (padding) and 1 (real token).")
    if bool(mask.all()):
        return None
    counted = ((mask[:, 1:] != 0) & (mask[:, :-1] != 0)).sum(dim=1)
    if bool((counted == 0).any()):
        bad = int(torch.nonzero(counted == 0)[0])
        raise ValueError(
            f"{name} row {bad} has fewer than 2 adjacent real tokens (attention_mask), so no "
            "next-token loss; drop such rows."
        )
    return mask


def _tensor_tuple(tensors: Sequence[torch.Tensor], name: str) -> TensorTupleSource:
    lengths = {int(t.shape[0]) if t.ndim else -1 for t in tensors}
    if len(lengths) != 1 or -1 in lengths:
        shapes = [tuple(t.shape) for t in tensors]
        raise ValueError(
            f"{name} tensors must share their first (row) dimension (got shapes {shapes})."
        )
    _check_nonempty(next(iter(lengths)), name)
    return TensorTupleSource(tensors)


def _indexable(rows: Sequence, name: str) -> DataSource:
    n = len(rows)
    _check_nonempty(n, name)
    columns = hf_token_columns(rows, name)
    if columns is not None:
        return _token_tensor(columns[0], name, columns[1])
    first = rows[0]
    if not (isinstance(first, Mapping) and "input_ids" in first):
        return RowSource(rows)
    lengths = np.fromiter((len(rows[i]["input_ids"]) for i in range(n)), dtype=np.int64, count=n)
    if (lengths != lengths[0]).any():
        raise ragged_error(lengths, name)
    _check_seq_len(int(lengths[0]), name)
    if _as_long(first["input_ids"]).dtype.is_floating_point:
        raise TypeError(f"{name} 'input_ids' must be integers.")
    if "attention_mask" in first:
        # Padding needs the mask with every batch: read the rows once into tensors.
        ids = torch.stack([_as_long(rows[i]["input_ids"]) for i in range(n)])
        mask = torch.stack([_as_long(rows[i]["attention_mask"]) for i in range(n)])
        return _token_tensor(ids, name, mask)
    return TokenRowSource(rows, int(lengths[0]))


def _check_seq_len(t: int, name: str) -> None:
    if t < 2:
        raise ValueError(
            f"{name} sequences have {t} token(s); next-token losses need at least 2 per row."
        )


def _check_nonempty(n: int, name: str) -> None:
    if n < 1:
        raise ValueError(f"{name} is empty; pass at least one row.")


def _as_tensor(x: Any) -> torch.Tensor:
    return x if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))


def _as_long(x: Any) -> torch.Tensor:
    return torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x).long()


def _probe_indices(n: int) -> np.ndarray:
    return np.unique(np.r_[np.arange(min(n, 8)), np.linspace(0, n - 1, 8).astype(np.int64)])


def _hash_tensors(tensors: Sequence[torch.Tensor], *extra: Any) -> str:
    h = hashlib.blake2b(digest_size=12)
    for t in tensors:
        t = t.detach().cpu().contiguous()
        h.update(str((tuple(t.shape), str(t.dtype))).encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    h.update(repr(extra).encode())
    return h.hexdigest()


@dataclass
class BatchFeed:
    """The stream of mini-batch row indices one chain consumes.

    Epochs of `n` rows are cut into full batches of `batch_size` (an incomplete last batch is
    dropped, so every step sees the same batch size); with `shuffle` each epoch is a fresh
    permutation drawn from a generator seeded with `seed`.
    """

    n: int
    batch_size: int
    seed: int
    shuffle: bool = True

    def __post_init__(self) -> None:
        self._gen = torch.Generator().manual_seed(int(self.seed))
        self._order = np.empty(0, dtype=np.int64)
        self._pos = 0

    def next(self) -> np.ndarray:
        if self._pos + self.batch_size > len(self._order):
            self._new_epoch()
        out = self._order[self._pos : self._pos + self.batch_size]
        self._pos += self.batch_size
        return out

    def _new_epoch(self) -> None:
        if self.shuffle:
            self._order = torch.randperm(self.n, generator=self._gen).numpy()
        else:
            self._order = np.arange(self.n, dtype=np.int64)
        self._pos = 0


def fixed_rows(n: int, count: int, seed: int) -> np.ndarray:
    """`count` distinct row indices out of `n`, chosen by `seed`, sorted for readable stores."""
    gen = torch.Generator().manual_seed(int(seed))
    return np.sort(torch.randperm(n, generator=gen)[:count].numpy())


def model_fingerprint(model: torch.nn.Module) -> str:
    """Hash of every parameter and buffer: two stores from different checkpoints never match."""
    names, tensors = (
        zip(*model.state_dict().items(), strict=True) if model.state_dict() else ((), ())
    )
    return _hash_tensors(list(tensors), names)
