"""The pairwise answer rule: which consulted exit answers, corrected for the violation of the Markov property (the book's chapter *Early exit on real models*).

T-Tamer's recall rule answers with the consulted exit of least ``ℓ_v(s_v)``;
:class:`PairwiseAnswer` answers instead with the consulted exit of least
``P̂(wrong_v | s_v, s_last)``, estimated per pair of exits from calibration counts.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Sequence

import numpy as np

from .base import ANSWER_RULES as _ANSWER_VOCABULARY, vocabulary_subset
from .thresholds import evenly

#: The answer rules of the binned chain (a subset of :data:`ttamer.earlyexit.base.ANSWER_RULES`).
ANSWER_RULES = vocabulary_subset(_ANSWER_VOCABULARY, "index", "pairwise")
#: Folds of the cross-validated log-loss test that decides, per pair of exits, whether the
#: pairwise answer rule uses that pair's table (:meth:`PairwiseAnswer.fit`).
PAIRWISE_FOLDS = 5
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
        :data:`PAIRWISE_MAX_EXAMPLES` examples, that many evenly spaced ones are counted."""
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
        (:meth:`flat_tables`)."""
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
    def _flat_lists(self) -> tuple[list[float], list[list[int]], list[list[int]]]:
        """:meth:`flat_tables` as Python lists (for :meth:`answer_one`)."""
        flat, offset, width = self._flat
        return flat.tolist(), offset.tolist(), width.tolist()

    def answer_one(self, states: Sequence[int], last: int) -> int:
        """:meth:`answer` for one history on a chain, on Python scalars: the node of least
        ``r_v`` among ``v = 0..last`` (ties: the later one), ``states[v]`` the state of exit
        ``v`` (every exit up to ``last`` consulted)."""
        flat, offset, width = self._flat_lists
        s_last, best, best_r = states[last], last, np.inf
        for v in range(last + 1):
            r = flat[offset[v][last] + states[v] * width[v][last] + (0 if v == last else s_last)]
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
