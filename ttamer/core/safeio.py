"""Bounded reads, strict JSON and atomic writes: every file ttamer reads or writes goes
through here.

* :func:`read_file` reads only regular files (not FIFOs, devices or folders), at most
  ``max_bytes`` of them, checked before reading.
* :func:`decode_text` decodes UTF-8 with an error naming the file (and the likely encoding).
* :func:`loads_strict` parses JSON with no duplicate keys, no ``NaN``/``Infinity`` and
  integers too long for a float flagged (:class:`HugeNumber`) instead of raising;
  :func:`check_json` checks that a value is JSON that is written and read back unchanged.
* :func:`atomic_write` writes a temporary file in the target's folder, fsyncs it and renames
  it over the target: the old file survives any failure, kill or signal. Temporary files
  are removed on errors and on SIGTERM/SIGINT; those of a killed run (``kill -9``) are swept
  at the next write into that folder (only files ttamer provably made, whose writer is gone).
  Only a new file or a writable regular file is written (:func:`check_target`); permissions
  follow the umask, as ``open()`` does.
"""

from __future__ import annotations

import contextlib
import json
import math
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
from .validate import escape_text, short_repr

#: Largest instance (JSON) file read, in bytes.
MAX_JSON_BYTES = 256 * 2**20
#: The most memory, in bytes, that parsing one byte of JSON may take (Python's objects for the
#: densest JSON, ``[[],[],…]``, take 22 bytes a byte), with some room.
JSON_MEMORY_FACTOR = 32
#: Integers in JSON with more digits than this cannot be a float; they are kept as
#: :class:`HugeNumber`.
MAX_JSON_DIGITS = 308
_TOO_LARGE = 10**MAX_JSON_DIGITS  # computed once: checked for every integer of a meta
#: Temporary files of :func:`atomic_write` are named ``.NAME.<TMP_TAG>-PID-NONCE-CHECK``
#: (:func:`temp_path`): ``NONCE`` is 8 random hex digits, ``CHECK`` 16 hex digits of a hash of
#: the name, pid, nonce and this machine's boot and pid namespace.
TMP_TAG = "ttamer-tmp"
#: Where the boot and pid namespace of a temporary file's writer cannot be read (not Linux),
#: :func:`sweep_stale_temp_files` also waits until the file is this old (seconds).
STALE_TMP_SECONDS = 24 * 3600

#: Most bytes of the target's name kept in its temporary file's name (:func:`temp_path`): with
#: the tag, pid, nonce and check the name stays under the 255 bytes a file name may hold.
TMP_STEM_BYTES = 150
_TMP_RE = re.compile(r"\.(?P<stem>.+)\." + re.escape(TMP_TAG)
                     + r"-(?P<pid>[1-9][0-9]{0,9})-(?P<nonce>[0-9a-f]{8})-(?P<check>[0-9a-f]{16})", re.DOTALL)


def show_path(path: Any) -> str:
    """A path for a one-line message: quoted, control characters escaped."""
    return repr(escape_text(os.fspath(path), limit=300))


def check_path(path: Any, what: str, error: type[TTamerError] = TTamerError) -> Path:
    """``path`` as a :class:`Path`; anything but a string or path-like is refused, and so is the
    empty path (which :class:`Path` would read as the current folder ``.``)."""
    if isinstance(path, bytes) or not isinstance(path, (str, os.PathLike)):
        raise error(f"{what} must be a file path (str or os.PathLike), got {type(path).__name__}")
    raw = os.fspath(path)
    if not isinstance(raw, str):
        raise error(f"{what} must be a file path (str or os.PathLike), got a path of {type(raw).__name__}")
    if raw == "":
        raise error(f"{what} is an empty path (''); give the name of a file")
    p = Path(raw)
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
                    f"(in Python, the loader's max_bytes=N reads larger files)")


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


def check_parse_memory(n_bytes: int, what: str, error: type[TTamerError] = TTamerError) -> None:
    """Refuse, before parsing, ``n_bytes`` of JSON (``what``) whose Python objects may take more
    memory than is available (:data:`JSON_MEMORY_FACTOR` bytes a byte;
    :func:`~ttamer.core.parallel.available_memory`; nothing is refused where the system tells
    none)."""
    from .parallel import available_memory

    free = available_memory()
    need = JSON_MEMORY_FACTOR * n_bytes
    if free is not None and need > free:
        raise error(f"{what} has {n_bytes:,} bytes of JSON, whose objects may take up to {need:,} bytes of memory "
                    f"({JSON_MEMORY_FACTOR} per byte), more than the {free:,} available; free memory or split the "
                    f"file")


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



