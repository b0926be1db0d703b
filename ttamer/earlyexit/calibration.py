"""From a trace to a chain instance, and T-Tamer on held-out examples (the book's chapter *Early exit on real models*).

**States.** The state ``s_i`` of exit ``i`` is computed from what is observable once exit
``i`` has run (:class:`~ttamer.earlyexit.features.StateSpec`); its axes are combined into one index (product state):

* a quantile bin of a confidence feature ``f_i`` (default the max-probability
  ``max_c p_i(c)``; also ``"entropy"``, ``"margin"`` = top-1 minus top-2, or ``"learned"`` =
  a logistic model of P(exit ``i`` right | history features of exits ``0..i``), see
  :func:`~ttamer.earlyexit.features.history_features`): ``K`` bins with edges at the ``1/K, …, (K−1)/K`` quantiles of
  ``f_i`` on the calibration examples (duplicate edges merged, so exit ``i`` may have fewer
  than ``K`` bins);
  ``"posterior"`` = the largest fitted P(exit ``j`` right | exits ``0..i``) over ``j ≤ i``, in
  which case node ``i`` answers with that exit ``a_i`` (:func:`~ttamer.earlyexit.logistic.posterior_answers`);
* optionally (``entropy_bins = E > 0``) a quantile bin of the entropy;
* optionally (``prospect_bins = Q > 0``) a quantile bin of a logistic model of P(the final
  exit is right | history features up to ``i``) -- how promising it is to go on;
* optionally (``agreement = r ≥ 1``) the number of consecutive earlier exits whose
  prediction equals exit ``i``'s, capped at ``r`` (``r = 1``: "agrees with the previous
  exit"); this multiplies the states of exits ``i ≥ 1`` by ``r + 1``.

**Loss.** ``ℓ_i(s)`` is the smoothed calibration error rate of exit ``i`` in state ``s``:
error against the true label (``loss="label"``) or disagreement with the final exit
(``loss="final"``, the paper's and Apparate's convention; ``ℓ`` of the final exit is 0).
**Smoothing** (a Beta/Dirichlet prior of strength ``α``, centred on the pooled frequency,
so that empty bins are defined and tiny bins shrink toward the exit's average):

    ℓ_i(s)   = (e_i(s) + α ē_i) / (n_i(s) + α)          ē_i = overall error rate of exit i
    P_i[s,t] = (n_i(s,t) + α π_i(t)) / (n_{i−1}(s) + α)  π_i  = state frequencies of exit i
    μ(t)     = (n_0(t) + α / K_0) / (N + α)

with ``n`` the calibration counts (``e_i(s)`` errors among the ``n_i(s)`` examples in state
``s``; ``n_i(s, t)`` examples in state ``s`` at exit ``i−1`` and ``t`` at exit ``i``). An
empty bin gets ``ℓ = ē_i`` and an unseen parent state the row ``π_i``. Optionally
(``monotone=True``) the smoothed losses are then made non-increasing in the confidence bin
by weighted isotonic regression (:func:`~ttamer.earlyexit.isotonic.monotone_losses`), which removes the noise of small
bins. **Costs** ``c_i`` =
mean measured cost of exit ``i``, divided by the full model's mean cost
(``normalize_cost=True``) so that ``λ`` weighs an error rate against a fraction of the full
model.

:class:`EarlyExitTamer` builds this chain, solves it with :func:`~ttamer.solvers.solve.solve` (recall: the
index strategy; no recall: the DP), and runs the *same* policy object on test examples
through :meth:`~ttamer.core.policy.Policy.rollout_known` (the step loop of
:func:`ttamer.core.policy.rollout` with the states read off the trace).

**Recall answer rule.** T-Tamer answers with the consulted exit of least ``ℓ_v(s_v)``, which
is optimal when ``wrong_v ⊥ s_k | s_v`` for later exits ``k`` (the Markov property). Real
networks violate this strongly -- a later exit that disagrees makes an earlier one likely
wrong (measured by :func:`ttamer.earlyexit.evaluation.markov_violation`) -- so the rule is
over-confident in earlier exits. The default ``answer="pairwise"``
(:class:`~ttamer.earlyexit.pairwise.PairwiseAnswer`) answers instead with the consulted exit of least
``P̂(wrong_v | s_v, s_last)``; under the Markov property ``P(wrong_v | s_v, s_last) = ℓ_v(s_v)``
and the two rules coincide (up to estimation noise).

Any of ``K``, ``agreement``, ``feature``, ``loss``,
``smoothing``, ``monotone``, ``answer`` may be ``"auto"`` (defaults: ``K``, ``agreement``,
``feature`` and ``loss``):
:meth:`EarlyExitTamer.fit` then picks the configuration by ``cv_folds``-fold
cross-validation inside the calibration examples, maximising the normalised area under the
held-out accuracy–cost frontier of a ``λ`` sweep. The test examples are never used.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, replace
from typing import Sequence

import numpy as np

from ..core.errors import TTamerError
from ..solvers.solve import solve
from ..core.validate import check_bool, check_choice, check_int, check_lam, check_real, check_seed, short_repr
from .base import BaseTamer, MIN_FIT_EXAMPLES, check_trace
from .chain import _fit_concrete, run_policy, sweep
from .crossval import check_lams, check_sweep_options, choose_by_cv, cv_folds_of, heldout_auc, lam_grid
from .features import AUTO, LOSSES, MAX_STATES, StateSpec, _is_auto
from .pairwise import ANSWER_RULES
from .traces import ExitDecisions, Trace

#: Candidates tried for ``K="auto"`` (those leaving < ``MIN_PER_STATE`` examples per state dropped).
K_GRID = (4, 8, 16, 32)
#: Candidates tried for ``feature="auto"``.
FEATURE_GRID = ("max_prob", "learned")
#: Candidates tried for ``agreement="auto"`` (off, or agreement with the previous exit).
AGREEMENT_GRID = (0, 1)
#: Candidates tried for ``smoothing="auto"``.
SMOOTHING_GRID = (0.5, 2.0, 8.0)
#: ``K="auto"`` keeps candidates with at least this many training examples per state on average.
MIN_PER_STATE = 8


# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Candidate:
    """One concrete configuration tried by the cross-validation of :meth:`EarlyExitTamer.fit`."""

    spec: StateSpec
    smoothing: float
    loss: str
    monotone: bool = False
    answer: str = "index"

    def describe(self) -> str:
        mono = ", monotone losses" if self.monotone else ""
        rule = ", pairwise answer rule" if self.answer == "pairwise" else ""
        return f"{self.spec.describe()}, loss={self.loss}, α={self.smoothing:g}{mono}{rule}"


class EarlyExitTamer(BaseTamer):
    """T-Tamer for early exit on the paper's binned Markov chain, scikit-learn style (the
    book's chapter *Early exit on real models*; module docstring).

    The stopping decisions are the index policy's (with recall) or the DP's (without); with
    recall, ``answer`` picks the consulted exit answered with. ``"auto"`` values are chosen by
    ``cv_folds``-fold cross-validation inside the calibration examples: each candidate is
    fitted on the other folds, swept over ``cv_lams`` (refined) on the held-out fold, and
    scored by the mean normalised area under the held-out accuracy–cost frontier (accuracy
    against ``target``), over the cost range from exit 0 alone to the full model. Ties go to
    the candidate listed first (fewer states).

    Parameters
    ----------
    lam : float, default 0.95
        The trade-off ``λ`` of :meth:`decide`.
    K : int or "auto", default "auto"
        Quantile bins of ``feature`` per exit (``"auto"``: from :data:`K_GRID`).
    feature : str, default "auto"
        The confidence feature binned, one of :data:`~ttamer.earlyexit.features.FEATURES`
        (``"auto"``: from :data:`FEATURE_GRID`).
    agreement : int, bool or "auto", default "auto"
        Cap ``r`` on the run of consecutive earlier exits agreeing with exit ``i``
        (``0``/``False``: off; ``"auto"``: from :data:`AGREEMENT_GRID`).
    entropy_bins : int, default 0
        Extra quantile bins of the entropy (``0``: off).
    prospect_bins : int, default 0
        Extra quantile bins of a learned P(the final exit is right) (``0``: off).
    recall : bool, default True
        Whether the policy may answer with an earlier consulted exit.
    loss : {"label", "final", "auto"}, default "auto"
        What the fitted losses ``ℓ_i(s)`` count as an error.
    smoothing : float or "auto", default 2.0
        Strength ``α`` of the prior smoothing the calibration frequencies.
    monotone : bool or "auto", default False
        Make the smoothed losses non-increasing in the confidence bin.
    answer : {"pairwise", "index", "auto"}, default "pairwise"
        With recall, the consulted exit answered with: ``"index"`` -- T-Tamer's
        ``argmin ℓ_v(s_v)``; ``"pairwise"`` --
        :class:`~ttamer.earlyexit.pairwise.PairwiseAnswer`, which corrects the rule for the
        measured violation of the Markov property
        (:func:`ttamer.earlyexit.evaluation.markov_violation`).
    normalize_cost : bool, default True
        Divide the exit costs by the full model's mean cost.
    cv_folds : int, default 3
        Folds of the cross-validation.
    cv_lams : sequence of float, optional
        The ``λ`` grid swept on the held-out folds (default 12 values of
        :func:`~ttamer.earlyexit.crossval.lam_grid`).
    target : {"label", "final"}, default "label"
        What an answer is judged against in the cross-validation.
    seed : int, default 0
        Seed of the folds.

    Attributes
    ----------
    spec_ : ~ttamer.earlyexit.features.StateSpec
        The fitted (concrete) state.
    smoothing_, loss_, monotone_, answer_
        The fitted values of ``smoothing``, ``loss``, ``monotone`` and ``answer``.
    answer_table_ : ~ttamer.earlyexit.pairwise.PairwiseAnswer or None
        The pairwise answer rule (``answer_ == "pairwise"``).
    encoder_, instance_, solution_
        The state encoder, the chain instance and its solution at ``lam``.
    cv_scores_ : list of (Candidate, float)
        The cross-validated candidates and their scores (empty when nothing was ``"auto"``).
    """

    def __init__(self, lam: float = 0.95, K: int | str = AUTO, feature: str = AUTO, agreement: int | bool | str = AUTO,
                 entropy_bins: int = 0, prospect_bins: int = 0, recall: bool = True,
                 loss: str = AUTO, smoothing: float | str = 2.0, monotone: bool | str = False,
                 answer: str = "pairwise", normalize_cost: bool = True,
                 cv_folds: int = 3, cv_lams: Sequence[float] | None = None, target: str = "label",
                 seed: int = 0) -> None:
        self.lam = lam
        self.K = K
        self.feature = feature
        self.agreement = agreement
        self.entropy_bins = entropy_bins
        self.prospect_bins = prospect_bins
        self.recall = recall
        self.loss = loss
        self.smoothing = smoothing
        self.monotone = monotone
        self.answer = answer
        self.normalize_cost = normalize_cost
        self.cv_folds = cv_folds
        self.cv_lams = cv_lams
        self.target = target
        self.seed = seed

    def _validated(self) -> StateSpec:
        """Check the constructor's parameters (called by :meth:`fit`) and return the state
        they give (a :class:`~ttamer.earlyexit.features.StateSpec`, possibly with ``"auto"``
        axes)."""
        check_lam(self.lam)
        check_bool(self.recall, "recall")
        check_bool(self.normalize_cost, "normalize_cost")
        spec = StateSpec(K=self.K, feature=self.feature, agreement=self.agreement, entropy_bins=self.entropy_bins,
                         prospect_bins=self.prospect_bins)
        check_choice("loss", self.loss, LOSSES, auto=True)
        if not _is_auto(self.smoothing):
            check_real(self.smoothing, "smoothing (a number > 0 or 'auto')", low=0.0, low_open=True)
        if not (_is_auto(self.monotone) or isinstance(self.monotone, (bool, np.bool_))):
            raise TTamerError(f"monotone must be True, False or 'auto', got {short_repr(self.monotone)}")
        check_choice("answer", self.answer, ANSWER_RULES, auto=True)
        check_int(self.cv_folds, "cv_folds", minimum=2)
        check_seed(self.seed)
        check_choice("target", self.target, LOSSES)
        if self.cv_lams is not None:
            check_lams(self.cv_lams, "cv_lams")
        return spec

    @property
    def _cv_lams(self) -> np.ndarray:
        return lam_grid(12) if self.cv_lams is None else check_lams(self.cv_lams, "cv_lams")

    # ------------------------------------------------------------------ fitting
    def candidates(self, n_train: int) -> list[Candidate]:
        """Concrete configurations that the ``"auto"`` fields expand to, simplest first;
        ``K`` values leaving fewer than ``MIN_PER_STATE`` training examples per state are
        dropped (the smallest ``K`` is always kept)."""
        s = self._validated()
        ks = [s.K] if s.K != AUTO else list(K_GRID)
        ags = [int(s.agreement)] if s.agreement != AUTO else list(AGREEMENT_GRID)
        feats = [s.feature] if s.feature != AUTO else list(FEATURE_GRID)
        sms = [float(self.smoothing)] if self.smoothing != AUTO else list(SMOOTHING_GRID)
        losses = [self.loss] if self.loss != AUTO else list(LOSSES)
        monos = [bool(self.monotone)] if self.monotone != AUTO else [False, True]
        rules = [self.answer] if self.answer != AUTO else list(ANSWER_RULES)
        if not self.recall:
            rules = rules[:1]
        out = []
        for k, ag, feat, sm, loss, mono, rule in itertools.product(ks, ags, feats, sms, losses, monos, rules):
            spec = replace(s, K=int(k), agreement=int(ag), feature=feat)
            states = spec.states_per_exit
            if s.K == AUTO and n_train / states < MIN_PER_STATE and k != min(ks):
                continue
            if states > MAX_STATES:
                raise TTamerError(f"K={k}, entropy_bins={s.entropy_bins}, prospect_bins={s.prospect_bins} and "
                                  f"agreement={ag} give {states:,} states per exit, above MAX_STATES={MAX_STATES:,}; "
                                  f"use fewer bins")
            out.append(Candidate(spec, sm, loss, mono, rule))
        return out

    def fit(self, trace: Trace) -> "EarlyExitTamer":
        """Build the chain instance from calibration examples and solve it at ``lam``."""
        self._validated()
        check_trace(trace, "EarlyExitTamer.fit", MIN_FIT_EXAMPLES, chain=True).validate()
        folds = int(self.cv_folds)
        cands = self.candidates(int(trace.n_examples * (folds - 1) / folds))
        fits: dict = {}  # shared by the candidates: the answer rule does not change a fold's fit
        best, self.cv_scores_ = choose_by_cv(trace, cands, lambda tr, cand: self._cv_score(tr, cand, fits),
                                             folds, "K, agreement, feature, loss and smoothing")
        fitted = _fit_concrete(trace, best.spec, best.smoothing, best.loss, self.normalize_cost, self.target,
                               best.monotone)
        self.spec_, self.smoothing_, self.loss_ = fitted.spec, fitted.smoothing, best.loss
        self.monotone_ = best.monotone
        self.answer_ = best.answer
        self.answer_table_ = fitted.answer_table if best.answer == "pairwise" else None
        self.encoder_, self.instance_ = fitted.encoder, fitted.instance
        self.fitted_shape_ = (trace.n_exits, trace.n_classes)
        self.solution_ = solve(self.instance_, self.lam, recall=self.recall)
        return self

    def _cv_score(self, trace: Trace, cand: Candidate, fits: dict | None = None) -> float:
        """Mean over folds of the held-out normalised area under the accuracy–cost frontier.
        ``fits`` keeps each fold's split and fitted chain for the next candidates on the same
        ``trace`` (candidates that differ only in their answer rule share them, and come one
        after the other: the other fits are dropped, so that at most one fitted chain per fold
        is held)."""
        fits = {} if fits is None else fits
        shared = (cand.spec, cand.smoothing, cand.loss, cand.monotone)
        for key in [k for k in fits if isinstance(k, tuple) and k[1:] != shared]:
            del fits[key]  # an earlier fit no later candidate shares (they come in order of their fit)
        scores = []
        for f in range(int(self.cv_folds)):
            if f not in fits:
                folds = cv_folds_of(trace.n_examples, int(self.cv_folds), self.seed)
                fits[f] = (trace.subset(folds != f), trace.subset(folds == f))
            tr, te = fits[f]
            key = (f, *shared)
            if key not in fits:
                fitted = _fit_concrete(tr, cand.spec, cand.smoothing, cand.loss, self.normalize_cost, self.target,
                                       cand.monotone)
                fits[key] = (fitted, fitted.encoder.transform(te), fitted.encoder.answers(te))
            fitted, states, answers = fits[key]
            d = sweep(fitted.instance, self.recall, states, te, self._cv_lams, max_gap=0.04, max_points=32,
                      answers=answers, answer_table=fitted.answer_table if cand.answer == "pairwise" else None)
            scores.append(heldout_auc(d, te, self.target))
        return float(np.mean(scores))

    # ------------------------------------------------------------------ deciding
    def check_fitted(self) -> None:
        if not hasattr(self, "solution_"):
            raise TTamerError("EarlyExitTamer is not fitted; call fit(calibration_trace) first")

    def states(self, trace: Trace) -> np.ndarray:
        """``[N, L]`` states of ``trace``'s examples under the fitted encoder."""
        self.check_input(trace)
        return self.encoder_.transform(trace)

    def set_lam(self, lam: float) -> "EarlyExitTamer":
        """Re-solve the fitted instance at another ``λ`` (no refitting)."""
        self.check_fitted()
        self.lam = check_lam(lam)
        self.solution_ = solve(self.instance_, self.lam, recall=self.recall)
        return self

    def decide(self, trace: Trace) -> ExitDecisions:
        """Run the fitted policy on every example of ``trace``: exit answered with, last exit
        consulted, cost paid."""
        self.check_input(trace)
        return run_policy(self.solution_, self.states(trace), trace, name=self.name,
                          answers=self.encoder_.answers(trace), answer_table=self.answer_table_)

    def decide_sweep(self, trace: Trace, lams: Sequence[float] | None = None, refine: bool = True,
                     max_gap: float = 0.01, max_points: int = 160) -> ExitDecisions:
        """:meth:`decide` for many ``λ`` (default :func:`~ttamer.earlyexit.crossval.lam_grid` with 40 values, refined
        where the mean cost jumps; see :func:`~ttamer.earlyexit.chain.sweep`): arrays ``[P, N]``."""
        self.check_input(trace)
        lams = lam_grid(40) if lams is None else check_lams(lams)
        check_sweep_options(refine, max_gap, max_points)
        return sweep(self.instance_, self.recall, self.states(trace), trace, lams, refine, max_gap,
                     max_points, self.name, answers=self.encoder_.answers(trace), answer_table=self.answer_table_)

    @property
    def name(self) -> str:
        return "ttamer" if self.recall else "no-recall"

    def describe(self) -> str:
        """The fitted configuration in words."""
        self.check_fitted()
        return Candidate(self.spec_, self.smoothing_, self.loss_, self.monotone_, self.answer_).describe()

    def __repr__(self) -> str:
        fitted = f", fitted: {self.describe()}" if hasattr(self, "spec_") else ""
        return (f"EarlyExitTamer(lam={self.lam!r}, K={self.K!r}, feature={self.feature!r}, "
                f"agreement={self.agreement!r}, recall={self.recall}, loss={self.loss!r}{fitted})")
