"""Traces: the interchange format for measured early-exit workloads (the book's chapter *Early exit on real models*).

A trace holds one model with ``L`` exits -- or a cascade of ``L`` separate models -- evaluated
on one set of ``N`` examples:

==========  ==============================  ====================================================
key         shape / dtype                   meaning
==========  ==============================  ====================================================
``probs``   float32 ``[N, L, C]``           softmax output of every exit for every example
``labels``  int64 ``[N]``                   true class, in ``0..C-1``
``cost``    float64 ``[L]`` or ``[N, L]``   cost of reaching exit ``i`` from its parent (on a
                                            chain exit ``i-1``; a root from the input), per
                                            example or on average
``meta``    JSON object (string on disk)    optional descriptive fields: ``model``,
                                            ``dataset``, ``cost_unit``, ``exit_names`` (``L``
                                            strings), ``parents``, ``split``, ``hardware``, ...
==========  ==============================  ====================================================

The exits form a forest (the book's chapter *The model*): ``meta["parents"]`` lists each
exit's parent name (``null`` for a root), the exit that must have been consulted before it,
and defaults to the chain ``exit0 → exit1 → …`` of one early-exit network
(:attr:`Trace.parents`: ``[-1, 0, 1, …, L−2]``). ``cost[v]`` is the cost of consulting ``v``
once its parent has been. On a chain a strategy that consulted exits ``0..k`` paid
``Σ_{i≤k} cost[i]``; the full model costs ``Σ_i cost[i]``. :func:`load_trace` and
:meth:`Trace.validate` check every rule and raise :class:`~ttamer.core.errors.TraceError`
naming the key and the first offending index. Nothing is silently renormalised;
:meth:`Trace.build` converts dtypes explicitly for callers holding e.g. float64 probabilities.
"""

from __future__ import annotations

import hashlib
import json
import math
import operator
import os
import stat
import struct
import tokenize
import zipfile
from contextlib import contextmanager
from zlib import error as zlib_error
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np

from ..core.errors import TraceError, TTamerError
from ..core.safeio import atomic_write, check_json, check_path, loads_strict, show_path
from ..core.validate import (MIN_SPLIT_EXAMPLES, check_bool, check_fraction, check_int, check_real, check_seed,
                             escape_text, magnitude, short_repr)

#: Tolerance on ``Σ_c probs[n, i, c] = 1`` (float32 softmax outputs).
PROB_SUM_TOL = 1e-3
#: Descriptive ``meta`` fields and the defaults a trace without them is read with (all optional;
#: a trace with ``probs``, ``labels`` and ``cost`` alone is complete); when present, each is a
#: string. ``exit_names`` (``L`` distinct non-empty strings) defaults to ``exit0, exit1, …`` and
#: ``parents`` to the chain.
META_DEFAULTS = {"model": "?", "dataset": "?", "cost_unit": "unit"}
#: Keys of a trace file.
KEYS = ("probs", "labels", "cost", "meta")

#: Largest trace read by :func:`load_trace`, in bytes (the file and the arrays it declares,
#: uncompressed), checked from the zip and ``.npy`` headers before anything is allocated
#: (override: ``load_trace(path, max_bytes=...)``).
MAX_TRACE_BYTES = 2**30
#: Most characters of a trace's ``meta`` written as JSON (by ``json.dumps``): it describes the
#: trace (provenance, names, costs in other units) and is copied with every part of the
#: examples an evaluation takes, so it is no place for data; checked from the ``.npy`` header
#: before the file's ``meta`` is read, and by :meth:`Trace.validate`.
MAX_META_CHARS = 2**22
#: Largest central directory (the zip's list of members) of a trace file, in bytes, read from
#: the end of the file before the archive is opened: the four members of a trace take a few
#: hundred bytes, and an archive that lists millions would be parsed whole before its members
#: could be refused.
MAX_ZIP_DIRECTORY_BYTES = 2**16
#: :attr:`Trace.entropy` is computed in chunks of examples holding at most this many probabilities.
ENTROPY_CHUNK_CELLS = 2**22
#: Second word of the seed of :meth:`Trace.sample`'s random stream (apart from :meth:`Trace.split`'s).
SAMPLE_STREAM = 7

_DTYPES = {"probs": np.float32, "labels": np.int64, "cost": np.float64}


def _numeric(value: Any, key: str) -> np.ndarray:
    """``value`` as an array of real numbers (no strings, booleans, objects, ragged lists or
    masked arrays, whose mask would be lost)."""
    if isinstance(value, np.ma.MaskedArray):
        raise TraceError(f"key {key!r}: got a masked array; pass a plain NumPy array "
                         f"(a mask is not converted)")
    try:
        arr = np.asarray(value)
    except (ValueError, TypeError, OverflowError) as exc:
        raise TraceError(f"key {key!r}: expected a rectangular array of numbers "
                         f"({escape_text(str(exc), 120)})") from None
    if arr.dtype.kind not in "fiu":
        raise TraceError(f"key {key!r}: expected numbers, got an array of dtype {arr.dtype} "
                         f"(strings, booleans and ragged lists are not converted)")
    if not isinstance(value, np.ndarray) and arr.size:  # nested lists: NumPy turns True into 1.0
        is_bool = np.vectorize(lambda v: isinstance(v, (bool, np.bool_)), otypes=[bool])
        flags = is_bool(np.array(value, dtype=object))
        if flags.shape == arr.shape and flags.any():
            raise TraceError(f"key {key!r}: the entry at index {list(_first(flags))} is a boolean, not a number "
                             f"(booleans are not converted)")
    return arr


def _converted(arr: np.ndarray, key: str) -> np.ndarray:
    """``arr`` in the file dtype of ``key`` (:data:`_DTYPES`); a finite number beyond the range
    of a float dtype (which would become infinite) is refused, naming its index (labels are
    bounded by :func:`check_labels`)."""
    dtype = np.dtype(_DTYPES[key])
    if arr.dtype.kind == dtype.kind == "f" and np.finfo(arr.dtype).max > np.finfo(dtype).max:
        with np.errstate(invalid="ignore"):
            big = np.isfinite(arr) & (np.abs(arr) > np.finfo(dtype).max)
        if big.any():
            i = _first(big)
            raise TraceError(f"key {key!r}: the number at index {list(i)} ({str(arr[i])}) is beyond the range of "
                             f"{dtype.name}, the dtype of a trace's {key!r}")
    with np.errstate(over="ignore", invalid="ignore"):
        return arr.astype(dtype)