def check_json(value: Any, what: str, path: str, error: type[TTamerError] = TTamerError) -> None:
    """Check that ``value`` is JSON that ``json.dumps`` writes and :func:`loads_strict`
    reads back equal (a tuple is read back as a list).

    Parameters
    ----------
    value : object
        The value to write as JSON.
    what : str
        What ``value`` is, for the message (e.g. ``"key 'meta'"``).
    path : str
        The name of ``value`` in the message; an entry inside it is named ``path['key'][0]``.
    error : type, default TTamerError
        The exception raised.

    Raises
    ------
    TTamerError
        (``error``) An object key that is not a string, a float that is not finite, an integer
        of more than :data:`MAX_JSON_DIGITS` digits, a value of any other type than ``dict``,
        ``list``, ``tuple``, ``str``, ``int``, ``float``, ``bool`` or ``None``, or a container
        that holds itself; the message names the entry.
    """
    try:
        problem = _json_problem(value, path, set())
    except RecursionError:
        problem = f"{path} is nested too deeply"
    if problem is not None:
        raise error(f"{what}: {problem}")


def _json_problem(value: Any, path: str, open_ids: set[int]) -> str | None:
    """What keeps ``value`` (named ``path``) from being written and read back, or ``None``;
    ``open_ids`` are the containers ``value`` is inside."""
    if not isinstance(value, (dict, list, tuple)):
        return _json_scalar_problem(value, path)
    if id(value) in open_ids:
        return f"{path} contains itself"
    open_ids.add(id(value))
    is_dict = isinstance(value, dict)
    for key, item in (value.items() if is_dict else enumerate(value)):
        if is_dict and not isinstance(key, str):
            return (f"{path} has key {short_repr(key, 40)} ({escape_text(type(key).__name__, 40)}); "
                    f"keys must be strings, as in JSON")
        if not isinstance(item, (dict, list, tuple)) and _json_scalar_problem(item, "") is None:
            continue  # most entries: the entry's name is formatted only where there is a problem
        problem = _json_problem(item, f"{path}[{escape_text(repr(key), 40)}]", open_ids)
        if problem is not None:
            return problem
    open_ids.discard(id(value))
    return None


def _json_scalar_problem(value: Any, path: str) -> str | None:
    if value is None or isinstance(value, (str, bool)):
        return None
    if isinstance(value, HugeNumber) or (isinstance(value, int) and abs(value) >= _TOO_LARGE):
        return f"{path} is an integer too large: more than {MAX_JSON_DIGITS} digits"
    if isinstance(value, int) or (isinstance(value, float) and math.isfinite(value)):
        return None
    if isinstance(value, float):
        return f"{path} is {value}; numbers must be finite, as in JSON"
    return (f"{path} is not JSON-serialisable (a value of type {escape_text(type(value).__name__, 40)}; "
            f"expected a string, number, true/false, null, list or dict)")

# ------------------------------------------------------------------------------ atomic writes
def _umask() -> int:
    with _UMASK_LOCK:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


_UMASK_LOCK = threading.Lock()


def _pid_alive(pid: int) -> bool:
    """Whether process ``pid`` may still run (``True`` whenever that cannot be ruled out)."""
    if pid <= 0 or pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (OSError, OverflowError):
        return True
    return True


_WRITER_ID: tuple[str, bool] | None = None


def _writer_id() -> tuple[str, bool]:
    """``(id, proven)``: the boot id and pid namespace of this process (Linux: ``proven``, so a
    pid read from a temporary file's name can be looked up here), else the host name."""
    global _WRITER_ID
    if _WRITER_ID is None:
        try:
            with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as fh:
                boot = fh.read().strip()
            _WRITER_ID = (f"{boot}|{os.readlink('/proc/self/ns/pid')}", bool(boot))
        except (OSError, ValueError):
            import socket

            _WRITER_ID = (f"host:{socket.gethostname()}", False)
    return _WRITER_ID


def _tmp_check(stem: str, pid: int, nonce: str) -> str:
    import hashlib

    text = "\x00".join((TMP_TAG, stem, str(pid), nonce, _writer_id()[0]))
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:16]


def temp_path(target: str | os.PathLike, pid: int | None = None, nonce: str | None = None) -> Path:
    """The temporary file :func:`atomic_write` writes before renaming it to ``target``.

    Parameters
    ----------
    target : str or pathlib.Path
        The file to be written.
    pid : int, optional
        The writing process (default: this one).
    nonce : str, optional
        8 hex digits (default: random).

    Returns
    -------
    Path
        ``.NAME.<TMP_TAG>-PID-NONCE-CHECK`` in the folder of ``target`` (``NAME`` cut to
        :data:`TMP_STEM_BYTES` bytes, so that any name a file may have can be written), where ``CHECK`` marks
        the name as one ttamer made on this machine (:func:`sweep_stale_temp_files` removes no
        other file).
    """
    target = Path(target)
    pid = os.getpid() if pid is None else int(pid)
    nonce = secrets.token_hex(4) if nonce is None else nonce
    stem = target.name
    while len(os.fsencode(stem)) > TMP_STEM_BYTES:  # cut whole characters, by their encoded bytes
        stem = stem[:-1]
    return target.parent / f".{stem}.{TMP_TAG}-{pid}-{nonce}-{_tmp_check(stem, pid, nonce)}"


