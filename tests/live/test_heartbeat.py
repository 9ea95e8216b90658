"""The heartbeat: how long a writer has been silent, judged so a skewed clock does not lie."""

from __future__ import annotations

import os
import time

import pytest

from devinterp_ui.store.liveness import HeartbeatWatch, beat, heartbeat_age, heartbeat_path


def set_mtime(store, when: float) -> None:
    os.utime(heartbeat_path(store), (when, when))


def test_a_store_without_heartbeat_has_no_age(tmp_path):
    assert heartbeat_age(tmp_path) is None
    assert HeartbeatWatch(tmp_path).age() is None


def test_a_fresh_beat_has_age_near_zero(tmp_path):
    beat(tmp_path)
    assert heartbeat_age(tmp_path) == pytest.approx(0, abs=2)
    assert HeartbeatWatch(tmp_path).age() == pytest.approx(0, abs=2)


def test_a_writer_whose_clock_is_behind_is_judged_by_its_beats(tmp_path):
    beat(tmp_path)
    set_mtime(tmp_path, time.time() - 100)  # the writer's host clock is 100 s behind
    watch = HeartbeatWatch(tmp_path)
    assert watch.age() == pytest.approx(100, abs=5)  # looks silent until it beats once
    set_mtime(tmp_path, time.time() - 99)  # it beats
    assert watch.age() == 0.0
    time.sleep(0.1)
    assert 0.05 < watch.age() < 5  # silence now counted from that beat, on our clock


def test_a_dead_writer_whose_clock_was_ahead_still_falls_silent(tmp_path):
    beat(tmp_path)
    set_mtime(tmp_path, time.time() + 100)  # the writer's clock ran 100 s ahead, then it died
    watch = HeartbeatWatch(tmp_path)
    assert watch.age() < 1
    time.sleep(0.2)
    assert watch.age() >= 0.2  # grows from the first look: stale after the timeout
