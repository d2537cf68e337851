"""Specific errors, each with its own CLI exit code.

The CLI prints ``str(error)`` as one line and exits with ``error.exit_code``;
no traceback is shown for these. Exit codes are part of the public interface
(documented in README.md) and never change meaning.
"""
from __future__ import annotations


class AvsyncError(Exception):
    """Base class of every error avsync raises on purpose."""

    exit_code = 1


class UsageError(AvsyncError):
    """Arguments that cannot work together (bad range, output == input...)."""

    exit_code = 2


class InputNotFoundError(AvsyncError):
    exit_code = 3


class InputUnreadableError(AvsyncError):
    """The input exists but this user may not read it."""

    exit_code = 14


class NotMediaError(AvsyncError):
    """The file exists but no demuxer recognises it."""

    exit_code = 4


class NoAudioError(AvsyncError):
    exit_code = 5


class NoVideoError(AvsyncError):
    exit_code = 6


class NoFaceError(AvsyncError):
    exit_code = 7


class TooShortError(AvsyncError):
    """Too little usable video (faces with speech) to judge sync."""

    exit_code = 8


class TruncatedMediaError(AvsyncError):
    """The container or a stream ends early or is corrupt."""

    exit_code = 9


class NoSpeechError(AvsyncError):
    """The audio is silent, or holds no speech-like energy."""

    exit_code = 10


class OutputError(AvsyncError):
    """The output file could not be written."""

    exit_code = 11


class ModelError(AvsyncError):
    """A model or checkpoint is unknown, corrupt or does not match its registry hash."""

    exit_code = 12


class UncertainError(AvsyncError):
    """``fix`` was asked to apply a detected offset whose confidence is too low."""

    exit_code = 13


#: For the README and ``avsync --help``.
EXIT_CODES = {
    0: "success (for `detect`, also when the file is out of sync; see --check)",
    1: "out of sync, with `detect --check`",
    UsageError.exit_code: "bad arguments",
    InputNotFoundError.exit_code: "input file not found",
    NotMediaError.exit_code: "not a media file",
    NoAudioError.exit_code: "no audio stream",
    NoVideoError.exit_code: "no video stream",
    NoFaceError.exit_code: "no face found",
    TooShortError.exit_code: "too little usable video to judge",
    TruncatedMediaError.exit_code: "truncated or corrupt file",
    NoSpeechError.exit_code: "no speech in the audio (silence)",
    OutputError.exit_code: "output could not be written",
    ModelError.exit_code: "model not found or corrupt",
    UncertainError.exit_code: "fix: the detected offset is too uncertain to apply (use --force or --offset-ms)",
    InputUnreadableError.exit_code: "input file cannot be read (permission denied)",
    70: "internal error (a bug; the traceback is printed)",
    130: "interrupted (Ctrl-C; `eval` still reports the clips scored so far)",
}
