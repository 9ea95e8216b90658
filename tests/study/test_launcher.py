"""The Studies tab's launcher without a browser: what it refuses and how it says so, and
watching a study directory started elsewhere (the browser test covers the page itself)."""

from __future__ import annotations

import pytest

pytest.importorskip("panel")

from devinterp_ui.study import sweep  # noqa: E402
from devinterp_ui.ui.study_launcher import StudyLauncher  # noqa: E402


def launcher(model, tokens, settings, runs_dir) -> StudyLauncher:
    return StudyLauncher(model=model, dataset=tokens, settings=settings, runs_dir=str(runs_dir))


def test_typed_markup_in_an_error_is_shown_as_text(model, tokens, settings, tmp_path):
    page = launcher(model, tokens, settings, tmp_path)
    page.inputs["lr"].value = "<img src=x onerror=alert(1)>"
    assert page.start() is None and page.error.visible
    assert "<img" not in page.error.object and "&lt;img" in page.error.object
    assert "lr values" in page.error.object
    assert not any(tmp_path.iterdir())  # nothing ran, nothing written


def test_watch_shows_a_study_in_the_runs_dir_and_refuses_paths_outside(
    model, tokens, settings, here, tmp_path
):
    runs = tmp_path / "runs"
    out = runs / "from-a-script"
    study = sweep(
        model,
        tokens,
        grid={"lr": [1e-3], "n_beta": [10.0]},
        output_dir=out,
        executor=here,
        **settings,
    )
    assert study.wait(timeout=120)
    page = launcher(model, tokens, settings, runs)

    view = page.watch(str(out))
    assert view is not None and not page.error.visible
    assert page.view is view and not view.stop_button.visible  # not this page's to stop
    assert view.frame["status"].tolist() == ["completed"]

    assert page.watch(str(tmp_path)) is None  # outside the roots: one line, nothing shown
    assert page.error.visible and "refused" in page.error.object and page.view is view
    assert page.watch(str(runs)) is None  # inside, but no study there
    assert "no study" in page.error.object
