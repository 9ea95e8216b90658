"""End to end: a real `panel serve app/dashboard.py` process driven by real headless Chromium.

Chromium is Debian's (`apt-get install chromium chromium-driver`, done by scripts/test.sh);
Playwright only drives it (`executable_path`), it never downloads a browser.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import torch
from tiny_models import TinyLM

from devinterp_ui import sample
from devinterp_ui.live.reader import StoreReader

pytest.importorskip("playwright")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
from playwright.sync_api import expect  # noqa: E402

CHAIN_COLORS = [(0x1F, 0x77, 0xB4), (0xFF, 0x7F, 0x0E), (0x2C, 0xA0, 0x2C), (0xD6, 0x27, 0x28)]


def open_page(browser, url):
    page = browser.new_page(viewport={"width": 1600, "height": 1300})
    page.console_messages = []
    page.on("console", lambda msg: page.console_messages.append(f"{msg.type}: {msg.text}"))
    # Generous: on a loaded 2-core machine the tiny LM demo's page takes tens of seconds.
    page.goto(url, timeout=120_000)
    page.get_by_role("button", name="▶ Start").wait_for(timeout=120_000)
    return page


def set_field(page, name: str, value) -> None:
    field = page.get_by_label(name, exact=True)
    field.fill(str(value))
    field.press("Enter")


def line_lengths(page, key: str, chains: int) -> list[int]:
    """Points in each chain's line of plot `key`, read from the browser's Bokeh document."""
    return page.evaluate(
        """([key, chains]) => {
            const out = [];
            for (let c = 0; c < chains; c++) {
                let n = -1;
                for (const doc of Bokeh.documents) {
                    const m = doc.get_model_by_name(`${key}:chain${c}`);
                    if (m) n = m.data.x.length;
                }
                out.push(n);
            }
            return out;
        }""",
        [key, chains],
    )


def wait_for_result(page, timeout_ms=120_000) -> str:
    """The result block's text: "LLC = ... \n Run k <status> · store <path>"."""
    result = page.get_by_text("LLC =")
    result.wait_for(timeout=timeout_ms)
    return result.locator("xpath=..").inner_text()


def test_run_grows_every_chain_trace_and_stop_shows_the_result(server, browser):
    page = open_page(browser, server["url"] + "?demo=dln")
    set_field(page, "num_draws", 5000)
    set_field(page, "num_chains", 4)
    set_field(page, "num_burnin_steps", 2)  # the demo's 200 would keep the LLC plot empty here
    page.get_by_role("button", name="▶ Start").click()
    expect(page.get_by_role("button", name="■ Stop")).to_be_enabled(timeout=30_000)
    deadline = time.time() + 60
    first = line_lengths(page, "loss", 4)
    while min(first) < 3 and time.time() < deadline:
        time.sleep(0.3)
        first = line_lengths(page, "loss", 4)
    assert min(first) >= 3, first
    # Every chain's line grows while the run goes (waited for, not timed: the run samples in
    # its own process beside the browser and the server on a small machine).
    deadline = time.time() + 60
    second = line_lengths(page, "loss", 4)
    while not all(b > a for a, b in zip(first, second, strict=True)) and time.time() < deadline:
        time.sleep(0.3)
        second = line_lengths(page, "loss", 4)
    assert all(b > a for a, b in zip(first, second, strict=True)), (first, second)
    assert min(line_lengths(page, "llc", 4)) > 0
    assert min(line_lengths(page, "norm:noise", 4)) > 0

    page.get_by_role("button", name="■ Stop").click()
    text = wait_for_result(page)
    assert "stopped" in text
    assert "true λ = " in text  # the known-lambda demo shows its true coefficient
    expect(page.get_by_role("button", name="▶ Start")).to_be_enabled()
    ranges = [m for m in page.console_messages if "could not set initial ranges" in m]
    assert ranges == [], f"{len(ranges)} Bokeh range warnings"
    page.close()


def test_screenshot_of_a_running_dashboard_shows_plotted_lines(server, browser):
    page = open_page(browser, server["url"])
    set_field(page, "num_draws", 400)
    page.get_by_role("button", name="▶ Start").click()
    deadline = time.time() + 90
    while min(line_lengths(page, "loss", 4)) < 8 and time.time() < deadline:
        time.sleep(0.5)
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "dashboard_running.png"
    page.screenshot(path=str(shot), full_page=True)
    page.get_by_role("button", name="■ Stop").click()
    wait_for_result(page)
    page.screenshot(path=str(ARTIFACTS / "dashboard_result.png"), full_page=True)
    warnings = [m for m in page.console_messages if "could not set initial ranges" in m]
    page.close()
    assert warnings == [], f"{len(warnings)} Bokeh range warnings"

    from PIL import Image

    pixels = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    counts = [
        int((np.abs(pixels - np.array(color)).sum(axis=2) < 40).sum()) for color in CHAIN_COLORS
    ]
    # Every chain's colour shows beyond its legend swatch (lines overlap, so some show less than
    # others), and together they draw thousands of pixels of lines.
    assert min(counts) > 100, counts
    assert sum(counts) > 3000, counts
    assert pixels.std() > 20  # not a blank page


