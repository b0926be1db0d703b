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