def _checked(check: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """``check(*args, **kwargs)``, a check of :mod:`ttamer.core.validate`, its error raised as a
    :class:`~ttamer.core.errors.TraceError`."""
    try:
        return check(*args, **kwargs)
    except TTamerError as exc:
        raise TraceError(str(exc)) from None


def _first(mask: np.ndarray) -> tuple[int, ...]:
    return tuple(int(i) for i in np.argwhere(mask)[0])


def _parents_array(parents: Any, names: Sequence[str], *, positions: bool = False) -> np.ndarray:
    """Parents as positions (``-1`` for a root) from names or ``None`` (the form stored in
    ``meta["parents"]``) -- and, with ``positions`` (:meth:`Trace.build`), from positions
    ``0..L-1`` or ``-1`` for a root; checks that there is one per exit and that they form a
    forest (no unknown name, no cycle)."""
    n = len(names)
    if not isinstance(parents, (list, tuple, np.ndarray)):
        raise TraceError(f"key 'meta': field 'parents' must be a list of {n} entries, each a parent name or null "
                         f"for a root, got {escape_text(repr(parents), 120)}")
    if len(parents) != n:
        raise TraceError(f"key 'meta': field 'parents' has {len(parents)} entries for {n} exits")
    index = {name: i for i, name in enumerate(names)}
    out = np.full(n, -1, dtype=np.int64)
    for v, p in enumerate(parents):
        is_int = isinstance(p, (int, np.integer)) and not isinstance(p, (bool, np.bool_))
        if p is None or (positions and is_int and p == -1):
            continue
        if isinstance(p, str):
            if p not in index:
                raise TraceError(f"key 'meta': field 'parents', exit {names[v]!r}: "
                                 f"unknown parent {escape_text(repr(p), 80)}")
            out[v] = index[p]
        elif positions and is_int and 0 <= p < n:
            out[v] = int(p)
        else:
            want = ("a parent name, a position 0..L-1, or -1 or None for a root" if positions
                    else "a parent name (one of 'exit_names') or null for a root")
            raise TraceError(f"key 'meta': field 'parents', exit {names[v]!r}: "
                             f"bad parent {escape_text(repr(p), 80)} (expected {want})")
    for v in range(n):  # walk up: a cycle never reaches a root
        u, steps = v, 0
        while out[u] >= 0:
            u, steps = int(out[u]), steps + 1
            if steps > n:
                raise TraceError(f"key 'meta': field 'parents': exit {names[v]!r} is on a cycle")
    return out


def check_labels(labels: Any, n: int | None = None) -> np.ndarray:
    """``labels`` as a 1-D array of class indices (integers, or floats holding integers, ``>= 0``)
    -- ``n`` of them where given -- in their own dtype; the rules :meth:`Trace.build` applies
    to its labels, which a recording run (:meth:`~ttamer.serving.runtime.EarlyExitServer.run_all`)
    checks before it runs the model. The classes are checked against the probabilities later.

    Raises
    ------
    TraceError
        Naming ``'labels'`` and the first offending example.
    """
    labels_arr = _numeric(labels, "labels")
    if labels_arr.ndim != 1:
        raise TraceError(f"key 'labels': expected shape [N], got {labels_arr.shape}")
    if n is not None and len(labels_arr) != n:
        raise TraceError(f"key 'labels': {len(labels_arr)} labels for {n} inputs (one label per input)")
    if labels_arr.dtype.kind == "f":
        if not np.all(np.isfinite(labels_arr)) or np.any(labels_arr != np.round(labels_arr)):
            bad = _first(~np.isfinite(labels_arr) | (labels_arr != np.round(labels_arr)))
            raise TraceError(f"key 'labels': example {bad[0]} is not an integer ({labels_arr[bad]})")
    if labels_arr.size:
        top = np.iinfo(np.int64).max // 2
        lo, hi = labels_arr.min().item(), labels_arr.max().item()  # Python numbers: float16 cannot hold top
        if lo < 0 or hi > top:
            wide = labels_arr.astype(np.float64) if labels_arr.dtype.kind == "f" else labels_arr
            (i,) = _first((wide < 0) | (wide > top))
            raise TraceError(f"key 'labels': example {i} has label {labels_arr[i].item()!r}, not a class index")
    return labels_arr


@dataclass(eq=False)
class Trace:
    r"""One model with ``L`` exits, or ``L`` separate models in a forest, on ``N`` examples
    (the book's chapters :doc:`/early_exit` and :doc:`/model`).

    The exits form a forest given by :attr:`parents` (``meta["parents"]``, by default the chain
    ``0 → 1 → … → L−1``): a strategy that consulted exit ``v`` and the exits on its path from
    the root, :meth:`path`, paid on example ``n``

    .. math::

       \sum_{u \in \mathrm{path}(v)} \mathrm{cost}[n, u]

    (``cost[u]`` for every example when ``cost`` is ``[L]``) -- on a chain, the sum over exits
    ``0..v``; the full model costs the sum over every exit. Use :meth:`build` to convert dtypes
    and fill the defaults; call :meth:`validate` (done by
    :func:`~ttamer.earlyexit.traces.load_trace` and :func:`~ttamer.earlyexit.traces.save_trace`)
    to check every rule.

    Parameters
    ----------
    probs : ndarray of shape (N, L, C), float32
        Softmax output of every exit for every example (rows sum to 1).
    labels : ndarray of shape (N,), int64
        True class of every example, in ``0..C-1``.
    cost : ndarray of shape (L,) or (N, L), float64
        Cost of reaching exit ``i`` from exit ``i-1`` (exit 0 from the input), on average or
        per example: finite and ``>= 0``, the full model's cost finite on every example and
        summed over the examples, and its mean at least the smallest normal float64 (so the
        costs can be normalised).
    meta : dict
        JSON-serialisable descriptive fields, all optional; ``model``, ``dataset`` and
        ``cost_unit`` are strings when present (:data:`META_DEFAULTS`;
        ``exit_names`` defaults to ``exit0, exit1, …``; ``parents``, each exit's parent name or
        ``None`` for a root, defaults to the chain).

    Notes
    -----
    The arrays are read, never written: the per-example quantities derived from them
    (:attr:`predictions`, :attr:`correct`, :attr:`max_prob`, :attr:`entropy`) are computed once
    per array and returned read-only. Replace an array (``trace.probs = ...``) rather than
    writing into it.
    """

    probs: np.ndarray
    labels: np.ndarray
    cost: np.ndarray
    meta: dict = field(default_factory=dict)
    _derived: dict = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        """The cheap checks (:meth:`validate_arrays`, ``meta`` a dict), so that even a trace
        built directly has the arrays its properties read; :meth:`validate` checks the rest."""
        if not isinstance(self.meta, dict):
            raise TraceError(f"key 'meta': expected a dict (JSON object), got {type(self.meta).__name__}")
        self.validate_arrays()

    # ------------------------------------------------------------------ construction
    @classmethod
    def build(cls, probs: Any, labels: Any, cost: Any, meta: Mapping[str, Any] | None = None,
              *, parents: Sequence[Any] | None = None, **meta_kw: Any) -> "Trace":
        """A validated trace from arrays.

        Converts to the file dtypes (probs → float32, labels → int64, cost → float64), fills
        ``exit_names`` (``exit0..``) and ``cost_unit`` (``"unit"``) if absent, stores the forest
        in ``meta["parents"]`` as names and validates. Labels must already be integral (no
        rounding).

        Parameters
        ----------
        probs, labels, cost
            The arrays of the trace (class docstring).
        meta : dict, optional
            Descriptive fields; ``meta_kw`` are added to them.
        parents : sequence, optional
            Each exit's parent as a position ``0..L-1``, a name, or ``None`` or ``-1`` for a
            root; default: the chain (or ``meta["parents"]``, read the same way). Stored as
            names. A cascade of separate models passes its tree here.

        Returns
        -------
        Trace

        Raises
        ------
        TraceError
            An array or field breaks a rule of the format; the message names it.
        """
        probs = _numeric(probs, "probs")
        labels_arr = check_labels(labels)
        cost_arr = _numeric(cost, "cost")
        if meta is not None and not isinstance(meta, Mapping):
            raise TraceError(f"key 'meta': expected a dict (JSON object), got {type(meta).__name__}")
        m = dict(meta or {})
        m.update(meta_kw)
        if probs.ndim == 3:
            m.setdefault("exit_names", [f"exit{i}" for i in range(probs.shape[1])])
        m.setdefault("cost_unit", META_DEFAULTS["cost_unit"])
        in_meta = m.pop("parents", None)
        par = in_meta if parents is None else parents
        tr = cls(_converted(probs, "probs"), _converted(labels_arr, "labels"), _converted(cost_arr, "cost"), m)
        tr.validate()
        if par is not None:
            names = tr.exit_names
            tr.meta["parents"] = [None if p < 0 else names[p] for p in _parents_array(par, names, positions=True)]
        return tr

    # ------------------------------------------------------------------ validation
    def validate(self) -> "Trace":
        """Check every rule of the trace format; return ``self``.

        Raises :class:`~ttamer.core.errors.TraceError` naming the key and the first offending index.
        """
        self.validate_arrays()
        self._validate_probs()
        self._validate_labels()
        self._validate_cost()
        self._validate_meta()
        return self

    def validate_arrays(self) -> None:
        """The cheap part of :meth:`validate`: every array a plain NumPy array of its dtype, and
        their shapes consistent (what must hold before ``n_examples`` and the like are read).

        Raises :class:`~ttamer.core.errors.TraceError` naming the key."""
        for key, dt in _DTYPES.items():
            arr = getattr(self, key)
            if type(arr) is not np.ndarray:
                raise TraceError(f"key {key!r}: expected a plain NumPy array (numpy.ndarray; not a masked "
                                 f"array, matrix or other subclass), got {type(arr).__name__}")
            if arr.dtype != dt:
                raise TraceError(f"key {key!r}: dtype {arr.dtype}, expected {np.dtype(dt).name} "
                                 f"(Trace.build converts explicitly)")
        if self.probs.ndim != 3:
            raise TraceError(f"key 'probs': expected shape [N, L, C], got {self.probs.shape}")
        n, L, C = self.probs.shape
        if n < 1 or L < 1 or C < 2:
            raise TraceError(f"key 'probs': needs N >= 1 examples, L >= 1 exits, C >= 2 classes; "
                             f"got shape {self.probs.shape}")
        if self.labels.shape != (n,):
            raise TraceError(f"key 'labels': shape {self.labels.shape}, expected ({n},) to match 'probs'")
        if self.cost.shape not in ((L,), (n, L)):
            raise TraceError(f"key 'cost': shape {self.cost.shape}, expected ({L},) or ({n}, {L})")

    def _validate_probs(self) -> None:
        p = self.probs
        bad = ~np.isfinite(p)
        if bad.any():
            i, k, c = _first(bad)
            raise TraceError(f"key 'probs': example {i}, exit {k}, class {c} is not finite ({float(p[i, k, c])})")
        bad = (p < 0) | (p > 1)
        if bad.any():
            i, k, c = _first(bad)
            raise TraceError(f"key 'probs': example {i}, exit {k}, class {c} is {float(p[i, k, c])}, outside [0, 1]")
        sums = p.sum(axis=2, dtype=np.float64)
        bad = np.abs(sums - 1.0) > PROB_SUM_TOL
        if bad.any():
            i, k = _first(bad)
            raise TraceError(f"key 'probs': example {i}, exit {k} sums to {sums[i, k]:.6g}, "
                             f"not 1 (tolerance {PROB_SUM_TOL})")

    def _validate_labels(self) -> None:
        C = self.probs.shape[2]
        bad = (self.labels < 0) | (self.labels >= C)
        if bad.any():
            (i,) = _first(bad)
            raise TraceError(f"key 'labels': example {i} has label {int(self.labels[i])}, "
                             f"outside 0..{C - 1} (C = {C} classes)")

    def _validate_cost(self) -> None:
        c = self.cost
        bad = ~np.isfinite(c) | (c < 0)
        if bad.any():
            idx = _first(bad)
            where = f"exit {idx[0]}" if c.ndim == 1 else f"example {idx[0]}, exit {idx[1]}"
            raise TraceError(f"key 'cost': {where} is {float(c[idx])}; costs must be finite and >= 0")
        fix = "rescale the costs (e.g. express them in another unit)"
        with np.errstate(over="ignore"):
            full = c.sum(axis=-1)  # the full model's cost: [] for a [L] cost, [N] per example
            total = full * self.n_examples if c.ndim == 1 else full.sum()
            mean = self.mean_cost.sum()
        if not np.all(np.isfinite(full)):
            where = "" if c.ndim == 1 else f" on example {_first(~np.isfinite(full))[0]}"
            raise TraceError(f"key 'cost': the full model's cost (the sum over the exits){where} "
                             f"overflows a float64; {fix}")
        if not np.isfinite(total):
            raise TraceError(f"key 'cost': the full model's cost summed over the {self.n_examples} examples "
                             f"overflows a float64; {fix}")
        tiny = float(np.finfo(np.float64).tiny)
        if c.ndim == 2 and mean > 0 and not np.all(full >= tiny):
            n = _first(~(full >= tiny))[0]
            raise TraceError(f"key 'cost': example {n}'s full cost (the sum over its exits) is {float(full[n]):.6g}; "
                             "with per-example costs every example's must be > 0 (at least the smallest normal "
                             "float64), because costs are normalised by the full model's mean cost on any part of "
                             "the examples (the calibration half, a cross-validation fold)")
        if mean == 0:
            raise TraceError("key 'cost': every cost is 0, so costs cannot be normalised "
                             "(the full model's mean cost must be > 0)")
        if not mean >= tiny:
            raise TraceError(f"key 'cost': the full model's mean cost is {float(mean):.6g}, below the smallest "
                             f"normal float64 ({tiny:.6g}), so costs cannot be normalised; {fix}")

    def _validate_meta(self) -> None:
        if not isinstance(self.meta, dict):
            raise TraceError(f"key 'meta': expected a dict (JSON object), got {type(self.meta).__name__}")
        check_json(self.meta, "key 'meta'", "meta", TraceError)
        _check_meta_chars(len(json.dumps(self.meta)), "key 'meta'")
        for key in META_DEFAULTS:
            if key in self.meta and not isinstance(self.meta[key], str):
                raise TraceError(f"key 'meta': field {key!r} must be a string, got "
                                 f"{escape_text(repr(self.meta[key]), 80)} ({type(self.meta[key]).__name__}); "
                                 f"leave it out for the default {META_DEFAULTS[key]!r}")
        if "exit_names" in self.meta:
            self._validate_exit_names()
        if "parents" in self.meta:
            _parents_array(self.meta["parents"], self.exit_names)

    def _validate_exit_names(self) -> None:
        names = self.meta["exit_names"]
        L = self.n_exits
        if not isinstance(names, list) or len(names) != L or not all(isinstance(s, str) and s for s in names):
            raise TraceError(f"key 'meta': field 'exit_names' must be a list of {L} non-empty strings, "
                             f"got {escape_text(repr(names), 120)}")
        if len(set(names)) != L:
            raise TraceError(f"key 'meta': field 'exit_names' has duplicates: {escape_text(repr(names), 120)}")

    # ------------------------------------------------------------------ shape
    @property
    def n_examples(self) -> int:
        return int(self.probs.shape[0])

    @property
    def n_exits(self) -> int:
        return int(self.probs.shape[1])

    @property
    def n_classes(self) -> int:
        return int(self.probs.shape[2])

    @property
    def exit_names(self) -> list[str]:
        return list(self.meta.get("exit_names") or [f"exit{i}" for i in range(self.n_exits)])

    # ------------------------------------------------------------------ the forest
    @property
    def parents(self) -> np.ndarray:
        """``int [L]``: each exit's parent position, ``-1`` for a root (``meta["parents"]``;
        default the chain ``[-1, 0, 1, …, L−2]``)."""
        if not isinstance(self.meta, dict):
            self._validate_meta()  # the error naming key 'meta'
        if "parents" not in self.meta:
            return np.arange(-1, self.n_exits - 1, dtype=np.int64)
        return _parents_array(self.meta["parents"], self.exit_names)

    @property
    def is_chain(self) -> bool:
        """Whether the exits form the chain ``0 → 1 → … → L−1``."""
        return bool(np.array_equal(self.parents, np.arange(-1, self.n_exits - 1)))

    def paths(self) -> list[list[int]]:
        """Per exit ``v``, the positions of the exits from the root down to ``v`` (on a chain
        ``0..v``), the parents read once."""
        parents = self.parents
        out = []
        for v in range(self.n_exits):  # a loop over exits
            p = [v]
            while parents[p[-1]] >= 0:
                p.append(int(parents[p[-1]]))
            out.append(p[::-1])
        return out

    def path(self, v: int | str) -> list[int]:
        """Positions of the exits from the root down to exit ``v`` (a position or name,
        :meth:`node_id`; :meth:`paths`)."""
        return self.paths()[self.node_id(v)]

    def path_cost(self) -> np.ndarray:
        """``[L]``: mean cost of consulting exit ``v`` and its ancestors (the cheapest way to reach ``v``)."""
        c = self.mean_cost
        return np.array([c[p].sum() for p in self.paths()])

    def node_id(self, node: int | str) -> int:
        """Position of an exit given by name or position ``0..L-1`` (an integer: no bool, float
        or negative position counted from the end)."""
        names = self.exit_names
        if isinstance(node, str):
            if node not in names:
                raise TTamerError(f"unknown model {escape_text(repr(node), 80)}; models: {names}")
            return names.index(node)
        return check_int(node, f"model index (of {self.n_exits} models, or a name)", minimum=0,
                         maximum=self.n_exits - 1)

    def reference(self, node: int | str | None = None) -> int:
        """The reference exit: ``node``, or by default the one of largest :meth:`path_cost`."""
        return int(np.argmax(self.path_cost())) if node is None else self.node_id(node)

    # ------------------------------------------------------------------ derived arrays
    @property
    def cost_matrix(self) -> np.ndarray:
        """Per-example edge costs ``[N, L]`` (a ``[L]`` cost broadcast over examples)."""
        return np.broadcast_to(self.cost, (self.n_examples, self.n_exits)) if self.cost.ndim == 1 else self.cost

    @property
    def mean_cost(self) -> np.ndarray:
        """Mean cost of each edge, ``[L]``: ``c_i`` of the chain instance."""
        return self.cost if self.cost.ndim == 1 else self.cost.mean(axis=0)

    @property
    def cumulative_cost(self) -> np.ndarray:
        """``[N, L]``: cost paid by an example that stopped after consulting exit ``k`` and its
        :meth:`path` from the root -- on a chain, exits ``0..k``."""
        if self.is_chain:
            return np.cumsum(self.cost_matrix, axis=1)
        cm = self.cost_matrix
        return np.stack([cm[:, p].sum(axis=1) for p in self.paths()], axis=1)

    @property
    def full_cost(self) -> np.ndarray:
        """``[N]``: cost of running the full model (every exit) on each example."""
        return self.cost_matrix.sum(axis=1)

    def _cached(self, name: str, compute: Callable[[], np.ndarray]) -> np.ndarray:
        """``compute()``, once per (``probs``, ``labels``) pair of arrays, read-only."""
        hit = self._derived.get(name)
        if hit is not None and hit[0] is self.probs and hit[1] is self.labels:
            return hit[2]
        value = compute()
        value.flags.writeable = False
        self._derived[name] = (self.probs, self.labels, value)
        return value

    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "_derived"} | {"_derived": {}}

    @property
    def predictions(self) -> np.ndarray:
        """``[N, L]`` int64: argmax class at every exit."""
        return self._cached("predictions", lambda: self.probs.argmax(axis=2))

    @property
    def correct(self) -> np.ndarray:
        """``[N, L]`` bool: exit ``i``'s prediction equals the label."""
        return self._cached("correct", lambda: self.predictions == self.labels[:, None])

    @property
    def max_prob(self) -> np.ndarray:
        """``[N, L]`` float64: the confidence ``max_c probs[n, i, c]``."""
        return self._cached("max_prob", lambda: self.probs.max(axis=2).astype(np.float64))

    @property
    def entropy(self) -> np.ndarray:
        """``[N, L]`` float64: ``-Σ_c p log p`` (natural log, ``0 log 0 = 0``)."""
        return self._cached("entropy", self._entropy)

    def _entropy(self) -> np.ndarray:
        """:attr:`entropy`, in chunks of examples of at most :data:`ENTROPY_CHUNK_CELLS`
        probabilities, so that its float64 temporaries stay bounded on many classes."""
        n, L, C = self.probs.shape
        out = np.empty((n, L))
        step = max(1, ENTROPY_CHUNK_CELLS // max(L * C, 1))
        for start in range(0, n, step):  # a loop over chunks of examples, not over examples
            p = self.probs[start : start + step].astype(np.float64)
            with np.errstate(divide="ignore", invalid="ignore"):
                t = np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0)
            out[start : start + step] = -t.sum(axis=2)
        return out

    def accuracy(self) -> np.ndarray:
        """``[L]``: accuracy of every exit on all examples."""
        return self.correct.mean(axis=0)

    def fingerprint(self) -> str:
        """A digest (BLAKE2b, hex) of the probabilities, labels and costs: equal for traces
        holding the same numbers, so that an estimator can tell the trace it was fitted on
        from another of the same size."""
        h = hashlib.blake2b(digest_size=16)
        for a in (self.probs, self.labels, self.cost):
            h.update(repr((a.dtype.str, a.shape)).encode())
            h.update(np.ascontiguousarray(a).data)
        return h.hexdigest()

    # ------------------------------------------------------------------ selection
    def _meta_copy(self) -> dict[str, Any]:
        """``meta`` copied at its top level, with its lists ``exit_names`` and ``parents``
        (the fields the package reads); other nested values are shared, not copied (a subset
        is taken many times in an evaluation)."""
        return {k: list(v) if k in ("exit_names", "parents") and isinstance(v, list) else v
                for k, v in self.meta.items()}

    def subset(self, idx: Any) -> "Trace":
        """The trace restricted to examples ``idx`` (indices ``0..N-1``, none negative, or a
        boolean mask of ``N``); meta copied at its top level, with its lists ``exit_names`` and
        ``parents`` (other nested values are shared)."""
        try:
            idx = np.asarray(idx)
        except (ValueError, TypeError, OverflowError):
            raise TraceError("subset: expected a 1-D array of example indices or a boolean mask") from None
        if idx.dtype == bool:
            if idx.shape != (self.n_examples,):
                raise TraceError(f"subset mask has shape {idx.shape}, expected ({self.n_examples},)")
            idx = np.flatnonzero(idx)
        if idx.ndim != 1 or len(idx) == 0:
            raise TraceError("subset: expected a non-empty 1-D array of example indices")
        if idx.dtype.kind not in "iu":
            raise TraceError(f"subset: example indices must be integers, got dtype {idx.dtype} "
                             f"(e.g. {escape_text(repr(idx[0]), 40)}); nothing is rounded")
        bad = (idx < 0) | (idx >= self.n_examples)
        if bad.any():
            (i,) = _first(bad)
            raise TraceError(f"subset: index {idx[i]} at position {i} is outside 0..{self.n_examples - 1} "
                             f"({self.n_examples} examples; a negative index is not counted from the end)")
        idx = idx.astype(np.int64, copy=False)
        cost = self.cost if self.cost.ndim == 1 else self.cost[idx]
        return Trace(self.probs[idx], self.labels[idx], cost, self._meta_copy())

    def split(self, fraction: float, seed: int = 0, *,
              min_each: int = MIN_SPLIT_EXAMPLES) -> tuple["Trace", "Trace"]:
        """Random split into (calibration, test) with ``round(fraction·N)`` calibration examples;
        each side must hold at least ``min_each`` examples
        (:data:`ttamer.core.validate.MIN_SPLIT_EXAMPLES`), else a :class:`~ttamer.core.errors.TraceError`."""
        n = self.n_examples
        fraction = _checked(check_fraction, fraction, "calibration fraction", n=n, min_each=min_each)
        seed = _checked(check_seed, seed)
        k = round(fraction * n)
        perm = np.random.default_rng(seed).permutation(n)
        return self.subset(np.sort(perm[:k])), self.subset(np.sort(perm[k:]))

    def sample(self, n: int, seed: int | np.random.Generator = 0) -> "Trace":
        """A random sample of ``n`` of the examples, in their order (the whole trace if it holds
        at most ``n``): drawn from ``seed`` on a stream apart from :meth:`split`'s for the same
        seed, or the next draw of a generator."""
        n = check_int(n, "sample size", minimum=1)
        if isinstance(seed, np.random.Generator):
            rng = seed
        else:
            rng = np.random.default_rng([check_seed(seed), SAMPLE_STREAM])
        if n >= self.n_examples:
            return self
        return self.subset(np.sort(rng.choice(self.n_examples, n, replace=False)))

    def __repr__(self) -> str:
        shown = lambda key: escape_text(repr(self.meta.get(key, META_DEFAULTS[key])), 120)  # noqa: E731
        return (f"Trace({shown('model')} on {shown('dataset')}: "
                f"N={self.n_examples}, L={self.n_exits}, C={self.n_classes}, "
                f"cost {'per example' if self.cost.ndim == 2 else 'per exit'} "
                f"in {shown('cost_unit')}{self._tree_text()})")

    def _tree_text(self) -> str:
        try:
            if self.is_chain:
                return ""
        except TraceError:
            return "; parents not valid (validate() says why)"
        names = [escape_text(n, 40) for n in self.exit_names]
        return "; " + ", ".join(f"{n}<-{'start' if p < 0 else names[p]}" for n, p in zip(names, self.parents))


