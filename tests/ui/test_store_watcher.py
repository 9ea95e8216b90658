"""Watching a store: only under the allowed roots, foreign or broken stores refused in one line,
and nothing read from a store reaches the page unescaped."""

import json
import os

import pytest
import torch
import zarr
from tiny_models import TinyLM

from devinterp_ui.ui.dashboard import Dashboard
from devinterp_ui.ui.store_roots import ROOTS_ENV, StorePathRefused, allowed_roots, confine

SCRIPT = '<img src=x onerror="window.pwned=1">'


@pytest.fixture
def runs(tmp_path):
    path = tmp_path / "runs"
    path.mkdir()
    return path


@pytest.fixture
def dashboard(runs, data):
    torch.manual_seed(0)
    return Dashboard(
        TinyLM(), data, {}, runs_dir=runs, lr=1e-3, n_beta=20.0, num_chains=2, num_draws=6,
        batch_size=8, num_init_loss_batches=1,
    )  # fmt: skip


def crafted(path):
    """Put markup in the marker's chain error and run error, and in a setting."""
    meta = path / "zarr.json"
    doc = json.loads(meta.read_text())
    progress = doc["attributes"]["progress"]
    progress["chains"]["error"][0] = SCRIPT
    progress["chains"]["status"][0] = "failed"
    progress["error"] = SCRIPT
    meta.write_text(json.dumps(doc))
    return path


@pytest.mark.parametrize("outside", ["/etc", "/etc/passwd", "/nonexistent/x.zarr"])
def test_a_path_outside_the_roots_is_refused_alike_whether_it_exists_or_not(runs, outside):
    with pytest.raises(StorePathRefused) as info:
        confine(outside, allowed_roots(runs))
    assert "refused: only stores under" in str(info.value)
    assert outside not in str(info.value)


def test_dot_dot_out_of_the_runs_dir_is_refused(runs):
    with pytest.raises(StorePathRefused):
        confine(str(runs / ".." / ".."), allowed_roots(runs))


def test_a_symlink_out_of_the_runs_dir_is_refused(runs, tmp_path):
    outside = tmp_path / "outside.zarr"
    outside.mkdir()
    os.symlink(outside, runs / "link.zarr")
    with pytest.raises(StorePathRefused):
        confine(str(runs / "link.zarr"), allowed_roots(runs))


def test_roots_from_the_environment_and_the_argument_are_allowed(runs, tmp_path, monkeypatch):
    env_root, arg_root = tmp_path / "env", tmp_path / "arg"
    monkeypatch.setenv(ROOTS_ENV, str(env_root))
    roots = allowed_roots(runs, [arg_root])
    assert confine(str(env_root / "x.zarr"), roots) == (env_root / "x.zarr").resolve()
    assert confine(str(arg_root / "y.zarr"), roots) == (arg_root / "y.zarr").resolve()


def test_the_dashboard_refuses_etc_in_one_line_and_stays_usable(dashboard):
    dashboard.open_store("/etc")
    assert dashboard.watcher.message.startswith("refused")
    assert not dashboard.running
    assert not dashboard.control.start_button.disabled


def test_a_foreign_zarr_group_gives_one_message_and_start_still_works(dashboard, runs):
    group = zarr.open_group(str(runs / "foreign.zarr"), mode="w")
    group.create_array("x", shape=(3,), dtype="f4")
    dashboard.open_store(str(runs / "foreign.zarr"))
    assert "not a sample store" in dashboard.watcher.message
    assert not dashboard.running
    dashboard.start()
    assert dashboard.wait(120)
    assert dashboard.current.status == "completed"


def test_a_broken_marker_gives_one_message(dashboard, runs, make_store):
    path = make_store(runs / "broken.zarr")
    (path / "zarr.json").write_text("{ not json")
    dashboard.open_store(str(path))
    assert "not a readable sample store" in dashboard.watcher.message
    assert not dashboard.running


def test_an_unreadable_array_ends_the_watch_with_one_message(dashboard, runs, make_store):
    path = make_store(runs / "bad_array.zarr")
    for chunk in (path / "sampling_loss_micro" / "c").rglob("*"):
        if chunk.is_file():
            chunk.write_bytes(b"garbage")
    dashboard.open_store(str(path))
    dashboard.poll()
    assert not dashboard.running
    assert "cannot read the store" in dashboard.control.error_html
    dashboard.poll()  # no traceback at later polls: nothing is followed any more
    assert not dashboard.control.start_button.disabled


def test_markup_from_a_crafted_store_is_escaped_in_status_and_errors(dashboard, runs, make_store):
    path = crafted(make_store(runs / "crafted.zarr"))
    dashboard.open_store(str(path))
    dashboard.poll()
    page_text = dashboard.control.status_html + dashboard.control.error_html
    assert "<img" not in page_text
    assert "&lt;img src=x onerror=&quot;window.pwned=1&quot;&gt;" in dashboard.control.status_html


def test_a_crafted_path_typed_by_a_user_is_escaped(dashboard, runs):
    dashboard.open_store(str(runs / f"{SCRIPT}.zarr"))
    assert "<img" not in dashboard.watcher.message
    assert "&lt;img" in dashboard.watcher.message
