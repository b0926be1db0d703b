r"""The engineer's protocol: meet an accuracy target, choosing on calibration examples only.

A serving team fixes a target -- the full model's accuracy, or 0.5 or 1 point below it -- and
each strategy picks its operating point on the **calibration** examples, then is scored on the
**test** examples: its mean cost (a fraction of the full model's), its accuracy, and whether
the target -- the test full model's accuracy minus the same drop -- held (the book's section
*The service-level protocol*).

Every strategy offers a menu of operating points swept at the resolution of the calibration
examples, ending with the full model: a heuristic every distinct threshold, a static
exit every exit, T-Tamer every rule of its fitted class
(:meth:`~ttamer.earlyexit.tamer.ThresholdTamer.resolved_rules`). Every strategy then takes the
cheapest point that meets the target **with confidence** :math:`c` (:func:`meets_target`):
the same rule for all, so that the comparison is between policies, not between ways of
picking a point. The full model always qualifies. Where T-Tamer's rule has fitted thresholds
(the offset and per-exit classes) its accuracy is read on the held-out folds of its
cross-validation (:func:`out_of_fold_accuracy`), so that a fitted rule is not judged on the
examples it was fitted on. ``confidence=0.5`` is the naive rule: the cheapest point whose
calibration accuracy reaches the target, which meets it on new examples about half the time.
"""

from __future__ import annotations

from dataclasses import dataclass
from statistics import NormalDist
from typing import Any, Callable

import numpy as np

from ..core.errors import TTamerError
from .heuristics import HEURISTIC_RULES, MAX_SWEEP_CELLS, MAX_SWEEP_POINTS, sweep, threshold_curve
from .thresholds import evenly
from .states import exit_wrong
from .tamer import ThresholdTamer, with_full_model
from .traces import ExitDecisions, Trace

#: Target name -> accuracy drop below the full model's accuracy.
TARGETS = {"full": 0.0, "full-0.5pt": 0.005, "full-1pt": 0.01}
#: Default one-sided confidence with which an operating point must meet a target.
CONFIDENCE = 0.9


@dataclass
class OperatingPoints:
    """A strategy's menu on the calibration examples: rule ``p`` has calibration ``cost[p]``
    (a fraction of the full model's), per-example correctness ``correct [P, N]`` and judged
    ``accuracy[p]`` (in-sample, or out-of-fold for fitted rules); ``apply(trace, ps)`` runs
    the rules ``ps`` on other examples (decisions ``[len(ps), N]``). The last rule is the full
    model."""

    cost: np.ndarray
    correct: np.ndarray
    accuracy: np.ndarray
    apply: Callable[[Trace, np.ndarray], ExitDecisions]


def check_confidence(confidence: Any) -> float:
    """``confidence`` as a float in ``[0.5, 1)``, else a :class:`~ttamer.core.errors.TTamerError`."""
    try:
        c = float(confidence)
    except (TypeError, ValueError):
        raise TTamerError(f"SLO confidence must be a number in [0.5, 1), got {type(confidence).__name__}") from None
    if not 0.5 <= c < 1.0:
        raise TTamerError(f"SLO confidence must be in [0.5, 1), got {c!r}")
    return c


def meets_target(points: OperatingPoints, full_correct: np.ndarray, drop: float, confidence: float,
                 n_test: int) -> np.ndarray:
    r"""``[P]``: whether each operating point meets the target with the given confidence.

    With the paired differences :math:`d_{p,n} = 1[\text{rule } p \text{ right on } n] -
    1[\text{full model right on } n]` on the :math:`N` calibration examples, their mean
    :math:`\bar d_p` (the judged accuracy minus the full model's) and standard deviation
    :math:`s_p`, point :math:`p` qualifies when

    .. math::

       \bar d_p - z_c\, s_p \sqrt{1/N + 1/N'} \;\ge\; -\delta,

    :math:`\delta` the target's drop, :math:`N'` the examples it will be judged on and
    :math:`z_c` the standard normal quantile of the confidence :math:`c`: a one-sided
    prediction bound on the difference that the test examples will show.
    """
    d = points.correct.astype(float) - full_correct.astype(float)[None, :]
    n = d.shape[1]
    spread = d.std(axis=1, ddof=1) if n > 1 else np.zeros(len(d))
    mean = points.accuracy - full_correct.mean()
    z = NormalDist().inv_cdf(confidence)
    return mean - z * spread * np.sqrt(1.0 / n + 1.0 / max(int(n_test), 1)) >= -drop - 1e-12