# ---------------------------------------------------------------------------------------------
def save_trace(path: str | Path, trace: Trace, compressed: bool = False) -> None:
    """Validate ``trace`` and write it to ``path`` (``.npz``; ``meta`` as a JSON string).

    The file is written to a temporary file in the same folder and renamed over ``path``, so
    a failed write never destroys a good file.

    Parameters
    ----------
    path : str or pathlib.Path
        The trace file (the book's chapter :doc:`/formats`).
    trace : Trace
        The trace to write; it is validated first.
    compressed : bool, default False
        Zip-deflate the arrays (:func:`load_trace` reads both kinds); ``True`` or ``False``
        only.

    Raises
    ------
    TraceError
        ``trace`` is not a :class:`Trace` or breaks a rule of the format, ``compressed`` is
        not a bool, or the file cannot be written.
    """
    if not isinstance(trace, Trace):
        raise TraceError(f"save_trace: expected a Trace, got {type(trace).__name__}")
    compressed = _checked(check_bool, compressed, "save_trace: compressed")
    trace.validate()
    path = check_path(path, "trace file", TraceError)
    meta = json.dumps(trace.meta, allow_nan=False, sort_keys=True)

    def write(fh) -> None:
        (np.savez_compressed if compressed else np.savez)(
            fh, probs=trace.probs, labels=trace.labels, cost=trace.cost, meta=np.array(meta))

    atomic_write(path, write, "trace file", TraceError)


