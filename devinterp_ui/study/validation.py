"""Every cell of a study checked before any cell runs, with the cell named in the message.

The checks are `sample()`'s own: the settings declaration (`SamplerConfig(...).validate()`), the
run options (`check_run_options`) and the batch-size rule, applied to each cell's settings, so a
value `sample()` would refuse in the fifth cell is refused before the first cell starts.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from typing import Any

from devinterp_ui.study.grid import Cell

# sample() arguments the study sets itself for every cell.
STUDY_CONTROLLED = ("model", "dataset", "observables", "output_path", "stop_event")


def sample_keywords() -> set[str]:
    """Every keyword `sample()` takes (read from its signature, so new settings just work)."""
    from devinterp_ui.sample import sample

    return {
        name
        for name, p in inspect.signature(sample).parameters.items()
        if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)
    }


def setting_names() -> set[str]:
    """The scalar sampler settings (the `SamplerConfig` declaration)."""
    from devinterp_ui import config

    settings = getattr(config, "SETTINGS", None)
    if settings is not None:
        return set(settings)
    cls = config.SamplerConfig  # a param.Parameterized declaration
    return {n for n in cls.param if n != "name"}


def check_keys(grid_keys: Sequence[str], sample_kwargs: Mapping[str, Any], *, what: str) -> None:
    """Grid keys must be sampler settings; other keywords must be `sample()` keywords the study
    does not set itself. Raises ValueError/TypeError naming the key and what to do."""
    allowed = sample_keywords() - set(STUDY_CONTROLLED)
    settings = setting_names() | {"chain_schedule"}
    for key in grid_keys:
        if key not in settings:
            hint = (
                f"{key!r} is set by the study itself"
                if key in STUDY_CONTROLLED
                else f"{key!r} is not a sample() setting"
            )
            raise ValueError(
                f"{what} key {key!r}: {hint}; grid keys must be sampler settings such as "
                f"lr, n_beta, localization (all: {', '.join(sorted(settings))})."
            )
    for key in sample_kwargs:
        if key in STUDY_CONTROLLED:
            raise TypeError(
                f"{key}= is set by the study for each cell; drop it (stores go under output_dir)."
            )
        if key not in allowed:
            raise TypeError(
                f"{key!r} is not a sample() keyword; check the spelling (see docs/sampling.md)."
            )
    overlap = sorted(set(grid_keys) & set(sample_kwargs))
    if overlap:
        raise ValueError(
            f"{', '.join(overlap)} given both in the grid and as a fixed keyword; pass each once."
        )


def check_cells(
    cells: Sequence[Cell],
    sample_kwargs: Mapping[str, Any],
    dataset_rows: int,
    model: Any,
) -> None:
    """Validate each cell's full settings as `sample()` would, before anything runs.

    model: a `torch.nn.Module` standing for the cells' models (run options are checked on it).

    Raises ValueError/TypeError "cell <name>: <sample()'s message>", of the type sample() raises.
    """
    from devinterp_ui.config import SamplerConfig
    from devinterp_ui.sample import batch_size_error, check_run_options

    run_options = ("loss_fn", "chain_schedule", "progress_callback", "flush_interval")

    names = setting_names()
    for cell in cells:
        settings = {**sample_kwargs, **cell.coords}
        config_kwargs = {k: v for k, v in settings.items() if k in names}
        try:
            config = SamplerConfig(**config_kwargs)
            config.validate()
            check_run_options(model, **{k: v for k, v in settings.items() if k in run_options})
            message = batch_size_error(int(config.batch_size), dataset_rows)
            if message:
                raise ValueError(message)
        except (ValueError, TypeError) as exc:
            raise type(exc)(f"cell {cell.name}: {exc}") from exc
