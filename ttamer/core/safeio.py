"""Bounded reads, strict JSON and atomic writes: every file ttamer reads or writes goes
through here.

* :func:`read_file` reads only regular files (not FIFOs, devices or folders), at most
  ``max_bytes`` of them, checked before reading.
* :func:`decode_text` decodes UTF-8 with an error naming the file (and the likely encoding).
* :func:`loads_strict` parses JSON with no duplicate keys, no ``NaN``/``Infinity`` and
  integers too long for a float flagged (:class:`HugeNumber`) instead of raising.
* :func:`atomic_write` writes a temporary file in the target's folder, fsyncs it and renames
  it over the target: the old file survives any failure, kill or signal. Temporary files
  are removed on errors and on SIGTERM/SIGINT; those of a killed run (``kill -9``) are swept
  at the next write into that folder. Permissions follow the umask, as ``open()`` does.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import signal
import stat
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator

from .errors import TTamerError
from .validate import escape_text

#: Largest instance (JSON) file read, in bytes.
MAX_JSON_BYTES = 256 * 2**20
#: Integers in JSON with more digits than this cannot be a float; they are kept as
#: :class:`HugeNumber`.
MAX_JSON_DIGITS = 308
#: Temporary files of :func:`atomic_write` are named ``.NAME.<TMP_TAG>-PID-RANDOM``.
TMP_TAG = "ttamer-tmp"
#: A temporary file whose writer is gone, or older than this (seconds), is swept.
STALE_TMP_SECONDS = 24 * 3600

_TMP_RE = re.compile(r"^\..*\." + re.escape(TMP_TAG) + r"-(\d+)-[0-9a-f]+$")


def show_path(path: Any) -> str:
    """A path for a one-line message: quoted, control characters escaped."""
    return repr(escape_text(os.fspath(path), limit=300))


def check_path(path: Any, what: str, error: type[TTamerError] = TTamerError) -> Path:
    """``path`` as a :class:`Path`; anything but a string or path-like is refused."""
    if isinstance(path, bytes) or not isinstance(path, (str, os.PathLike)):
        raise error(f"{what} must be a file path (str or os.PathLike), got {type(path).__name__}")
    p = Path(path)
    if "\x00" in str(p):
        raise error(f"{what} {show_path(p)} contains a NUL character")
    return p


def read_file(path: Any, what: str, max_bytes: int, error: type[TTamerError] = TTamerError) -> bytes:
    """The bytes of a regular file of at most ``max_bytes``; a clear ``error`` otherwise.

    FIFOs, devices (``/dev/zero``), sockets and folders are refused before any read, so a
    read never blocks or runs without end.
    """
    p = check_path(path, what, error)
    try:
        st = os.stat(p)
    except OSError as exc:
        raise error(f"cannot read {what} {show_path(p)}: {exc.strerror or exc}") from None
    _check_regular(p, st, what, max_bytes, error)
    try:
        fd = os.open(p, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0))
    except OSError as exc:
        raise error(f"cannot read {what} {show_path(p)}: {exc.strerror or exc}") from None
    try:
        _check_regular(p, os.fstat(fd), what, max_bytes, error)  # the file opened is the one checked
        with os.fdopen(fd, "rb", closefd=False) as fh:
            data = fh.read(max_bytes + 1)
    except OSError as exc:
        raise error(f"cannot read {what} {show_path(p)}: {exc.strerror or exc}") from None
    finally:
        os.close(fd)
    if len(data) > max_bytes:
        raise error(f"{what} {show_path(p)} is larger than the limit of {max_bytes:,} bytes")
    return data


def _check_regular(p: Path, st: os.stat_result, what: str, max_bytes: int, error: type[TTamerError]) -> None:
    mode = st.st_mode
    if stat.S_ISDIR(mode):
        raise error(f"{what} {show_path(p)} is a folder, not a file")
    if not stat.S_ISREG(mode):
        kind = ("a named pipe (FIFO)" if stat.S_ISFIFO(mode) else "a device" if stat.S_ISCHR(mode) or
                stat.S_ISBLK(mode) else "a socket" if stat.S_ISSOCK(mode) else "not a regular file")
        raise error(f"{what} {show_path(p)} is {kind}; only regular files are read")
    if st.st_size > max_bytes:
        raise error(f"{what} {show_path(p)} has {st.st_size:,} bytes, above the limit of {max_bytes:,} "
                    f"(raise it with max_bytes=)")


def decode_text(data: bytes, what: str, error: type[TTamerError] = TTamerError) -> str:
    """UTF-8 text (a UTF-8 byte-order mark is allowed), or an error saying what the bytes look like."""
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        if data[:2] in (b"\xff\xfe", b"\xfe\xff") or (len(data) > 1 and b"\x00" in data[:64]):
            hint = " (it looks like UTF-16 or binary data)"
        else:
            hint = " (Latin-1 or another legacy encoding? save it as UTF-8)"
        raise error(f"{what} is not UTF-8 text: invalid byte 0x{data[exc.start]:02x} at offset {exc.start}"
                    f"{hint}") from None


class HugeNumber:
    """An integer in JSON too long to be a float; validators report it as out of range."""

    def __init__(self, digits: int) -> None:
        self.digits = digits

    def __repr__(self) -> str:
        return f"<an integer with {self.digits} digits>"


class DuplicateKeyError(ValueError):
    pass


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise DuplicateKeyError(key)
        out[key] = value
    return out


def _parse_int(text: str) -> Any:
    digits = len(text.lstrip("-"))
    return HugeNumber(digits) if digits > MAX_JSON_DIGITS else int(text)


def _parse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON (only finite numbers are)")


def loads_strict(text: str, what: str, error: type[TTamerError] = TTamerError) -> Any:
    """Parse JSON strictly: duplicate keys, ``NaN``/``Infinity`` and over-deep nesting are
    errors naming ``what``; integers too long for a float become :class:`HugeNumber`."""
    try:
        return json.loads(text, object_pairs_hook=_pairs, parse_int=_parse_int,
                          parse_constant=_parse_constant)
    except json.JSONDecodeError as exc:
        raise error(f"{what} is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}") from None
    except DuplicateKeyError as exc:
        raise error(f"{what}: duplicate key {escape_text(repr(exc.args[0]), 80)} in a JSON object "
                    f"(each key may appear once)") from None
    except RecursionError:
        raise error(f"{what} is nested too deeply to be read") from None
    except ValueError as exc:
        raise error(f"{what} is not valid JSON: {escape_text(str(exc), 200)}") from None


# ------------------------------------------------------------------------------ atomic writes
def _umask() -> int:
    with _UMASK_LOCK:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


_UMASK_LOCK = threading.Lock()


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def sweep_stale_temp_files(folder: str | os.PathLike) -> list[Path]:
    """Remove the temporary files of :func:`atomic_write` left in ``folder`` by a killed run
    (its process is gone, or the file is older than :data:`STALE_TMP_SECONDS`)."""
    removed = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    now = time.time()
    for entry in entries:
        m = _TMP_RE.match(entry.name)
        if not m:
            continue
        try:
            if not entry.is_file(follow_symlinks=False):
                continue
            old = now - entry.stat(follow_symlinks=False).st_mtime > STALE_TMP_SECONDS
            if old or not _pid_alive(int(m.group(1))):
                os.unlink(entry.path)
                removed.append(Path(entry.path))
        except OSError:
            continue
    return removed


class _Signalled(BaseException):
    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


@contextlib.contextmanager
def _signals_raise() -> Iterator[None]:
    """While writing, SIGTERM/SIGINT raise (so the temp file is removed) and are re-delivered after."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {}

    def handler(signum, _frame):
        raise _Signalled(signum)

    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            if signal.getsignal(sig) in (signal.SIG_IGN, None):
                continue  # an ignored signal stays ignored
            previous[sig] = signal.signal(sig, handler)
        except (ValueError, OSError):
            pass
    try:
        yield
    except _Signalled as exc:
        _restore(previous)
        previous = {}
        old = signal.getsignal(exc.signum)
        if callable(old):
            old(exc.signum, None)  # the program's own handler (Python's raises KeyboardInterrupt)
            raise TTamerError(f"write interrupted by signal {exc.signum}; the target file is unchanged") from None
        if old == signal.SIG_DFL:
            os.kill(os.getpid(), exc.signum)
        raise KeyboardInterrupt if exc.signum == signal.SIGINT else SystemExit(128 + exc.signum)
    finally:
        _restore(previous)


