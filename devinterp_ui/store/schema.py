"""The store layout, declared once: every array's name, dims, dtype, shape and chunking.

Names, dims and dtypes follow devinterp 2.x (see STORE.md) and are public API.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

from devinterp_ui.sgld import METRIC_NAMES

# Every flush rewrites each open chunk whole, so a chunk's bytes are compressed once per flush
# until it fills: the writer's work grows with the chunk size. 128 KiB halved the writer
# thread's CPU time against 1 MiB on the demo LM, and smaller did not help further
# (docs/performance.md, section 1); it makes 8 times more chunk files.
TARGET_CHUNK_BYTES = 1 << 17
MAX_ROWS_PER_CHUNK = 256


@dataclass(frozen=True)
class ArraySpec:
    """One array. `row_dim` names the dim rows are appended along ("step"/"draw"), or None."""

    name: str
    dims: tuple[str, ...]
    shape: tuple[int, ...]
    dtype: str
    row_dim: str | None = None
    chunks: tuple[int, ...] = field(default=())

    @property
    def fill_value(self):
        return np.nan if np.dtype(self.dtype).kind == "f" else 0

    @property
    def rows_per_chunk(self) -> int:
        return self.chunks[1] if self.row_dim else 0

    def with_chunks(self) -> ArraySpec:
        if self.row_dim is None:
            return _replace_chunks(self, self.shape)
        row_bytes = int(np.prod(self.shape[2:], dtype=np.int64)) * np.dtype(self.dtype).itemsize
        rows = max(
            1, min(MAX_ROWS_PER_CHUNK, TARGET_CHUNK_BYTES // max(row_bytes, 1), self.shape[1])
        )
        return _replace_chunks(self, (1, rows, *self.shape[2:]))


def _replace_chunks(spec: ArraySpec, chunks: tuple[int, ...]) -> ArraySpec:
    return ArraySpec(spec.name, spec.dims, spec.shape, spec.dtype, spec.row_dim, tuple(chunks))


def safe_name(name: str) -> str:
    """An observable's name made identifier-safe, as array names need (STORE.md)."""
    out = re.sub(r"[^0-9A-Za-z_]", "_", name)
    if not out:
        return "_"
    return "_" + out if out[0].isdigit() else out


@dataclass(frozen=True)
class Layout:
    """The sizes that fix every array's shape."""

    num_chains: int
    total_steps: int
    num_draws: int
    batch_size: int
    batch_sampling: int  # batch_size x gradient_accumulation_steps
    num_positions: int  # token_pos: T-1 for next-token losses, P per position, 1 per sample
    seq_len: int | None  # token: T for token data, None otherwise
    observable_rows: dict[str, int]  # safe observable name -> rows evaluated per draw
    save_metrics: bool


def build_schema(layout: Layout) -> dict[str, ArraySpec]:
    """Every array of a run, keyed by name, chunked for streaming writes."""
    c, s, d = layout.num_chains, layout.total_steps, layout.num_draws
    p = layout.num_positions
    token = layout.seq_len is not None
    specs = [
        ArraySpec("n_beta", (), (), "float64"),
        ArraySpec("init_loss", ("chain", "token_pos"), (c, p), "float32"),
        ArraySpec(
            "sampling_loss",
            ("chain", "draw", "batch", "token_pos"),
            (c, d, layout.batch_size, p),
            "float32",
            "draw",
        ),
        ArraySpec(
            "sampling_loss_micro",
            ("chain", "step", "batch_sampling", "token_pos"),
            (c, s, layout.batch_sampling, p),
            "float32",
            "step",
        ),
    ]
    if token:
        specs.append(
            ArraySpec(
                "sampling_input_ids_micro",
                ("chain", "step", "batch_sampling", "token"),
                (c, s, layout.batch_sampling, layout.seq_len),
                "int64",
                "step",
            )
        )
    else:
        specs.append(
            ArraySpec(
                "sampling_indices_micro",
                ("chain", "step", "batch_sampling"),
                (c, s, layout.batch_sampling),
                "int64",
                "step",
            )
        )
    for obs, rows in layout.observable_rows.items():
        batch_dim = f"batch_{obs}"
        specs.append(
            ArraySpec(
                f"loss_{obs}",
                ("chain", "draw", batch_dim, "token_pos"),
                (c, d, rows, p),
                "float32",
                "draw",
            )
        )
        if token:
            specs.append(
                ArraySpec(f"input_ids_{obs}", (batch_dim, "token"), (rows, layout.seq_len), "int64")
            )
        else:
            specs.append(ArraySpec(f"indices_{obs}", (batch_dim,), (rows,), "int64"))
    if layout.save_metrics:
        specs += [
            ArraySpec(f"metrics_{m}", ("chain", "step"), (c, s), "float32", "step")
            for m in METRIC_NAMES
        ]
    return {spec.name: spec.with_chunks() for spec in specs}
