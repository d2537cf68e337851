"""The README's commands, run as written, print what the README says they print.

Every ```bash block of the README that is followed by "prints" and a plain ``` block is run, one command
line at a time, in a fresh folder (``../shared/data`` is the data folder beside the repository, and
``avsync`` this Python's ``python -m avsync``); the printed lines must equal the documented ones, text for
text and number for number, except the readings that the float rounding of another CPU can move
(``same_output``): the README was run on one machine, and the face-landmark and model runtimes pick their
kernels by the processor (AVX-512 or AVX2), which moves a reading by a millisecond, and a short segment
whose curve has two near-equal peaks by more. The same goes for the ```python example. Also: .ci/run runs the README's set-up and test commands
exactly, every exit code is in the README's table, and the README and pyproject agree on Python.
"""
from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys

import pytest

from avsync.errors import EXIT_CODES
from conftest import DATA, REPO

README = (REPO / "README.md").read_text(encoding="utf-8")
FENCE = re.compile(r"^```(\w*)\n(.*?)^```\n", re.S | re.M)


def blocks() -> list[tuple[str, str, str]]:
    """(language, body, text up to the next block) for every fenced block of the README."""
    found = list(FENCE.finditer(README))
    out = []
    for k, m in enumerate(found):
        end = found[k + 1].start() if k + 1 < len(found) else len(README)
        out.append((m.group(1), m.group(2), README[m.end() : end]))
    return out


def documented_runs() -> list[tuple[str, str, str]]:
    """(language, code, expected output) for each code block the README says "prints" for."""
    bs = blocks()
    runs = []
    for (lang, body, between), nxt in zip(bs, bs[1:]):
        if lang in ("bash", "python") and nxt[0] == "" and re.match(r"\s*prints\b", between):
            runs.append((lang, body, nxt[1]))
    return runs


_NUMBER = re.compile(r"(?<![\w.])[+-]?\d+(?:\.\d+)?")
#: What a reading may move by on another CPU: an offset within one frame at the README clips' 25 fps,
#: a confidence within 0.05; a bare number (the Python example's ``offset_ms``) within 2% or 0.05.
MS_TOLERANCE, FRAMES_TOLERANCE, CONFIDENCE_TOLERANCE = 40.0, 1.0, 0.05


def same_output(printed: str, expected: str) -> bool:
    """The same text around the numbers, and each number the same, or a reading within its tolerance."""
    def text(x: str) -> list[str]:  # (columns are padded to the numbers' widths)
        return [re.sub(r" +", " ", part) for part in _NUMBER.split(x)]

    if text(printed) != text(expected):
        return False
    got, want = list(_NUMBER.finditer(printed)), list(_NUMBER.finditer(expected))
    for g, w in zip(got, want):
        a, b = float(g.group()), float(w.group())
        after, before = expected[w.end() : w.end() + 7], expected[max(0, w.start() - 11) : w.start()]
        if re.match(r"\s*ms\b", after):
            tol = MS_TOLERANCE
        elif re.match(r"\s*frames?\b", after):
            tol = FRAMES_TOLERANCE
        elif before.endswith("confidence "):
            tol = CONFIDENCE_TOLERANCE
        elif re.match(r"\s*(s\b|fps\b|-)", after) or "." not in w.group():
            tol = 0.0  # times (segment bounds), frame rates, counts and labels: exact
        else:
            tol = max(0.05, 0.02 * abs(b))
        if abs(a - b) > tol + 1e-9:
            return False
    return True


def test_same_output_allows_cpu_rounding_of_readings_only():
    doc = "audio is 124 ms late (3.1 frames at 25 fps); confidence 0.99 -> out of sync\n  4.40-  8.48 s  -27 ms  face 1\n"
    assert same_output(doc.replace("124 ms", "123 ms").replace("  -27 ms", "   -0 ms"), doc)
    assert same_output(doc.replace("0.99", "0.96"), doc)
    assert not same_output(doc.replace("late", "early"), doc)  # the sign is text: never
    assert not same_output(doc.replace("124 ms", "170 ms"), doc)  # more than a frame
    assert not same_output(doc.replace("8.48", "8.52"), doc)  # segment bounds are exact
    assert not same_output(doc.replace("face 1", "face 0"), doc)
    assert not same_output(doc.replace("25 fps", "30 fps"), doc)
    assert same_output("122.6 0.99 True\n", "123.7 0.99 True\n") and not same_output("110.0 0.99 True\n", "123.7 0.99 True\n")


