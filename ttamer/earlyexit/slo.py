"""The engineer's protocol: meet an accuracy target, choosing on calibration examples only.

A serving team fixes a target -- the full model's accuracy, or 0.5 or 1 point below it -- and
each strategy picks its operating point on the **calibration** examples: a heuristic the
cheapest threshold whose calibration accuracy reaches the target
(:func:`~ttamer.earlyexit.heuristics.calibrated_threshold`), a static exit the cheapest exit
that does, T-Tamer the cheapest budget of its sweep whose *out-of-fold* accuracy does where it fitted
more than one threshold (the offset and per-exit classes: from the held-out folds of its
cross-validation, so that a fitted rule is not judged on the examples it was fitted on), and
like a heuristic where its rule is one threshold on a state. The chosen operating point is then scored on the **test**
examples: its mean cost (a fraction of the full model's), its accuracy, and whether the
target -- the test full model's accuracy minus the same drop -- held. A strategy that cannot
reach the target on calibration runs the full model.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .traces import ExitDecisions, Trace
from .states import exit_wrong
from .heuristics import HEURISTIC_RULES, calibrated_thresholds, sweep
from .tamer import ThresholdTamer

#: Target name -> accuracy drop below the full model's accuracy.
TARGETS = {"full": 0.0, "full-0.5pt": 0.005, "full-1pt": 0.01}


def out_of_fold_accuracy(tamer: ThresholdTamer) -> np.ndarray:
    """``[P]`` accuracy of the fitted sweep's budgets on held-out calibration folds: per fold,
    the fold's most accurate rule within the budget (in-sample if there was no
    cross-validation)."""
    curves = getattr(tamer, "cv_curves_", {}).get(tamer.candidate_.key)
    budgets = tamer.sweep_cost_
    if not curves or tamer.candidate_.thresholds == "common":  # one threshold: like a heuristic
        return 1.0 - tamer.sweep_loss_
    per_fold = []
    for c in curves:
        j = np.searchsorted(c["budget"], budgets + 1e-12, side="right") - 1
        per_fold.append(c["accuracy"][np.clip(j, 0, None)])
    return np.mean(per_fold, axis=0)


def _score(dec: ExitDecisions, test: Trace, target: str, test_target: float) -> dict[str, Any]:
    acc = float(dec.correct(test, target).mean())
    return {"cost": float(dec.cost.mean() / test.full_cost.mean()), "accuracy": acc,
            "met": bool(acc >= test_target - 1e-12)}


def _tamer_points(tamer: ThresholdTamer, test: Trace, accuracies: list[float]) -> list[ExitDecisions]:
    """Per calibration accuracy target, the tamer's cheapest budget reaching it out of fold (the
    full model if none does), run on ``test``."""
    acc = out_of_fold_accuracy(tamer)
    first = [np.flatnonzero(acc >= a - 1e-12) for a in accuracies]
    return tamer.decide_budgets(test, [int(ok[0]) if len(ok) else len(tamer.sweep_cost_) for ok in first])


def _static_point(calibration: Trace, test: Trace, accuracy: float, target: str) -> ExitDecisions:
    ok = np.flatnonzero(1.0 - exit_wrong(calibration, target).mean(axis=0) >= accuracy - 1e-12)
    k = int(ok[0]) if len(ok) else test.n_exits - 1
    last = np.full(test.n_examples, k)
    return ExitDecisions.from_last(test, last, last)


def slo_block(calibration: Trace, test: Trace, tamers: dict[str, ThresholdTamer], target: str = "label",
              heuristics: tuple[str, ...] = tuple(HEURISTIC_RULES)) -> dict[str, Any]:
    """For every target of :data:`TARGETS`: the calibration and test accuracy targets and, per
    strategy (the fitted ``tamers`` by name, the ``heuristics``, ``static``), the test
    ``cost``, ``accuracy`` and whether the target was ``met``."""
    def full_acc(tr: Trace) -> float:
        return float(1.0 - exit_wrong(tr, target)[:, -1].mean())

    cal_ts = [full_acc(calibration) - drop for drop in TARGETS.values()]
    points = {tname: _tamer_points(tamer, test, cal_ts) for tname, tamer in tamers.items()}
    points |= {h: sweep(test, h, calibrated_thresholds(calibration, h, cal_ts, target)) for h in heuristics}
    out: dict[str, Any] = {}
    for k, (name, drop) in enumerate(TARGETS.items()):
        cal_t, test_t = cal_ts[k], full_acc(test) - drop
        rows: dict[str, Any] = {s: _score(p[k], test, target, test_t) for s, p in points.items()}
        rows["static"] = _score(_static_point(calibration, test, cal_t, target), test, target, test_t)
        out[name] = {"accuracy_drop": drop, "calibration_target": cal_t, "test_target": test_t, "strategies": rows}
    return out
