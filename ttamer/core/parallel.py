"""Independent, seeded computations in worker processes.

:func:`map_processes` runs ``fn(*args)`` for every argument tuple, in order, either in this
process or in ``n_jobs`` worker processes. Every computation this package hands it is seeded,
so the results do not depend on ``n_jobs``.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

from tqdm import tqdm

from .validate import check_int


def map_processes(fn: Callable[..., Any], args: Sequence[tuple], n_jobs: int = 1, progress: bool = False,
                  desc: str = "") -> list[Any]:
    """``[fn(*a) for a in args]``, in ``n_jobs`` worker processes when ``n_jobs > 1``.

    Parameters
    ----------
    fn : callable
        A module-level function (or a :func:`functools.partial` of one): the workers import
        it by name (the ``forkserver`` start method, safe in a notebook kernel's threads).
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
    Worker processes import the calling program's main module, as every ``multiprocessing``
    start method but ``fork`` does: in a script, call this under ``if __name__ == "__main__":``.
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

        ctx = multiprocessing.get_context("forkserver")
        with ProcessPoolExecutor(max_workers=min(n_jobs, len(args)), mp_context=ctx) as pool:
            for fut in [pool.submit(fn, *a) for a in args]:
                out.append(fut.result())
                bar.update()
    bar.close()
    return out
