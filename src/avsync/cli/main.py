"""The ``avsync`` command line: a thin shell over ``avsync.api``."""
from __future__ import annotations

import json
import os
import sys
import traceback
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from avsync.errors import EXIT_CODES, AvsyncError, UncertainError, UsageError
from avsync.native_logs import own_stderr

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    # Plain help text: typer's rich help shows every flag as `--json <bool>`, as if it took a value.
    rich_markup_mode=None,
    help=(
        "Measure and fix audio-to-lip sync. offset_ms > 0 means the audio lags the picture "
        "(fix: advance the audio).\n\nExit codes: "
        + "; ".join(f"{k}: {v}" for k, v in sorted(EXIT_CODES.items()))
    ),
)

# MediaPipe's native log lines are noise to a user: the CLI sends fd 2 to /dev/null
# for good (the library hides them only while a face tracker runs); avsync's own
# messages, progress bar and tracebacks go to a private handle on the real stderr.
_stderr = own_stderr()
sys.stderr = _stderr  # Python-level writers (click, warnings) keep a working stderr
err = Console(file=_stderr, highlight=False, soft_wrap=True)
out = Console(highlight=False, soft_wrap=True)

#: Exit code for unexpected internal errors (a bug: the traceback is printed).
INTERNAL_ERROR = 70


def _one_line(text: str) -> str:
    """Control characters (a newline in a file name, say) shown escaped, so an error stays one line."""
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text)


def _fail(exc: AvsyncError) -> None:
    err.print(f"avsync: {_one_line(str(exc))}", markup=False, soft_wrap=True)
    raise typer.Exit(exc.exit_code)


def _run(fn):
    try:
        return fn()
    except AvsyncError as exc:
        _fail(exc)
    except KeyboardInterrupt:
        err.print("avsync: interrupted", markup=False)
        raise typer.Exit(130) from None
    except typer.Exit:
        raise
    except Exception:  # a bug, not a user error: show it, with a distinct code
        traceback.print_exc(file=_stderr)
        err.print("avsync: internal error (please report it with the traceback above)", markup=False)
        raise typer.Exit(INTERNAL_ERROR) from None


