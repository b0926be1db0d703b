"""Logistic models of "this exit is right", fitted by Newton's method (the book's chapter *Early exit on real models*).

:func:`fit_logistic` is a ridge-penalised logistic regression; the per-exit models of the
learned confidence feature (``_logistic_models``, ``_predict``) and the posterior models of
"exit ``j ≤ i``'s prediction is right" given exits ``0..i`` (``_posterior_models``,
:func:`pair_features`, :func:`posterior_answers`) are built on it.
"""

from __future__ import annotations

from typing import Any, Iterator

import numpy as np

from ..core.errors import TTamerError
from ..core.validate import check_count, check_int, check_numbers, check_real, short_repr
from .base import check_trace
from .online import hypothesis_features, log_odds
from .thresholds import evenly
from .traces import Trace

#: Most examples, evenly spaced, that the logistic models are fitted on. Beyond them a model
#: of a few coefficients moves by far less than its sampling error, and the Newton steps cost
#: time in proportion to the rows.
LOGISTIC_MAX_EXAMPLES = 20_000
#: Most Newton steps :func:`fit_logistic` may be asked for (it stops earlier once a step is
#: negligible; a few tens are the most it takes on separable data with a ridge).
MAX_NEWTON_STEPS = 1000


def fit_logistic(x: Any, y: Any, ridge: float = 1e-2, iters: int = 30) -> np.ndarray:
    """Ridge-penalised logistic regression by Newton's method: ``w`` minimising
    ``−Σ [y log σ(xw) + (1−y) log(1−σ(xw))] + ridge·n·|w_{1:}|²/2`` (bias unpenalised), in
    at most ``iters`` steps.

    Raises
    ------
    TTamerError
        For an ``x`` that is not a non-empty 2-D array ``[n, F]`` of finite numbers, a ``y``
        that is not a 1-D array of ``n`` numbers in [0, 1], a ``ridge`` that is not a finite
        number ``>= 0``, or an ``iters`` that is not an integer in ``1..MAX_NEWTON_STEPS``.
    """
    x = check_numbers(x, "x", ndim=2)
    y = check_numbers(y, "y", low=0.0, high=1.0)
    if len(y) != len(x):
        raise TTamerError(f"y has {len(y):,} values, x {len(x):,} rows: one target per row")
    return _newton(x, y, check_real(ridge, "ridge", low=0.0), check_count(iters, "iters", maximum=MAX_NEWTON_STEPS))


def _newton(x: np.ndarray, y: np.ndarray, ridge: float = 1e-2, iters: int = 30) -> np.ndarray:
    """:func:`fit_logistic` of checked arrays."""
    n, f = x.shape
    w = np.zeros(f)
    pen = np.full(f, ridge * n)
    pen[0] = 1e-9 * n
    for _ in range(iters):
        p = 1.0 / (1.0 + np.exp(-np.clip(x @ w, -30, 30)))
        grad = x.T @ (p - y) + pen * w
        hess = (x * (p * (1 - p))[:, None]).T @ x + np.diag(pen)
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.abs(step).max() < 1e-8:
            break
    return w


def feature_scale(x: np.ndarray) -> np.ndarray:
    """``[F]`` the scale of each column of the features ``x [n, F]`` (column 0 the bias, scale 1):
    its standard deviation, or ``+inf`` for a column constant over the examples (e.g. a uniform
    softmax's log-odds, or the earlier exits' features at exit 0), which then drops out of the
    model instead of being blown up into a singular Newton step.

    Raises
    ------
    TTamerError
        For an ``x`` that is not a non-empty 2-D array of finite numbers.
    """
    sd = check_numbers(x, "x", ndim=2).std(axis=0)
    scale = np.where(sd > 1e-9, sd, np.inf)
    scale[0] = 1.0
    return scale


