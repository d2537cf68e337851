"""``avsync score``: LSE-D / LSE-C analogues order real in-sync clips above the same clips shifted."""
from __future__ import annotations

import csv

import pytest

from conftest import assert_cli_error, clip_path

#: Real dev clips (unseen speakers): two talking heads (8 s, 4.8 s) and a GRID speaker (3 s).
SCORE_CLIPS = ("dev/OpenTalker__SadTalker__test__examples__source_image__WDA_EdMarkey0_000.mp4",
               "dev/filby89__spectre__samples__MEAD__W015_level_1_neutral_030.mp4",
               "grid_speakers/pwij3p.mp4")
#: Beyond the ±15-frame search, so the LSE pair (read at the best offset, as SyncNet's) must drop.
FAR = 20
#: Inside the search: the distance at offset 0 (the file as it is) must grow.
NEAR = 3
#: A 1.1 s LRS3 crop: SyncNet's LSE tools return nothing under 4 s.
SHORT = "dev/filby89__spectre__samples__LRS3__OzA6jRYjVQs_00004.mp4"


@pytest.fixture(scope="module")
def scores(trial_factory, tmp_path_factory, cli) -> dict:
    files = {}
    for rel in SCORE_CLIPS:
        src = clip_path(rel)
        files[(rel, 0)] = str(src)
        for k in (NEAR, FAR):
            files[(rel, k)] = trial_factory(src, k, ".mp4").path
    files[(SHORT, 0)] = str(clip_path(SHORT))
    report = tmp_path_factory.mktemp("score") / "scores.csv"
    proc = cli("score", *files.values(), "--report", report, "--workers", "2", timeout=600)
    assert proc.returncode == 0, proc.stderr
    with open(report, newline="") as fh:
        rows = {r["file"]: r for r in csv.DictReader(fh)}
    return {key: rows[str(path)] for key, path in files.items()}


@pytest.mark.parametrize("rel", SCORE_CLIPS)
def test_in_sync_scores_above_shifted(scores, rel):
    ok, near, far = (scores[(rel, k)] for k in (0, NEAR, FAR))
    assert all(r["error"] == "" for r in (ok, near, far)), (ok, near, far)
    assert float(ok["lse_d"]) < float(far["lse_d"]), (ok, far)  # lower distance in sync
    assert float(ok["lse_c"]) > float(far["lse_c"]), (ok, far)  # higher confidence in sync
    assert float(ok["lse_d_at_0"]) < float(near["lse_d_at_0"]), (ok, near)
    for r in (ok, near, far):
        assert 0.0 <= float(r["lse_d"]) <= 2.0 and float(r["lse_c"]) >= 0.0  # cosine distance: 0..2


def test_short_clip_gets_a_score(scores):
    r = scores[(SHORT, 0)]
    assert float(r["duration_s"]) < 1.5
    assert r["error"] == "" and r["lse_d"] != "" and r["lse_c"] != "" and int(r["windows"]) > 0, r


def test_score_refuses_a_model_that_is_not_two_stream(cli, tmp_path):
    line = assert_cli_error(cli("score", clip_path(SHORT), "--report", tmp_path / "s.csv", "--model", "modelfree"), 2)
    assert "two-stream" in line
