"""What a stopping rule sees at each exit (its *state*) and which exit answers (*recall*).

A :class:`StateModel` maps a trace to two ``[N, L]`` arrays: the scalar state ``x_i``
observable once exit ``i`` has run, and the exit ``a_i ≤ i`` that answers if the rule stops
there. States (``state=``):

* ``"max_prob"`` -- exit ``i``'s largest class probability (BranchyNet, SDN);
* ``"neg_entropy"`` -- minus the entropy of exit ``i``'s output (DeeBERT);
* ``"patience"`` -- how many consecutive exits before ``i`` predicted exit ``i``'s class (PABEE);
* ``"learned"`` -- a logistic model of P(exit ``i`` right | what exits ``0..i`` showed),
  fitted on the calibration examples (:func:`ttamer.earlyexit.features.history_features`);
* ``"posterior"`` -- ``max_{j≤i}`` P̂(exit ``j`` right | exits ``0..i``): the probability that
  the recall answer is right (:func:`ttamer.earlyexit.logistic.posterior_answers`);
* ``"ensemble"`` -- the running ensemble's probability of the recall answer's class,
  ``max_{j≤i} p̄_i(ĉ_j)`` with ``p̄_i = (p_0 + … + p_i)/(i+1)`` (:func:`ensemble_answers`).

Answer rules (``answer=``): ``"last"`` -- the exit stopped at (no recall); ``"confident"`` --
the consulted exit of largest max-probability (SDN's fallback, a recall rule); ``"ensemble"`` --
the consulted exit whose predicted class the running ensemble ``p̄_i`` favours most (recall:
still one consulted exit's answer); ``"posterior"`` -- the consulted exit most probably right
given everything seen so far (recall); ``"ensemble_at_end"`` -- the exit stopped at, except when
the rule runs to the last exit, where the ``"ensemble"`` choice answers (a fallback, like SDN's);
``"posterior_at_end"`` -- the same with the ``"posterior"`` choice at the last exit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .base import ANSWER_RULES, check_trace, vocabulary_subset
from ..core.validate import check_choice, describe_value
from .baselines import agreement_run_length
from .features import history_features
from .logistic import _logistic_models, _posterior_models, _predict, posterior_answers
from ..core.errors import TTamerError, TraceError
from .traces import Trace, target_labels

STATES = ("max_prob", "neg_entropy", "patience", "learned", "posterior", "ensemble")
#: The answer rules of threshold rules (a subset of :data:`ttamer.earlyexit.base.ANSWER_RULES`).
ANSWERS = vocabulary_subset(ANSWER_RULES, "last", "confident", "posterior", "ensemble", "ensemble_at_end",
                            "posterior_at_end")
#: States that come with their own answer rule (and only with it).
PAIRED = ("posterior", "ensemble")
#: States and answer rules that are fitted on calibration examples.
FITTED = ("learned", "posterior")
#: The answer rules that read the posterior models (:func:`~ttamer.earlyexit.logistic.posterior_answers`).
POSTERIOR_ANSWERS = ("posterior", "posterior_at_end")


def fits_models(state: str, answer: str) -> bool:
    """Whether the pair (``state``, ``answer``) fits a logistic model on calibration examples
    (:meth:`StateModel.fit`); otherwise it reads the exits' outputs alone."""
    return state == "learned" or answer in POSTERIOR_ANSWERS


def exit_wrong(trace: Trace, target: str) -> np.ndarray:
    """``[N, L]`` float 0/1: exit ``i``'s prediction is wrong against ``target``."""
    return (trace.predictions != target_labels(trace, target)[:, None]).astype(np.float64)


def running_argmax(values: np.ndarray) -> np.ndarray:
    """``[N, L]``: index ``j ≤ i`` of the largest ``values[:, j]`` (first on ties)."""
    if not (isinstance(values, np.ndarray) and values.ndim == 2 and values.shape[1] and values.dtype.kind in "iuf"):
        raise TTamerError(f"running_argmax: values must be an array [N, L] of numbers (L >= 1), got "
                          f"{describe_value(values)}")
    if values.dtype.kind == "f" and np.isnan(values).any():
        raise TTamerError("running_argmax: values must not hold nan (no largest value to keep)")
    n, L = values.shape
    out = np.zeros((n, L), dtype=np.int64)
    best = values[:, 0].copy()
    for i in range(1, L):  # loop over exits only
        better = values[:, i] > best
        out[:, i] = np.where(better, i, out[:, i - 1])
        best = np.where(better, values[:, i], best)
    return out


