"""What every ``ttamer`` subcommand shares: streams that print anything, and the one error line."""

from __future__ import annotations

import os
import sys

from ..core.validate import escape_text


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
    text = " ".join(str(exc).split()) or type(exc).__name__
    return f"ttamer {command}: error: {escape_text(text, 2000)}"
