"""The pairwise answer rule: which consulted exit answers, corrected for the violation of the Markov property (the book's chapter *Early exit on real models*).

T-Tamer's recall rule answers with the consulted exit of least ``ℓ_v(s_v)``;
:class:`PairwiseAnswer` answers instead with the consulted exit of least
``P̂(wrong_v | s_v, s_last)``, estimated per pair of exits from calibration counts.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any, Sequence

import numpy as np

from ..core.errors import TTamerError
from ..core.validate import check_int, check_integers, check_numbers, check_real, describe_value, short_repr
from .base import ANSWER_RULES as _ANSWER_VOCABULARY, MAX_EXITS, vocabulary_subset
from .features import MAX_STATES
from .thresholds import evenly

#: The answer rules of the binned chain (a subset of :data:`ttamer.earlyexit.base.ANSWER_RULES`).
ANSWER_RULES = vocabulary_subset(_ANSWER_VOCABULARY, "index", "pairwise")
#: Folds of the cross-validated log-loss test that decides, per pair of exits, whether the
#: pairwise answer rule uses that pair's table (:meth:`PairwiseAnswer.fit`).
PAIRWISE_FOLDS = 5
#: Most folds :meth:`PairwiseAnswer.fit` accepts: each fold counts every table again, so the
#: time of the test grows with the folds.
PAIRWISE_MAX_FOLDS = 100
#: Most calibration examples, evenly spaced, that the pairwise tables are counted on. The test
#: of every pair of exits costs time in proportion to examples × pairs (the square of the
#: exits); a table of ``K_v × K_j`` smoothed cells is well estimated long before this many.
PAIRWISE_MAX_EXAMPLES = 20_000


def _pair_table(sv: np.ndarray, sj: np.ndarray, wrong_v: np.ndarray, prior: np.ndarray, kv: int, kj: int,
                smoothing: float) -> np.ndarray:
    """``[K_v, K_j]``: ``(e(s_v, s_j) + α prior(s_v)) / (n(s_v, s_j) + α)``."""
    key = sv * kj + sj
    cnt = np.bincount(key, minlength=kv * kj).reshape(kv, kj)
    err = np.bincount(key, weights=wrong_v, minlength=kv * kj).reshape(kv, kj)
    return (err + smoothing * prior[:, None]) / (cnt + smoothing)


def _marginal_table(sv: np.ndarray, wrong_v: np.ndarray, kv: int, smoothing: float) -> np.ndarray:
    """``[K_v]``: ``(e(s_v) + α·mean(wrong_v)) / (n(s_v) + α)``, exit ``v``'s smoothed loss per state."""
    cnt = np.bincount(sv, minlength=kv).astype(float)
    err = np.bincount(sv, weights=wrong_v, minlength=kv)
    return (err + smoothing * wrong_v.mean()) / (cnt + smoothing)


def _pair_tables(sv: np.ndarray, later: np.ndarray, wrong_v: np.ndarray, prior: np.ndarray, kv: int, k: int,
                 smoothing: float) -> np.ndarray:
    """``[J, K_v, k]``: :func:`_pair_table` of exit ``v`` with each later exit ``j`` (states
    ``later [N, J]``, each below ``k``), all from one count: the counts of pair ``j`` are
    summed over the examples in the same order as :func:`_pair_table` sums them, so the
    tables are its tables to the last bit (padded with unread columns where ``K_j < k``)."""
    J = later.shape[1]
    key = ((np.arange(J)[:, None] * kv + sv[None, :]) * k + later.T).ravel()  # pair j's examples in order
    size = J * kv * k
    cnt = np.bincount(key, minlength=size).reshape(J, kv, k)
    err = np.bincount(key, weights=np.tile(wrong_v, J), minlength=size).reshape(J, kv, k)
    return (err + smoothing * prior[None, :, None]) / (cnt + smoothing)