def sweep_stale_temp_files(folder: str | os.PathLike) -> list[Path]:
    """Remove the temporary files of :func:`atomic_write` left in ``folder`` by a killed run.

    A file is removed only if it is provably such a leftover: its name is one
    :func:`temp_path` made on this machine, in this boot and pid namespace (its check digits
    match), it is a regular file (not a link) owned by this user, and the process that wrote it
    is gone. Where the boot and pid namespace cannot be read (not Linux) the file must also be
    older than :data:`STALE_TMP_SECONDS`. A file that merely looks like one is never touched.

    Parameters
    ----------
    folder : str or pathlib.Path
        The folder to sweep (not its subfolders).

    Returns
    -------
    list of Path
        The files removed.
    """
    removed: list[Path] = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    proven = _writer_id()[1]
    for entry in entries:
        m = _TMP_RE.fullmatch(entry.name)
        if not m:
            continue
        pid = int(m["pid"])
        if m["check"] != _tmp_check(m["stem"], pid, m["nonce"]):
            continue
        try:
            st = entry.stat(follow_symlinks=False)
            if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid():
                continue
            if not proven and time.time() - st.st_mtime <= STALE_TMP_SECONDS:
                continue
            if _pid_alive(pid):
                continue
            os.unlink(entry.path)
            removed.append(Path(entry.path))
        except OSError:
            continue
    return removed


def check_target(path: Any, what: str, error: type[TTamerError] = TTamerError) -> Path:
    """``path`` as a :class:`Path` if :func:`atomic_write` may write it; a clear ``error``
    naming ``what`` otherwise.

    Writable are a new name in an existing writable folder, and an existing regular file
    that is writable. Refused, before any work is done: a folder, a name ending with a path
    separator, ``.`` and ``..``, a symbolic link (it would be replaced by a file), a device,
    FIFO or socket, a read-only file (also for root) and a missing or read-only folder.

    Parameters
    ----------
    path : str or pathlib.Path
        The file to write.
    what : str
        What the file is, for the message (e.g. ``"trace file"`` or ``"--out"``).
    error : type of TTamerError, default TTamerError
        The exception raised.

    Returns
    -------
    Path
        ``path``.
    """
    target = check_path(path, what, error)
    raw = os.fspath(path)
    shown = show_path(raw)
    if target.name in ("", ".", "..") or raw.endswith(("/", os.sep)):
        if os.path.isdir(raw):
            raise error(f"cannot write {what} {shown}: it is a folder")
        raise error(f"cannot write {what} {shown}: not a file name")
    try:
        st = os.lstat(target)
    except FileNotFoundError:
        st = None
    except OSError as exc:
        raise error(f"cannot write {what} {shown}: {exc.strerror or exc}") from None
    if st is None:
        folder = target.parent
        if not folder.is_dir():
            raise error(f"cannot write {what} {shown}: folder {show_path(folder)} does not exist")
        if not os.access(folder, os.W_OK | os.X_OK):
            raise error(f"cannot write {what} {shown}: folder {show_path(folder)} is not writable")
        return target
    mode = st.st_mode
    if stat.S_ISDIR(mode):
        raise error(f"cannot write {what} {shown}: it is a folder")
    if stat.S_ISLNK(mode):
        raise error(f"cannot write {what} {shown}: it is a symbolic link, which would be replaced by a "
                    f"file; name the file it points to, or a new file")
    if not stat.S_ISREG(mode):
        kind = ("a named pipe (FIFO)" if stat.S_ISFIFO(mode) else "a device" if stat.S_ISCHR(mode) or
                stat.S_ISBLK(mode) else "a socket" if stat.S_ISSOCK(mode) else "not a regular file")
        raise error(f"cannot write {what} {shown}: it is {kind}; only a regular file is replaced")
    if not mode & 0o222 or not os.access(target, os.W_OK):
        raise error(f"cannot write {what} {shown}: the file is read-only; it is left as it is")
    if not os.access(target.parent, os.W_OK | os.X_OK):
        raise error(f"cannot write {what} {shown}: folder {show_path(target.parent)} is not writable")
    return target


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
    untouched; the error names ``path``. Only a new file or an existing writable regular file
    is written (:func:`check_target`: a folder, link, device or read-only file is refused).
    Temporary files of killed runs are swept first (:func:`sweep_stale_temp_files`).
    """
    target = check_target(path, what, error)
    folder = target.parent
    sweep_stale_temp_files(folder)
    tmp = temp_path(target)
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
