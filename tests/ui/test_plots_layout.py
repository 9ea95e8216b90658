"""The live figures' layout at notebook width (about 850 px): the small figures wrap to fewer
columns rather than run past the cell's edge, and log axes carry few labels. What it looks like
is checked in the browser tests' screenshots (tests/notebooks, tests/e2e)."""

import panel as pn
from bokeh.models import LogTicker

from devinterp_ui.ui.plots import SMALL_MIN_WIDTH, LivePlots


def small_grids(plots: LivePlots) -> list:
    layout = plots.__panel__()
    return [obj for obj in layout.objects if isinstance(obj, pn.FlexBox)]


def test_the_update_terms_wrap_instead_of_holding_four_fixed_columns():
    plots = LivePlots(num_chains=2, observables=["o"])
    grids = small_grids(plots)
    assert len(grids) == 3  # norms, cosines, observables
    for grid in grids:
        assert grid.flex_wrap == "wrap"
        for pane in grid.objects:
            assert pane.styles["min-width"] == f"{SMALL_MIN_WIDTH}px"
    # Four norms share a row only where four fit at SMALL_MIN_WIDTH (over 1000 px); at 850 px
    # the row holds three and the fourth wraps.
    assert 3 * SMALL_MIN_WIDTH < 850 < 4 * SMALL_MIN_WIDTH


def test_log_axes_ask_for_few_ticks_and_draw_no_minor_ticks():
    plots = LivePlots(num_chains=2)
    for lines in plots.norms.values():
        (axis,) = lines.fig.yaxis
        assert isinstance(axis.ticker, LogTicker) and axis.ticker.desired_num_ticks <= 4
        assert axis.minor_tick_line_color is None
