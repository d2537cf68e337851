"""``avsync batch``: input collection, the job store, a real run over dev clips with a corrupt file in the
middle, a SIGKILL midway and a resume that gives the same report, and ``--fix-into``."""
from __future__ import annotations

import csv
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import assert_cli_error, clip_path, sha256

from avsync.batch import collect_inputs, store_path
from avsync.batch.store import Job, JobStore
from avsync.batch.work import plan_fix_paths
from avsync.errors import UsageError

#: The batch: 10 GRID speakers (3 s), 5 LRS3 crops (1-2 s), 3 MEAD clips and one film clip (3-5 s), with a
#: corrupt file in the middle: 20 files, about 20 s of work for 2 workers on a quiet 2-core machine.
BATCH_CLIPS = (
    [f"grid_speakers/{n}.mp4" for n in ("brbk7n", "id2_vcd_swwp2s", "lbax4n", "lbbc2a", "lrwp9a")]
    + [f"dev/filby89__spectre__samples__LRS3__{n}.mp4" for n in
       ("00002", "0Fi83BHQsMA_00002", "OzA6jRYjVQs_00004", "PbgB2TaYhio_00007", "QoT0S2vu9m4_00002")]
    + ["CORRUPT"]
    + [f"grid_speakers/{n}.mp4" for n in ("lwbsza", "pwij3p", "sbia1a", "sbwe5n", "swiz3n")]
    + [f"dev/filby89__spectre__samples__MEAD__{n}.mp4" for n in
       ("M024_level_2_surprised_010", "W015_level_1_neutral_030", "W036_level_3_happy_007")]
    + ["dev/georgeretsi__smirk__samples__dafoe.mp4"]
)


@pytest.fixture(scope="session")
def batch_list(tmp_path_factory) -> Path:
    """A list file of the batch's clips; the corrupt one is the first 20 kB of a real clip."""
    folder = tmp_path_factory.mktemp("batch")
    bad = folder / "corrupt.mp4"
    bad.write_bytes(clip_path("grid_speakers/lwbsza.mp4").read_bytes()[:20_000])
    lines = [str(bad) if c == "CORRUPT" else str(clip_path(c)) for c in BATCH_CLIPS]
    (folder / "clips.txt").write_text("# batch test\n" + "\n".join(lines) + "\n")
    return folder / "clips.txt"


def _env():
    env = dict(os.environ)
    env.pop("AVSYNC_NATIVE_LOGS", None)
    return env