def _check_meta_chars(chars: int, what: str) -> None:
    """Refuse a ``meta`` of more than :data:`MAX_META_CHARS` characters of JSON (``what`` names it)."""
    if chars > MAX_META_CHARS:
        raise TraceError(f"{what}: {chars:,} characters of JSON, above the limit of {MAX_META_CHARS:,} "
                         f"(MAX_META_CHARS); meta describes the trace and is checked and copied with every part of the "
                         f"examples an evaluation takes: keep data out of it")


#: The zip's end-of-central-directory record, and the zip64 locator and record (APPNOTE 4.3.14–16).
_EOCD = struct.Struct("<4s4H2LH")
_ZIP64_LOCATOR = struct.Struct("<4sLQL")
_ZIP64_EOCD = struct.Struct("<4sQ2H2L4Q")


def _zip_directory_bytes(fh: Any, size: int) -> int | None:
    """The size in bytes of the central directory that the zip archive open as ``fh`` (of
    ``size`` bytes) declares at its end, found as :mod:`zipfile` finds it (the end record in
    the last 22 bytes, else the last one in the final 64 KiB; the zip64 record just before its
    locator, where there is one), or ``None`` where there is no end record (:mod:`zipfile`
    then refuses the file itself)."""
    tail_len = min(size, _EOCD.size + 0xFFFF)  # the record and the longest comment
    fh.seek(size - tail_len)
    tail = fh.read(tail_len)
    at = len(tail) - _EOCD.size if tail[-_EOCD.size:][:4] == b"PK\x05\x06" else tail.rfind(b"PK\x05\x06")
    if at < 0 or at + _EOCD.size > len(tail):
        return None
    directory = _EOCD.unpack_from(tail, at)[5]
    locator = size - tail_len + at - _ZIP64_LOCATOR.size
    if locator - _ZIP64_EOCD.size < 0:
        return directory
    fh.seek(locator - _ZIP64_EOCD.size)
    record = fh.read(_ZIP64_EOCD.size + _ZIP64_LOCATOR.size)
    if record[_ZIP64_EOCD.size:][:4] != b"PK\x06\x07" or record[:4] != b"PK\x06\x06":
        return directory
    return _ZIP64_EOCD.unpack_from(record)[8]


