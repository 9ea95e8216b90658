"""How a line's points travel to the browser: a young line is sent whole at every push (a
notebook applied a stream event on top of the figure's first serialization, doubling points);
a long one is streamed, so a poll sends only its new points."""

from __future__ import annotations

import numpy as np
from bokeh.models import ColumnDataSource

from devinterp_ui.ui.figures import RESEND_BELOW, ChainLines, make_figure


def lines() -> ChainLines:
    return ChainLines("loss", make_figure("loss", "step", "loss"), 1, budget=10_000)


def test_a_young_line_is_replaced_whole_and_a_long_one_streamed(monkeypatch):
    chain = lines()
    source = chain.sources[0]
    streamed = []
    original = ColumnDataSource.stream

    def stream(self, data, *args, **kwargs):
        streamed.append(len(data["x"]))
        return original(self, data, *args, **kwargs)

    monkeypatch.setattr(ColumnDataSource, "stream", stream)
    steps = 0
    while steps < RESEND_BELOW + 50:
        x = np.arange(steps, steps + 10, dtype=float)
        chain.extend(0, x, x + 1.0)
        chain.push()
        steps += 10
        assert list(source.data["x"]) == list(np.arange(steps, dtype=float))  # nothing doubled
    young_pushes = -(-RESEND_BELOW // 10)  # pushes while the line held fewer points
    assert streamed == [10] * (steps // 10 - young_pushes)
