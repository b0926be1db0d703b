"""T-Tamer with skips on a chain of separate models, fitted on calibration paths (the book's chapter *Skipping models in a cascade*).

Models ``0, 1, …, n−1`` (a :class:`~ttamer.earlyexit.traces.Trace` whose parents form the chain
``0 → 1 → … → n−1``, the default) are *separate*: consulting model ``j`` costs its own ``c_j`` whatever was
consulted before, and any later model may be consulted next -- the transitive closure of a
line (the book's chapter *The model*). A **route** visits an increasing sequence of models;
its cost is the sum of their costs.

**The rule.** After the models of the set ``h`` were consulted (``i = max h`` the last one),
the rule observes a scalar state ``x_h`` -- ``"max_prob"``: model ``i``'s max-probability;
``"best"``: the largest max-probability among the models of ``h`` -- and, according to the
region ``b = region_h(x_h)`` the state falls in, either **stops** or consults a later model
``j > i`` (``j = i + 1``: the next one; ``j > i + 1``: a **skip**). Regions are either
(``regions="thresholds"``, the default) one threshold per action with the actions ordered by
the state -- the least confident examples go to the farthest model ``n − 1``, then to nearer
ones, the most confident stop -- placed exactly at the best cuts between distinct calibration
values (:func:`threshold_regions`), or (``"bins"``) ``K`` quantile bins of the calibration
values of ``x_h``, each with its own action. At the start it consults a fixed model ``j_0``. On stopping it answers with the
model of ``h`` of largest max-probability (``answer="confident"``, recall; ties to the
later model) or with ``i`` (``"last"``).

**Backward induction on calibration paths.** Every calibration example carries every model's
output, so the realised trade-off of any action is known. With ``θ_λ = λ·loss + κ·cost``
(``κ = 1 − λ``, costs divided by ``scale``, by default the last model's mean cost), sets are
processed in decreasing order of their bit masks (every action leads to a larger mask):

.. math::

    Q_h(n, \\text{stop}) = λ\\,\\ell_n(a_h(n)), \\qquad
    Q_h(n, j) = κ\\,c_j(n) + G_{h ∪ \\{j\\}}(n), \\\\
    α_h = \\arg\\min_{α} \\sum_n Q_h(n, α(x_{n,h})), \\qquad
    G_h(n) = Q_h(n, α_h(x_{n,h})),

the minimum over the rules ``α`` of the chosen kind (an action per bin: per bin, the action
of least sum; ordered thresholds: the best cuts), and
``j_0 = argmin_j Σ_n κ c_j(n) + G_{\\{j\\}}(n)``. ``G_h(n)`` is *by construction* the
realised trade-off of the fitted rule from ``h`` on for example ``n``, so the claimed value
``mean_n G_start(n)`` is exactly the rule's in-sample trade-off. Each bin's action is chosen on
all calibration examples (as if every example could reach ``h``), the standard
backward induction of :func:`~ttamer.earlyexit.thresholds.backward_thresholds`; when the state
separates the examples (a *saturated* state: one example per bin), it is the exact minimum over
all per-state action tables. With ``sequential=True`` the moves are restricted to
``stop / next`` and the start to model 0 (the classic cascade with per-model regions).
:class:`SkipTamer` fits both classes and keeps, per ``λ``, the one of smaller in-sample
trade-off, so the skip rule is never worse in-sample than its sequential restriction.

**The exact binned comparison.** :func:`skip_chain_instance` builds the Markov chain instance
of the book's chapter *The model* on quantile bins of each model's max-probability, with a
zero-cost entry node in front so that the first consulted model may be any model, and every
skip ``i → j`` at cost ``c_j``; :func:`exact_skip_decisions` solves it with :func:`~ttamer.solvers.solve.solve`
(the ``(exit, state, X)`` dynamic program with recall, exact on the instance; the state of a
skipped-to model follows the product of the transition matrices in between -- the Markov
assumption) and runs the policy on test examples.

Vectorised over examples and ``λ``; loops run over the ``2^n − 1`` sets and their actions only.
"""

from __future__ import annotations

import itertools
from dataclasses import replace
from typing import Any, Sequence

import numpy as np

from .cascade import (build_tree_instance, check_bootstrap_inputs, check_same_models,
                      run_tree_policy)
from .crossval import check_lams, lam_grid
from .features import MAX_K
from ..core.errors import TTamerError
from ..core.instance import Instance
from ..solvers.solve import solve
from .traces import ExitDecisions, Trace
from ..core.validate import check_bool, check_choice, check_int, check_lam, check_real
from .metrics import MAX_SWEEP_POINTS
from .base import ANSWER_RULES, FEATURES as _FEATURE_VOCABULARY, BaseTamer, check_trace, vocabulary_subset
from .metrics import ROUNDING, check_numbers, cost_at_accuracy, frontier_auc, pareto_frontier, pareto_indices
from .thresholds import first_stop, frontier_taus

