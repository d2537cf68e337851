"""Local damage (16 KiB overwritten mid-file) is concealed as players do: reported, skipped, sync judged from the rest."""
from __future__ import annotations

import numpy as np
import pytest

import avsync
from avsync.media import read_audio
from conftest import FRAME_25_MS, clip_path
from test_bad_inputs import TALK, damage


@pytest.fixture(scope="module")
def damaged(tmp_path_factory):
    src = clip_path(TALK)
    dst = tmp_path_factory.mktemp("damage") / "damaged.mp4"
    dst.write_bytes(damage(src.read_bytes(), 0.5))
    return src, dst


def test_detect_reports_the_damaged_span_and_agrees_with_the_clean_file(damaged, detect_cached):
    src, dst = damaged
    clean, hurt = detect_cached(src), detect_cached(dst)
    assert clean.damaged == []
    assert len(hurt.damaged) >= 1
    (a, b), duration = hurt.damaged[0], clean.duration_s
    assert 0.2 * duration < a <= b < 0.8 * duration, hurt.damaged  # in the middle, where the bytes were hit
    assert b - a < 0.25 * duration, "local damage reported as most of the file"
    assert abs(hurt.offset_ms - clean.offset_ms) <= FRAME_25_MS, (hurt.offset_ms, clean.offset_ms)
    assert hurt.fps == pytest.approx(clean.fps, abs=0.05)  # lost frames do not change the frame rate
    assert "damaged at" in hurt.sentence() and "judged from the rest" in hurt.sentence()
    assert hurt.to_dict()["damaged"] == hurt.damaged


def test_lost_audio_packets_become_silence_of_their_length(damaged):
    src, dst = damaged
    t_clean, clean = read_audio(src)
    lost: list = []
    from avsync.media.decode import iter_audio_chunks

    parts = list(iter_audio_chunks(dst, damaged=lost))
    t_hurt, hurt = parts[0][0], np.concatenate([x for _, x in parts])
    assert t_hurt == pytest.approx(t_clean)
    if not lost:
        pytest.skip("the damage hit no audio packet in this clip")
    assert abs(len(hurt) - len(clean)) <= 160  # within 10 ms at 16 kHz: the clock is kept
    end = int((max(b for _, b in lost) - t_clean) * 16000) + 1600
    tail_c, tail_h = clean[end:], hurt[end : end + len(clean) - end]
    n = min(len(tail_c), len(tail_h))
    corr = np.corrcoef(tail_c[:n], tail_h[:n])[0, 1]
    assert corr > 0.9, corr  # after the damage the samples line up with the clean file's


def test_widespread_damage_is_still_a_corrupt_file(tmp_path, cli):
    from avsync.errors import TruncatedMediaError
    from conftest import assert_cli_error

    data = clip_path(TALK).read_bytes()
    for k in range(1, 10):  # a tenth of the file overwritten in nine places
        data = damage(data, k / 10, n=len(data) // 30, seed=k)
    bad = tmp_path / "shredded.mp4"
    bad.write_bytes(data)
    assert_cli_error(cli("detect", bad, cwd=tmp_path), TruncatedMediaError.exit_code)