def _npz_members(zf: zipfile.ZipFile, where: str) -> dict[str, zipfile.ZipInfo]:
    """The members of an archive by key (member ``KEY.npy`` holds key ``KEY``).

    Refuses any member but ``KEY.npy`` for a key of :data:`KEYS` (an unknown key, a folder, a
    path, a name without ``.npy``) and a name that appears twice, so that every key names
    exactly one member and nothing in the file goes unread (NumPy would otherwise read a member
    ``probs`` before ``probs.npy``, and the last of two ``probs.npy``).
    """
    keys = {f"{key}.npy": key for key in KEYS}
    members: dict[str, zipfile.ZipInfo] = {}
    for info in zf.infolist():
        name = escape_text(repr(info.filename), 80)
        if info.filename not in keys:
            raise TraceError(f"{where}: member {name} is not part of a trace; a trace archive holds "
                             f"exactly one member KEY.npy per key of {list(KEYS)}, as save_trace "
                             f"writes them")
        key = keys[info.filename]
        if key in members:
            raise TraceError(f"{where}: member {name} appears twice; each key must be stored once")
        members[key] = info
    return members


#: What NumPy's ``.npy`` header reader raises on a header that is not a Python dictionary
#: literal, besides the ``ValueError`` of :func:`ast.literal_eval` (``malformed node ...``).
_HEADER_PARSE_ERRORS = (SyntaxError, TypeError, tokenize.TokenError, RecursionError, MemoryError)
_NOT_A_LITERAL = "it is not a Python dictionary literal"


