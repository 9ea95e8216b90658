"""The settings form in a real browser: what a field shows is what is stored, and text that is
not a number is reported under its field (real `panel serve`, Debian's Chromium)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("playwright")
from playwright.sync_api import expect, sync_playwright  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("DEVINTERP_UI_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
ARTIFACTS = ROOT / "test-artifacts"


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    if not Path(CHROMIUM).exists():
        pytest.fail(f"Debian's chromium is missing at {CHROMIUM}: run scripts/test.sh")
    runs = tmp_path_factory.mktemp("runs")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(os.environ, DEVINTERP_UI_RUNS_DIR=str(runs), OMP_NUM_THREADS="1")
    log = open(runs / "server.log", "w")  # noqa: SIM115 - closed at teardown
    proc = subprocess.Popen(
        [sys.executable, "-m", "panel", "serve", str(ROOT / "app" / "dashboard.py")]
        + ["--port", str(port), "--address", "127.0.0.1"]
        + ["--allow-websocket-origin", f"127.0.0.1:{port}"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError as exc:
                if proc.poll() is not None:
                    raise RuntimeError((runs / "server.log").read_text()) from exc
                time.sleep(0.2)
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
            page = browser.new_page(viewport={"width": 1600, "height": 1300})
            page.goto(f"http://127.0.0.1:{port}/dashboard", timeout=60_000)
            page.get_by_role("button", name="▶ Start").wait_for(timeout=60_000)
            yield page
            browser.close()
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        log.close()


def type_into(page, name: str, text: str) -> None:
    field = page.get_by_label(name, exact=True)
    field.fill(text)
    field.press("Enter")


def test_small_lr_is_shown_in_scientific_notation(page):
    # The demo LM's lr is 3e-5: a fixed-decimals format showed it as 0.
    expect(page.get_by_label("lr", exact=True)).to_have_value("3e-05")


def test_text_that_is_not_a_number_is_reported_under_the_field(page):
    type_into(page, "lr", "abc")
    message = page.get_by_text("'abc' is not a number")
    expect(message).to_be_visible(timeout=10_000)
    expect(page.get_by_role("button", name="▶ Start")).to_be_disabled()
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "settings_form_not_a_number.png"))
    type_into(page, "lr", "1e-7")
    expect(message).to_be_hidden(timeout=10_000)
    expect(page.get_by_role("button", name="▶ Start")).to_be_enabled()


def test_markup_typed_into_a_field_is_shown_as_text(page):
    page.evaluate("window.__injected = false")
    type_into(page, "n_beta", "<img src=x onerror='window.__injected=true'>")
    expect(
        page.get_by_text("<img src=x onerror='window.__injected=true'>", exact=False)
    ).to_be_visible(timeout=10_000)
    assert page.evaluate("window.__injected") is False
    type_into(page, "n_beta", "20")
