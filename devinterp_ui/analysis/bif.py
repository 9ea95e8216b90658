"""Bayesian influence function: correlations of observable losses across posterior samples.

For two observable rows (sequence-level) or two (row, position) pairs (token-level), the BIF is
the Pearson correlation (or covariance) of their losses over the SGLD draws. Output layout as
devinterp 2.x `compute_bif`: `influences` (batch_1, batch_2[, target_position,
target_position_T]) and `input_ids` (batch, position), `batch` indexing the observables'
rows concatenated in `loss_keys` order.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import torch
import xarray as xr

from devinterp_ui.analysis.sample_tree import (
    observable_ids,
    require_arrays,
    root_dataset,
    to_observable_id,
)

__all__ = ["bif", "compute_bif"]

CorrelationMethod = Literal["token", "sequence"]
ChainReduction = Literal["stack", "mean"]


def compute_bif(
    tree: xr.DataTree | xr.Dataset,
    correlation_method: CorrelationMethod = "token",
    reduce_chain_dimension_method: ChainReduction = "stack",
    loss_keys: Literal["all"] | Sequence[str] = "all",
    batch_index_range_1: Literal["all"] | Sequence[int] = "all",
    batch_index_range_2: Literal["all"] | Sequence[int] = "all",
    average_tokenwise_bif: bool = False,
    compute_covariance: bool = False,
    batch_size: int = 32,
    device: str | torch.device | None = None,
) -> xr.Dataset:
    """BIF between observable rows of a sample tree.

    Args:
        tree: a sample tree with `loss_{obs}` (chain, draw, batch_{obs}, token_pos) arrays.
        correlation_method: "token": one value per pair of (row, target position); "sequence":
            losses are first averaged over positions, one value per pair of rows.
        reduce_chain_dimension_method: "stack": every (chain, draw) is a posterior sample;
            "mean": losses are averaged over chains first, draws are the samples.
        loss_keys: observables to include, by name or store id, in this order; "all" = every
            observable in the tree, sorted by id.
        batch_index_range_1 / _2: positions along the concatenated row axis to use as first /
            second operand ("all" = every row).
        average_tokenwise_bif: token method only: average each (row, row) block over both
            position axes, giving (batch_1, batch_2).
        compute_covariance: covariance (ddof=1, as np.cov) instead of Pearson correlation.
        batch_size: rows per block; memory beyond inputs and output is O(batch_size^2 P^2).
        device: torch device for the block products (default: cuda if available, else cpu).

    Returns:
        xr.Dataset with `influences` float32 (batch_1, batch_2, target_position,
        target_position_T) for "token", (batch_1, batch_2) for "sequence" or averaged; and
        `input_ids` (batch, position) (or `indices` (batch,) for non-token data). target_position
        coordinates are 1-based (position t predicts token t). Coordinate `observable_1/_2` (and
        `observable` on `batch`) names each row's observable.

    Samples (chain, draw) with a non-finite loss in any included row are dropped (unwritten
    draws of a stopped run). A row whose loss never varies has NaN correlations.

    Raises KeyError for unknown loss keys or a tree without observables, ValueError for bad
    options or out-of-range batch indices.
    """
    if correlation_method not in ("token", "sequence"):
        raise ValueError(
            f"correlation_method must be 'token' or 'sequence', got {correlation_method!r}"
        )
    if reduce_chain_dimension_method not in ("stack", "mean"):
        raise ValueError(
            "reduce_chain_dimension_method must be 'stack' or 'mean', got "
            f"{reduce_chain_dimension_method!r}"
        )
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"

    ds = root_dataset(tree)
    keys = resolve_loss_keys(ds, loss_keys)
    losses, row_obs = _stack_losses(ds, keys)  # (chain, draw, row, position)
    if correlation_method == "sequence":
        losses = losses.mean(axis=-1, keepdims=True)
    series = _posterior_samples(losses, reduce_chain_dimension_method)  # (row, pos, sample)

    n_rows = series.shape[0]
    rows_1 = _row_selection(batch_index_range_1, n_rows, "batch_index_range_1")
    rows_2 = _row_selection(batch_index_range_2, n_rows, "batch_index_range_2")
    normalised = _normalise(series, compute_covariance)

    token_level = correlation_method == "token"
    values = _blockwise_products(
        normalised,
        rows_1,
        rows_2,
        average=token_level and average_tokenwise_bif,
        batch_size=batch_size,
        device=torch.device(device),
    )

    dims = ["batch_1", "batch_2"]
    coords: dict[str, Any] = {
        "batch_1": rows_1,
        "batch_2": rows_2,
        "observable_1": ("batch_1", row_obs[rows_1]),
        "observable_2": ("batch_2", row_obs[rows_2]),
    }
    if token_level and not average_tokenwise_bif:
        n_pos = series.shape[1]
        dims += ["target_position", "target_position_T"]
        coords["target_position"] = np.arange(1, n_pos + 1)
        coords["target_position_T"] = np.arange(1, n_pos + 1)
    else:
        values = values.reshape(len(rows_1), len(rows_2))
    out = xr.Dataset({"influences": xr.DataArray(values, dims=dims, coords=coords)})
    out = out.merge(_context(ds, keys))
    out.attrs = {
        "correlation_method": correlation_method,
        "reduce_chain_dimension_method": reduce_chain_dimension_method,
        "statistic": "covariance" if compute_covariance else "correlation",
        "loss_keys": list(keys),
    }
    return out


def resolve_loss_keys(ds: xr.Dataset, loss_keys: Literal["all"] | Sequence[str]) -> list[str]:
    """Store ids of the requested observables (names are made identifier-safe as the store does)."""
    available = observable_ids(ds)
    if not available:
        raise KeyError(
            "the sample tree has no observable losses (arrays 'loss_{obs}'); run sample() with "
            "observables={name: dataset, ...}."
        )
    if isinstance(loss_keys, str):
        if loss_keys != "all":
            raise ValueError(
                f"loss_keys must be 'all' or a list of observable names, got {loss_keys!r}"
            )
        return available
    keys = [to_observable_id(str(k)) for k in loss_keys]
    unknown = [k for k, kid in zip(loss_keys, keys, strict=True) if kid not in available]
    if unknown:
        raise KeyError(f"unknown loss key(s) {unknown}; the tree's observables are {available}")
    if not keys:
        raise ValueError("loss_keys is empty; pass 'all' or at least one observable name")
    return keys


def _stack_losses(ds: xr.Dataset, keys: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Observable losses concatenated along rows: (chain, draw, row, pos) float64, row -> obs."""
    arrays, owners = [], []
    for key in keys:
        da = ds[f"loss_{key}"]
        batch_dim = f"batch_{key}"
        if set(da.dims) != {"chain", "draw", batch_dim, "token_pos"}:
            raise ValueError(
                f"loss_{key} has dims {da.dims}, expected ('chain', 'draw', '{batch_dim}', "
                "'token_pos')"
            )
        arrays.append(da.transpose("chain", "draw", batch_dim, "token_pos").values)
        owners += [key] * da.sizes[batch_dim]
    n_pos = {a.shape[-1] for a in arrays}
    if len(n_pos) > 1:
        raise ValueError(f"observables {keys} have different numbers of loss positions {n_pos}")
    return np.concatenate(arrays, axis=2).astype(np.float64), np.array(owners, dtype=object)


