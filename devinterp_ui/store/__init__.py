"""The sample store: layout (schema), the one writer, the progress marker, reuse rules."""

from devinterp_ui.store.cache import StoreConflictError
from devinterp_ui.store.progress import ChainProgress, RunProgress
from devinterp_ui.store.schema import ArraySpec, safe_name

__all__ = ["ArraySpec", "ChainProgress", "RunProgress", "StoreConflictError", "safe_name"]
