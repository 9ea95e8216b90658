"""The cells of a study: one `sample()` setting combination each, with a readable, stable name.

A sweep's grid `{"lr": [1e-4, 3e-4], "n_beta": [30.0]}` has one cell per combination, in the
grid's order (the first key varies slowest). Each cell's store is `<output_dir>/<name>.zarr`,
where the name spells the combination: `lr=0.0001__n_beta=30.0`. A trajectory has one cell per
training step: `step=000448`. Names depend only on the values, so the same study run again
(from another process, another day) finds the same stores.
"""

from __future__ import annotations

import itertools
import math
import numbers
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

# Characters a cell name may keep; anything else becomes "-" so names are safe on every
# filesystem and in a URL (the dashboard links to cells by name).
_UNSAFE = re.compile(r"[^A-Za-z0-9._+=-]")


@dataclass(frozen=True)
class Cell:
    """One run of a study.

    name: the store's file name without `.zarr`, e.g. "lr=0.0001__n_beta=30.0".
    coords: {grid dim: value} of this cell (for a trajectory {"step": int}).
    """

    name: str
    coords: dict[str, Any]

    def store_name(self) -> str:
        return f"{self.name}.zarr"


def format_value(value: Any) -> str:
    """A value as it appears in a cell name: the shortest text that reads back the same number
    (Python's float repr), so 3e-05 and 3.0000001e-05 never share a name."""
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, numbers.Integral):
        return str(int(value))
    if isinstance(value, numbers.Real):
        return repr(float(value))
    return _UNSAFE.sub("-", str(value))


def json_value(value: Any) -> Any:
    """A grid value as JSON keeps it (numbers as float/int, the rest as they are)."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    return value


def grid_cells(grid: Mapping[str, Sequence[Any]]) -> list[Cell]:
    """Every combination of the grid's values, first key slowest.

    Raises ValueError for an empty grid, an empty or non-list axis, a repeated value on one
    axis, or two cells whose names would collide.
    """
    if not isinstance(grid, Mapping) or not grid:
        raise ValueError(
            'grid must be a non-empty dict {setting: [values]}, e.g. grid={"lr": [1e-4, 3e-4], '
            '"n_beta": [30.0, 100.0]}.'
        )
    axes: dict[str, list[Any]] = {}
    for key, values in grid.items():
        if not isinstance(key, str):
            raise TypeError(f"grid keys must be sample() setting names (got {key!r}).")
        if isinstance(values, (str, bytes)) or not isinstance(values, (Sequence, range)):
            try:
                values = list(values)
            except TypeError:
                raise TypeError(
                    f"grid[{key!r}] must be a list of values (got {type(values).__name__}); "
                    f"pass e.g. grid={{{key!r}: [{values!r}]}}."
                ) from None
        values = [json_value(v) for v in values]
        if not values:
            raise ValueError(f"grid[{key!r}] is empty; give it at least one value.")
        names = [format_value(v) for v in values]
        if len(set(names)) != len(names):
            dupes = sorted({n for n in names if names.count(n) > 1})
            raise ValueError(f"grid[{key!r}] repeats the value(s) {dupes}; list each value once.")
        for v in values:
            if isinstance(v, float) and not math.isfinite(v):
                raise ValueError(f"grid[{key!r}] holds {v!r}; every value must be finite.")
        axes[key] = values
    cells = []
    for combo in itertools.product(*axes.values()):
        coords = dict(zip(axes, combo, strict=True))
        name = "__".join(f"{k}={format_value(v)}" for k, v in coords.items())
        cells.append(Cell(name, coords))
    return cells


def trajectory_cells(steps: Sequence[int]) -> list[Cell]:
    """One cell per training step, in increasing step order; names zero-padded to sort."""
    out = []
    for step in sorted(steps):
        out.append(Cell(f"step={int(step):06d}", {"step": int(step)}))
    return out


def grid_axes(cells: Sequence[Cell]) -> dict[str, list[Any]]:
    """{dim: values in first-seen order}: the axes a list of cells spans."""
    axes: dict[str, list[Any]] = {}
    for cell in cells:
        for k, v in cell.coords.items():
            seen = axes.setdefault(k, [])
            if v not in seen:
                seen.append(v)
    return axes
