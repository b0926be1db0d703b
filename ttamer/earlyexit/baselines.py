"""Early-exit heuristics compared with T-Tamer on the same test examples (the book's chapter *Early exit on real models*).

Every strategy walks the chain of exits ``0, 1, …, L−1``, stops at some exit ``k`` (having
paid ``Σ_{i≤k} cost[i]``) and answers with one consulted exit. Each function is vectorised
over examples and over its parameter sweep and returns :class:`~ttamer.earlyexit.traces.ExitDecisions`
with arrays ``[P, N]`` (``P`` parameter values, in ``params``):

* :func:`max_prob_threshold` -- stop at the first exit with ``max_c p_i(c) ≥ τ``
  (BranchyNet / SDN); if none passes, answer with the last exit, or with SDN's fallback
  ``fallback="confident"`` (the consulted exit of largest max-probability);
* :func:`entropy_threshold` -- stop at the first exit with entropy ``H_i ≤ τ`` (DeeBERT);
* :func:`patience` -- stop at the first exit whose prediction equals that of the ``t``
  exits before it (PABEE, patience ``t``; ``t = 0`` is exit 0);
* :func:`static_exit` -- always exit ``k``; :func:`full_model` -- always the last exit;
* :func:`oracle` -- stop at the first exit that is right (``target``); with budget ``k`` it
  looks at exits ``0..k`` only and answers with exit ``k`` if none is right. ``k = L−1`` is
  the classical oracle (first correct exit, else the full model), a bound no real strategy
  reaches;
* :func:`oracle_frontier` -- the hindsight bound at every cost: an example is right at least
  cost ``Σ_{i≤f} cost[i]`` (``f`` its first right exit) and wrong at least at exit 0, so the
  most accurate strategy at a given mean cost fixes the examples cheapest to fix first
  (greedy = optimal: every fixed example is worth the same). No strategy that consults a
  prefix of the exits and answers with one of them lies above this frontier.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from ..core.errors import TTamerError
from ..core.validate import check_int
from .base import check_trace
from .metrics import MAX_SWEEP_POINTS
from ..core.validate import check_integers, check_numbers, describe_value
from .traces import ExitDecisions, Trace, target_labels

#: What the max-probability rule answers with when it runs to the last exit, the last exit or,
#: as SDN falls back, the most confident exit consulted.
FALLBACKS = ("last", "confident")


def _thresholds(thresholds: Any, values: np.ndarray) -> np.ndarray:
    """The checked ``thresholds`` (1-D, no ``nan``, ``±inf`` allowed), or
    :func:`default_thresholds` of ``values`` for ``None``."""
    if thresholds is None:
        return default_thresholds(values)
    return check_numbers(thresholds, "thresholds", infinite=True, max_len=MAX_SWEEP_POINTS)


def _first_stop(stop: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``stop [..., L]`` bool → (index of the first True, whether any); the last exit if none."""
    L = stop.shape[-1]
    any_ = stop.any(axis=-1)
    first = np.where(any_, stop.argmax(axis=-1), L - 1)
    return first.astype(np.int64), any_


def default_thresholds(values: np.ndarray, n: int = 100) -> np.ndarray:
    """A sweep of about ``n`` thresholds: quantiles of ``values`` (all exits pooled) plus the
    extremes, so that the sweep runs from "always exit 0" to "never stop early".

    The extremes are one below the smallest value and one above the largest, or the next
    float beyond them where adding 1 changes nothing (values beyond ``2**53``; ``±inf``
    beyond ``±1.8e308``).

    Raises
    ------
    TTamerError
        Unless ``values`` is a non-empty array of finite numbers and ``n`` an integer in
        ``4..MAX_SWEEP_POINTS`` (two quantiles and the two extremes at least).
    """
    values = check_numbers(values, "values", ndim=None)
    n = check_int(n, "n", minimum=4, maximum=MAX_SWEEP_POINTS)
    lo, hi = float(values.min()), float(values.max())
    x, levels = values.ravel(), np.linspace(0.0, 1.0, n - 2)
    # hi - lo beyond float64 (values near ±1e308): the quantiles of the halved values, doubled
    # back (exact: halving and doubling a float of that size are)
    q = np.quantile(x, levels) if np.isfinite(hi - lo) else 2.0 * np.quantile(0.5 * x, levels)
    below, above = lo - 1.0, hi + 1.0
    # where 1 is lost to rounding, the next float beyond the extreme (an infinite threshold at ±max)
    below = below if below < lo else math.nextafter(lo, -math.inf)
    above = above if above > hi else math.nextafter(hi, math.inf)
    return np.unique(np.concatenate([[below], q, [above]]))


