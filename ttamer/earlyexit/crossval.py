"""λ grids, refined λ sweeps and the cross-validation the estimators choose their options by (the book's chapter *Early exit on real models*)."""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

from ..core.errors import TTamerError
from ..core.validate import check_bool, check_count, check_int, check_numbers, check_real, check_seed, short_repr
from .heuristics import MAX_SWEEP_CELLS
from .metrics import MAX_SWEEP_POINTS, frontier_auc, pareto_frontier
from .base import check_trace
from .thresholds import evenly
from .traces import ExitDecisions, Trace

#: ``"auto"`` needs at least this many calibration examples per cross-validation fold.
MIN_CV_EXAMPLES = 20
#: Cross-validation scores are computed on at most this many calibration examples.
MAX_CV_EXAMPLES = 5000
#: Most examples :func:`cv_folds_of` assigns to folds (its permutation holds 8 bytes each):
#: more than a trace of :data:`~ttamer.earlyexit.traces.MAX_TRACE_BYTES` holds.
MAX_FOLD_EXAMPLES = 2**27
#: Most values of a :func:`lam_grid` (as many as :class:`~ttamer.earlyexit.tamer.ThresholdTamer`'s
#: ``n_lams`` allows).
MAX_LAM_GRID = 10_000


def lam_grid(n: int = 60, lo: float = 1e-2, hi: float = 1e4) -> np.ndarray:
    """``λ`` values with ``λ/(1−λ)`` log-spaced in ``[lo, hi]`` (plus nothing else): with costs
    as fractions of the full model and losses as error rates, the interesting trade-offs
    sit at ratios between about 0.01 and 10⁴.

    Raises
    ------
    TTamerError
        For an ``n`` that is not an integer in ``1..MAX_LAM_GRID``, a ``lo`` that is not a
        finite number ``> 0``, or a ``hi`` that is not a finite number ``>= lo``.
    """
    n = check_count(n, "n", maximum=MAX_LAM_GRID)
    lo = check_real(lo, "lo", low=0.0, low_open=True)
    hi = check_real(hi, "hi", low=lo)
    r = np.logspace(np.log10(lo), np.log10(hi), n)
    return r / (1.0 + r)



def check_lams(lams: Any, name: str = "lams") -> np.ndarray:
    """``lams`` as a non-empty 1-D float array of values in ``[0, 1]``, at most
    :data:`~ttamer.earlyexit.metrics.MAX_SWEEP_POINTS` of them (one pass over the values).

    Raises
    ------
    TTamerError
        Naming ``name``, for anything else (strings, booleans, ``nan``, nesting, too many).
    """
    return check_numbers(lams, name, low=0.0, high=1.0, max_len=MAX_SWEEP_POINTS)


def check_sweep_options(refine: Any, max_gap: Any, max_points: Any) -> None:
    """Check the options of a refined ``decide_sweep`` (:func:`refined_sweep`): ``refine`` a
    flag, ``max_gap`` a number ``>= 0`` (a fraction of the full model's cost), ``max_points`` an integer in
    ``2..MAX_SWEEP_POINTS``; a :class:`~ttamer.core.errors.TTamerError` naming the option
    otherwise."""
    check_bool(refine, "refine")
    check_real(max_gap, "max_gap", low=0.0)
    check_int(max_points, "max_points", minimum=2, maximum=MAX_SWEEP_POINTS)