def _logistic_models(x: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-exit logistic models of ``target [N, L]`` on ``x [N, L, F]``: (weights ``[L, F]``,
    feature scale ``[F]``), on at most :data:`LOGISTIC_MAX_EXAMPLES` examples."""
    if len(x) > LOGISTIC_MAX_EXAMPLES:
        keep = evenly(len(x), LOGISTIC_MAX_EXAMPLES)
        x, target = x[keep], target[keep]
    scale = feature_scale(x.reshape(-1, x.shape[2]))
    w = np.stack([_newton(x[:, i] / scale, target[:, i]) for i in range(x.shape[1])])
    return w, scale


def _predict(x: np.ndarray, w: np.ndarray, scale: np.ndarray) -> np.ndarray:
    z = np.einsum("nlf,lf->nl", x / scale, w)
    return 1.0 / (1.0 + np.exp(-np.clip(z, -30, 30)))


def pair_features(trace: Trace, i: int) -> np.ndarray:
    """``[N, i+1, F]`` features, observable once exit ``i`` has run, of the hypothesis
    "exit ``j ≤ i``'s prediction is right": a bias, exit ``j``'s max-probability log-odds,
    exit ``i``'s, the share of exits ``0..i`` predicting exit ``j``'s class, the log-odds of
    the running ensemble ``p̄_i(ĉ_j) = mean_{k≤i} p_k(ĉ_j)`` of that class, and whether
    ``j = i``.

    Raises
    ------
    TTamerError
        For a ``trace`` that :func:`~ttamer.earlyexit.base.check_trace` refuses, or an ``i``
        that is not one of its exits.
    """
    check_trace(trace, "pair_features")
    i = check_int(i, "i (an exit)", minimum=0, maximum=trace.n_exits - 1)
    ens = trace.probs[:, : i + 1].astype(np.float64).mean(axis=1)  # [N, C]
    return _pair_features(log_odds(trace.max_prob[:, : i + 1]), trace.predictions[:, : i + 1], ens)


def pair_feature_stream(trace: Trace) -> Iterator[np.ndarray]:
    """:func:`pair_features` of ``trace`` at exits ``i = 0, 1, …, L−1`` in turn, from the
    exits' log-odds and predictions computed once and the running sum of the softmaxes (the
    sum :func:`pair_features`' mean takes, exit by exit: the same numbers)."""
    lo, pred = log_odds(trace.max_prob), trace.predictions
    total = np.zeros((trace.n_examples, trace.n_classes))
    for i in range(trace.n_exits):
        total += trace.probs[:, i]
        yield _pair_features(lo[:, : i + 1], pred[:, : i + 1], total / (i + 1))


def _pair_features(lo: np.ndarray, pred: np.ndarray, ens: np.ndarray) -> np.ndarray:
    """:func:`pair_features` from the log-odds and predictions ``[N, i+1]`` of exits ``0..i``
    and their running ensemble ``ens [N, C]`` (the share of exits predicting each class by
    comparing the predictions)."""
    return hypothesis_features(lo, pred, ens, (pred[:, :, None] == pred[:, None, :]).mean(axis=1))


def _posterior_models(trace: Trace, wrong: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per exit ``i`` a logistic model of P(exit ``j`` right | history ``0..i``), ``j ≤ i``,
    fitted on all pairs ``(example, j)`` (``wrong [N, L]`` 0/1 losses) of at most
    :data:`LOGISTIC_MAX_EXAMPLES` examples."""
    if trace.n_examples > LOGISTIC_MAX_EXAMPLES:
        keep = evenly(trace.n_examples, LOGISTIC_MAX_EXAMPLES)
        trace, wrong = trace.subset(keep), wrong[keep]
    out = []
    for i, feats in enumerate(pair_feature_stream(trace)):
        x = feats.reshape(-1, 6)
        y = 1.0 - wrong[:, : i + 1].reshape(-1)
        scale = feature_scale(x)
        out.append((_newton(x / scale, y), scale))
    return out


def posterior_answers(trace: Trace, models: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """``(q [N, L], a [N, L])``: after exit ``i``, the exit ``a_i ≤ i`` whose prediction is
    most probably right given exits ``0..i`` (the *posterior answer*) and that probability
    ``q_i = max_{j≤i} P̂(exit j right | history 0..i)``.

    Raises
    ------
    TTamerError
        For a ``trace`` that :func:`~ttamer.earlyexit.base.check_trace` refuses, or ``models``
        that are not a list of one model per exit of ``trace``.
    """
    check_trace(trace, "posterior_answers")
    if not isinstance(models, (list, tuple)) or len(models) != trace.n_exits:
        raise TTamerError(f"posterior_answers: models must be a list of {trace.n_exits} fitted (weights, scale) "
                          f"pairs, one per exit of the trace, got {short_repr(models)}")
    n, L = trace.n_examples, trace.n_exits
    q, a = np.zeros((n, L)), np.zeros((n, L), dtype=np.int64)
    for i, ((w, scale), feats) in enumerate(zip(models, pair_feature_stream(trace))):
        z = feats @ (w / scale)
        p = 1.0 / (1.0 + np.exp(-np.clip(z, -30, 30)))
        a[:, i] = p.argmax(axis=1)
        q[:, i] = p.max(axis=1)
    return q, a