def out_of_fold_accuracy(tamer: ThresholdTamer, budgets: np.ndarray) -> np.ndarray | None:
    """``[P]`` accuracy at the calibration cost ``budgets`` on the held-out folds of the
    fitted tamer's cross-validation: per fold, the fold's most accurate rule within the budget,
    averaged over folds. ``None`` for a one-threshold common rule (nothing fitted beyond the
    threshold itself, judged in-sample like a heuristic) or without cross-validation."""
    curves = getattr(tamer, "cv_curves_", {}).get(tamer.candidate_.key)
    if not curves or tamer.candidate_.thresholds == "common":
        return None
    per_fold = []
    for c in curves:
        j = np.searchsorted(c["budget"], np.asarray(budgets) + 1e-12, side="right") - 1
        per_fold.append(c["accuracy"][np.clip(j, 0, None)])
    return np.mean(per_fold, axis=0)


def _menu(cal: Trace, dec: ExitDecisions, target: str,
          apply: Callable[[Trace, np.ndarray], ExitDecisions]) -> OperatingPoints:
    """The menu of the sweep ``dec`` on ``cal`` followed by the full model; ``apply(trace, ps)``
    runs rules ``ps`` of ``dec`` (the full model, index ``len(dec)``, is added here)."""
    full = with_full_model(cal, None, 1.0)[0]
    correct = np.vstack([dec.correct(cal, target), full.correct(cal, target)[None, :]])
    cost = np.r_[dec.cost.mean(axis=1), full.cost.mean()] / cal.full_cost.mean()
    n_rules = len(dec)

    def run(trace: Trace, ps: np.ndarray) -> ExitDecisions:
        ps = np.asarray(ps, dtype=np.int64)
        dec = apply(trace, np.minimum(ps, n_rules - 1))
        is_full = (ps == n_rules)[:, None]
        last = np.where(is_full, trace.n_exits - 1, dec.last)
        return ExitDecisions.from_last(trace, np.where(is_full, trace.n_exits - 1, dec.answer), last)

    return OperatingPoints(cost, correct, correct.mean(axis=1), run)


def heuristic_points(cal: Trace, name: str, target: str = "label") -> OperatingPoints:
    """Heuristic ``name`` at every distinct threshold of its state on ``cal`` (spread evenly
    over them beyond :data:`~ttamer.earlyexit.heuristics.MAX_SWEEP_POINTS` rules or
    :data:`~ttamer.earlyexit.heuristics.MAX_SWEEP_CELLS` rules × examples)."""
    taus = threshold_curve(cal, name, target)[0]
    taus = taus[evenly(len(taus), min(MAX_SWEEP_POINTS, MAX_SWEEP_CELLS // cal.n_examples))]
    return _menu(cal, sweep(cal, name, taus), target, lambda tr, ps: sweep(tr, name, taus[ps]))


def static_points(cal: Trace, target: str = "label") -> OperatingPoints:
    """Every exit of the chain, always stopping there."""
    L = cal.n_exits
    last = np.repeat(np.arange(L - 1)[:, None], cal.n_examples, axis=1)
    dec = ExitDecisions.from_last(cal, last, last)

    def at(tr: Trace, ps: np.ndarray) -> ExitDecisions:
        k = np.repeat(np.asarray(ps)[:, None], tr.n_examples, axis=1)
        return ExitDecisions.from_last(tr, k, k)

    return _menu(cal, dec, target, at)


def tamer_points(tamer: ThresholdTamer, cal: Trace) -> OperatingPoints:
    """The fitted tamer's rules at the resolution of ``cal``; for fitted thresholds, accuracy
    out of fold (:func:`out_of_fold_accuracy`; the full model keeps its own)."""
    taus = tamer.resolved_rules(cal)
    menu = _menu(cal, tamer.decide_rules(cal, taus), tamer.target,
                 lambda tr, ps: tamer.decide_rules(tr, taus[ps]))
    oof = out_of_fold_accuracy(tamer, menu.cost[:-1])
    if oof is not None:
        menu.accuracy = np.r_[oof, menu.accuracy[-1]]
    return menu


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
    (:func:`meets_target`)."""
    confidence = check_confidence(confidence)
    menus = {name: tamer_points(t, calibration) for name, t in tamers.items()}
    menus |= {h: heuristic_points(calibration, h, target) for h in heuristics}
    menus["static"] = static_points(calibration, target)
    full_cal = exit_wrong(calibration, target)[:, -1] == 0
    test_full = float(1.0 - exit_wrong(test, target)[:, -1].mean())
    picked: dict[str, ExitDecisions] = {}
    for name, menu in menus.items():
        ps = []
        for drop in TARGETS.values():
            ok = meets_target(menu, full_cal, drop, confidence, test.n_examples)
            ps.append(int(np.flatnonzero(ok)[np.argmin(menu.cost[ok])]))  # the full model always qualifies
        picked[name] = menu.apply(test, np.array(ps))
    out: dict[str, Any] = {}
    for k, (tname, drop) in enumerate(TARGETS.items()):
        rows = {name: _score(dec[k], test, target, test_full - drop) for name, dec in picked.items()}
        out[tname] = {"accuracy_drop": drop, "confidence": confidence,
                      "calibration_target": float(full_cal.mean()) - drop, "test_target": test_full - drop,
                      "strategies": rows}
    return out
