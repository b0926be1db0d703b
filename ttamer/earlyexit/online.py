"""The state features of an exit computed online, exit by exit, from what the earlier exits left.

The estimators compute their states on a whole trace: the history features
(:func:`~ttamer.earlyexit.features.history_features`), the posterior answer
(:func:`~ttamer.earlyexit.logistic.posterior_answers`), the binned states of a
:class:`~ttamer.earlyexit.features.StateEncoder`. A served rule sees one exit at a time.
:class:`ExitHistory` keeps, on the rows of a batch still running, what those features need
from the exits seen so far -- the log-odds and predictions of the exits in preallocated
``[B, L]`` buffers, the class counts of the predictions, the running sum of the softmaxes, the
agreement run -- and computes exit ``i``'s features from exit ``i``'s softmax and what it kept,
with the arithmetic of the trace functions, operation for operation, so that the values are
equal to the last bit. :class:`EncoderRun` bins them into the states of a fitted encoder.
Everything is a fixed number of vectorised numpy calls per exit, except the posterior answer
(``O(i)`` numbers at exit ``i``, one call each). One query's posterior answer is also kept on
Python floats (:class:`PosteriorOne`): where its margin tells, it decides without numpy, and
otherwise with the arithmetic above.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..core.errors import TTamerError
from ..core.validate import check_int, describe_value, short_repr
from .traces import PROB_SUM_TOL

#: Relative error granted to Python's ``math.log``, ``math.log1p`` and ``math.exp`` against
#: numpy's, and to the rounding of a sum in another order (each within an ulp or a few of the
#: exact value; ``1e-12`` is thousands of ulps): the margin of the decisions taken on Python
#: floats (:class:`PosteriorOne`, :meth:`ttamer.earlyexit.pathwise.StoppingRule.stops_near`).
MATH_RTOL = 1e-12
#: What an :class:`ExitHistory` can keep (its ``keeps``).
KEEPS = frozenset({"lo", "pred", "counts", "total", "run", "history"})


def clip(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """``np.clip(x, lo, hi)`` (the same values: ``min(max(x, lo), hi)``) in two plain ufunc
    calls, which cost a fraction of ``np.clip``'s dispatch on a few numbers."""
    return np.minimum(np.maximum(x, lo), hi)


def log_odds(mp: np.ndarray) -> np.ndarray:
    """Log-odds of probabilities clipped to ``[1e-6, 1 − 1e-6]`` (as the state features)."""
    mp = clip(mp, 1e-6, 1 - 1e-6)
    return np.log(mp) - np.log1p(-mp)


def entropy(p: np.ndarray) -> np.ndarray:
    """``[B]`` float64 entropy of softmax rows ``p [B, C]`` (the formula of ``Trace.entropy``)."""
    p = p.astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0)
    return -t.sum(axis=1)


def margin(p: np.ndarray) -> np.ndarray:
    """``[B]`` float64 top-1 minus top-2 probability of softmax rows ``p [B, C]`` (the
    ``"margin"`` of :func:`~ttamer.earlyexit.features.confidence_feature`)."""
    top2 = np.partition(p, p.shape[1] - 2, axis=1)[:, -2:].astype(np.float64)
    return top2[:, 1] - top2[:, 0]


