"""The run library lists every store under the runs directory, whoever wrote it, and shows the
traces of the runs ticked in its table."""

import json
import math
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest
import zarr

import devinterp_ui.ui.run_index as run_index
from devinterp_ui.analysis import compute_llc
from devinterp_ui.config import SETTINGS
from devinterp_ui.ui.run_index import RunIndex, read_traces
from devinterp_ui.ui.run_library import RunLibrary


@pytest.fixture
def runs(tmp_path, make_store):
    make_store(tmp_path / "a.zarr", lr=1e-3)
    make_store(tmp_path / "b.zarr", lr=2e-3, num_chains=3)
    return tmp_path


def test_a_new_library_lists_stores_written_before_it_existed(runs):
    table = RunLibrary(runs).table.object
    assert list(table["run"]) == ["b.zarr", "a.zarr"]  # newest first
    assert set(table["status"]) == {"completed"}


def test_rows_hold_every_setting_with_defaults_filled_in(runs):
    table = RunLibrary(runs).table.object.set_index("run")
    assert table.loc["b.zarr", "num_chains"] == 3
    assert table.loc["a.zarr", "num_draws"] == 6
    for name in SETTINGS:
        assert name in table.columns
    assert table.loc["a.zarr", "obs_seed"] == SETTINGS["obs_seed"]["default"]


