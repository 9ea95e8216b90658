"""The served page: URL choices checked with the valid ones listed; plot notes for a new user."""

import numpy as np
import pytest
import xarray as xr

from devinterp_ui.live.marker import StoreStatus
from devinterp_ui.live.reader import NewRows
from devinterp_ui.ui.app import error_page, query_choice
from devinterp_ui.ui.plots import LivePlots


def test_the_default_page_is_the_tiny_lm_at_its_last_checkpoint():
    assert query_choice({}) == ("tiny_lm", None)


@pytest.mark.parametrize("spelling", ["tiny-lm", "tiny_lm", "dln"])
def test_demo_spellings_are_accepted(spelling):
    assert query_choice({"demo": spelling})[0] == spelling.replace("-", "_")


def test_an_unknown_demo_names_the_valid_choices():
    with pytest.raises(ValueError, match=r"\?demo=gpt5 is not a demo; choose one of: tiny_lm, dln"):
        query_choice({"demo": "gpt5"})


@pytest.mark.parametrize("step", ["999999", "abc", "-1"])
def test_an_unknown_step_names_the_valid_checkpoints(step):
    with pytest.raises(ValueError, match=rf"\?step={step} is not a checkpoint .* choose one of: 0"):
        query_choice({"demo": "dln", "step": step})


def test_the_error_page_shows_the_message_escaped():
    page = error_page("?demo=<script>x</script> is not a demo")
    html = page.objects[1].object
    assert "&lt;script&gt;" in html and "<script>" not in html


def rows(values: np.ndarray, chains: int = 2) -> NewRows:
    n = values.size // chains
    chain = np.repeat(np.arange(chains), n)
    step = np.tile(np.arange(n), chains)
    steps = xr.Dataset(
        {"loss": ("row", values.astype(float)), "llc": ("row", values.astype(float))},
        coords={"chain": ("row", chain), "step": ("row", step)},
    )
    empty = np.zeros(0, dtype=np.int64)
    draws = xr.Dataset(coords={"chain": ("row", empty), "draw": ("row", empty)})
    status = StoreStatus("running", "running", (n,) * chains, (0,) * chains,
                         ("running",) * chains, (None,) * chains, None, 10**6, 10**6, False)  # fmt: skip
    return NewRows(steps, draws, status)


def test_a_diverging_run_is_named_and_log_y_offered():
    plots = LivePlots(num_chains=2)
    values = np.full(200, 3.0)
    values[-1] = 2e9
    plots.update(rows(values))
    assert "reaches 2e+09" in plots.note and "log y" in plots.note
    plots.log_y = True
    assert plots.loss.log_fig.visible and not plots.loss.fig.visible


def test_a_calm_run_has_no_note():
    plots = LivePlots(num_chains=2)
    plots.update(rows(3.0 + 0.01 * np.random.default_rng(0).standard_normal(200)))
    assert plots.note == ""


def test_without_a_prior_the_prior_plots_are_replaced_by_a_note():
    plots = LivePlots(num_chains=2, prior=False)
    assert "localization" not in plots.norms
    assert set(plots.cosines) == {"cos_grad_noise"}
    layout = plots.__panel__()
    texts = [getattr(o, "object", "") for o in layout.objects]
    assert any("localization = 0" in str(t) for t in texts)


def test_figures_stay_hidden_until_their_first_point():
    plots = LivePlots(num_chains=2)
    assert not plots.loss.fig.visible
    plots.update(rows(np.full(10, 3.0)))
    assert plots.loss.fig.visible
    assert not plots.norms["noise"].fig.visible  # no metrics in these rows
