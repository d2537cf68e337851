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
    tolerance_frames: Optional[float] = typer.Option(
        None, "--tolerance-frames", help="In-sync tolerance in the file's frames (default 1; 5 with --singing)."),
    window_frames: Optional[int] = typer.Option(
        None, "--window-frames", help="Also estimate the offset in consecutive windows of N frames."),
    max_faces: int = typer.Option(4, "--max-faces", help="Most faces to track at once."),
    model: Optional[str] = typer.Option(
        None, "--model", help="Estimator name (see `avsync models`) or a .pt checkpoint; default: the shipped default."),
    face: Optional[int] = typer.Option(None, "--face", help="Read only face N (its number in the JSON's faces)."),
    singing: bool = typer.Option(False, "--singing", help="Singing: longer segments, ±5-frame tolerance."),
    segments: bool = typer.Option(False, "--segments", help="Also print the offset over time, segment by segment."),
    check: bool = typer.Option(False, "--check", help="Exit 1 when the file is out of sync (for QC scripts)."),
    curve: bool = typer.Option(False, "--curve", help="Keep the score curve (and with --plot the similarity "
                               "matrix) in the JSON."),
    plot: Optional[Path] = typer.Option(
        None, "--plot", help="Also draw a PNG: score over offsets, offset over time, similarity matrix "
        "(needs avsync[plot])."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
):
    """Say how far the audio is ahead of or behind the lips."""
    import avsync

    def work():
        windows = window_frames
        if plot is not None:
            from avsync.viz.figure import PLOT_WINDOW_FRAMES, _pyplot

            _pyplot()  # a missing matplotlib is said before the work, not after
            windows = windows or PLOT_WINDOW_FRAMES
        prog, hook = _progress(not quiet and not json_out and err.is_terminal)
        if prog:
            prog.start()
        try:
            result = avsync.detect(path, max_offset_ms=max_offset_ms, tolerance_frames=tolerance_frames,
                                   window_frames=windows, max_faces=max_faces, model=model, face=face,
                                   singing=singing, similarity=plot is not None, progress=hook)
        finally:
            if prog:
                prog.stop()
        if plot is not None:
            from avsync.viz import save_sync_figure

            save_sync_figure(result, plot)
            if not window_frames:
                result.windows = None  # drawn, but not asked for in the output
        return result

    result = _run(work)
    if json_out:
        d = result.to_dict()
        if not curve:
            d.pop("curve", None)
            d.pop("similarity", None)
        sys.stdout.write(json.dumps(d) + "\n")
    else:
        out.print(result.sentence(), markup=False)
        if segments:
            for g in result.segments:
                off = f"{g['offset_ms']:+7.0f} ms  confidence {g['confidence']:.2f}  face {g['face']}" \
                    if g["offset_ms"] is not None else f"   n/a      ({g['reason']})"
                out.print(f"  {g['start_s']:8.2f}-{g['end_s']:8.2f} s  {off}", markup=False)
        if result.windows:
            for w in result.windows:
                off = "   n/a" if w.offset_ms is None else f"{w.offset_ms:+7.0f} ms"
                out.print(f"  {w.start_s:8.2f}-{w.end_s:8.2f} s  {off}  confidence {w.confidence:.2f}", markup=False)
        if plot is not None:
            out.print(f"plot: {plot}", markup=False)
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
        timeline = None
        if off is None:
            detected = avsync.detect(path, max_offset_ms=max_offset_ms)
            off = detected.offset_ms
            if not detected.reliable and not force:
                raise UncertainError(
                    f"not writing a correction: {detected.sentence()}. "
                    "Pass --force to apply it anyway, or --offset-ms to give the offset")
            timeline = detected.timeline  # drift or edits are applied over time; a constant is one shift
        report = avsync.correct(path, output, offset_ms=off, overwrite=overwrite, timeline=timeline)
        return detected, report

    detected, report = _run(work)
    if json_out:
        d = {"input": report.input, "output": report.output, "applied_offset_ms": report.offset_ms,
             "applied_timeline": report.timeline,
             "audio": report.audio, "copied_streams": report.copied_streams, "dropped_streams": report.dropped_streams,
             "damaged": report.damaged,
             "detected": detected.to_dict() if detected else None}
        if d["detected"]:
            d["detected"].pop("curve", None)
        sys.stdout.write(json.dumps(d) + "\n")
        return
    if detected is not None:
        out.print(f"detected: {detected.sentence()}", markup=False)
    copied = f", {report.copied_streams} other stream(s) copied" if report.copied_streams else ""
    if report.timeline is not None:
        tl = report.timeline
        what = (f"drift of {tl['drift_ms_per_min']:+.1f} ms/min removed by resampling" if tl["kind"] == "linear"
                else "shifted per piece (" + ", ".join(f"{p['offset_ms']:+.0f} ms from {p['start_s']:.1f} s"
                                                        for p in tl["pieces"]) + ")")
        out.print(f"wrote {report.output}: audio {what}{copied}", markup=False)
    else:
        how = "advanced" if report.offset_ms > 0 else "delayed"
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


