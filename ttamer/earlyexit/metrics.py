"""Frontiers of accuracy against cost, and their scalar summaries.

A sweep of a strategy gives points ``(cost, accuracy)``: cost as a fraction of the full
model's mean cost, accuracy the share of right answers. Its **frontier** is the Pareto
(upper-left) staircase of those points, or (``kind="hull"``) their concave envelope, which
randomising between two sweep points reaches. ``acc(c)`` is the best accuracy at cost
``≤ c``. These functions are shared by the estimators' cross-validation and by
:func:`ttamer.earlyexit.evaluation.evaluate_trace`.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from ..core.errors import TTamerError
from ..core.validate import check_choice, check_numbers, check_real

_EPS = 1e-12
#: How far a point's cost may lie below 0, and its accuracy outside [0, 1], by rounding. Means
#: taken under resampling weights that sum to 1 up to rounding, or as sums of differences along a
#: sweep (:func:`~ttamer.earlyexit.thresholds.common_threshold_curve`), pass those bounds by a
#: few units in the last place.
ROUNDING = 1e-12
#: The most points one sweep holds (rules, thresholds or budgets). A complete heuristic sweep
#: keeps this many rules at most (its frontier is thinned evenly in cost beyond that), and a
#: list of parameters to sweep may hold no more.
MAX_SWEEP_POINTS = 2000
#: Frontier kinds of :func:`frontier`, :func:`accuracy_at`, :func:`frontier_auc` and :func:`cost_at_accuracy`.
KINDS = ("pareto", "hull")


def check_kind(kind: Any) -> str:
    """``kind`` if it is one of :data:`KINDS`, else a :class:`~ttamer.core.errors.TTamerError`."""
    check_choice("frontier kind", kind, KINDS)
    return kind


def check_front(front: Any, name: str = "front") -> np.ndarray:
    """``front`` as an ``[M, 2]`` float array of rows ``(cost, accuracy)`` (``M ≥ 1``, finite,
    cost ``≥ 0`` and non-decreasing, accuracy in [0, 1], up to :data:`ROUNDING`: what
    :func:`pareto_frontier` / :func:`hull_frontier` return).

    Raises
    ------
    TTamerError
        Naming ``name``, for anything else.
    """
    f = check_numbers(front, name, ndim=2)
    if f.shape[1] != 2:
        raise TTamerError(f"{name} must be an [M, 2] array of (cost, accuracy) rows in increasing cost "
                          f"(pareto_frontier or hull_frontier), got shape {f.shape}")
    _check_ranges(f[:, 0], f[:, 1], name)
    if np.any(np.diff(f[:, 0]) < 0):
        raise TTamerError(f"{name} must be an [M, 2] array of (cost, accuracy) rows in increasing cost "
                          f"(pareto_frontier or hull_frontier), got shape {f.shape}")
    return f


def _points(cost: Any, accuracy: Any) -> tuple[np.ndarray, np.ndarray]:
    """``cost`` and ``accuracy`` checked: finite, 1-D, of equal length, costs ``≥ 0`` and
    accuracies in [0, 1] (up to :data:`ROUNDING`)."""
    c, a = check_numbers(cost, "cost"), check_numbers(accuracy, "accuracy")
    if c.shape != a.shape:
        raise TTamerError(f"cost and accuracy must have the same length, got {len(c)} and {len(a)}")
    _check_ranges(c, a, "point")
    return c, a


def _check_ranges(cost: np.ndarray, accuracy: np.ndarray, name: str) -> None:
    """Refuse a cost below 0 or an accuracy outside [0, 1] (beyond :data:`ROUNDING`)
    among finite points, naming the first point at fault ``name[i]``; one vectorised pass."""
    bad = (cost < -ROUNDING) | (accuracy < -ROUNDING) | (accuracy > 1.0 + ROUNDING)
    if bad.any():
        i = int(np.argmax(bad))
        raise TTamerError(f"{name}[{i}] is (cost {cost[i]:g}, accuracy {accuracy[i]:g}); costs must be >= 0 and "
                          "accuracies in [0, 1]")


def pareto_frontier(cost: Sequence[float], accuracy: Sequence[float]) -> np.ndarray:
    """``[M, 2]`` rows ``(cost, accuracy)``: the upper-left Pareto frontier, cost increasing
    and accuracy strictly increasing.

    Raises
    ------
    TTamerError
        Unless ``cost`` and ``accuracy`` are non-empty 1-D arrays of finite numbers of the same
        length, costs ``≥ 0`` and accuracies in [0, 1] (up to :data:`ROUNDING`).
    """
    c, a = _points(cost, accuracy)
    keep = _pareto_indices(c, a)
    return np.stack([c[keep], a[keep]], axis=1)


def pareto_indices(cost: Any, accuracy: Any) -> np.ndarray:
    """Indices of the points on the upper-left Pareto frontier (:func:`pareto_frontier`), cost
    increasing and accuracy strictly increasing.

    Raises
    ------
    TTamerError
        As :func:`pareto_frontier`.
    """
    return _pareto_indices(*_points(cost, accuracy))


def _pareto_indices(c: np.ndarray, a: np.ndarray) -> np.ndarray:
    """:func:`pareto_indices` of checked points."""
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
    ``w`` and ``b`` otherwise has cost and accuracy ``w·a + (1−w)·b``).

    Raises
    ------
    TTamerError
        As :func:`pareto_frontier`.
    """
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
    """:func:`pareto_frontier` (``kind="pareto"``) or :func:`hull_frontier` (``"hull"``).

    Raises
    ------
    TTamerError
        For a ``kind`` not in :data:`KINDS`, or points :func:`pareto_frontier` refuses.
    """
    if check_kind(kind) == "pareto":
        return pareto_frontier(cost, accuracy)
    return hull_frontier(cost, accuracy)


