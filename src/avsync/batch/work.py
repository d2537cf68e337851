"""What a worker does with one file: detect (or score), maybe fix, and return the report row.

Runs in worker processes (local pool or Ray tasks), which load the model once
and keep it. Only the public API is called. A failure of one file becomes its
row (the error's name, exit code and message); it never stops the run.
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass

from avsync.batch.store import Job
from avsync.errors import AvsyncError

#: Exit code of an unexpected error (a bug) in one file, as the CLI's.
INTERNAL_ERROR = 70

#: Report columns of ``avsync batch``, in order. ``timeline_kind`` and ``drift_ms_per_min`` come from the
#: fitted offset over time (empty where no segment could be read).
DETECT_COLUMNS = ("file", "offset_ms", "offset_frames", "confidence", "reliable", "verdict", "faces", "timeline_kind",
                  "drift_ms_per_min", "fps", "duration_s", "fixed", "error", "exit_code", "message")


@dataclass(frozen=True)
class BatchOptions:
    """What each file gets; part of the job's signature (workers and engine are not: a job may resume on another)."""

    kind: str = "detect"  # "detect" or "score"
    model: str | None = None
    max_offset_ms: float | None = None
    tolerance_frames: float = 1.0
    max_faces: int = 4
    fix_into: str | None = None
    force: bool = False  # with fix_into: also apply readings that are not reliable

    def signature(self) -> dict:
        return asdict(self)


_cache: dict = {}


def load_worker_model(model: str | None):
    """The worker's estimator, loaded on first use and kept (one load per worker process)."""
    if model not in _cache:
        import avsync

        _limit_threads()
        _cache.clear()
        _cache[model] = avsync.load_model(model)
    return _cache[model]


def _limit_threads() -> None:
    """One compute thread per worker: workers are the parallelism, and results match across engines."""
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:  # pragma: no cover - torch is a dependency
        pass


def init_worker(model: str | None) -> None:
    """Process-pool initializer: load the model before the first file."""
    load_worker_model(model)


def verdict(result) -> str:
    return "in sync" if result.in_sync else "out of sync"


def error_row(job: Job, exc: BaseException, columns=DETECT_COLUMNS) -> dict:
    row = dict.fromkeys(columns, None)
    row["file"] = job.file
    if isinstance(exc, AvsyncError):
        row.update(error=type(exc).__name__, exit_code=exc.exit_code, message=str(exc))
    else:
        row.update(error="InternalError", exit_code=INTERNAL_ERROR, message=f"{type(exc).__name__}: {exc}")
    return row


def process(job: Job, opts: BatchOptions) -> dict:
    """The report row of one file (never raises for a bad file)."""
    if opts.kind == "score":
        from avsync.batch.score import score_row

        return score_row(job, opts, load_worker_model(opts.model))
    import avsync

    try:
        r = avsync.detect(job.file, model=load_worker_model(opts.model), max_offset_ms=opts.max_offset_ms,
                          tolerance_frames=opts.tolerance_frames, max_faces=opts.max_faces)
    except Exception as exc:  # one bad file is a row, not the end of the run
        return error_row(job, exc)
    row = dict.fromkeys(DETECT_COLUMNS, None)
    row.update(file=job.file, offset_ms=r.offset_ms, offset_frames=r.offset_frames, confidence=r.confidence,
               reliable=r.reliable, verdict=verdict(r), faces=len(r.faces), fps=r.fps, duration_s=r.duration_s)
    timeline = r.timeline
    varying = timeline if timeline and timeline["kind"] != "constant" else None
    if timeline is not None:
        row.update(timeline_kind=timeline["kind"], drift_ms_per_min=timeline["drift_ms_per_min"])
    if job.fix_to and (r.reliable or opts.force) and (not r.in_sync or varying):
        try:
            # The name was free when the job was planned and is reserved for this file, so a copy found
            # there now is this job's own from a run that was killed: replacing it is safe.
            avsync.correct(job.file, job.fix_to, offset_ms=r.offset_ms, overwrite=True, timeline=varying)
            row["fixed"] = job.fix_to
        except Exception as exc:
            e = error_row(job, exc)
            row.update(error=e["error"], exit_code=e["exit_code"], message="fix: " + e["message"])
    return row


def plan_fix_paths(files: list[str], fix_into: str) -> list[str]:
    """Where each file's corrected copy goes: ``DIR/NAME.fixed.EXT``; a clash (with an earlier input or a
    file already in DIR) takes ``NAME.fixed-2.EXT``, ``-3``... in input order, so the plan is deterministic."""
    taken = {f.lower() for f in os.listdir(fix_into)} if os.path.isdir(fix_into) else set()
    out = []
    for f in files:
        stem, ext = os.path.splitext(os.path.basename(f))
        ext = ext or ".mp4"
        name, n = f"{stem}.fixed{ext}", 1
        while name.lower() in taken:  # case-insensitive: the same plan on macOS/Windows file systems
            n += 1
            name = f"{stem}.fixed-{n}{ext}"
        taken.add(name.lower())
        out.append(os.path.join(fix_into, name))
    return out
