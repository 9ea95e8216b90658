"""`sweep()` and `llc_trajectory()`: many `sample()` runs as one study, on any executor.

Both check everything before any cell runs (grid, settings of every cell, data, the model's
picklability for process executors, the output_dir), reuse completed cells, leave incomplete
ones alone unless `rerun_incomplete=True`, and return a started `Study`.
"""

from __future__ import annotations

import concurrent.futures as cf
import uuid
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from devinterp_ui.data import as_source, model_fingerprint
from devinterp_ui.study.cell_job import CellJob, resolve_model
from devinterp_ui.study.executors import (
    LocalExecutor,
    check_executor,
    dumps_for,
    torch_threads_for,
)
from devinterp_ui.study.grid import Cell, grid_cells, trajectory_cells
from devinterp_ui.study.handle import Study
from devinterp_ui.study.manifest import (
    BOOKKEEPING,
    StudyConflictError,
    claim_output_dir,
    json_safe,
)
from devinterp_ui.study.stores import remove_store, store_state
from devinterp_ui.study.validation import check_cells, check_keys

ModelSource = torch.nn.Module | Callable[[], torch.nn.Module] | tuple[Any, Callable]


def sweep(
    model: ModelSource,
    dataset: Any,
    observables: Mapping[str, Any] | None = None,
    *,
    grid: Mapping[str, list],
    output_dir: str | Path,
    executor: cf.Executor | None = None,
    rerun_incomplete: bool = False,
    torch_threads: int | None = None,
    **sample_kwargs: Any,
) -> Study:
    """One `sample()` per combination of `grid`'s values, each into its own store.

    Args:
        model: the checkpoint (`torch.nn.Module`), or a zero-argument factory building it in
            each worker (for models that cannot be pickled, or are cheaper to build than send).
        dataset, observables: as for `sample()`; the same for every cell.
        grid: {sample() setting: [values]}, e.g. {"lr": [1e-4, 3e-4], "n_beta": [30, 100],
            "localization": [0, 100]}; cells are every combination, the first key slowest.
        output_dir: the study's directory: `<cell name>.zarr` per cell plus `study.json`.
            Refused when it holds a different study.
        executor: None (a `LocalExecutor` splitting this machine's cores), any
            `concurrent.futures.Executor`, or `distributed.Client(...).get_executor()`.
        rerun_incomplete: delete and rerun cells whose stores are incomplete (stopped, failed,
            killed); without it they are left as they are and reported.
        torch_threads: `torch.set_num_threads` in each cell (default: see `executors`).
        **sample_kwargs: every other `sample()` keyword (num_chains, num_draws, batch_size, ...).

    Returns: a started `Study`; `.wait()` then `.result()` for the table.

    Raises (before any cell runs): ValueError/TypeError naming the cell and parameter for a bad
    grid or setting, TypeError for a model that cannot reach the workers, StudyConflictError for
    an output_dir that holds something else.
    """
    cells = grid_cells(grid)
    check_keys(list(grid), sample_kwargs, what="grid")
    options = _Options(output_dir, executor, rerun_incomplete, torch_threads, sample_kwargs)
    return _launch(
        "sweep", cells, {"model": model}, lambda cell: "model", dataset, observables, options
    )


def llc_trajectory(
    checkpoints: Mapping[int, ModelSource],
    dataset: Any,
    observables: Mapping[str, Any] | None = None,
    *,
    output_dir: str | Path,
    executor: cf.Executor | None = None,
    rerun_incomplete: bool = False,
    torch_threads: int | None = None,
    **sample_kwargs: Any,
) -> Study:
    """One `sample()` per training checkpoint, same settings for each; result over `step`.

    checkpoints: {training step: model}, where a model is a `torch.nn.Module`, a zero-argument
        factory, or `(path, loader)` with `loader(path)` returning the model (loaded in the
        worker). Other arguments as for `sweep()`. Cells are named `step=000448`.
    """
    if not isinstance(checkpoints, Mapping) or not checkpoints:
        raise ValueError(
            "checkpoints must be a non-empty dict {training step: model, factory or "
            "(path, loader)}."
        )
    for step, source in checkpoints.items():
        if isinstance(step, bool) or not isinstance(step, int) or step < 0:
            raise ValueError(f"checkpoints keys must be training steps (ints >= 0); got {step!r}.")
        _check_source(source, f"checkpoints[{step}]")
    check_keys([], sample_kwargs, what="trajectory")
    cells = trajectory_cells(list(checkpoints))
    sources = {str(step): checkpoints[step] for step in sorted(checkpoints)}
    options = _Options(output_dir, executor, rerun_incomplete, torch_threads, sample_kwargs)
    return _launch(
        "trajectory",
        cells,
        sources,
        lambda cell: str(cell.coords["step"]),
        dataset,
        observables,
        options,
    )


