"""The dashboard (Panel + Bokeh). Nothing in the core imports this package."""

from devinterp_ui.ui.dashboard import Dashboard

__all__ = ["Dashboard"]