def ensemble_answers(trace: Trace) -> tuple[np.ndarray, np.ndarray]:
    """``(x, a)``, both ``[N, L]``: after exit ``i``, the consulted exit ``a_i ≤ i`` whose
    predicted class ``ĉ_j`` has the largest running-ensemble probability ``p̄_i(ĉ_j)``, and that
    probability ``x_i``. Loops over exits only."""
    n, L = trace.n_examples, trace.n_exits
    pred = trace.predictions
    total = np.zeros((n, trace.n_classes))
    x, a = np.zeros((n, L)), np.zeros((n, L), dtype=np.int64)
    for i in range(L):
        total += trace.probs[:, i]
        score = np.take_along_axis(total, pred[:, : i + 1], axis=1) / (i + 1)
        a[:, i] = score.argmax(axis=1)
        x[:, i] = score.max(axis=1)
    return x, a


@dataclass
class StateModel:
    """A fitted pair (state, answer rule); ``models`` holds the fitted logistic models."""

    state: str
    answer: str
    n_exits: int
    n_classes: int
    models: dict[str, Any]

    @classmethod
    def fit(cls, trace: Trace, state: str, answer: str, target: str = "label") -> "StateModel":
        """Fit the logistic models the state and the answer rule need on ``trace``.

        Raises
        ------
        TTamerError
            For a ``trace`` that :func:`~ttamer.earlyexit.base.check_trace` refuses, an unknown
            ``state`` or ``answer``, or a paired state without its answer rule; a ``target``
            other than ``"label"`` or ``"final"`` (:class:`~ttamer.core.errors.TraceError`).
        """
        check_trace(trace, "StateModel.fit")
        check_choice("state", state, STATES)
        check_choice("answer", answer, ANSWERS)
        for paired in PAIRED:
            if (state == paired) != (answer == paired):
                raise TTamerError(f"state {paired!r} goes with answer {paired!r} (and only with it)")
        wrong = exit_wrong(trace, target)
        models: dict[str, Any] = {}
        if state == "learned":
            models["learned"] = _logistic_models(history_features(trace), 1.0 - wrong)
        if answer in POSTERIOR_ANSWERS:
            models["posterior"] = _posterior_models(trace, wrong)
        return cls(state, answer, trace.n_exits, trace.n_classes, models)

    def transform(self, trace: Trace) -> tuple[np.ndarray, np.ndarray]:
        """``(x, answers)``, both ``[N, L]``: the state of every exit and the exit answering
        when the rule stops there.

        Raises
        ------
        TTamerError
            For a ``trace`` that :func:`~ttamer.earlyexit.base.check_trace` refuses, or
            (:class:`~ttamer.core.errors.TraceError`) one of other exits or classes than the
            trace it was fitted on.
        """
        check_trace(trace, "StateModel.transform")
        if (trace.n_exits, trace.n_classes) != (self.n_exits, self.n_classes):
            raise TraceError(f"trace has {trace.n_exits} exits and {trace.n_classes} classes; the rule was "
                             f"fitted on {self.n_exits} exits and {self.n_classes} classes")
        n, L = trace.n_examples, trace.n_exits
        if self.answer == "posterior":
            return posterior_answers(trace, self.models["posterior"])
        if self.answer == "ensemble":
            return ensemble_answers(trace)
        if self.answer == "confident":
            answers = running_argmax(trace.max_prob)
        else:
            answers = np.repeat(np.arange(L)[None, :], n, axis=0)
            if self.answer == "ensemble_at_end":
                answers[:, -1] = ensemble_answers(trace)[1][:, -1]
            elif self.answer == "posterior_at_end":
                answers[:, -1] = posterior_answers(trace, self.models["posterior"])[1][:, -1]
        return self._state(trace), answers

    def _state(self, trace: Trace) -> np.ndarray:
        if self.state == "max_prob":
            return trace.max_prob
        if self.state == "neg_entropy":
            return -trace.entropy
        if self.state == "patience":
            return agreement_run_length(trace.predictions).astype(np.float64)
        return _predict(history_features(trace), *self.models["learned"])
