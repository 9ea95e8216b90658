"""The settings form in a real browser: what a field shows is what is stored, and text that is
not a number is reported under its field (real `panel serve`, Debian's Chromium)."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("playwright")
from playwright.sync_api import expect  # noqa: E402

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


@pytest.fixture(scope="module")
def page(server, browser):
    """One tab on the shared `panel serve` (tests/e2e/conftest.py) for the whole module."""
    page = browser.new_page(viewport={"width": 1600, "height": 1300})
    page.goto(server["url"], timeout=60_000)
    page.get_by_role("button", name="▶ Start").wait_for(timeout=60_000)
    yield page
    page.close()


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
