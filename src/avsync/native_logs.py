"""Keep MediaPipe's and TFLite's native log lines off the user's stderr.

MediaPipe's C++ code (absl/glog, TFLite) writes lines such as ``INFO: Created
TensorFlow Lite XNNPACK delegate for CPU`` and ``W0000 ...
inference_feedback_manager.cc ...`` straight to file descriptor 2, from its own
threads, whatever Python's ``sys.stderr`` is. While avsync's face tracker is
alive (``quiet()``), fd 2 points at /dev/null; Python's ``sys.stderr``, if it
wrote to fd 2, is pointed at a private copy of the real stderr meanwhile, so
Python warnings, progress bars and tracebacks still show. Nothing is silenced
when ``AVSYNC_NATIVE_LOGS=1``.
"""
from __future__ import annotations

import os
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

#: Set to 1 to see the native log lines.
ENV = "AVSYNC_NATIVE_LOGS"

_lock = threading.Lock()
_depth = 0
_saved_fd: int | None = None
_saved_sys_stderr = None


def wanted() -> bool:
    """The user asked to see native log lines."""
    return os.environ.get(ENV) == "1"


def _writes_to_fd2(stream) -> bool:
    try:
        return stream is not None and stream.fileno() == 2
    except (AttributeError, OSError, ValueError):  # pytest's capture, StringIO, a closed stream
        return False


def _enter() -> None:
    global _depth, _saved_fd, _saved_sys_stderr
    with _lock:
        _depth += 1
        if _depth > 1:
            return
        try:
            if sys.stderr is not None:
                sys.stderr.flush()
            saved = os.dup(2)
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 2)
            os.close(devnull)
        except (OSError, ValueError):  # no fd 2 at all (a daemon): nothing to protect
            return
        _saved_fd = saved
        if _writes_to_fd2(sys.stderr):
            _saved_sys_stderr = sys.stderr
            sys.stderr = os.fdopen(os.dup(saved), "w", buffering=1, encoding=getattr(sys.stderr, "encoding", None),
                                   errors="backslashreplace")


def _exit() -> None:
    global _depth, _saved_fd, _saved_sys_stderr
    with _lock:
        _depth -= 1
        if _depth > 0 or _saved_fd is None:
            return
        if _saved_sys_stderr is not None:
            private, sys.stderr = sys.stderr, _saved_sys_stderr
            _saved_sys_stderr = None
            try:
                private.close()
            except OSError:
                pass
        os.dup2(_saved_fd, 2)
        os.close(_saved_fd)
        _saved_fd = None


@contextmanager
def quiet() -> Iterator[None]:
    """Native log lines written to fd 2 inside this block go to /dev/null (nestable, thread-safe)."""
    if wanted():
        yield
        return
    _enter()
    try:
        yield
    finally:
        _exit()


class Silencer:
    """``quiet()`` held by an object from ``start()`` to ``stop()`` (the face tracker's lifetime)."""

    def __init__(self) -> None:
        self._on = False

    def start(self) -> None:
        if not self._on and not wanted():
            _enter()
            self._on = True

    def stop(self) -> None:
        if self._on:
            self._on = False
            _exit()


def own_stderr():
    """For the CLI: keep a private handle on stderr, then send fd 2 to /dev/null for good.

    Returns the file object avsync's own messages go to. With ``AVSYNC_NATIVE_LOGS=1``,
    this is ``sys.stderr`` and fd 2 is left alone.
    """
    if wanted():
        return sys.stderr
    try:
        saved = os.dup(2)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 2)
        os.close(devnull)
        return os.fdopen(saved, "w", buffering=1)
    except OSError:
        return sys.stderr