def _posterior_samples(losses: np.ndarray, method: ChainReduction) -> np.ndarray:
    """(chain, draw, row, pos) -> (row, pos, sample), dropping samples with unwritten values."""
    complete = np.isfinite(losses).all(axis=(2, 3))  # (chain, draw)
    if method == "mean":
        draws = complete.all(axis=0)
        samples = losses[:, draws].mean(axis=0)  # (draw, row, pos)
    else:
        samples = losses[complete]  # (chain*draw, row, pos), chain-major like xarray's stack
    if samples.shape[0] < 2:
        raise ValueError(
            f"BIF needs at least 2 complete posterior samples, the tree has {samples.shape[0]}; "
            "sample more draws (or chains)."
        )
    return np.moveaxis(samples, 0, -1)


def _normalise(series: np.ndarray, covariance: bool) -> np.ndarray:
    """Centre each series; scale so that dot products give covariance or correlation."""
    n = series.shape[-1]
    centred = series - series.mean(axis=-1, keepdims=True)
    if covariance:
        return centred / np.sqrt(n - 1)
    norm = np.sqrt((centred**2).sum(axis=-1, keepdims=True))
    with np.errstate(invalid="ignore", divide="ignore"):
        return centred / norm  # a constant series gives NaN correlations, as np.corrcoef