def test_open_store_watches_a_run_written_elsewhere(server, browser):
    path = server["runs"] / "elsewhere.zarr"  # stores open only under the runs dir (or roots)
    torch.manual_seed(0)
    data = torch.randint(0, 11, (64, 6))
    sample(
        TinyLM(),
        data,
        {"probe": data},
        lr=1e-3,
        n_beta=20.0,
        num_chains=3,
        num_draws=12,
        batch_size=8,
        output_path=path,
        save_metrics=True,
        progress_bar=False,
    )
    page = open_page(browser, server["url"] + "?demo=dln")
    page.get_by_label("store path", exact=True).fill(str(path))
    page.get_by_role("button", name="Open store").click()
    text = wait_for_result(page, 60_000)
    assert str(path) in text and "completed" in text
    assert line_lengths(page, "loss", 3) == [12, 12, 12]
    assert line_lengths(page, "obs:probe", 3) == [12, 12, 12]
    # ... and drawn: the store came in one poll, and the figures once reached the page hidden.
    shown = page.evaluate(
        """() => {
            const out = {};
            for (const doc of Bokeh.documents)
                for (const m of doc.all_models)
                    if (m.type === "Figure" && m.title) out[m.title.text] = m.visible;
            return out;
        }"""
    )
    assert shown.get("Sampling loss per step") and shown.get("probe: loss per draw"), shown
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "watched_store.png"), full_page=True)
    page.close()


def test_run_library_lists_earlier_runs_and_overlays_two(server, browser):
    torch.manual_seed(1)
    data = torch.randint(0, 11, (64, 6))
    sample(TinyLM(), data, {}, lr=2e-3, n_beta=20.0, num_chains=2, num_draws=10, batch_size=8,
           output_path=server["runs"] / "second.zarr", progress_bar=False)  # fmt: skip
    page = open_page(browser, server["url"] + "?demo=dln")
    page.get_by_role("button", name="Refresh").click()
    # Runs of earlier tests and sessions, including the store written by sample() directly.
    expect(page.get_by_role("cell", name="elsewhere.zarr")).to_be_visible(timeout=30_000)
    picker = page.get_by_role("textbox").and_(page.locator(".choices__input--cloned")).last
    for name in ("elsewhere", "second"):
        picker.click()
        picker.fill(name)
        picker.press("Enter")
    overlay = page.get_by_text("Mean sampling loss per step")
    page.wait_for_function(
        "() => Bokeh.documents.some(d => [...d._all_models.values()].some("
        "m => m.title && m.title.text === 'Mean sampling loss per step'))",
        timeout=30_000,
    )
    del overlay
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "run_library_overlay.png"), full_page=True)
    page.close()


def test_two_sessions_run_their_own_jobs(server, browser):
    pages = [open_page(browser, server["url"] + "?demo=dln") for _ in range(2)]
    for page, lr in zip(pages, ("0.0001", "0.0002"), strict=True):
        set_field(page, "lr", lr)
        set_field(page, "num_draws", 60)
        set_field(page, "num_chains", 2)
    for page in pages:
        page.get_by_role("button", name="▶ Start").click()
    texts = [wait_for_result(page) for page in pages]
    assert all("completed" in t for t in texts)
    stores = [t.split("store ")[-1].strip() for t in texts]
    assert stores[0] != stores[1]
    lrs = [StoreReader(s).config["lr"] for s in stores]
    assert lrs == [1e-4, 2e-4]
    for page in pages:
        page.close()


def test_closed_tab_stops_its_job_when_the_session_expires(server, browser):
    page = open_page(browser, server["url"] + "?demo=dln")
    set_field(page, "num_draws", 100_000)
    page.get_by_role("button", name="▶ Start").click()
    status = page.get_by_text("chain steps")
    status.wait_for(timeout=30_000)
    deadline = time.time() + 30
    while "store" not in status.inner_text() and time.time() < deadline:
        time.sleep(0.2)
    store = status.inner_text().split("store ")[-1].strip()
    # The run samples in a child process that first loads the demo: close the tab once the
    # store exists, so that what is checked is the stop, not the start.
    deadline = time.time() + 60
    while not (Path(store) / "zarr.json").is_file() and time.time() < deadline:
        time.sleep(0.2)
    page.close()
    reader = StoreReader(store)
    deadline = time.time() + 30
    while reader.status().recorded_status == "running" and time.time() < deadline:
        time.sleep(0.3)
    assert reader.status().recorded_status == "stopped"
