"""``avsync detect --plot``: the figure renders from a real clip, at the expected size, and is not blank."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from conftest import clip_path


def test_detect_plot_renders_a_real_clip(cli, tmp_path):
    plt = pytest.importorskip("matplotlib.pyplot", reason='plots need the extra: pip install "avsync[plot]"')
    clip = clip_path("dev/filby89__spectre__samples__MEAD__W015_level_1_neutral_030.mp4")
    png = tmp_path / "plot.png"
    proc = cli("detect", clip, "--plot", png, "--json")
    assert proc.returncode == 0, proc.stderr
    d = json.loads(proc.stdout)
    assert "similarity" not in d and d.get("windows") is None  # the JSON is as without --plot
    img = plt.imread(png)
    assert img.shape[:2] == (900, 1300)  # 13 x 9 in at 100 dpi
    rgb = img[..., :3].reshape(-1, 3)
    assert rgb.std() > 0.1  # not blank
    colours = {tuple(c) for c in (rgb[:: 97] * 255).round().astype(int).tolist()}
    assert len(colours) > 50  # curves, a colour map and text, not a flat fill
    assert (rgb.mean(1) < 0.2).mean() > 0.005  # dark pixels: text and the similarity matrix


def test_plot_without_similarity_or_windows_still_draws(tmp_path, detect_cached):
    """A result without the matrix and windows (a plain ``detect``) still gives a figure that says so."""
    pytest.importorskip("matplotlib")
    from avsync.viz import save_sync_figure

    r = detect_cached(clip_path("grid_speakers/lwbsza.mp4"))
    save_sync_figure(r, tmp_path / "p.png")
    assert (tmp_path / "p.png").stat().st_size > 10_000


def test_import_avsync_does_not_import_matplotlib():
    code = "import sys, avsync; print('matplotlib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