def test_rows_say_when_a_run_started_and_how_long_it_took(runs):
    table = RunLibrary(runs).table.object
    assert all(table["started"].str.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d"))
    assert all(table["duration"].str.endswith("s"))


def test_a_foreign_zarr_group_is_listed_as_unknown(runs):
    group = zarr.open_group(str(runs / "foreign.zarr"), mode="w")
    group.create_array("x", shape=(3,), dtype="f4")
    table = RunLibrary(runs).table.object.set_index("run")
    assert table.loc["foreign.zarr", "status"] == "unknown"


def test_an_unchanged_store_is_not_read_again(runs, monkeypatch):
    index = RunIndex(runs)
    index.scan()
    import devinterp_ui.ui.run_index as module

    calls = []
    monkeypatch.setattr(module, "summarize_store", lambda *a: calls.append(a))
    index.scan()
    assert calls == []


def test_a_store_whose_marker_changed_is_read_again(runs):
    index = RunIndex(runs)
    (before,) = [s for s in index.scan() if s.name == "a.zarr"]
    meta = runs / "a.zarr" / "zarr.json"
    doc = json.loads(meta.read_text())
    doc["attributes"]["progress"]["status"] = "stopped"
    meta.write_text(json.dumps(doc))
    (after,) = [s for s in index.scan() if s.name == "a.zarr"]
    assert before.status == "completed" and after.status == "stopped"


def test_traces_come_from_the_store_and_their_llc_is_the_readers(runs):
    traces = read_traces(runs / "a.zarr")
    assert len(traces.loss) == 2
    x, y = traces.loss[0]
    assert len(x) == len(y) == 6
    assert np.isfinite(traces.llc_mean)
    import xarray as xr

    tree = xr.open_datatree(str(runs / "a.zarr"), engine="zarr")
    assert traces.llc_mean == pytest.approx(float(compute_llc(tree)["llc_mean"]), rel=0.05)


def test_ticking_one_run_shows_its_chains(runs):
    library = RunLibrary(runs)
    library.select([str(runs / "b.zarr")])
    (row,) = library.traces.objects
    loss_fig = row.objects[0].object
    assert len(loss_fig.renderers) == 3  # one line per chain
    assert library.selected == [str(runs / "b.zarr")]


def test_ticking_several_runs_overlays_them_in_full_height_plots(runs):
    library = RunLibrary(runs)
    library.select([str(runs / "a.zarr"), str(runs / "b.zarr")])
    (row,) = library.traces.objects
    figs = [pane.object for pane in row.objects]
    assert len(figs) == 2
    for fig in figs:
        assert fig.height >= 300  # not the collapsed strip of before
        assert len(fig.renderers) == 2  # one line per run
        ys = [y for r in fig.renderers for y in r.data_source.data["y"]]
        assert fig.y_range.start <= min(ys) and fig.y_range.end >= max(ys)  # axes fit the data
    legend = figs[0].legend[0]
    labels = [item.label["value"] for item in legend.items]
    assert any("lr=0.001" in label for label in labels)
    assert any("lr=0.002" in label for label in labels)


def test_selection_survives_a_refresh_that_adds_a_run(runs, make_store):
    library = RunLibrary(runs)
    library.select([str(runs / "a.zarr")])
    make_store(runs / "c.zarr")
    library.refresh()
    assert library.selected == [str(runs / "a.zarr")]
    assert library.picker.value == ["a.zarr"]


def test_the_table_sorts_by_any_column(runs):
    library = RunLibrary(runs)
    library.sort_by, library.descending = "lr", False
    assert list(library.table.object["lr"]) == [1e-3, 2e-3]
    library.descending = True
    assert list(library.table.object["lr"]) == [2e-3, 1e-3]


def test_cells_are_escaped_html(runs):
    import json as _json

    meta = runs / "a.zarr" / "zarr.json"
    doc = _json.loads(meta.read_text())
    doc["attributes"]["metadata"]["config"]["sampler"]["sampling_method"] = "<b>x</b>"
    meta.write_text(_json.dumps(doc))
    import html

    from bokeh.document import Document

    # The model's text is escaped once for transport; the page's HTML is that text unescaped.
    page_html = html.unescape(RunLibrary(runs).table.get_root(Document()).text)
    assert "&lt;b&gt;x&lt;/b&gt;" in page_html and "<b>x</b>" not in page_html


def test_the_filter_keeps_rows_holding_its_text(runs):
    library = RunLibrary(runs)
    library.filter_text = "0.002"
    assert list(library.table.object["run"]) == ["b.zarr"]
    library.filter_text = "no such run"
    assert len(library.table.object) == 0
    library.filter_text = ""
    assert len(library.table.object) == 2


def test_the_llc_of_a_run_finished_in_the_dashboard_shows_in_its_row(tmp_path, data):
    import torch
    from tiny_models import TinyLM

    from devinterp_ui.ui.dashboard import Dashboard

    torch.manual_seed(0)
    dash = Dashboard(TinyLM(), data, {}, runs_dir=tmp_path, lr=1e-3, n_beta=20.0, num_chains=2,
                     num_draws=5, batch_size=8, num_init_loss_batches=1)  # fmt: skip
    dash.start()
    dash.wait(60)
    (llc,) = dash.library.table.object["LLC"]
    assert llc == pytest.approx(dash.current.llc_mean, abs=1e-4)


def store_llc(path):
    import xarray as xr

    llc = compute_llc(xr.open_datatree(str(path), engine="zarr"))
    return float(llc["llc_mean"]), float(llc["llc_std"])


def test_every_finished_run_shows_its_llc_before_any_is_opened(runs):
    table = RunLibrary(runs).table.object.set_index("run")
    for name in ("a.zarr", "b.zarr"):
        mean, std = store_llc(runs / name)
        assert table.loc[name, "LLC"] == pytest.approx(mean, abs=1e-4)
        assert table.loc[name, "± std"] == pytest.approx(std, abs=1e-4)


def test_a_run_written_by_another_process_shows_its_llc(tmp_path):
    script = textwrap.dedent(
        f"""
        import torch
        from tiny_models import TinyLM
        from devinterp_ui import sample
        torch.manual_seed(0)
        data = torch.randint(0, 11, (64, 6), generator=torch.Generator().manual_seed(3))
        sample(TinyLM(), data, {{}}, output_path={str(tmp_path / "other.zarr")!r}, lr=1e-3,
               n_beta=20.0, num_chains=2, num_draws=4, batch_size=8, progress_bar=False)
        """
    )
    tests_dir = str(__import__("pathlib").Path(__file__).parents[1])
    env = {**__import__("os").environ}
    env["PYTHONPATH"] = tests_dir + ":" + env.get("PYTHONPATH", "")
    subprocess.run([sys.executable, "-c", script], check=True, env=env, timeout=300)
    table = RunLibrary(tmp_path).table.object.set_index("run")
    assert table.loc["other.zarr", "LLC"] == pytest.approx(
        store_llc(tmp_path / "other.zarr")[0], abs=1e-4
    )


def strip_recorded_llc(path):
    """The store as a writer from before the LLC record left it."""
    meta = path / "zarr.json"
    doc = json.loads(meta.read_text())
    del doc["attributes"]["llc_summary"]
    meta.write_text(json.dumps(doc))
    return meta.read_bytes()


def test_an_older_store_gets_its_llc_computed_in_a_background_thread_and_not_written(
    runs, monkeypatch
):
    before = strip_recorded_llc(runs / "a.zarr")
    threads = []
    original = run_index.store_llc_summary

    def recording(path):
        threads.append(threading.current_thread())
        return original(path)

    monkeypatch.setattr(run_index, "store_llc_summary", recording)
    library = RunLibrary(runs)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        llc = library.table.object.set_index("run").loc["a.zarr", "LLC"]
        if math.isfinite(llc):
            break
        time.sleep(0.05)
    assert llc == pytest.approx(store_llc(runs / "a.zarr")[0], abs=1e-4)
    # Computed once, off the thread that drew the table, and kept in memory, not in the store.
    assert len(threads) == 1 and threads[0] is not threading.current_thread()
    assert (runs / "a.zarr" / "zarr.json").read_bytes() == before
    library.refresh()
    RunLibrary(runs, index=library.index)
    assert len(threads) == 1


def test_a_running_store_is_not_summarised(runs):
    strip_recorded_llc(runs / "a.zarr")
    index = RunIndex(runs)
    (a,) = [s for s in index.scan() if s.name == "a.zarr"]
    running = run_index.RunSummary(**{**a.__dict__, "status": "running"})
    assert all(math.isnan(v) for v in index.llc(running))
    assert index.wait_llc(1) and all(math.isnan(v) for v in index.llc(running))
