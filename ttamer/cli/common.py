"""What every ``ttamer`` subcommand shares: streams that print anything, the one error line,
output that names standard output when it cannot be written, and progress bars only where
standard error is open."""

from __future__ import annotations

import argparse
import os
import re
import sys

from ..core.errors import TTamerError

_INTEGER = re.compile(r"[+-]?[0-9]+")
_NUMBER = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|[+-]?(?:inf|infinity|nan)", re.IGNORECASE)
#: Most characters of a number on the command line (int64 has 19 digits).
MAX_NUMBER_CHARS = 40


def safe_streams() -> None:
    """Make stdout/stderr print anything: characters the terminal's encoding lacks become
    backslash escapes (e.g. under ``PYTHONIOENCODING=ascii`` or an ASCII locale)."""
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            try:
                reconfigure(errors="backslashreplace")
            except (ValueError, OSError):  # pragma: no cover - a closed or exotic stream
                pass


def silence_stdout() -> None:
    """Point standard output at the null device (after the reader closed the pipe), so that the
    interpreter's last flush fails silently; a stream without a file descriptor is left as it is."""
    try:
        fd = sys.stdout.fileno()
    except (OSError, ValueError):
        return
    os.dup2(os.open(os.devnull, os.O_WRONLY), fd)


class StdoutError(TTamerError):
    """Standard output could not be written (a full disk, ``ENOSPC``; an I/O error)."""


def emit(text: str) -> None:
    """Print ``text`` and a newline on standard output (``ttamer``'s entry point flushes it at
    the end, so that a write failing there is reported too).

    Raises
    ------
    BrokenPipeError
        The reader stopped reading (``| head``), as ``print`` does.
    StdoutError
        Any other failed write; its message says that standard output failed.
    """
    if sys.stdout is None:
        raise StdoutError("standard output is closed; nothing could be printed")
    try:
        sys.stdout.write(text + "\n")
    except BrokenPipeError:
        raise
    except OSError as exc:
        raise stdout_error(exc) from None


def stdout_error(exc: OSError) -> StdoutError:
    """``exc``, a failed write to standard output, as a :class:`StdoutError` whose message says so."""
    return StdoutError(f"cannot write to standard output: {exc.strerror or exc}")


def print_error(line: str) -> None:
    """Write one line to standard error; nothing when standard error is closed (``sys.stderr``
    is ``None``) or cannot be written."""
    stream = sys.stderr
    if stream is None:
        return
    try:
        print(line, file=stream, flush=True)
    except (OSError, ValueError):
        pass


def show_progress(requested: bool | None) -> bool:
    """Whether to draw progress bars (on standard error): never when standard error is closed;
    ``requested`` (``--progress`` / ``--no-progress``) otherwise, and where it is ``None``
    when standard error is a terminal."""
    stream = sys.stderr
    if stream is None:
        return False
    if requested is not None:
        return bool(requested)
    try:
        return bool(stream.isatty())
    except (AttributeError, OSError, ValueError):
        return False


def error_line(command: str, exc: BaseException) -> str:
    """The one line printed for an error: ``ttamer CMD: error: MESSAGE`` (escaped, one line)."""
    from ..core.validate import escape_text  # numpy, loaded once a command runs

    text = " ".join(str(exc).split()) or type(exc).__name__
    return f"ttamer {command}: error: {escape_text(text, 2000)}"


def integer(text: str) -> int:
    """An ``argparse`` type: an integer written in ASCII digits, optionally signed (no ``_``,
    no other scripts' digits, at most :data:`MAX_NUMBER_CHARS` characters), not converted from
    anything else."""
    if len(text) > MAX_NUMBER_CHARS or not _INTEGER.fullmatch(text):
        raise argparse.ArgumentTypeError(f"expected an integer in ASCII digits, got {_shown(text)}")
    return int(text)


def number(text: str) -> float:
    """An ``argparse`` type: a decimal number in ASCII (``0.5``, ``5e-1``, ``inf``, ``nan``; no
    ``_``, no other scripts' digits), refused where a non-zero literal underflows to 0 (the
    range checks that follow then see what was written)."""
    if len(text) > MAX_NUMBER_CHARS or not _NUMBER.fullmatch(text):
        raise argparse.ArgumentTypeError(f"expected a decimal number in ASCII, got {_shown(text)}")
    value = float(text)
    if value == 0.0 and re.search(r"[1-9]", re.split(r"[eE]", text)[0]):
        raise argparse.ArgumentTypeError(f"{_shown(text)} is too small for a float64 (it would be read as 0)")
    return value


def _shown(text: str) -> str:
    """``text`` as an error quotes it: its ``repr``, escaped and cut short."""
    from ..core.validate import escape_text

    return escape_text(repr(text), 60)
