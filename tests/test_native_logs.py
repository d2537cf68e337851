"""The Python API keeps MediaPipe's native log lines off stderr, unless AVSYNC_NATIVE_LOGS=1."""
from __future__ import annotations

import os
import subprocess
import sys

from conftest import REPO, grid_clip

SCRIPT = """
import sys, avsync
def hook(frac):  # runs while the face tracker lives: Python's stderr must still work then
    if not getattr(hook, "said", False):
        hook.said = True
        print("progress-from-python", file=sys.stderr)
r = avsync.detect(sys.argv[1], model="modelfree", progress=hook)
print(r.offset_ms)
print("after-detect", file=sys.stderr)
"""


def _run(clip, native: bool) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "AVSYNC_NATIVE_LOGS"}
    env["PYTHONPATH"] = str(REPO / "src") + os.pathsep + env.get("PYTHONPATH", "")
    if native:
        env["AVSYNC_NATIVE_LOGS"] = "1"
    return subprocess.run([sys.executable, "-c", SCRIPT, str(clip)], env=env, capture_output=True, text=True,
                          timeout=300, stdin=subprocess.DEVNULL)


def test_api_prints_no_native_log_lines():
    proc = _run(grid_clip("lwbsza"), native=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.splitlines() == ["progress-from-python", "after-detect"], proc.stderr
    float(proc.stdout.strip())


def test_native_log_lines_shown_when_asked():
    proc = _run(grid_clip("lwbsza"), native=True)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stderr.splitlines()
    assert "progress-from-python" in lines and "after-detect" in lines
    native = [ln for ln in lines if ln not in ("progress-from-python", "after-detect")]
    assert native, "MediaPipe wrote nothing to stderr with AVSYNC_NATIVE_LOGS=1: the test shows nothing"
