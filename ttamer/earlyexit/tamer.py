"""T-Tamer on a chain of exits: threshold rules fitted on calibration paths, the policy
class chosen by cross-validation.

On a chain, T-Tamer's optimal strategy is a threshold rule (the book's chapter *Recall: the
index strategy is optimal*): after exit ``i`` it stops when the state is good enough. What the
rule can see (its *state*), whether it may answer with an earlier exit (*recall*) and how
many thresholds it has are choices of estimation; :class:`ThresholdTamer` tries a nested
family of them, simplest first (:data:`CANDIDATES`):

* one threshold common to every exit on the max-probability (the BranchyNet / SDN rule). The
  other heuristics -- SDN's recall fallback, a threshold on minus the entropy (DeeBERT) or on
  the patience counter (PABEE) -- are members of T-Tamer's policy class too
  (``policy="common:neg_entropy:last"``), but not of the menu: they are as simple as the
  max-probability rule, and choosing among rules that are truly alike by the calibration
  examples costs on the test examples of the same trace (the calibration half's view of a
  difference runs against the test half's; the book's chapter *Across workloads* measures
  both);
* one threshold on the state shifted by a fitted offset per exit (the *offset* class,
  :func:`~ttamer.earlyexit.thresholds.fit_offsets`), answering with the exit it stops at or,
  at the end, with the consulted exit the running ensemble favours (recall): ``L − 1``
  numbers fitted once, that price the measured, uneven exit costs and the exits' differently
  calibrated confidences, which the heuristics ignore;
* one threshold per exit, by backward induction of ``θ_λ = λ·loss + κ·cost`` on the
  calibration paths (:func:`~ttamer.earlyexit.thresholds.backward_thresholds`), on the state
  learned from everything the exits showed so far, answering with the consulted exit most
  probably right (:mod:`ttamer.earlyexit.states`) -- the form of the optimal strategy with
  recall, which beats the full model where later exits overthink.

Each candidate is scored by the area under its accuracy–cost frontier on held-out folds of
the calibration examples, swept there at the resolution of the data exactly as on test
examples (:func:`complete_sweep`, :func:`path_sweep`); the simplest candidate within one standard
error (of the paired fold differences) of the best is chosen (:func:`one_se_choice`), so that a
rule that fits more is used only where the calibration data show that it pays, and one chosen
by a small margin over the simplest is confirmed on fresh folds first (:data:`CV_CONFIRM_Z`).
What a class fits is its thresholds (:attr:`PolicyCandidate.level`): a recall answer fits
nothing of its own, so the offset class with recall and without are equally simple and the
better of the two on the folds is chosen. The test examples are never used.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from tqdm import tqdm

from .crossval import cv_folds_of, heldout_auc, lam_grid
from ..core.parallel import available_threads
from ..core.errors import TraceError, TTamerError
from .traces import ExitDecisions, Trace
from ..core.validate import check_bool, check_choice, check_int, check_lam, check_numbers, check_seed, escape_text
from .base import BaseTamer, MIN_FIT_EXAMPLES, check_trace
from .heuristics import MAX_SWEEP_CELLS
from .metrics import MAX_SWEEP_POINTS
from .online import (ExitHistory, InTurn, PosteriorOne, check_batch, check_exit, check_exit_probs, check_stop_states,
                     entropy, exit_column, exit_row, logistic_at)
from .states import ANSWERS, POSTERIOR_ANSWERS, STATES, StateModel, exit_wrong
from .thresholds import (backward_thresholds, budget_points, common_threshold_curve, evenly, first_stop,
                         fit_offsets, frontier_taus, hull_choice, path_rules, quantile_path, rule_points,
                         shifted_thresholds)

#: One threshold for every exit (``common``), one threshold on the state shifted by a fitted
#: offset per exit (``offset``, :func:`~ttamer.earlyexit.thresholds.fit_offsets`), one threshold
#: per exit and ``λ`` by backward induction (``per_exit``).
THRESHOLD_CLASSES = ("common", "offset", "per_exit")
#: Cost step (a fraction of the full model's cost) between the budgets of a sweep.
BUDGET_RESOLUTION = 0.002
#: How many times finer the budgets of the (cheap to sweep) common class are.
COMMON_REFINEMENT = 8
#: Budgets per candidate and fold scored in the cross-validation (spread evenly).
MAX_CV_POINTS = 200
#: Most rules inserted between two neighbouring λ-optimal rules of the per-exit class.
MAX_PATH_STEPS = 100
#: Fewest calibration examples per cross-validation fold.
MIN_FOLD_EXAMPLES = 20
#: Default most calibration examples the cross-validation reads (a seeded sample).
CV_MAX_EXAMPLES = 5000
#: Below this many calibration examples the cross-validation is repeated over fresh folds
#: (up to :data:`MAX_CV_REPEATS` times), so that few examples do not make the choice a lottery.
CV_REPEAT_EXAMPLES = 2000
#: Most repeats of the cross-validation (see :data:`CV_REPEAT_EXAMPLES`, :data:`CV_CONFIRM_Z`).
MAX_CV_REPEATS = 4
#: Most numbers (rows x exits x classes) of the buffers of one :meth:`RuntimeRule.begin` run.
MAX_RUN_CELLS = 1 << 28
#: A class richer than the simplest that the folds choose by fewer than this many standard
#: errors over the simplest is confirmed on fresh folds (up to :data:`MAX_CV_REPEATS` repeats
#: in all) before it is used: where the margin is that small, which folds the examples fall in
#: can decide the choice.
CV_CONFIRM_Z = 3.0


@dataclass(frozen=True)
class PolicyCandidate:
    """One policy class: a state, an answer rule and one threshold or one per exit."""

    state: str
    answer: str
    thresholds: str

    @property
    def recall(self) -> bool:
        """Whether the rule may answer with an exit before the one it stopped at."""
        return self.answer != "last"

    @property
    def level(self) -> int:
        """How much the class fits, for the one-standard-error rule (:func:`one_se_choice`): 0
        for one threshold, 1 with an offset per exit, 2 with a threshold per exit. The answer
        rule fits nothing of its own, so a class with recall is as simple as the same class
        without."""
        return THRESHOLD_CLASSES.index(self.thresholds)

    @property
    def key(self) -> str:
        """``"thresholds:state:answer"``, the form accepted by ``ThresholdTamer(policy=...)``."""
        return f"{self.thresholds}:{self.state}:{self.answer}"

    def describe(self) -> str:
        th = {"common": "one threshold", "offset": "one threshold shifted per exit",
              "per_exit": "a threshold per exit"}[self.thresholds]
        ans = {"last": "answers with the exit it stops at", "confident": "answers with the most confident exit",
               "posterior": "answers with the exit most probably right",
               "ensemble": "answers with the exit the running ensemble favours",
               "posterior_at_end": "answers with the exit it stops at, or at the end with the exit most "
                                   "probably right",
               "ensemble_at_end": "answers with the exit it stops at, or at the end with the exit the ensemble "
                                  "favours"}[self.answer]
        return f"{th} on {self.state.replace('_', '-')}, {ans}"

    def without_recall(self) -> "PolicyCandidate":
        """The same class answering with the exit it stops at; a state that exists only with
        its recall answer becomes its no-recall analogue (posterior → learned, ensemble →
        max_prob)."""
        state = {"posterior": "learned", "ensemble": "max_prob"}.get(self.state, self.state)
        return PolicyCandidate(state, "last", self.thresholds)

    @classmethod
    def parse(cls, key: str) -> "PolicyCandidate":
        parts = str(key).split(":")
        if len(parts) != 3 or parts[0] not in THRESHOLD_CLASSES:
            raise TTamerError(f"policy must be 'auto' or 'THRESHOLDS:STATE:ANSWER' with THRESHOLDS in "
                              f"{THRESHOLD_CLASSES} (e.g. 'per_exit:posterior:posterior'), "
                              f"got {escape_text(repr(key), 80)}")
        check_choice("state", parts[1], STATES, note=" (the STATE of the policy)")
        check_choice("answer", parts[2], ANSWERS, note=" (the ANSWER of the policy)")
        return cls(parts[1], parts[2], parts[0])


#: The policy classes tried by ``policy="auto"``, simplest first: one heuristic, then one class
#: per kind of fitted parameter (offsets per exit, with and without recall; a threshold per exit).
CANDIDATES = tuple(PolicyCandidate.parse(k) for k in (
    "common:max_prob:last", "offset:max_prob:last", "offset:max_prob:ensemble_at_end",
    "per_exit:posterior:posterior"))
#: The simplest class, one threshold on the max-probability answering with the exit it stops at
#: (the max-prob heuristic's rule).
SIMPLEST = CANDIDATES[0]


def normalized_costs(trace: Trace) -> np.ndarray:
    """``[L]`` mean cost of each exit as a fraction of the full model's mean cost."""
    total = trace.mean_cost.sum()
    if not total > 0:
        raise TraceError("key 'cost': the full model's mean cost is 0; costs cannot be normalised")
    return trace.mean_cost / total


