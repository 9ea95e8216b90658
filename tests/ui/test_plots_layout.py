"""The live figures' layout at notebook width (about 850 px): the small figures wrap to fewer
columns rather than run past the cell's edge, and log axes carry few labels. What it looks like
is checked in the browser tests' screenshots (tests/notebooks, tests/e2e)."""

import panel as pn
from bokeh.models import LogTicker

from devinterp_ui.ui.plots import MAX_COLUMNS, LivePlots


def small_grids(plots: LivePlots) -> list:
    layout = plots.__panel__()
    return [obj for obj in layout.objects if isinstance(obj, pn.GridBox)]


def test_no_small_figure_grid_is_wider_than_a_notebook_cell_holds():
    plots = LivePlots(num_chains=2, observables=["o"])
    grids = small_grids(plots)
    assert len(grids) == 3  # norms, cosines, observables
    figures = [pane.object or fig for pane, fig in plots._panes]
    min_width = max(f.min_width for f in figures)
    for grid in grids:
        # In 4 columns the 4th norm plot was cut at notebook width (about 850 px).
        assert grid.ncols <= MAX_COLUMNS and grid.ncols * min_width <= 850


def test_log_axes_ask_for_few_ticks_and_draw_no_minor_ticks():
    plots = LivePlots(num_chains=2)
    for lines in plots.norms.values():
        (axis,) = lines.fig.yaxis
        assert isinstance(axis.ticker, LogTicker) and axis.ticker.desired_num_ticks <= 4
        assert axis.minor_tick_line_color is None
