"""Command-line conventions: plain flags, --version, `avsync models` at 80 columns and as JSON, output modes."""
from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
from importlib.metadata import version as dist_version

import pytest

from avsync.errors import InputUnreadableError
from conftest import REPO, assert_cli_error, grid_clip

FLAGS = {"detect": ["--json", "--check", "--curve", "--quiet"], "fix": ["--overwrite", "--force", "--json"],
         "models": ["--json"], "train": ["--resume", "--quiet"], "eval": ["--no-extended"]}


@pytest.mark.parametrize("command", sorted(FLAGS))
def test_help_shows_flags_without_a_value(cli, command):
    proc = cli(command, "--help")
    assert proc.returncode == 0, proc.stderr
    assert "<bool>" not in proc.stdout
    for flag in FLAGS[command]:
        line = next(ln for ln in proc.stdout.splitlines() if re.search(rf"(^|[ ,]){flag}(?![\w-])", ln))
        after = line[re.search(rf"(^|[ ,]){flag}(?![\w-])", line).end():]
        assert not after.startswith((" <", "=", " BOOL", " [", "/")), line


def test_a_flag_takes_no_value(cli, tmp_path):
    # `--json true` is a usage error (the flag takes no value), said in one line.
    proc = cli("detect", "x.mp4", "--json", "true", cwd=tmp_path)
    assert_cli_error(proc, 2)


def test_version(cli):
    proc = cli("--version")
    assert proc.returncode == 0, proc.stderr
    try:
        expected = dist_version("avsync")
    except Exception:  # a source tree that was never installed
        import avsync

        expected = avsync.__version__
    assert proc.stdout == f"avsync {expected}\n"
    assert proc.stderr == ""


@pytest.fixture(scope="module")
def models_json(cli):
    proc = cli("models", "--json")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_models_json_lists_every_model_the_table_lists(cli, models_json):
    proc = cli("models")  # conftest runs the CLI at COLUMNS=80
    assert proc.returncode == 0, proc.stderr
    rows = [ln.split() for ln in proc.stdout.splitlines()]
    table_names = {r[1] if r[0] == "*" else r[0] for r in rows[1:] if r and not r[0].endswith(":")
                   and not ln_is_footer(r)}
    assert table_names == set(models_json["models"]), (table_names ^ set(models_json["models"]))
    fusions = {n for n, e in models_json["models"].items() if e["family"] == "fusion"}
    assert fusions and fusions == set(models_json["fusions"])
    for name in fusions:
        assert models_json["models"][name]["members"] and models_json["models"][name]["weights"]


def ln_is_footer(row) -> bool:
    return row[0] == "*" and row[1] == "default"


def test_models_table_never_cuts_a_name_at_80_columns(cli, models_json):
    proc = cli("models")
    assert "…" not in proc.stdout
    table = proc.stdout.splitlines()[: 1 + len(models_json["models"])]
    assert max(len(ln) for ln in table) <= 80, table
    for name in models_json["models"]:
        assert re.search(rf"(^|\s){re.escape(name)}(\s|$)", proc.stdout, re.M), name


def test_fix_output_mode_follows_the_umask(tmp_path):
    """The CLI's output gets 0644 under umask 022 (mkstemp alone would give 0600)."""
    out = tmp_path / "out.mp4"
    env = dict(os.environ, PYTHONPATH=str(REPO / "src") + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, "-m", "avsync", "fix", str(grid_clip("pwij3p")), "-o", str(out),
                           "--offset-ms", "40"], env=env, capture_output=True, text=True,
                          preexec_fn=lambda: os.umask(0o022), stdin=subprocess.DEVNULL, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert stat.S_IMODE(out.stat().st_mode) == 0o644


def test_unreadable_input_has_its_own_exit_code(tmp_path, monkeypatch):
    """exit 14 and one line. Root reads any file, so there the denial is simulated at os.access."""
    from typer.testing import CliRunner

    from avsync.cli import main as cli_main

    clip = tmp_path / "secret.mp4"
    clip.write_bytes(grid_clip("pwij3p").read_bytes())
    clip.chmod(0)
    if os.access(clip, os.R_OK):  # root
        real = os.access
        monkeypatch.setattr(os, "access", lambda p, mode, **kw: False if str(p) == str(clip) else real(p, mode, **kw))
    from avsync.media.decode import probe

    try:
        for command in (["detect", str(clip)], ["fix", str(clip), "--offset-ms", "40"]):
            res = CliRunner().invoke(cli_main.app, command)
            assert res.exit_code == InputUnreadableError.exit_code, res.output
            assert res.exception is None or isinstance(res.exception, SystemExit), res.exception
        with pytest.raises(InputUnreadableError, match="permission denied"):
            probe(clip)
    finally:
        clip.chmod(0o644)
    assert sorted(os.listdir(tmp_path)) == ["secret.mp4"]


def test_low_confidence_reason_names_what_was_weak():
    """The caution says which of the three things was weak, not always the same words."""
    import numpy as np

    from avsync.api import low_confidence_reason

    lags = np.linspace(-0.6, 0.6, 121)
    sharp = np.exp(-((lags - 0.08) ** 2) / 0.001)
    assert low_confidence_reason(lags, sharp, int(np.argmax(sharp)), 0.08, 1.2).startswith("only 1.2 s of speech")
    rival = sharp + 0.98 * np.exp(-((lags + 0.3) ** 2) / 0.001)
    reason = low_confidence_reason(lags, rival, int(np.argmax(rival)), 0.08, 6.0)
    assert reason == "audio 300 ms early scores almost as well", reason
    flat = 0.05 * np.sin(lags * 40) + 0.2 * sharp
    assert low_confidence_reason(lags, flat, int(np.argmax(flat)), 0.08, 6.0) == \
        "the lips and the voice agree only weakly"