# --- shared ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Options:
    """The keywords `sweep()` and `llc_trajectory()` share, passed on unchanged."""

    output_dir: str | Path
    executor: cf.Executor | None
    rerun_incomplete: bool
    torch_threads: int | None
    sample_kwargs: dict[str, Any]


def _launch(
    kind: str,
    cells: list[Cell],
    sources: dict[str, ModelSource],
    source_of: Callable[[Cell], str],
    dataset: Any,
    observables: Mapping[str, Any] | None,
    options: _Options,
) -> Study:
    """Check everything, claim output_dir, start the study (the set-up both kinds share).

    sources: {identity key: model source} ("model" for a sweep, each step for a trajectory);
    source_of(cell) is the key of the cell's model. The first source is built once here to run
    the up-front checks on.
    """
    output_dir, executor = options.output_dir, options.executor
    rerun_incomplete, sample_kwargs = options.rerun_incomplete, options.sample_kwargs
    first_key, first = next(iter(sources.items()))
    reference = _reference_model(first, _what(kind, first_key, "parameter"))
    identity_models = {
        key: _model_identity(src, reference if src is first else None)
        for key, src in sources.items()
    }
    models = {cell.name: sources[source_of(cell)] for cell in cells}
    if not isinstance(output_dir, (str, Path)) or not str(output_dir):
        raise TypeError("output_dir must be a directory path (str or Path).")
    if not isinstance(rerun_incomplete, bool):
        raise TypeError(f"rerun_incomplete must be True or False (got {rerun_incomplete!r}).")
    output_dir = Path(output_dir)
    source = as_source(dataset, "dataset")
    check_cells(cells, sample_kwargs, len(source), reference)
    identity = {
        "dims": list(cells[0].coords),
        "settings": json_safe(sample_kwargs),
        "data": source.fingerprint(),
        "observables": _observable_identity(observables),
        "models": identity_models,
    }
    if executor is not None:
        check_executor(executor)
    owns = executor is None

    preset: dict[str, dict[str, Any]] = {}
    to_run: list[Cell] = []
    left: list[str] = []
    for cell in cells:
        state = store_state(output_dir / cell.store_name())
        if state.status == "foreign":
            raise StudyConflictError(
                f"cell {cell.name}: {str(output_dir / cell.store_name())!r} exists and is not a "
                "sample store; delete it or pass another output_dir."
            )
        if state.completed:
            preset[cell.name] = _preset(cell, "completed", "reused")
        elif state.exists and state.writer_alive:
            preset[cell.name] = _preset(cell, "left", "being written by another process")
            left.append(cell.name)
        elif state.exists and not rerun_incomplete:
            preset[cell.name] = _preset(cell, "left", f"incomplete store ({state.status})")
            left.append(cell.name)
        else:
            to_run.append(cell)
    if executor is None:
        executor = LocalExecutor(cells=max(1, len(to_run)))
    threads = torch_threads_for(executor, options.torch_threads)

    run_id = uuid.uuid4().hex
    book = output_dir / BOOKKEEPING
    jobs: dict[str, CellJob] = {}
    payloads: dict[str, bytes] = {}
    checked: set[int] = set()
    try:
        for cell in to_run:
            if id(models[cell.name]) not in checked:  # a clear message for the model itself
                what = _what(kind, source_of(cell), "prose")
                dumps_for(executor, what, models[cell.name])
                checked.add(id(models[cell.name]))
            job = CellJob(
                name=cell.name,
                store=str(output_dir / cell.store_name()),
                model=models[cell.name],
                dataset=dataset,
                observables=observables,
                settings={**sample_kwargs, **cell.coords}
                if kind == "sweep"
                else dict(sample_kwargs),
                run_id=run_id,
                stop_file=str(book / f"stop-{run_id}"),
                claim_file=str(book / f"{cell.name}.claim.json"),
                torch_threads=threads,
            )
            payload = dumps_for(executor, "the dataset / observables of the study", job)
            jobs[cell.name] = job
            if payload is not None:
                payloads[cell.name] = payload
        # Only now, with every check passed, touch the directory.
        claim_output_dir(output_dir, kind, identity, cells, run_id=run_id)
    except BaseException:
        if owns:
            executor.shutdown(wait=False)
        raise
    if left:
        warnings.warn(
            f"{len(left)} cell(s) hold incomplete runs and are left as they are "
            f"({', '.join(left[:4])}{', ...' if len(left) > 4 else ''}); pass "
            "rerun_incomplete=True to delete and rerun them.",
            UserWarning,
            stacklevel=3,
        )
    for cell in to_run:
        path = output_dir / cell.store_name()
        if (path / "zarr.json").is_file():  # incomplete, rerun_incomplete=True: replace it
            remove_store(path)
    study = Study(kind, output_dir, cells, jobs, payloads, preset, executor, owns, run_id)
    return study.start()


