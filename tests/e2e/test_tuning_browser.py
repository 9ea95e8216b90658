"""End to end, tuning in a real `panel serve` page and real Chromium: an lr 100x the demo's
shows the nonfinite flag in the health panel; Suggest (under the lr field) fills the lr field
with the advisor's lr. Screenshots go to test-artifacts/tuning_*.png."""

from __future__ import annotations

import re
import time

import pytest

pytest.importorskip("playwright")
from test_dashboard_browser import ARTIFACTS, open_page, set_field  # noqa: E402


def _shot(page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"tuning_{name}.png"), full_page=True)


@pytest.mark.xfail(
    strict=False,
    reason="known defect, open in issue 15: when lr x100 fails every chain (on the observables' "
    "losses) the Health panel's final verdict sometimes lacks the nonfinite flag",
)
def test_lr_x100_shows_the_nonfinite_flag(server, browser):
    page = open_page(browser, server["url"] + "?demo=tiny_lm")
    demo_lr = float(page.get_by_label("lr", exact=True).input_value())
    set_field(page, "num_chains", 2)
    set_field(page, "num_burnin_steps", 2)
    set_field(page, "num_draws", 400)
    set_field(page, "lr", f"{demo_lr * 100:.6g}")
    page.get_by_role("button", name="▶ Start").click()
    try:
        page.get_by_text("error: nonfinite").first.wait_for(timeout=120_000)
    finally:
        _shot(page, "lr_x100_flag")
    page.close()


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