def logistic_at(f: np.ndarray, w: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """``[B]``: one exit's logistic model ``(w [1, F], scale [F])`` on its features ``f [B, F]``,
    the arithmetic of the per-exit logistic models' prediction on the whole trace
    (``ttamer.earlyexit.logistic._predict``) on that exit's column."""
    z = np.einsum("nlf,lf->nl", f[:, None, :] / scale, w)[:, 0]
    return 1.0 / (1.0 + np.exp(-clip(z, -30, 30)))


#: Most numbers of softmax rows checked on Python floats (:func:`check_exit_rows`): on so few,
#: Python's ``min`` and ``sum`` over the rows' lists cost less than numpy's reductions.
FEW_PROBABILITIES = 32
_min, _max, _add = np.minimum.reduce, np.maximum.reduce, np.add.reduce


def check_exit_rows(i: int, p: Any, rows: int, n_classes: int | None, who: str = "advance") -> None:
    """Refuse exit ``i``'s softmax rows ``p`` unless they are a floating-point array ``[rows,
    n_classes]`` (any ``C ≥ 1`` classes for ``n_classes=None``) of probabilities: finite, ``≥ 0``,
    each row summing to 1 within the trace format's ``PROB_SUM_TOL`` (the sum in float64).

    A few attribute reads, then one combined test: on up to :data:`FEW_PROBABILITIES` numbers
    Python's ``min`` and ``sum`` of each row's list, on more numpy's minimum and row sums (and
    their range where there are several rows); which row is wrong, and how, is worked out only
    where one is. ``who`` is the call the message names (``who(i)``).

    Raises
    ------
    TTamerError
        Naming ``p`` and exit ``i``: its shape or dtype, or its first row that is no softmax row.
    """
    if not (isinstance(p, np.ndarray) and p.shape == (rows, n_classes) and p.dtype.kind == "f"):
        _check_shape(i, p, rows, n_classes, who)
    if rows and not _probabilities(p):
        _refuse_rows(i, p, who)


def exit_row(i: int, p: Any, n_classes: int | None, who: str = "advance_one") -> list[float]:
    """One query's softmax row ``p [1, C]`` of exit ``i`` as a list of Python floats, checked as
    :func:`check_exit_rows` does (the list read once)."""
    if not (isinstance(p, np.ndarray) and p.shape == (1, n_classes) and p.dtype.kind == "f"):
        _check_shape(i, p, 1, n_classes, who)
    row = p.tolist()[0]
    if not (_probability_row(row) if len(row) <= FEW_PROBABILITIES else _probabilities(p)):
        _refuse_rows(i, p, who)
    return row


def check_exit_probs(i: int, probs: Any, n_classes: int | None, who: str = "step") -> None:
    """Refuse ``probs`` unless it is a floating-point array ``[B, i+1, C]`` (``C = n_classes``,
    any ``C ≥ 1`` for ``None``) of the softmax rows of exits ``0..i``, each a probability row
    (:func:`check_exit_rows`); the argument of a stateless ``step(i, probs)``."""
    C = probs.shape[2] if n_classes is None and isinstance(probs, np.ndarray) and probs.ndim == 3 else n_classes
    if not (isinstance(probs, np.ndarray) and probs.shape[1:] == (i + 1, C) and C and probs.dtype.kind == "f"):
        raise TTamerError(f"{who}({i}): probs must be [B, {i + 1}, {n_classes or 'C'}] (a numpy array of floats: "
                          f"the softmax rows of exits 0..{i}), got {describe_value(probs)}")
    flat = probs.reshape(-1, C)
    if len(flat) and not _probabilities(flat):
        r, what = _bad_row(flat)
        n, k = divmod(r, i + 1)
        raise TTamerError(f"{who}({i}): probs[{n}, {k}] (exit {k}'s softmax row) must hold probabilities -- "
                          f"finite, >= 0, summing to 1 (tolerance {PROB_SUM_TOL}); it {what}")


def _check_shape(i: int, p: Any, rows: int, n_classes: int | None, who: str) -> None:
    """Pass ``p`` if it is a float array ``[rows, C ≥ 1]`` and ``n_classes`` is ``None``; else raise."""
    if isinstance(p, np.ndarray) and p.ndim == 2 and p.shape[0] == rows and p.shape[1] and n_classes is None \
            and p.dtype.kind == "f":
        return
    got = describe_value(p) if isinstance(p, np.ndarray) else type(p).__name__
    raise TTamerError(f"{who}({i}): p must be [{rows}, {n_classes or 'C'}] (exit {i}'s softmax rows, "
                      f"a numpy array of floats), got {got}")


def _probabilities(p: np.ndarray) -> bool:
    """Whether every row of the float array ``p [B ≥ 1, C ≥ 1]`` is finite, ``≥ 0`` and sums to
    1 within ``PROB_SUM_TOL`` (NaN and ``±inf`` fail the comparisons; no numpy warning: the
    sum of float32 rows is taken in float64, and wider rows are bounded first)."""
    if p.size <= FEW_PROBABILITIES:
        return all(map(_probability_row, p.tolist()))
    if not _min(p, None) >= 0:
        return False
    if p.itemsize > 4 and not _max(p, None) <= 1.0 + PROB_SUM_TOL:  # no overflow in the sum below
        return False
    s = _add(p, 1, np.float64)
    if len(s) == 1:
        return abs(s.item() - 1.0) <= PROB_SUM_TOL
    return bool(_min(s) >= 1.0 - PROB_SUM_TOL and _max(s) <= 1.0 + PROB_SUM_TOL)


def _probability_row(row: list[float]) -> bool:
    """:func:`_probabilities` of one row on Python floats (a NaN that ``min`` passes over
    makes the sum NaN)."""
    return min(row) >= 0 and abs(sum(row) - 1.0) <= PROB_SUM_TOL


def _refuse_rows(i: int, p: np.ndarray, who: str) -> None:
    """Raise the error of exit ``i``'s rows ``p``, naming the first that is no softmax row."""
    r, what = _bad_row(p)
    raise TTamerError(f"{who}({i}): p (exit {i}'s softmax rows) must hold probabilities -- finite, >= 0, each row "
                      f"summing to 1 (tolerance {PROB_SUM_TOL}); row {r} {what}")


def _bad_row(p: np.ndarray) -> tuple[int, str]:
    """``(r, what)``: the first row of ``p [B, C]`` that is no probability row, and what is wrong."""
    with np.errstate(all="ignore"):
        q = p.astype(np.float64)
        s = q.sum(axis=1)
        finite = np.isfinite(q).all(axis=1)
        negative = (q < 0).any(axis=1)
        r = int(np.argmax(~finite | negative | ~(np.abs(s - 1.0) <= PROB_SUM_TOL)))
    if not finite[r]:
        return r, "holds NaN or infinite values"
    if negative[r]:
        return r, f"holds a negative value, {q[r].min():.6g}"
    return r, f"sums to {s[r]:.6g}"


def check_exit(i: Any, n_exits: int, who: str) -> int:
    """``i`` as an exit ``0..n_exits−1`` (a Python or NumPy integer; bools, floats refused)."""
    if i.__class__ is int and 0 <= i < n_exits:
        return i
    return check_int(i, f"{who}: exit", minimum=0, maximum=n_exits - 1)


def check_stop_states(i: Any, x: Any, n_exits: int) -> int:
    """``i`` as an exit of ``stops(i, x)`` (:func:`check_exit`), or a
    :class:`~ttamer.core.errors.TTamerError` where ``x`` is not a 1-D array of numbers (the
    states ``advance`` returns, one per row: nothing is broadcast)."""
    i = check_exit(i, n_exits, "stops")
    if not (isinstance(x, np.ndarray) and x.ndim == 1 and x.dtype.kind in "fiu"):
        raise TTamerError(f"stops({i}): x must be a 1-D numpy array of numbers (the states advance returned, one "
                          f"per row), got {describe_value(x)}")
    return i


def check_batch(n: Any, cells_per_row: int, most_cells: int) -> int:
    """The rows ``n`` of a batch a running state is begun on: an integer from 1 to as many as
    keep its buffers (``cells_per_row`` numbers a row) within ``most_cells`` numbers."""
    most = max(1, most_cells // cells_per_row)
    if n.__class__ is int and 1 <= n <= most:
        return n
    return check_int(n, "begin: n (rows of the batch)", minimum=1, maximum=most)


def exit_column(cache: list[np.ndarray], i: Any, B: Any, most: int) -> np.ndarray:
    """``[B]`` int64 filled with exit ``i``: ``cache[i]`` (read-only, no allocation per step),
    grown when too short; ``i`` an exit ``0..len(cache)−1``, ``B`` rows in ``0..most``."""
    if not (i.__class__ is int and 0 <= i < len(cache) and B.__class__ is int and 0 <= B <= most):
        i = check_exit(i, len(cache), "exits")
        B = check_int(B, "exits: B (rows)", minimum=0, maximum=most)
    if len(cache[i]) < B:
        cache[i] = np.full(B, i, dtype=np.int64)
        cache[i].flags.writeable = False
    return cache[i][:B]


def check_mask(mask: Any, rows: int) -> None:
    """Refuse a ``keep(mask)`` unless ``mask`` is a boolean array ``[rows]``: one flag per row
    still running (an integer array would index rows, a short one drop them silently)."""
    if not (isinstance(mask, np.ndarray) and mask.shape == (rows,) and mask.dtype.kind == "b"):
        raise TTamerError(f"keep: mask must be a boolean numpy array [{rows}] (one flag per row still running, True "
                          f"keeps it), got {describe_value(mask)}")


class InTurn:
    """What a running state that takes the exits ``0, 1, …, n_exits−1`` in turn shares:
    ``_in_turn`` refuses an exit out of turn (the state holds exits ``0..next_exit−1``);
    the run moves ``next_exit`` on to ``i + 1`` once exit ``i``'s rows are taken, so that rows
    refused leave it as it was."""

    #: The exit the next ``advance`` must be given.
    next_exit = 0
    #: The exits of the rule.
    n_exits = 0
    #: Whether the rows given to ``advance`` / ``advance_one`` are checked to be softmax rows
    #: (:func:`check_exit_rows`, :func:`exit_row`). The serving runtime makes its rows by a
    #: softmax and checks them for finiteness once after the run, so it begins its runs
    #: without the check (``begin_run(rule, n, check_rows=False)``), out of the timed steps.
    check_rows = True

    def _in_turn(self, i: Any, who: str = "advance") -> int:
        """``i`` as an int if it is the exit that comes next, else a
        :class:`~ttamer.core.errors.TTamerError`."""
        if i.__class__ is not int or i != self.next_exit or i >= self.n_exits:
            i = check_int(i, f"{who}: exit", minimum=0)
            if self.next_exit >= self.n_exits:
                raise TTamerError(f"{who}({short_repr(i)}): the run has taken every exit (0..{self.n_exits - 1}); "
                                  "begin(n) starts another batch")
            if i != self.next_exit:
                raise TTamerError(f"{who}({short_repr(i)}): exit {self.next_exit} comes next (a run takes exits 0, "
                                  "1, ... in turn, from a fresh begin(n))")
        return i


class ExitHistory:
    """What the features of exit ``i`` need from exits ``0..i``, kept on the rows of a batch.

    Call :meth:`add` with exit ``i``'s softmax rows for ``i = 0, 1, …`` in turn, then read exit
    ``i``'s features (``mp``, ``lo_i``, ``pred_i``, ``run``, :meth:`history`,
    :meth:`posterior`); :meth:`keep` drops the rows that left the batch.

    Parameters
    ----------
    n : int
        Rows of the batch.
    n_exits : int
        The network's exits.
    n_classes : int or None
        Its classes (``None``: those of the first rows added).
    keeps : frozenset of str
        What to keep (:data:`KEEPS`): ``"lo"`` (the log-odds buffer), ``"pred"`` (the
        prediction buffer), ``"counts"`` (class counts of the predictions), ``"total"`` (the
        running softmax sum), ``"run"`` (the agreement run), ``"history"`` (the history
        features; needs ``"lo"``, ``"counts"`` and ``"run"``).
    """

    def __init__(self, n: int, n_exits: int, n_classes: int | None, keeps: frozenset[str]) -> None:
        if not keeps <= KEEPS:
            raise TTamerError(f"ExitHistory keeps {sorted(KEEPS)}, got {sorted(keeps - KEEPS)}")
        if "history" in keeps and not {"lo", "counts", "run"} <= keeps:
            raise TTamerError("ExitHistory: the history features need the 'lo', 'counts' and 'run' buffers")
        L = int(n_exits)
        self.keeps, self.n_classes = keeps, None
        self.lo = np.zeros((n, L)) if "lo" in keeps else None
        self.pred = np.zeros((n, L), dtype=np.int64) if "pred" in keeps else None
        self.counts = self.total = None
        if n_classes is not None:
            self._per_class(n, int(n_classes))
        self.run = np.zeros(n, dtype=np.int64) if "run" in keeps else None
        self.f = np.ones((n, 7)) if "history" in keeps else None
        self.needs_pred = bool(keeps & {"pred", "counts", "run"})
        self.last_pred = np.zeros(n, dtype=np.int64)
        self.earlier: np.ndarray | None = None
        self.rows = np.arange(n)
        self.p: np.ndarray | None = None
        self.mp = self.lo_i = self.pred_i = None

    def _per_class(self, n: int, C: int) -> None:
        """Allocate the buffers over the ``C`` classes."""
        self.n_classes = C
        self.counts = np.zeros((n, C), dtype=np.int64) if "counts" in self.keeps else None
        self.total = np.zeros((n, C)) if "total" in self.keeps else None

    def keep(self, mask: np.ndarray) -> None:
        """Keep the rows where ``mask [B]`` (bool) is true; the others left the batch."""
        check_mask(mask, len(self.rows))
        for k in ("lo", "pred", "counts", "total", "run", "last_pred", "f"):
            v = getattr(self, k)
            if v is not None:
                setattr(self, k, v[mask])
        self.rows = self.rows[: int(mask.sum())]

    def add(self, i: int, p: np.ndarray, check: bool = True) -> None:
        """Take exit ``i``'s float32 softmax rows ``p [B, C]``: its max-probability
        ``mp`` (float64), log-odds ``lo_i`` and prediction ``pred_i`` (where
        kept), and the buffers, counts, sum and run updated; with ``check``, rows that are not
        softmax rows of the batch's classes are refused (:func:`check_exit_rows`)."""
        if check:
            check_exit_rows(i, p, len(self.rows), self.n_classes)
        if self.n_classes is None:
            self._per_class(len(self.rows), p.shape[1])
        self.p = p
        self.mp = mp = p.max(axis=1).astype(np.float64)
        self.pred_i = pred = p.argmax(axis=1) if self.needs_pred else None
        if self.lo is not None:
            self.lo[:, i] = self.lo_i = log_odds(mp)
        if self.pred is not None:
            self.pred[:, i] = pred
        if self.total is not None:
            self.total += p
        if self.run is not None:
            if i > 0:
                self.run = np.where(pred == self.last_pred, self.run + 1, 0)
            self.last_pred = pred
        if self.counts is not None:
            if self.f is not None:  # how many earlier exits predicted exit i's class
                self.earlier = self.counts[self.rows, pred]
            self.counts[self.rows, pred] += 1

    def history(self, i: int) -> np.ndarray:
        """``[B, 7]``: exit ``i``'s row of :func:`~ttamer.earlyexit.features.history_features`
        (bias, log-odds, margin, normalised entropy, mean log-odds of the earlier exits -- one
        C reduction over the buffer's row, the mean the trace function takes -- share of the
        earlier exits predicting exit ``i``'s class, agreement run over ``i``). A view of a
        buffer that the next call overwrites."""
        p, f = self.p, self.f
        f[:, 1] = self.lo_i
        f[:, 2] = margin(p)
        f[:, 3] = entropy(p) / np.log(self.n_classes)
        f[:, 4] = self.lo[:, :i].mean(axis=1) if i > 0 else 0.0
        f[:, 5] = self.earlier / i if i > 0 else 0.0
        f[:, 6] = self.run / max(i, 1)
        return f

    def posterior(self, i: int, w: np.ndarray, sel: Any = slice(None)) -> tuple[np.ndarray, np.ndarray]:
        """``(q, a)`` on the rows ``sel``: exit ``i``'s posterior answer (:func:`posterior_answer`
        on the buffers)."""
        return posterior_answer(i, w, self.lo[sel], self.pred[sel], self.total[sel], self.counts[sel])


def posterior_answer(i: int, w: np.ndarray, lo: np.ndarray, pred: np.ndarray, total: np.ndarray,
                     counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(q, a)``, both ``[B]``: exit ``i``'s posterior answer
    (:func:`~ttamer.earlyexit.logistic.posterior_answers`: the exit ``a ≤ i`` most probably
    right, and that probability ``q``) from exit ``i``'s model ``w [6]`` (weights over scale)
    on the :func:`hypothesis_features` of exits ``0..i``, from their log-odds and predictions
    (``lo``, ``pred`` ``[B, ≥ i+1]``), the running softmax sum ``total [B, C]`` and the class
    counts of the predictions ``counts [B, C]``."""
    pred = pred[:, : i + 1]
    share = counts[np.arange(len(pred))[:, None], pred] / (i + 1)  # np.take_along_axis's values
    F = hypothesis_features(lo[:, : i + 1], pred, total / (i + 1), share)
    q = 1.0 / (1.0 + np.exp(-clip(F @ w, -30, 30)))
    return q.max(axis=1), q.argmax(axis=1)


def hypothesis_features(lo: np.ndarray, pred: np.ndarray, ens: np.ndarray, share: np.ndarray) -> np.ndarray:
    """``[B, k, 6]`` features of the hypotheses "exit ``j``'s prediction is right", ``j ≤ i =
    k−1`` (:func:`~ttamer.earlyexit.logistic.pair_features`): a bias, exit ``j``'s log-odds,
    exit ``i``'s, the ``share [B, k]`` of exits ``0..i`` predicting exit ``j``'s class, the
    log-odds of the running ensemble ``ens [B, C]`` on that class, and whether ``j = i``;
    from the log-odds and predictions ``lo``, ``pred`` ``[B, k]`` of exits ``0..i``."""
    n, k = pred.shape
    ens_j = clip(ens[np.arange(n)[:, None], pred], 1e-6, 1 - 1e-6)
    out = np.zeros((n, k, 6))
    out[:, :, 0] = 1.0
    out[:, :, 1] = lo
    out[:, :, 2] = lo[:, k - 1 : k]
    out[:, :, 3] = share
    out[:, :, 4] = np.log(ens_j) - np.log1p(-ens_j)
    out[:, k - 1, 5] = 1.0
    return out


class EncoderRun:
    """The states of a fitted :class:`~ttamer.earlyexit.features.StateEncoder` on the rows of a
    batch, exit by exit: :meth:`advance` takes exit ``i``'s softmax rows and returns exit
    ``i``'s states, equal to column ``i`` of ``encoder.transform`` on the same outputs (the
    axis values from an :class:`ExitHistory`, binned on the encoder's edges, combined in its
    mixed radix, the agreement run last). For ``feature="posterior"`` it also keeps the exit
    each node answers with (``encoder.answers``, :meth:`answers`)."""

    def __init__(self, encoder: Any, n: int) -> None:
        spec = encoder.spec
        self.encoder, self.feature = encoder, spec.feature
        self.axes = [a for a in ("feature", "entropy", "prospect") if a in encoder.edges]
        self.cap = spec.agreement_cap
        self.base = encoder.base_states
        history = spec.feature == "learned" or bool(spec.prospect_bins)
        keeps = ({"lo", "counts", "run", "history"} if history else set()) | ({"run"} if self.cap else set()) \
            | ({"lo", "pred", "counts", "total"} if spec.feature == "posterior" else set())
        self.h = ExitHistory(n, encoder.n_exits, encoder.n_classes, frozenset(keeps))
        self.history = history
        self.exit_of = np.zeros((n, encoder.n_exits), dtype=np.int64) if spec.feature == "posterior" else None
        if spec.feature == "posterior":
            self._posterior = [w / scale for w, scale in encoder.models["posterior"]]

    def keep(self, mask: np.ndarray) -> None:
        """Keep the rows where ``mask [B]`` (bool) is true."""
        self.h.keep(mask)
        if self.exit_of is not None:
            self.exit_of = self.exit_of[mask]

    def advance(self, i: int, p: np.ndarray, check: bool = True) -> np.ndarray:
        """``[B]`` int64: exit ``i``'s states from its float32 softmax rows ``p [B, C]``
        (checked with ``check``: :meth:`ExitHistory.add`); called for ``i = 0, 1, …`` in turn."""
        h = self.h
        h.add(i, p, check)
        f = h.history(i) if self.history else None
        s = None
        for axis in self.axes:
            edges = self.encoder.edges[axis][i]
            b = np.searchsorted(edges, self._value(axis, i, p, f), side="right")
            s = b if s is None else s * (len(edges) + 1) + b
        if self.cap:
            s = s + self.base[i] * np.minimum(h.run, self.cap)
        return s

    def answers(self, node: np.ndarray, sel: Any = slice(None)) -> np.ndarray:
        """The exit whose prediction node ``node`` answers with, on the rows ``sel``: the
        node itself, or for ``feature="posterior"`` its posterior answer."""
        if self.exit_of is None:
            return node
        return self.exit_of[sel][np.arange(len(node)), node]

    def _value(self, axis: str, i: int, p: np.ndarray, f: np.ndarray | None) -> np.ndarray:
        """``[B]`` float64 value of one axis of exit ``i``'s state (``encoder.axis_values``)."""
        models = self.encoder.models
        if axis == "entropy":
            return entropy(p)
        if axis == "prospect":
            w, scale = models["prospect"]
            return logistic_at(f, w[i : i + 1], scale)
        if self.feature == "max_prob":
            return self.h.mp
        if self.feature == "entropy":
            return entropy(p)
        if self.feature == "margin":
            return margin(p)
        if self.feature == "learned":
            w, scale = models["feature"]
            return logistic_at(f, w[i : i + 1], scale)
        q, a = self.h.posterior(i, self._posterior[i])
        self.exit_of[:, i] = a
        return q


#: numpy's logistic ``1 / (1 + exp(−z))`` at ``z = −30`` and ``z = 30``, where the posterior
#: clips its logit (:func:`posterior_answer`).
Q_CLIPPED = tuple((1.0 / (1.0 + np.exp(-np.array([z])))).item() for z in (-30.0, 30.0))


class PosteriorOne:
    """One query's posterior answer (:func:`posterior_answer`), exit by exit on Python floats.

    :meth:`add` keeps exit ``i``'s softmax row, max-probability, prediction and log-odds
    (``math``'s logarithms) and the class counts of the predictions; the running softmax sum
    is added up, in turn as :class:`ExitHistory` adds it, for the classes read.

    :meth:`decide` takes the decision of the threshold ``τ`` on
    :math:`x_i = \\max_j q_j`, and the answer :math:`\\arg\\max_j q_j`, from every hypothesis's
    logit :math:`z_j = F_j \\cdot w` computed on Python floats with a bound on its distance to
    numpy's, :math:`|Δz_j| ≤ ε \\sum_k |F_{jk} w_k| + |w_1| δ_j + |w_2| δ_i + |w_4| δ^{ens}_j`
    (``δ``: the bound on a log-odds, :math:`ε` = :data:`MATH_RTOL`), so
    :math:`|Δq_j| ≤ |Δz_j| / 4 + ε q_j`; where a ``q`` interval straddles ``τ`` or another's,
    it returns ``None`` and :meth:`exact` computes :func:`posterior_answer`'s values with numpy.

    Parameters
    ----------
    models : list of ndarray
        Per exit the posterior model, six weights over their scales (``RuntimeRule._posterior``).
    n_classes : int
        Classes of the softmax rows.
    """

    def __init__(self, models: list[np.ndarray], n_classes: int) -> None:
        self.models, self.n_classes = models, int(n_classes)
        self.w = [m.tolist() for m in models]
        self.mp: list[float] = []
        self.pred: list[int] = []
        self.lo: list[float] = []
        self.err: list[float] = []  # per exit the bound on its log-odds' distance to numpy's
        self.counts: dict[int, int] = {}
        self.rows: list[list[float]] = []  # the softmax rows, summed where a class is read

    def add(self, p: np.ndarray) -> None:
        """Keep the next exit's float32 softmax row ``p [1, C]``."""
        self.add_row(p.tolist()[0])

    def add_row(self, row: list[float]) -> None:
        """Keep the next exit's softmax row, a list of ``C`` Python floats (:meth:`add`'s)."""
        top = max(row)
        c = row.index(top)
        lo, err = _log_odds_near(top)
        self.mp.append(top)
        self.pred.append(c)
        self.lo.append(lo)
        self.err.append(err)
        self.counts[c] = self.counts.get(c, 0) + 1
        self.rows.append(row)

    def decide(self, i: int, tau: float) -> tuple[bool, int] | None:
        """``(stop, a)`` after exit ``i`` (the last exit added): whether :math:`\\max_j q_j ≥ τ`
        and the answering exit :math:`\\arg\\max_j q_j` (the first on ties; ``i`` where the
        rule goes on), or ``None`` where the bounds cannot tell."""
        z, dz, top = self._logits(i)
        top = min(max(top, -30.0), 30.0)
        if (1.0 + MATH_RTOL) / (1.0 + math.exp(-top)) < tau:  # every q_j below τ
            return False, i
        lo_q, hi_q = _q_intervals(z, dz)
        a = max(range(i + 1), key=lambda j: (lo_q[j] + hi_q[j], -j))
        if any(hi_q[j] >= lo_q[a] for j in range(a)) or any(hi_q[j] > lo_q[a] for j in range(a + 1, i + 1)):
            return None
        return (True, a) if lo_q[a] >= tau else None

    def exact(self, i: int) -> tuple[float, int]:
        """``(x_i, a_i)``: :func:`posterior_answer` on numpy arrays built from what was kept
        (the values of :class:`ExitHistory`'s buffers)."""
        counts = np.zeros((1, self.n_classes), dtype=np.int64)
        for c, n in self.counts.items():
            counts[0, c] = n
        total = np.zeros((1, self.n_classes))
        for row in self.rows:  # in turn, as the running sum
            total += row
        q, a = posterior_answer(i, self.models[i], log_odds(np.array([self.mp])), np.array([self.pred]), total,
                                counts)
        return float(q[0]), int(a[0])

    def _logits(self, i: int) -> tuple[list[float], list[float], float]:
        """Per hypothesis ``j ≤ i`` its logit ``z_j`` on Python floats and the bound ``dz_j``
        on its distance to numpy's, and the largest ``z_j + dz_j`` (one loop, no calls but
        ``math``'s: it runs after every exit)."""
        w0, w1, w2, w3, w4, w5 = self.w[i]
        k, lo, err, rows = i + 1, self.lo, self.err, self.rows
        fixed = w0 + w2 * lo[i]  # the terms every hypothesis shares, their size and error bound
        size = abs(w0) + abs(w2 * lo[i]) + abs(w5)
        shared_err = abs(w2) * err[i]
        per_class = {}
        for c, n in self.counts.items():  # the classes predicted so far
            total = 0.0
            for row in rows:  # the running sum, added in turn
                total += row[c]
            m = min(max(total / k, 1e-6), 1 - 1e-6)
            l1, l2 = math.log(m), math.log1p(-m)
            e, share = l1 - l2, n / k
            per_class[c] = (fixed + w3 * share + w4 * e, size + abs(w3 * share) + abs(w4 * e),
                            shared_err + abs(w4) * MATH_RTOL * (abs(l1) + abs(l2)))
        z, dz, top, aw1 = [], [], -math.inf, abs(w1)
        for j, c in enumerate(self.pred):
            base, mag, d = per_class[c]
            t = w1 * lo[j]
            zj = base + t + (w5 if j == i else 0.0)
            dj = MATH_RTOL * (mag + abs(t)) + d + aw1 * err[j]
            z.append(zj)
            dz.append(dj)
            if zj + dj > top:
                top = zj + dj
        return z, dz, top


def _q_intervals(z: list[float], dz: list[float]) -> tuple[list[float], list[float]]:
    """Per logit ``z_j ± dz_j`` the interval holding numpy's ``q_j = 1 / (1 + exp(−clip(z_j,
    −30, 30)))``: a point (:data:`Q_CLIPPED`) where the logit is clipped on both sides of its
    bound."""
    lows, highs = [], []
    for zj, d in zip(z, dz):
        if zj - d >= 30.0 or zj + d <= -30.0:
            q, dq = Q_CLIPPED[zj > 0], 0.0
        else:
            q = 1.0 / (1.0 + math.exp(-min(max(zj, -30.0), 30.0)))
            dq = 0.25 * d + MATH_RTOL * q
        lows.append(q - dq)
        highs.append(q + dq)
    return lows, highs


def _log_odds_near(m: float) -> tuple[float, float]:
    """``(l, δ)``: :func:`log_odds` of one probability on ``math``'s logarithms, and a bound
    ``δ`` on its distance to numpy's."""
    m = min(max(m, 1e-6), 1 - 1e-6)
    l1, l2 = math.log(m), math.log1p(-m)
    return l1 - l2, MATH_RTOL * (abs(l1) + abs(l2))
