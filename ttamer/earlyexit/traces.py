"""Traces: the interchange format for measured early-exit workloads (the book's chapter *Early exit on real models*).

A trace holds one model with ``L`` exits evaluated on one set of ``N`` examples:

==========  ==============================  ====================================================
key         shape / dtype                   meaning
==========  ==============================  ====================================================
``probs``   float32 ``[N, L, C]``           softmax output of every exit for every example
``labels``  int64 ``[N]``                   true class, in ``0..C-1``
``cost``    float64 ``[L]`` or ``[N, L]``   cost of reaching exit ``i`` from exit ``i-1``
                                            (exit 0 from the input), per example or on average
``meta``    JSON object (string on disk)    optional descriptive fields: ``model``,
                                            ``dataset``, ``cost_unit``, ``exit_names`` (``L``
                                            strings), ``split``, ``hardware``, ``seed``, ...
==========  ==============================  ====================================================

On a chain of exits a strategy that consulted exits ``0..k`` paid ``Σ_{i≤k} cost[i]``; the
full model costs ``Σ_i cost[i]``. :func:`load_trace` and :meth:`Trace.validate` check every
rule and raise :class:`~ttamer.core.errors.TraceError` naming the key and the first offending
index. Nothing is silently renormalised; :meth:`Trace.build` converts dtypes explicitly for
callers holding e.g. float64 probabilities.
"""

from __future__ import annotations

import json
import os
import stat
import zipfile
from zlib import error as zlib_error
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from ..core.errors import TraceError, TTamerError
from ..core.safeio import atomic_write, check_path, loads_strict, show_path
from ..core.validate import MIN_SPLIT_EXAMPLES, check_fraction, check_seed, escape_text

#: Tolerance on ``Σ_c probs[n, i, c] = 1`` (float32 softmax outputs).
PROB_SUM_TOL = 1e-3
#: Descriptive ``meta`` fields and the defaults a trace without them is read with (all optional;
#: a trace with ``probs``, ``labels`` and ``cost`` alone is complete).
META_DEFAULTS = {"model": "?", "dataset": "?", "cost_unit": "unit"}
#: Keys of a trace file.
KEYS = ("probs", "labels", "cost", "meta")

#: Largest trace read by :func:`load_trace`, in bytes (the file and the arrays it declares,
#: uncompressed), checked from the zip and ``.npy`` headers before anything is allocated
#: (override: ``load_trace(path, max_bytes=...)``).
MAX_TRACE_BYTES = 2**30

_DTYPES = {"probs": np.float32, "labels": np.int64, "cost": np.float64}


def _numeric(value: Any, key: str) -> np.ndarray:
    """``value`` as an array of real numbers (no strings, booleans, objects or ragged lists)."""
    try:
        arr = np.asarray(value)
    except (ValueError, TypeError, OverflowError) as exc:
        raise TraceError(f"key {key!r}: expected a rectangular array of numbers "
                         f"({escape_text(str(exc), 120)})") from None
    if arr.dtype.kind not in "fiu":
        raise TraceError(f"key {key!r}: expected numbers, got an array of dtype {arr.dtype} "
                         f"(strings, booleans and ragged lists are not converted)")
    return arr


def _first(mask: np.ndarray) -> tuple[int, ...]:
    return tuple(int(i) for i in np.argwhere(mask)[0])


