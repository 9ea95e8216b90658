"""Live runs without UI: a background sampling job and an incremental reader of a growing store.

`SamplingJob` runs `sample()` in a thread that can be stopped; `StoreReader` follows any store
on disk (this process or another, running or finished) and returns only rows not seen before.
See docs/live.md.
"""

from devinterp_ui.live.job import SamplingJob
from devinterp_ui.live.job_state import JobError, JobProgress
from devinterp_ui.live.marker import StoreStatus
from devinterp_ui.live.reader import NewRows, StoreReader

__all__ = ["JobError", "JobProgress", "NewRows", "SamplingJob", "StoreReader", "StoreStatus"]
