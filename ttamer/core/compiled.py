"""Compiled kernels: numba's ``njit``, with the machine code cached on disk where it can be."""

from __future__ import annotations

from typing import Callable

from numba import njit


def compiled(fn: Callable) -> Callable:
    """``fn`` compiled by numba, its machine code cached on disk where numba finds a writable
    place (beside the source file, or the user's cache directory); where it finds none (a
    read-only install and home), compiled in memory once per process instead."""
    try:
        return njit(cache=True)(fn)
    except RuntimeError:  # numba: "cannot cache function ...: no locator available"
        return njit(fn)