def _pair_gains(sv: np.ndarray, later: np.ndarray, wrong_v: np.ndarray, kv: int, k_later: Sequence[int],
                smoothing: float, splits: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """``[J]`` for each later exit ``j`` (states ``later [N, J]``, ``k_later`` states each),
    how much less log-loss exit ``v``'s pair table with ``j`` has than its marginal table on
    the held-out part of ``splits`` (each a (train, test) pair of masks), summed over them."""
    J = later.shape[1]
    gain = np.zeros(J)
    for tr, te in splits:
        marg = _marginal_table(sv[tr], wrong_v[tr], int(kv), smoothing)
        y = wrong_v[te]
        tables = _pair_tables(sv[tr], later[tr], wrong_v[tr], marg, int(kv), int(max(k_later)), smoothing)
        pair = tables[np.arange(J)[:, None], sv[te][None, :], later[te].T]
        gain += _log_loss(marg[sv[te]], y) - _log_losses(pair, y)
    return gain


def _log_losses(p: np.ndarray, y: np.ndarray) -> np.ndarray:
    """:func:`_log_loss` of each row of ``p [J, N]`` (the same sums, row by row)."""
    p = np.clip(p, 1e-4, 1 - 1e-4)
    return -(y * np.log(p) + (1 - y) * np.log1p(-p)).sum(axis=1)


def _log_loss(p: np.ndarray, y: np.ndarray) -> float:
    p = np.clip(p, 1e-4, 1 - 1e-4)
    return float(-(y * np.log(p) + (1 - y) * np.log1p(-p)).sum())


def _check_calibration(states: Any, wrong: Any, losses: Any, n_states: Any) -> None:
    """Check the calibration arrays of :meth:`PairwiseAnswer.fit` (its Raises section); they are
    used as given."""
    who = "PairwiseAnswer.fit"
    if not (isinstance(states, np.ndarray) and states.ndim == 2 and states.dtype.kind in "iu"
            and len(states) >= 2 and 1 <= states.shape[1] <= MAX_EXITS):
        raise TTamerError(f"{who}: states must be an integer array [N, L] of at least 2 examples and 1 to "
                          f"{MAX_EXITS} exits (MAX_EXITS), got {describe_value(states)}")
    n, L = states.shape
    wrong = check_numbers(wrong, f"{who}: wrong", ndim=2, low=0.0, high=1.0)
    if wrong.shape != (n, L):
        raise TTamerError(f"{who}: wrong has shape {wrong.shape}; it must be {(n, L)} like states")
    k = check_integers(n_states, f"{who}: n_states", 1, MAX_STATES, MAX_EXITS)
    if not isinstance(losses, (list, tuple, np.ndarray)) or len(losses) != L or len(k) != L:
        raise TTamerError(f"{who}: losses (a list) and n_states must have one entry per exit ({L}), got "
                          f"{short_repr(losses)} and {len(k)} values")
    for v, x in enumerate(losses):
        if len(check_numbers(x, f"{who}: losses[{v}]", max_len=int(k[v]))) != k[v]:
            raise TTamerError(f"{who}: losses[{v}] has {len(x)} values; exit {v} has {int(k[v])} states (n_states)")
    bad = (states < 0) | (states >= k[None, :])
    if bad.any():
        b, v = (int(i) for i in np.unravel_index(int(np.argmax(bad)), bad.shape))
        raise TTamerError(f"{who}: states[{b}, {v}] is {int(states[b, v])}, outside exit {v}'s states "
                          f"0..{int(k[v]) - 1}")


@dataclass
class PairwiseAnswer:
    """The *pairwise* recall answer rule. T-Tamer's rule (``"index"``) answers with the
    consulted exit of least ``ℓ_v(s_v)``, which is right only under the Markov property
    ``wrong_v ⊥ s_k | s_v`` for later ``k``; on real networks a later exit that disagrees
    makes an earlier one likely wrong, so that rule is over-confident in earlier exits.
    This rule re-estimates each consulted exit's loss given also the last consulted exit's
    state,

        r_v = P̂(wrong_v | s_v, s_last) = (e_{v,last}(s_v, s_last) + α ℓ_v(s_v)) / (n_{v,last}(s_v, s_last) + α),

    (calibration counts, shrunk toward ``ℓ_v(s_v)`` with strength ``α``; ``r_last = ℓ_last``)
    and answers with the consulted exit of least ``r_v`` (ties: the later exit). A pair
    ``(v, last)`` whose table does not beat ``ℓ_v(s_v)`` in cross-validated log-loss on the
    calibration examples uses ``r_v = ℓ_v(s_v)`` (``kept[(v, j)]`` records the test). The
    stopping decisions stay the index policy's. ``tables[(v, j)]`` is ``r`` as a
    ``[K_v, K_j]`` array."""

    tables: dict[tuple[int, int], np.ndarray]
    losses: list[np.ndarray]
    kept: dict[tuple[int, int], bool] | None = None

    @classmethod
    def fit(cls, states: np.ndarray, wrong: np.ndarray, losses: Sequence[np.ndarray], n_states: Sequence[int],
            smoothing: float, folds: int = PAIRWISE_FOLDS) -> "PairwiseAnswer":
        """Count tables on calibration ``states``/``wrong`` ``[N, L]``. A pair ``(v, j)`` keeps
        its table only if it predicts ``wrong_v`` better than ``ℓ_v(s_v)`` alone in
        ``folds``-fold cross-validation (log-loss); otherwise ``r_v = ℓ_v(s_v)`` there, so
        pairs where later evidence is noise fall back to the index rule. On more than
        :data:`PAIRWISE_MAX_EXAMPLES` examples, that many evenly spaced ones are counted.

        Raises
        ------
        TTamerError
            Before any counting, for ``states`` that are not an integer array ``[N, L]`` of
            at least 2 examples and 1 to :data:`~ttamer.earlyexit.base.MAX_EXITS` exits with
            ``0 <= states[:, v] < n_states[v]``, ``wrong`` that is not numbers in [0, 1] of
            the same shape, ``n_states`` that are not ``L`` integers in ``1..MAX_STATES``
            (:data:`~ttamer.earlyexit.features.MAX_STATES`), ``losses`` that are not ``L``
            arrays of ``n_states[v]`` finite numbers, a ``smoothing`` that is not a finite
            number ``> 0``, or ``folds`` that is not an integer in
            ``2..PAIRWISE_MAX_FOLDS``.
        """
        smoothing = check_real(smoothing, "PairwiseAnswer.fit: smoothing", low=0.0, low_open=True)
        _check_calibration(states, wrong, losses, n_states)
        folds = check_int(folds, "PairwiseAnswer.fit: folds (cross-validation folds)", minimum=2,
                          maximum=PAIRWISE_MAX_FOLDS)
        if len(states) > PAIRWISE_MAX_EXAMPLES:
            keep = evenly(len(states), PAIRWISE_MAX_EXAMPLES)
            states, wrong = states[keep], wrong[keep]
        n, L = states.shape
        fold = np.arange(n) % folds
        splits = [(fold != f, fold == f) for f in range(folds)]
        gains = {v: _pair_gains(states[:, v], states[:, v + 1 :], wrong[:, v], n_states[v], n_states[v + 1 :],
                                smoothing, splits) for v in range(L - 1)}
        tables, kept = {}, {}
        for j in range(1, L):
            for v in range(j):
                kept[(v, j)] = bool(gains[v][j - v - 1] > 0)
                tables[(v, j)] = (_pair_table(states[:, v], states[:, j], wrong[:, v], np.asarray(losses[v]),
                                              int(n_states[v]), int(n_states[j]), smoothing) if kept[(v, j)] else
                                  np.repeat(np.asarray(losses[v])[:, None], int(n_states[j]), axis=1))
        return cls(tables, [np.asarray(x) for x in losses], kept)

    @cached_property
    def _flat(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """:meth:`flat_tables` of the fitted tables (computed once)."""
        return self.flat_tables()

    def answer(self, states: np.ndarray, last: np.ndarray) -> np.ndarray:
        """``[N]`` node to answer with, for ``states [N, L]`` (−1 = not consulted) and the
        last consulted node ``last [N]``: every ``r_v`` read off the tables at once
        (:meth:`flat_tables`).

        Raises
        ------
        TTamerError
            For ``states`` that are not an integer array ``[N, L]`` of states ``-1..K_v−1``,
            or a ``last`` that is not an integer array ``[N]`` of exits ``0..L−1`` (one
            vectorised pass).
        """
        self._check_histories(states, last)
        n, L = states.shape
        flat, offset, width = self._flat
        s_last = states[np.arange(n), last]
        k_last = np.array([len(x) for x in self.losses])[last]
        s_last = np.where(s_last < 0, s_last + k_last, s_last)  # as numpy reads an index −1: the last state
        nodes = np.arange(L)[None, :]
        col = np.where(nodes == last[:, None], 0, s_last[:, None])
        r = flat[offset[nodes, last[:, None]] + np.maximum(states, 0) * width[nodes, last[:, None]] + col]
        r = np.where((states >= 0) & (nodes <= last[:, None]), r, np.inf)
        # least r; ties go to the later exit
        return L - 1 - np.argmin(r[:, ::-1], axis=1)

    @cached_property
    def _n_states(self) -> np.ndarray:
        """``K_v`` per exit (the lengths of ``losses``)."""
        return np.array([len(x) for x in self.losses], dtype=np.int64)

    def _check_histories(self, states: Any, last: Any) -> None:
        """Refuse histories :meth:`answer` cannot read: ``states`` not an integer array
        ``[N, L]`` of ``-1`` (not consulted) or states ``0..K_v−1``, ``last`` not an integer
        array ``[N]`` of exits ``0..L−1``."""
        k = self._n_states
        L = len(k)
        if not (isinstance(states, np.ndarray) and states.ndim == 2 and states.shape[1] == L
                and states.dtype.kind in "iu"):
            raise TTamerError(f"PairwiseAnswer.answer: states must be an integer array [N, {L}] (a state per "
                              f"history and exit, -1 where not consulted), got {describe_value(states)}")
        if not (isinstance(last, np.ndarray) and last.shape == (len(states),) and last.dtype.kind in "iu"):
            raise TTamerError(f"PairwiseAnswer.answer: last must be an integer array [{len(states)}] (the last "
                              f"exit consulted per history), got {describe_value(last)}")
        if last.size and (last.min() < 0 or last.max() >= L):
            b = int(np.argmax((last < 0) | (last >= L)))
            raise TTamerError(f"PairwiseAnswer.answer: last[{b}] is {int(last[b])}, not an exit 0..{L - 1}")
        bad = (states < -1) | (states >= k[None, :])
        if bad.any():
            b, v = (int(i) for i in np.unravel_index(int(np.argmax(bad)), bad.shape))
            raise TTamerError(f"PairwiseAnswer.answer: states[{b}, {v}] is {int(states[b, v])}, not a state of "
                              f"exit {v}: its states are 0..{int(k[v]) - 1} (-1: not consulted)")

    @cached_property
    def _flat_lists(self) -> tuple[list[float], list[list[int]], list[list[int]], list[int]]:
        """:meth:`flat_tables` as Python lists, and ``K_v`` per exit (for :meth:`answer_one`)."""
        flat, offset, width = self._flat
        return flat.tolist(), offset.tolist(), width.tolist(), self._n_states.tolist()

    def answer_one(self, states: Sequence[int], last: int) -> int:
        """:meth:`answer` for one history on a chain, on Python scalars: the node of least
        ``r_v`` among ``v = 0..last`` (ties: the later one), ``states[v]`` the state of exit
        ``v`` (every exit up to ``last`` consulted).

        Raises
        ------
        TTamerError
            For a ``last`` that is not an integer exit ``0..L−1``, or ``states`` that do not
            hold an integer state ``0..K_v−1`` for every exit ``v <= last`` (checked as the
            exits are read: no pass over the states of its own).
        """
        flat, offset, width, k = self._flat_lists
        if not ((type(last) is int or isinstance(last, np.integer)) and 0 <= last < len(k)):
            raise TTamerError(f"PairwiseAnswer.answer_one: last must be an integer exit 0..{len(k) - 1}, got "
                              f"{short_repr(last)}")
        if len(states) <= last:
            raise TTamerError(f"PairwiseAnswer.answer_one: states has {len(states)} values; exits 0..{last} were "
                              f"consulted (one state each)")
        s_last, best, best_r = states[last], last, np.inf
        for v in range(last + 1):
            s = states[v]
            if not ((type(s) is int or isinstance(s, np.integer)) and 0 <= s < k[v]):
                raise TTamerError(f"PairwiseAnswer.answer_one: states[{v}] is {short_repr(s)}, not a state of exit "
                                  f"{v}: its states are 0..{k[v] - 1}")
            r = flat[offset[v][last] + s * width[v][last] + (0 if v == last else s_last)]
            if r <= best_r:
                best, best_r = v, r
        return best

    def flat_tables(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(flat, offset [L, L], width [L, L])``: every table ``r`` of a pair ``(v, j)``,
        ``v < j``, and ``ℓ_v`` as the table of ``(v, v)`` (one column, read at ``s_j = 0``),
        laid end to end: ``r(s_v, s_j)`` is ``flat[offset[v, j] + s_v·width[v, j] + s_j]``."""
        L = len(self.losses)
        offset, width = np.zeros((L, L), dtype=np.int64), np.ones((L, L), dtype=np.int64)
        pieces, at = [], 0
        for v in range(L):
            for j in range(v, L):
                t = np.asarray(self.losses[v], dtype=float)[:, None] if j == v else self.tables[(v, j)]
                offset[v, j], width[v, j] = at, t.shape[1]
                pieces.append(t.ravel())
                at += t.size
        return np.concatenate(pieces), offset, width
