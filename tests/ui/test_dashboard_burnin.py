"""The health panel's burn-in slider drives the whole single-run view: the shaded burn-in on the
plots at once (also while running), and after the run the shown LLC, the per-chain table and the
CSV export, recomputed from the stored draws without rerunning."""

import pytest

from devinterp_ui.analysis import compute_llc
from devinterp_ui.ui.results import summary_csv


@pytest.fixture
def dashboard(make_dashboard):
    return make_dashboard(num_draws=10, num_burnin_steps=2)


def _csv(record) -> str:
    return summary_csv(record).getvalue()


def test_moving_the_slider_after_the_run_recomputes_llc_table_shading_and_csv(dashboard):
    dashboard.start()
    assert dashboard.wait(120)
    record, tree = dashboard.current, dashboard.result
    before = compute_llc(tree)
    assert record.llc_mean == pytest.approx(float(before["llc_mean"]))
    assert dashboard.health.burnin == 2

    dashboard.health.slider.value = 7  # what dragging the slider does
    after = compute_llc(tree, num_burnin_steps=7)
    assert float(after["llc_mean"]) != pytest.approx(float(before["llc_mean"]))
    assert record.llc_mean == pytest.approx(float(after["llc_mean"]))
    assert f"LLC = {float(after['llc_mean']):.4g}" in dashboard.result_view.text
    table = dashboard.result_view.table.object
    assert list(table["steps used"]) == [12 - 7, 12 - 7]
    assert list(table["LLC"]) == pytest.approx(after["llc_per_chain"].values, abs=1e-4)
    assert all(box.right == 7 and box.visible for box in dashboard.plots.burnin_boxes)
    csv = _csv(record)
    assert "# llc_burnin_steps=7" in csv and f"# llc_mean={record.llc_mean}" in csv
    # The health panel's LLC agrees with the shown one.
    assert float(dashboard.health.diagnostics["llc_mean"]) == pytest.approx(
        record.llc_mean, rel=1e-4
    )

    dashboard.health.slider.value = 0
    assert all(not box.visible for box in dashboard.plots.burnin_boxes)
    full = compute_llc(tree, num_burnin_steps=0)
    assert record.llc_mean == pytest.approx(float(full["llc_mean"]))


def test_a_burnin_chosen_while_running_shades_at_once_and_holds_for_the_result(dashboard):
    dashboard.start()
    dashboard.health.burnin = 5
    assert all(box.right == 5 for box in dashboard.plots.burnin_boxes)
    assert dashboard.wait(120)
    tree = dashboard.result
    expected = compute_llc(tree, num_burnin_steps=5)
    assert dashboard.current.llc_mean == pytest.approx(float(expected["llc_mean"]))
    assert dashboard.health.burnin == 5
    assert "# llc_burnin_steps=5" in _csv(dashboard.current)


def test_compute_llc_refuses_a_negative_burnin(dashboard):
    dashboard.start()
    assert dashboard.wait(120)
    with pytest.raises(ValueError, match="num_burnin_steps must be an int >= 0"):
        compute_llc(dashboard.result, num_burnin_steps=-1)