def _read_npy_header(fh: Any, where: str, name: str) -> tuple[tuple, np.dtype, int]:
    """``(shape, dtype, length of the header in bytes)`` of the ``.npy`` member ``name`` open
    as ``fh``; a :class:`~ttamer.core.errors.TraceError` naming the file and member if it has
    no valid header (in format version 1.0, 2.0 or 3.0)."""
    try:
        version = np.lib.format.read_magic(fh)
        header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                  else np.lib.format.read_array_header_2_0)
        shape, _fortran, dtype = header(fh)
    except (zipfile.BadZipFile, zlib_error) as exc:  # e.g. a CRC mismatch once a small member is read whole
        raise TraceError(f"{where}: member {name} is corrupt ({escape_text(str(exc), 120)})") from None
    except (ValueError, OSError, EOFError) as exc:
        detail = _NOT_A_LITERAL if str(exc).startswith("malformed node") else escape_text(str(exc), 120)
        raise TraceError(f"{where}: member {name} has no valid .npy header ({detail})") from None
    except _HEADER_PARSE_ERRORS:
        raise TraceError(f"{where}: member {name} has no valid .npy header ({_NOT_A_LITERAL})") from None
    if version not in ((1, 0), (2, 0), (3, 0)):
        raise TraceError(f"{where}: member {name} is in .npy format version {version[0]}.{version[1]}; "
                         f"versions 1.0, 2.0 and 3.0 are read")
    return shape, dtype, fh.tell()


