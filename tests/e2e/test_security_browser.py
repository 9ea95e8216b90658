"""A crafted store cannot run script in the page: its text shows literally (real panel serve,
Debian Chromium)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from tiny_models import TinyLM

from devinterp_ui import sample

pytest.importorskip("playwright")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
from test_dashboard_browser import open_page  # noqa: E402

SCRIPT = '<img src=x onerror="window.pwned=1">'


def crafted_store(path):
    torch.manual_seed(0)
    data = torch.randint(0, 11, (64, 6))
    sample(TinyLM(), data, {}, lr=1e-3, n_beta=20.0, num_chains=2, num_draws=4, batch_size=8,
           output_path=path, progress_bar=False)  # fmt: skip
    meta = path / "zarr.json"
    doc = json.loads(meta.read_text())
    progress = doc["attributes"]["progress"]
    progress["chains"]["error"][0] = SCRIPT
    progress["chains"]["status"][0] = "failed"
    progress["error"] = SCRIPT
    meta.write_text(json.dumps(doc))
    return path


def test_markup_in_a_stores_chain_error_shows_literally_and_runs_nothing(server, browser):
    path = crafted_store(server["runs"] / "crafted.zarr")
    page = open_page(browser, server["url"] + "?demo=dln")
    dialogs = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.get_by_label("store path", exact=True).fill(str(path))
    page.get_by_role("button", name="Open store").click()
    page.get_by_text(SCRIPT).first.wait_for(timeout=30_000)
    page.wait_for_timeout(1000)  # give an injected onerror handler every chance to fire
    assert page.evaluate("() => window.pwned") is None
    assert dialogs == []
    # No element the store's text could have created exists in the page.
    assert page.locator("img[src='x']").count() == 0
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "crafted_store_escaped.png"), full_page=True)
    page.close()


def test_a_path_outside_the_runs_dir_is_refused_in_the_page(server, browser):
    page = open_page(browser, server["url"] + "?demo=dln")
    page.get_by_label("store path", exact=True).fill("/etc")
    page.get_by_role("button", name="Open store").click()
    page.get_by_text("refused: only stores under").wait_for(timeout=30_000)
    page.close()


def test_an_unknown_demo_in_the_url_shows_the_choices(server, browser):
    page = browser.new_page()
    page.goto(server["url"] + "?demo=gpt5", timeout=60_000)
    page.get_by_text("choose one of: tiny_lm, dln").wait_for(timeout=60_000)
    page.close()
