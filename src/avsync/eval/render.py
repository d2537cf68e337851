"""Show an eval report: rich tables on the terminal, and a PNG plot."""
from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.table import Table

from avsync.errors import UsageError
from avsync.util import atomic_output


def _pct(x) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


def print_report(rep: dict, console: Console) -> None:
    P = rep["protocols"]
    title = f"avsync eval — model {rep['model']} — {len(rep['clips'])} clips"
    if rep.get("partial"):
        title += " (PARTIAL: interrupted)"
    console.print(title, markup=False)
    for name in ("clip", "clip_extended"):
        if name in P:
            c = P[name]
            t = Table(title=f"{name}-level ({'±20/±25' if name.endswith('extended') else 'standard offsets'})")
            for col in ("trials", "failures", "±1 frame", "exact", "shift-consistent ±1", "MAE ms"):
                t.add_column(col, justify="right")
            t.add_row(str(c["n"]), str(c["failures"]), _pct(c["acc_pm1"]), _pct(c["acc_exact"]),
                      _pct(c.get("acc_consistent")), "n/a" if c["mae_ms"] is None else f"{c['mae_ms']:.0f}")
            console.print(t)
            rel = c.get("reliability")
            if rel:
                t = Table(title=f"{name}: confidence — {_pct(rel['reliable_share'])} of trials marked reliable, "
                                f"{_pct(rel['reliable_acc_pm1'])} of those within ±1 frame "
                                f"({_pct(rel['reliable_acc_consistent'])} shift-consistent)")
                for col in ("confidence", "trials", "share", "±1 frame"):
                    t.add_column(col, justify="right")
                for b in rel["bins"]:
                    t.add_row(f"{b['lo']:.2f}–{b['hi']:.2f}", str(b["n"]), _pct(b["share"]), _pct(b["accuracy"]))
                console.print(t)
            if c.get("per_offset"):
                t = Table(title=f"{name}: error by true offset")
                for col in ("offset (frames)", "n", "±1 frame", "mean error", "mean |error|"):
                    t.add_column(col, justify="right")
                for r in c["per_offset"]:
                    t.add_row(f"{r['offset_frames']:+d}", str(r["n"]), _pct(r["acc_pm1"]),
                              f"{r['mean_error_frames']:+.2f}", f"{r['mean_abs_error_frames']:.2f}")
                console.print(t)
    for name in ("lrs2", "singing"):
        if name in P:
            t = Table(title=f"{name} context windows (±{P[name]['search_frames']} searched, "
                            f"correct within ±{P[name]['tolerance_frames']})")
            t.add_column("context (frames)", justify="right")
            t.add_column("windows", justify="right")
            t.add_column("accuracy", justify="right")
            for r in P[name]["contexts"]:
                t.add_row(str(r["frames"]), str(r["windows"]), _pct(r["accuracy"]))
            console.print(t)
    if "strict" in P:
        t = Table(title="strict (Sync-cls): N frames, same N audio frames, offsets [-5, +5]")
        for col in ("N", "reps", "windows/rep", "exact", "±1"):
            t.add_column(col, justify="right")
        for r in P["strict"]["lengths"]:
            t.add_row(str(r["frames"]), str(r["reps"]), str(r["windows_per_rep"]),
                      f"{100 * r['exact_mean']:.1f} ± {100 * r['exact_std']:.1f}%",
                      f"{100 * r['pm1_mean']:.1f} ± {100 * r['pm1_std']:.1f}%")
        console.print(t)
    if "regression" in P:
        r = P["regression"]
        rm = "n/a" if r["rmse_frames"] is None else f"{r['rmse_frames']:.2f}"
        console.print(f"regression: rMSE {rm} frames over {r['n']} trials "
                      f"(no-information rate {r['no_information_rmse_frames']:.2f}); failures {r['failures']}",
                      markup=False)
    for ref in rep.get("refused", []):
        console.print(f"refused {ref['path']}: {ref['why']}", markup=False)


def save_plot(rep: dict, path: str | Path) -> None:
    """Accuracy against context length, and error against true offset, as one PNG."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise UsageError("--plot needs matplotlib: pip install 'avsync[plot]'") from None
    P = rep["protocols"]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    ax = axes[0]
    for name, style in (("lrs2", "o-"), ("singing", "s--")):
        if name in P and P[name]["contexts"]:
            xs = [r["frames"] for r in P[name]["contexts"] if r["accuracy"] is not None]
            ys = [100 * r["accuracy"] for r in P[name]["contexts"] if r["accuracy"] is not None]
            ax.plot(xs, ys, style, label=f"{name} (±{P[name]['tolerance_frames']})")
    if "strict" in P and P["strict"]["lengths"]:
        rows = P["strict"]["lengths"]
        ax.errorbar([r["frames"] for r in rows], [100 * r["pm1_mean"] for r in rows],
                    yerr=[100 * r["pm1_std"] for r in rows], fmt="^:", label="strict (±1)")
    ax.set_xlabel("context (video frames)")
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title("accuracy against context length")
    ax = axes[1]
    for name, colour in (("clip", "C0"), ("clip_extended", "C1")):
        if name in P and P[name].get("per_offset"):
            rows = P[name]["per_offset"]
            ax.plot([r["offset_frames"] for r in rows], [r["mean_abs_error_frames"] for r in rows], "o-",
                    color=colour, label=f"{name}: mean |error|")
            ax.plot([r["offset_frames"] for r in rows], [r["mean_error_frames"] for r in rows], "x--",
                    color=colour, alpha=0.6, label=f"{name}: mean error")
    ax.axhline(0, color="k", lw=0.5)
    ax.set_xlabel("true offset (frames, + = audio late)")
    ax.set_ylabel("error (frames)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title("error against true offset")
    fig.suptitle(f"avsync eval — {rep['model']} — {len(rep['clips'])} clips" + (" (partial)" if rep.get("partial") else ""))
    fig.tight_layout()
    try:
        with atomic_output(path) as tmp:
            fig.savefig(tmp, dpi=110, format="png")
    finally:
        plt.close(fig)