def _what(kind: str, key: str, style: str) -> str:
    """A model source named for an error: as a parameter (`checkpoints[448]`) or in prose."""
    if kind == "sweep":
        return "model" if style == "parameter" else "the model"
    return f"checkpoints[{key}]" if style == "parameter" else f"checkpoint {key}"


def _preset(cell: Cell, status: str, why: str) -> dict[str, Any]:
    return {
        "name": cell.name,
        "status": status,
        "error": None if status == "completed" else why,
        "wall_time": None,
        "note": why,
    }


def _check_source(source: Any, what: str) -> None:
    if isinstance(source, torch.nn.Module) or callable(source):
        return
    if isinstance(source, tuple) and len(source) == 2 and callable(source[1]):
        return
    raise TypeError(
        f"{what} must be a torch.nn.Module, a zero-argument factory returning one, or "
        f"(path, loader) with loader(path) -> model (got {type(source).__name__})."
    )


def _reference_model(source: ModelSource, what: str) -> torch.nn.Module:
    """A model to run the up-front checks on (a factory or loader is called once here)."""
    _check_source(source, what)
    try:
        return resolve_model(source)
    except TypeError as exc:
        raise TypeError(f"{what}: {exc}") from exc


def _model_identity(source: ModelSource, built: torch.nn.Module | None) -> Any:
    if isinstance(source, torch.nn.Module):
        return model_fingerprint(source)
    if isinstance(source, tuple):
        where = source[0]
        size = None
        if isinstance(where, (str, Path)) and Path(where).is_file():
            size = Path(where).stat().st_size
        return {"path": json_safe(str(where)), "bytes": size, "loader": json_safe(source[1])}
    if built is not None:
        return model_fingerprint(built)
    return {"factory": json_safe(source)}


def _observable_identity(observables: Mapping[str, Any] | None) -> dict[str, Any]:
    if not observables:
        return {}
    if not isinstance(observables, Mapping):
        raise TypeError(
            "observables must be a dict {name: dataset} or {name: (dataset, batches_per_draw)}."
        )
    out = {}
    for name, value in observables.items():
        data, per_draw = (
            value
            if isinstance(value, tuple) and len(value) == 2 and isinstance(value[1], int)
            else (value, None)
        )
        out[str(name)] = {
            "data": as_source(data, f"observables[{name!r}]").fingerprint(),
            "batches_per_draw": per_draw,
        }
    return out
