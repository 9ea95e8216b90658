"""The `observables` argument of `sample()`: checked and turned into `Observable`s (fixed rows
evaluated at every draw)."""

from __future__ import annotations

import numbers
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from devinterp_ui.chain import Observable
from devinterp_ui.config import SamplerConfig
from devinterp_ui.data import DataSource, fixed_rows
from devinterp_ui.sampling.inputs import as_dataset
from devinterp_ui.store.schema import safe_name


def build_observables(
    observables, config: SamplerConfig, source: DataSource, loss_fn
) -> list[Observable]:
    """One `Observable` per entry of {name: dataset} or {name: (dataset, batches_per_draw)}.

    Raises TypeError/ValueError naming the observable: non-string or empty names, names that
    collide as array names, a second tuple item that is not a positive int, data of another
    form than the sampling dataset, fewer rows than one draw evaluates.
    """
    if observables is None:
        return []
    if not isinstance(observables, Mapping):
        raise TypeError(
            "observables must be a dict {name: dataset} or {name: (dataset, batches_per_draw)} "
            f"(got {type(observables).__name__}); pass {{}} for none."
        )
    out: list[Observable] = []
    keys: dict[str, str] = {}
    for name, value in observables.items():
        if not isinstance(name, str):
            raise TypeError(f"observable names must be strings (got {name!r}).")
        if not name.strip():
            raise ValueError(
                f"observable name {name!r} is empty; name each observable, e.g. "
                "observables={'train': data}."
            )
        data, per_draw = _entry(name, value, config)
        key = safe_name(name)
        if key in keys:
            raise ValueError(
                f"observables {keys[key]!r} and {name!r} both become array name 'loss_{key}'; "
                "rename one of them."
            )
        keys[key] = name
        obs_source = as_dataset(data, f"observables[{name!r}]", loss_fn)
        if obs_source.kind != source.kind or obs_source.seq_len != source.seq_len:
            raise ValueError(
                f"observables[{name!r}] must be data of the same form as the sampling dataset "
                f"({_describe(source)}; got {_describe(obs_source)}): the stores share the "
                "'token' and 'token_pos' dims."
            )
        rows = config.batch_size * per_draw
        if rows > len(obs_source):
            raise ValueError(
                f"observables[{name!r}] has {len(obs_source)} rows but each draw evaluates "
                f"batch_size x batches_per_draw = {config.batch_size} x {per_draw} = {rows}; "
                "give it more rows or lower batches_per_draw."
            )
        out.append(
            Observable(
                name, key, obs_source, per_draw, fixed_rows(len(obs_source), rows, config.obs_seed)
            )
        )
    return out


def _entry(name: str, value: Any, config: SamplerConfig) -> tuple[Any, int]:
    """(dataset, batches_per_draw) from `dataset` or `(dataset, batches_per_draw)`.

    A 2-tuple whose second item is not data (a tensor or array) is the second form; supervised
    data (X, Y) is a tuple of tensors and stays data.
    """
    if not (isinstance(value, tuple) and len(value) == 2):
        return value, config.batches_per_draw
    data, per_draw = value
    if isinstance(per_draw, (torch.Tensor, np.ndarray)):
        return value, config.batches_per_draw
    if (
        isinstance(per_draw, bool)
        or not isinstance(per_draw, numbers.Integral)
        or int(per_draw) < 1
    ):
        raise ValueError(
            f"observables[{name!r}] is (dataset, batches_per_draw) but batches_per_draw is "
            f"{per_draw!r}; it must be an int >= 1, e.g. observables[{name!r}] = (data, 3)."
        )
    return data, int(per_draw)


def _describe(source: DataSource) -> str:
    if source.kind == "token":
        return f"token ids of length {source.seq_len}"
    return "supervised rows"
