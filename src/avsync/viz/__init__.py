"""Pictures of a result (matplotlib, the ``plot`` extra; never imported by ``import avsync``)."""
from avsync.viz.figure import save_sync_figure

__all__ = ["save_sync_figure"]
