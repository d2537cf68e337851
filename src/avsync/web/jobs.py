"""Uploaded files and their analyses: a private temp folder, a bounded queue, and cleanup.

Each upload gets a random id and a folder named by it under one temp root; no
name from the client is ever used in a path. Analyses run one at a time in a
worker thread (the model is loaded once); at most ``max_pending`` uploads wait
or run, and further ones are refused until there is room. A job's files go
after its corrected copy is downloaded, after ``ttl_s`` without a request, and
all of them at shutdown.
"""
from __future__ import annotations

import re
import shutil
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from avsync.errors import AvsyncError

_ID = re.compile(r"^[0-9a-f]{32}$")
#: Characters kept from the client's file name, for the download's suggested name only.
_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True)
class WebSettings:
    max_upload_bytes: int = 500 * 1024 * 1024
    ttl_s: float = 3600.0
    max_pending: int = 4
    model: str | None = None


@dataclass
class Job:
    id: str
    folder: Path
    name: str  # the client's file name, made safe: only for the download's suggested name
    state: str = "uploading"  # uploading, queued, analysing, done, failed
    progress: float = 0.0
    input: Path | None = None
    mime: str | None = None
    result: dict | None = None
    error: str | None = None
    plot: Path | None = None
    touched: float = field(default_factory=time.monotonic)

    def public(self) -> dict:
        return {"id": self.id, "state": self.state, "progress": round(self.progress, 3), "result": self.result,
                "error": self.error, "plot": self.plot is not None}


def safe_name(name: str) -> str:
    base = _SAFE_NAME.sub("_", name.rsplit("/", 1)[-1].rsplit("\\", 1)[-1]).strip("._") or "video"
    return base[:80]


class JobManager:
    def __init__(self, settings: WebSettings):
        self.settings = settings
        self.root = Path(tempfile.mkdtemp(prefix="avsync-serve-"))
        self.jobs: dict[str, Job] = {}
        self.lock = threading.Lock()
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="avsync-analyse")
        self._estimator = None

    # --- life cycle ---------------------------------------------------------------------------

    def new(self, client_name: str) -> Job | None:
        """A job for an upload, or None when the queue is full."""
        with self.lock:
            busy = sum(j.state in ("uploading", "queued", "analysing") for j in self.jobs.values())
            if busy >= self.settings.max_pending:
                return None
            jid = uuid.uuid4().hex
            folder = self.root / jid
            folder.mkdir(mode=0o700)
            job = self.jobs[jid] = Job(jid, folder, safe_name(client_name))
            return job

    def get(self, jid: str) -> Job | None:
        if not _ID.match(jid or ""):
            return None
        with self.lock:
            job = self.jobs.get(jid)
        if job is not None:
            job.touched = time.monotonic()
        return job

    def remove(self, jid: str) -> None:
        with self.lock:
            job = self.jobs.pop(jid, None)
        if job is not None:
            shutil.rmtree(job.folder, ignore_errors=True)

    def sweep(self) -> None:
        """Remove jobs idle for longer than the time limit (not one being analysed)."""
        now = time.monotonic()
        with self.lock:
            old = [j.id for j in self.jobs.values()
                   if now - j.touched > self.settings.ttl_s and j.state not in ("queued", "analysing")]
        for jid in old:
            self.remove(jid)

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
        shutil.rmtree(self.root, ignore_errors=True)

    # --- analysis -------------------------------------------------------------------------------

    def submit(self, job: Job) -> None:
        job.state = "queued"
        self.pool.submit(self._analyse, job)

    def estimator(self):
        if self._estimator is None:
            import avsync

            self._estimator = avsync.load_model(self.settings.model)
        return self._estimator

    def _analyse(self, job: Job) -> None:
        import avsync

        job.state = "analysing"
        try:
            plots = _can_plot()
            from avsync.viz.figure import PLOT_WINDOW_FRAMES

            r = avsync.detect(job.input, model=self.estimator(), window_frames=PLOT_WINDOW_FRAMES,
                              similarity=plots, progress=lambda f: setattr(job, "progress", float(f)))
            if plots:
                from avsync.viz import save_sync_figure

                save_sync_figure(r, job.folder / "plot.png", name=job.name)
                job.plot = job.folder / "plot.png"
            job.result = verdict(r)
            job.progress, job.state = 1.0, "done"
        except AvsyncError as exc:
            job.error, job.state = str(exc), "failed"
        except Exception as exc:  # a bug: say so on the page instead of hanging
            job.error, job.state = f"internal error ({type(exc).__name__}); please report it", "failed"
        job.touched = time.monotonic()


def _can_plot() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def verdict(r) -> dict:
    """The result in plain words for the page."""
    ms = round(abs(r.offset_ms))
    if r.in_sync:
        headline = "In sync"
    else:
        headline = f"Out of sync: the sound comes {ms} ms {'after' if r.offset_ms > 0 else 'before'} the lips"
    if not r.reliable:
        headline += " (low confidence)"
    return {"headline": headline, "sentence": r.sentence(), "offset_ms": r.offset_ms, "in_sync": r.in_sync,
            "reliable": r.reliable, "confidence": r.confidence, "search_ms": r.search_ms,
            "tolerance_ms": r.tolerance_ms}