@pytest.fixture(scope="session")
def full_report(batch_list, tmp_path_factory, cli) -> Path:
    """An uninterrupted run with 2 workers."""
    report = tmp_path_factory.mktemp("full") / "report.csv"
    proc = cli("batch", batch_list, "--report", report, "--workers", "2", timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    return report


def _rows(report: Path) -> list[dict]:
    with open(report, newline="") as fh:
        return list(csv.DictReader(fh))


def test_report_is_complete_and_marks_the_corrupt_file(full_report, batch_list):
    rows = _rows(full_report)
    listed = [ln for ln in batch_list.read_text().splitlines() if ln and not ln.startswith("#")]
    assert [r["file"] for r in rows] == listed  # one row per file, in input order
    bad = rows[BATCH_CLIPS.index("CORRUPT")]
    assert bad["error"] in ("TruncatedMediaError", "NotMediaError"), bad
    assert bad["exit_code"] in ("4", "9") and bad["message"] and bad["offset_ms"] == ""
    good = [r for r in rows if r is not bad]
    assert all(r["error"] == "" and r["offset_ms"] != "" for r in good), [r for r in good if r["error"]]
    for r in good:
        assert abs(float(r["offset_ms"])) <= 1000 * 15 / float(r["fps"]) + 1  # within the search range
        assert r["verdict"] in ("in sync", "out of sync") and int(r["faces"]) >= 1
        assert r["timeline_kind"] in ("constant", "linear", "piecewise") and r["drift_ms_per_min"] != ""
    # the batch reads what `avsync detect` reads on its own
    one = json.loads(subprocess.run([sys.executable, "-m", "avsync", "detect", "--json", rows[0]["file"]],
                                    capture_output=True, text=True, env=_env(), check=True).stdout)
    assert float(rows[0]["offset_ms"]) == pytest.approx(one["offset_ms"], abs=1.0)


def _done_count(store: Path) -> int:
    try:
        db = sqlite3.connect(f"file:{store}?mode=ro", uri=True, timeout=1)
        try:
            return db.execute("SELECT COUNT(row) FROM jobs").fetchone()[0]
        finally:
            db.close()
    except sqlite3.Error:
        return 0


def test_sigkill_midway_then_resume_gives_the_same_report(full_report, batch_list, tmp_path, cli):
    report = tmp_path / "report.csv"
    store = store_path(report)
    cmd = [sys.executable, "-m", "avsync", "batch", str(batch_list), "--report", str(report), "--workers", "2"]
    proc = subprocess.Popen(cmd, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)  # its own process group: the kill takes the workers too
    try:
        deadline = time.monotonic() + 300
        while _done_count(store) < 6 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    done = _done_count(store)
    assert 6 <= done < len(BATCH_CLIPS), f"the kill came at {done} of {len(BATCH_CLIPS)} files"
    assert not report.exists()  # the report is written only at the end
    again = cli("batch", batch_list, "--report", report, "--workers", "2", timeout=600)
    assert again.returncode == 0, again.stderr
    assert f"({done} from an earlier run)" in again.stdout or f"({done + 1} from" in again.stdout, again.stdout
    assert report.read_bytes() == full_report.read_bytes()


def test_ray_engine_gives_the_same_report(full_report, batch_list, tmp_path, cli):
    """The same job as Ray tasks on a local Ray with 2 CPUs: the same rows, byte for byte."""
    pytest.importorskip("ray", reason='Ray is an optional extra: pip install "avsync[ray]"')
    report = tmp_path / "report.csv"
    proc = cli("batch", batch_list, "--report", report, "--engine", "ray", "--workers", "2", timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    assert report.read_bytes() == full_report.read_bytes()


def test_finished_store_rewrites_the_same_report_without_work(full_report, batch_list, tmp_path, cli):
    """Running the finished command again does no work and writes the same report (JSON lines too)."""
    import shutil

    copy = tmp_path / "report.csv"
    shutil.copy(store_path(full_report), store_path(copy))
    proc = cli("batch", batch_list, "--report", copy, "--workers", "2")
    assert proc.returncode == 0 and f"({len(BATCH_CLIPS)} from an earlier run)" in proc.stdout, proc.stdout
    assert copy.read_bytes() == full_report.read_bytes()
    # another command on the same store is refused, not mixed in
    proc = cli("batch", batch_list, "--report", copy, "--tolerance-frames", "2")
    assert "different command" in assert_cli_error(proc, 2)


def test_collect_inputs_folders_globs_lists(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    for name in ("a/2.mp4", "a/b/1.mkv", "a/notes.txt", "a/.hidden.mp4", "c.mov"):
        (tmp_path / name).write_bytes(b"x")
    lst = tmp_path / "list.txt"
    lst.write_text("# a comment\nc.mov\n\nmissing.mp4\n")
    got = collect_inputs([str(tmp_path / "a"), str(lst), str(tmp_path / "*.mov")])
    rel = [os.path.relpath(p, tmp_path) for p in got]
    assert rel == ["a/2.mp4", "a/b/1.mkv", "c.mov", "missing.mp4"]  # sorted folders, list order, no duplicates
    with pytest.raises(UsageError):
        collect_inputs([str(tmp_path / "*.avi")])
    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageError):
        collect_inputs([str(tmp_path / "empty")])


def test_fix_paths_resolve_clashes_deterministically(tmp_path):
    (tmp_path / "talk.fixed.mp4").write_bytes(b"a user's file")
    files = ["x/talk.mp4", "y/talk.mp4", "y/other.mkv", "z/TALK.mp4"]
    plan = [os.path.basename(p) for p in plan_fix_paths(files, str(tmp_path))]
    assert plan == ["talk.fixed-2.mp4", "talk.fixed-3.mp4", "other.fixed.mkv", "TALK.fixed-4.mp4"]
    assert plan_fix_paths(files, str(tmp_path)) == plan_fix_paths(files, str(tmp_path))


def test_store_refuses_a_second_runner(tmp_path):
    path = tmp_path / "r.csv.avsync-jobs.sqlite"
    first = JobStore(path, {"a": 1}, lambda: [Job(0, "f.mp4", None)])
    try:
        with pytest.raises(UsageError, match="another batch"):
            JobStore(path, {"a": 1}, lambda: [])
    finally:
        first.close()
    second = JobStore(path, {"a": 1}, lambda: [])  # the lock went with the first
    assert [j.file for j in second.pending()] == ["f.mp4"]
    second.put(0, {"file": "f.mp4"})
    second.put(0, {"file": "f.mp4", "offset_ms": 1.0})  # a row is written once
    assert second.rows() == [{"file": "f.mp4"}]
    second.close()


def test_fix_into_writes_corrected_copies_and_leaves_originals(trial_factory, tmp_path, cli):
    src = clip_path("dev/OpenTalker__SadTalker__test__examples__source_image__WDA_EdMarkey0_000.mp4")
    trial = trial_factory(src, 6, ".mp4")  # audio 6 frames late
    plain = clip_path("grid_speakers/lwbsza.mp4")
    before = {p: sha256(p) for p in (trial.path, plain)}
    out = tmp_path / "fixed"
    out.mkdir()
    report = tmp_path / "r.jsonl"
    proc = cli("batch", trial.path, plain, "--report", report, "--fix-into", out, "--workers", "2", "--force",
               timeout=600)
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(ln) for ln in report.read_text().splitlines()]
    assert {p: sha256(p) for p in before} == before  # originals untouched
    shifted, other = rows
    assert shifted["verdict"] == "out of sync", shifted
    assert shifted["fixed"] == str(out / f"{Path(trial.path).stem}.fixed.mp4")
    assert Path(shifted["fixed"]).is_file()
    assert (other["fixed"] is None) == (other["verdict"] == "in sync"), other  # only out-of-sync files are fixed
    assert sorted(p.name for p in out.iterdir()) == sorted(Path(r["fixed"]).name for r in rows if r["fixed"])
    after = cli("detect", "--json", shifted["fixed"])
    assert abs(json.loads(after.stdout)["offset_ms"]) <= 1000 / trial.fps, after.stdout
    # without --force only reliable readings are applied (as `avsync fix`)
    out2 = tmp_path / "fixed2"
    out2.mkdir()
    proc = cli("batch", trial.path, plain, "--report", tmp_path / "r2.jsonl", "--fix-into", out2, timeout=600)
    assert proc.returncode == 0, proc.stderr
    for r in map(json.loads, (tmp_path / "r2.jsonl").read_text().splitlines()):
        assert (r["fixed"] is not None) == (r["reliable"] and r["verdict"] == "out of sync"), r


def test_bad_report_name_and_missing_fix_folder_are_usage_errors(tmp_path, cli):
    clip = clip_path("grid_speakers/lwbsza.mp4")
    assert_cli_error(cli("batch", clip, "--report", tmp_path / "r.xlsx"), 2)
    assert_cli_error(cli("batch", clip, "--report", tmp_path / "r.csv", "--fix-into", tmp_path / "nope"), 2)
    assert_cli_error(cli("batch", tmp_path / "*.mp4", "--report", tmp_path / "r.csv"), 2)
    assert not list(tmp_path.iterdir())  # nothing written


def test_import_avsync_does_not_import_ray_batch_or_web():
    heavy = ("ray", "avsync.batch", "fastapi", "uvicorn", "avsync.web", "matplotlib")
    code = f"import sys, avsync; print(any(m.split('.')[0] in {heavy!r} or m in {heavy!r} for m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=_env(), check=True)
    assert out.stdout.strip() == "False"
