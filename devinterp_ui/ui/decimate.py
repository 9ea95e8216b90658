"""A fixed budget of plotted points per series, however long the run grows.

`BucketSeries` keeps the means of equal-width buckets of consecutive points. When the buckets
outgrow `budget`, neighbouring pairs merge and the width doubles, so appending costs O(new
points), a redraw O(budget), and a 100k-step trace still draws as about `budget` points.
"""

from __future__ import annotations

import numpy as np


class BucketSeries:
    """Bucket means of a growing (x, y) series; x increases. No UI imports: tested alone."""

    def __init__(self, budget: int = 1000):
        if budget < 2:
            raise ValueError("budget must be at least 2 points")
        self.budget = budget
        self.width = 1
        self._x: list[float] = []  # closed buckets: mean x and mean y
        self._y: list[float] = []
        self._open_x = 0.0  # the bucket being filled
        self._open_y = 0.0
        self._open_n = 0
        self._emitted = 0  # closed buckets already handed out by `take_new`
        self._rewritten = False  # closed buckets merged since the last `take_new`

    def extend(self, x: np.ndarray, y: np.ndarray) -> None:
        for xi, yi in zip(np.asarray(x, float), np.asarray(y, float), strict=True):
            self._open_x += xi
            self._open_y += yi
            self._open_n += 1
            if self._open_n == self.width:
                self._x.append(self._open_x / self.width)
                self._y.append(self._open_y / self.width)
                self._open_x = self._open_y = 0.0
                self._open_n = 0
                if len(self._x) > self.budget:
                    self._merge_pairs()

    def _merge_pairs(self) -> None:
        n = len(self._x) // 2 * 2
        x, y = np.asarray(self._x[:n]), np.asarray(self._y[:n])
        merged_x = list((x[0::2] + x[1::2]) / 2)
        merged_y = list((y[0::2] + y[1::2]) / 2)
        if n < len(self._x):  # an odd bucket left over reopens as half of a wider bucket
            self._open_x += self._x[-1] * self.width
            self._open_y += self._y[-1] * self.width
            self._open_n += self.width
        self._x, self._y = merged_x, merged_y
        self.width *= 2
        self._rewritten = True

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """All closed buckets, plus the open one's current mean (so the newest point shows)."""
        x, y = list(self._x), list(self._y)
        if self._open_n:
            x.append(self._open_x / self._open_n)
            y.append(self._open_y / self._open_n)
        return np.asarray(x), np.asarray(y)

    def take_new(self) -> tuple[bool, np.ndarray, np.ndarray]:
        """(reset, x, y) for a plot fed by appends: the closed buckets not handed out yet, or,
        with reset=True, every closed bucket because earlier ones were merged."""
        reset = self._rewritten
        start = 0 if reset else self._emitted
        self._rewritten = False
        self._emitted = len(self._x)
        return reset, np.asarray(self._x[start:]), np.asarray(self._y[start:])

    def __len__(self) -> int:
        return len(self._x) + (1 if self._open_n else 0)