def _restore(previous: dict) -> None:
    for sig, old in previous.items():
        try:
            signal.signal(sig, old)
        except (ValueError, OSError, TypeError):
            pass


def atomic_write(path: Any, write: Callable[[Any], None] | bytes | str, what: str = "file",
                 error: type[TTamerError] = TTamerError) -> Path:
    """Write ``path`` atomically: ``write(fh)`` (or the given bytes / UTF-8 text) goes to a
    temporary file in the same folder, which is fsynced and renamed over ``path``.

    On any failure (including SIGTERM/SIGINT) the temporary file is removed and ``path`` is
    untouched; the error names ``path``. Stale temporary files of killed runs are swept first.
    """
    target = check_path(path, what, error)
    folder = target.parent
    if target.name in ("", ".", ".."):
        raise error(f"cannot write {what} {show_path(target)}: not a file name")
    if not folder.is_dir():
        raise error(f"cannot write {what} {show_path(target)}: folder {show_path(folder)} does not exist")
    if target.is_dir():
        raise error(f"cannot write {what} {show_path(target)}: it is a folder")
    sweep_stale_temp_files(folder)
    tmp = folder / f".{target.name[:200]}.{TMP_TAG}-{os.getpid()}-{secrets.token_hex(4)}"
    mode = 0o666 & ~_umask()
    fd = -1
    try:
        with _signals_raise():
            try:
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666)
                os.fchmod(fd, mode)  # what open() would give, whatever the process's defaults
                with os.fdopen(fd, "wb") as fh:
                    fd = -1
                    if isinstance(write, str):
                        fh.write(write.encode("utf-8"))
                    elif isinstance(write, (bytes, bytearray)):
                        fh.write(write)
                    else:
                        write(fh)
                    fh.flush()
                    os.fsync(fh.fileno())
                os.replace(tmp, target)
            except BaseException:
                if fd >= 0:
                    os.close(fd)
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise
    except OSError as exc:
        raise error(f"cannot write {what} {show_path(target)}: {exc.strerror or exc}") from None
    with contextlib.suppress(OSError):
        dfd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    return target
