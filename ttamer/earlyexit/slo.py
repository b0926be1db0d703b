r"""The engineer's protocol: meet an accuracy target, choosing on calibration examples only.

A serving team fixes a target -- the full model's accuracy, or 0.5 or 1 point below it -- and
each strategy picks its operating point on the **calibration** examples, then is scored on the
**test** examples: its mean cost (a fraction of the full model's), its accuracy, and whether
the target -- the test full model's accuracy minus the same drop -- held (the book's section
*The service-level protocol*).

Every strategy offers a menu of operating points swept at the resolution of the calibration
examples, ending with the full model: a heuristic every distinct threshold, a static
exit every exit, T-Tamer every rule of its fitted class (:func:`tamer_points`; a
one-threshold rule's menu and the paired statistics are read off the closed-form curve of
:func:`~ttamer.earlyexit.thresholds.common_threshold_curve`, in one pass over the examples
for all thresholds). Every strategy then takes the
cheapest point that meets the target **with confidence** :math:`c` (:func:`meets_target`):
the same rule for all, so that the comparison is between policies, not between ways of
picking a point. The full model always qualifies. T-Tamer's menu also keeps the simplest rule
of its family, one threshold on the max-probability, where cross-validation chose another class
(:func:`tamer_points`). Where T-Tamer's rule has fitted thresholds
(the offset and per-exit classes) its accuracy is read on the held-out folds of its
cross-validation (:func:`out_of_fold_accuracy`), so that a fitted rule is not judged on the
examples it was fitted on. ``confidence=0.5`` is the naive rule: the cheapest point whose
calibration accuracy reaches the target, which meets it on new examples about half the time.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, replace
from statistics import NormalDist
from typing import Any, Callable

import numpy as np

from ..core.errors import TraceError, TTamerError
from ..core.validate import (check_count, check_integers, check_numbers, check_real, describe_value, escape_text,
                              short_repr)
from .base import check_trace
from .heuristics import HEURISTIC_RULES, MAX_SWEEP_CELLS, check_heuristic, sweep
from .states import StateModel, exit_wrong
from .thresholds import common_threshold_curve, rule_points, shifted_thresholds
from .tamer import SIMPLEST, ThresholdTamer
from .traces import ExitDecisions, Trace

#: Target name -> accuracy drop below the full model's accuracy.
TARGETS = {"full": 0.0, "full-0.5pt": 0.005, "full-1pt": 0.01}
#: Default one-sided confidence with which an operating point must meet a target.
CONFIDENCE = 0.9
#: Rounding tolerance of :func:`check_points` on a menu's rates and costs: they are sums of
#: 0/1 losses (or of costs) divided by the number of examples, exact up to a few rounding errors.
MENU_TOLERANCE = 1e-9


@dataclass
class OperatingPoints:
    """A strategy's menu on the ``n`` calibration examples. Rule ``p`` has calibration
    ``cost[p]`` (a fraction of the full model's), in-sample accuracy ``in_sample[p]``, judged
    ``accuracy[p]`` (in-sample, or out of fold for fitted rules) and ``disagreement[p]``, the
    share of examples on which it and the full model differ in correctness (the mean of
    :math:`d^2` in :func:`meets_target`); ``apply(trace, ps)`` runs the rules ``ps`` on other
    examples (decisions ``[len(ps), N]``, on a trace of the model the menu was built on). The
    last rule is the full model: cost 1, no disagreement, judged at its in-sample accuracy
    (:func:`check_points`)."""

    cost: np.ndarray
    in_sample: np.ndarray
    accuracy: np.ndarray
    disagreement: np.ndarray
    n: int
    apply: Callable[[Trace, np.ndarray], ExitDecisions]


def check_confidence(confidence: Any, name: str = "SLO confidence") -> float:
    """``confidence`` as a float in ``[0.5, 1)``.

    Raises
    ------
    TTamerError
        Naming ``name``, for anything else (strings and booleans included).
    """
    c = check_real(confidence, name)
    if not 0.5 <= c < 1.0:
        raise TTamerError(f"{name} must be in [0.5, 1), got {c!r}")
    return c


def check_points(points: Any, name: str) -> OperatingPoints:
    r"""``points`` with its arrays as float arrays, if it is a valid :class:`OperatingPoints`.

    A valid menu is on ``n >= 1`` examples; its ``cost`` (``>= 0``), ``in_sample``,
    ``accuracy`` and ``disagreement`` (in [0, 1]) are finite 1-D arrays of one value per rule,
    for at least 2 rules (a strategy's rules, then the full model); its last rule is the full model:
    ``cost[-1] = 1``, ``disagreement[-1] = 0`` and ``accuracy[-1] = in_sample[-1]`` (the full
    model is judged in-sample); every rule's ``disagreement`` is possible against the full
    model: with :math:`a` its in-sample accuracy and :math:`f` the full model's, the share of
    examples on which the two differ in correctness lies in :math:`[|a - f|,
    \min(a + f, 2 - a - f)]` (to :data:`MENU_TOLERANCE`); its ``apply`` is callable.

    Raises
    ------
    TTamerError
        Naming ``name`` and the field at fault, for anything else.
    """
    if not isinstance(points, OperatingPoints):
        raise TTamerError(f"{name} must be OperatingPoints (heuristic_points, static_points, tamer_points), "
                          f"got {type(points).__name__}")
    check_count(points.n, f"{name}.n")
    cost = check_numbers(points.cost, f"{name}.cost", low=0.0)
    rates = {field: check_numbers(getattr(points, field), f"{name}.{field}", low=0.0, high=1.0)
             for field in ("in_sample", "accuracy", "disagreement")}
    for field, arr in rates.items():
        if len(arr) != len(cost):
            raise TTamerError(f"{name}.{field} has {len(arr):,} values, {name}.cost {len(cost):,}: one per rule")
    if not callable(points.apply):
        raise TTamerError(f"{name}.apply must be a function (trace, rules) -> ExitDecisions, "
                          f"got {type(points.apply).__name__}")
    _check_full_model_last(cost, rates, name)
    _check_disagreement(rates["in_sample"], rates["disagreement"], name)
    return replace(points, cost=cost, **rates)


def _check_full_model_last(cost: np.ndarray, rates: dict[str, np.ndarray], name: str) -> None:
    """Refuse a menu of fewer than 2 rules or whose last rule is not the full model."""
    if len(cost) < 2:
        raise TTamerError(f"{name}.cost has {len(cost)} value: a menu holds a strategy's rules followed by the "
                          "full model, at least 2 rules")
    if abs(cost[-1] - 1.0) > MENU_TOLERANCE:
        raise TTamerError(f"{name}.cost[-1] must be 1 (the last rule is the full model, at the full model's "
                          f"cost), got {float(cost[-1])!r}")
    if rates["disagreement"][-1] > MENU_TOLERANCE:
        raise TTamerError(f"{name}.disagreement[-1] must be 0 (the last rule is the full model, which never "
                          f"differs from itself), got {float(rates['disagreement'][-1])!r}")
    if abs(rates["accuracy"][-1] - rates["in_sample"][-1]) > MENU_TOLERANCE:
        raise TTamerError(f"{name}.accuracy[-1] must equal {name}.in_sample[-1] (the last rule is the full model, "
                          f"judged in-sample), got {float(rates['accuracy'][-1])!r} and "
                          f"{float(rates['in_sample'][-1])!r}")


def _check_disagreement(in_sample: np.ndarray, disagreement: np.ndarray, name: str) -> None:
    """Refuse a disagreement no rule can have with the full model (the last rule)."""
    f = in_sample[-1]
    low, high = np.abs(in_sample - f), np.minimum(in_sample + f, 2.0 - in_sample - f)
    bad = (disagreement < low - MENU_TOLERANCE) | (disagreement > high + MENU_TOLERANCE)
    if bad.any():
        p = int(np.argmax(bad))
        raise TTamerError(f"{name}.disagreement[{p}] = {float(disagreement[p])!r} is impossible: a rule of "
                          f"in-sample accuracy {float(in_sample[p])!r} and the full model, of {float(f)!r} "
                          f"({name}.in_sample[-1]), differ in correctness on a share of examples in "
                          f"[{low[p]:.6g}, {high[p]:.6g}]")


def _check_decisions(dec: Any, trace: Trace, n_rules: int, who: str) -> ExitDecisions:
    """``dec`` if it is :class:`~ttamer.earlyexit.traces.ExitDecisions` of ``n_rules`` rules on
    ``trace``: ``answer`` and ``last`` integer exits of ``trace``, of shape ``[n_rules, N]``;
    a :class:`~ttamer.core.errors.TTamerError` naming ``who`` otherwise."""
    if not isinstance(dec, ExitDecisions):
        raise TTamerError(f"{who} must return ExitDecisions, got {describe_value(dec)}")
    shape = (n_rules, trace.n_examples)
    for field in ("answer", "last"):
        arr = getattr(dec, field)
        if not isinstance(arr, np.ndarray) or arr.dtype.kind not in "iu" or arr.shape != shape:
            raise TTamerError(f"{who} returned decisions whose {field} is {describe_value(arr)}: expected integer "
                              f"exits of shape {list(shape)}, one row per rule asked for, one column per example")
        if arr.size and (arr.min() < 0 or arr.max() >= trace.n_exits):
            raise TTamerError(f"{who} returned decisions whose {field} holds exits outside 0..{trace.n_exits - 1} "
                              "(the trace's exits)")
    return dec


def _check_rules(trace: Any, ps: Any, n_rules: int) -> np.ndarray:
    """``ps`` as ``int64`` indices ``0..n_rules-1`` of a menu's rules, at most
    ``MAX_SWEEP_CELLS / N`` of them on a ``trace`` of ``N`` examples (the decisions hold
    ``len(ps) × N`` entries), after checking ``trace``."""
    check_trace(trace, "OperatingPoints.apply")
    return check_integers(ps, "ps (rules of the menu)", 0, n_rules - 1, max(1, MAX_SWEEP_CELLS // trace.n_examples))


def meets_target(points: OperatingPoints, full_accuracy: float, drop: float, confidence: float,
                 n_test: int) -> np.ndarray:
    r"""``[P]``: whether each operating point meets the target with the given confidence.

    With the paired differences :math:`d_{p,n} = 1[\text{rule } p \text{ right on } n] -
    1[\text{full model right on } n]` on the :math:`N` calibration examples, their mean
    :math:`\bar d_p` (the judged accuracy minus the full model's) and standard deviation
    :math:`s_p` -- that of the in-sample differences with two pseudo-examples added, one
    :math:`d = +1` and one :math:`d = -1` (:math:`d^2` is 1 exactly where the two differ in
    correctness), so that a rule never seen to differ from the full model is not taken as
    certain to agree with it on new examples (:math:`s_p > 0`) -- point :math:`p` qualifies when

    .. math::

       \bar d_p - z_c\, s_p \sqrt{1/N + 1/N'} \;\ge\; -\delta,

    :math:`\delta` the target's drop, :math:`N'` the examples it will be judged on and
    :math:`z_c` the standard normal quantile of the confidence :math:`c`: a one-sided
    prediction bound on the difference that the test examples will show. The last point, the
    full model itself, always qualifies (its difference is zero on any examples).
    ``full_accuracy`` is the full model's accuracy on the calibration examples, the last
    point's ``in_sample`` (to within half an example).

    Raises
    ------
    TTamerError
        For ``points`` that :func:`check_points` refuses, a ``full_accuracy`` or ``drop``
        not in [0, 1], a ``confidence`` :func:`check_confidence` refuses, an ``n_test`` that
        is not an integer ``>= 1``, or a ``full_accuracy`` more than half an example away from
        the last point's ``in_sample``.
    """
    points = check_points(points, "points")
    n = points.n
    full_accuracy = check_real(full_accuracy, "full_accuracy", low=0.0, high=1.0)
    drop = check_real(drop, "drop", low=0.0, high=1.0)
    confidence = check_confidence(confidence)
    n_test = check_count(n_test, "n_test")
    if abs(full_accuracy - points.in_sample[-1]) > 0.5 / n:
        raise TTamerError(f"full_accuracy {full_accuracy!r} is not the accuracy of the last point of points, the "
                          f"full model, on its {n:,} calibration examples ({float(points.in_sample[-1])!r}): the "
                          "paired differences are taken against that model")
    # the in-sample differences and the two pseudo-examples d = +1, d = -1: N + 2 values
    mean = (n * (points.in_sample - full_accuracy)) / (n + 2)
    second = (n * points.disagreement + 2.0) / (n + 2)
    var = np.maximum(second - mean**2, 0.0) * (n + 2) / (n + 1)
    z = NormalDist().inv_cdf(confidence)
    bound = points.accuracy - full_accuracy - z * np.sqrt(var) * np.sqrt(1.0 / n + 1.0 / n_test)
    ok = bound >= -drop - 1e-12
    ok[-1] = True  # the full model
    return ok


def out_of_fold_accuracy(tamer: ThresholdTamer, budgets: np.ndarray) -> np.ndarray | None:
    """``[P]`` accuracy at the calibration cost ``budgets`` on the held-out folds of the
    fitted tamer's cross-validation: per fold, the fold's most accurate rule within the budget,
    averaged over folds. ``None`` for a one-threshold common rule (nothing fitted beyond the
    threshold itself, judged in-sample like a heuristic) or without cross-validation.

    Raises
    ------
    TTamerError
        For a ``tamer`` that is not a fitted :class:`~ttamer.earlyexit.tamer.ThresholdTamer`,
        or ``budgets`` that are not a non-empty 1-D array of finite numbers ``>= 0``, or more
        of them than :data:`~ttamer.earlyexit.heuristics.MAX_SWEEP_CELLS` divided by the
        number of held-out curves (one lookup per budget and curve).
    """
    if not isinstance(tamer, ThresholdTamer):
        raise TTamerError(f"out_of_fold_accuracy reads a fitted ThresholdTamer, got {type(tamer).__name__}")
    tamer.check_fitted()
    curves = getattr(tamer, "cv_curves_", {}).get(tamer.candidate_.key) or []
    budgets = check_numbers(budgets, "budgets", low=0.0, max_len=MAX_SWEEP_CELLS // max(len(curves), 1))
    if not curves or tamer.candidate_.thresholds == "common":
        return None
    per_fold = []
    for c in curves:
        j = np.searchsorted(c["budget"], budgets + 1e-12, side="right") - 1
        per_fold.append(c["accuracy"][np.clip(j, 0, None)])
    return np.mean(per_fold, axis=0)


def _losses(cal: Trace, answers: np.ndarray, target: str) -> tuple[np.ndarray, np.ndarray]:
    """``[N, L]`` the 0/1 loss of stopping at each exit (answering ``answers``), and
    whether it differs from the full model's (the :math:`d^2` of :func:`meets_target`)."""
    wrong = exit_wrong(cal, target)
    loss = np.take_along_axis(wrong, answers, axis=1)
    return loss, np.abs(loss - wrong[:, -1:])


def _menu(cal: Trace, target: str, cost: np.ndarray, loss: np.ndarray, differs: np.ndarray,
          apply: Callable[[Trace, np.ndarray], ExitDecisions]) -> OperatingPoints:
    """The menu of rules with calibration mean ``cost``, ``loss`` and ``differs`` (``[P]``,
    ``cost`` in trace units) followed by the full model; ``apply(trace, ps)`` runs rules ``ps``
    (the full model, index ``P``, is added here)."""
    full_loss = exit_wrong(cal, target)[:, -1]
    acc = np.r_[1.0 - loss, 1.0 - full_loss.mean()]
    n_rules = len(cost)
    built_on = (cal.n_exits, cal.n_classes)

    def run(trace: Trace, ps: np.ndarray) -> ExitDecisions:
        ps = _check_rules(trace, ps, n_rules + 1)
        if (trace.n_exits, trace.n_classes) != built_on:
            raise TraceError(f"OperatingPoints.apply: the trace has {trace.n_exits} exits and {trace.n_classes} "
                             f"classes, the menu was built on a calibration trace of {built_on[0]} exits and "
                             f"{built_on[1]} classes: they must come from the same model")
        dec = _check_decisions(apply(trace, np.minimum(ps, n_rules - 1)), trace, len(ps), "the menu's rules")
        is_full = (ps == n_rules)[:, None]
        last = np.where(is_full, trace.n_exits - 1, dec.last)
        return ExitDecisions.from_last(trace, np.where(is_full, trace.n_exits - 1, dec.answer), last)

    return OperatingPoints(np.r_[cost, cal.full_cost.mean()] / cal.full_cost.mean(), acc, acc.copy(),
                           np.r_[differs, 0.0], cal.n_examples, run)


def _threshold_menu(cal: Trace, x: np.ndarray, answers: np.ndarray, target: str,
                    apply: Callable[[Trace, np.ndarray], ExitDecisions]) -> OperatingPoints:
    """A common threshold on the state ``x`` at every distinct value on ``cal``, in closed
    form (:func:`~ttamer.earlyexit.thresholds.common_threshold_curve`, whose thresholds depend
    on ``x`` only); ``apply(trace, taus)`` runs the common thresholds ``taus``."""
    loss, differs = _losses(cal, answers, target)
    taus, mean_loss, mean_cost = common_threshold_curve(x, loss, cal.cumulative_cost)
    mean_differs = common_threshold_curve(x, differs, cal.cumulative_cost)[1]
    return _menu(cal, target, mean_cost, mean_loss, mean_differs, lambda tr, ps: apply(tr, taus[ps]))


def heuristic_points(cal: Trace, name: str, target: str = "label") -> OperatingPoints:
    """Heuristic ``name`` at every distinct threshold of its state on ``cal``.

    Raises
    ------
    TTamerError
        For a ``cal`` that :func:`~ttamer.earlyexit.base.check_trace` refuses, or a ``name``
        that :func:`~ttamer.earlyexit.heuristics.check_heuristic` refuses; a ``target`` other
        than ``"label"`` or ``"final"`` (:class:`~ttamer.core.errors.TraceError`).
    """
    check_trace(cal, "heuristic_points")
    check_heuristic(name)
    x, answers = StateModel.fit(cal, *HEURISTIC_RULES[name]).transform(cal)
    return _threshold_menu(cal, x, answers, target, lambda tr, taus: sweep(tr, name, taus))


def static_points(cal: Trace, target: str = "label") -> OperatingPoints:
    """Every exit of the chain, always stopping there.

    Raises
    ------
    TTamerError
        For a ``cal`` that :func:`~ttamer.earlyexit.base.check_trace` refuses; a ``target``
        other than ``"label"`` or ``"final"`` (:class:`~ttamer.core.errors.TraceError`).
    """
    check_trace(cal, "static_points")
    L = cal.n_exits
    loss, differs = _losses(cal, np.broadcast_to(np.arange(L), (cal.n_examples, L)), target)

    def at(tr: Trace, ps: np.ndarray) -> ExitDecisions:
        k = np.repeat(np.asarray(ps)[:, None], tr.n_examples, axis=1)
        return ExitDecisions.from_last(tr, k, k)

    cum = cal.cumulative_cost
    return _menu(cal, target, cum.mean(axis=0)[:-1], loss.mean(axis=0)[:-1], differs.mean(axis=0)[:-1], at)


def united(a: OperatingPoints, b: OperatingPoints) -> OperatingPoints:
    """One menu of the rules of menus ``a`` and ``b`` on the same calibration examples: ``a``'s
    rules, then ``b``'s (the full model, last in each, once at the end).

    Raises
    ------
    TTamerError
        Unless ``a`` and ``b`` are :class:`OperatingPoints` on as many calibration examples.
    """
    a, b = check_points(a, "a"), check_points(b, "b")
    if a.n != b.n:
        raise TTamerError(f"menus on {a.n} and {b.n} calibration examples cannot be united")
    P = len(a.cost) - 1

    def run(trace: Trace, ps: np.ndarray) -> ExitDecisions:
        ps = _check_rules(trace, ps, P + len(b.cost))
        da = _check_decisions(a.apply(trace, np.minimum(ps, P)), trace, len(ps), "a.apply")
        db = _check_decisions(b.apply(trace, np.maximum(ps - P, 0)), trace, len(ps), "b.apply")
        first = (ps < P)[:, None]
        return ExitDecisions.from_last(trace, np.where(first, da.answer, db.answer), np.where(first, da.last, db.last))

    return OperatingPoints(np.r_[a.cost[:-1], b.cost], np.r_[a.in_sample[:-1], b.in_sample],
                           np.r_[a.accuracy[:-1], b.accuracy], np.r_[a.disagreement[:-1], b.disagreement], a.n, run)


def tamer_points(tamer: ThresholdTamer, cal: Trace) -> OperatingPoints:
    """The fitted tamer's rules on ``cal``: for a one-threshold class (common or offset) every
    distinct threshold of its shifted state, for the per-exit class its budgeted rules; for
    fitted thresholds (offset, per-exit), accuracy out of fold (:func:`out_of_fold_accuracy`;
    the full model keeps its own). Where the class was chosen by cross-validation
    (``policy="auto"``) among candidates that include the one-threshold max-probability rule
    (:data:`~ttamer.earlyexit.tamer.SIMPLEST`) and it chose another, that rule's menu is
    :func:`united` with the chosen class's: the simplest rule of T-Tamer's family stays on
    offer, judged as any one-threshold rule.

    Raises
    ------
    TTamerError
        For a ``tamer`` that is not a fitted :class:`~ttamer.earlyexit.tamer.ThresholdTamer`,
        or a ``cal`` trace other than the one it was fitted on (its out-of-fold accuracies
        belong to that trace's folds).
    """
    if not isinstance(tamer, ThresholdTamer):
        raise TTamerError(f"tamer must be a fitted ThresholdTamer, got {type(tamer).__name__}")
    cal = tamer.check_fitted_on(cal, "tamer_points")  # its out-of-fold accuracies come from that trace's folds
    x, answers = tamer.state_model_.transform(cal)
    if tamer.candidate_.thresholds == "per_exit":
        taus = tamer.sweep_taus_
        loss, differs = _losses(cal, answers, tamer.target)
        mean_loss, mean_cost = rule_points(x, loss, cal.cumulative_cost, taus)
        menu = _menu(cal, tamer.target, mean_cost, mean_loss, rule_points(x, differs, cal.cumulative_cost, taus)[0],
                     lambda tr, ps: tamer.decide_rules(tr, taus[ps]))
    else:
        menu = _threshold_menu(cal, x - tamer.offsets_, answers, tamer.target,
                               lambda tr, taus: tamer.decide_rules(tr, shifted_thresholds(taus, tamer.offsets_)))
    oof = out_of_fold_accuracy(tamer, menu.cost[:-1])
    if oof is not None:
        menu.accuracy = np.r_[oof, menu.accuracy[-1]]
    if tamer.policy == "auto" and tamer.candidate_ != SIMPLEST and SIMPLEST in tamer.candidates():
        menu = united(menu, heuristic_points(cal, "max-prob", tamer.target))
    return menu


def _check_strategy_names(tamers: dict[Any, Any], heuristics: Any) -> None:
    """Refuse ``heuristics`` that are not a tuple or list of distinct heuristics, and a tamer
    name that is not a string or is a heuristic's or ``"static"``: every strategy has a row
    of its own in :func:`slo_block`'s table."""
    if not isinstance(heuristics, (tuple, list)):
        raise TTamerError(f"heuristics must be a tuple of names of {sorted(HEURISTIC_RULES)}, "
                          f"got {short_repr(heuristics)}")
    names = [check_heuristic(h) for h in heuristics]
    repeated = sorted(h for h, k in Counter(names).items() if k > 1)
    if repeated:
        raise TTamerError(f"heuristics lists {repeated} more than once")
    for name in tamers:
        if not isinstance(name, str):
            raise TTamerError(f"tamers: a tamer's name must be a string, got {short_repr(name)}")
        if name in names or name == "static":
            raise TTamerError(f"tamers: the name {short_repr(name)} is also a strategy's of the table (heuristics "
                              f"{names} and 'static'); each strategy has a row of its own: rename the tamer")


def _score(dec: ExitDecisions, test: Trace, target: str, test_target: float) -> dict[str, Any]:
    acc = float(dec.correct(test, target).mean())
    return {"cost": float(dec.cost.mean() / test.full_cost.mean()), "accuracy": acc,
            "met": bool(acc >= test_target - 1e-12)}


def slo_block(calibration: Trace, test: Trace, tamers: dict[str, ThresholdTamer], target: str = "label",
              heuristics: tuple[str, ...] = tuple(HEURISTIC_RULES),
              confidence: float = CONFIDENCE) -> dict[str, Any]:
    """For every target of :data:`TARGETS`: the calibration and test accuracy targets, the
    ``confidence`` and, per strategy (the fitted ``tamers`` by name, the ``heuristics``,
    ``static``), the test ``cost``, ``accuracy`` and whether the target was ``met`` at the
    cheapest operating point that meets it on the calibration examples with that confidence
    (:func:`meets_target`).

    Raises
    ------
    TTamerError
        For traces that are not :class:`~ttamer.earlyexit.traces.Trace`, ``tamers`` that is
        not a dict of names to :class:`~ttamer.earlyexit.tamer.ThresholdTamer` fitted on
        ``calibration`` (:func:`tamer_points`), ``heuristics`` that is not a tuple or list of
        distinct names of :data:`~ttamer.earlyexit.heuristics.HEURISTIC_RULES`, a tamer's name
        that is not a string or is a heuristic's or ``"static"`` (one row would replace the
        other), or a ``confidence`` :func:`check_confidence` refuses.
    """
    confidence = check_confidence(confidence)
    check_trace(calibration, "slo_block")
    check_trace(test, "slo_block")
    if (test.n_exits, test.n_classes) != (calibration.n_exits, calibration.n_classes):
        raise TraceError(f"slo_block: the test trace has {test.n_exits} exits and {test.n_classes} classes, the "
                         f"calibration trace {calibration.n_exits} and {calibration.n_classes}: they must come from "
                         "the same model")
    if not isinstance(tamers, dict):
        raise TTamerError(f"tamers must be a dict of names to fitted ThresholdTamer, got {short_repr(tamers)}")
    for name, t in tamers.items():
        if isinstance(t, ThresholdTamer) and t.target != target:
            raise TTamerError(f"tamers[{escape_text(repr(name), 40)}] judges answers against target {t.target!r}, "
                              f"the service-level targets against {target!r}: they must be the same")
    _check_strategy_names(tamers, heuristics)
    menus = {name: tamer_points(t, calibration) for name, t in tamers.items()}
    menus |= {h: heuristic_points(calibration, h, target) for h in heuristics}
    menus["static"] = static_points(calibration, target)
    full_cal = float(1.0 - exit_wrong(calibration, target)[:, -1].mean())
    test_full = float(1.0 - exit_wrong(test, target)[:, -1].mean())
    picked: dict[str, ExitDecisions] = {}
    for name, menu in menus.items():
        ps = []
        for drop in TARGETS.values():
            ok = meets_target(menu, full_cal, drop, confidence, test.n_examples)
            ps.append(int(np.flatnonzero(ok)[np.argmin(menu.cost[ok])]))  # the full model always qualifies
        who = f"the menu of {escape_text(repr(name), 40)}"
        picked[name] = _check_decisions(menu.apply(test, np.array(ps)), test, len(ps), who)
    out: dict[str, Any] = {}
    for k, (tname, drop) in enumerate(TARGETS.items()):
        rows = {name: _score(dec[k], test, target, test_full - drop) for name, dec in picked.items()}
        out[tname] = {"accuracy_drop": drop, "confidence": confidence,
                      "calibration_target": full_cal - drop, "test_target": test_full - drop,
                      "strategies": rows}
    return out