def _threshold_sweep(trace: Trace, score: np.ndarray, thresholds: np.ndarray, below: bool) -> np.ndarray:
    """``[T, N, L]`` bool: exit passes the threshold (``score ≤ τ`` if ``below``, else ``≥``)."""
    t = np.asarray(thresholds, dtype=float)[:, None, None]
    return score[None] <= t if below else score[None] >= t


def max_prob_threshold(trace: Trace, thresholds: Sequence[float] | None = None,
                       fallback: str = "last") -> ExitDecisions:
    """Confidence threshold: stop at the first exit with max-probability ``≥ τ``.

    Raises
    ------
    TTamerError
        For a ``trace`` that is not a :class:`~ttamer.earlyexit.traces.Trace`, a ``fallback``
        not in :data:`FALLBACKS`, or ``thresholds`` that are not a non-empty 1-D array of at
        most :data:`~ttamer.earlyexit.metrics.MAX_SWEEP_POINTS` numbers (``±inf`` allowed, ``nan`` not).
    """
    mp = check_trace(trace, "max_prob_threshold").max_prob
    if fallback not in FALLBACKS:
        raise TTamerError(f"fallback must be one of {FALLBACKS}, got {fallback!r}")
    th = _thresholds(thresholds, mp)
    last, passed = _first_stop(_threshold_sweep(trace, mp, th, below=False))
    answer = last.copy()
    if fallback == "confident":
        answer = np.where(passed, last, mp.argmax(axis=1)[None, :])
    name = "max-prob" if fallback == "last" else "max-prob-sdn"
    return ExitDecisions.from_last(trace, answer, last, th, name)


def entropy_threshold(trace: Trace, thresholds: Sequence[float] | None = None) -> ExitDecisions:
    """DeeBERT: stop at the first exit with entropy ``≤ τ``; the last exit if none.

    Raises
    ------
    TTamerError
        As :func:`max_prob_threshold`.
    """
    h = check_trace(trace, "entropy_threshold").entropy
    th = _thresholds(thresholds, h)
    last, _ = _first_stop(_threshold_sweep(trace, h, th, below=True))
    return ExitDecisions.from_last(trace, last, last, th, "entropy")


def agreement_run_length(pred: np.ndarray) -> np.ndarray:
    """``[N, L]``: number of consecutive exits just before ``i`` with exit ``i``'s prediction
    (PABEE's patience counter). Loop over exits only."""
    if not (isinstance(pred, np.ndarray) and pred.ndim == 2 and pred.dtype.kind in "iu"):
        raise TTamerError(f"agreement_run_length: pred must be an integer array [N, L] (each exit's predicted "
                          f"class), got {describe_value(pred)}")
    n, L = pred.shape
    run = np.zeros((n, L), dtype=np.int64)
    for i in range(1, L):
        run[:, i] = np.where(pred[:, i] == pred[:, i - 1], run[:, i - 1] + 1, 0)
    return run


def patience(trace: Trace, patiences: Sequence[int] | None = None) -> ExitDecisions:
    """PABEE: stop at the first exit whose prediction stayed the same for ``t`` consecutive
    exits before it (counter ``≥ t``); the full model if never.

    Raises
    ------
    TTamerError
        For a ``trace`` that is not a :class:`~ttamer.earlyexit.traces.Trace`, or
        ``patiences`` that are not a non-empty 1-D array of at most :data:`~ttamer.earlyexit.metrics.MAX_SWEEP_POINTS`
        integers ``>= 0``.
    """
    L = check_trace(trace, "patience").n_exits
    ts = np.arange(L) if patiences is None else check_integers(patiences, "patiences", 0, None, MAX_SWEEP_POINTS)
    run = agreement_run_length(trace.predictions)
    last, _ = _first_stop(run[None] >= ts[:, None, None])
    return ExitDecisions.from_last(trace, last, last, ts, "patience")