def _check_member(info: zipfile.ZipInfo, fh: Any, where: str, max_bytes: int) -> None:
    """Check from its ``.npy`` header that member ``info`` (open as ``fh``) holds numbers or a
    string, of a shape of sizes ``>= 0`` within ``max_bytes``, and exactly the data its header
    declares; the member ``meta.npy`` at most :data:`MAX_META_CHARS` characters."""
    name = escape_text(repr(info.filename), 80)
    shape, dtype, header_bytes = _read_npy_header(fh, where, name)
    if dtype.hasobject:
        raise TraceError(f"{where}: member {name} holds Python objects; a trace holds numbers and a string")
    if dtype.itemsize == 0:
        raise TraceError(f"{where}: member {name} has the empty dtype {escape_text(str(dtype), 40)}; a trace "
                         f"holds numbers and a string")
    declared = f"shape {escape_text(repr(tuple(shape)), 80)} of {escape_text(str(dtype), 40)}"
    for i, d in enumerate(shape):
        if isinstance(d, bool) or d < 0:
            raise TraceError(f"{where}: member {name} declares {declared}: dimension {i} is {short_repr(d)}, "
                             f"not a size (an integer >= 0)")
    span = dtype.itemsize * math.prod(max(d, 1) for d in shape)  # an empty dimension counted as 1
    if span > max_bytes:
        size = (f"{magnitude(span)} bytes" if 0 not in shape
                else f"no data, but its other dimensions span {magnitude(span)} bytes")
        raise TraceError(f"{where}: member {name} declares {declared} ({size}), above the limit of "
                         f"{max_bytes:,} (MAX_TRACE_BYTES)")
    nbytes = dtype.itemsize * math.prod(shape)
    if info.filename == "meta.npy" and dtype.kind in "US":  # another dtype is refused once read
        _check_meta_chars(nbytes // (4 if dtype.kind == "U" else 1), f"{where}: key 'meta'")
    data = info.file_size - header_bytes
    if nbytes > data:
        raise TraceError(f"{where}: member {name} declares {declared} ({nbytes:,} bytes) but holds "
                         f"only {data:,} bytes of data: the file is corrupt")
    if data > nbytes:
        raise TraceError(f"{where}: member {name} holds {data - nbytes:,} bytes after its data "
                         f"({declared}, {nbytes:,} bytes): the file is corrupt")


#: What reading a member of a damaged archive raises (zipfile, zlib, bz2, lzma, numpy).
_READ_ERRORS = (OSError, ValueError, zipfile.BadZipFile, EOFError, KeyError, NotImplementedError, RuntimeError,
                OverflowError, MemoryError, zlib_error)


@contextmanager
def _member_errors(info: zipfile.ZipInfo, where: str) -> Iterator[None]:
    """Turn an error reading member ``info`` of the archive into a
    :class:`~ttamer.core.errors.TraceError` naming the file and the member."""
    try:
        yield
    except TraceError:
        raise
    except _READ_ERRORS as exc:
        raise TraceError(f"{where}: member {escape_text(repr(info.filename), 80)} cannot be read: "
                         f"{escape_text(str(exc), 200)}") from None


def _read_npz(path: Path, max_bytes: int) -> dict[str, np.ndarray]:
    """The arrays of :data:`KEYS` in the archive ``path``.

    Member names are checked first (:func:`_npz_members`); then an archive whose members
    (uncompressed) exceed ``max_bytes``, or whose ``.npy`` headers are invalid or declare
    arrays over ``max_bytes``, other than the data the member holds, or Python objects, is
    refused (:func:`_check_member`) -- before anything is decompressed or allocated. The
    arrays are read from the very members checked.
    """
    where = show_path(path)
    with zipfile.ZipFile(path) as zf:
        members = _npz_members(zf, where)
        total = 0
        for info in members.values():
            total += info.file_size
            if total > max_bytes:
                raise TraceError(f"{where}: member {escape_text(repr(info.filename), 80)} brings the uncompressed "
                                 f"size to {total:,} bytes, above the limit of {max_bytes:,} "
                                 f"(MAX_TRACE_BYTES; in Python, load_trace(path, max_bytes=N) reads larger files)")
        missing = [k for k in KEYS if k not in members]
        if missing:
            raise TraceError(f"{where}: missing key(s) {missing}; a trace holds {list(KEYS)}")
        for key in KEYS:
            with _member_errors(members[key], where), zf.open(members[key]) as fh:
                _check_member(members[key], fh, where, max_bytes)
        arrays = {}
        for key in KEYS:
            with _member_errors(members[key], where), zf.open(members[key]) as fh:
                arrays[key] = np.lib.format.read_array(fh, allow_pickle=False)
        return arrays


def load_trace(path: str | Path, *, max_bytes: int = MAX_TRACE_BYTES) -> Trace:
    """Read and validate a trace file (``.npz``; the book's chapter :doc:`/formats`).

    Parameters
    ----------
    path : str or pathlib.Path
        The trace file. Only a regular file is read.
    max_bytes : int, default MAX_TRACE_BYTES
        Largest size of the file, and of the arrays its zip and ``.npy`` headers declare,
        checked before anything is allocated (:data:`MAX_TRACE_BYTES`); an integer ``>= 1``.

    Returns
    -------
    Trace
        The validated trace.

    Raises
    ------
    TraceError
        ``max_bytes`` is not an integer ``>= 1``; or the file cannot be read, is too large, is
        an ambiguous archive (a member other than ``KEY.npy`` for a key of :data:`KEYS`, or a
        name twice), has a member whose ``.npy`` header is invalid or does not match its data,
        or breaks a rule of the format; the message names the file and the key or member.
    """
    path = check_path(path, "trace file", TraceError)
    max_bytes = _checked(check_int, max_bytes, "load_trace: max_bytes", minimum=1)
    where = show_path(path)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise TraceError(f"trace file {where} does not exist") from None
    except OSError as exc:
        raise TraceError(f"cannot read trace file {where}: {exc.strerror or exc}") from None
    if stat.S_ISDIR(st.st_mode):
        raise TraceError(f"trace file {where} is a folder")
    if not stat.S_ISREG(st.st_mode):
        raise TraceError(f"trace file {where} is not a regular file (a FIFO or device?); only regular files are read")
    if st.st_size > max_bytes:
        raise TraceError(f"trace file {where} has {st.st_size:,} bytes, above the limit of {max_bytes:,} "
                         f"(MAX_TRACE_BYTES; in Python, load_trace(path, max_bytes=N) reads larger files)")
    try:
        with open(path, "rb") as fh:
            magic = fh.read(4)
            directory = _zip_directory_bytes(fh, st.st_size) if magic == b"PK\x03\x04" else None
    except OSError as exc:
        raise TraceError(f"cannot read trace file {where}: {exc.strerror or exc}") from None
    if magic != b"PK\x03\x04":
        raise TraceError(f"{where} is not an .npz archive (expected a zip file written by save_trace)")
    if directory is not None and directory > MAX_ZIP_DIRECTORY_BYTES:
        raise TraceError(f"{where}: the archive's list of members takes {directory:,} bytes, above the limit of "
                         f"{MAX_ZIP_DIRECTORY_BYTES:,} (MAX_ZIP_DIRECTORY_BYTES); a trace archive holds exactly "
                         f"one member KEY.npy per key of {list(KEYS)}, a few hundred bytes of list")
    try:
        arrays = _read_npz(path, max_bytes)
    except TraceError:
        raise
    except _READ_ERRORS as exc:
        raise TraceError(f"cannot read trace file {where}: {escape_text(str(exc), 200)}") from None
    meta_raw = arrays.pop("meta")
    if meta_raw.shape != () or meta_raw.dtype.kind not in "US":
        raise TraceError(f"{where}: key 'meta' must be a JSON string, got array of dtype "
                         f"{meta_raw.dtype} and shape {meta_raw.shape}")
    try:
        text = meta_raw[()]
        text = text.decode("utf-8") if isinstance(text, bytes) else str(text)
    except UnicodeDecodeError:
        raise TraceError(f"{where}: key 'meta' is not UTF-8 text") from None
    meta = loads_strict(text, f"{where}: key 'meta'", TraceError)
    if not isinstance(meta, dict):
        raise TraceError(f"{where}: key 'meta' must be a JSON object, got {type(meta).__name__}")
    try:
        return Trace(arrays["probs"], arrays["labels"], arrays["cost"], meta).validate()
    except TraceError as exc:
        raise TraceError(f"{where}: {exc}") from None


# ---------------------------------------------------------------------------------------------
@dataclass(eq=False)
class ExitDecisions:
    """What a strategy did on the examples of a trace: the one decisions record of evaluation
    and serving (the book's chapters *Early exit on real models* and *Trees of models and a
    serving runtime*).

    Arrays have shape ``[N]`` for one strategy or ``[P, N]`` for a sweep over ``P``
    parameter values (``params``, length ``P``).

    Parameters
    ----------
    answer : ndarray of int
        Exit (or model) whose prediction is returned.
    last : ndarray of int
        Last exit consulted.
    cost : ndarray of float
        Total cost paid, in the trace's units.
    params : ndarray of shape (P,), optional
        The swept parameter of each row of a sweep.
    name : str
        The strategy's name.
    consulted : ndarray of bool, shape (..., N, L), optional
        Exit ``v`` was consulted -- for a tree of models or a chain with skips. ``None`` on a
        chain without skips, where the exits consulted are ``0..last``
        (:meth:`consulted_mask` derives them).
    """

    answer: np.ndarray
    last: np.ndarray
    cost: np.ndarray
    params: np.ndarray | None = None
    name: str = ""
    consulted: np.ndarray | None = None

    @classmethod
    def from_last(cls, trace: Trace, answer: np.ndarray, last: np.ndarray,
                  params: np.ndarray | None = None, name: str = "") -> "ExitDecisions":
        """Decisions of a chain strategy that consulted exits ``0..last``: the cost is the
        cumulative cost up to ``last`` (per example)."""
        answer, last = _exit_array(answer, "answer", trace), _exit_array(last, "last", trace)
        if answer.shape != last.shape:
            raise TraceError(f"from_last: answer has shape {answer.shape}, last {last.shape}; they must match")
        cum = trace.cumulative_cost
        rows = np.arange(trace.n_examples)
        cost = cum[rows, last] if last.ndim == 1 else cum[rows[None, :], last]
        return cls(answer, last, cost, None if params is None else np.asarray(params), name)

    @classmethod
    def stack(cls, decisions: Sequence["ExitDecisions"], params: Any, name: str) -> "ExitDecisions":
        """One sweep ``[P, N]`` from ``P`` single decision sets (``consulted`` kept if they have it)."""
        cons = [d.consulted for d in decisions]
        return cls(np.stack([d.answer for d in decisions]), np.stack([d.last for d in decisions]),
                   np.stack([d.cost for d in decisions]), np.asarray(params, dtype=float), name,
                   None if any(c is None for c in cons) else np.stack(cons))

    @property
    def is_sweep(self) -> bool:
        return self.answer.ndim == 2

    @property
    def n_consulted(self) -> np.ndarray:
        """Number of exits consulted, shape of ``last`` (``last + 1`` on a chain without skips)."""
        return self.last + 1 if self.consulted is None else self.consulted.sum(axis=-1)

    def consulted_mask(self, n_exits: int) -> np.ndarray:
        """Boolean ``[..., N, L]``: exit ``v`` was consulted (``consulted``, else ``v ≤ last``)."""
        return np.arange(n_exits) <= self.last[..., None] if self.consulted is None else self.consulted

    def correct(self, trace: Trace, target: str = "label") -> np.ndarray:
        """Boolean array (shape of ``answer``): the answered exit is right. ``target`` is
        ``"label"`` (true class) or ``"final"`` (agreement with the last exit). ``trace`` must
        be the one the decisions were made on (its examples and exits)."""
        _exit_array(self.answer, "answer", trace)
        truth = target_labels(trace, target)
        pred = trace.predictions
        rows = np.arange(trace.n_examples)
        rows = rows if self.answer.ndim == 1 else rows[None, :]
        return pred[rows, self.answer] == truth

    def points(self, trace: Trace, scale: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
        """``(mean cost / scale, accuracy)`` against the labels, one entry per sweep point."""
        c = self.correct(trace)
        cost = self.cost / check_real(scale, "points: scale", low=0.0, low_open=True)
        if not self.is_sweep:
            c, cost = c[None], cost[None]
        return cost.mean(axis=1), c.mean(axis=1)

    def __getitem__(self, p: int) -> "ExitDecisions":
        """Sweep point ``p`` (``0..P−1``, or negative from the end) as a single decision set."""
        if not self.is_sweep:
            raise TraceError("ExitDecisions: these are one strategy's decisions [N], not a sweep [P, N]; "
                             "only a sweep's points can be indexed")
        p = operator.index(p)
        if not -len(self) <= p < len(self):
            raise IndexError(f"sweep point {p} is outside the {len(self)} points of the sweep")
        p %= len(self)
        par = None if self.params is None else self.params[p : p + 1]
        cons = None if self.consulted is None else self.consulted[p]
        return ExitDecisions(self.answer[p], self.last[p], self.cost[p], par, self.name, cons)

    def __len__(self) -> int:
        return len(self.answer) if self.is_sweep else 1


def _exit_array(values: Any, name: str, trace: Trace) -> np.ndarray:
    """``values`` (``[N]`` or ``[P, N]`` exit positions of ``trace``'s examples) as int64; a
    clear error naming ``name`` for other shapes, non-integers or positions outside ``0..L−1``."""
    arr = np.asarray(values)
    if arr.dtype.kind not in "iu" or arr.ndim not in (1, 2) or arr.shape[-1] != trace.n_examples:
        raise TraceError(f"ExitDecisions {name}: expected integer exit positions of shape [N] or [P, N] with N = "
                         f"{trace.n_examples} (the trace's examples), got dtype {arr.dtype} and shape {arr.shape}")
    if arr.size and (arr.min() < 0 or arr.max() >= trace.n_exits):
        bad = _first((arr < 0) | (arr >= trace.n_exits))
        raise TraceError(f"ExitDecisions {name}: exit {arr[bad]} at index {list(bad)} is outside "
                         f"0..{trace.n_exits - 1} (the trace's exits)")
    return arr.astype(np.int64, copy=False)


def target_labels(trace: Trace, target: str = "label") -> np.ndarray:
    """``[N]``: the class an answer is judged against -- the true label (``"label"``) or the
    final exit's prediction (``"final"``, the paper's and Apparate's convention)."""
    if target == "label":
        return trace.labels
    if target == "final":
        return trace.predictions[:, -1]
    raise TraceError(f"target must be 'label' or 'final', got {short_repr(target)}")


#: Most numbers (examples x exits x classes) of a :func:`synthetic_trace` (its working arrays
#: take about 24 bytes per number).
SYNTHETIC_MAX_CELLS = 2**26
#: Most exits of a :func:`synthetic_trace`.
SYNTHETIC_MAX_EXITS = 1000


def synthetic_trace(n: int = 1000, n_exits: int = 6, n_classes: int = 4, seed: int = 0,
                    per_example_cost: bool = False, rho: float = 0.8) -> Trace:
    """A trace from a small random process, for tests and illustrations (no model).

    Example ``n`` has label ``y_n`` (uniform), difficulty ``d_n ~ U(0, 1)`` and exit logits
    ``z_{n,i} = 4 (i+1)/L (1 − d_n) e_{y_n} + ε_{n,i}`` with ``ε_{n,i} = ρ ε_{n,i−1} +
    √(1−ρ²) ξ_{n,i}`` (standard normal ``ξ``), so exits grow more accurate and their errors
    are correlated, as in a real backbone. Costs: 1 per exit (jittered per example if
    ``per_example_cost``). At most :data:`SYNTHETIC_MAX_CELLS` numbers ``n·L·C`` and
    :data:`SYNTHETIC_MAX_EXITS` exits, checked before any work.
    """
    n, n_exits = check_int(n, "n", minimum=1), check_int(n_exits, "n_exits", minimum=1, maximum=SYNTHETIC_MAX_EXITS)
    n_classes = check_int(n_classes, "n_classes", minimum=2)
    if n * n_exits * n_classes > SYNTHETIC_MAX_CELLS:
        raise TTamerError(f"synthetic_trace: n x n_exits x n_classes = {n * n_exits * n_classes:,} numbers, above "
                          f"SYNTHETIC_MAX_CELLS = {SYNTHETIC_MAX_CELLS:,}; ask for fewer examples, exits or classes")
    check_bool(per_example_cost, "per_example_cost")
    rho = check_real(rho, "rho", low=-1.0, high=1.0)
    rng = np.random.default_rng(check_seed(seed))
    y = rng.integers(0, n_classes, n)
    d = rng.random(n)
    eps = np.empty((n, n_exits, n_classes))
    eps[:, 0] = rng.standard_normal((n, n_classes))
    for i in range(1, n_exits):
        eps[:, i] = rho * eps[:, i - 1] + np.sqrt(1 - rho**2) * rng.standard_normal((n, n_classes))
    strength = 4.0 * (np.arange(1, n_exits + 1) / n_exits)[None, :] * (1 - d)[:, None]
    z = eps + strength[:, :, None] * np.eye(n_classes)[y][:, None, :]
    z -= z.max(axis=2, keepdims=True)
    p = np.exp(z)
    p /= p.sum(axis=2, keepdims=True)
    cost = np.ones(n_exits)
    if per_example_cost:
        cost = cost[None, :] * rng.uniform(0.8, 1.2, (n, n_exits))
    meta = {"model": "synthetic", "dataset": f"synthetic(seed={seed})", "split": "all",
            "cost_unit": "exit", "exit_names": [f"exit{i}" for i in range(n_exits)], "seed": int(seed)}
    return Trace.build(p, y, cost, meta)
