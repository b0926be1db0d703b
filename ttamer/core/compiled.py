"""Compiled kernels: numba's ``njit``, with the machine code cached on disk where it can be,
releasing the GIL while they run (so that the cross-validation's folds, which run on a
thread pool, run them side by side)."""

from __future__ import annotations

from typing import Callable

from numba import njit


def compiled(fn: Callable) -> Callable:
    """``fn`` compiled by numba, its machine code cached on disk where numba finds a writable
    place (beside the source file, or the user's cache directory); where it finds none (a
    read-only install and home), compiled in memory once per process instead. The kernels
    take and return arrays and numbers only, so they run without the GIL."""
    try:
        return njit(cache=True, nogil=True)(fn)
    except RuntimeError:  # numba: "cannot cache function ...: no locator available"
        return njit(nogil=True)(fn)
