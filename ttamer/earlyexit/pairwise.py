"""The pairwise answer rule: which consulted exit answers, corrected for the violation of the Markov property (the book's chapter *Early exit on real models*).

T-Tamer's recall rule answers with the consulted exit of least ``ℓ_v(s_v)``;
:class:`PairwiseAnswer` answers instead with the consulted exit of least
``P̂(wrong_v | s_v, s_last)``, estimated per pair of exits from calibration counts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from .base import ANSWER_RULES as _ANSWER_VOCABULARY, vocabulary_subset

#: The answer rules of the binned chain (a subset of :data:`ttamer.earlyexit.base.ANSWER_RULES`).
ANSWER_RULES = vocabulary_subset(_ANSWER_VOCABULARY, "index", "pairwise")
#: Folds of the cross-validated log-loss test that decides, per pair of exits, whether the
#: pairwise answer rule uses that pair's table (:meth:`PairwiseAnswer.fit`).
PAIRWISE_FOLDS = 5


def _pair_table(sv: np.ndarray, sj: np.ndarray, wrong_v: np.ndarray, prior: np.ndarray, kv: int, kj: int,
                smoothing: float) -> np.ndarray:
    """``[K_v, K_j]``: ``(e(s_v, s_j) + α prior(s_v)) / (n(s_v, s_j) + α)``."""
    key = sv * kj + sj
    cnt = np.bincount(key, minlength=kv * kj).reshape(kv, kj)
    err = np.bincount(key, weights=wrong_v, minlength=kv * kj).reshape(kv, kj)
    return (err + smoothing * prior[:, None]) / (cnt + smoothing)


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
        pairs where later evidence is noise fall back to the index rule."""
        n, L = states.shape
        fold = np.arange(n) % folds
        tables, kept = {}, {}
        for j in range(1, L):
            for v in range(j):
                tables[(v, j)] = _pair_table(states[:, v], states[:, j], wrong[:, v], np.asarray(losses[v]),
                                             int(n_states[v]), int(n_states[j]), smoothing)
                gain = 0.0
                for f in range(folds):
                    tr, te = fold != f, fold == f
                    cnt = np.bincount(states[tr, v], minlength=n_states[v]).astype(float)
                    err = np.bincount(states[tr, v], weights=wrong[tr, v], minlength=n_states[v])
                    marg = (err + smoothing * wrong[tr, v].mean()) / (cnt + smoothing)
                    pair = _pair_table(states[tr, v], states[tr, j], wrong[tr, v], marg, int(n_states[v]),
                                       int(n_states[j]), smoothing)
                    y = wrong[te, v]
                    gain += _log_loss(marg[states[te, v]], y) - _log_loss(pair[states[te, v], states[te, j]], y)
                kept[(v, j)] = gain > 0
                if not kept[(v, j)]:
                    tables[(v, j)] = np.repeat(np.asarray(losses[v])[:, None], int(n_states[j]), axis=1)
        return cls(tables, [np.asarray(x) for x in losses], kept)

    def answer(self, states: np.ndarray, last: np.ndarray) -> np.ndarray:
        """``[N]`` node to answer with, for ``states [N, L]`` (−1 = not consulted) and the
        last consulted node ``last [N]``. Loops over pairs of exits only."""
        n, L = states.shape
        rows = np.arange(n)
        s_last = states[rows, last]
        r = np.full((n, L), np.inf)
        for v in range(L):
            cons = (states[:, v] >= 0) & (v <= last)
            if not cons.any():
                continue
            sv = np.maximum(states[:, v], 0)
            val = np.full(n, np.inf)
            for j in range(v, L):
                m = cons & (last == j)
                if not m.any():
                    continue
                val[m] = self.losses[v][sv[m]] if j == v else self.tables[(v, j)][sv[m], s_last[m]]
            r[:, v] = val
        # least r; ties go to the later exit
        return L - 1 - np.argmin(r[:, ::-1], axis=1)


