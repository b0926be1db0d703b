"""The contract every early-exit estimator of ttamer follows (scikit-learn semantics).

* ``__init__`` stores its arguments as attributes of the same names and does nothing else,
  so :meth:`BaseTamer.get_params` / :meth:`BaseTamer.set_params` (and
  ``sklearn.base.clone``) work;
* ``fit(calibration_trace)`` validates the parameters and the trace, learns, and returns
  ``self``; what it learns is stored in attributes whose names end in ``_``;
* ``decide(trace)`` runs the fitted rule at ``lam`` on new examples and
  ``decide_sweep(trace)`` at every ``λ`` of a sweep, both returning
  :class:`~ttamer.earlyexit.traces.ExitDecisions`;
* ``name`` says what the strategy is, ``describe()`` what was fitted.

**One option vocabulary.** Every estimator's constructor parameters are names of
:data:`VOCABULARY` (parameter name → its one meaning), so that a name means the same thing in
every estimator that has the concept: ``lam``, ``recall``, ``target`` (``"label"`` or
``"final"``), ``seed``, ``cv_folds``, ``normalize_cost``, ``smoothing``; the binned state is
given flat (``K``, ``feature``, ``agreement``, ``entropy_bins``, ``prospect_bins``, the axes of
the state of the book's chapter *Early exit on real models*); and the rule that picks which
consulted exit answers is ``answer``, whose values are the names of :data:`ANSWER_RULES`
(each estimator accepts a subset and says which in the error of ``fit``). State features are
the names of :data:`FEATURES`. ``"auto"`` (:data:`AUTO`) asks an estimator to choose the value
by cross-validation inside the calibration examples, where it supports that.
"""

from __future__ import annotations

import inspect
from typing import Any

from ..core.errors import TraceError, TTamerError
from ..core.validate import MIN_SPLIT_EXAMPLES
from .traces import Trace

#: Most exits the early-exit estimators and :func:`~ttamer.earlyexit.evaluation.evaluate_trace`
#: accept: their work grows with the square of the number of exits (pairs of exits, histories
#: of every earlier exit), and early-exit networks have tens of exits.
MAX_EXITS = 64
#: Fewest calibration examples an estimator is fitted on (as many as a calibration / test split
#: leaves on either side).
MIN_FIT_EXAMPLES = MIN_SPLIT_EXAMPLES

#: The value asking an estimator to choose an option by cross-validation on the calibration examples.
AUTO = "auto"

#: Answer rules (the values of ``answer``): which exit answers when a rule stops, name → meaning.
#: All but ``"last"`` are recall rules (the book's chapter *Recall*).
ANSWER_RULES: dict[str, str] = {
    "last": "the exit stopped at (no recall)",
    "confident": "the consulted exit of largest max-probability (SDN's fallback)",
    "posterior": "the consulted exit of largest learned P(right | everything seen so far)",
    "ensemble": "the consulted exit whose predicted class the running ensemble of the outputs favours most",
    "ensemble_at_end": "the exit stopped at, or at the last exit the 'ensemble' choice",
    "posterior_at_end": "the exit stopped at, or at the last exit the 'posterior' choice",
    "index": "the consulted exit of least fitted loss l_v(s_v) (T-Tamer's index rule on the binned chain)",
    "pairwise": "the consulted exit of least P(wrong_v | s_v, s_last) (the binned chain, corrected for "
                "the Markov violation)",
}

#: State features (the values of ``feature``): what a rule reads off each exit, name → meaning.
FEATURES: dict[str, str] = {
    "max_prob": "the exit's largest class probability",
    "entropy": "the entropy of the exit's output",
    "margin": "the exit's top-1 minus top-2 probability",
    "learned": "a logistic model of P(exit right | what exits 0..i showed), fitted on calibration examples",
    "posterior": "the largest learned P(exit j right | exits 0..i) over the consulted exits j",
    "best": "the largest max-probability among the consulted models",
}

#: Every constructor parameter of the early-exit estimators, name → its one meaning.
VOCABULARY: dict[str, str] = {
    "lam": "the trade-off λ of decide: λ·error + (1 − λ)·cost",
    "recall": "whether the rule may answer with an exit consulted before the one it stops at",
    "answer": "which consulted exit answers when the rule stops (a name of ANSWER_RULES, or 'auto')",
    "K": "quantile bins of the state feature per exit or model (an int, or 'auto')",
    "feature": "the state feature binned or regressed on (a name of FEATURES, or 'auto')",
    "agreement": "cap r on the run of consecutive earlier exits agreeing with this one (0/False: off; "
                 "1/True: agrees with the previous exit or parent; or 'auto')",
    "entropy_bins": "extra quantile bins of the entropy in the binned state (0: off)",
    "prospect_bins": "extra quantile bins of a learned P(the final exit is right) in the binned state (0: off)",
    "loss": "what the fitted losses count as an error: disagreement with the label or with the final exit "
            "('label', 'final', or 'auto')",
    "target": "what an answer is judged against when choosing by cross-validation: 'label' or 'final'",
    "smoothing": "strength α of the prior that smooths the calibration frequencies (or 'auto')",
    "monotone": "make the fitted losses non-increasing in the confidence bin (or 'auto')",
    "normalize_cost": "divide the costs by the full model's (or reference path's) mean cost",
    "reference": "the model whose root-to-node path cost is the cost unit (default: the costliest path)",
    "scale": "the cost unit (default: the last model's mean cost)",
    "method": "the solver of the no-recall problem (passed to ttamer.solvers.solve.solve)",
    "degree": "degree of the polynomial regression of the continuation value",
    "policy": "the policy class of threshold rules: 'auto' or 'THRESHOLDS:STATE:ANSWER'",
    "regions": "how a state is cut into regions that each take one action: 'thresholds' or 'bins'",
    "skips": "whether the rule may skip models (and start at any model)",
    "lams": "the λ sweep fitted at once",
    "cv_folds": "folds of the cross-validation inside the calibration examples",
    "cv_lams": "the λ grid swept on the held-out folds of the cross-validation",
    "cv_max_examples": "the cross-validation runs on at most this many calibration examples",
    "n_lams": "number of λ values of the sweep",
    "seed": "seed of the folds and samples drawn while fitting",
    "progress": "show a progress bar while fitting",
}


