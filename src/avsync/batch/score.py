"""``avsync score``: sync scores for generated talking faces, analogous to LSE-D and LSE-C.

SyncNet's LSE scores (the Wav2Lip evaluation) take the distance between the
visual and the audio embedding of every 5-frame window at each offset within
±15 frames, average it over the windows into one curve, and report

* LSE-D: the curve's minimum (lower: lips and voice agree better);
* LSE-C: the curve's median minus its minimum (higher: a clearer best offset).

Here the same recipe runs on avsync's own two-stream model (``detect(similarity=True)``
gives each 5-frame window's cosine similarity at each candidate lag, on a
quarter-frame grid), with the cosine distance ``1 - cos`` in place of SyncNet's
Euclidean distance. Near the ends of a clip some lags have no audio; a lag
enters the curve when at least half the windows can be scored at it, so a
short clip gets a score over a narrower range of lags. The numbers are on another scale (0..2) and are only
comparable between runs of the same avsync model. ``lse_d_at_0`` is the distance
at offset 0, the file as it is: the LSE pair is read at the best offset and so
hardly moves when a video is shifted by a few frames; this one does.
"""
from __future__ import annotations

import numpy as np

from avsync.batch.store import Job
from avsync.errors import UsageError

SCORE_COLUMNS = ("file", "lse_d", "lse_c", "lse_d_at_0", "offset_ms", "offset_frames", "confidence", "windows",
                 "fps", "duration_s", "error", "exit_code", "message")

#: A lag enters the curve when at least this share of the windows can be scored at it.
MIN_WINDOW_SHARE = 0.5

#: Model families whose window scores are cosine similarities of two embeddings (SyncNet's design).
COSINE_FAMILIES = ("twostream",)


def check_score_model(estimator) -> None:
    if getattr(estimator, "family", None) not in COSINE_FAMILIES:
        raise UsageError(f"avsync score needs a two-stream (embedding) model; {estimator.name!r} is not one "
                         "(see `avsync models`: family twostream)")


def lse_scores(similarity: dict) -> dict:
    """LSE-D and LSE-C analogues from a ``SyncResult.similarity`` (window x lag cosine similarities)."""
    s = np.asarray(similarity["scores"], dtype=np.float64)
    lags = np.asarray(similarity["lags_ms"], dtype=np.float64)
    ok = np.isfinite(s)
    count = ok.sum(0)
    if count.max(initial=0) == 0:
        return {"lse_d": None, "lse_c": None, "lse_d_at_0": None, "windows": 0}
    # Lags at which at least half the windows have audio: all of them on a long clip; near 0 on a short
    # one, where SyncNet's tools return nothing.
    keep = count >= MIN_WINDOW_SHARE * count.max()
    d = np.where(ok[:, keep], 1.0 - s[:, keep], 0.0)
    curve = d.sum(0) / count[keep]
    best = float(curve.min())
    zero = int(np.argmin(np.abs(lags[keep])))
    return {"lse_d": round(best, 4), "lse_c": round(float(np.median(curve)) - best, 4),
            "lse_d_at_0": round(float(curve[zero]), 4), "windows": int(ok.any(1).sum())}


def score_row(job: Job, opts, estimator) -> dict:
    import avsync
    from avsync.batch.work import error_row

    try:
        check_score_model(estimator)
        r = avsync.detect(job.file, model=estimator, similarity=True, max_offset_ms=opts.max_offset_ms,
                          tolerance_frames=opts.tolerance_frames, max_faces=opts.max_faces)
    except Exception as exc:
        return error_row(job, exc, SCORE_COLUMNS)
    row = dict.fromkeys(SCORE_COLUMNS, None)
    row.update(file=job.file, offset_ms=r.offset_ms, offset_frames=r.offset_frames, confidence=r.confidence,
               fps=r.fps, duration_s=r.duration_s, **lse_scores(r.similarity))
    return row
