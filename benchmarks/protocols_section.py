"""Section 4 of docs/BENCHMARKS.md: the seed papers' protocols, through `avsync eval`.

Runs `python -m avsync eval --split dev` as a subprocess for every estimator the
project has (`avsync.available_models()`), reads its JSON report and renders
it as markdown. Imported by run_benchmarks.py.
"""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

#: Targets of the "Any face" issue for the default model: LRS2 context-window accuracy at 5 and 15 frames.
TARGET_LRS2 = {5: 0.60, 15: 0.90}


def _pct(x) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


def _reliability_line(c: dict) -> str:
    """One line on the confidence from the report's ``protocols.clip.reliability`` (n/a in older reports)."""
    r = c.get("reliability") or {}
    if not r:
        return "Reliability: n/a (report written before `reliability` was recorded).\n"
    n = r.get("reliable_n")
    if n == 0:
        return ("Reliability: no clip-level trial marked reliable (failures count as not reliable); the others "
                f"{_pct(r.get('unreliable_acc_pm1'))} right within ±1.\n")
    return (f"Reliability: {_pct(r.get('reliable_share'))} of the clip-level trials marked reliable "
            f"({'n/a' if n is None else n} trial{'' if n == 1 else 's'}; failures count as not reliable); of these "
            f"{_pct(r.get('reliable_acc_pm1'))} right within ±1 frame and {_pct(r.get('reliable_acc_consistent'))} "
            f"shift-consistent; the others {_pct(r.get('unreliable_acc_pm1'))} right within ±1.\n")


def _render(rep: dict, command: str, date: str, machine: str, seconds: float) -> str:
    P = rep["protocols"]
    L = [f"### Model `{rep['model']}` ({rep['method']})\n"]
    L.append(f"- **Command:** `{command}`")
    L.append(f"- **Date:** {date}. **Machine:** {machine}. **Data split:** `dev` ({len(rep['clips'])} clips; "
             f"{sum(1 for c in rep['clips'] if 'error' in c)} could not be analysed). "
             + (f"Run time {seconds / 60:.1f} min." if seconds else "Run time not recorded."))
    L.append("- Trials are made in feature space from one extraction per clip (the protocol's trim, applied to "
             "the decoded streams); section 1 checks the same method on trial files.\n")
    c = P.get("clip")
    if c:
        L.append("| clip-level protocol | trials | failures | ±1 frame | exact | shift-consistent ±1 | MAE (ms) |")
        L.append("|---|---:|---:|---:|---:|---:|---:|")
        L.append(f"| standard offsets (±15) | {c['n']} | {c['failures']} | {_pct(c['acc_pm1'])} | "
                 f"{_pct(c['acc_exact'])} | {_pct(c.get('acc_consistent'))} | {c['mae_ms']:.0f} |"
                 if c["n"] else "| standard | 0 | | | | | |")
        e = P.get("clip_extended")
        if e and e["n"]:
            L.append(f"| extended (±20, ±25; search ±30) | {e['n']} | {e['failures']} | {_pct(e['acc_pm1'])} | "
                     f"{_pct(e['acc_exact'])} | {_pct(e.get('acc_consistent'))} | {e['mae_ms']:.0f} |")
        L.append("")
        L.append("Shift-consistent: a trial's error is within ±1.5 frames of its clip's median signed error "
                 "(failures count as wrong). " + _reliability_line(c))
        if c.get("per_offset"):
            L.append("| true offset (frames) | " + " | ".join(f"{r['offset_frames']:+d}" for r in c["per_offset"]) + " |")
            L.append("|---|" + "---:|" * len(c["per_offset"]))
            L.append("| ±1 frame | " + " | ".join(_pct(r["acc_pm1"]) for r in c["per_offset"]) + " |")
            L.append("| mean error (frames) | " + " | ".join(f"{r['mean_error_frames']:+.2f}" for r in c["per_offset"]) + " |")
            L.append("")
    for name, label in (("lrs2", "LRS2 context windows"), ("singing", "singing protocol")):
        if name in P and P[name]["contexts"]:
            rows = P[name]["contexts"]
            L.append(f"| {label}: context (frames), ±{P[name]['search_frames']} searched, correct within "
                     f"±{P[name]['tolerance_frames']} | " + " | ".join(str(r["frames"]) for r in rows) + " |")
            L.append("|---|" + "---:|" * len(rows))
            L.append("| accuracy | " + " | ".join(_pct(r["accuracy"]) for r in rows) + " |")
            L.append("| windows | " + " | ".join(str(r["windows"]) for r in rows) + " |")
            L.append("")
    if "strict" in P and P["strict"]["lengths"]:
        L.append("| strict (Sync-cls): N frames, same N audio frames, offsets [−5, +5] | exact | ±1 | reps | windows/rep |")
        L.append("|---|---:|---:|---:|---:|")
        for r in P["strict"]["lengths"]:
            L.append(f"| N = {r['frames']} | {100 * r['exact_mean']:.1f} ± {100 * r['exact_std']:.1f}% | "
                     f"{100 * r['pm1_mean']:.1f} ± {100 * r['pm1_std']:.1f}% | {r['reps']} | {r['windows_per_rep']} |")
        L.append("")
    if "regression" in P:
        r = P["regression"]
        rm = "n/a" if r["rmse_frames"] is None else f"{r['rmse_frames']:.2f}"
        L.append(f"Regression protocol: rMSE **{rm} frames** over {r['n']} trials with offsets uniform in ±15 "
                 f"(no-information rate {r['no_information_rmse_frames']:.2f}; {r['failures']} failures).\n")
    return "\n".join(L)