def accuracy_at(front: np.ndarray, cost: Any, kind: str = "pareto") -> np.ndarray:
    """``acc(c)``: best accuracy at cost ``≤ c`` -- a staircase (``"pareto"``) or the
    piecewise-linear envelope (``"hull"``); ``nan`` below the cheapest point.

    Raises
    ------
    TTamerError
        For a ``front`` :func:`check_front` refuses, a ``kind`` not in :data:`KINDS`, or a
        ``cost`` (a number or an array of any shape) that holds ``nan`` or non-numbers.
    """
    front, kind = check_front(front), check_kind(kind)
    c = check_numbers(cost, "cost", ndim=None, infinite=True)
    if kind == "hull":
        out = np.interp(c, front[:, 0], front[:, 1])
        return np.where(c >= front[0, 0] - _EPS, out, np.nan)
    j = np.searchsorted(front[:, 0], c + _EPS, side="right") - 1
    return np.where(j >= 0, front[np.maximum(j, 0), 1], np.nan)


def frontier_auc(front: np.ndarray, lo: float, hi: float, kind: str = "pareto") -> float:
    """Normalised area ``(1/(hi−lo)) ∫_lo^hi acc(c) dc`` (0 where undefined).

    Raises
    ------
    TTamerError
        For a ``front`` :func:`check_front` refuses, a ``kind`` not in :data:`KINDS`, or
        ``lo``, ``hi`` not finite numbers with ``hi > lo`` and ``hi − lo`` a finite float64
        (as ``cost_range`` of :func:`~ttamer.earlyexit.evaluation.evaluate_trace`).
    """
    front, kind = check_front(front), check_kind(kind)
    lo, hi = check_real(lo, "lo"), check_real(hi, "hi")
    if not (hi > lo and math.isfinite(hi - lo)):  # Python floats: no overflow warning
        raise TTamerError(f"frontier_auc: need lo < hi with hi - lo a finite float64, got [{lo:g}, {hi:g}]")
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
    width = np.clip(ends, lo, hi) - np.clip(starts, lo, hi)  # >= 0 (costs non-decreasing), <= hi - lo
    return float((width * front[:, 1]).sum() / (hi - lo))


def cost_at_accuracy(front: np.ndarray, accuracy: float, kind: str = "pareto") -> float | None:
    """Least cost whose ``acc(c) ≥ accuracy`` (``None`` if never reached).

    Raises
    ------
    TTamerError
        For a ``front`` :func:`check_front` refuses, a ``kind`` not in :data:`KINDS`, or an
        ``accuracy`` that is not a number in [0, 1].
    """
    front, kind = check_front(front), check_kind(kind)
    accuracy = check_real(accuracy, "accuracy")
    if not -ROUNDING <= accuracy <= 1.0 + ROUNDING:
        raise TTamerError(f"accuracy must be in [0, 1], got {accuracy:g}")
    ok = front[:, 1] >= accuracy - _EPS
    if not ok.any():
        return None
    j = int(np.argmax(ok))
    if kind == "pareto" or j == 0:
        return float(front[j, 0])
    (c1, a1), (c2, a2) = front[j - 1], front[j]
    return float(c1 + (accuracy - a1) * (c2 - c1) / (a2 - a1))
