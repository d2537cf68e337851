#!/usr/bin/env bash
# One-command set-up: a virtual environment in .venv with the CPU build of
# PyTorch and avsync (editable) with the test tools.
#
#   ./setup.sh                 # avsync + the test tools (the [dev] extra)
#   ./setup.sh dev,bench       # other extras (bench: the static ffmpeg the benchmarks time against)
#
# PyTorch's CPU build: where pip is not already set up to find it (on Linux,
# PyPI's torch wheel is the CUDA build, gigabytes of it), give the index that
# serves it:  AVSYNC_TORCH_INDEX=https://download.pytorch.org/whl/cpu ./setup.sh
# On macOS and Windows PyPI's torch is the CPU build already.
set -euo pipefail
cd "$(dirname "$0")"

extras="${1:-dev}"
python="${PYTHON:-python3}"
"$python" - <<'PY'
import sys
if not ((3, 10) <= sys.version_info[:2] <= (3, 12)):
    sys.exit(f"avsync needs Python 3.10-3.12 (MediaPipe 0.10.21 has no wheel for others); this is "
             f"{sys.version.split()[0]}. Run with PYTHON=python3.12 ./setup.sh, say.")
PY
[ -d .venv ] || "$python" -m venv .venv
. .venv/bin/activate
python -m pip install -q --upgrade pip
# torch first, from the CPU index when one is given: avsync's own "torch>=2.2" is then satisfied.
pip install torch==2.13.0 ${AVSYNC_TORCH_INDEX:+--index-url "$AVSYNC_TORCH_INDEX"}
pip install -e ".[$extras]"
echo "set-up done: activate it with  . .venv/bin/activate"
