"""Share a server's event loop fairly between the sessions' poll loops and the user's clicks.

Every browser session of `panel serve` runs its callbacks on the process's one event loop, and
while runs sample in the same process each poll's wall time is inflated by the sampling threads
holding the GIL. With four sessions each polling every 400 ms, polls alone kept the loop busy
and a form edit queued behind them for seconds. A `PollGate` lets a session poll only when its
share of the loop stays under `DUTY`: a poll that took `cost` seconds while `n` sessions poll
is followed by a pause of at least `n * cost / DUTY` between poll starts. Cheap polls on a quiet
machine still run at the dashboard's own period; costly ones back off on their own and come
back as soon as they are cheap again.

A session polling alone is never held back: it shares the loop with no other session, and its
own periodic callback already waits a period after each poll (Panel's `_async_repeat`, Bokeh's
periodic callbacks). Gating it too cost a notebook its live view: in a Jupyter kernel the run
samples in a thread of the same process, each poll's wall time there is inflated by that thread
holding the GIL, and the backed-off polls left JupyterLab and Notebook 7 pages showing a run
stuck part-way (tests/notebooks/test_jupyterlab_browser.py).
"""

from __future__ import annotations

import time
import weakref

# At most this share of the event loop's time goes to polls of all sessions together; the
# rest stays free for clicks, typing and the form's answers (the round trip users feel).
DUTY = 0.35
# However slow polls get, a running session still redraws at least this often (seconds).
MAX_PAUSE_S = 8.0

# The gates of sessions that are polling now: their number sets each one's share.
_polling: weakref.WeakSet[PollGate] = weakref.WeakSet()


class PollGate:
    """Decides whether one session's periodic poll runs now (see the module docstring)."""

    def __init__(self, clock=time.monotonic):
        self._clock = clock
        self._next = -float("inf")

    def open(self) -> None:
        """This session polls from now on (counts towards every session's share)."""
        _polling.add(self)
        self._next = -float("inf")

    def close(self) -> None:
        _polling.discard(self)

    def due(self) -> bool:
        return self._clock() >= self._next

    def spent(self, started: float) -> None:
        """A poll that began at `started` (this gate's clock) has just ended."""
        sessions = len(_polling)
        if sessions < 2:  # alone on the loop: no share to keep (module docstring)
            self._next = -float("inf")
            return
        cost = self._clock() - started
        self._next = started + min(MAX_PAUSE_S, sessions * cost / DUTY)

    def now(self) -> float:
        return self._clock()


def polling_sessions() -> int:
    """How many sessions of this process are polling a run now."""
    return len(_polling)