def _commands(body: str) -> list[str]:
    lines = []
    for line in body.splitlines():
        line = re.sub(r"\s{2,}#.*$", "", line).strip()  # a trailing comment, as the README writes them
        if line and not line.startswith("#"):
            lines.append(line)
    return lines


def _env() -> dict:
    env = {k: v for k, v in os.environ.items() if k != "AVSYNC_NATIVE_LOGS"}
    env["PYTHONPATH"] = str(REPO / "src") + os.pathsep + env.get("PYTHONPATH", "")
    env["COLUMNS"] = "200"
    env["PYTHONIOENCODING"] = "utf-8"
    return env


def _run_bash_line(line: str, cwd) -> str:
    argv = shlex.split(line.replace("../shared/data", str(DATA)))
    if argv[0] == "avsync":
        argv = [sys.executable, "-m", "avsync", *argv[1:]]
    elif argv[0] != "cp":
        raise AssertionError(f"the README test only runs avsync and cp, not: {line}")
    proc = subprocess.run(argv, cwd=cwd, env=_env(), capture_output=True, text=True, encoding="utf-8",
                          stdin=subprocess.DEVNULL, timeout=600)
    assert proc.returncode == 0, f"{line}\n{proc.stderr}"
    assert proc.stderr == "", f"{line} wrote to stderr: {proc.stderr!r}"
    return proc.stdout


def test_the_readme_documents_outputs():
    runs = documented_runs()
    langs = [lang for lang, _, _ in runs]
    assert langs.count("bash") >= 2 and "python" in langs, runs
    assert any("avsync detect" in body for _, body, _ in runs) and any("avsync fix" in body for _, body, _ in runs)


@pytest.fixture(scope="module")
def readme_outputs(tmp_path_factory, data_dir):
    """Run every documented block in order, in one folder (later blocks use earlier blocks' files)."""
    cwd = tmp_path_factory.mktemp("readme")
    got = []
    for lang, body, expected in documented_runs():
        if lang == "bash":
            printed = "".join(_run_bash_line(line, cwd) for line in _commands(body))
        else:
            proc = subprocess.run([sys.executable, "-c", body], cwd=cwd, env=_env(), capture_output=True,
                                  text=True, encoding="utf-8", stdin=subprocess.DEVNULL, timeout=600)
            assert proc.returncode == 0, proc.stderr
            assert proc.stderr == "", f"the Python example wrote to stderr: {proc.stderr!r}"
            printed = proc.stdout
        got.append((body, printed, expected))
    return got


@pytest.mark.parametrize("k", range(len(documented_runs())))
def test_readme_example_prints_what_the_readme_says(readme_outputs, k):
    body, printed, expected = readme_outputs[k]
    assert same_output(printed, expected), f"README block:\n{body}\nprinted:\n{printed}\ndocumented:\n{expected}"


def test_readme_fix_example_is_reliable_without_force(readme_outputs):
    # The main fix command works as written: the detected offset is reliable, so no --force is needed.
    body, printed, _ = next(r for r in readme_outputs if "avsync fix" in r[0])
    assert "--force" not in body
    assert "detected:" in printed and "low confidence" not in printed


def test_ci_runs_the_readme_set_up_and_test_commands_exactly():
    install = [b for lang, b, _ in blocks() if lang == "bash" and "setup.sh" in b][0].strip()
    test = [b for lang, b, _ in blocks() if lang == "bash" and "pytest" in b][0].strip()
    ci = (REPO / ".ci" / "run").read_text().splitlines()
    assert install in ci and test in ci, (install, test)
    assert ci.index(install) < ci.index(test)


def test_every_exit_code_is_in_the_readme_table():
    table = re.search(r"## Exit codes\n\n(.*?)\n\n", README, re.S).group(1)
    documented = {int(m) for m in re.findall(r"^\| (\d+) \|", table, re.M)}
    assert documented == set(EXIT_CODES), (sorted(documented), sorted(EXIT_CODES))


def test_readme_pyproject_and_setup_agree_on_python():
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib

    lo, hi = re.search(r"Python (3\.\d+)–(3\.\d+)", README).groups()
    spec = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["requires-python"]
    hi_minor = int(hi.split(".")[1])
    assert spec == f">={lo},<3.{hi_minor + 1}", spec
    setup = (REPO / "setup.sh").read_text()
    assert f"({lo.replace('.', ', ')}) <= sys.version_info[:2] <= ({hi.replace('.', ', ')})" in setup
    # This interpreter is one of the stated range (the others are checked in CI where they exist).
    assert (3, int(lo.split(".")[1])) <= sys.version_info[:2] <= (3, hi_minor)
