"""One set of status names and one `read_root_attrs`, imported by everything that needs them."""

from devinterp_ui.live import job_state, marker, reader
from devinterp_ui.store import cache, progress


def test_reader_statuses_are_the_store_modules_names():
    assert marker.READER_STATUSES is progress.READER_STATUSES
    assert marker.FINISHED_STATUSES is progress.FINISHED_STATUSES
    assert set(progress.STATUSES) <= set(progress.READER_STATUSES)
    assert progress.STALE not in progress.FINISHED_STATUSES  # a paused writer may come back


def test_job_states_are_the_store_modules_names():
    assert job_state.JOB_STATES is progress.JOB_STATES
    assert job_state.FINISHED_STATES is progress.JOB_FINISHED_STATES
    assert set(job_state.FINISHED_STATES) <= set(progress.STATUSES)


def test_root_attributes_are_read_by_one_function():
    assert marker.read_root_attrs is progress.read_root_attrs
    assert reader.read_root_attrs is progress.read_root_attrs
    assert cache.read_root_attrs is progress.read_root_attrs