def vocabulary_subset(vocabulary: dict[str, str], *names: str) -> tuple[str, ...]:
    """``names`` as a tuple, after checking that each is a name of ``vocabulary`` (an
    estimator's subset of :data:`ANSWER_RULES` or :data:`FEATURES`)."""
    unknown = [n for n in names if n not in vocabulary]
    if unknown:
        raise TTamerError(f"{unknown} are not in the shared vocabulary {tuple(vocabulary)}")
    return tuple(names)


def check_trace(trace: Any, who: str, min_examples: int = 0, chain: bool = False) -> Trace:
    """``trace`` if it is a :class:`~ttamer.earlyexit.traces.Trace` of at least ``min_examples``
    examples and 2 to :data:`MAX_EXITS` exits (with ``chain``, exits forming the chain
    ``0 → 1 → …``: a rule consulting its exits in order); a :class:`~ttamer.core.errors.TTamerError`
    (not a trace) or :class:`~ttamer.core.errors.TraceError` (too few examples, too few or too
    many exits, a tree) naming ``who`` otherwise."""
    if not isinstance(trace, Trace):
        raise TTamerError(f"{who} expects a ttamer Trace (ttamer.earlyexit.traces.load_trace reads one), "
                          f"got {type(trace).__name__}")
    trace.validate_arrays()  # types, dtypes and shapes, before any shape is read
    if trace.n_examples < min_examples:
        raise TraceError(f"key 'probs': the trace has {trace.n_examples} example{'s' * (trace.n_examples != 1)}; "
                         f"{who} needs at least {min_examples} to fit a rule on")
    if trace.n_exits < 2:
        raise TraceError(f"key 'probs': the trace has {trace.n_exits} exit; early exit needs at least 2 exits "
                         f"to choose between")
    if trace.n_exits > MAX_EXITS:
        raise TraceError(f"key 'probs': the trace has {trace.n_exits:,} exits; {who} handles at most {MAX_EXITS} "
                         f"(MAX_EXITS: its work grows with the square of the number of exits); keep fewer exits, "
                         f"adding the cost of each dropped exit to the next one kept")
    if chain and not trace.is_chain:
        raise TraceError(f"key 'meta': field 'parents' makes the exits a tree, not the chain exit 0 -> 1 -> ...; "
                         f"{who} runs the exits in order (CascadeTamer handles a tree of models)")
    return trace


class BaseTamer:
    """Parameter handling and the fitted check shared by the early-exit estimators."""

    #: Attribute whose presence marks a fitted estimator.
    _fitted_attr = "candidate_"

    @classmethod
    def _param_names(cls) -> list[str]:
        sig = inspect.signature(cls.__init__)
        return [p.name for p in sig.parameters.values() if p.name != "self" and p.kind == p.POSITIONAL_OR_KEYWORD]

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """The constructor's parameters and their current values."""
        return {name: getattr(self, name) for name in self._param_names()}

    def set_params(self, **params: Any) -> "BaseTamer":
        """Set constructor parameters by name (validated at the next ``fit``)."""
        known = self._param_names()
        for name, value in params.items():
            if name not in known:
                raise TTamerError(f"{type(self).__name__} has no parameter {name!r}; parameters: {known}")
            setattr(self, name, value)
        return self

    def check_fitted(self) -> None:
        """Raise :class:`~ttamer.core.errors.TTamerError` unless ``fit`` has run."""
        if not hasattr(self, self._fitted_attr):
            raise TTamerError(f"{type(self).__name__} is not fitted; call fit(calibration_trace) first")

    def check_input(self, trace: Any) -> Trace:
        """The fitted check (:meth:`check_fitted`), then ``trace`` if it is a valid
        :class:`~ttamer.earlyexit.traces.Trace` (:meth:`~ttamer.earlyexit.traces.Trace.validate`)
        of a chain of exits with the exits and classes of the calibration trace
        (``fitted_shape_``, set by ``fit``)."""
        self.check_fitted()
        name = type(self).__name__
        check_trace(trace, name, chain=True)
        shape = (trace.n_exits, trace.n_classes)
        if shape != self.fitted_shape_:
            raise TraceError(f"trace has {shape[0]} exits and {shape[1]} classes; {name} was fitted on "
                             f"{self.fitted_shape_[0]} exits and {self.fitted_shape_[1]} classes")
        return trace.validate()  # every rule of the format: arrays may have been replaced since it was built

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"
