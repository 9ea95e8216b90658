"""The poll gate: a session's periodic poll backs off when polls are costly, by the number of
sessions polling, so that the server's event loop keeps time for clicks (issue 13)."""

from __future__ import annotations

import weakref

import pytest

from devinterp_ui.ui import poll_gate
from devinterp_ui.ui.poll_gate import DUTY, MAX_PAUSE_S, PollGate, polling_sessions


@pytest.fixture(autouse=True)
def no_other_sessions(monkeypatch):
    """Dashboards that earlier tests left polling (still referenced by their fixtures) would
    count as sessions here and change every share: each test starts with no session polling."""
    monkeypatch.setattr(poll_gate, "_polling", weakref.WeakSet())


class Clock:
    def __init__(self):
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_a_cheap_poll_is_due_again_at_once():
    clock = Clock()
    gate = PollGate(clock)
    gate.open()
    try:
        started = gate.now()
        clock.t += 0.001
        gate.spent(started)
        clock.t += 0.4  # the dashboard's period
        assert gate.due()
    finally:
        gate.close()


def test_costly_polls_leave_the_loop_free_for_clicks_in_proportion_to_sessions():
    clock = Clock()
    gates = [PollGate(clock) for _ in range(4)]
    for gate in gates:
        gate.open()
    try:
        assert polling_sessions() == 4
        gate = gates[0]
        started = gate.now()
        clock.t += 0.2  # a poll that took 200 ms of the loop
        gate.spent(started)
        pause = 4 * 0.2 / DUTY  # from the poll's start
        clock.t = started + pause - 0.01
        assert not gate.due()
        clock.t = started + pause + 1e-9
        assert gate.due()
        # Four sessions each polling at that pace use DUTY of the loop between them.
        assert abs(4 * 0.2 / pause - DUTY) < 1e-12
    finally:
        for gate in gates:
            gate.close()
    assert polling_sessions() == 0


def test_a_session_polling_alone_is_never_held_back():
    """A notebook's one dashboard: its kernel samples in a thread, and GIL-inflated polls must
    not thin out its live view (the page showed a run stuck part-way)."""
    clock = Clock()
    gate = PollGate(clock)
    gate.open()
    try:
        started = gate.now()
        clock.t += 5.0  # a very slow poll
        gate.spent(started)
        assert gate.due()
    finally:
        gate.close()


def test_even_a_very_slow_poll_is_retried_within_the_cap():
    clock = Clock()
    gate, other = PollGate(clock), PollGate(clock)
    gate.open()
    other.open()
    try:
        started = gate.now()
        clock.t += 30.0
        gate.spent(started)
        clock.t = started + MAX_PAUSE_S - 0.01
        assert not gate.due()
        clock.t = started + MAX_PAUSE_S
        assert gate.due()
    finally:
        gate.close()
        other.close()


def test_the_dashboards_periodic_tick_skips_while_the_gate_is_shut(monkeypatch, tmp_path):
    from devinterp_ui.ui.dashboard import Dashboard

    dashboard = Dashboard.from_demo("dln", runs_dir=tmp_path)
    polls = []
    monkeypatch.setattr(dashboard, "poll", lambda: polls.append(1))
    clock = Clock()
    dashboard._gate = PollGate(clock)
    dashboard._gate.open()
    other = PollGate(clock)  # a second session polling: the loop is shared
    other.open()
    try:

        def slow_poll():
            clock.t += 1.0
            polls.append(1)

        monkeypatch.setattr(dashboard, "poll", slow_poll)
        dashboard._tick()
        dashboard._tick()  # within the pause that 1 s of polling earned: skipped
        assert len(polls) == 1
        clock.t += 2 * 1.0 / DUTY
        dashboard._tick()
        assert len(polls) == 2
    finally:
        dashboard._gate.close()
        other.close()
    assert poll_gate.polling_sessions() == 0
