"""Independent, seeded computations in worker processes.

:func:`map_processes` runs ``fn(*args)`` for every argument tuple, in order, either in this
process or in ``n_jobs`` worker processes. Every computation this package hands it is seeded,
so the results do not depend on ``n_jobs``. :func:`available_threads` is how many threads the
package's own thread pools (T-Tamer's cross-validation folds) may use, and
:func:`available_memory` how much memory a large computation may still take.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Any, Callable, Iterator, Sequence

from tqdm import tqdm

from .errors import TTamerError
from .validate import check_int


#: Environment variables that set the thread pools of the numerical libraries a worker loads
#: (``TTAMER_NUM_THREADS`` is this package's own, :func:`available_threads`).
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "VECLIB_MAXIMUM_THREADS",
                    "NUMEXPR_NUM_THREADS", "TTAMER_NUM_THREADS")


def available_threads() -> int:
    """Threads this package may run its own work on: ``TTAMER_NUM_THREADS`` if set (1 in the
    workers of :func:`map_processes`, which already fill the cores), else the CPUs this process
    may use."""
    value = os.environ.get("TTAMER_NUM_THREADS")
    if value is not None:
        try:
            n = int(value)
        except ValueError:
            raise TTamerError(f"TTAMER_NUM_THREADS must be a whole number >= 1, got {value[:40]!r}") from None
        return check_int(n, "TTAMER_NUM_THREADS", minimum=1, maximum=1024)
    cpus = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else range(os.cpu_count() or 1)
    return max(1, len(cpus))


def _read_int(path: str) -> int | None:
    """The whole number a one-line system file holds (``None``: missing, unreadable or ``max``)."""
    try:
        with open(path, encoding="ascii") as fh:
            text = fh.read(64).strip()
    except (OSError, UnicodeDecodeError):
        return None
    return int(text) if text.isdigit() else None


def available_memory() -> int | None:
    """Bytes this process may still allocate: the kernel's estimate ``MemAvailable``
    (``/proc/meminfo``), lowered to the headroom under this process's control-group limits
    (limit − usage + inactive page cache, :data:`CGROUP_FILES`) and under an address-space
    limit (``ulimit -v``); ``None`` where the system tells none of them."""
    free_kb = _field("/proc/meminfo", "MemAvailable:")
    found = [] if free_kb is None else [free_kb * 1024]
    found += [h for h in (_cgroup_headroom(), _address_space_headroom()) if h is not None]
    return min(found) if found else None


#: The memory files of the control groups, for cgroup v2 and v1, as (version, mount point,
#: limit, usage, the reclaimable page cache's field in ``memory.stat``).
CGROUP_FILES = (("v2", "/sys/fs/cgroup", "memory.max", "memory.current", "inactive_file"),
                ("v1", "/sys/fs/cgroup/memory", "memory.limit_in_bytes", "memory.usage_in_bytes",
                 "total_inactive_file"))


def _own_cgroups() -> dict[str, str]:
    """This process's memory control group below each mount point, by version, from
    ``/proc/self/cgroup`` (lines ``ID:CONTROLLERS:PATH``; v2 has no controllers)."""
    try:
        with open("/proc/self/cgroup", encoding="ascii") as fh:
            lines = fh.read(65536).splitlines()
    except (OSError, UnicodeDecodeError):
        return {}
    groups = {}
    for parts in (line.split(":", 2) for line in lines):
        if len(parts) == 3 and parts[1] == "":
            groups["v2"] = parts[2]
        elif len(parts) == 3 and "memory" in parts[1].split(","):
            groups["v1"] = parts[2]
    return groups


def _cgroup_headroom() -> int | None:
    """The smallest ``limit − usage + inactive page cache`` over this process's memory control
    groups (v2 or v1, at the mount point and at the process's own group below it) that set a
    limit; ``None`` where none does."""
    own = _own_cgroups()
    found = []
    for version, mount, limit, usage, cache in CGROUP_FILES:
        for folder in {mount, mount + own.get(version, "").rstrip("/")}:
            cap, used = _read_int(f"{folder}/{limit}"), _read_int(f"{folder}/{usage}")
            if cap is not None and used is not None and cap < 2**60:
                found.append(max(cap - used + (_field(f"{folder}/memory.stat", cache) or 0), 0))
    return min(found) if found else None


def _field(path: str, key: str) -> int | None:
    """The whole number after ``key`` on its line of a ``KEY VALUE [unit]`` system file such as
    ``/proc/meminfo`` or ``memory.stat`` (``None`` where it cannot be read)."""
    try:
        with open(path, encoding="ascii") as fh:
            for line in fh:
                words = line.split()
                if len(words) >= 2 and words[0] == key:
                    return int(words[1]) if words[1].isdigit() else None
    except (OSError, UnicodeDecodeError):
        pass
    return None


def _address_space_headroom() -> int | None:
    """Two thirds of the bytes left under this process's address-space limit (``ulimit -v``,
    ``RLIMIT_AS``) beyond its present size (``VmSize`` of ``/proc/self/status``): thread
    arenas and library buffers reserve address space that is never resident, about a third
    of the resident peak in ``ttamer evaluate``. ``None`` without a limit."""
    try:
        import resource

        soft = resource.getrlimit(resource.RLIMIT_AS)[0]
    except (ImportError, OSError, ValueError):
        return None
    if soft == resource.RLIM_INFINITY or soft < 0:
        return None
    size = 1024 * (_field("/proc/self/status", "VmSize:") or 0)
    return max(int(soft) - size, 0) * 2 // 3  # address space runs about a third above resident memory


@contextmanager
def single_threaded_children() -> Iterator[None]:
    """Within the block, processes started by this one get one thread per numerical library
    (:data:`THREAD_VARIABLES`): ``n_jobs`` workers on ``n_jobs`` cores, not ``n_jobs`` times the
    parent's threads competing for them. The parent's environment is restored afterwards."""
    saved = {k: os.environ.get(k) for k in THREAD_VARIABLES}
    os.environ.update({k: "1" for k in THREAD_VARIABLES})
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def map_processes(fn: Callable[..., Any], args: Sequence[tuple], n_jobs: int = 1, progress: bool = False,
                  desc: str = "") -> list[Any]:
    """``[fn(*a) for a in args]``, in ``n_jobs`` worker processes when ``n_jobs > 1``.

    Parameters
    ----------
    fn : callable
        A module-level function (or a ``functools.partial`` of one): the workers import
        it by name (the ``spawn`` start method: fresh interpreters, one thread each
        (:func:`single_threaded_children`), safe in a notebook kernel's threads).
    args : sequence of tuple
        The positional arguments of each call; they and the results travel by pickling.
    n_jobs : int, default 1
        Worker processes (1: in this process, no pickling).
    progress : bool, default False
        A progress bar over the calls (on stderr).
    desc : str
        The progress bar's label.

    Returns
    -------
    list
        The results, in the order of ``args``.

    Notes
    -----
    Worker processes import the calling program's main module (the ``spawn`` start method): in a script, call this under ``if __name__ == "__main__":``.
    A notebook kernel needs nothing.
    """
    check_int(n_jobs, "n_jobs", minimum=1, maximum=256)
    bar = tqdm(total=len(args), desc=desc, disable=not progress)
    out: list[Any] = []
    if n_jobs == 1 or len(args) < 2:
        for a in args:
            out.append(fn(*a))
            bar.update()
    else:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor
        from concurrent.futures.process import BrokenProcessPool

        ctx = multiprocessing.get_context("spawn")
        try:
            with single_threaded_children(), ProcessPoolExecutor(max_workers=min(n_jobs, len(args)),
                                                                 mp_context=ctx) as pool:
                futures = [pool.submit(fn, *a) for a in args]  # the workers start here, one thread each
                for fut in futures:
                    out.append(fut.result())
                    bar.update()
        except BrokenProcessPool as exc:
            bar.close()
            raise TTamerError(f"{desc or 'the work'}: a worker process ended before its result came back ({exc}); "
                              "in a script, make the call under 'if __name__ == \"__main__\":' (the workers import "
                              "the script), or pass n_jobs=1; a worker killed for memory ends the same way") from None
    bar.close()
    return out
