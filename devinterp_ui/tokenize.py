"""Raw text to fixed-length token rows: `tokenize_and_concatenate`, as TransformerLens and
devinterp users know it, without their dependencies (no `transformers` import here)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import torch

__all__ = ["tokenize_and_concatenate"]

_EOS = object()


def tokenize_and_concatenate(
    dataset: Any,
    tokenizer: Any,
    seq_len: int,
    *,
    column: str = "text",
    separator_id: int | None | object = _EOS,
    prepend_bos_id: int | None = None,
    batch_size: int = 1000,
) -> torch.Tensor:
    """(N, seq_len) int64 token rows cut from the concatenation of every text of `dataset`.

    Args:
        dataset: a Hugging Face `datasets.Dataset` (or a dict of lists) with a text `column`,
            or a sequence of strings.
        tokenizer: a `transformers` tokenizer (called on a list of texts, returning
            {"input_ids": [[...], ...]}) or a `tokenizers.Tokenizer` (`encode_batch`).
        seq_len: tokens per row (>= 2); the incomplete tail of the stream is dropped.
        separator_id: token put between texts; default the tokenizer's EOS id (none if it has
            none); None puts nothing.
        prepend_bos_id: when given, each row is this token followed by seq_len - 1 stream tokens
            (TransformerLens' `add_bos_token`); rows then still have `seq_len` tokens.
        batch_size: texts tokenized per call.

    Returns a LongTensor that `sample()` takes as its dataset. Raises ValueError when
    seq_len < 2, the column is missing, or the texts give fewer tokens than one row.
    """
    if not isinstance(seq_len, int) or seq_len < 2:
        raise ValueError(f"seq_len must be an int >= 2 (got {seq_len!r}).")
    texts = _texts(dataset, column)
    sep = _eos_id(tokenizer) if separator_id is _EOS else separator_id
    stream: list[np.ndarray] = []
    for start in range(0, len(texts), batch_size):
        for ids in _encode(tokenizer, list(texts[start : start + batch_size])):
            stream.append(np.asarray(ids, dtype=np.int64))
            if sep is not None:
                stream.append(np.asarray([sep], dtype=np.int64))
    if sep is not None and stream:
        stream.pop()  # a separator between texts, not after the last
    tokens = np.concatenate(stream) if stream else np.empty(0, dtype=np.int64)
    width = seq_len - (prepend_bos_id is not None)
    rows = len(tokens) // width
    if rows == 0:
        raise ValueError(
            f"the texts give {len(tokens)} tokens, fewer than one row of {seq_len}; pass more "
            "text or a smaller seq_len."
        )
    out = torch.from_numpy(tokens[: rows * width].reshape(rows, width).copy())
    if prepend_bos_id is not None:
        out = torch.cat([torch.full((rows, 1), int(prepend_bos_id), dtype=torch.long), out], 1)
    return out


def _texts(dataset: Any, column: str) -> Sequence[str]:
    if isinstance(dataset, str):
        raise TypeError("dataset must be a collection of texts, not one string; wrap it: [text].")
    names = getattr(dataset, "column_names", None)
    if names is not None or isinstance(dataset, dict):
        available = list(names if names is not None else dataset)
        if column not in available:
            raise ValueError(
                f"dataset has no column {column!r} (columns: {available}); pass column=..."
            )
        texts = dataset[column]
    else:
        texts = dataset
    texts = list(texts) if not isinstance(texts, list) else texts
    bad = next((i for i, t in enumerate(texts) if not isinstance(t, str)), None)
    if bad is not None:
        raise TypeError(f"text {bad} is a {type(texts[bad]).__name__}, not a str.")
    return texts


def _encode(tokenizer: Any, texts: list[str]) -> Iterable[Sequence[int]]:
    if callable(tokenizer):  # transformers: no BOS/EOS added per text, the separator does that
        return tokenizer(texts, add_special_tokens=False)["input_ids"]
    if hasattr(tokenizer, "encode_batch"):  # tokenizers.Tokenizer
        return [e.ids for e in tokenizer.encode_batch(texts, add_special_tokens=False)]
    raise TypeError(
        "tokenizer must be a transformers tokenizer or a tokenizers.Tokenizer "
        f"(got {type(tokenizer).__name__})."
    )


def _eos_id(tokenizer: Any) -> int | None:
    eos = getattr(tokenizer, "eos_token_id", None)
    return int(eos) if isinstance(eos, int) else None
