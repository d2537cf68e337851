"""Shared fixtures: where the real clips are, cached trials and detections, the CLI.

The clips are read from ``../shared/data`` (beside the repository) at run time;
nothing from them is ever stored in the repository. Every generated file
(trials, broken inputs, corrected copies) goes under pytest's tmp folders.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from avsync.util import sha256_file as sha256  # noqa: F401  (tests import it from here)

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
CLIPS = DATA / "clips"

#: 3 s GRID clips (25 fps) on which the model-free estimator is accurate to
#: well under a frame (checked on trials of +-4..7 frames).
GOOD_GRID = ("lwbsza", "pwij3p", "lbax4n")
#: 29.97 fps interview clip (LRW-style).
NTSC_CLIP = "dev/astorfi__lip-reading-deeplearning__sample_video.mp4"
#: Split-screen interview with two faces.
TWO_FACES_CLIP = "dev/facebookresearch__VisualVoice__interview.mp4"
#: Lip-region crop with no full face (``mouth_only`` split).
MOUTH_ONLY_CLIP = "mouth_only/AlexLicuriceanu__romanian-lip-reading__0c925d6a_fascinant.mp4"

#: Frame period at 25 fps, in ms.
FRAME_25_MS = 40.0


def clip_path(rel: str) -> Path:
    """Absolute path of a clip under ``../shared/data/clips``; skips if it is not there."""
    if not DATA.is_dir():
        pytest.skip(f"real-clip data folder not found at {DATA} (expected ../shared/data beside the repo)")
    p = CLIPS / rel
    if not p.is_file():
        pytest.skip(f"clip not found in the data folder: {p}")
    return p


def grid_clip(name: str) -> Path:
    return clip_path(f"grid_speakers/{name}.mp4")


@pytest.fixture(scope="session")
def data_dir() -> Path:
    if not DATA.is_dir():
        pytest.skip(f"real-clip data folder not found at {DATA} (expected ../shared/data beside the repo)")
    return DATA


# --- cached detections and trials ------------------------------------------------


@pytest.fixture(scope="session")
def detect_cached():
    """``detect_cached(path, **kw)``: ``avsync.detect`` once per (path, options) per session."""
    import avsync

    cache: dict = {}

    def run(path, **kw):
        key = (str(path), tuple(sorted(kw.items())))
        if key not in cache:
            cache[key] = avsync.detect(path, **kw)
        return cache[key]

    return run


@pytest.fixture(scope="session")
def trial_factory(tmp_path_factory):
    """``trial_factory(src, k, ext)``: an ``avsync.eval.trials.Trial``, made once per session."""
    from avsync.eval.trials import make_trial

    folder = tmp_path_factory.mktemp("trials")
    cache: dict = {}

    def make(src: Path, k: int, ext: str = ".mkv"):
        key = (str(src), int(k), ext)
        if key not in cache:
            sign = "p" if k >= 0 else "m"
            dst = folder / f"{Path(src).stem}_{sign}{abs(k)}{ext}"
            cache[key] = make_trial(src, dst, k)
        return cache[key]

    return make


# --- the command line ----------------------------------------------------------------


def run_cli(*args, cwd=None, timeout=180) -> subprocess.CompletedProcess:
    """Run ``python -m avsync ARGS`` in a child process (no shell) and capture its output."""
    env = dict(os.environ)
    env.pop("AVSYNC_NATIVE_LOGS", None)  # the CLI's normal, quiet stderr
    env["COLUMNS"] = "80"
    env["PYTHONIOENCODING"] = "utf-8"
    return subprocess.run(
        [sys.executable, "-m", "avsync", *map(str, args)],
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        encoding="utf-8",
        errors="replace",
        timeout=timeout,
    )


def assert_cli_error(proc: subprocess.CompletedProcess, code: int) -> str:
    """The CLI failed cleanly: exit ``code``, one ``avsync:`` line on stderr, no traceback."""
    both = proc.stdout + proc.stderr
    assert "Traceback" not in both, both
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == code, f"exit {proc.returncode}, expected {code}; stderr: {proc.stderr!r}"
    assert len(lines) == 1, f"expected exactly one stderr line, got {len(lines)}: {proc.stderr!r}"
    assert lines[0].startswith("avsync:"), lines[0]
    assert len(lines[0]) > len("avsync: "), lines[0]
    return lines[0]


@pytest.fixture(scope="session")
def cli():
    return run_cli
