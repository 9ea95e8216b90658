"""End to end, tuning in a real `panel serve` page and real Chromium: an lr 100x the demo's
shows the nonfinite flag in the health panel; a flag shows while the run is running; the
burn-in slider changes the shown LLC; Suggest (under the lr field) fills the lr field with the
advisor's lr. Screenshots go to test-artifacts/tuning_*.png."""

from __future__ import annotations

import re
import time

import pytest

pytest.importorskip("playwright")
from playwright.sync_api import expect  # noqa: E402
from test_dashboard_browser import ARTIFACTS, open_page, set_field  # noqa: E402


def _shot(page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    # Generous: a full page of live plots on a loaded 2-core machine takes tens of seconds.
    page.screenshot(path=str(ARTIFACTS / f"tuning_{name}.png"), full_page=True, timeout=180_000)


def test_lr_x100_shows_the_nonfinite_flag(server, browser):
    page = open_page(browser, server["url"] + "?demo=tiny_lm")
    demo_lr = float(page.get_by_label("lr", exact=True).input_value())
    set_field(page, "num_chains", 2)
    set_field(page, "num_burnin_steps", 2)
    set_field(page, "num_draws", 400)
    set_field(page, "lr", f"{demo_lr * 100:.6g}")
    page.get_by_role("button", name="▶ Start").click()
    try:
        try:
            page.get_by_text("error: nonfinite").first.wait_for(timeout=120_000)
        except Exception as exc:  # say what the page and the server showed at the time
            log = (server["runs"] / "server.log").read_text()[-3000:]
            status = _status(page).inner_text()
            raise AssertionError(
                f"no nonfinite flag; status {status!r}; server log:\n{log}"
            ) from exc
        expect(_status(page)).to_contain_text("failed")
        summary = page.locator(".health-summary")
        # The panel's burn-in is the run's, and failed chains give no LLC, as in the result block.
        expect(summary).to_contain_text("after a burn-in of 2 steps")
        expect(summary).to_contain_text("every chain failed: no LLC")
        assert page.locator(".health-llc").inner_text() == "n/a"
        expect(page.get_by_text("LLC =")).to_have_count(0)
    finally:
        _shot(page, "lr_x100_flag")
    page.close()


def test_a_flag_shows_while_running_and_the_burnin_slider_moves_the_llc(server, browser):
    """With Suggest's advice in, lr x10 on the demo (past its stability limit, yet the chains
    run on for minutes) shows the step_bias warning while the status says running; after a
    stop, moving the burn-in slider changes the LLC shown in the result and in the panel."""
    page = open_page(browser, server["url"] + "?demo=tiny_lm")
    demo_lr = float(page.get_by_label("lr", exact=True).input_value())
    page.get_by_role("button", name="Suggest").click()
    page.get_by_text("suggested lr").first.wait_for(timeout=120_000)
    set_field(page, "num_chains", 2)
    set_field(page, "num_burnin_steps", 2)
    set_field(page, "num_draws", 2000)
    set_field(page, "lr", f"{demo_lr * 10:.6g}")
    page.get_by_role("button", name="▶ Start").click()
    try:
        page.get_by_text("warn: step_bias").first.wait_for(timeout=120_000)
        expect(_status(page)).to_contain_text("running")
        expect(page.get_by_role("button", name="■ Stop")).to_be_enabled()
        expect(page.locator(".health-llc-warning")).to_contain_text("before trusting")
        _wait_for_steps(page, 2 * 16)
        _shot(page, "flag_while_running")
        expect(_status(page)).to_contain_text("running")
    except Exception:
        _shot(page, "flag_while_running")
        raise
    page.get_by_role("button", name="■ Stop").click()
    before = _result_llc(page)
    _panel_agrees(page, before)
    handle = page.get_by_role("slider")
    expect(handle).to_have_count(1)
    assert handle.get_attribute("aria-valuenow").startswith("2")
    handle.focus()
    for _ in range(6):
        handle.press("ArrowRight")
    expect(handle).to_have_attribute("aria-valuenow", re.compile(r"^8(\.0+)?$"))
    # Each key press is one recompute on the server: wait for the last one (burn-in 8) to
    # reach the panel, then for the result block to agree with it.
    expect(page.locator(".health-summary")).to_contain_text(
        "after a burn-in of 8 steps", timeout=120_000
    )
    after = _panel_llc(page)
    deadline = time.time() + 60
    while _result_llc(page) != pytest.approx(after, rel=1e-3) and time.time() < deadline:
        time.sleep(0.3)
    _shot(page, "burnin_slider")
    assert _result_llc(page) == pytest.approx(after, rel=1e-3)
    assert after != pytest.approx(before, rel=1e-4)
    page.close()


def _status(page):
    return page.get_by_text("chain steps").first


def _wait_for_steps(page, steps: int, timeout: float = 180) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        match = re.search(r"(\d+)/\d+ chain steps", _status(page).inner_text())
        if match and int(match.group(1)) >= steps:
            return
        time.sleep(0.5)
    raise AssertionError(f"fewer than {steps} chain steps after {timeout} s")


def _result_llc(page) -> float:
    """The result block's LLC (its head: "LLC = 412.3 ± 4.1 ...")."""
    text = page.get_by_text("LLC =").first
    text.wait_for(timeout=120_000)
    return float(re.search(r"LLC = (\S+)", text.inner_text()).group(1))


def _panel_llc(page) -> float:
    return float(page.locator(".health-llc").inner_text())


def _panel_agrees(page, llc: float, timeout: float = 60) -> None:
    """The Health panel's LLC comes to equal the result block's (its final recompute may
    reach the page a moment after the result's)."""
    deadline = time.time() + timeout
    while _panel_llc(page) != pytest.approx(llc, rel=1e-3) and time.time() < deadline:
        time.sleep(0.3)
    assert _panel_llc(page) == pytest.approx(llc, rel=1e-3)


def test_suggest_fills_the_lr_field(server, browser):
    page = open_page(browser, server["url"] + "?demo=tiny_lm")
    lr_field = page.get_by_label("lr", exact=True)
    demo_lr = float(lr_field.input_value())
    page.get_by_role("button", name="Suggest").click()
    advice = page.get_by_text("suggested lr").first
    try:
        advice.wait_for(timeout=120_000)
        suggested = float(re.search(r"suggested lr (\S+)", advice.inner_text()).group(1))
        deadline = time.time() + 30
        while float(lr_field.input_value()) == demo_lr and time.time() < deadline:
            time.sleep(0.3)
        assert float(lr_field.input_value()) == pytest.approx(suggested, rel=1e-3)
    finally:
        page.screenshot(path=str(ARTIFACTS / "tuning_suggest.png"), clip=_left_column())
    page.close()


def _left_column() -> dict:
    return {"x": 0, "y": 0, "width": 440, "height": 700}
