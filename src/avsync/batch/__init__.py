"""``avsync batch``: many files, one report, resumable after a crash; local workers or Ray.

Only the public API (``avsync.detect``, ``avsync.correct``, ``avsync.load_model``) is called.
Ray is imported only for ``engine="ray"``.
"""
from avsync.batch.inputs import collect_inputs
from avsync.batch.runner import BatchSummary, run_batch
from avsync.batch.store import store_path
from avsync.batch.work import DETECT_COLUMNS, BatchOptions

__all__ = ["BatchOptions", "BatchSummary", "DETECT_COLUMNS", "collect_inputs", "run_batch", "store_path"]