@dataclass(eq=False)
class Trace:
    r"""One model with ``L`` exits on ``N`` examples (the book's chapter :doc:`/early_exit`).

    On a chain of exits, a strategy that consulted exits ``0..k`` on example ``n`` paid

    .. math::

       \sum_{i \le k} \mathrm{cost}[n, i]

    (``cost[i]`` for every example when ``cost`` is ``[L]``); the full model costs the sum
    over every exit. Use :meth:`build` to convert dtypes and fill the defaults; call
    :meth:`validate` (done by :func:`~ttamer.earlyexit.traces.load_trace` and
    :func:`~ttamer.earlyexit.traces.save_trace`) to check every rule.

    Parameters
    ----------
    probs : ndarray of shape (N, L, C), float32
        Softmax output of every exit for every example (rows sum to 1).
    labels : ndarray of shape (N,), int64
        True class of every example, in ``0..C-1``.
    cost : ndarray of shape (L,) or (N, L), float64
        Cost of reaching exit ``i`` from exit ``i-1`` (exit 0 from the input), on average or
        per example.
    meta : dict
        JSON-serialisable descriptive fields, all optional (:data:`META_DEFAULTS`;
        ``exit_names`` defaults to ``exit0, exit1, …``).
    """

    probs: np.ndarray
    labels: np.ndarray
    cost: np.ndarray
    meta: dict = field(default_factory=dict)

    # ------------------------------------------------------------------ construction
    @classmethod
    def build(cls, probs: Any, labels: Any, cost: Any, meta: Mapping[str, Any] | None = None,
              **meta_kw: Any) -> "Trace":
        """Convert to the file dtypes (probs → float32, labels → int64, cost → float64),
        fill ``exit_names`` (``exit0..``) and ``cost_unit`` (``"unit"``) if absent, and
        validate. Labels must already be integral (no rounding)."""
        probs = _numeric(probs, "probs")
        labels_arr = _numeric(labels, "labels")
        cost_arr = _numeric(cost, "cost")
        if labels_arr.ndim != 1:
            raise TraceError(f"key 'labels': expected shape [N], got {labels_arr.shape}")
        if labels_arr.dtype.kind == "f":
            if not np.all(np.isfinite(labels_arr)) or np.any(labels_arr != np.round(labels_arr)):
                bad = _first(~np.isfinite(labels_arr) | (labels_arr != np.round(labels_arr)))
                raise TraceError(f"key 'labels': example {bad[0]} is not an integer ({labels_arr[bad]})")
        if labels_arr.size:
            lo, hi = labels_arr.min(), labels_arr.max()
            if lo < 0 or hi > np.iinfo(np.int64).max // 2:
                (i,) = _first((labels_arr < 0) | (labels_arr > np.iinfo(np.int64).max // 2))
                raise TraceError(f"key 'labels': example {i} has label {labels_arr[i]!r}, not a class index")
        if meta is not None and not isinstance(meta, Mapping):
            raise TraceError(f"key 'meta': expected a dict (JSON object), got {type(meta).__name__}")
        m = dict(meta or {})
        m.update(meta_kw)
        if probs.ndim == 3:
            m.setdefault("exit_names", [f"exit{i}" for i in range(probs.shape[1])])
        m.setdefault("cost_unit", META_DEFAULTS["cost_unit"])
        with np.errstate(over="ignore", invalid="ignore"):
            tr = cls(probs.astype(np.float32), labels_arr.astype(np.int64), cost_arr.astype(np.float64), m)
        return tr.validate()

    # ------------------------------------------------------------------ validation
    def validate(self) -> "Trace":
        """Check every rule of the trace format; return ``self``.

        Raises :class:`~ttamer.core.errors.TraceError` naming the key and the first offending index.
        """
        self._validate_arrays()
        self._validate_probs()
        self._validate_labels()
        self._validate_cost()
        self._validate_meta()
        return self

    def _validate_arrays(self) -> None:
        for key, dt in _DTYPES.items():
            arr = getattr(self, key)
            if not isinstance(arr, np.ndarray):
                raise TraceError(f"key {key!r}: expected a NumPy array, got {type(arr).__name__}")
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

    def _validate_meta(self) -> None:
        if not isinstance(self.meta, dict):
            raise TraceError(f"key 'meta': expected a dict (JSON object), got {type(self.meta).__name__}")
        try:
            json.dumps(self.meta, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise TraceError(f"key 'meta': not JSON-serialisable ({exc})") from None
        if "exit_names" not in self.meta:
            return
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
        """``[N, L]``: cost paid by an example that stopped after consulting exits ``0..k``."""
        return np.cumsum(self.cost_matrix, axis=1)

    @property
    def full_cost(self) -> np.ndarray:
        """``[N]``: cost of running the full model (every exit) on each example."""
        return self.cost_matrix.sum(axis=1)

    @property
    def predictions(self) -> np.ndarray:
        """``[N, L]`` int64: argmax class at every exit."""
        return self.probs.argmax(axis=2)

    @property
    def correct(self) -> np.ndarray:
        """``[N, L]`` bool: exit ``i``'s prediction equals the label."""
        return self.predictions == self.labels[:, None]

    @property
    def max_prob(self) -> np.ndarray:
        """``[N, L]`` float64: the confidence ``max_c probs[n, i, c]``."""
        return self.probs.max(axis=2).astype(np.float64)

    @property
    def entropy(self) -> np.ndarray:
        """``[N, L]`` float64: ``-Σ_c p log p`` (natural log, ``0 log 0 = 0``)."""
        p = self.probs.astype(np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            t = np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0)
        return -t.sum(axis=2)

    def accuracy(self) -> np.ndarray:
        """``[L]``: accuracy of every exit on all examples."""
        return self.correct.mean(axis=0)

    # ------------------------------------------------------------------ selection
    def subset(self, idx: Any) -> "Trace":
        """The trace restricted to examples ``idx`` (indices or a boolean mask); meta copied."""
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
        if idx.dtype.kind == "u" and idx.max() > np.iinfo(np.int64).max:
            raise TraceError(f"subset: index out of range for {self.n_examples} examples")
        idx = idx.astype(np.int64, copy=False)
        if idx.min() < -self.n_examples or idx.max() >= self.n_examples:
            raise TraceError(f"subset: index out of range for {self.n_examples} examples")
        cost = self.cost if self.cost.ndim == 1 else self.cost[idx]
        return Trace(self.probs[idx], self.labels[idx], cost, json.loads(json.dumps(self.meta)))

    def split(self, fraction: float, seed: int = 0, *,
              min_each: int = MIN_SPLIT_EXAMPLES) -> tuple["Trace", "Trace"]:
        """Random split into (calibration, test) with ``round(fraction·N)`` calibration examples;
        each side must hold at least ``min_each`` examples
        (:data:`ttamer.core.validate.MIN_SPLIT_EXAMPLES`), else a :class:`~ttamer.core.errors.TraceError`."""
        n = self.n_examples
        try:
            fraction = check_fraction(fraction, "calibration fraction", n=n, min_each=min_each)
            seed = check_seed(seed)
        except TTamerError as exc:
            raise TraceError(str(exc)) from None
        k = round(fraction * n)
        perm = np.random.default_rng(seed).permutation(n)
        return self.subset(np.sort(perm[:k])), self.subset(np.sort(perm[k:]))

    def __repr__(self) -> str:
        shown = lambda key: escape_text(repr(self.meta.get(key, META_DEFAULTS[key])), 120)  # noqa: E731
        return (f"Trace({shown('model')} on {shown('dataset')}: "
                f"N={self.n_examples}, L={self.n_exits}, C={self.n_classes}, "
                f"cost {'per example' if self.cost.ndim == 2 else 'per exit'} "
                f"in {shown('cost_unit')})")


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
        Zip-deflate the arrays (:func:`load_trace` reads both kinds).

    Raises
    ------
    TraceError
        The trace breaks a rule of the format, or the file cannot be written.
    """
    if not isinstance(trace, Trace):
        raise TraceError(f"save_trace: expected a Trace, got {type(trace).__name__}")
    trace.validate()
    path = check_path(path, "trace file", TraceError)
    meta = json.dumps(trace.meta, allow_nan=False, sort_keys=True)

    def write(fh) -> None:
        (np.savez_compressed if compressed else np.savez)(
            fh, probs=trace.probs, labels=trace.labels, cost=trace.cost, meta=np.array(meta))

    atomic_write(path, write, "trace file", TraceError)


def _check_npz_sizes(path: Path, max_bytes: int) -> None:
    """Refuse an archive whose members (uncompressed) or declared array shapes exceed
    ``max_bytes``, or whose ``.npy`` header declares more data than the member holds --
    before anything is decompressed or allocated."""
    where = show_path(path)
    with zipfile.ZipFile(path) as zf:
        total = 0
        for info in zf.infolist():
            total += info.file_size
            name = escape_text(repr(info.filename), 80)
            if total > max_bytes:
                raise TraceError(f"{where}: member {name} brings the uncompressed size to {total:,} bytes, "
                                 f"above the limit of {max_bytes:,} (MAX_TRACE_BYTES; raise it with max_bytes=)")
            if info.filename not in {f"{k}.npy" for k in KEYS}:
                continue
            with zf.open(info) as fh:
                try:
                    version = np.lib.format.read_magic(fh)
                    header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                              else np.lib.format.read_array_header_2_0)
                    shape, _fortran, dtype = header(fh)
                except (ValueError, OSError, EOFError, SyntaxError, TypeError) as exc:
                    raise TraceError(f"{where}: member {name} has no valid .npy header "
                                     f"({escape_text(str(exc), 120)})") from None
            if dtype.hasobject:
                raise TraceError(f"{where}: member {name} holds Python objects; a trace holds numbers and a string")
            count = 1
            for d in shape:
                count *= int(d)
            nbytes = count * dtype.itemsize
            if nbytes > max_bytes:
                raise TraceError(f"{where}: member {name} declares shape {tuple(shape)} of {dtype} "
                                 f"({nbytes:,} bytes), above the limit of {max_bytes:,} (MAX_TRACE_BYTES)")
            if nbytes > info.file_size:
                raise TraceError(f"{where}: member {name} declares shape {tuple(shape)} of {dtype} "
                                 f"({nbytes:,} bytes) but holds only {info.file_size:,} bytes: the file is corrupt")


def load_trace(path: str | Path, *, max_bytes: int = MAX_TRACE_BYTES) -> Trace:
    """Read and validate a trace file (``.npz``; the book's chapter :doc:`/formats`).

    Parameters
    ----------
    path : str or pathlib.Path
        The trace file. Only a regular file is read.
    max_bytes : int, default MAX_TRACE_BYTES
        Largest size of the file, and of the arrays its zip and ``.npy`` headers declare,
        checked before anything is allocated (:data:`MAX_TRACE_BYTES`).

    Returns
    -------
    Trace
        The validated trace.

    Raises
    ------
    TraceError
        The file cannot be read, is too large, or breaks a rule of the format; the message
        names the file and the key.
    """
    path = check_path(path, "trace file", TraceError)
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
                         f"(MAX_TRACE_BYTES; raise it with max_bytes=)")
    try:
        with open(path, "rb") as fh:
            magic = fh.read(4)
    except OSError as exc:
        raise TraceError(f"cannot read trace file {where}: {exc.strerror or exc}") from None
    if magic != b"PK\x03\x04":
        raise TraceError(f"{where} is not an .npz archive (expected a zip file written by save_trace)")
    try:
        _check_npz_sizes(path, max_bytes)
        with np.load(path, allow_pickle=False) as data:
            if not hasattr(data, "files"):
                raise TraceError(f"{str(path)!r}: not an .npz archive (a single array?)")
            missing = [k for k in KEYS if k not in data.files]
            if missing:
                raise TraceError(f"{str(path)!r}: missing key(s) {missing}; a trace holds {list(KEYS)}")
            arrays = {k: data[k] for k in KEYS}
    except TraceError:
        raise
    except (OSError, ValueError, zipfile.BadZipFile, EOFError, KeyError, NotImplementedError,
            RuntimeError, OverflowError, MemoryError, zlib_error) as exc:
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
    """What a strategy did on the examples of a trace (the book's chapter *Early exit on real models*).

    ``answer`` -- exit whose prediction is returned; ``last`` -- last exit consulted;
    ``cost`` -- total cost paid (trace units). Arrays have shape ``[N]`` for one strategy or
    ``[P, N]`` for a sweep over ``P`` parameter values (``params``, length ``P``). On a chain
    without skips the exits consulted are ``0..last``.
    """

    answer: np.ndarray
    last: np.ndarray
    cost: np.ndarray
    params: np.ndarray | None = None
    name: str = ""

    @classmethod
    def from_last(cls, trace: Trace, answer: np.ndarray, last: np.ndarray,
                  params: np.ndarray | None = None, name: str = "") -> "ExitDecisions":
        """Decisions of a chain strategy that consulted exits ``0..last``: the cost is the
        cumulative cost up to ``last`` (per example)."""
        answer = np.asarray(answer, dtype=np.int64)
        last = np.asarray(last, dtype=np.int64)
        cum = trace.cumulative_cost
        rows = np.arange(trace.n_examples)
        cost = cum[rows, last] if last.ndim == 1 else cum[rows[None, :], last]
        return cls(answer, last, cost, None if params is None else np.asarray(params), name)

    @property
    def is_sweep(self) -> bool:
        return self.answer.ndim == 2

    @property
    def n_consulted(self) -> np.ndarray:
        """Number of exits consulted (``last + 1``), shape of ``last``."""
        return self.last + 1

    def consulted(self, n_exits: int) -> np.ndarray:
        """Boolean ``[..., N, L]``: exit ``i`` was consulted (``i ≤ last``)."""
        return np.arange(n_exits) <= self.last[..., None]

    def correct(self, trace: Trace, target: str = "label") -> np.ndarray:
        """Boolean array (shape of ``answer``): the answered exit is right. ``target`` is
        ``"label"`` (true class) or ``"final"`` (agreement with the last exit)."""
        truth = target_labels(trace, target)
        pred = trace.predictions
        rows = np.arange(trace.n_examples)
        rows = rows if self.answer.ndim == 1 else rows[None, :]
        return pred[rows, self.answer] == truth

    def __getitem__(self, p: int) -> "ExitDecisions":
        """Sweep point ``p`` as a single decision set."""
        if not self.is_sweep:
            raise IndexError("not a sweep")
        par = None if self.params is None else self.params[p : p + 1]
        return ExitDecisions(self.answer[p], self.last[p], self.cost[p], par, self.name)

    def __len__(self) -> int:
        return len(self.answer) if self.is_sweep else 1


def target_labels(trace: Trace, target: str = "label") -> np.ndarray:
    """``[N]``: the class an answer is judged against -- the true label (``"label"``) or the
    final exit's prediction (``"final"``, the paper's and Apparate's convention)."""
    if target == "label":
        return trace.labels
    if target == "final":
        return trace.predictions[:, -1]
    raise TraceError(f"target must be 'label' or 'final', got {target!r}")


def synthetic_trace(n: int = 1000, n_exits: int = 6, n_classes: int = 4, seed: int = 0,
                    per_example_cost: bool = False, rho: float = 0.8) -> Trace:
    """A trace from a small random process, for tests and illustrations (no model).

    Example ``n`` has label ``y_n`` (uniform), difficulty ``d_n ~ U(0, 1)`` and exit logits
    ``z_{n,i} = 4 (i+1)/L (1 − d_n) e_{y_n} + ε_{n,i}`` with ``ε_{n,i} = ρ ε_{n,i−1} +
    √(1−ρ²) ξ_{n,i}`` (standard normal ``ξ``), so exits grow more accurate and their errors
    are correlated, as in a real backbone. Costs: 1 per exit (jittered per example if
    ``per_example_cost``).
    """
    rng = np.random.default_rng(seed)
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
