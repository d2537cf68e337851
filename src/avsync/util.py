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
    if not dst.parent.exists():
        raise OutputError(f"output folder does not exist: {dst.parent}")
    try:
        fd, name = tempfile.mkstemp(prefix=f".{dst.stem}.", suffix=f".avsync-tmp{dst.suffix}", dir=dst.parent)
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
