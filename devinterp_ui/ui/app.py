"""The served page: the dashboard under a header, for `panel serve app/dashboard.py`.

`serve()` (also `python -m devinterp_ui.ui.app`) serves it on localhost only; see the README's
"Exposing the dashboard" section before binding anything else.
"""

from __future__ import annotations

import argparse

import panel as pn

from devinterp_ui.demo import list_demos, load_demo
from devinterp_ui.demo.catalog import demo_key
from devinterp_ui.ui import escape
from devinterp_ui.ui.dashboard import Dashboard

HEADER_STYLE = {"background": "#1f3b57", "color": "white", "padding": "4px 16px"}
ERROR_STYLE = {
    "color": "#6a1b14",
    "background": "#fbe9e7",
    "border": "1px solid #e5a49c",
    "padding": "8px 16px",
}
# Tornado binds every address "localhost" resolves to: 127.0.0.1 and ::1.
LOCAL_ADDRESS = "localhost"


def _header() -> pn.pane.HTML:
    return pn.pane.HTML(
        "<b style='font-size:18px'>devinterp_ui</b>&nbsp;&nbsp;live SGLD: tune lr, n_beta and "
        "localization while the chains run",
        styles=HEADER_STYLE,
        sizing_mode="stretch_width",
    )


def query_choice(args: dict[str, str]) -> tuple[str, int | None]:
    """(demo, step) from the URL's `?demo=...&step=...`, checked against what exists.

    Raises ValueError naming the bad argument and listing the valid choices.
    """
    demos = list_demos()
    name = args.get("demo", "tiny_lm").strip()
    canonical = demo_key(name)
    if canonical not in demos:
        raise ValueError(
            f"?demo={name} is not a demo; choose one of: {', '.join(demos)} "
            f"(e.g. ?demo={next(iter(demos))})."
        )
    step_text = args.get("step", "").strip()
    if not step_text:
        return canonical, None
    steps = load_demo(canonical).steps
    if not step_text.lstrip("-").isdigit() or int(step_text) not in steps:
        raise ValueError(
            f"?step={step_text} is not a checkpoint of demo {canonical}; choose one of: "
            f"{', '.join(map(str, steps))}."
        )
    return canonical, int(step_text)


def error_page(message: str) -> pn.Column:
    """The page shown for a bad URL: the message (escaped) and how to get the default page."""
    return pn.Column(
        _header(),
        pn.pane.HTML(
            f"<b>Cannot open this page.</b><br>{escape.text(message)}<br>"
            "<a href='?'>Open the default demo</a>",
            styles=ERROR_STYLE,
            sizing_mode="stretch_width",
        ),
        sizing_mode="stretch_width",
    )


def dashboard_page(dashboard: Dashboard | None = None) -> pn.Column:
    """The whole page; `dashboard` defaults to the demo dashboard (tiny LM, final checkpoint).

    URL query arguments pick another demo or checkpoint: `?demo=dln`, `?demo=tiny_lm&step=67`;
    an unknown one gives a page that says so and lists the valid choices.
    """
    if dashboard is None:
        args = {
            k: v[0].decode(errors="replace") for k, v in (pn.state.session_args or {}).items() if v
        }
        try:
            name, step = query_choice(args)
        except ValueError as exc:
            return error_page(str(exc))
        # Each session's runs sample in a child process: see devinterp_ui/live/process_job.py.
        dashboard = Dashboard.from_demo(name, step, processes=True)
    page = pn.Column(
        _header(),
        pn.Row(
            pn.Column(dashboard.controls, width=430), dashboard.main, sizing_mode="stretch_width"
        ),
        sizing_mode="stretch_width",
    )
    page.dashboard = dashboard  # reachable from tests and `pn.state` hooks
    return page


def serve(port: int = 5006, address: str = LOCAL_ADDRESS, show: bool = False, **kwargs) -> None:
    """Serve the demo dashboard at http://localhost:<port>/dashboard, on localhost only
    unless `address` says otherwise (then also pass `websocket_origin` and authentication)."""
    pn.extension(notifications=False)
    pn.serve(
        {"dashboard": lambda: dashboard_page()},
        port=port,
        address=address,
        show=show,
        title="devinterp_ui: live SGLD",
        **kwargs,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=serve.__doc__)
    parser.add_argument("--port", type=int, default=5006)
    parser.add_argument("--address", default=LOCAL_ADDRESS)
    args = parser.parse_args()
    serve(port=args.port, address=args.address)


if __name__ == "__main__":
    main()
