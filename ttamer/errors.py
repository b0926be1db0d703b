"""Exceptions raised by ttamer.

Every error raised on bad input is a subclass of :class:`TTamerError` (itself a
``ValueError``), and its message names the node, field, key, file or array at fault.
"""

from __future__ import annotations


class TTamerError(ValueError):
    """Base class of the errors ttamer raises on bad input."""


class InstanceError(TTamerError):
    """An instance (JSON file, dict or arrays) breaks a rule of the book's chapter *The model*."""


class SolverError(TTamerError):
    """A solver cannot handle this instance (wrong shape of problem, or too large)."""


class TraceError(TTamerError):
    """A trace file or trace arrays break a rule of the trace format (the book's chapter *Early exit on real models*)."""


# The checks of arguments (λ, seeds, fractions, counts, flags) shared by every module live in
# :mod:`ttamer.validate`; re-exported here so that ``from ttamer.errors import check_lam`` works.
def __getattr__(name: str):
    if name in ("check_lam", "check_seed", "check_fraction", "check_count", "check_bool", "check_real",
                "check_int", "MIN_SPLIT_EXAMPLES"):
        from . import validate

        return getattr(validate, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