#: The states of the skip rule (a subset of :data:`ttamer.earlyexit.base.FEATURES`).
FEATURES = vocabulary_subset(_FEATURE_VOCABULARY, "max_prob", "best")
REGIONS = ("thresholds", "bins")
#: Its answer rules (a subset of :data:`ttamer.earlyexit.base.ANSWER_RULES`).
ANSWERS = vocabulary_subset(ANSWER_RULES, "confident", "last")
#: Largest chain handled (the rule has a region table for each of the ``2^n − 1`` sets).
MAX_MODELS = 10
#: Loss of answering at the entry node of the binned instance (never worth it on the λ grid).
ENTRY_LOSS = 10.0
STOP = -1


# --------------------------------------------------------------------------- chain arrays
def check_chain(trace: Any, where: str = "trace", min_examples: int = 2) -> Trace:
    """``trace`` if it is a valid :class:`~ttamer.earlyexit.traces.Trace`
    (:meth:`~ttamer.earlyexit.traces.Trace.validate`) of at least ``min_examples`` examples whose
    models form the chain ``0 → 1 → …``."""
    if not isinstance(trace, Trace):
        raise TTamerError(f"{where}: expected a Trace, got {type(trace).__name__}")
    trace.validate()
    n = trace.n_exits
    if n < 2:
        raise TTamerError(f"{where}: a chain needs at least 2 models, got {n}")
    if n > MAX_MODELS:
        raise TTamerError(f"{where}: {n} models; the skip rule handles at most {MAX_MODELS} (MAX_MODELS)")
    want = np.arange(-1, n - 1)
    parents, names = trace.parents, trace.exit_names
    for v in range(n):
        if parents[v] != want[v]:
            par = "start" if parents[v] < 0 else repr(names[parents[v]])
            exp = "start" if want[v] < 0 else repr(names[want[v]])
            raise TTamerError(f"{where}: model {names[v]!r} has parent {par}; a chain needs {exp} "
                              "(models in chain order, each after the previous one)")
    if trace.n_examples < min_examples:
        raise TTamerError(f"{where}: need at least {min_examples} examples, got {trace.n_examples}")
    return trace


def chain_parents(n: int) -> np.ndarray:
    """The parents ``[-1, 0, …, n−2]`` of a chain of ``n`` models."""
    return np.arange(-1, n - 1)


def check_matching(calibration: Trace, test: Trace, who: str) -> None:
    """Refuse (:class:`~ttamer.core.errors.TraceError`) a ``test`` chain whose models or classes
    are not those of the ``calibration`` chain (:func:`~ttamer.earlyexit.cascade.check_same_models`):
    a rule tuned on one set of models is run only on the same models."""
    check_same_models(test, calibration.exit_names, calibration.parents, calibration.n_classes, f"{who}: test: ",
                      "calibration")


def masks(n: int) -> list[int]:
    """Non-empty sets of ``n`` models as bit masks, decreasing (every move goes to a larger mask)."""
    return list(range((1 << n) - 1, 0, -1))


def last_of(mask: int) -> int:
    """The last (largest) model of the set ``mask``."""
    return mask.bit_length() - 1


def members(mask: int) -> list[int]:
    return [v for v in range(mask.bit_length()) if mask >> v & 1]


def set_feature(mp: np.ndarray, mask: int, feature: str) -> np.ndarray:
    """``[N]`` state ``x_h``: the last model's max-probability, or the largest over the set."""
    return mp[:, last_of(mask)] if feature == "max_prob" else mp[:, members(mask)].max(axis=1)


def set_answer(mp: np.ndarray, mask: int, answer: str) -> np.ndarray:
    """``[N]`` model answering on stopping after ``mask``: the most confident consulted model
    (ties to the later one) or the last."""
    m = members(mask)
    if answer == "last" or len(m) == 1:
        return np.full(len(mp), m[-1], dtype=np.int64)
    sub = mp[:, m[::-1]]
    return np.asarray(m[::-1], dtype=np.int64)[sub.argmax(axis=1)]


def moves(mask: int, n: int, sequential: bool) -> list[int]:
    """Actions after ``mask``: ``STOP`` then the models that may be consulted next."""
    i = last_of(mask)
    nxt = [i + 1] if sequential else list(range(i + 1, n))
    return [STOP] + [j for j in nxt if j < n]


def quantile_edges(x: np.ndarray, K: int) -> np.ndarray:
    """Inner edges of ``K`` quantile bins of ``x`` (distinct values; fewer bins on ties)."""
    if K <= 1:
        return np.empty(0)
    return np.unique(np.quantile(x, np.arange(1, K) / K))


