"""The sample store: layout (schema), the one writer, the progress marker, reuse rules, and
what a writer that died leaves behind (liveness, cleanup). Status names and `read_root_attrs`
live in `devinterp_ui.store.progress`."""

from devinterp_ui.store.cache import StoreConflictError
from devinterp_ui.store.progress import ChainProgress, RunProgress, read_root_attrs
from devinterp_ui.store.schema import ArraySpec, safe_name
from devinterp_ui.store.written import mask_unwritten

__all__ = [
    "ArraySpec",
    "ChainProgress",
    "RunProgress",
    "StoreConflictError",
    "mask_unwritten",
    "read_root_attrs",
    "safe_name",
]
