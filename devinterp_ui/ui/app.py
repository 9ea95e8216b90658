"""The served page: the dashboard under a header, for `panel serve app/dashboard.py`."""

from __future__ import annotations

import panel as pn

from devinterp_ui.ui.dashboard import Dashboard

HEADER_STYLE = {"background": "#1f3b57", "color": "white", "padding": "4px 16px"}


def dashboard_page(dashboard: Dashboard | None = None) -> pn.Column:
    """The whole page; `dashboard` defaults to the demo dashboard (tiny LM, final checkpoint).

    URL query arguments pick another demo or checkpoint: `?demo=dln`, `?demo=tiny_lm&step=67`.
    """
    if dashboard is None:
        args = {k: v[0].decode() for k, v in (pn.state.session_args or {}).items() if v}
        step = int(args["step"]) if args.get("step", "").isdigit() else None
        dashboard = Dashboard.from_demo(args.get("demo", "tiny_lm"), step)
    header = pn.pane.HTML(
        "<b style='font-size:18px'>devinterp_ui</b>&nbsp;&nbsp;live SGLD: tune lr, n_beta and "
        "localization while the chains run",
        styles=HEADER_STYLE,
        sizing_mode="stretch_width",
    )
    page = pn.Column(
        header,
        pn.Row(
            pn.Column(dashboard.controls, width=430), dashboard.main, sizing_mode="stretch_width"
        ),
        sizing_mode="stretch_width",
    )
    page.dashboard = dashboard  # reachable from tests and `pn.state` hooks
    return page