def _reusable(report: Path, model: str, quick: bool) -> dict | None:
    """A previous full report of the same weights (``--reuse-evals``) that has this page's figures; never for
    the model-free method, whose code has no fingerprint."""
    import avsync

    if quick or model == "modelfree" or not report.exists():
        return None
    rep = json.loads(report.read_text())
    sha = getattr(avsync.load_model(model), "sha256", None)
    full = rep.get("options", {}).get("reps") == 10 and not rep.get("partial")
    # Reports from before shift-consistent accuracy and reliability were recorded are re-run, not reused.
    current = "acc_consistent" in rep.get("protocols", {}).get("clip", {})
    return rep if sha and rep.get("model_sha256") == sha and full and current else None


def _lrs2_target_rows(model: str, lrs2: dict, quick: bool) -> list[list[str]]:
    """Target rows of the default model's LRS2 context-window accuracy."""
    rows = []
    for n, target in TARGET_LRS2.items():
        x = lrs2.get(n)
        status = ("**not met** (not measured)" if x is None else "**met**" if x >= target - 1e-12 else
                  f"**not met** (missed by {100 * (target - x):.1f} points)")
        rows.append([f"LRS2 context accuracy, {n} frames, default model `{model}`, dev (section 4)"
                     + (" — QUICK subset" if quick else ""), f"≥ {100 * target:g}%", _pct(x), status])
    return rows


def protocols_section(data: Path, workdir: Path, date: str, machine: str, cmdline: str, quick: bool,
                      reuse: bool = False, models: list[str] | None = None) -> dict:
    """Section 4; ``models`` restricts it to some of ``avsync.available_models()`` (default: all)."""
    import avsync
    from avsync.api import default_model

    t0 = time.perf_counter()
    default = default_model()
    parts, raw, summary, targets = [], {}, [], []  # targets: the default model's rows, listed first
    parts.append("## 4. The seed papers' protocols (`avsync eval`, dev split)\n")
    parts.append(f"Generated as part of `{cmdline}`, which runs the command below for each model. "
                 "Context-window accuracy is the LRS2 protocol of VocaLiST/SyncNet (±15 frames searched, 5-frame "
                 "scores averaged over the context, correct within ±1); singing allows ±5 and contexts up to 25; "
                 "strict is Sync-cls's protocol (mean ± std over repetitions with random offsets); regression is "
                 "seed 003's rMSE.\n")
    for model in [m for m in avsync.available_models() if models is None or m in models]:
        report = workdir / f"eval-{model}.json"
        cmd = [sys.executable, "-m", "avsync", "eval", "--split", "dev", "--manifest", str(data / "manifest.tsv"),
               "--model", model, "--report", str(report)]
        if quick:
            cmd += ["--limit", "3", "--reps", "2"]
        shown = "avsync eval --split dev --model " + model + " --report eval.json" + (
            " --limit 3 --reps 2" if quick else "")
        t = time.perf_counter()
        old = _reusable(report, model, quick) if reuse else None
        if old is not None:
            proc = subprocess.CompletedProcess(cmd, 0)
            secs = old.get("seconds")
        else:
            report.unlink(missing_ok=True)
            proc = subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL)
            secs = time.perf_counter() - t
        if proc.returncode != 0 or not report.exists():
            parts.append(f"### Model `{model}`\n\n`{shown}` failed (exit {proc.returncode}): "
                         f"{(proc.stderr.strip().splitlines() or ['no output'])[-1]}\n")
            if model == default:
                targets += [[row[0], row[1], "failed", f"**not met** (`avsync eval` exit {proc.returncode})"]
                            for row in _lrs2_target_rows(model, {}, quick)]
            else:
                summary.append([f"`avsync eval` protocols, `{model}`", "reported", "failed", "—"])
            continue
        rep = json.loads(report.read_text())
        raw[model] = rep["protocols"]
        parts.append(_render(rep, shown, date, machine, secs))
        if old is not None:
            parts.append(f"(Report of {rep['date']} reused: same weights, sha256 {rep['model_sha256'][:12]}…; "
                         "`--reuse-evals`.)\n")
        lrs2 = {r["frames"]: r["accuracy"] for r in rep["protocols"].get("lrs2", {}).get("contexts", [])}
        if model == default:
            targets += _lrs2_target_rows(model, lrs2, quick)
        else:
            summary.append([f"LRS2 context accuracy (5 / 15 frames), `{model}`, dev", "no target set (reported)",
                            f"{_pct(lrs2.get(5))} / {_pct(lrs2.get(15))}", "—"])
    if models is not None and default not in models:
        targets += [[row[0], row[1], "not run", "not checked (`--models` leaves the default model out)"]
                    for row in _lrs2_target_rows(default, {}, quick)]
    raw["seconds"] = time.perf_counter() - t0
    return {"summary": targets + summary, "markdown": "\n".join(parts) + "\n", "raw": raw}
