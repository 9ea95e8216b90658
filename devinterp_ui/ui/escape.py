"""Text from a store or a user, made safe for the page.

Anything read from a store (chain errors, settings, paths) or typed by a user can hold markup;
a store's marker with `<img src=x onerror=...>` in a chain error must show as those characters,
never run. So the page never feeds such text to a Markdown or HTML pane unescaped: it goes
through `text` (inline) or `block` (preformatted, e.g. a traceback) first.
"""

from __future__ import annotations

import html
from typing import Any


def text(value: Any) -> str:
    """`value` as HTML text: every <, >, &, quote escaped."""
    return html.escape(str(value), quote=True)


def block(value: Any) -> str:
    """`value` as a preformatted HTML block (keeps line breaks; scrolls when wide)."""
    return (
        "<pre style='white-space:pre-wrap;max-height:320px;overflow:auto;font-size:12px'>"
        f"{text(value)}</pre>"
    )


def code(value: Any) -> str:
    """`value` as inline code."""
    return f"<code>{text(value)}</code>"
