"""What every ``ttamer`` subcommand shares: streams that print anything, and the one error line."""

from __future__ import annotations

import argparse
import os
import re
import sys

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
