"""Run a batch: plan the job, hand pending files to an engine, record results, write the report.

The driver alone writes the job store; engines (a local process pool, or Ray
tasks) only compute rows and hand them back.
"""
from __future__ import annotations

import csv
import json
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from avsync.batch.inputs import collect_inputs
from avsync.batch.store import Job, JobStore, store_path
from avsync.batch.work import DETECT_COLUMNS, BatchOptions, error_row, init_worker, plan_fix_paths, process
from avsync.errors import ModelError, UsageError

#: ``(done, total, failed)`` after each file.
BatchProgress = Callable[[int, int, int], None]

REPORT_SUFFIXES = (".csv", ".jsonl")


@dataclass
class BatchSummary:
    report: str
    store: str
    total: int
    done: int
    failed: int
    resumed: int  # files already done when this run started


def check_model(model: str | None) -> None:
    import avsync

    if model is None or model in avsync.available_models() or (model.endswith(".pt") and os.path.isfile(model)):
        return
    raise ModelError(f"unknown model {model!r}; available: {', '.join(avsync.available_models())} or a .pt checkpoint")


def run_batch(inputs: list[str], report: str | os.PathLike, opts: BatchOptions, *, workers: int | None = None,
              engine: str = "local", address: str | None = None, restart: bool = False,
              progress: BatchProgress | None = None, columns=DETECT_COLUMNS) -> BatchSummary:
    """Process every input once (resuming a killed run of the same command) and write the report."""
    report = Path(report)
    if report.suffix.lower() not in REPORT_SUFFIXES:
        raise UsageError(f"--report must end in .csv or .jsonl, got {report.name}")
    if engine not in ("local", "ray"):
        raise UsageError(f"--engine must be local or ray, got {engine!r}")
    workers = workers or os.cpu_count() or 1
    if workers < 1:
        raise UsageError("--workers must be at least 1")
    if opts.fix_into is not None:
        if not Path(opts.fix_into).is_dir():
            raise UsageError(f"--fix-into folder does not exist: {opts.fix_into}")
    check_model(opts.model)
    signature = {"inputs": list(inputs), "options": opts.signature()}

    def plan() -> list[Job]:
        files = collect_inputs(inputs)
        fixes = plan_fix_paths(files, opts.fix_into) if opts.fix_into else [None] * len(files)
        return [Job(i, f, t) for i, (f, t) in enumerate(zip(files, fixes))]

    store = JobStore(store_path(report), signature, plan, restart=restart)
    try:
        total, done, failed = store.counts()
        resumed = done
        if progress:
            progress(done, total, failed)
        pending = store.pending()
        if pending:
            run = _run_ray if engine == "ray" else _run_local
            for job, row in run(pending, opts, workers, address):
                store.put(job.idx, row)
                done += 1
                failed += bool(row.get("error"))
                if progress:  # counted here: a COUNT(*) per file would grow with the job
                    progress(done, total, failed)
        write_report(report, store.rows(), columns)
        total, done, failed = store.counts()
        return BatchSummary(str(report), str(store.path), total, done, failed, resumed)
    finally:
        store.close()


def write_report(report: Path, rows: list[dict], columns) -> None:
    """The report, atomically: CSV (empty cells for missing values) or JSON lines, rows in input order."""
    from avsync.util import atomic_output

    with atomic_output(report) as tmp:
        with open(tmp, "w", newline="", encoding="utf-8") as fh:
            if report.suffix.lower() == ".csv":
                w = csv.DictWriter(fh, fieldnames=list(columns), extrasaction="ignore", lineterminator="\n")
                w.writeheader()
                w.writerows({k: ("" if v is None else v) for k, v in r.items()} for r in rows)
            else:
                for r in rows:
                    fh.write(json.dumps({k: r.get(k) for k in columns}) + "\n")


# --- engines: each yields (job, row) as files finish -------------------------------------------


def _run_local(jobs: list[Job], opts: BatchOptions, workers: int, address) -> Iterator[tuple[Job, dict]]:
    """A pool of worker processes on this machine; each loads the model once (its initializer)."""
    import multiprocessing as mp
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    if address is not None:
        raise UsageError("--address is for --engine ray")
    # spawn: a clean interpreter per worker (fork would copy the driver's threads and open files)
    ctx = mp.get_context("spawn")
    with ProcessPoolExecutor(max_workers=min(workers, len(jobs)), mp_context=ctx, initializer=init_worker,
                             initargs=(opts.model,)) as pool:
        todo = iter(jobs)
        running = {}
        for job in _take(todo, 2 * workers):  # a few in flight per worker, not the whole list at once
            running[pool.submit(process, job, opts)] = job
        while running:
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for fut in sorted(finished, key=lambda f: running[f].idx):
                job = running.pop(fut)
                try:
                    row = fut.result()
                except Exception as exc:  # the worker process died (out of memory, a crash in native code)
                    row = error_row(job, exc)
                yield job, row
                for nxt in _take(todo, 1):
                    running[pool.submit(process, nxt, opts)] = nxt


def _run_ray(jobs: list[Job], opts: BatchOptions, workers: int, address: str | None) -> Iterator[tuple[Job, dict]]:
    """The same files as Ray tasks (one CPU each). ``address``: None starts a local Ray for this run with
    ``workers`` CPUs; ``auto`` or ``ray://host:10001`` joins a running cluster, whose nodes must reach the
    input files (and ``--fix-into``) by the same paths, e.g. on a shared file system."""
    from avsync.batch.ray_engine import ray_rows

    yield from ray_rows(jobs, opts, workers, address)


def _take(it: Iterator, n: int) -> Iterable:
    for _ in range(n):
        try:
            yield next(it)
        except StopIteration:
            return
