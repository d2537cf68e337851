"""The scoring of benchmarks/real_footage.py (pure: no media is built or measured here)."""
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
rf = pytest.importorskip("real_footage")


def _case(figure, truth, result):
    return rf.Case(figure, "case", truth, result=result)


def test_edit_pieces_are_read_at_each_parts_middle_and_the_nearest_change_point_counts():
    tl = {"kind": "piecewise", "change_points_s": [3.0, 8.4],
          "pieces": [{"start_s": 0, "end_s": 3.0, "offset_ms": 0.0}, {"start_s": 3.0, "end_s": 8.4, "offset_ms": 40.0},
                     {"start_s": 8.4, "end_s": 16, "offset_ms": 290.0}]}
    c = _case("edit", dict(change_s=8.0, offsets_frames=[0, 7], fps=25.0),
              dict(timeline=tl, fps=25.0, parts=[(0.0, 8.0), (8.0, 16.0)]))
    s = rf.score_edit(c)
    assert s["kind_ok"] and s["n_cps"] == 2
    assert s["cp_err_s"] == pytest.approx(0.4)
    assert s["piece_err_frames"] == pytest.approx([1.0, 290 / 40 - 7])  # middle of part 1 is at 4 s: the 40 ms piece
    const = dict(tl, kind="constant", change_points_s=[], pieces=[{"start_s": 0, "end_s": 16, "offset_ms": 0.0}])
    s = rf.score_edit(_case("edit", c.truth, dict(c.result, timeline=const)))
    assert not s["kind_ok"] and s["cp_err_s"] is None and s["piece_err_frames"] == [0.0, -7.0]


def test_drift_remaining_is_a_share_of_the_truth_and_a_constant_timeline_leaves_none():
    segs = [{"start_s": t, "end_s": t + 4, "offset_ms": 2.0 * (t + 2), "confidence": 1.0} for t in range(0, 60, 4)]
    assert rf.slope_ms_per_min(segs) == pytest.approx(120.0)
    after = dict(timeline={"kind": "constant", "drift_ms_per_min": 0.0}, segments=segs[:1])
    c = _case("drift", dict(ppm=2000, drift_ms_per_min=120.0),
              dict(timeline={"kind": "linear", "drift_ms_per_min": 108.0}, segments=segs, after=after))
    s = rf.score_drift(c)
    assert s["rel_err"] == pytest.approx(0.1) and s["after_share"] == 0.0 and s["after_slope"] is None
    zero = rf.score_drift(_case("drift", dict(ppm=0, drift_ms_per_min=0.0),
                                dict(timeline={"kind": "linear", "drift_ms_per_min": 30.0}, segments=segs)))
    assert zero["kind"] == "linear" and zero["rel_err"] is None  # counted as false drift on the page


def test_the_active_face_is_judged_by_the_side_its_box_centre_is_on():
    faces = [dict(box=[100, 50, 300, 300], active=False, speaking_s=1.0),
             dict(box=[600, 50, 300, 300], active=True, speaking_s=3.0)]
    s = rf.score_speaker(_case("speaker", dict(side="right", width=1024), dict(faces=faces)))
    assert s["ok"] and s["share"] == pytest.approx(0.75)
    s = rf.score_speaker(_case("speaker", dict(side="left", width=1024), dict(faces=faces)))
    assert not s["ok"] and s["share"] == pytest.approx(0.25)


def test_segments_are_shift_consistent_around_the_clips_own_offset():
    def seg(ms, speech):
        return {"offset_ms": ms, "speech_s": speech, "confidence": 0.9}

    cases = [_case("segments", dict(clip="a", k=4), dict(fps=25.0, segments=[seg(80, 3), seg(80, 5), seg(None, 0)])),
             _case("segments", dict(clip="a", k=-7), dict(fps=25.0, segments=[seg(-360, 8), seg(40, 1)]))]
    rows = rf.segment_rows(cases)
    assert len(rows) == 4  # the segment with no reading is left out
    assert [r["err"] for r in rows] == pytest.approx([-2, -2, -2, 8])
    assert [r["consistent"] for r in rows] == [True, True, True, False]  # the clip reads 2 frames early
    assert sum(rf.within1(r["err"]) for r in rows) == 0


def test_the_section_is_spliced_once_and_replaced_in_place(tmp_path):
    page = tmp_path / "B.md"
    page.write_text("# page\n\n## 6. x\n\ntext\n\n## Reproduce\n\nrun it\n")
    rf.splice(page, "## Real footage\n\nfirst")
    rf.splice(page, "## Real footage\n\nsecond")
    body = page.read_text()
    assert body.count(rf.BEGIN) == 1 and "second" in body and "first" not in body
    assert body.index(rf.END) < body.index("## Reproduce") and body.startswith("# page\n\n## 6. x\n\ntext\n")
