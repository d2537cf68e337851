"""The job store: one SQLite file beside the report, written only by the driver.

It holds the job's signature (the command's inputs and options), the file list
expanded when the job was created (a folder that gains files later does not
change a running job), each file's planned corrected-copy path, and each
finished file's report row. Every result is committed on its own, so a run
killed at any moment (even ``kill -9``) loses at most the files in flight,
which the next run of the same command does again; a file's row is written
once, keyed by its position, so nothing is duplicated. The report is always
written from the store, in input order, so a resumed run's report is the same
as an uninterrupted run's.
"""
from __future__ import annotations

import fcntl
import json
import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from avsync.errors import OutputError, UsageError

#: Bumped when the schema or the meaning of a row changes; an older store is refused, not misread.
STORE_VERSION = 1


def store_path(report: str | os.PathLike) -> Path:
    """The store of a report: ``out.csv`` -> ``out.csv.avsync-jobs.sqlite``."""
    r = Path(report)
    return r.with_name(r.name + ".avsync-jobs.sqlite")


@dataclass(frozen=True)
class Job:
    """One file to process: its position in the input order, its path, and where its fix goes (or None)."""

    idx: int
    file: str
    fix_to: str | None


class JobStore:
    """Open (or create) the store at ``path`` for a job with ``signature``.

    ``plan()`` is called only when the store is new; it returns the jobs. An
    existing store made by a different command is refused with a usage error
    (delete it, or run with ``--restart``). A second run on the same store while
    one is going is refused too (an advisory lock, released even by ``kill -9``).
    """

    def __init__(self, path: str | os.PathLike, signature: dict, plan, *, restart: bool = False):
        self.path = Path(path)
        if not self.path.parent.is_dir():
            raise OutputError(f"report folder does not exist: {self.path.parent}")
        self._lock = self._take_lock()
        try:
            if restart:
                self.path.unlink(missing_ok=True)
            fresh = not (self.path.exists() and _has_meta(self.path))
            jobs = plan() if fresh else None  # a bad input list fails before anything is written
            if fresh:  # no store, or an empty one left by a run killed while it created it
                self.path.unlink(missing_ok=True)
            self.db = sqlite3.connect(self.path, isolation_level=None)
            self.db.execute("PRAGMA synchronous=FULL")
            if fresh:
                self._create(signature, jobs)
                os.chmod(self.path, _file_mode())
            else:
                self._check(signature)
        except sqlite3.DatabaseError as exc:
            self._release()
            raise OutputError(f"job store {self.path} is unusable ({exc}); delete it or use --restart") from None
        except BaseException:
            self._release()
            raise

    def _take_lock(self):
        lock_path = self.path.with_name(self.path.name + ".lock")
        try:
            fh = open(lock_path, "a+")
        except OSError as exc:
            raise OutputError(f"cannot write in {self.path.parent}: {exc.strerror or exc}") from None
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            fh.close()
            raise UsageError(f"another batch is running on {self.path}") from None
        return fh

    def _create(self, signature: dict, jobs: list[Job]) -> None:
        with self.db:
            self.db.execute("BEGIN")
            self.db.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
            self.db.execute("CREATE TABLE jobs (idx INTEGER PRIMARY KEY, file TEXT NOT NULL, fix_to TEXT, "
                            "row TEXT, failed INTEGER)")
            self.db.execute("INSERT INTO meta VALUES ('version', ?)", (str(STORE_VERSION),))
            self.db.execute("INSERT INTO meta VALUES ('signature', ?)", (_canonical(signature),))
            self.db.executemany("INSERT INTO jobs (idx, file, fix_to) VALUES (?, ?, ?)",
                                [(j.idx, j.file, j.fix_to) for j in jobs])

    def _check(self, signature: dict) -> None:
        meta = dict(self.db.execute("SELECT key, value FROM meta"))
        if meta.get("version") != str(STORE_VERSION):
            raise UsageError(f"job store {self.path} was made by another avsync version; delete it or use --restart")
        if meta.get("signature") != _canonical(signature):
            raise UsageError(f"job store {self.path} belongs to a different command (other inputs or options); "
                             "delete it or use --restart")

    def jobs(self) -> list[Job]:
        return [Job(*r) for r in self.db.execute("SELECT idx, file, fix_to FROM jobs ORDER BY idx")]

    def pending(self) -> list[Job]:
        return [Job(*r) for r in self.db.execute("SELECT idx, file, fix_to FROM jobs WHERE row IS NULL ORDER BY idx")]

    def counts(self) -> tuple[int, int, int]:
        """(total, done, failed)."""
        total, done, failed = self.db.execute(
            "SELECT COUNT(*), COUNT(row), COALESCE(SUM(failed), 0) FROM jobs").fetchone()
        return total, done, failed

    def put(self, idx: int, row: dict) -> None:
        """Record a finished file (autocommit: durable when this returns). A row already written is kept."""
        self.db.execute("UPDATE jobs SET row = ?, failed = ? WHERE idx = ? AND row IS NULL",
                        (json.dumps(row, sort_keys=True), 1 if row.get("error") else 0, idx))

    def rows(self) -> list[dict]:
        """Every finished row, in input order."""
        return [json.loads(r) for (r,) in self.db.execute("SELECT row FROM jobs WHERE row IS NOT NULL ORDER BY idx")]

    def close(self) -> None:
        self.db.close()
        self._release()

    def _release(self) -> None:
        Path(self._lock.name).unlink(missing_ok=True)
        self._lock.close()


def _has_meta(path: Path) -> bool:
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return db.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='meta'").fetchone() is not None
    finally:
        db.close()


def _canonical(obj) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


def _file_mode() -> int:
    from avsync.util import new_file_mode

    return new_file_mode()
