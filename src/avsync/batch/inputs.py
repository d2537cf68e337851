"""Which files a batch covers: folders (recursive), globs and list files, in a stable order."""
from __future__ import annotations

import glob
import os
from pathlib import Path

from avsync.errors import UsageError

#: File name endings taken from folders and globs (a file named on its own is always taken).
VIDEO_SUFFIXES = frozenset(
    ".mp4 .m4v .mov .mkv .webm .avi .mpg .mpeg .mts .m2ts .ts .flv .wmv .3gp .ogv .mxf".split()
)
#: A named file with one of these endings is a list of inputs, one a line (``#`` starts a comment).
LIST_SUFFIXES = frozenset({".txt", ".lst", ".list"})


def _is_glob(text: str) -> bool:
    return any(ch in text for ch in "*?[")


def _from_folder(folder: Path) -> list[str]:
    found = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found += [os.path.join(root, f) for f in sorted(files)
                  if not f.startswith(".") and Path(f).suffix.lower() in VIDEO_SUFFIXES]
    return found


def _from_list(list_file: Path) -> list[str]:
    out = []
    try:
        lines = list_file.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read the list file {list_file}: {exc}") from None
    for line in lines:
        line = line.strip()
        if line and not line.startswith("#"):
            p = Path(line)  # relative lines are relative to the list file
            out.append(str(p if p.is_absolute() else list_file.parent / p))
    return out


def collect_inputs(inputs: list[str]) -> list[str]:
    """Files to process, in the order given (folders sorted, duplicates dropped).

    A missing file named on its own or in a list stays in: it gets a row of its own
    (``InputNotFoundError``) rather than stopping the run. A folder or glob that
    finds nothing is a usage error, as is an empty result.
    """
    files: list[str] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            got = _from_folder(p)
            if not got:
                raise UsageError(f"no video files in {item}")
        elif _is_glob(item) and not p.exists():
            got = [f for f in sorted(glob.glob(item, recursive=True)) if os.path.isfile(f)]
            if not got:
                raise UsageError(f"no files match {item}")
        elif p.suffix.lower() in LIST_SUFFIXES and p.is_file():
            got = _from_list(p)
        else:
            got = [item]
        files += got
    out = list(dict.fromkeys(os.path.normpath(f) for f in files))
    if not out:
        raise UsageError("no input files")
    return out