def _batch_progress(label: str):
    """A rich bar for batch runs: files done, failures, ETA (drawn only on a terminal)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    prog = Progress(TextColumn(label), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[failed]} failed"),
                    TimeRemainingColumn(), console=err, transient=True, disable=not err.is_terminal)
    task = prog.add_task("", total=None, failed=0)

    def hook(done: int, total: int, failed: int) -> None:
        prog.update(task, completed=done, total=total, failed=failed)

    return prog, hook


def _batch_common(inputs, report, opts, workers, engine, address, restart, columns, label):
    from avsync.batch import run_batch

    def work():
        prog, hook = _batch_progress(label)
        with prog:
            return run_batch(inputs, report, opts, workers=workers, engine=engine, address=address,
                             restart=restart, progress=hook, columns=columns)

    s = _run(work)
    again = f" ({s.resumed} from an earlier run)" if s.resumed else ""
    out.print(f"{s.done} files, {s.failed} failed{again}; report: {s.report}", markup=False)


_ENGINE_HELP = "local (worker processes on this machine) or ray (Ray tasks; pip install \"avsync[ray]\")."
_ADDRESS_HELP = "With --engine ray: a running cluster (auto, or ray://HOST:10001). Default: a local Ray for this run."


@app.command()
def batch(
    inputs: list[str] = typer.Argument(..., help="Video files, folders (recursive), globs or list files (.txt).",
                                       show_default=False),
    report: Path = typer.Option(..., "--report", help="out.csv or out.jsonl: one row per file.", show_default=False),
    workers: Optional[int] = typer.Option(None, "--workers", "-j", help="Parallel workers (default: the cores)."),
    engine: str = typer.Option("local", "--engine", help=_ENGINE_HELP),
    address: Optional[str] = typer.Option(None, "--address", help=_ADDRESS_HELP),
    fix_into: Optional[Path] = typer.Option(
        None, "--fix-into", help="Write corrected copies of reliably out-of-sync files into this folder."),
    force: bool = typer.Option(False, "--force", help="With --fix-into: also apply offsets that are not reliable."),
    model: Optional[str] = typer.Option(None, "--model", help="Estimator name or .pt checkpoint."),
    max_offset_ms: Optional[float] = typer.Option(None, "--max-offset-ms", help="Search range either way in ms."),
    tolerance_frames: float = typer.Option(1.0, "--tolerance-frames", help="In-sync tolerance in frames."),
    restart: bool = typer.Option(False, "--restart", help="Forget the job store beside the report and start again."),
):
    """Detect over many files into one report; a killed run resumes when the same command is run again."""
    from avsync.batch import DETECT_COLUMNS, BatchOptions

    opts = BatchOptions(kind="detect", model=model, max_offset_ms=max_offset_ms, tolerance_frames=tolerance_frames,
                        fix_into=str(fix_into) if fix_into is not None else None, force=force)
    _batch_common(inputs, report, opts, workers, engine, address, restart, DETECT_COLUMNS, "batch")


@app.command()
def score(
    inputs: list[str] = typer.Argument(..., help="Video files, folders (recursive), globs or list files (.txt).",
                                       show_default=False),
    report: Path = typer.Option(..., "--report", help="out.csv or out.jsonl: one row per file.", show_default=False),
    workers: Optional[int] = typer.Option(None, "--workers", "-j", help="Parallel workers (default: the cores)."),
    engine: str = typer.Option("local", "--engine", help=_ENGINE_HELP),
    address: Optional[str] = typer.Option(None, "--address", help=_ADDRESS_HELP),
    model: Optional[str] = typer.Option(None, "--model", help="A two-stream model (default: the shipped default)."),
    restart: bool = typer.Option(False, "--restart", help="Forget the job store beside the report and start again."),
):
    """Sync scores for generated talking faces, analogous to LSE-D / LSE-C, from avsync's own model."""
    import avsync
    from avsync.batch.score import SCORE_COLUMNS, check_score_model
    from avsync.batch import BatchOptions

    _run(lambda: check_score_model(avsync.load_model(model)))
    opts = BatchOptions(kind="score", model=model)
    _batch_common(inputs, report, opts, workers, engine, address, restart, SCORE_COLUMNS, "score")


@app.command()
def serve(
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on (default: this computer only)."),
    port: int = typer.Option(8000, "--port", help="Port to listen on."),
    max_upload_mb: float = typer.Option(500.0, "--max-upload-mb", help="Largest upload accepted, in MB."),
    ttl_minutes: float = typer.Option(60.0, "--ttl-minutes", help="Delete an upload after this long unused."),
    max_pending: int = typer.Option(4, "--max-pending", help="Uploads waiting or being analysed at once."),
    model: Optional[str] = typer.Option(None, "--model", help="Estimator name or .pt checkpoint."),
):
    """A web page to upload a video, read the verdict, preview a correction and download it (avsync[web])."""

    def work():
        if max_upload_mb <= 0 or ttl_minutes <= 0 or max_pending < 1 or not 0 < port < 65536:
            raise UsageError("--max-upload-mb and --ttl-minutes must be > 0, --max-pending >= 1, --port 1-65535")
        from avsync.api import DetectOptions

        DetectOptions(model=model).check()
        try:
            import uvicorn

            from avsync.web.app import create_app
            from avsync.web.jobs import WebSettings
        except ImportError as exc:
            raise UsageError(f'avsync serve needs the web extra: pip install "avsync[web]" ({exc})') from None
        settings = WebSettings(max_upload_bytes=int(max_upload_mb * 1024 * 1024), ttl_s=ttl_minutes * 60.0,
                               max_pending=max_pending, model=model)
        out.print(f"serving on http://{host}:{port}/ (Ctrl+C to stop)", markup=False)
        uvicorn.run(create_app(settings), host=host, port=port, log_level="warning")

    _run(work)


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
    minutes: Optional[float] = typer.Option(
        None, "--minutes", help="Wall-clock budget for the steps: the run is shortened to fit it (its schedule too)."),
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
        if minutes is not None:
            if not minutes > 0:
                raise UsageError(f"--minutes must be positive, not {minutes}")
            cfg.setdefault("train", {})["minutes"] = float(minutes)
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