def class_offsets(cand: PolicyCandidate, x: np.ndarray, loss: np.ndarray, costs: np.ndarray) -> np.ndarray:
    """``[L]`` the per-exit offsets of ``cand``'s class on the calibration examples: fitted for
    the offset class (:func:`~ttamer.earlyexit.thresholds.fit_offsets`), zero otherwise."""
    if cand.thresholds != "offset":
        return np.zeros(x.shape[1])
    return fit_offsets(x, loss, np.broadcast_to(np.cumsum(costs), x.shape))


def lambda_thresholds(cand: PolicyCandidate, x: np.ndarray, loss: np.ndarray, costs: np.ndarray,
                      lams: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """``[P, L−1]`` thresholds of ``cand``'s rule minimising the calibration ``θ_λ`` for each
    ``λ`` of ``lams`` (``x``, ``loss`` ``[N, L]`` on the calibration examples; ``offsets`` from
    :func:`class_offsets`)."""
    if cand.thresholds == "per_exit":
        return backward_thresholds(x, loss, costs, lams)
    cum = np.broadcast_to(np.cumsum(costs), x.shape)
    taus, mean_loss, mean_cost = common_threshold_curve(x - offsets, loss, cum)
    tau = taus[hull_choice(mean_cost, mean_loss, lams)]
    return shifted_thresholds(tau, offsets)


def budget_sweep(cand: PolicyCandidate, x: np.ndarray, loss: np.ndarray, costs: np.ndarray, lams: np.ndarray,
                 offsets: np.ndarray, resolution: float = BUDGET_RESOLUTION
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The budgeted rules of ``cand``'s class: for each calibration cost budget ``B`` on a grid
    of step ``resolution``, the most accurate rule found with mean cost ``≤ B``.

    The common and offset classes are swept exactly (every distinct threshold of the state
    shifted by ``offsets``, :func:`class_offsets`). The per-exit class starts
    from the ``λ``-optimal rules of ``lams`` (which reach only the convex hull of the
    cost–loss points) and fills the budgets between two neighbours with rules whose
    thresholds move in rank space from one to the other (:func:`~ttamer.earlyexit.thresholds.quantile_path`).

    Returns ``(taus [P, L−1], cost [P], loss [P])``, cost increasing, on the calibration examples.
    """
    cum = np.broadcast_to(np.cumsum(costs), x.shape)
    if cand.thresholds != "per_exit":
        taus, mean_loss, mean_cost = common_threshold_curve(x - offsets, loss, cum)
        keep = budget_points(mean_cost, mean_loss, resolution / COMMON_REFINEMENT)
        return shifted_thresholds(taus[keep], offsets), mean_cost[keep], mean_loss[keep]
    base = np.unique(backward_thresholds(x, loss, costs, lams), axis=0)
    base_cost = rule_points(x, loss, cum, base)[1]
    order = np.argsort(base_cost, kind="stable")
    base, base_cost = base[order], base_cost[order]
    xs = np.sort(x[:, :-1], axis=0)
    pieces = [base[:1]]
    for k in range(len(base) - 1):  # a loop over the λ-optimal rules (at most n_lams + 2)
        steps = min(int(np.ceil((base_cost[k + 1] - base_cost[k]) / resolution)) - 1, MAX_PATH_STEPS)
        if steps > 0:
            pieces.append(quantile_path(xs, base[k], base[k + 1], steps))
        pieces.append(base[k + 1 : k + 2])
    taus = np.concatenate(pieces)
    mean_loss, mean_cost = rule_points(x, loss, cum, taus)
    keep = budget_points(mean_cost, mean_loss, resolution)
    return taus[keep], mean_cost[keep], mean_loss[keep]


def decisions(trace: Trace, x: np.ndarray, answers: np.ndarray, taus: np.ndarray, params: np.ndarray,
              name: str) -> ExitDecisions:
    """The decisions ``[P, N]`` of the threshold rules ``taus [P, L−1]`` on ``trace``."""
    last = first_stop(x, taus)
    answer = np.take_along_axis(answers, last.T, axis=1).T
    return ExitDecisions.from_last(trace, answer, last, params, name)


def complete_sweep(trace: Trace, x: np.ndarray, answers: np.ndarray, target: str, name: str,
                   offsets: np.ndarray | None = None) -> ExitDecisions:
    """A common-threshold rule on the state shifted by ``offsets`` (default none) swept over
    every distinct value on ``trace``, kept at the frontier of that complete sweep (``params`` =
    the common thresholds) -- how the heuristics are swept."""
    offsets = np.zeros(x.shape[1]) if offsets is None else offsets
    loss = np.take_along_axis(exit_wrong(trace, target), answers, axis=1)
    taus = frontier_taus(x - offsets, loss, trace.cumulative_cost,
                         max(2, min(MAX_SWEEP_POINTS, MAX_SWEEP_CELLS // len(x))))
    return decisions(trace, x, answers, shifted_thresholds(taus, offsets), taus, name)


def path_sweep(trace: Trace, x: np.ndarray, answers: np.ndarray, vertices: np.ndarray, target: str,
               name: str) -> ExitDecisions:
    """The per-exit rules on the path through ``vertices [K, L−1]`` (the fitted budgets, cost
    increasing) swept completely on ``trace`` (:func:`~ttamer.earlyexit.thresholds.path_rules`:
    every rule its examples tell apart), kept at the frontier of that sweep (``params`` = the
    position on the path) -- the per-exit class swept at the resolution of the data, as
    :func:`complete_sweep` sweeps the one-threshold classes, to at most ``MAX_SWEEP_POINTS``
    points, or ``MAX_SWEEP_CELLS / N`` on ``N`` examples."""
    loss = np.take_along_axis(exit_wrong(trace, target), answers, axis=1)
    taus = path_rules(vertices, x, max(2, MAX_SWEEP_CELLS // len(x)))
    mean_loss, mean_cost = rule_points(x, loss, trace.cumulative_cost, taus)
    span = float(mean_cost.max() - mean_cost.min())
    points = max(2, min(MAX_SWEEP_POINTS, MAX_SWEEP_CELLS // len(x)))  # the decisions hold points x N entries
    keep = budget_points(mean_cost, mean_loss, span / points if span > 0 else 1.0)
    return decisions(trace, x, answers, taus[keep], keep.astype(float), name)


def with_full_model(trace: Trace, dec: ExitDecisions | None, param: float) -> ExitDecisions:
    """The sweep ``dec`` (or nothing) followed by the full model: every exit consulted, the last
    one answering (``params`` entry ``param``)."""
    last = np.full((1, trace.n_examples), trace.n_exits - 1)
    full = ExitDecisions.from_last(trace, last, last, np.array([param]), dec.name if dec else "full")
    if dec is None:
        return full
    return ExitDecisions(np.r_[dec.answer, full.answer], np.r_[dec.last, full.last], np.r_[dec.cost, full.cost],
                         np.r_[dec.params, full.params], dec.name)


def paired_se(scores: np.ndarray, best: int, n_folds: int | None = None) -> np.ndarray:
    """``[C]`` standard error of the mean of ``scores[best] − scores[c]`` over the columns,
    counting ``n_folds`` independent columns (default: all; repeated folds are not independent)."""
    n = scores.shape[1] if n_folds is None else n_folds
    if scores.shape[1] < 2:
        return np.zeros(len(scores))
    return (scores[best] - scores).std(axis=1, ddof=1) / np.sqrt(n)


def one_se_choice(scores: np.ndarray, n_folds: int | None = None, levels: Sequence[int] | None = None) -> int:
    """The row of ``scores [C, F]`` (candidates × folds) chosen by the one-standard-error rule:
    of the rows whose mean is within one standard error of the best row's (the error of the
    paired fold differences, :func:`paired_se`), those of the lowest complexity ``levels [C]``
    (default: the row order, each row its own level), and of these the one of largest mean
    (the first on a tie)."""
    means = scores.mean(axis=1)
    best = int(np.argmax(means))
    within = np.flatnonzero(means[best] - means <= paired_se(scores, best, n_folds) + 1e-12)
    rank = np.arange(len(scores)) if levels is None else np.asarray(levels)
    simplest = within[rank[within] == rank[within].min()]
    return int(simplest[np.argmax(means[simplest])])


def _levels(cands: Sequence[PolicyCandidate]) -> list[int]:
    return [c.level for c in cands]


class ThresholdTamer(BaseTamer):
    """T-Tamer for early exit: threshold rules on calibration paths (module docstring).

    Parameters
    ----------
    lam : float
        The trade-off ``λ`` of :meth:`decide` (``θ_λ = λ·error + (1−λ)·cost``, cost as a
        fraction of the full model's).
    recall : bool
        Whether the rule may answer with any consulted exit (``False``: only with the exit it
        stops at).
    policy : str
        ``"auto"`` (cross-validation over :data:`CANDIDATES`) or one ``"THRESHOLDS:STATE:ANSWER"``.
    target : {"label", "final"}
        Whether an answer is right when it matches the label or the full model's prediction.
    cv_folds : int
        Folds of the cross-validation inside the calibration examples (fewer if the folds would
        hold under :data:`MIN_FOLD_EXAMPLES` examples; with fewer than two, the simplest policy
        class is used). The folds run on a pool of
        :func:`~ttamer.core.parallel.available_threads` threads (``TTAMER_NUM_THREADS``); the
        results do not depend on it.
    cv_max_examples : int
        The cross-validation runs on at most this many calibration examples (a seeded sample);
        the chosen rule is then fitted on all of them.
    n_lams : int
        ``λ`` values of the sweep (``λ/(1−λ)`` log-spaced in ``[10^-2.5, 10^4]``).
    seed : int
        Seed of the folds and of the cross-validation sample.
    progress : bool
        Show a progress bar over the cross-validation.

    Attributes
    ----------
    candidate_ : PolicyCandidate
        The chosen policy class.
    cv_scores_ : list of dict
        Per candidate: ``policy``, mean held-out ``auc`` and its ``se`` against the best
        (empty without cross-validation).
    cv_folds_ : int
        Folds actually used; ``cv_fold_scores_ [C, F]`` the held-out areas per candidate and
        fold, and ``cv_curves_`` the held-out accuracy of the budgets of the candidates with
        fitted thresholds (offset and per-exit; only after cross-validation).
    state_model_ : ~ttamer.earlyexit.states.StateModel
        The fitted state and answer rule.
    sweep_taus_ : ndarray of shape (P, L−1)
        The thresholds of the budgeted rules (:func:`budget_sweep`); ``sweep_cost_`` and
        ``sweep_loss_`` ``[P]`` their mean cost and loss on the calibration examples.
    taus_ : ndarray of shape (L−1,)
        The thresholds at ``lam_``.
    lam_ : float
        The ``λ`` of ``taus_`` and of :meth:`decide`: ``lam`` when :meth:`fit` or
        :meth:`set_lam` last ran (``set_params(lam=...)`` alone does not move the rule).
    """

    def __init__(self, lam: float = 0.95, recall: bool = True, policy: str = "auto", target: str = "label",
                 cv_folds: int = 5, cv_max_examples: int = CV_MAX_EXAMPLES, n_lams: int = 81, seed: int = 0,
                 progress: bool = False) -> None:
        self.lam = lam
        self.recall = recall
        self.policy = policy
        self.target = target
        self.cv_folds = cv_folds
        self.cv_max_examples = cv_max_examples
        self.n_lams = n_lams
        self.seed = seed
        self.progress = progress

    # ------------------------------------------------------------------ fitting
    def _validated(self) -> None:
        check_lam(self.lam)
        check_bool(self.recall, "recall")
        check_bool(self.progress, "progress")
        check_choice("target", self.target, ("label", "final"))
        if not isinstance(self.policy, str):
            raise TTamerError(f"policy must be 'auto' or 'THRESHOLDS:STATE:ANSWER', got {type(self.policy).__name__}")
        check_int(self.cv_folds, "cv_folds", minimum=2, maximum=100)
        check_int(self.cv_max_examples, "cv_max_examples", minimum=MIN_FOLD_EXAMPLES * 2)
        check_int(self.n_lams, "n_lams", minimum=2, maximum=10_000)
        check_seed(self.seed)

    def candidates(self) -> list[PolicyCandidate]:
        """The policy classes :meth:`fit` chooses from (only no-recall ones if ``recall=False``)."""
        cands = list(CANDIDATES) if self.policy == "auto" else [PolicyCandidate.parse(self.policy)]
        if not self.recall:
            if self.policy != "auto" and cands[0].recall:
                raise TTamerError(f"policy {self.policy!r} answers with an earlier exit, which recall=False forbids")
            cands = [c for c in cands if not c.recall]
        return cands

    def lam_sweep(self) -> np.ndarray:
        """The ``λ`` values of the sweep, increasing, with ``λ = 0`` and ``λ = 1``."""
        return np.r_[0.0, lam_grid(int(self.n_lams), 10 ** -2.5, 1e4), 1.0]

    def fit(self, trace: Trace) -> "ThresholdTamer":
        """Choose the policy class (``policy="auto"``) and fit its thresholds on ``trace``."""
        self._validated()
        check_trace(trace, "ThresholdTamer.fit", MIN_FIT_EXAMPLES, chain=True).validate()
        for stale in ("cv_fold_scores_", "cv_curves_"):  # set only where this fit cross-validates
            self.__dict__.pop(stale, None)
        cands = self.candidates()
        self.cv_folds_ = min(int(self.cv_folds), min(trace.n_examples, int(self.cv_max_examples)) // MIN_FOLD_EXAMPLES)
        if len(cands) > 1 and self.cv_folds_ >= 2:
            scores = self._cross_validate(trace, cands)
            self.cv_fold_scores_ = scores
            chosen = one_se_choice(scores, self.cv_folds_, _levels(cands))
            best = int(np.argmax(scores.mean(axis=1)))
            se = paired_se(scores, best, self.cv_folds_)
            self.cv_scores_ = [{"policy": c.key, "auc": float(s.mean()), "se": float(e)}
                               for c, s, e in zip(cands, scores, se)]
        else:  # one candidate, or too few examples to cross-validate: the simplest class
            chosen, self.cv_scores_ = 0, []
        self.candidate_, self.fitted_shape_ = cands[chosen], (trace.n_exits, trace.n_classes)
        self.state_model_ = StateModel.fit(trace, self.candidate_.state, self.candidate_.answer, self.target)
        x, answers = self.state_model_.transform(trace)
        loss = np.take_along_axis(exit_wrong(trace, self.target), answers, axis=1)
        self.costs_ = normalized_costs(trace)
        self.offsets_ = class_offsets(self.candidate_, x, loss, self.costs_)
        self.sweep_taus_, self.sweep_cost_, self.sweep_loss_ = budget_sweep(self.candidate_, x, loss, self.costs_,
                                                                           self.lam_sweep(), self.offsets_)
        self.lam_ = float(self.lam)
        self.taus_ = lambda_thresholds(self.candidate_, x, loss, self.costs_, np.array([self.lam_]), self.offsets_)[0]
        self._fit_data, self._fit_fingerprint = (x, loss), trace.fingerprint()
        return self

    def _cross_validate(self, trace: Trace, cands: Sequence[PolicyCandidate]) -> np.ndarray:
        """``[C, R·F]`` held-out frontier areas of every candidate on every fold of ``R`` repeats:
        ``R > 1`` below :data:`CV_REPEAT_EXAMPLES` calibration examples, and up to
        :data:`MAX_CV_REPEATS` where the choice needs confirming (:meth:`_unconfirmed`)."""
        if trace.n_examples > self.cv_max_examples:
            trace = trace.sample(int(self.cv_max_examples), np.random.default_rng(int(self.seed)))
        repeats = int(min(MAX_CV_REPEATS, np.ceil(CV_REPEAT_EXAMPLES / trace.n_examples)))
        self.cv_curves_: dict[str, list[dict[str, np.ndarray]]] = {c.key: [] for c in cands}
        scores = self._cv_repeats(trace, cands, range(repeats))
        if repeats < MAX_CV_REPEATS and self._unconfirmed(scores, _levels(cands)):
            scores = np.hstack([scores, self._cv_repeats(trace, cands, range(repeats, MAX_CV_REPEATS))])
        return scores

    def _unconfirmed(self, scores: np.ndarray, levels: Sequence[int]) -> bool:
        """Whether the folds choose (:func:`one_se_choice`) a class richer than the simplest,
        ahead of the simplest by fewer than :data:`CV_CONFIRM_Z` standard errors of the paired
        fold differences (:func:`paired_se`)."""
        chosen = one_se_choice(scores, self.cv_folds_, levels)
        if chosen == 0:
            return False
        gap = scores[chosen].mean() - scores[0].mean()
        return bool(gap < CV_CONFIRM_Z * paired_se(scores, chosen, self.cv_folds_)[0])

    def _cv_repeats(self, trace: Trace, cands: Sequence[PolicyCandidate], repeats: range) -> np.ndarray:
        """``[C, len(repeats)·F]`` held-out areas of the candidates on the folds of ``repeats``
        (each repeat its own seeded folds); their held-out curves are added to ``cv_curves_``."""
        splits = [(r, f) for r in repeats for f in range(self.cv_folds_)]
        lams = self.lam_sweep()
        scores = np.zeros((len(cands), len(splits)))
        bar = tqdm(total=len(splits) * len(cands), desc="cross-validation", disable=not self.progress, leave=False)
        threads = min(available_threads(), len(splits))
        with ThreadPoolExecutor(threads) as pool:  # the folds' heavy numpy calls release the GIL
            done = pool.map(lambda rf: self._cv_split(trace, cands, *rf, lams, bar), splits)
            for k, (column, curves) in enumerate(done):
                scores[:, k] = column
                for key, curve in curves.items():
                    self.cv_curves_[key].append(curve)
        bar.close()
        return scores

    def _cv_split(self, trace: Trace, cands: Sequence[PolicyCandidate], r: int, f: int, lams: np.ndarray,
                  bar: tqdm) -> tuple[np.ndarray, dict[str, dict[str, np.ndarray]]]:
        """Held-out areas ``[C]`` of the candidates on fold ``f`` of repeat ``r``, and the
        held-out accuracy of the budgets of those with fitted thresholds (by candidate key)."""
        folds = cv_folds_of(trace.n_examples, self.cv_folds_, int(self.seed) + r)
        train, test = trace.subset(folds != f), trace.subset(folds == f)
        wrong, costs = exit_wrong(train, self.target), normalized_costs(train)
        models: dict[tuple[str, str], tuple] = {}
        column, curves = np.zeros(len(cands)), {}
        for c, cand in enumerate(cands):
            key = (cand.state, cand.answer)
            if key not in models:
                sm = StateModel.fit(train, cand.state, cand.answer, self.target)
                models[key] = (sm.transform(train), sm.transform(test))
            (x, ans), (x_te, ans_te) = models[key]
            loss = np.take_along_axis(wrong, ans, axis=1)
            offsets = class_offsets(cand, x, loss, costs)
            taus, budget, _ = budget_sweep(cand, x, loss, costs, lams, offsets)
            if cand.thresholds != "common":  # fitted thresholds: the budgets' held-out accuracy (SLO)
                keep = evenly(len(budget), MAX_CV_POINTS)
                dec = decisions(test, x_te, ans_te, taus[keep], budget[keep], "cv")
                curves[cand.key] = {"budget": budget[keep], "accuracy": dec.correct(test, self.target).mean(axis=1)}
            if cand.thresholds == "per_exit":
                dec = path_sweep(test, x_te, ans_te, taus, self.target, "cv")
            else:
                dec = complete_sweep(test, x_te, ans_te, self.target, "cv", offsets)
            column[c] = heldout_auc(dec, test, self.target)
            bar.update()
        return column, curves

    def without_recall(self, trace: Trace) -> "ThresholdTamer":
        """The no-recall estimator fitted on the same calibration ``trace``, reusing this fit's
        cross-validation: the no-recall classes are a subset of the candidates, so their
        held-out scores are already known (same folds, same choice rule)."""
        self.check_fitted_on(trace, "without_recall")
        params = dict(self.get_params(), recall=False)
        if not hasattr(self, "cv_fold_scores_"):
            policy = self.policy if self.policy == "auto" else self.candidate_.without_recall().key
            return ThresholdTamer(**dict(params, policy=policy)).fit(trace)
        cands = self.candidates()
        keep = [k for k, c in enumerate(cands) if not c.recall]
        scores = self.cv_fold_scores_[keep]
        choice = cands[keep[one_se_choice(scores, self.cv_folds_, _levels([cands[k] for k in keep]))]]
        other = ThresholdTamer(**dict(params, policy=choice.key)).fit(trace)
        se = paired_se(scores, int(np.argmax(scores.mean(axis=1))), self.cv_folds_)
        other.cv_scores_ = [self.cv_scores_[k] | {"se": float(e)} for k, e in zip(keep, se)]
        other.cv_fold_scores_, other.cv_folds_ = scores, self.cv_folds_
        other.cv_curves_ = {cands[k].key: self.cv_curves_[cands[k].key] for k in keep}
        return other

    def check_fitted_on(self, trace: Trace, who: str) -> Trace:
        """``trace`` if it is the calibration trace this estimator was fitted on (same examples,
        same numbers: what reads the fit's folds or calibration states needs); else a
        :class:`~ttamer.core.errors.TTamerError` naming ``who``."""
        self.check_input(trace)
        if trace.n_examples != len(self._fit_data[0]):
            raise TTamerError(f"{who}: the trace has {trace.n_examples} examples, the one this estimator was fitted "
                              f"on {len(self._fit_data[0])}; give it the same calibration trace")
        if trace.fingerprint() != self._fit_fingerprint:
            raise TTamerError(f"{who}: the trace is not the one this estimator was fitted on (same size, other "
                              "numbers); give it the same calibration trace")
        return trace

    # ------------------------------------------------------------------ deciding
    def set_lam(self, lam: float) -> "ThresholdTamer":
        """Move the operating point of :meth:`decide` to another ``λ`` (same policy class and state)."""
        self.check_fitted()
        self.lam = check_lam(lam)
        x, loss = self._fit_data
        self.lam_ = float(self.lam)
        self.taus_ = lambda_thresholds(self.candidate_, x, loss, self.costs_, np.array([self.lam_]), self.offsets_)[0]
        return self

    def decide(self, trace: Trace) -> ExitDecisions:
        """Exit answered with, last exit consulted and cost per example, at ``lam_``."""
        self.check_input(trace)
        x, answers = self.state_model_.transform(trace)
        return decisions(trace, x, answers, self.taus_[None, :], np.array([self.lam_]), self.name)[0]

    def decide_sweep(self, trace: Trace) -> ExitDecisions:
        """The budgeted rules of the fitted class (:func:`budget_sweep`) on ``trace``, and last
        the full model (every exit, answering with the last: the limit ``λ → 1``, to which
        every rule may fall back): arrays ``[P, N]``, ``params`` = each rule's mean cost on the
        calibration examples (its budget; 1 for the full model). On a large ``trace`` the
        budgets are thinned evenly to at most ``MAX_SWEEP_CELLS / N`` rules."""
        self.check_input(trace)
        x, answers = self.state_model_.transform(trace)
        keep = evenly(len(self.sweep_cost_), MAX_SWEEP_CELLS // trace.n_examples)
        dec = decisions(trace, x, answers, self.sweep_taus_[keep], self.sweep_cost_[keep], self.name)
        return with_full_model(trace, dec, 1.0)

    def decide_budget(self, trace: Trace, index: int) -> ExitDecisions:
        """:meth:`decide` with the rule of budget ``index`` of the fitted sweep (``sweep_cost_``);
        ``index = len(sweep_cost_)`` is the full model (an integer ``0..len(sweep_cost_)``)."""
        self.check_input(trace)
        index = check_int(index, "decide_budget: index", minimum=0, maximum=len(self.sweep_cost_))
        if index == len(self.sweep_cost_):
            return with_full_model(trace, None, 1.0)[0]
        x, answers = self.state_model_.transform(trace)
        return decisions(trace, x, answers, self.sweep_taus_[index : index + 1],
                         self.sweep_cost_[index : index + 1], self.name)[0]

    def decide_rules(self, trace: Trace, taus: np.ndarray) -> ExitDecisions:
        """The decisions ``[P, N]`` of the fitted class's state and answer rule under the
        thresholds ``taus [P, L−1]`` (``params`` = row index; numbers or ``±inf``, at most
        ``MAX_SWEEP_CELLS / N`` rows)."""
        self.check_input(trace)
        most = max(1, MAX_SWEEP_CELLS // trace.n_examples)
        taus = check_numbers(taus, "taus", ndim=None, infinite=True)
        if taus.ndim != 2 or taus.shape[1] != trace.n_exits - 1:
            raise TTamerError(f"taus must be an array [P, {trace.n_exits - 1}] of thresholds (one per exit but "
                              f"the last), got shape {taus.shape}")
        if len(taus) > most:
            raise TTamerError(f"taus has {len(taus):,} rows; at most {most:,} (MAX_SWEEP_CELLS / N) are allowed")
        x, answers = self.state_model_.transform(trace)
        return decisions(trace, x, answers, taus, np.arange(len(taus), dtype=float), self.name)

    def frontier_sweep(self, trace: Trace) -> ExitDecisions:
        """The sweep a frontier is scored on, at the resolution of ``trace`` (read with its
        labels, exactly as the heuristics are swept): for a one-threshold class (common or
        offset) every distinct threshold of its state (:func:`complete_sweep`), for the per-exit
        class every rule on the path through its fitted budgets that the examples tell apart
        (:func:`path_sweep`); then the full model."""
        self.check_input(trace)
        x, answers = self.state_model_.transform(trace)
        if self.candidate_.thresholds == "per_exit":
            dec = path_sweep(trace, x, answers, self.sweep_taus_, self.target, self.name)
        else:
            dec = complete_sweep(trace, x, answers, self.target, self.name, self.offsets_)
        return with_full_model(trace, dec, np.inf)

    def runtime_rule(self) -> "RuntimeRule":
        """The fitted rule at ``lam`` in the form a serving runtime evaluates exit by exit
        (:class:`RuntimeRule`; served by :class:`ttamer.serving.runtime.EarlyExitServer`): its
        decisions on the exits' outputs are :meth:`decide`'s."""
        self.check_fitted()
        return RuntimeRule(self.state_model_, np.asarray(self.taus_, dtype=np.float64).copy(),
                           f"{self.name} λ={self.lam_:g} ({self.candidate_.key})")

    @property
    def name(self) -> str:
        return "ttamer" if self.recall else "no-recall"

    def describe(self) -> str:
        self.check_fitted()
        return f"T-Tamer, path-wise thresholds: {self.candidate_.describe()}"


class RuntimeRule:
    """A fitted threshold rule evaluated online, exit by exit, on the examples still running.

    After exit ``i`` the runtime gives the rule the softmax rows of exit ``i`` of the examples
    still running and stops those with ``x_i ≥ taus[i]`` (every one at the last exit),
    answering with ``a_i``. The serving runtime calls :meth:`begin` once per batch and
    :meth:`RuleRun.advance` after every exit: the state is kept *incrementally* -- the running
    agreement counter, the class counts of the predictions so far, the running sum of the
    softmaxes, the running argmax of the confidence, and the log-odds and predictions of the
    exits seen in preallocated ``[B, L]`` buffers -- so that a step is a fixed number of
    vectorised numpy calls whatever ``i`` (see :class:`RuleRun` for what each state costs). The
    arithmetic is that of :meth:`StateModel.transform <ttamer.earlyexit.states.StateModel.transform>`
    on the same outputs, operation for operation, so the states are equal to the last bit
    and the served decisions are :meth:`ThresholdTamer.decide`'s (the book's chapter
    *Measured: a served early-exit policy*). :meth:`step` is the stateless form (it replays
    exits ``0..i``).

    Parameters
    ----------
    state_model : ~ttamer.earlyexit.states.StateModel
        The fitted state and answer rule.
    taus : ndarray of shape (L−1,)
        The threshold of each exit but the last.
    name : str
        What the rule is (for reports).
    """

    def __init__(self, state_model: StateModel, taus: np.ndarray, name: str = "threshold rule") -> None:
        L = int(state_model.n_exits)
        taus = np.asarray(taus, dtype=np.float64).reshape(-1)
        if len(taus) != L - 1 or np.isnan(taus).any():
            raise TTamerError(f"taus must hold {L - 1} numbers (one per exit but the last), got {taus.tolist()}")
        self.state_model, self.name = state_model, str(name)
        self.n_exits, self.n_classes = L, int(state_model.n_classes)
        #: Threshold per exit, with ``thresholds[L−1] = −inf`` (the last exit always stops).
        self.thresholds = np.r_[taus, -np.inf]
        self.taus = taus
        state, answer = state_model.state, state_model.answer
        #: What :class:`RuleRun`'s :class:`~ttamer.earlyexit.online.ExitHistory` keeps
        #: (:data:`~ttamer.earlyexit.online.KEEPS`).
        self.keeps = frozenset(
            ({"lo", "counts", "run", "history"} if state == "learned" else set())
            | ({"run"} if state == "patience" else set())
            | ({"lo", "pred", "counts", "total"} if answer in POSTERIOR_ANSWERS else set())
            | ({"pred", "total"} if answer in ("ensemble", "ensemble_at_end") else set()))
        if state == "learned":
            w, scale = state_model.models["learned"]
            self._learned = [(w[i : i + 1], scale) for i in range(L)]
        if "posterior" in state_model.models:
            self._posterior = [w / scale for w, scale in state_model.models["posterior"]]
        self._exit = [np.full(1, i, dtype=np.int64) for i in range(L)]
        for e in self._exit:
            e.flags.writeable = False

    def exits(self, i: int, B: int) -> np.ndarray:
        """``[B]`` int64 filled with exit ``i`` (a cached read-only array: no allocation per step;
        :func:`~ttamer.earlyexit.online.exit_column`)."""
        return exit_column(self._exit, i, B, MAX_RUN_CELLS)

    def begin(self, n: int) -> "RuleRun":
        """The running state of the rule on a batch of ``n`` examples, before exit 0 (its
        buffers, ``n`` by exits by classes, at most :data:`MAX_RUN_CELLS` numbers)."""
        n = check_batch(n, self.n_exits * self.n_classes, MAX_RUN_CELLS)
        return PosteriorRunOne(self) if n == 1 and self.state_model.state == "posterior" else RuleRun(self, n)

    def step(self, i: int, probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(x_i, a_i)``, both ``[B]``: the state after exit ``i`` and the exit answering if the
        rule stops there, from ``probs [B, i+1, C]`` (float32 softmax rows of exits ``0..i``);
        stateless (replays :meth:`RuleRun.advance` over exits ``0..i``; ``probs`` checked as
        :func:`~ttamer.earlyexit.online.check_exit_probs` does)."""
        i = check_exit(i, self.n_exits, "step")
        check_exit_probs(i, probs, self.n_classes)
        run = self.begin(probs.shape[0])
        for k in range(i + 1):
            out = run.advance(k, probs[:, k])
        return out

    def stops(self, i: int, x: np.ndarray) -> np.ndarray:
        """``[B]`` bool: the rule stops after exit ``i`` on states ``x [B]`` (always at the last
        exit; :func:`~ttamer.earlyexit.online.check_stop_states`)."""
        return x >= self.thresholds[check_stop_states(i, x, self.n_exits)]

    def __repr__(self) -> str:
        return f"RuntimeRule({self.name!r}, taus={np.round(self.taus, 4).tolist()})"


class RuleRun(InTurn):
    """The running state of a :class:`RuntimeRule` on one batch (:meth:`RuntimeRule.begin`).

    :meth:`advance` takes exit ``i``'s softmax rows and returns ``(x_i, a_i)``; :meth:`keep`
    drops the rows that stopped. The exits come in turn (:class:`~ttamer.earlyexit.online.InTurn`)
    and each exit's rows are checked to be softmax rows of the rule's classes
    (:func:`~ttamer.earlyexit.online.check_exit_rows`). What the exits seen so far left is kept by an
    :class:`~ttamer.earlyexit.online.ExitHistory`. What a step computes, per state (every item
    one numpy call on ``[B]`` or ``[B, C]`` arrays, unless said):

    * max-probability, minus the entropy: the reduction of exit ``i``'s row;
    * patience: the agreement counter, ``run ← run + 1`` where exit ``i`` predicts what exit
      ``i − 1`` did, else ``0``;
    * learned (the features of :func:`~ttamer.earlyexit.features.history_features`): exit
      ``i``'s log-odds, margin and normalised entropy, the share of earlier exits predicting
      its class (class counts of the earlier predictions), the agreement run and the mean
      log-odds of the earlier exits -- the last one numpy's mean over the row of the
      preallocated log-odds buffer, a single C reduction over ``i`` numbers, because a running
      sum adds in another order than numpy's reduction and would differ from the fitted
      state in the last bit; then exit ``i``'s logistic model;
    * posterior (and the ``"posterior_at_end"`` answer at the last exit): the pair features of
      :func:`~ttamer.earlyexit.logistic.pair_features` for every hypothesis ``j ≤ i`` -- each
      depends on exit ``i`` (the running ensemble, the class shares), so this step is
      ``O(i)`` numbers, built from the buffers and the running softmax sum in a fixed number
      of calls, then one product with exit ``i``'s model;
    * ensemble (and ``"ensemble_at_end"``): the running softmax sum read at the predicted
      classes of exits ``0..i`` (``O(i)`` numbers, one call).

    The answers ``"last"`` and ``"confident"`` (running argmax of the confidence, first on ties)
    are ``O(1)``.
    """

    def __init__(self, rule: RuntimeRule, n: int) -> None:
        self.rule, self.n, self.n_exits = rule, n, rule.n_exits
        self.h = ExitHistory(n, rule.n_exits, rule.n_classes, rule.keeps)
        #: The exit the next :meth:`advance` must be given (the exits come in order).
        self.next_exit = 0
        self.best = self.best_at = None
        #: Whether the run holds one query of the max-probability state answering with the exit
        #: stopped at (then it steps on Python scalars).
        self.scalar = n == 1 and rule.state_model.state == "max_prob" and rule.state_model.answer == "last"

    def keep(self, mask: np.ndarray) -> None:
        """Keep the rows where ``mask [B]`` (bool) is true; the others stopped."""
        self.h.keep(mask)
        if self.best is not None:
            self.best, self.best_at = self.best[mask], self.best_at[mask]

    def advance(self, i: int, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(x_i, a_i)``, both ``[B]``: the state after exit ``i`` and the exit answering if the
        rule stops there, from exit ``i``'s float32 softmax rows ``p [B, C]``; called for
        ``i = 0, 1, …`` in turn."""
        i = self._in_turn(i)
        rule, h = self.rule, self.h
        state, answer = rule.state_model.state, rule.state_model.answer
        h.add(i, p, self.check_rows)
        self.next_exit = i + 1
        post = None
        if state == "max_prob":
            x = h.mp
        elif state == "neg_entropy":
            x = -entropy(p)
        elif state == "patience":
            x = h.run.astype(np.float64)
        elif state == "learned":
            x = logistic_at(h.history(i), *rule._learned[i])
        elif state == "posterior":
            post = h.posterior(i, rule._posterior[i])
            x = post[0]
        else:  # ensemble
            return self._ensemble(i)
        return x, self._answer(i, answer, post)

    def _answer(self, i: int, answer: str, post: tuple[np.ndarray, np.ndarray] | None) -> np.ndarray:
        """``[B]``: the exit answering if the rule stops after exit ``i``."""
        h, B = self.h, len(self.h.rows)
        if answer == "last" or (answer.endswith("_at_end") and i < self.rule.n_exits - 1):
            return self.rule.exits(i, B)
        if answer == "confident":
            if i == 0:
                self.best, self.best_at = h.mp, np.zeros(B, dtype=np.int64)
            else:
                better = h.mp > self.best
                self.best_at = np.where(better, i, self.best_at)
                self.best = np.where(better, h.mp, self.best)
            return self.best_at
        if answer == "ensemble_at_end":
            return self._ensemble(i)[1]
        # posterior, posterior_at_end (at the last exit)
        return (post if post is not None else h.posterior(i, self.rule._posterior[i]))[1]

    def advance_one(self, i: int, p: np.ndarray) -> tuple[float, int]:
        """:meth:`advance` on one query (``p [1, C]``), as Python scalars. The max-probability
        state answering with the exit stopped at keeps nothing across exits and reads its
        state off the row without numpy (the float32 maximum, exactly the fitted state's value);
        any other state is :meth:`advance`'s."""
        if self.scalar:
            i = self._in_turn(i, "advance_one")
            x = max(exit_row(i, p, self.rule.n_classes) if self.check_rows else p.tolist()[0])
            self.next_exit = i + 1
            return x, i
        x, a = self.advance(i, p)
        return float(x[0]), int(a[0])

    def _ensemble(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """:func:`~ttamer.earlyexit.states.ensemble_answers` at exit ``i`` from the running sum."""
        score = np.take_along_axis(self.h.total, self.h.pred[:, : i + 1], axis=1) / (i + 1)
        return score.max(axis=1), score.argmax(axis=1)


class PosteriorRunOne(RuleRun):
    """The running state of a :class:`RuntimeRule` of the posterior state on one query: its
    hypotheses kept on Python floats (:class:`~ttamer.earlyexit.online.PosteriorOne`).
    :meth:`decide_one` takes the decision on them where their margin tells, and on
    :meth:`advance_one`'s exact values (the numpy arithmetic of :class:`RuleRun`) otherwise."""

    def __init__(self, rule: RuntimeRule) -> None:
        super().__init__(rule, 1)
        self.one = PosteriorOne(rule._posterior, rule.n_classes)

    def advance(self, i: int, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`advance_one` as ``[1]`` arrays."""
        x, a = self.advance_one(i, p)
        return np.array([x]), np.array([a], dtype=np.int64)

    def advance_one(self, i: int, p: np.ndarray) -> tuple[float, int]:
        """``(x_i, a_i)`` on one query (``p [1, C]``), exactly :class:`RuleRun`'s values."""
        i = self._add(i, p, "advance_one")
        return self.one.exact(i)

    def decide_one(self, i: int, p: np.ndarray, tau: float) -> tuple[bool, int]:
        """``(stop, a)`` on one query (``p [1, C]``): whether the state after exit ``i``
        reaches the threshold, ``x_i ≥ tau`` (a Python float), and the exit answering there --
        on Python floats where their margin tells (:meth:`PosteriorOne.decide
        <ttamer.earlyexit.online.PosteriorOne.decide>`), else on :meth:`advance_one`'s values."""
        i = self._add(i, p, "decide_one")
        got = self.one.decide(i, tau)
        if got is None:
            x, a = self.one.exact(i)
            got = (bool(x >= tau), a)
        return got

    def _add(self, i: int, p: np.ndarray, who: str) -> int:
        """Exit ``i``'s row ``p [1, C]``, checked, added to the query's hypotheses; ``i``."""
        i = self._in_turn(i, who)
        self.one.add_row(exit_row(i, p, self.rule.n_classes, who) if self.check_rows else p.tolist()[0])
        self.next_exit = i + 1
        return i
