"""Frontiers of accuracy against cost, and their scalar summaries.

A sweep of a strategy gives points ``(cost, accuracy)``: cost as a fraction of the full
model's mean cost, accuracy the share of right answers. Its **frontier** is the Pareto
(upper-left) staircase of those points, or (``kind="hull"``) their concave envelope, which
randomising between two sweep points reaches. ``acc(c)`` is the best accuracy at cost
``≤ c``. These functions are shared by the estimators' cross-validation and by
:func:`ttamer.earlyexit.evaluation.evaluate_trace`.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from ..core.errors import TTamerError

_EPS = 1e-12


def pareto_frontier(cost: Sequence[float], accuracy: Sequence[float]) -> np.ndarray:
    """``[M, 2]`` rows ``(cost, accuracy)``: the upper-left Pareto frontier, cost increasing
    and accuracy strictly increasing."""
    c = np.asarray(cost, dtype=float).ravel()
    a = np.asarray(accuracy, dtype=float).ravel()
    if c.shape != a.shape or len(c) == 0:
        raise TTamerError(f"pareto_frontier: need equal-length non-empty cost/accuracy, got {c.shape}, {a.shape}")
    keep = pareto_indices(c, a)
    return np.stack([c[keep], a[keep]], axis=1)


def pareto_indices(cost: np.ndarray, accuracy: np.ndarray) -> np.ndarray:
    """Indices of the points on the upper-left Pareto frontier (:func:`pareto_frontier`), cost
    increasing and accuracy strictly increasing."""
    c, a = np.asarray(cost, dtype=float).ravel(), np.asarray(accuracy, dtype=float).ravel()
    order = _cost_order(c, a)
    a = a[order]
    prev_best = np.concatenate([[-np.inf], np.maximum.accumulate(a)[:-1]])
    return order[a > prev_best + _EPS]


def _cost_order(c: np.ndarray, a: np.ndarray) -> np.ndarray:
    """Indices sorting the points by cost ascending, accuracy descending among ties; a sweep
    whose costs are already strictly monotone (a one-threshold curve) is not sorted again."""
    step = np.diff(c)
    if np.all(step > 0):
        return np.arange(len(c))
    if np.all(step < 0):
        return np.arange(len(c))[::-1]
    return np.lexsort((-a, c))


def hull_frontier(cost: Sequence[float], accuracy: Sequence[float]) -> np.ndarray:
    """``[M, 2]`` vertices of the upper-left concave envelope of the points: what
    randomising between two sweep points reaches (a mixture playing ``a`` with probability
    ``w`` and ``b`` otherwise has cost and accuracy ``w·a + (1−w)·b``)."""
    f = pareto_frontier(cost, accuracy)
    keep: list[int] = []
    for j in range(len(f)):
        while len(keep) >= 2:
            (c1, a1), (c2, a2) = f[keep[-2]], f[keep[-1]]
            c3, a3 = f[j]
            # drop the middle vertex unless the slope strictly decreases (concavity)
            if (a2 - a1) * (c3 - c2) <= (a3 - a2) * (c2 - c1) + _EPS:
                keep.pop()
            else:
                break
        keep.append(j)
    return f[keep]


def frontier(cost: Sequence[float], accuracy: Sequence[float], kind: str = "pareto") -> np.ndarray:
    """:func:`pareto_frontier` (``kind="pareto"``) or :func:`hull_frontier` (``"hull"``)."""
    if kind == "pareto":
        return pareto_frontier(cost, accuracy)
    if kind == "hull":
        return hull_frontier(cost, accuracy)
    raise TTamerError(f"frontier kind must be 'pareto' or 'hull', got {kind!r}")


def accuracy_at(front: np.ndarray, cost: Any, kind: str = "pareto") -> np.ndarray:
    """``acc(c)``: best accuracy at cost ``≤ c`` -- a staircase (``"pareto"``) or the
    piecewise-linear envelope (``"hull"``); ``nan`` below the cheapest point."""
    c = np.asarray(cost, dtype=float)
    if kind == "hull":
        out = np.interp(c, front[:, 0], front[:, 1])
        return np.where(c >= front[0, 0] - _EPS, out, np.nan)
    j = np.searchsorted(front[:, 0], c + _EPS, side="right") - 1
    return np.where(j >= 0, front[np.maximum(j, 0), 1], np.nan)


def frontier_auc(front: np.ndarray, lo: float, hi: float, kind: str = "pareto") -> float:
    """Normalised area ``(1/(hi−lo)) ∫_lo^hi acc(c) dc`` (0 where undefined)."""
    if not hi > lo:
        raise TTamerError(f"frontier_auc: need hi > lo, got [{lo}, {hi}]")
    if kind == "hull":
        xs = np.unique(np.clip(np.concatenate([[lo, hi], front[:, 0]]), lo, hi))
        ys = np.nan_to_num(accuracy_at(front, xs, "hull"), nan=0.0)
        # the envelope starts at the first vertex: integrate from there (0 before it)
        start = max(lo, float(front[0, 0]))
        xs2 = xs[xs >= start - _EPS]
        ys2 = ys[xs >= start - _EPS]
        return float(np.sum(np.diff(xs2) * (ys2[1:] + ys2[:-1]) / 2) / (hi - lo))
    starts = front[:, 0]
    ends = np.concatenate([front[1:, 0], [np.inf]])
    width = np.clip(np.minimum(ends, hi) - np.maximum(starts, lo), 0.0, None)
    return float((width * front[:, 1]).sum() / (hi - lo))


def cost_at_accuracy(front: np.ndarray, accuracy: float, kind: str = "pareto") -> float | None:
    """Least cost whose ``acc(c) ≥ accuracy`` (``None`` if never reached)."""
    ok = front[:, 1] >= accuracy - _EPS
    if not ok.any():
        return None
    j = int(np.argmax(ok))
    if kind == "pareto" or j == 0:
        return float(front[j, 0])
    (c1, a1), (c2, a2) = front[j - 1], front[j]
    return float(c1 + (accuracy - a1) * (c2 - c1) / (a2 - a1))