def _progress(enabled: bool):
    if not enabled:
        return None, None
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    prog = Progress(TextColumn("analysing"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
                    TimeRemainingColumn(), console=err, transient=True)
    task = prog.add_task("detect", total=1.0)
    return prog, (lambda frac: prog.update(task, completed=frac))


def _print_version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version as dist_version

        try:
            v = dist_version("avsync")
        except PackageNotFoundError:  # run from a source tree that was never installed
            import avsync

            v = avsync.__version__
        out.print(f"avsync {v}", markup=False)
        raise typer.Exit(0)


@app.callback()
def _main_options(
    version: bool = typer.Option(False, "--version", is_eager=True, callback=_print_version,
                                 help="Print the version and exit."),
):
    pass


@app.command()
def detect(
    # readable=False: avsync checks the input itself, for its own message and exit code (14 when unreadable)
    path: Path = typer.Argument(..., help="Video file to analyse.", show_default=False, readable=False),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object on stdout."),
    max_offset_ms: Optional[float] = typer.Option(
        None, "--max-offset-ms", help="Search range either way in ms (default ±15 frames; up to 3000)."),
    tolerance_frames: float = typer.Option(1.0, "--tolerance-frames", help="In-sync tolerance in frames."),
    window_frames: Optional[int] = typer.Option(
        None, "--window-frames", help="Also estimate the offset in consecutive windows of N frames."),
    max_faces: int = typer.Option(4, "--max-faces", help="Most faces to track at once."),
    model: Optional[str] = typer.Option(
        None, "--model", help="Estimator name (see `avsync models`) or a .pt checkpoint; default: the shipped default."),
    check: bool = typer.Option(False, "--check", help="Exit 1 when the file is out of sync (for QC scripts)."),
    curve: bool = typer.Option(False, "--curve", help="Keep the score curve in the JSON."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
):
    """Say how far the audio is ahead of or behind the lips."""
    import avsync

    def work():
        prog, hook = _progress(not quiet and not json_out and err.is_terminal)
        if prog:
            prog.start()
        try:
            return avsync.detect(path, max_offset_ms=max_offset_ms, tolerance_frames=tolerance_frames,
                                 window_frames=window_frames, max_faces=max_faces, model=model, progress=hook)
        finally:
            if prog:
                prog.stop()

    result = _run(work)
    if json_out:
        d = result.to_dict()
        if not curve:
            d.pop("curve", None)
        sys.stdout.write(json.dumps(d) + "\n")
    else:
        out.print(result.sentence(), markup=False)
        if result.windows:
            for w in result.windows:
                off = "   n/a" if w.offset_ms is None else f"{w.offset_ms:+7.0f} ms"
                out.print(f"  {w.start_s:8.2f}-{w.end_s:8.2f} s  {off}  confidence {w.confidence:.2f}", markup=False)
    if check and not result.in_sync:
        raise typer.Exit(1)


@app.command()
def fix(
    path: Path = typer.Argument(..., help="Video file to correct (never modified).", show_default=False,
                                readable=False),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Output file (default NAME.fixed.EXT)."),
    offset_ms: Optional[float] = typer.Option(
        None, "--offset-ms", help="Apply this known offset (ms, >0 = audio late) instead of detecting."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace the output file if it exists."),
    force: bool = typer.Option(False, "--force", help="Apply a detected offset even when its confidence is low."),
    max_offset_ms: Optional[float] = typer.Option(None, "--max-offset-ms", help="Search range when detecting."),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object on stdout."),
):
    """Write a corrected copy: video copied, audio shifted sample-exactly."""
    import avsync

    def work():
        detected = None
        off = offset_ms
        if off is None:
            detected = avsync.detect(path, max_offset_ms=max_offset_ms)
            off = detected.offset_ms
            if not detected.reliable and not force:
                raise UncertainError(
                    f"not writing a correction: {detected.sentence()}. "
                    "Pass --force to apply it anyway, or --offset-ms to give the offset")
        report = avsync.correct(path, output, offset_ms=off, overwrite=overwrite)
        return detected, report

    detected, report = _run(work)
    if json_out:
        d = {"input": report.input, "output": report.output, "applied_offset_ms": report.offset_ms,
             "audio": report.audio, "copied_streams": report.copied_streams, "dropped_streams": report.dropped_streams,
             "damaged": report.damaged,
             "detected": detected.to_dict() if detected else None}
        if d["detected"]:
            d["detected"].pop("curve", None)
        sys.stdout.write(json.dumps(d) + "\n")
        return
    if detected is not None:
        out.print(f"detected: {detected.sentence()}", markup=False)
    how = "advanced" if report.offset_ms > 0 else "delayed"
    copied = f", {report.copied_streams} other stream(s) copied" if report.copied_streams else ""
    out.print(f"wrote {report.output}: audio {how} by {abs(report.offset_ms):.1f} ms{copied}", markup=False)
    for d in report.dropped_streams:
        err.print(f"avsync: note: stream {d} could not be copied and was left out", markup=False)
    if report.damaged:
        spans = ", ".join(f"{a:.1f}-{b:.1f} s" for a, b in report.damaged)
        err.print(f"avsync: note: the input's audio is damaged at {spans}: written as silence", markup=False)


@app.command("eval")
def eval_cmd(
    inputs: list[str] = typer.Argument(None, help="Folders, list files (.txt) or clips of in-sync video.",
                                        show_default=False),
    split: Optional[str] = typer.Option(None, "--split", help="Use the clips of this split of the manifest."),
    manifest: Path = typer.Option(Path("../shared/data/manifest.tsv"), "--manifest",
                                  help="Data manifest (speakers, splits)."),
    model: Optional[str] = typer.Option(None, "--model", "--method",
                                        help="Estimator to score (see `avsync models`) or a .pt checkpoint."),
    protocol: list[str] = typer.Option(["all"], "--protocol", "-p",
                                       help="clip, lrs2, singing, strict, regression or all (repeatable)."),
    report: Optional[Path] = typer.Option(None, "--report", help="Write the JSON report here."),
    plot: Optional[Path] = typer.Option(None, "--plot", help="Write a PNG: accuracy vs context, error vs offset."),
    reps: int = typer.Option(10, "--reps", help="Repetitions of the strict protocol."),
    seed: int = typer.Option(0, "--seed", help="Seed for the random offsets (reruns match)."),
    no_extended: bool = typer.Option(False, "--no-extended", help="Skip the ±20/±25-frame pass."),
    limit: Optional[int] = typer.Option(None, "--limit", help="Only the first N clips."),
):
    """Run the seed papers' sync protocols over in-sync clips and report accuracy."""
    from avsync.eval.render import print_report, save_plot
    from avsync.eval.runner import PROTOCOLS, EvalOptions, collect_clips, evaluate

    protos = PROTOCOLS if "all" in protocol else tuple(dict.fromkeys(protocol))
    opts = EvalOptions(protocols=protos, model=model, seed=seed, reps=reps, extended=not no_extended)
    command = "avsync eval " + " ".join(sys.argv[2:])

    def work():
        opts.check()
        clips = collect_clips(inputs or [], split=split, manifest=manifest)
        if limit is not None:
            clips[:] = clips[:limit]
        if not clips:
            raise UsageError("no clips to evaluate: give folders, files or --split")
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        with Progress(TextColumn("eval"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.description}"),
                      TimeElapsedColumn(), console=err, transient=True, disable=not err.is_terminal) as prog:
            task = prog.add_task("", total=len(clips))

            def on_clip(i, clip, rec):
                prog.update(task, completed=i + 1, description=Path(clip.path).name[:40])
                if "error" in rec:
                    err.print(f"avsync: skipped {clip.path}: {rec['error']}", markup=False)

            return evaluate(clips, opts, command=command, on_clip=on_clip)

    rep = _run(work)
    print_report(rep, out)
    if report is not None:
        from avsync.util import atomic_output

        def write():
            with atomic_output(report) as tmp:
                tmp.write_text(json.dumps(rep, indent=1, default=float))
        _run(write)
        out.print(f"report: {report}", markup=False)
    if plot is not None:
        _run(lambda: save_plot(rep, plot))
        out.print(f"plot: {plot}", markup=False)
    if rep.get("partial"):
        raise typer.Exit(130)


@app.command()
def models(json_out: bool = typer.Option(False, "--json", help="Print the registry as JSON.")):
    """List the estimators avsync can use: the model-free method and the shipped trained models."""
    import avsync
    from avsync.models.registry import fusions, registry

    reg = registry()
    fused = fusions()
    default = avsync.api.default_model()
    if json_out:
        listed = {"modelfree": {"family": "model-free"}, **reg,
                  **{name: {"family": "fusion", **spec} for name, spec in fused.items()}}
        sys.stdout.write(json.dumps({"default": default, "models": listed, "fusions": fused}) + "\n")
        return
    from rich.table import Table

    table = Table("  name", "family", "input", "params", "size", "sha256", box=None, pad_edge=False)
    for col in table.columns:  # a name cut short cannot be passed to --model: never wrap or crop cells
        col.no_wrap = True
        col.overflow = "ignore"

    def mark(name: str) -> str:
        return ("* " if name == default else "  ") + name

    table.add_row(mark("modelfree"), "model-free", "landmarks", "0", "-", "-")
    for name, e in sorted(reg.items()):
        table.add_row(mark(name), e["family"], e.get("visual", ""), f"{e.get('params') or 0:,}",
                      f"{e.get('size_bytes', 0) / 1e6:.1f} MB", e["sha256"][:12])
    for name in sorted(fused):
        table.add_row(mark(name), "fusion", "", "", "", "")
    wide = Console(highlight=False, width=max(out.width, table_width(table)), file=open(os.devnull, "w"))
    with wide.capture() as cap:
        wide.print(table)
    sys.stdout.write("\n".join(line.rstrip() for line in cap.get().splitlines()) + "\n")
    for name, e in sorted(reg.items()):
        out.print(f"{name}: {e.get('description', '')}", markup=False)
    for name, spec in sorted(fused.items()):
        members = ", ".join(f"{m} ×{w:g}" for m, w in zip(spec["members"], spec["weights"]))
        out.print(f"{name}: fusion of standardised score curves ({members})", markup=False)
    out.print("* default of `avsync detect`; any other is chosen with --model NAME (or --model FILE.pt)", markup=False)


def table_width(table) -> int:
    """Width a rich table needs with no cell cut or wrapped."""
    from rich.console import Console as _C

    probe = _C(width=10_000, file=open(os.devnull, "w"))
    return probe.measure(table).maximum


@app.command()
def train(
    config: Path = typer.Argument(..., help="Training config (TOML), e.g. configs/pm-small.toml.", show_default=False),
    out_dir: Optional[Path] = typer.Option(None, "--out", help="Run folder (default runs/<name>)."),
    data: Path = typer.Option(Path("../shared/data"), "--data", help="Data folder holding manifest.tsv."),
    resume: bool = typer.Option(False, "--resume", help="Continue from <out>/last.pt."),
    steps: Optional[int] = typer.Option(None, "--steps", help="Override the config's step count."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
):
    """Train a model from a config (CPU, one GPU, or several via torchrun); writes a self-describing checkpoint."""

    def work():
        if not config.is_file():
            raise UsageError(f"no such config: {config}")
        if not (data / "manifest.tsv").is_file():
            raise UsageError(f"no manifest.tsv in {data}")
        from avsync.train.loop import load_config, train as run_training

        try:
            cfg = load_config(config)
        except (ValueError, OSError) as exc:
            raise UsageError(f"bad config {config}: {exc}") from None
        return run_training(cfg, out_dir or Path("runs") / cfg["name"], data_dir=data, resume=resume,
                            progress=not quiet, steps=steps)  # a bar on a terminal, else a line per save

    path = _run(work)
    out.print(f"checkpoint: {path}", markup=False)


@app.command()
def version():
    """Print the version."""
    import avsync

    out.print(avsync.__version__)


def main() -> None:
    """Console entry point: click's own usage errors also become one ``avsync:`` line."""
    try:
        code = app(standalone_mode=False)
    except typer.Exit as exc:
        code = exc.exit_code
    except typer.Abort:
        err.print("avsync: interrupted", markup=False)
        code = 130
    except Exception as exc:
        # Click's usage errors (bad option values, missing arguments): they carry
        # format_message() and exit_code 2, whichever click typer bundles.
        if not (hasattr(exc, "format_message") and getattr(exc, "exit_code", None) == UsageError.exit_code):
            raise
        message = _one_line(exc.format_message()).strip()
        if message:  # empty when the help was shown for a bare `avsync`
            err.print(f"avsync: {message} (see avsync --help)", markup=False)
        code = UsageError.exit_code
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