def refined_sweep(run: Callable[[list[float]], list[ExitDecisions]], trace: Trace, lams: Sequence[float],
                  refine: bool = True, max_gap: float = 0.01, max_points: int = 160,
                  name: str = "") -> ExitDecisions:
    """``run(some)`` (the decisions on ``trace`` of the policies fitted for the ``λ`` values
    ``some``, one each) for every ``λ`` in ``lams``: arrays ``[P, N]``, ``params`` = the ``λ``
    values, increasing.

    With ``refine``, ``λ`` values are bisected (in ``log λ/(1−λ)``) wherever two neighbours'
    mean costs on ``trace`` differ by more than ``max_gap`` (a fraction of the full cost), up
    to ``max_points`` values in all; each round of bisections is one call of ``run``. Only
    costs are read, never labels. The sweep holds at most
    :data:`~ttamer.earlyexit.heuristics.MAX_SWEEP_CELLS` decisions: on ``N`` examples, at most
    ``MAX_SWEEP_CELLS / N`` values (``lams`` thinned evenly to them, ends kept).

    Raises
    ------
    TTamerError
        Before any call of ``run``, for a ``run`` that is not callable, a ``trace`` that is
        not a :class:`~ttamer.earlyexit.traces.Trace`, ``lams`` that :func:`check_lams`
        refuses, or options that :func:`check_sweep_options` refuses.
    """
    if not callable(run):
        raise TTamerError(f"refined_sweep: run must be a function of the λ values, got {type(run).__name__}")
    check_trace(trace, "refined_sweep")
    lams = check_lams(lams)
    check_sweep_options(refine, max_gap, max_points)
    scale = trace.full_cost.mean()
    max_points = min(int(max_points), max(2, MAX_SWEEP_CELLS // trace.n_examples))
    first = list(dict.fromkeys(float(lam) for lam in lams))
    if len(first) > max_points:
        first = [first[i] for i in evenly(len(first), max_points)]
    decs = dict(zip(first, run(first)))
    while refine and len(decs) < max_points:
        keys = np.array(sorted(decs))
        cost = np.array([decs[k].cost.mean() / scale for k in keys])
        # λ = 0 counted as 1e-15, so that the gap above it is bisected
        logit = np.log(np.maximum(keys, 1e-15)) - np.log1p(-np.minimum(keys, 1 - 1e-15))
        gaps = np.flatnonzero((np.abs(np.diff(cost)) > max_gap) & (np.diff(logit) > 1e-3))
        more = [float(1.0 / (1.0 + np.exp(-0.5 * (logit[g] + logit[g + 1])))) for g in gaps[: max_points - len(decs)]]
        more = [lam for lam in dict.fromkeys(more) if lam not in decs]
        if not more:  # nothing left to bisect (or every midpoint already swept): never loop
            break
        decs.update(zip(more, run(more)))
    keys = sorted(decs)
    return ExitDecisions.stack([decs[k] for k in keys], keys, name)


def heldout_auc(decisions: ExitDecisions, test: Trace, target: str = "label") -> float:
    """Normalised area under the accuracy–cost frontier of a sweep on held-out examples,
    over the cost range from exit 0 alone to the full model (just below it where exit 0 alone
    costs as much, the later exits costing nothing): the cross-validation score."""
    scale = test.full_cost.mean()
    front = pareto_frontier(decisions.cost.mean(axis=1) / scale, decisions.correct(test, target).mean(axis=1))
    return frontier_auc(front, min(test.cumulative_cost[:, 0].mean() / scale, 1 - 1e-9), 1.0)


def choose_by_cv(trace: Trace, candidates: list, score: Callable, folds: int, options: str) -> tuple:
    """``(best, [(candidate, score), ...])``: the candidate of largest ``score(trace,
    candidate)`` (ties: the first listed); no scoring (and an empty list) when there is only
    one. Raises if ``trace`` is too small for ``folds``-fold cross-validation, naming the
    ``options`` to give explicitly instead. On a trace of more than :data:`MAX_CV_EXAMPLES`
    examples the scores are computed on a seeded sample of that many.

    Raises
    ------
    TTamerError
        Also for ``candidates`` that are not a non-empty list or tuple, or ``folds`` that is
        not an integer ``>= 2``.
    """
    if not isinstance(candidates, (list, tuple)) or not candidates:
        raise TTamerError(f"choose_by_cv: candidates must be a non-empty list of the options to choose from, got "
                          f"{short_repr(candidates)}")
    folds = check_count(folds, "choose_by_cv: folds", minimum=2)
    if len(candidates) == 1:
        return candidates[0], []
    if trace.n_examples < MIN_CV_EXAMPLES * folds:
        raise TTamerError(
            f"calibration trace has {trace.n_examples} examples: too few to choose the 'auto' options by "
            f"{folds}-fold cross-validation (need {MIN_CV_EXAMPLES * folds}): use more calibration examples, give "
            f"{options} explicitly (options of the estimator in Python), or use the threshold estimation "
            f"(ThresholdTamer, the default of ttamer evaluate), which fits on fewer")
    if trace.n_examples > MAX_CV_EXAMPLES:
        pick = np.random.default_rng(0).choice(trace.n_examples, MAX_CV_EXAMPLES, replace=False)
        trace = trace.subset(np.sort(pick))
    scores = [score(trace, c) for c in candidates]
    return candidates[int(np.argmax(scores))], list(zip(candidates, scores))


def cv_folds_of(n: int, folds: int, seed: int) -> np.ndarray:
    """``[n]`` fold index of each example (a seeded permutation, balanced).

    Raises
    ------
    TTamerError
        For an ``n`` that is not an integer in ``1..MAX_FOLD_EXAMPLES``, ``folds`` that is not
        an integer ``>= 2``, or a ``seed`` that :func:`~ttamer.core.validate.check_seed` refuses.
    """
    n = check_count(n, "n", maximum=MAX_FOLD_EXAMPLES)
    folds, seed = check_count(folds, "folds", minimum=2), check_seed(seed)
    return np.random.default_rng(seed).permutation(n) % folds


