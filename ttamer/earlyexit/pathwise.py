"""T-Tamer's chain recursion estimated along real calibration paths (Longstaff–Schwartz).

The chain estimation of :mod:`ttamer.earlyexit.calibration` fits a Markov chain (binned states,
transition counts) and solves it exactly. Its expectations ``Σ_t P[s, t] W_{i+1}(t)`` are only
right if the binned state is Markov; on real networks it is not (later exits say much about
earlier ones, :func:`ttamer.earlyexit.evaluation.markov_violation`), and bins cost resolution. This
module keeps the recursion of the book's chapter *Recall* on the chain of exits,

    W_i(x_i) = min( λ ℓ_i(x_i),  κ c_{i+1} + E[ W_{i+1} | x_i ] ),     κ = 1 − λ,

with a continuous state ``x_i`` (one feature per exit, below), and estimates the
conditional expectations by regression on the calibration examples' *realised* paths
(Longstaff & Schwartz 2001, for optimal stopping):

* ``ℓ_i(x) = σ(a_i + b_i x)`` -- logistic regression of the 0/1 loss of the answer given when
  stopping at exit ``i`` on ``x_i``;
* ``G_{L−1} = λ·loss_{L−1}`` per example; for ``i = L−2, …, 0``: ``C_i(x)`` = the least-squares
  polynomial of degree ``d`` in ``x_i`` fitted to ``κ c_{i+1} + G_{i+1}``; exit ``i`` stops
  where ``λ ℓ_i(x_i) ≤ C_i(x_i)``; ``G_i = λ·loss_i`` where it stops and ``κ c_{i+1} + G_{i+1}``
  elsewhere (the realised trade-off of the rule from exit ``i`` on).

``C_i`` estimates ``E[κ c_{i+1} + W_{i+1} | x_i]`` with no Markov assumption: the future enters
through what each calibration example really did next. The rule is a function of ``x_i``
alone, so it runs on new examples in one vectorised pass.

**State** ``x_i``: the log-odds of exit ``i``'s max-probability (``feature="max_prob"``) or of
the learned P(exit ``i`` is right | history of exits ``0..i``) (``"learned"``,
:func:`ttamer.earlyexit.features.history_features`), standardised per exit on the calibration
examples. **Answer** with recall: the exit stopped at (``answer="last"``) or the consulted
exit of largest learned P(right | history) (``"posterior"``,
:func:`ttamer.earlyexit.logistic.posterior_answers`); without recall always the exit stopped at.

:class:`PathwiseTamer` is the scikit-learn style front end (``fit`` on calibration examples,
``decide`` / ``decide_sweep`` on new ones); ``"auto"`` options are chosen by cross-validation
inside the calibration examples, exactly as for :class:`~ttamer.earlyexit.calibration.EarlyExitTamer`.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from functools import cached_property
from typing import Sequence

import numpy as np

from .crossval import check_lams, check_sweep_options, choose_by_cv, cv_folds_of, heldout_auc, lam_grid, refined_sweep
from .features import AUTO, LOSSES, exit_losses, history_features
from .logistic import _logistic_models, _posterior_models, _predict, fit_logistic, posterior_answers
from .online import MATH_RTOL, clip, log_odds
from ..core.errors import TraceError, TTamerError
from .traces import ExitDecisions, Trace
from ..core.validate import check_bool, check_choice, check_int, check_lam, check_seed
from .base import (ANSWER_RULES, FEATURES, MIN_FIT_EXAMPLES, BaseTamer, check_trace,
                   vocabulary_subset)

#: The state features of the path-wise regression (a subset of :data:`ttamer.earlyexit.base.FEATURES`).
PATH_FEATURES = vocabulary_subset(FEATURES, "max_prob", "learned")
#: Its answer rules (a subset of :data:`ttamer.earlyexit.base.ANSWER_RULES`).
PATH_ANSWER_RULES = vocabulary_subset(ANSWER_RULES, "last", "posterior")
#: Ridge of the per-exit logistic loss models (small, for two parameters and thousands of examples).
LOSS_RIDGE = 1e-4


def _powers(x: np.ndarray, degree: int) -> np.ndarray:
    """``[N, degree+1]``: ``1, x, …, x^degree``."""
    return x[:, None] ** np.arange(degree + 1)


@dataclass(frozen=True)
class StoppingRule:
    """The fitted rule for one ``λ``: exit ``i < L−1`` stops where
    ``λ σ(loss_coef[i] · (1, x)) ≤ cont_coef[i] · (1, x, …, x^d)``; the last exit always stops.

    Both sides are evaluated elementwise (``a + b·x``, the polynomial by Horner's rule), one
    correctly rounded operation after the other, so that :meth:`stops_one` computes the same
    numbers on Python floats for one state."""

    lam: float
    loss_coef: np.ndarray  # [L-1, 2]
    cont_coef: np.ndarray  # [L-1, d+1]

    def stop_value(self, i: int, x: np.ndarray) -> np.ndarray:
        """``λ ℓ_i(x) = λ σ(a_i + b_i x)``."""
        a, b = self.loss_coef[i]
        return self.lam / (1.0 + np.exp(-clip(a + b * x, -30, 30)))

    def continue_value(self, i: int, x: np.ndarray) -> np.ndarray:
        """``C_i(x)``, the estimated ``κ c_{i+1} + E[W_{i+1} | x_i = x]`` (Horner's rule)."""
        c = self.cont_coef[i]
        v = np.full(np.shape(x), c[-1])
        for ck in c[-2::-1]:
            v = v * x + ck
        return v

    def stops_one(self, i: int, x: float) -> bool:
        """Whether exit ``i < L−1`` stops on one state ``x``: :meth:`stop_value` ``≤``
        :meth:`continue_value` on Python floats, the same operations in the same order (each
        correctly rounded, as numpy's), the exponential numpy's own on a float64 scalar."""
        (a, b), c = self._coef_lists[i]
        z = min(max(a + b * x, -30.0), 30.0)
        stop = self.lam / (1.0 + float(np.exp(np.float64(-z))))
        v = c[-1]
        for ck in c[-2::-1]:
            v = v * x + ck
        return bool(stop <= v)

    def stops_near(self, i: int, x: float, dx: float) -> bool | None:
        """Whether exit ``i < L−1`` stops on every state within ``dx`` of ``x``, on Python's
        ``math.exp`` (a few microseconds faster than numpy's on one number), or ``None`` where
        the margin is too thin to tell.

        With :math:`g(x) = λ ℓ_i(x) − C_i(x)` evaluated at ``x``, the answer is :meth:`stops_one`'s
        at every :math:`x'` with :math:`|x' − x| ≤ dx` whenever :math:`|g(x)|` exceeds

        .. math::

            \\frac{λ}{4}\\bigl(|b_i|\\,dx + ε(|a_i| + |b_i| y)\\bigr) + ε\\,λ ℓ_i(x)
            + P'(y)\\,dx + ε P(y), \\qquad y = |x| + dx,

        where :math:`P(y) = \\sum_k |c_{ik}| y^k` bounds the polynomial and its rounding, ``λ/4``
        the logistic's slope, and :math:`ε` = :data:`~ttamer.earlyexit.online.MATH_RTOL` the
        rounding of either side (the exponentials of ``math`` and numpy differ by an ulp or two)."""
        (a, b), c = self._coef_lists[i]
        z = min(max(a + b * x, -30.0), 30.0)
        stop = self.lam / (1.0 + math.exp(-z))
        v = c[-1]
        for ck in c[-2::-1]:
            v = v * x + ck
        y = abs(x) + dx
        p_abs = dp_abs = 0.0
        for ck in self._abs_cont[i]:  # Horner's rule for P(y) and P'(y), highest power first
            dp_abs = dp_abs * y + p_abs
            p_abs = p_abs * y + ck
        err = (0.25 * abs(self.lam) * (abs(b) * dx + MATH_RTOL * (abs(a) + abs(b) * y)) + MATH_RTOL * abs(stop)
               + dp_abs * dx + MATH_RTOL * p_abs)
        g = stop - v
        return True if g < -err else False if g > err else None

    @cached_property
    def _coef_lists(self) -> list[tuple[list[float], list[float]]]:
        """Per exit ``i < L−1`` its coefficients as Python floats (for :meth:`stops_one`)."""
        return list(zip(self.loss_coef.tolist(), self.cont_coef.tolist()))

    @cached_property
    def _abs_cont(self) -> list[list[float]]:
        """Per exit ``i < L−1`` the absolute polynomial coefficients, highest power first (for
        :meth:`stops_near`)."""
        return np.abs(self.cont_coef[:, ::-1]).tolist()

    def stops(self, x: np.ndarray) -> np.ndarray:
        """``[N, L]`` bool: whether the rule stops at each exit (``x [N, L]``)."""
        out = np.ones(x.shape, dtype=bool)
        for i in range(x.shape[1] - 1):
            out[:, i] = self.stop_value(i, x[:, i]) <= self.continue_value(i, x[:, i])
        return out

    def last(self, x: np.ndarray) -> np.ndarray:
        """``[N]``: the exit each example stops at (the first exit whose rule says stop)."""
        return self.stops(x).argmax(axis=1)


def fit_loss_models(x: np.ndarray, loss: np.ndarray) -> np.ndarray:
    """``[L−1, 2]``: per exit ``i < L−1`` the logistic regression ``(a_i, b_i)`` of the 0/1
    ``loss[:, i]`` on ``x[:, i]`` (``ℓ_i(x) = σ(a_i + b_i x)``); independent of ``λ``."""
    return np.array([fit_logistic(_powers(x[:, i], 1), loss[:, i], ridge=LOSS_RIDGE)
                     for i in range(x.shape[1] - 1)]).reshape(-1, 2)


def fit_stopping_rule(x: np.ndarray, loss: np.ndarray, costs: np.ndarray, lam: float,
                      degree: int = 3, loss_coef: np.ndarray | None = None) -> StoppingRule:
    """The Longstaff–Schwartz rule of the module docstring from calibration features
    ``x [N, L]``, 0/1 ``loss [N, L]`` of the answer given when stopping at each exit, and edge
    costs ``costs [L]`` (``costs[i]`` = cost of running exit ``i``); ``loss_coef`` =
    :func:`fit_loss_models` ``(x, loss)`` if already known. Loops over exits only."""
    n, L = x.shape
    if loss.shape != (n, L) or costs.shape != (L,):
        raise TTamerError(f"fit_stopping_rule: x {x.shape}, loss {loss.shape} and costs {costs.shape} disagree")
    lam = check_lam(lam)
    kappa = 1.0 - lam
    G = lam * loss[:, L - 1]
    loss_coef = fit_loss_models(x, loss) if loss_coef is None else loss_coef
    cont_coef = np.zeros((max(L - 1, 0), degree + 1))
    for i in range(L - 2, -1, -1):
        target = kappa * costs[i + 1] + G
        cont_coef[i] = np.linalg.lstsq(_powers(x[:, i], degree), target, rcond=None)[0]
        rule = StoppingRule(lam, loss_coef, cont_coef)
        stop = rule.stop_value(i, x[:, i]) <= rule.continue_value(i, x[:, i])
        G = np.where(stop, lam * loss[:, i], target)
    return StoppingRule(float(lam), loss_coef, cont_coef)


@dataclass
class PathFeatures:
    """A fitted state ``x``: per-exit log-odds of the feature, standardised on the calibration
    examples (``center``, ``scale`` ``[L]``), and the logistic models of ``"learned"``."""

    feature: str
    center: np.ndarray
    scale: np.ndarray
    model: tuple[np.ndarray, np.ndarray] | None = None

    @classmethod
    def fit(cls, trace: Trace, feature: str, loss: np.ndarray) -> "PathFeatures":
        if feature not in PATH_FEATURES:
            raise TTamerError(f"feature must be one of {PATH_FEATURES} or 'auto', got {feature!r}")
        model = _logistic_models(history_features(trace), 1.0 - loss) if feature == "learned" else None
        raw = cls(feature, np.zeros(trace.n_exits), np.ones(trace.n_exits), model).raw(trace)
        return cls(feature, raw.mean(axis=0), np.maximum(raw.std(axis=0), 1e-9), model)

    def raw(self, trace: Trace) -> np.ndarray:
        if self.feature == "learned":
            return log_odds(_predict(history_features(trace), *self.model))
        return log_odds(trace.max_prob)

    def transform(self, trace: Trace) -> np.ndarray:
        """``[N, L]`` standardised state of every exit."""
        if trace.n_exits != len(self.center):
            raise TraceError(f"trace has {trace.n_exits} exits; the features were fitted on {len(self.center)}")
        return (self.raw(trace) - self.center) / self.scale


@dataclass
class _PathModel:
    """Everything a :class:`PathwiseTamer` fits except the ``λ``-dependent rule."""

    features: PathFeatures
    answer_models: list | None
    loss: np.ndarray  # [N, L] loss of the answer given when stopping at each exit (calibration)
    x: np.ndarray  # [N, L] calibration states
    costs: np.ndarray
    loss_coef: np.ndarray | None = None  # fit_loss_models(x, loss), set by _fit_model

    def answers(self, trace: Trace) -> np.ndarray:
        """``[N, L]``: the exit answered with when stopping at each exit."""
        if self.answer_models is None:
            return np.broadcast_to(np.arange(trace.n_exits), (trace.n_examples, trace.n_exits))
        return posterior_answers(trace, self.answer_models)[1]

    def decide(self, rule: StoppingRule, trace: Trace, x: np.ndarray, answers: np.ndarray,
               name: str = "") -> ExitDecisions:
        last = rule.last(x)
        answer = answers[np.arange(trace.n_examples), last]
        return ExitDecisions.from_last(trace, answer, last, name=name)


def _fit_model(trace: Trace, feature: str, loss: str, answer: str, normalize_cost: bool) -> _PathModel:
    wrong = exit_losses(trace, loss)
    features = PathFeatures.fit(trace, feature, wrong)
    models = _posterior_models(trace, wrong) if answer == "posterior" else None
    costs = trace.mean_cost
    if normalize_cost:
        if costs.sum() <= 0:
            raise TraceError("key 'cost': the full model's mean cost is 0; cannot normalise")
        costs = costs / costs.sum()
    model = _PathModel(features, models, wrong, features.transform(trace), costs)
    if models is not None:
        model.loss = np.take_along_axis(wrong, model.answers(trace), axis=1)
    model.loss_coef = fit_loss_models(model.x, model.loss)
    return model


@dataclass(frozen=True)
class PathCandidate:
    """One configuration tried by :meth:`PathwiseTamer.fit`'s cross-validation."""

    feature: str
    loss: str
    answer: str

    def describe(self) -> str:
        rule = ", posterior answer" if self.answer == "posterior" else ""
        return f"path-wise, {self.feature} log-odds state, loss={self.loss}{rule}"


class PathwiseTamer(BaseTamer):
    """T-Tamer on a chain of exits with path-wise (Longstaff–Schwartz) estimation (module
    docstring), scikit-learn style.

    ``"auto"`` values (``feature``, ``loss``, ``answer``) are chosen by ``cv_folds``-fold
    cross-validation inside the calibration examples (held-out frontier area, as
    :class:`~ttamer.earlyexit.calibration.EarlyExitTamer`); without recall the answer is the
    exit stopped at.

    Parameters
    ----------
    lam : float, default 0.95
        The trade-off ``λ`` of :meth:`decide`.
    recall : bool, default True
        Whether the rule may answer with an earlier consulted exit.
    feature : {"max_prob", "learned", "auto"}, default "auto"
        The state ``x_i`` (:data:`PATH_FEATURES`).
    loss : {"final", "label", "auto"}, default "final"
        What the fitted losses count as an error.
    answer : {"last", "posterior", "auto"}, default "last"
        With recall, the exit answered with (:data:`PATH_ANSWER_RULES`).
    degree : int, default 3
        Degree of the polynomial regression of the continuation value (1 to 6).
    normalize_cost : bool, default True
        Divide the exit costs by the full model's mean cost.
    cv_folds : int, default 3
        Folds of the cross-validation.
    cv_lams : sequence of float, optional
        The ``λ`` grid swept on the held-out folds (default 24 values of
        :func:`~ttamer.earlyexit.crossval.lam_grid`).
    target : {"label", "final"}, default "label"
        What an answer is judged against in the cross-validation.
    seed : int, default 0
        Seed of the folds.

    Attributes
    ----------
    candidate_ : PathCandidate
        The chosen configuration (its ``feature``, ``loss`` and ``answer``).
    answer_ : str
        The answer rule used (``candidate_.answer``).
    cv_scores_ : list of (PathCandidate, float)
        The cross-validated candidates and their scores.
    model_, rule_
        The fitted state, answer and loss models, and the :class:`StoppingRule` at ``lam``.
    """

    def __init__(self, lam: float = 0.95, recall: bool = True, feature: str = AUTO, loss: str = "final",
                 answer: str = "last", degree: int = 3, normalize_cost: bool = True, cv_folds: int = 3,
                 cv_lams: Sequence[float] | None = None, target: str = "label", seed: int = 0) -> None:
        self.lam = lam
        self.recall = recall
        self.feature = feature
        self.loss = loss
        self.answer = answer
        self.degree = degree
        self.normalize_cost = normalize_cost
        self.cv_folds = cv_folds
        self.cv_lams = cv_lams
        self.target = target
        self.seed = seed

    def _validated(self) -> None:
        """Check the constructor's parameters (called by :meth:`fit`; nothing is converted)."""
        for name, value, allowed in (("feature", self.feature, PATH_FEATURES), ("loss", self.loss, LOSSES),
                                     ("answer", self.answer, PATH_ANSWER_RULES)):
            check_choice(name, value, allowed, auto=True)
        check_int(self.degree, "degree", minimum=1, maximum=6)
        check_int(self.cv_folds, "cv_folds", minimum=2)
        check_lam(self.lam)
        check_bool(self.recall, "recall")
        check_bool(self.normalize_cost, "normalize_cost")
        check_seed(self.seed)
        check_choice("target", self.target, LOSSES)
        if self.cv_lams is not None:
            check_lams(self.cv_lams, "cv_lams")

    @property
    def _cv_lams(self) -> np.ndarray:
        return lam_grid(24) if self.cv_lams is None else check_lams(self.cv_lams, "cv_lams")

    def candidates(self) -> list[PathCandidate]:
        """The concrete configurations the ``"auto"`` fields expand to."""
        feats = list(PATH_FEATURES) if self.feature == AUTO else [self.feature]
        losses = list(LOSSES)[::-1] if self.loss == AUTO else [self.loss]
        rules = ["last"] if not self.recall else (list(PATH_ANSWER_RULES) if self.answer == AUTO
                                                  else [self.answer])
        return [PathCandidate(*c) for c in itertools.product(feats, losses, rules)]

    def fit(self, trace: Trace) -> "PathwiseTamer":
        """Choose the configuration (if any field is ``"auto"``), fit the state, answer and
        loss models on ``trace``, and fit the stopping rule at ``lam``."""
        self._validated()
        check_trace(trace, "PathwiseTamer.fit", MIN_FIT_EXAMPLES, chain=True).validate()
        best, self.cv_scores_ = choose_by_cv(trace, self.candidates(), self._cv_score, int(self.cv_folds),
                                             "feature, loss and answer")
        self.candidate_ = best
        self.answer_ = best.answer
        self.model_ = _fit_model(trace, best.feature, best.loss, best.answer, self.normalize_cost)
        self.fitted_shape_ = (trace.n_exits, trace.n_classes)
        self.rule_ = self._rule(self.model_, self.lam)
        return self

    def _rule(self, model: _PathModel, lam: float) -> StoppingRule:
        return fit_stopping_rule(model.x, model.loss, model.costs, lam, int(self.degree), model.loss_coef)

    def _sweep(self, model: _PathModel, trace: Trace, lams: Sequence[float], refine: bool = True,
               max_gap: float = 0.01, max_points: int = 160) -> ExitDecisions:
        x, answers = model.features.transform(trace), model.answers(trace)
        return refined_sweep(lambda some: [model.decide(self._rule(model, lam), trace, x, answers, self.name)
                                           for lam in some], trace, lams, refine, max_gap, max_points, self.name)

    def _cv_score(self, trace: Trace, cand: PathCandidate) -> float:
        folds = cv_folds_of(trace.n_examples, int(self.cv_folds), self.seed)
        scores = []
        for f in range(int(self.cv_folds)):
            tr, te = trace.subset(folds != f), trace.subset(folds == f)
            model = _fit_model(tr, cand.feature, cand.loss, cand.answer, self.normalize_cost)
            scores.append(heldout_auc(self._sweep(model, te, self._cv_lams, max_gap=0.02, max_points=64),
                                      te, self.target))
        return float(np.mean(scores))

    # ------------------------------------------------------------------ deciding
    def check_fitted(self) -> None:
        if not hasattr(self, "rule_"):
            raise TTamerError("PathwiseTamer is not fitted; call fit(calibration_trace) first")

    def set_lam(self, lam: float) -> "PathwiseTamer":
        """Refit the stopping rule at another ``λ`` (same state, answer and loss models)."""
        self.check_fitted()
        self.lam = check_lam(lam)
        self.rule_ = self._rule(self.model_, self.lam)
        return self

    def decide(self, trace: Trace) -> ExitDecisions:
        """The exit answered with, the last exit consulted and the cost, per example."""
        self.check_input(trace)
        m = self.model_
        return m.decide(self.rule_, trace, m.features.transform(trace), m.answers(trace), self.name)

    def decide_sweep(self, trace: Trace, lams: Sequence[float] | None = None, refine: bool = True,
                     max_gap: float = 0.005, max_points: int = 320) -> ExitDecisions:
        """:meth:`decide` for many ``λ`` (default :func:`~ttamer.earlyexit.crossval.lam_grid` with 120
        values, refined where the mean cost jumps by more than ``max_gap``): arrays ``[P, N]``.
        The rule has a continuous state, so it takes a denser sweep than a binned chain."""
        self.check_input(trace)
        lams = lam_grid(120) if lams is None else check_lams(lams)
        check_sweep_options(refine, max_gap, max_points)
        return self._sweep(self.model_, trace, lams, refine, max_gap, max_points)

    @property
    def name(self) -> str:
        return "ttamer" if self.recall else "no-recall"

    def describe(self) -> str:
        self.check_fitted()
        return self.candidate_.describe() + f", degree {int(self.degree)}"

    def __repr__(self) -> str:
        fitted = f", fitted: {self.describe()}" if hasattr(self, "rule_") else ""
        return (f"PathwiseTamer(lam={self.lam!r}, recall={self.recall}, feature={self.feature!r}, "
                f"loss={self.loss!r}{fitted})")
