"""Small helpers shared by the writers."""
from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from avsync.errors import OutputError


@contextmanager
def atomic_output(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only on success.

    The temporary name keeps ``path``'s suffix (writers pick formats by it). On
    any error it is removed, and an existing ``path`` is left untouched.
    """
    dst = Path(path)
    try:
        folder_ok = dst.parent.is_dir()
    except OSError as exc:  # a path component too long, a permission denied on the way
        raise OutputError(f"cannot write {dst}: {exc.strerror or exc}") from None
    if not folder_ok:
        raise OutputError(f"output folder does not exist: {dst.parent}")
    suffix = f".avsync-tmp{dst.suffix}"
    # ".{stem}.XXXXXXXX{suffix}" must fit in a file name: the stem is cut, never the suffix writers read.
    room = name_max(dst.parent) - len(os.fsencode(suffix)) - 2 - 8
    prefix = f".{fit_bytes(dst.stem, max(room, 0))}."
    try:
        fd, name = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=dst.parent)
    except OSError as exc:
        raise OutputError(f"cannot write in {dst.parent}: {exc.strerror or exc}") from None
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp, new_file_mode())  # mkstemp makes 0600; a new file follows the user's umask
        os.replace(tmp, dst)
    except OSError as exc:
        raise OutputError(f"could not write {dst}: {exc.strerror or exc}") from None
    finally:
        tmp.unlink(missing_ok=True)


def name_max(folder: str | os.PathLike) -> int:
    """Longest file name, in bytes, the file system of ``folder`` takes (255 on most)."""
    try:
        return int(os.pathconf(folder, "PC_NAME_MAX"))
    except (OSError, ValueError, AttributeError):
        return 255


def fit_bytes(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` bytes in the file system's encoding, never inside a character."""
    out = text
    while out and len(os.fsencode(out)) > limit:
        out = out[:-1]
    return out


def new_file_mode() -> int:
    """The mode a newly created file gets under the process's umask (0644 under the usual 022)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def merge_spans(spans, gap_s: float = 0.5) -> list[tuple[float, float]]:
    """Sorted spans, with those less than ``gap_s`` apart merged."""
    out: list[list[float]] = []
    for a, b in sorted((float(a), float(max(a, b))) for a, b in spans):
        if out and a <= out[-1][1] + gap_s:
            out[-1][1] = max(out[-1][1], b)
        else:
            out.append([a, b])
    return [(a, b) for a, b in out]