def _row_selection(spec: Literal["all"] | Sequence[int], n_rows: int, name: str) -> np.ndarray:
    if isinstance(spec, str):
        if spec != "all":
            raise ValueError(f"{name} must be 'all' or a sequence of row indices, got {spec!r}")
        return np.arange(n_rows)
    rows = np.asarray(list(spec), dtype=np.int64)
    if rows.size == 0:
        raise ValueError(f"{name} selects no rows")
    if rows.min() < 0 or rows.max() >= n_rows:
        raise ValueError(
            f"{name} must index rows 0..{n_rows - 1} (observables concatenated), got {spec}"
        )
    return rows


@torch.no_grad()
def _blockwise_products(
    normalised: np.ndarray,
    rows_1: np.ndarray,
    rows_2: np.ndarray,
    *,
    average: bool,
    batch_size: int,
    device: torch.device,
) -> np.ndarray:
    """out[i, j, t, u] = <z[rows_1[i], t], z[rows_2[j], u]>, one (batch_size x batch_size) block at a time."""
    n_pos = normalised.shape[1]
    dtype = torch.float64 if device.type == "cpu" else torch.float32
    shape = (len(rows_1), len(rows_2)) if average else (len(rows_1), len(rows_2), n_pos, n_pos)
    out = np.empty(shape, dtype=np.float32)
    for i in range(0, len(rows_1), batch_size):
        a = torch.as_tensor(normalised[rows_1[i : i + batch_size]], dtype=dtype, device=device)
        for j in range(0, len(rows_2), batch_size):
            b = torch.as_tensor(normalised[rows_2[j : j + batch_size]], dtype=dtype, device=device)
            block = torch.einsum("atk,buk->abtu", a, b)
            if average:
                block = block.mean(dim=(-2, -1))
            out[i : i + batch_size, j : j + batch_size] = block.cpu().numpy()
    return out


def _context(ds: xr.Dataset, keys: list[str]) -> xr.Dataset:
    """The rows' token ids (or dataset indices), concatenated in the same order as the losses."""
    token_data = all(f"input_ids_{k}" in ds.variables for k in keys)
    prefix = "input_ids" if token_data else "indices"
    require_arrays(ds, [f"{prefix}_{k}" for k in keys], "compute_bif (the rows' ids)")
    parts = []
    for key in keys:
        da = ds[f"{prefix}_{key}"]
        da = da.rename({f"batch_{key}": "batch"})
        if "token" in da.dims:
            da = da.rename({"token": "position"})
        parts.append(da.assign_coords(observable=("batch", [key] * da.sizes["batch"])))
    ids = xr.concat(parts, dim="batch").drop_vars(
        [c for c in ("batch", "position") if c in parts[0].coords]
    )
    ids = ids.assign_coords(batch=np.arange(ids.sizes["batch"]))
    if "position" in ids.dims:
        ids = ids.assign_coords(position=np.arange(ids.sizes["position"]))
    return ids.to_dataset(name=prefix)


def bif(
    model: Any,
    dataset: Any,
    observables: dict[str, Any],
    *,
    lr: float,
    n_beta: float,
    correlation_method: CorrelationMethod = "token",
    reduce_chain_dimension_method: ChainReduction = "stack",
    loss_keys: Literal["all"] | Sequence[str] = "all",
    average_tokenwise_bif: bool = False,
    compute_covariance: bool = False,
    bif_batch_size: int = 32,
    bif_device: str | torch.device | None = None,
    **sample_kwargs: Any,
) -> xr.Dataset:
    """Sample around `model`'s weights and return `compute_bif` of the run.

    Keywords as devinterp 2.x `bif`: `bif_batch_size`/`bif_device` are compute_bif's
    batch_size/device; every other keyword goes to `sample()`.
    """
    from devinterp_ui.sample import sample  # deferred: the package root imports this module

    tree = sample(model, dataset, observables, lr=lr, n_beta=n_beta, **sample_kwargs)
    return compute_bif(
        tree,
        correlation_method=correlation_method,
        reduce_chain_dimension_method=reduce_chain_dimension_method,
        loss_keys=loss_keys,
        average_tokenwise_bif=average_tokenwise_bif,
        compute_covariance=compute_covariance,
        batch_size=bif_batch_size,
        device=bif_device,
    )
