"""The dashboard calls a store unreadable only when declared rows stay undelivered for many
polls *and* for a while: a writer starved on a loaded machine (in a notebook it shares the
kernel's GIL) once tripped a count-only check and stopped a healthy run part-way."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from devinterp_ui.ui import poll_loop
from devinterp_ui.ui.poll_loop import STUCK_POLLS, STUCK_SECONDS


class Clock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def undelivered(declared: int):
    """A poll's NewRows with no rows while the marker declares `declared` step rows."""
    return SimpleNamespace(
        steps=SimpleNamespace(sizes={"row": 0}),
        status=SimpleNamespace(steps_written=[declared]),
    )


def watching(dashboard):
    """The dashboard as a run's plots are first shown (what `_show_plots` resets)."""
    dashboard._rows_seen = dashboard._stuck_polls = 0
    dashboard._stuck_since = 0.0
    return dashboard


@pytest.fixture
def clock(monkeypatch):
    clock = Clock()
    monkeypatch.setattr(poll_loop.time, "monotonic", clock)
    return clock


def test_many_fast_stuck_polls_are_not_yet_an_unreadable_store(make_dashboard, clock):
    dashboard = watching(make_dashboard())
    for _ in range(5 * STUCK_POLLS):  # 50 polls at 400 ms: 20 s, under STUCK_SECONDS
        dashboard._check_rows_arrive(undelivered(8))
        clock.t += 0.4


def test_rows_undelivered_for_many_polls_and_long_enough_are_an_error(make_dashboard, clock):
    dashboard = watching(make_dashboard())
    with pytest.raises(OSError, match="marker declares 8 rows but the arrays gave 0"):
        for _ in range(10 * STUCK_POLLS):
            dashboard._check_rows_arrive(undelivered(8))
            clock.t += STUCK_SECONDS / STUCK_POLLS


def test_a_delivered_poll_resets_the_watch(make_dashboard, clock):
    dashboard = watching(make_dashboard())
    for _ in range(STUCK_POLLS):  # one short of the count, long past STUCK_SECONDS
        dashboard._check_rows_arrive(undelivered(8))
        clock.t += STUCK_SECONDS
    # Before the check could fire again, the rows arrived: the count starts over.
    delivered = SimpleNamespace(
        steps=SimpleNamespace(sizes={"row": 8}), status=SimpleNamespace(steps_written=[8])
    )
    dashboard._check_rows_arrive(delivered)
    assert dashboard._stuck_polls == 0