def static_exit(trace: Trace, exits: Sequence[int] | None = None) -> ExitDecisions:
    """Always stop at exit ``k`` (one sweep point per ``k``; default every exit).

    Raises
    ------
    TTamerError
        For a ``trace`` that is not a :class:`~ttamer.earlyexit.traces.Trace`, or ``exits``
        that are not a non-empty 1-D array of at most :data:`~ttamer.earlyexit.metrics.MAX_SWEEP_POINTS` integers in
        ``0..L−1``.
    """
    L, n = check_trace(trace, "static_exit").n_exits, trace.n_examples
    ks = np.arange(L) if exits is None else check_integers(exits, "exits", 0, L - 1, MAX_SWEEP_POINTS)
    last = np.broadcast_to(ks[:, None], (len(ks), n)).copy()
    return ExitDecisions.from_last(trace, last, last, ks, "static")


def full_model(trace: Trace) -> ExitDecisions:
    """Always the last exit (a sweep of one point).

    Raises
    ------
    TTamerError
        For a ``trace`` that is not a :class:`~ttamer.earlyexit.traces.Trace`.
    """
    d = static_exit(trace, [check_trace(trace, "full_model").n_exits - 1])
    d.name = "full"
    return d


def oracle(trace: Trace, target: str = "label", budgets: Sequence[int] | None = None) -> ExitDecisions:
    """Stop at the first right exit among ``0..k`` (``k`` = budget), else at exit ``k``.
    Default budgets: every exit; the last point is the classical oracle.

    Raises
    ------
    TTamerError
        For a ``trace`` that is not a :class:`~ttamer.earlyexit.traces.Trace`, an unknown
        ``target``, or ``budgets`` that are not a non-empty 1-D array of at most
        :data:`~ttamer.earlyexit.metrics.MAX_SWEEP_POINTS` integers in ``0..L−1``.
    """
    L = check_trace(trace, "oracle").n_exits
    ks = np.arange(L) if budgets is None else check_integers(budgets, "budgets", 0, L - 1, MAX_SWEEP_POINTS)
    right = trace.predictions == target_labels(trace, target)[:, None]  # [N, L]
    allowed = np.arange(L)[None, None, :] <= ks[:, None, None]
    first, any_ = _first_stop(right[None] & allowed)
    last = np.where(any_, first, ks[:, None])
    return ExitDecisions.from_last(trace, last, last, ks, "oracle")


#: Points of the hindsight frontier (:func:`oracle_frontier`).
ORACLE_POINTS = 201


def oracle_frontier(trace: Trace, target: str = "label", n_points: int = ORACLE_POINTS) -> ExitDecisions:
    """Hindsight frontier (module docstring): sweep point ``m`` answers the ``m`` cheapest-to-fix
    examples at their first right exit and every other example at exit 0; ``m`` runs over
    ``n_points`` values from 0 to the number of fixable examples (``params`` = ``m``).

    Raises
    ------
    TTamerError
        For a ``trace`` that is not a :class:`~ttamer.earlyexit.traces.Trace`, an unknown
        ``target``, or an ``n_points`` that is not an integer in ``2..MAX_SWEEP_POINTS`` (the
        two ends: nothing fixed, everything fixable fixed).
    """
    n = check_trace(trace, "oracle_frontier").n_examples
    n_points = check_int(n_points, "n_points", minimum=2, maximum=MAX_SWEEP_POINTS)
    right = trace.predictions == target_labels(trace, target)[:, None]
    fixable = right[:, 1:].any(axis=1) & ~right[:, 0]
    first = np.where(right.any(axis=1), right.argmax(axis=1), 0)
    cum = trace.cumulative_cost
    extra = np.where(fixable, cum[np.arange(n), first] - cum[:, 0], np.inf)
    order = np.argsort(extra, kind="stable")
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n)
    ms = np.unique(np.round(np.linspace(0, int(fixable.sum()), n_points)).astype(np.int64))
    fixed = rank[None, :] < ms[:, None]  # [P, N]
    last = np.where(fixed, first[None, :], 0)
    return ExitDecisions.from_last(trace, last, last, ms, "oracle")
