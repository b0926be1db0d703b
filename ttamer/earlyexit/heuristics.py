"""The threshold heuristics as members of T-Tamer's policy class, swept completely.

Each heuristic is a common-threshold rule (:mod:`ttamer.earlyexit.thresholds`) on one state
and answer rule (:mod:`ttamer.earlyexit.states`):

=================  ================  ==========================================
name               state             answer
=================  ================  ==========================================
``max-prob``       ``max_prob``      the exit it stops at (BranchyNet, SDN)
``max-prob-sdn``   ``max_prob``      the most confident exit (SDN's fallback)
``entropy``        ``neg_entropy``   the exit it stops at (DeeBERT)
``patience``       ``patience``      the exit it stops at (PABEE)
=================  ================  ==========================================

:func:`complete_sweep` sweeps a heuristic's threshold over *every* distinct value of its state
on the examples it is scored on, so that the sweep's resolution never decides a comparison,
and keeps the rules on the frontier of that complete sweep. The service-level protocol
(:mod:`ttamer.earlyexit.slo`) picks a threshold on calibration examples only.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..core.errors import TTamerError
from ..core.validate import check_int, check_numbers, short_repr
from .base import check_trace
from .metrics import MAX_SWEEP_POINTS
from .traces import ExitDecisions, Trace
from .states import StateModel, exit_wrong
from .thresholds import common_threshold_curve, first_stop, frontier_taus

#: heuristic name -> (state, answer rule)
HEURISTIC_RULES = {"max-prob": ("max_prob", "last"), "max-prob-sdn": ("max_prob", "confident"),
                   "entropy": ("neg_entropy", "last"), "patience": ("patience", "last")}
#: Most decisions (rules × examples) a sweep holds, besides at most
#: :data:`~ttamer.earlyexit.metrics.MAX_SWEEP_POINTS` rules, so that large traces stay in bounded memory.
MAX_SWEEP_CELLS = 20_000_000


def check_heuristic(name: Any) -> str:
    """``name`` if it names a heuristic of :data:`HEURISTIC_RULES`, else a
    :class:`~ttamer.core.errors.TTamerError` listing them."""
    if not isinstance(name, str) or name not in HEURISTIC_RULES:
        raise TTamerError(f"unknown heuristic {short_repr(name)}; choose from {sorted(HEURISTIC_RULES)}")
    return name


def _state(trace: Trace, name: str) -> tuple[np.ndarray, np.ndarray]:
    return StateModel.fit(trace, *HEURISTIC_RULES[check_heuristic(name)]).transform(trace)


def threshold_curve(trace: Trace, name: str, target: str = "label") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(taus, cost, accuracy)`` of heuristic ``name`` at every distinct threshold on
    ``trace`` (cost as a fraction of the full model's mean cost).

    Raises
    ------
    TTamerError
        For a ``trace`` that is not a :class:`~ttamer.earlyexit.traces.Trace`, or an unknown
        ``name`` or ``target``.
    """
    x, answers = _state(check_trace(trace, "threshold_curve"), name)
    loss = np.take_along_axis(exit_wrong(trace, target), answers, axis=1)
    taus, mean_loss, mean_cost = common_threshold_curve(x, loss, trace.cumulative_cost)
    return taus, mean_cost / trace.full_cost.mean(), 1.0 - mean_loss


def sweep(trace: Trace, name: str, taus: np.ndarray) -> ExitDecisions:
    """Decisions ``[P, N]`` of heuristic ``name`` at thresholds ``taus`` (``params`` = ``taus``;
    for ``entropy`` the threshold is on minus the entropy).

    Raises
    ------
    TTamerError
        For a ``trace`` that is not a :class:`~ttamer.earlyexit.traces.Trace`, an unknown
        ``name``, or ``taus`` that are not a non-empty 1-D array of at most
        :data:`~ttamer.earlyexit.metrics.MAX_SWEEP_POINTS` numbers (``±inf`` allowed, ``nan`` not).
    """
    taus = check_numbers(taus, "taus", infinite=True, max_len=MAX_SWEEP_POINTS)
    return _sweep(trace, name, *_state(check_trace(trace, "sweep"), name), taus)


def _sweep(trace: Trace, name: str, x: np.ndarray, answers: np.ndarray, taus: np.ndarray) -> ExitDecisions:
    """:func:`sweep` from the heuristic's states ``x`` and answers ``answers`` on ``trace``."""
    taus = np.asarray(taus, dtype=float)
    last = first_stop(x, taus)
    answer = np.take_along_axis(answers, last.T, axis=1).T
    return ExitDecisions.from_last(trace, answer, last, taus, name)


def complete_sweep(trace: Trace, name: str, target: str = "label",
                   max_points: int = MAX_SWEEP_POINTS) -> ExitDecisions:
    """Heuristic ``name`` at the thresholds of the frontier of its complete sweep on ``trace``
    (every distinct state value; the frontier is what every metric reads), thinned evenly in
    cost to at most ``max_points`` rules and :data:`MAX_SWEEP_CELLS` rules × examples.

    Raises
    ------
    TTamerError
        For a ``trace`` that is not a :class:`~ttamer.earlyexit.traces.Trace`, an unknown
        ``name`` or ``target``, or a ``max_points`` that is not an integer in
        ``2..MAX_SWEEP_POINTS``.
    """
    max_points = check_int(max_points, "max_points", minimum=2, maximum=MAX_SWEEP_POINTS)
    x, answers = _state(check_trace(trace, "complete_sweep"), name)
    loss = np.take_along_axis(exit_wrong(trace, target), answers, axis=1)
    points = max(2, min(max_points, MAX_SWEEP_CELLS // trace.n_examples))
    return _sweep(trace, name, x, answers, frontier_taus(x, loss, trace.cumulative_cost, points))
