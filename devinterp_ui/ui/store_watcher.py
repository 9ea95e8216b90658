"""`StoreWatcher`: open a store written elsewhere (another process, a notebook, an old run).

The path is confined to the allowed roots (`store_roots.confine`) and the store is checked to be
a sample store before anything is plotted, so a foreign zarr group, a broken marker or an
unreadable array gives one line here and leaves the session usable.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import panel as pn
import param

from devinterp_ui.live import StoreReader
from devinterp_ui.live.marker import MarkerUnreadable
from devinterp_ui.ui import escape
from devinterp_ui.ui.store_roots import StorePathRefused, allowed_roots, confine

ERROR_STYLE = {"color": "#b3261e", "font-size": "13px"}


class StoreNotReadable(ValueError):
    """The path is allowed but holds no readable sample store."""


def open_reader(path: str | Path, roots: list[Path]) -> StoreReader:
    """A `StoreReader` of the sample store at `path` (confined to `roots`), checked readable.

    Raises StorePathRefused outside the roots, StoreNotReadable for anything else that is not a
    readable sample store (missing, a foreign zarr group, a marker that cannot be parsed).
    """
    resolved = confine(path, roots)
    shown = escape.text(path)
    try:
        reader = StoreReader(resolved)
        status = reader.status()
        config = reader.config
    except FileNotFoundError:
        raise StoreNotReadable(f"no sample store at {shown} (no zarr.json there).") from None
    except (MarkerUnreadable, OSError, ValueError, KeyError, TypeError) as exc:
        raise StoreNotReadable(
            f"{shown} is not a readable sample store ({escape.text(type(exc).__name__)})."
        ) from None
    if not config or not isinstance(reader.attrs.get("progress", {}), dict):
        raise StoreNotReadable(
            f"{shown} is a zarr group but not a sample store written by sample() (no sampler "
            "settings in its metadata)."
        )
    if status.num_chains == 0 and status.recorded_status is not None:
        raise StoreNotReadable(f"{shown} is a sample store without chains.")
    return reader


class StoreWatcher(pn.viewable.Viewer):
    """Path box, Open button and one line of feedback.

    on_open(reader) is called with a checked `StoreReader`; an exception it raises is shown here
    (one line) and the session goes on.
    """

    path = param.String(default="", doc="The store path typed in the box.")
    message = param.String(default="", doc="The last error (HTML-escaped), or ''.")

    def __init__(
        self,
        runs_dir: str | Path,
        on_open: Callable[[StoreReader], None],
        store_roots=(),
        **params,
    ):
        super().__init__(**params)
        self.roots = allowed_roots(runs_dir, store_roots)
        self._on_open = on_open
        self.input = pn.widgets.TextInput.from_param(
            self.param.path,
            name="store path",
            placeholder="runs/xyz.zarr",
            sizing_mode="stretch_width",
        )
        self.button = pn.widgets.Button(label="Open store", width=110)
        self.button.on_click(lambda _e: self.open())
        self.feedback = pn.pane.HTML(
            self.param.message, styles=ERROR_STYLE, sizing_mode="stretch_width", margin=(0, 10)
        )

    def open(self, path: str | None = None) -> StoreReader | None:
        """Open `path` (default: the box's); returns the reader, or None after an error."""
        if path is not None:
            self.path = str(path)
        try:
            reader = open_reader(self.path, self.roots)
            self._on_open(reader)
        except (StorePathRefused, StoreNotReadable, RuntimeError) as exc:
            # Messages from open_reader are escaped already; others are escaped here.
            text = str(exc)
            self.message = text if isinstance(exc, StoreNotReadable) else escape.text(text)
            return None
        self.message = ""
        return reader

    def fail(self, text: str) -> None:
        """Show `text` (plain text, escaped here) as the watcher's message."""
        self.message = escape.text(text)

    def __panel__(self) -> pn.viewable.Viewable:
        return pn.Column(self.input, self.button, self.feedback, sizing_mode="stretch_width")