def bin_of(x: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Bin ``b`` with ``edges[b−1] ≤ x < edges[b]``."""
    return np.searchsorted(edges, x, side="right")


# --------------------------------------------------------------------------- induction
def _running_argmin(T: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Running minimum of ``T [P, M]`` along its last axis and the first position attaining it."""
    M = np.minimum.accumulate(T, axis=1)
    k = np.arange(T.shape[1])
    new = np.concatenate([np.ones((T.shape[0], 1), dtype=bool), M[:, 1:] < M[:, :-1]], axis=1)
    return M, np.maximum.accumulate(np.where(new, k[None, :], 0), axis=1)


def threshold_regions(x: np.ndarray, Qo: np.ndarray) -> np.ndarray:
    """``[P, A−1]`` thresholds ``τ_1 ≤ … ≤ τ_{A−1}`` of a rule that plays action ``s`` of ``Qo``
    (``[A, P, N]``, the actions in increasing order of ``x``) when ``τ_s ≤ x < τ_{s+1}``,
    minimising ``Σ_n Qo[s(n), p, n]`` exactly over all cuts between distinct values of ``x``.

    With ``C_s(k)`` the sums of ``Qo[s]`` over the ``k`` smallest ``x`` and cuts
    ``k_1 ≤ … ≤ k_{A−1}``, the total is ``C_{A−1}(N) + Σ_s D_s(k_s)``, ``D_s = C_{s−1} − C_s``:
    minimised by running minima, ``H_1 = cummin D_1``, ``H_s = cummin(H_{s−1} + D_s)`` (O(A·N)
    per ``λ``, vectorised over ``λ``), then read back from ``k_{A−1}`` down.
    """
    from .thresholds import _cut_to_threshold

    A, P, N = Qo.shape
    order = np.argsort(x, kind="stable")
    xs = x[order]
    C = np.concatenate([np.zeros((A, P, 1)), np.cumsum(Qo[:, :, order], axis=2)], axis=2)  # [A, P, N+1]
    valid = np.r_[True, xs[1:] > xs[:-1], True]
    args, H = [], None
    for s in range(1, A):
        D = np.where(valid[None, :], C[s - 1] - C[s], np.inf)
        H, arg = _running_argmin(D if H is None else H + D)
        args.append(arg)
    cuts = np.empty((P, A - 1), dtype=np.int64)
    k = np.full(P, N)
    for s in range(A - 2, -1, -1):
        k = args[s][np.arange(P), k]
        cuts[:, s] = k
    return _cut_to_threshold(xs, cuts)


def region_of(x: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """``[P, N]`` region of each example under each row of ``edges [P, E]``: the number of
    edges ``≤ x`` (``edges[p, r−1] ≤ x < edges[p, r]``)."""
    return (edges[:, :, None] <= x[None, None, :]).sum(axis=1)


def backward_skip_rule(mp: np.ndarray, correct: np.ndarray, cost: np.ndarray, lams: np.ndarray, K: int,
                       feature: str = "max_prob", answer: str = "last", sequential: bool = False,
                       regions: str = "thresholds"
                       ) -> tuple[np.ndarray, dict[int, np.ndarray], dict[int, np.ndarray], np.ndarray]:
    """Backward induction of the skip rule (module docstring) for every ``λ`` of ``lams``.

    Parameters
    ----------
    mp, correct, cost : ndarray of shape (N, M)
        Max-probabilities, right/wrong (bool) and normalised costs ``c_j(n)`` of the ``M`` models.
    lams : ndarray of shape (P,)
        The ``λ`` values.
    K : int
        Quantile bins of the state in each set (``regions="bins"``).
    feature, answer, sequential
        As in the module docstring.
    regions : {"thresholds", "bins"}
        ``"bins"``: an action per quantile bin; ``"thresholds"``: one threshold per action,
        the actions ordered by the state -- the farthest model for the least confident
        examples, then nearer ones, then stop (:func:`threshold_regions`, exact over all cuts).

    Returns
    -------
    start : ndarray of shape (P,)
        First model consulted.
    actions : dict
        Per consulted set (bit mask), an array of shape (P, R_h).
        Per region: ``STOP`` (−1) or the next model.
    edges : dict
        Per consulted set (bit mask), an array of shape (P, R_h − 1).
        Region edges of ``x_h``: region ``r`` is ``edges[r−1] ≤ x < edges[r]``.
    values : ndarray of shape (P, N)
        ``G_start(n)``: each example's realised trade-off under the rule.
    """
    N, n = mp.shape
    P = len(lams)
    lam = np.asarray(lams, dtype=float)[:, None]
    kappa = 1.0 - lam
    loss = (~correct.astype(bool)).astype(float)
    rows = np.arange(N)
    G: dict[int, np.ndarray] = {}
    actions: dict[int, np.ndarray] = {}
    edges: dict[int, np.ndarray] = {}
    for h in masks(n):
        x = set_feature(mp, h, feature)
        acts = np.asarray(moves(h, n, sequential), dtype=np.int64)
        A = len(acts)
        Q = np.stack([lam * loss[rows, set_answer(mp, h, answer)][None, :] if a == STOP
                      else kappa * cost[None, :, a] + G[h | 1 << int(a)] for a in acts])  # [A, P, N]
        if regions == "bins":
            e = quantile_edges(x, K)
            b = bin_of(x, e)
            onehot = np.zeros((N, len(e) + 1))
            onehot[rows, b] = 1.0
            choice = (Q @ onehot).argmin(axis=0)  # [P, B]; ties: stop, then the nearer model
            edges[h] = np.broadcast_to(e, (P, len(e))).copy()
            actions[h] = acts[choice]
            idx = choice[:, b]
        else:
            edges[h] = threshold_regions(x, Q[::-1]) if A > 1 else np.empty((P, 0))
            actions[h] = np.broadcast_to(acts[::-1], (P, A)).copy()
            idx = (A - 1) - region_of(x, edges[h])
        G[h] = np.take_along_axis(Q, idx[None], axis=0)[0]
    first = [0] if sequential else list(range(n))
    Q0 = np.stack([kappa * cost[None, :, j] + G[1 << j] for j in first])  # [A, P, N]
    c0 = Q0.sum(axis=2).argmin(axis=0)
    start = np.asarray(first, dtype=np.int64)[c0]
    values = np.take_along_axis(Q0, c0[None, :, None], axis=0)[0]
    return start, actions, edges, values


def run_skip_rule(mp: np.ndarray, cost: np.ndarray, start: np.ndarray, actions: dict[int, np.ndarray],
                  edges: dict[int, np.ndarray], feature: str, answer: str
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Run rules ``[P]`` on examples: ``(answer [P, N], consulted [P, N, n], cost [P, N])``
    (costs in the units of ``cost``). Loops over steps and sets only."""
    N, n = mp.shape
    P = len(start)
    mask = np.broadcast_to((1 << start)[:, None], (P, N)).copy()
    paid = cost[:, start].T.copy()
    done = np.zeros((P, N), dtype=bool)
    ans = np.full((P, N), -1, dtype=np.int64)
    for _ in range(n):
        for h in masks(n):
            at = (mask == h) & ~done
            if not at.any():
                continue
            r = region_of(set_feature(mp, h, feature), edges[h])
            act = np.take_along_axis(actions[h], r, axis=1)
            stop = at & (act == STOP)
            ans = np.where(stop, set_answer(mp, h, answer)[None, :], ans)
            done |= stop
            go = at & (act != STOP)
            j = np.where(go, act, 0)
            mask = np.where(go, mask | (1 << j), mask)
            paid = paid + np.where(go, cost[np.arange(N)[None, :], j], 0.0)
    if not done.all():  # cannot happen: the last model always stops
        raise TTamerError("skip rule: some examples never stopped")
    consulted = (mask[:, :, None] >> np.arange(n)[None, None, :] & 1).astype(bool)
    return ans, consulted, paid


def last_consulted(consulted: np.ndarray) -> np.ndarray:
    """``[..., N]`` last model consulted (models are consulted in increasing order)."""
    n = consulted.shape[-1]
    return (n - 1 - consulted[..., ::-1].argmax(axis=-1)).astype(np.int64)


# --------------------------------------------------------------------------- the estimator
class SkipTamer(BaseTamer):
    """T-Tamer with skips on a chain of separate models (module docstring), scikit-learn style.

    Parameters
    ----------
    lam : float, default 0.95
        The ``λ`` of :meth:`decide`.
    regions : {"thresholds", "bins"}
        One threshold per action (exact cuts), or an action per quantile bin.
    K : int, default 8
        Quantile bins of the state in each set of consulted models (``regions="bins"``; at
        most :data:`~ttamer.earlyexit.features.MAX_K`).
    feature : {"max_prob", "best"}
        The state ``x_h``.
    answer : {"confident", "last"}, default "last"
        Recall (the most confident consulted model) or the last model consulted.
    skips : bool, default True
        Allow skips (and any first model); ``False`` fits the sequential rule only.
    lams : sequence of float, optional
        The ``λ`` sweep of :meth:`decide_sweep`, at most ``MAX_SWEEP_POINTS`` values (default: 100 points of
        :func:`~ttamer.earlyexit.crossval.lam_grid` with ``λ/(1−λ)`` in ``[0.1, 10⁴]``); ``lam`` is added.
    scale : float, optional
        Cost unit (default: the last model's mean calibration cost).

    Attributes
    ----------
    lams_ : ndarray of shape (P,)
    start_ : ndarray of shape (P,)
        First model consulted, per ``λ``.
    actions_ : dict
        Per consulted set (bit mask), an array of shape (P, R).
        Per set of consulted models and state region: ``-1`` (stop) or the next model.
    edges_ : dict
        Per consulted set (bit mask), an array of shape (P, R − 1).
        Region edges of the state in each set (region ``r``: ``edges[r−1] ≤ x < edges[r]``).
    value_ : ndarray of shape (P,)
        In-sample mean trade-off ``λ·error + κ·cost/scale`` (the claimed calibration value).
    uses_skips_ : ndarray of shape (P,)
        Whether the skip rule (rather than its sequential restriction) was kept.
    sequential_value_ : ndarray of shape (P,)
        In-sample trade-off of the sequential restriction.
    scale_, names_ : float, list of str
    """

    _fitted_attr = "actions_"

    def __init__(self, lam: float = 0.95, regions: str = "thresholds", K: int = 8, feature: str = "max_prob",
                 answer: str = "last", skips: bool = True, lams: Sequence[float] | None = None,
                 scale: float | None = None) -> None:
        self.lam = lam
        self.regions = regions
        self.K = K
        self.feature = feature
        self.answer = answer
        self.skips = skips
        self.lams = lams
        self.scale = scale

    def _validate(self) -> None:
        check_lam(self.lam, "lam")
        check_choice("regions", self.regions, REGIONS)
        if isinstance(self.K, (bool, np.bool_)) or not isinstance(self.K, (int, np.integer)) or self.K < 1:
            raise TTamerError(f"K must be a positive integer (bins per set), got {self.K!r}")
        check_int(self.K, "K", maximum=MAX_K)
        check_choice("feature", self.feature, FEATURES)
        check_choice("answer", self.answer, ANSWERS)
        check_bool(self.skips, "skips")
        if self.lams is not None:
            check_lams(self.lams)
        if self.scale is not None:
            check_real(self.scale, "scale", low=0.0, low_open=True)

    def fit(self, trace: Trace) -> "SkipTamer":
        """Fit the rule at every ``λ`` of the sweep on the calibration chain ``trace``."""
        self._validate()
        check_chain(trace, "fit")
        grid = lam_grid(100, 0.1, 1e4) if self.lams is None else np.asarray(self.lams, dtype=float)
        self.lams_ = np.unique(np.r_[grid, float(self.lam)])
        self.scale_, c = scaled_costs(trace, trace.cost_matrix, self.scale)
        self.names_, self.n_classes_ = list(trace.exit_names), trace.n_classes
        mp, ok = trace.max_prob, trace.correct
        args = (mp, ok, c, self.lams_, int(self.K), self.feature, self.answer)
        seq = backward_skip_rule(*args, sequential=True, regions=self.regions)
        self.sequential_value_ = seq[3].mean(axis=1)
        if self.skips:
            sk = backward_skip_rule(*args, sequential=False, regions=self.regions)
            skip_value = sk[3].mean(axis=1)
            use = skip_value < self.sequential_value_ - 1e-12
        else:
            sk, use = seq, np.zeros(len(self.lams_), dtype=bool)
        self.uses_skips_ = use
        self.start_ = np.where(use, sk[0], seq[0])
        self.edges_ = {h: _where_rows(use, sk[2][h], seq[2][h]) for h in sk[2]}
        self.actions_ = {h: _where_rows(use, sk[1][h], seq[1][h]) for h in sk[1]}
        self.value_ = np.where(use, sk[3].mean(axis=1), self.sequential_value_)
        return self

    def _rows(self, trace: Trace, lams: Sequence[float] | None) -> np.ndarray:
        """Rows of the fitted sweep at ``lams`` (all for ``None``), after checking ``trace``."""
        self.check_fitted()
        check_chain(trace, "decide", min_examples=1)
        check_same_models(trace, self.names_, chain_parents(len(self.names_)), self.n_classes_, "decide: ")
        if lams is None:
            return np.arange(len(self.lams_))
        want = check_lams(lams)
        rows = np.searchsorted(self.lams_, want)
        bad = (rows >= len(self.lams_)) | (np.abs(self.lams_[np.minimum(rows, len(self.lams_) - 1)] - want) > 1e-12)
        if bad.any():
            raise TTamerError(f"lam {float(want[bad][0])!r} was not in the fitted sweep; refit with it in lams")
        return rows

    def decide_sweep(self, trace: Trace, lams: Sequence[float] | None = None) -> ExitDecisions:
        """The fitted rules (default: every ``λ`` of ``lams_``) on ``trace``: arrays ``[P, N]``.

        Raises
        ------
        TTamerError
            Before fitting, for a trace unlike the calibration one, or for ``lams`` that are
            not a non-empty 1-D array of numbers in [0, 1], each in the fitted sweep.
        """
        rows = self._rows(trace, lams)
        ans, consulted, paid = run_skip_rule(trace.max_prob, trace.cost_matrix, self.start_[rows],
                                             {h: a[rows] for h, a in self.actions_.items()},
                                             {h: e[rows] for h, e in self.edges_.items()},
                                             self.feature, self.answer)
        return ExitDecisions(ans, last_consulted(consulted), paid, self.lams_[rows], self.name, consulted)

    def decide(self, trace: Trace) -> ExitDecisions:
        """The fitted rule at ``lam`` on ``trace``: arrays ``[N]``."""
        return replace(self.decide_sweep(trace, [check_lam(self.lam, "lam")])[0], params=None)

    @property
    def name(self) -> str:
        return "ttamer (skips)" if self.skips else "ttamer (sequential)"

    def describe(self, lam: float | None = None) -> str:
        """The fitted rule at ``lam`` (default ``self.lam``), one line per set of consulted models.

        Raises
        ------
        TTamerError
            Before fitting, or for a ``lam`` that is not a number in [0, 1] of the fitted sweep.
        """
        r = int(self._rows_for(lam))
        nm = self.names_
        lines = [f"{self.name} at λ={self.lams_[r]:g}: start -> {nm[self.start_[r]]}"
                 f" ({'skip rule' if self.uses_skips_[r] else 'sequential rule'})"]
        for h in sorted(self.actions_):
            acts = ["stop" if a == STOP else nm[a] for a in self.actions_[h][r]]
            if len(set(acts)) == 1 and acts[0] == "stop":
                continue
            edges = ", ".join(f"{e:.4f}" for e in self.edges_[h][r])
            lines.append(f"  after {{{', '.join(nm[v] for v in members(h))}}}: edges [{edges}] -> {acts}")
        return "\n".join(lines)

    def _rows_for(self, lam: float | None) -> int:
        self.check_fitted()
        want = check_lam(self.lam if lam is None else lam)
        r = int(np.argmin(np.abs(self.lams_ - want)))
        if abs(self.lams_[r] - want) > 1e-12:
            raise TTamerError(f"lam {want!r} was not in the fitted sweep")
        return r


def _where_rows(use: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row ``p`` of ``a`` where ``use[p]``, else of ``b``; the shorter is padded by repeating its
    last column (a region split that changes nothing)."""
    w = max(a.shape[1], b.shape[1])

    def pad(m: np.ndarray) -> np.ndarray:
        if m.shape[1] == w:
            return m
        if m.shape[1] == 0:  # no edges: pad with +inf (never reached)
            return np.full((m.shape[0], w), np.inf)
        return np.concatenate([m, np.repeat(m[:, -1:], w - m.shape[1], axis=1)], axis=1)

    return np.where(use[:, None], pad(a), pad(b))


def scaled_costs(trace: Trace, costs: np.ndarray, scale: float | None) -> tuple[float, np.ndarray]:
    """``(scale, costs / scale)``: ``scale`` by default the last model's mean cost on ``trace``.

    Raises
    ------
    TTamerError
        For a ``trace`` that :func:`~ttamer.earlyexit.base.check_trace` refuses, ``costs`` that
        are not finite numbers ``>= 0`` of the shape ``[L]`` or ``[N, L]`` of ``trace``, a
        ``scale`` that is not ``None`` or a finite number ``> 0``, a default scale of 0 or a
        quotient that overflows a float64 (both: pass ``scale=``).
    """
    check_trace(trace, "scaled_costs")
    costs = check_numbers(costs, "costs", ndim=None, low=0.0)
    if costs.shape not in ((trace.n_exits,), (trace.n_examples, trace.n_exits)):
        raise TTamerError(f"costs has shape {costs.shape}; expected ({trace.n_exits},) or "
                          f"({trace.n_examples}, {trace.n_exits}), one per model (and example) of the trace")
    sc = float(trace.mean_cost[-1]) if scale is None else check_real(scale, "scale", low=0.0, low_open=True)
    if not sc > 0:
        raise TTamerError(f"scale: the last model {trace.exit_names[-1]!r} has mean cost 0; pass scale=")
    with np.errstate(over="ignore"):
        out = costs / sc
    if not np.isfinite(out).all():
        what = f"the mean cost of the last model {trace.exit_names[-1]!r}" if scale is None else "the scale given"
        raise TTamerError(f"scale: the costs divided by {sc:.6g} ({what}) overflow a float64; pass a larger "
                          "scale= (e.g. the full model's mean cost)")
    return sc, out


def tradeoff(decisions: ExitDecisions, trace: Trace, lams: Any, scale: float) -> np.ndarray:
    """Mean ``λ·error + (1−λ)·cost/scale`` of each row of ``decisions`` (``lams`` per row).

    Raises
    ------
    TTamerError
        For ``decisions`` that are not an :class:`~ttamer.earlyexit.traces.ExitDecisions`, a
        ``trace`` that is not a :class:`~ttamer.earlyexit.traces.Trace`, ``lams`` that are not
        numbers in [0, 1], one per row of ``decisions`` (one for a single decision set), or a
        ``scale`` that is not a finite number ``> 0``.
    """
    if not isinstance(decisions, ExitDecisions):
        raise TTamerError(f"tradeoff: decisions must be an ExitDecisions (a strategy's decisions), got "
                          f"{type(decisions).__name__}")
    check_trace(trace, "tradeoff")
    scale = check_real(scale, "scale", low=0.0, low_open=True)
    rows = len(decisions.answer) if decisions.is_sweep else 1
    lam = check_numbers(lams, "lams", ndim=None, low=0.0, high=1.0)
    if lam.size != rows:
        raise TTamerError(f"lams has {lam.size} values; the decisions have {rows} row{'s' * (rows != 1)}")
    lam = lam.reshape(-1, 1) if decisions.is_sweep else lam.reshape(())
    err = ~decisions.correct(trace)
    return (lam * err + (1.0 - lam) * decisions.cost / scale).mean(axis=-1)


# --------------------------------------------------------------------------- baselines
def fixed_routes(trace: Trace) -> dict[str, ExitDecisions]:
    """Every route (non-empty subset of the models, in order), always consulted, answering
    with its last model: ``"linear→cnn"`` etc."""
    check_chain(trace)
    n, N = trace.n_exits, trace.n_examples
    out = {}
    for r in range(1, n + 1):
        for route in itertools.combinations(range(n), r):
            consulted = np.zeros((N, n), dtype=bool)
            consulted[:, list(route)] = True
            answer = np.full(N, route[-1], dtype=np.int64)
            out["→".join(trace.exit_names[v] for v in route)] = ExitDecisions(
                answer, answer.copy(), trace.cost_matrix[:, list(route)].sum(axis=1), None, "route", consulted)
    return out


def sequential_threshold(calibration: Trace, test: Trace | None = None, max_points: int = 2000
                         ) -> ExitDecisions:
    """The sequential threshold cascade: consult the models in order and answer with the first
    whose max-probability is ``≥ τ`` (the last always answers).

    ``τ`` is swept over *every* distinct value on ``calibration`` and the rules on that sweep's
    Pareto frontier (thinned evenly in cost to ``max_points``) are run on ``test``. Without
    ``test`` they run on ``calibration`` itself: tuned on the very examples it is judged on,
    the best this baseline can do there (an optimistic bound for it).

    Raises
    ------
    TTamerError
        For traces :func:`check_chain` refuses, a ``max_points`` that is not an integer in
        ``2..MAX_SWEEP_POINTS``, or (:class:`~ttamer.core.errors.TraceError`) a ``test``
        trace whose models or classes are not the calibration trace's.
    """
    max_points = check_int(max_points, "max_points", minimum=2, maximum=MAX_SWEEP_POINTS)
    check_chain(calibration, "calibration")
    test = calibration if test is None else check_chain(test, "test")
    check_matching(calibration, test, "sequential_threshold")
    loss = (~calibration.correct).astype(float)
    taus = frontier_taus(calibration.max_prob, loss, np.cumsum(calibration.cost_matrix, axis=1),
                         max_points=max_points)
    x = test.max_prob
    stop = first_stop(x, taus)  # [P, N]
    paid = np.cumsum(test.cost_matrix, axis=1)[np.arange(len(x))[None, :], stop]
    return ExitDecisions(stop, stop.copy(), paid, taus, "threshold cascade")


# --------------------------------------------------------------------------- exact binned instance
def skip_chain_instance(calibration: Trace, K: int = 8, smoothing: float = 2.0, scale: float | None = None
                        ) -> tuple[Instance, list[np.ndarray], float]:
    """The binned chain instance with skips (module docstring): an entry node ``"entry"`` (one
    state, cost 0, loss :data:`ENTRY_LOSS`) then the models, states = ``K`` quantile bins of each
    model's max-probability; every skip ``i → j`` (entry included) costs ``c_j``. Returns the
    instance, the bin edges per model and the cost scale.

    Raises
    ------
    TTamerError
        For a trace :func:`check_chain` refuses, a ``K`` that is not an integer in
        ``1..MAX_K``, a ``smoothing`` that is not ``> 0``, or a ``scale`` that is not a finite
        number ``> 0``.
    """
    check_chain(calibration, "calibration")
    K = check_int(K, "K", minimum=1, maximum=MAX_K)
    smoothing = check_real(smoothing, "smoothing", low=0.0, low_open=True)
    if scale is not None:
        check_real(scale, "scale", low=0.0, low_open=True)
    mp = calibration.max_prob
    edges = [quantile_edges(mp[:, v], K) for v in range(calibration.n_exits)]
    states = np.stack([np.zeros(len(mp), dtype=np.int64)] + [bin_of(mp[:, v], e) for v, e in enumerate(edges)], axis=1)
    n_states = [1] + [len(e) + 1 for e in edges]
    losses = np.concatenate([np.full((len(mp), 1), ENTRY_LOSS), (~calibration.correct).astype(float)], axis=1)
    sc, scaled = scaled_costs(calibration, calibration.mean_cost, scale)
    costs = np.r_[0.0, scaled]
    n = calibration.n_exits + 1
    names = ["entry"] + list(calibration.exit_names)
    base = build_tree_instance(states, losses, n_states, np.arange(-1, n - 1), costs, smoothing, names=names)
    mats = [base.transitions[0][0]] + [base.transitions[v] for v in range(1, n)]
    skips = [(i, j, float(costs[j])) for i in range(n) for j in range(i + 2, n)]
    inst = Instance.chain(base.losses, mats[0], mats[1:], costs, names=names, skips=skips,
                          name="skip chain (binned max-probability)")
    return inst, edges, sc


def exact_skip_decisions(calibration: Trace, test: Trace, lams: Sequence[float], K: int = 8,
                         smoothing: float = 2.0, recall: bool = True, skips: bool = True,
                         scale: float | None = None) -> ExitDecisions:
    """Solve the binned instance of :func:`skip_chain_instance` exactly at each ``λ`` (recall:
    the ``(exit, state, X)`` DP; no recall: the DP over ``(last, state)``) and run the policies on
    ``test``. ``skips=False`` drops the skip edges (the sequential chain, started at model 0);
    ``scale`` is :func:`skip_chain_instance`'s.

    Raises
    ------
    TTamerError
        For ``lams`` that :func:`~ttamer.earlyexit.crossval.check_lams` refuses, the errors of
        :func:`skip_chain_instance` and :func:`check_chain`, ``recall`` or ``skips`` that are
        not ``True``/``False``, or (:class:`~ttamer.core.errors.TraceError`, before any
        solving) a ``test`` trace whose models or classes are not the calibration trace's.
    """
    lams = check_lams(lams)
    recall, skips = check_bool(recall, "recall"), check_bool(skips, "skips")
    check_chain(calibration, "calibration")
    check_chain(test, "test")
    check_matching(calibration, test, "exact_skip_decisions")
    inst, edges, sc = skip_chain_instance(calibration, K, smoothing, scale)
    if not skips:
        inst = Instance.chain(inst.losses, inst.transitions[0][0], inst.transitions[1:], inst.costs,
                              names=[nd.name for nd in inst.nodes], name=inst.name)
    mp = test.max_prob
    st = np.stack([np.zeros(len(mp), dtype=np.int64)] + [bin_of(mp[:, v], e) for v, e in enumerate(edges)], axis=1)
    cm = np.concatenate([np.zeros((len(mp), 1)), test.cost_matrix], axis=1)
    decs = []
    for lam in lams:
        sol = solve(inst, float(lam), recall=recall, method="dp")
        d = run_tree_policy(sol, st, cm)
        if (d.answer == 0).any():
            raise TTamerError(f"exact skip policy at λ={lam:g}: answering without consulting any model is "
                              f"optimal there (the error, weighted by λ, costs less than the cheapest model); "
                              f"use larger λ values")
        decs.append(d)
    models = [ExitDecisions(d.answer - 1, d.last - 1, d.cost, consulted=d.consulted[:, 1:]) for d in decs]
    return ExitDecisions.stack(models, lams, "exact binned DP" + (" (skips)" if skips else ""))


# --------------------------------------------------------------------------- metrics
def bootstrap_metrics(decisions: dict[str, ExitDecisions], test: Trace, scale: float, lo: float,
                      hi: float = 1.0, reference: int = -1, n_boot: int = 200, seed: int = 0,
                      gaps: Sequence[float] = (0.0,)) -> dict[str, dict[str, np.ndarray]]:
    """Per strategy, the normalised area under its frontier on ``[lo, hi]`` (``"auc"``,
    ``[n_boot + 1]``) and its least cost reaching the reference model's accuracy minus each of
    ``gaps`` (``"cost_at_ref"``, ``[len(gaps), n_boot + 1]``, ``nan`` if never), on the test
    examples (index 0) and on ``n_boot`` resamples of them with replacement (indices
    ``1..n_boot``; the same resamples for every strategy, so differences are paired). Single
    points (fixed routes) count as one-point frontiers.

    Raises
    ------
    TTamerError
        Before any resampling, for inputs that
        :func:`~ttamer.earlyexit.cascade.check_bootstrap_inputs` refuses, a ``reference`` that
        is not a model of ``test`` (a name, or a position, negative from the end), or ``gaps``
        that are not a 1-D array of at most ``MAX_SWEEP_POINTS`` finite numbers.
    """
    N, scale, n_boot, seed = check_bootstrap_inputs(decisions, test, scale, lo, hi, n_boot, seed, "bootstrap_metrics")
    reference = model_position(test, reference, "bootstrap_metrics: reference")
    gaps = check_numbers(gaps, "bootstrap_metrics: gaps", max_len=MAX_SWEEP_POINTS, empty=True)
    W = np.random.default_rng(seed).multinomial(N, np.full(N, 1.0 / N), size=n_boot) / N
    W = np.vstack([np.full((1, N), 1.0 / N), W])  # [B + 1, N]
    ref = test.correct[:, reference].astype(float)
    ref_acc = W @ ref
    out = {}
    for k, d in decisions.items():
        c = d.correct(test).astype(float)
        c = c if d.is_sweep else c[None]
        cost = d.cost / scale if d.is_sweep else (d.cost / scale)[None]
        acc, cst = W @ c.T, W @ cost.T  # [B + 1, P]
        auc, car = np.empty(len(W)), np.empty((len(gaps), len(W)))
        for b in range(len(W)):  # loop over resamples only
            f = pareto_frontier(cst[b], acc[b])
            auc[b] = frontier_auc(f, lo, hi)
            for g, gap in enumerate(gaps):  # a level above 1 is never reached; below 0, any point meets it
                level = ref_acc[b] - gap
                v = None if level > 1.0 + ROUNDING else cost_at_accuracy(f, max(level, 0.0))
                car[g, b] = np.nan if v is None else v
        out[k] = {"auc": auc, "cost_at_ref": car}
    return out


def model_position(trace: Trace, model: Any, name: str) -> int:
    """Position ``0..n−1`` of ``model``: a name of ``trace``'s models, or a position
    ``-n..n−1`` (negative from the end: ``-1`` is the last model); a
    :class:`~ttamer.core.errors.TTamerError` naming ``name`` otherwise."""
    if isinstance(model, str):
        return trace.node_id(model)
    n = trace.n_exits
    return check_int(model, f"{name} (a model name, or a position, negative from the end)", minimum=-n,
                     maximum=n - 1) % n


def best_route(routes: dict[str, ExitDecisions], trace: Trace, scale: float) -> dict[str, ExitDecisions]:
    """The routes on the Pareto frontier of (mean cost, accuracy) on ``trace``, as one sweep
    ``"best fixed route"`` (its ``params`` index the routes in the order of ``routes``)."""
    names = list(routes)
    cost = np.array([routes[k].cost.mean() / scale for k in names])
    acc = np.array([routes[k].correct(trace).mean() for k in names])
    keep = pareto_indices(cost, acc)
    sel = [routes[names[i]] for i in keep]
    d = ExitDecisions.stack(sel, keep, "best fixed route")
    d.routes = [names[i] for i in keep]  # type: ignore[attr-defined]
    return {"best fixed route": d}
