"""Start-up stays light: ``import avsync``, ``avsync --help`` and a bad path load no heavy library.

Each check runs in a fresh interpreter and reads ``sys.modules`` afterwards (no timings:
the speed figures live in docs/BENCHMARKS.md, from benchmarks/speed.py).
"""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from avsync.errors import InputNotFoundError

#: What ``import avsync`` and the CLI's early exits must not load.
HEAVY = ("torch", "mediapipe", "cv2", "matplotlib", "onnxruntime", "sounddevice", "ai_edge_litert")

_PROBE = """
import json, sys
status = None
try:
{body}
except SystemExit as exc:
    status = exc.code
sys.stdout = sys.__stdout__
print(json.dumps({{"status": status, "loaded": sorted(m for m in {heavy!r} if m in sys.modules)}}))
"""


def _loaded_after(body: str) -> dict:
    code = _PROBE.format(body="\n".join("    " + line for line in body.strip().splitlines()), heavy=HEAVY)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_import_avsync_loads_no_heavy_library():
    got = _loaded_after("import avsync\nassert callable(avsync.detect) and callable(avsync.correct)")
    assert got["loaded"] == []


@pytest.mark.parametrize(
    "argv, status",
    [
        (["--help"], 0),
        (["detect", "/nonexistent/dir/missing.mp4"], InputNotFoundError.exit_code),
        (["detect", "/nonexistent/dir/missing.mp4", "--model", "pm-wild"], InputNotFoundError.exit_code),
        (["models"], 0),
    ],
)
def test_cli_early_exits_load_no_heavy_library(argv, status):
    got = _loaded_after(
        "import io\n"
        "sys.stdout = io.StringIO()\n"
        f"sys.argv = ['avsync', *{argv!r}]\n"
        "from avsync.cli.main import main\n"
        "main()"
    )
    assert got == {"status": status, "loaded": []}


def test_drawing_utils_load_only_when_used():
    """MediaPipe loads without matplotlib or sounddevice; its drawing utilities and audio tasks still work
    when someone asks for them."""
    got = _loaded_after(
        "from avsync.face.tracker import import_mediapipe\n"
        "mp = import_mediapipe()\n"
        "assert 'matplotlib' not in sys.modules and 'sounddevice' not in sys.modules\n"
        "assert callable(mp.solutions.face_mesh.FaceMesh)\n"
        "assert 'matplotlib' not in sys.modules\n"
        "assert callable(mp.solutions.drawing_utils.draw_landmarks)\n"
        "assert 'matplotlib' in sys.modules\n"
        "assert mp.tasks.audio.AudioClassifier is not None\n"
        "from mediapipe.tasks.python.audio import audio_classifier\n"
        "assert audio_classifier.AudioClassifier is mp.tasks.audio.AudioClassifier"
    )
    assert got["status"] is None
    assert got["loaded"] == ["cv2", "matplotlib", "mediapipe"]
