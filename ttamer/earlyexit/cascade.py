"""Cascades of separate models arranged in a tree: calibration into an instance (the book's chapters *The model* and *Early exit on real models*).

A **cascade** is ``n`` separate models evaluated on the same ``N`` examples, arranged in a
forest: an ordinary :class:`~ttamer.earlyexit.traces.Trace` (``probs [N, n, C]``, one "exit" per
model) whose :attr:`~ttamer.earlyexit.traces.Trace.parents` (``meta["parents"]``: each model's
parent name, ``null`` for a root) give the forest -- a chain of exits is the special case
``parents = [-1, 0, 1, …]``. ``parents[v]`` is the model that must have
been consulted before ``v`` and ``cost[v]`` is the cost of consulting ``v`` once its parent has
been (the edge cost ``c_v``: for separate models, ``v``'s own running time). Build one with
``Trace.build(probs, labels, cost, meta, parents=[None, "cheap", "cheap"])``; a strategy's
decisions are an :class:`~ttamer.earlyexit.traces.ExitDecisions` whose ``consulted`` says which
models ran.

**Calibration** generalises the chain of :mod:`ttamer.earlyexit.calibration` to a tree. The state
``s_v`` of model ``v`` is a quantile bin (``K`` bins, fitted on the calibration examples) of
its confidence ``f_v`` (max-probability, entropy or margin), optionally times two for
"``v`` agrees with its parent's prediction" (observable: the parent was consulted first).
With calibration counts ``n`` and smoothing strength ``α``:

    ℓ_v(s)   = (e_v(s) + α ē_v) / (n_v(s) + α)              ē_v = overall error rate of v
    P_v[s,t] = (n_v(s,t) + α π_v(t)) / (n_parent(v)(s) + α)
    π_v(t)   = (n_v(t) + α / K_v) / (N + α)                  (μ_v = π_v for a root)

``π_v`` are the smoothed state frequencies of ``v``: every state keeps some probability, so a
test example may reach a state the calibration examples never did and the policy still has
an action for it.

Costs ``c_v`` are the mean measured costs, divided by the cost of the **reference** path
(default: the root-to-node path of largest cost, i.e. the most expensive single pipeline) when
``normalize_cost`` is set, so that ``λ`` weighs an error rate against a fraction of it.

:class:`CascadeTamer` builds the instance, solves it with :func:`~ttamer.solvers.solve.solve` (recall: the
tree index strategy of the book's chapter *Recall*; no recall: ``method="auto"`` = exhaustive on small trees,
or ``"dp"`` = best descend-only strategy) and runs the *same* policy object on test examples
through :func:`ttamer.core.policy.rollout`. :func:`threshold_cascade` is the usual baseline: walk a
fixed sequence of models and stop at the first whose max-probability passes its stage's
threshold.
"""

from __future__ import annotations

import itertools
from typing import Any, Sequence

import numpy as np

from .crossval import check_lams, lam_grid
from .evaluation import BOOTSTRAP_CHUNK_CELLS
from .features import MAX_K, MAX_STATES, StateEncoder, StateSpec
from ..core.errors import TraceError, TTamerError
from ..core.instance import Instance
from ..core.policy import check_known_states
from ..core.solution import SolveResult
from ..solvers.solve import solve
from .heuristics import MAX_SWEEP_CELLS
from .metrics import (MAX_SWEEP_POINTS, accuracy_at, check_numbers, cost_at_accuracy, frontier_auc, pareto_frontier,
                      pareto_indices)
from .traces import ExitDecisions, Trace
from ..core.validate import (check_bool, check_choice, check_count, check_int, check_integers, check_lam, check_real,
                             check_seed, describe_value, short_repr)
from .base import ANSWER_RULES, FEATURES, BaseTamer, check_trace, vocabulary_subset

#: The answer rules of :func:`threshold_cascade` (a subset of :data:`ttamer.earlyexit.base.ANSWER_RULES`).
ANSWERS = vocabulary_subset(ANSWER_RULES, "last", "confident")
#: The state features of a tree, each model's own confidence (chain-history features do not apply;
#: a subset of :data:`ttamer.earlyexit.base.FEATURES`).
TREE_FEATURES = vocabulary_subset(FEATURES, "max_prob", "entropy", "margin")


# ---------------------------------------------------------------------------------------------
def check_tree_parents(parents: Any, n_models: int, who: str) -> np.ndarray:
    """``parents``, the parent of each of the ``n_models`` models (``-1`` for a root), if it is
    an integer array ``[n_models]`` of values in ``-1..n_models−1``; else a
    :class:`~ttamer.core.errors.TTamerError` naming ``who``."""
    if not (isinstance(parents, np.ndarray) and parents.shape == (n_models,) and parents.dtype.kind in "iu"
            and (n_models == 0 or (parents.min() >= -1 and parents.max() < n_models))):
        raise TTamerError(f"{who}: parents must be an integer array [{n_models}] of parent models in "
                          f"-1..{n_models - 1} (-1: a root), got {describe_value(parents)}")
    return parents


def tree_states(encoder: StateEncoder, trace: Trace, parents: np.ndarray, agreement: bool) -> np.ndarray:
    """``[N, n]`` states: confidence bins of every model (the fitted ``encoder``), and with
    ``agreement`` the flag "prediction equals the parent's" on non-roots (``s + K_v·flag``);
    ``parents`` are the trace's (passed in, so that serving does not re-read them per query).

    Raises
    ------
    TTamerError
        For ``parents`` that :func:`check_tree_parents` refuses, or a ``trace`` the encoder
        refuses.
    """
    check_tree_parents(parents, encoder.n_exits, "tree_states")
    s = encoder.transform(trace)
    if agreement:
        pred = trace.predictions
        par = parents
        agree = (par >= 0)[None, :] & (pred == pred[:, np.maximum(par, 0)])
        s = s + encoder.base_states[None, :] * agree
    return s.astype(np.int64)


def tree_n_states(encoder: StateEncoder, parents: np.ndarray, agreement: bool) -> np.ndarray:
    """``K_v`` per model (agreement doubles the non-roots); ``parents`` checked by
    :func:`check_tree_parents`."""
    check_tree_parents(parents, encoder.n_exits, "tree_n_states")
    k = encoder.base_states.copy()
    return np.where((parents >= 0) & agreement, 2 * k, k)


def build_tree_instance(states: np.ndarray, losses: np.ndarray, n_states: Sequence[int],
                        parents: np.ndarray, costs: np.ndarray, smoothing: float,
                        names: Sequence[str] | None = None, name: str = "") -> Instance:
    """The forest instance from calibration ``states [N, n]``, 0/1 ``losses [N, n]`` and edge
    ``costs [n]`` (module docstring for the smoothing). Loops over models only.

    Raises
    ------
    TTamerError
        Before any counting, for ``states`` that are not a non-empty integer array ``[N, n]``
        with ``0 <= states[:, v] < n_states[v]``, ``losses`` that are not finite numbers of
        the same shape, ``n_states`` that are not ``n`` integers in ``1..MAX_STATES``
        (:data:`~ttamer.earlyexit.features.MAX_STATES`), ``parents`` that are not ``n``
        integers in ``-1..n-1``, or a ``smoothing`` that is not a finite number ``> 0``; and
        the errors of :meth:`~ttamer.core.instance.Instance.tree` (costs, names, the forest).
    """
    a = check_real(smoothing, "build_tree_instance: smoothing (it defines empty bins)", low=0.0, low_open=True)
    if not (isinstance(states, np.ndarray) and states.ndim == 2 and states.size and states.dtype.kind in "iu"):
        raise TTamerError(f"build_tree_instance: states must be a non-empty integer array [N, n] (a state per "
                          f"example and model), got {describe_value(states)}")
    n, m = states.shape
    losses = check_numbers(losses, "build_tree_instance: losses", ndim=2)
    if losses.shape != (n, m):
        raise TTamerError(f"losses has shape {losses.shape}, expected {(n, m)} like states")
    K = check_integers(n_states, "build_tree_instance: n_states", 1, MAX_STATES, m).tolist()
    parents = check_integers(parents, "build_tree_instance: parents", -1, m - 1, m)
    for what, got in (("n_states", len(K)), ("parents", len(parents))):
        if got != m:
            raise TTamerError(f"build_tree_instance: {what} has {got} values; states have {m} models (one each)")
    for v in range(m):
        if states[:, v].min() < 0 or states[:, v].max() >= K[v]:
            raise TTamerError(f"states of model {v}: values outside 0..{K[v] - 1}")
    ell, mats = [], []
    for v in range(m):
        cnt = np.bincount(states[:, v], minlength=K[v]).astype(float)
        err = np.bincount(states[:, v], weights=losses[:, v], minlength=K[v])
        ell.append((err + a * losses[:, v].mean()) / (cnt + a))
        pi = (cnt + a / K[v]) / (cnt.sum() + a)  # smoothed: a state unseen in calibration stays possible
        p = int(parents[v])
        if p < 0:
            mats.append(pi)
            continue
        joint = np.bincount(states[:, p] * K[v] + states[:, v], minlength=K[p] * K[v])
        P = joint.reshape(K[p], K[v]).astype(float) + a * pi
        mats.append(P / P.sum(axis=1, keepdims=True))
    return Instance.tree([int(p) if p >= 0 else None for p in parents], ell, mats, costs,
                         names=names, name=name)


def run_tree_policy(solution: SolveResult, states: np.ndarray, cost: np.ndarray, name: str = "") -> ExitDecisions:
    """Run ``solution.policy`` on examples with known ``states [N, n]`` and per-example edge
    costs ``cost [N, n]`` through :meth:`~ttamer.core.policy.Policy.rollout_known`; the
    rollout's history becomes the decisions record (``consulted``: the models it ran).

    Raises
    ------
    TTamerError
        For a ``solution`` that is not a :class:`~ttamer.core.solution.SolveResult`, a
        ``cost`` that is not an array of finite numbers ``>= 0`` of the shape of ``states``
        or ``states`` that :func:`~ttamer.core.policy.check_known_states` refuses (all
        checked before the rollout).
    """
    if not isinstance(solution, SolveResult):
        raise TTamerError(f"run_tree_policy: solution must be a SolveResult (of solve), got {short_repr(solution)}")
    states = check_known_states(states, solution.policy.instance, "run_tree_policy: states")
    cost = check_numbers(cost, "run_tree_policy: cost", ndim=2, low=0.0)
    if cost.shape != states.shape:
        raise TTamerError(f"run_tree_policy: cost has shape {cost.shape}; it must be [N, n] like states "
                          f"{states.shape} (an edge cost per example and model)")
    policy = solution.policy
    ro = policy.rollout_known(states)
    answer = policy.answer(ro.states, ro.last)
    if (answer < 0).any():
        raise TTamerError("the policy answered with the fallback; cascade instances have none")
    consulted = ro.states >= 0
    return ExitDecisions(answer, ro.last, (cost * consulted).sum(axis=1), None, name, consulted)


def check_same_models(trace: Trace, names: Sequence[str], parents: Any, n_classes: int, where: str,
                      fitted: str = "fitted") -> None:
    """Refuse a ``trace`` whose models (``names`` in order, with ``parents``) or number of
    classes differ from those a rule was calibrated on: its states and answers would be read
    off the wrong models or classes. ``where`` prefixes the message; ``fitted`` says what
    the rule was calibrated on (``"fitted"``: a fitted estimator's; ``"calibration"``: the
    calibration trace's).

    Raises
    ------
    TraceError
        Saying which differ, the models first.
    """
    theirs = "the fitted ones:" if fitted == "fitted" else f"the {fitted} trace's"
    if list(trace.exit_names) != list(names) or not np.array_equal(trace.parents, parents):
        raise TraceError(f"{where}the trace's {trace.n_exits} models {short_repr(trace.exit_names, 120)} / parents "
                         f"{short_repr(trace.parents.tolist(), 120)} differ from {theirs} {len(names)} models "
                         f"{short_repr(list(names), 120)} / parents {short_repr(np.asarray(parents).tolist(), 120)}")
    if trace.n_classes != n_classes:
        raise TraceError(f"{where}the trace has {trace.n_classes} classes; "
                         f"{'the fitted ones have' if fitted == 'fitted' else f'the {fitted} trace has'} {n_classes}")


# ---------------------------------------------------------------------------------------------
class CascadeTamer(BaseTamer):
    """T-Tamer for a tree of separate models, scikit-learn style (module docstring).

    :meth:`fit` (calibration :class:`~ttamer.earlyexit.traces.Trace`) sets ``encoder_``,
    ``instance_``, ``scale_`` (cost normaliser), ``solution_``; :meth:`decide` (test trace)
    returns :class:`~ttamer.earlyexit.traces.ExitDecisions`; :meth:`decide_sweep` re-solves for
    several ``λ``.

    Parameters
    ----------
    lam : float, default 0.95
        The trade-off ``λ`` of :meth:`decide`.
    K : int, default 8
        Quantile bins of ``feature`` per model (at most :data:`~ttamer.earlyexit.features.MAX_K`).
    feature : {"max_prob", "entropy", "margin"}, default "max_prob"
        Each model's own confidence (:data:`TREE_FEATURES`).
    agreement : bool or {0, 1}, default False
        Double the states of non-roots by the flag "agrees with the parent's prediction" (the
        agreement run of the chain capped at 1: a tree has no longer runs).
    smoothing : float, default 2.0
        Strength ``α`` of the prior smoothing the calibration frequencies.
    recall : bool, default True
        Whether the policy may answer with any consulted model.
    method : str, default "auto"
        Passed to :func:`~ttamer.solvers.solve.solve` (no recall on a branching tree:
        ``"auto"`` = exhaustive, ``"dp"`` = best descend-only strategy).
    normalize_cost : bool, default True
        Divide the costs by the cost of the ``reference`` path.
    reference : int, str or None, default None
        The model whose root-to-node path cost is the cost unit (default: the costliest path).
    """

    def __init__(self, lam: float = 0.95, K: int = 8, feature: str = "max_prob", agreement: bool = False,
                 smoothing: float = 2.0, recall: bool = True, method: str = "auto",
                 normalize_cost: bool = True, reference: int | str | None = None) -> None:
        self.lam = lam
        self.K = K
        self.feature = feature
        self.agreement = agreement
        self.smoothing = smoothing
        self.recall = recall
        self.method = method
        self.normalize_cost = normalize_cost
        self.reference = reference

    def _validated(self) -> None:
        """Check the constructor's parameters (called by :meth:`fit`; nothing is converted)."""
        check_choice("feature", self.feature, TREE_FEATURES, note=" (a model's own confidence)")
        check_int(self.K, "K", minimum=1, maximum=MAX_K)
        check_real(self.smoothing, "smoothing", low=0.0, low_open=True)
        check_lam(self.lam)
        ag = self.agreement
        if not (isinstance(ag, (bool, np.bool_)) or (isinstance(ag, (int, np.integer)) and ag in (0, 1))):
            raise TTamerError(f"agreement must be True, False, 0 or 1 (agreement with the parent), got {ag!r}")
        for name in ("recall", "normalize_cost"):
            check_bool(getattr(self, name), name)

    def fit(self, trace: Trace) -> "CascadeTamer":
        """Calibrate the forest instance on ``trace`` and solve it at ``lam``."""
        self._validated()
        if not isinstance(trace, Trace):
            raise TTamerError(f"fit expects a Trace, got {type(trace).__name__}")
        spec = StateSpec(K=self.K, feature=self.feature, agreement=0)
        self.encoder_ = StateEncoder.fit(spec, trace)
        self.parents_ = trace.parents
        self.names_, self.n_classes_ = trace.exit_names, trace.n_classes
        self.reference_ = trace.reference(self.reference)
        scale = float(trace.path_cost()[self.reference_]) if self.normalize_cost else 1.0
        if not scale > 0:
            raise TraceError(f"key 'cost': the reference path to {trace.exit_names[self.reference_]!r} costs 0")
        self.scale_ = scale
        losses = (~trace.correct).astype(float)
        k = tree_n_states(self.encoder_, self.parents_, self.agreement)
        name = f"cascade {trace.meta.get('dataset', '?')}: {spec.describe()}" + \
            (" + agreement with parent" if self.agreement else "")
        states = tree_states(self.encoder_, trace, self.parents_, self.agreement)
        self.instance_ = build_tree_instance(states, losses, k, self.parents_, trace.mean_cost / scale,
                                             float(self.smoothing), names=trace.exit_names, name=name)
        self.solution_ = self._solve(self.lam)
        return self

    def _solve(self, lam: float) -> SolveResult:
        return solve(self.instance_, lam, recall=self.recall, method=self.method)

    def _check(self, trace: Trace) -> None:
        if not hasattr(self, "solution_"):
            raise TTamerError("CascadeTamer is not fitted; call fit(calibration_trace) first")
        if not isinstance(trace, Trace):
            raise TTamerError(f"expected a Trace, got {type(trace).__name__}")
        trace.validate()
        check_same_models(trace, self.names_, self.parents_, self.n_classes_, "CascadeTamer: ")

    def states(self, trace: Trace) -> np.ndarray:
        """``[N, n]`` states of ``trace``'s examples under the fitted encoder."""
        self._check(trace)
        return tree_states(self.encoder_, trace, self.parents_, self.agreement)

    def set_lam(self, lam: float) -> "CascadeTamer":
        """Re-solve the fitted instance at another ``λ``."""
        self.check_fitted()
        self.lam = check_lam(lam)
        self.solution_ = self._solve(self.lam)
        return self

    def check_fitted(self) -> None:
        if not hasattr(self, "solution_"):
            raise TTamerError("CascadeTamer is not fitted; call fit(calibration_trace) first")

    def decide(self, trace: Trace) -> ExitDecisions:
        """Run the fitted policy on every example of ``trace``."""
        states = self.states(trace)
        return run_tree_policy(self.solution_, states, trace.cost_matrix, self.name)

    def decide_sweep(self, trace: Trace, lams: Sequence[float] | None = None) -> ExitDecisions:
        """:meth:`decide` for each ``λ`` in ``lams`` (default :func:`~ttamer.earlyexit.crossval.lam_grid`
        with 40 points): arrays ``[P, N]``.

        Raises
        ------
        TTamerError
            Before fitting, for a trace unlike the calibration one, or for ``lams`` that are
            not a non-empty 1-D array of at most ``MAX_SWEEP_POINTS`` numbers in [0, 1] (and
            ``MAX_SWEEP_CELLS / N`` on ``N`` examples).
        """
        lams = lam_grid(40) if lams is None else check_lams(lams)
        st = self.states(trace)
        if len(lams) * trace.n_examples > MAX_SWEEP_CELLS:
            raise TTamerError(f"lams: {len(lams):,} values on {trace.n_examples:,} examples exceed MAX_SWEEP_CELLS="
                              f"{MAX_SWEEP_CELLS:,} decisions; pass at most {MAX_SWEEP_CELLS // trace.n_examples:,}")
        decs = [run_tree_policy(self._solve(lam), st, trace.cost_matrix) for lam in lams]
        return ExitDecisions.stack(decs, lams, self.name)

    @property
    def name(self) -> str:
        return "ttamer" if self.recall else f"no-recall ({self.method})"

    def __repr__(self) -> str:
        return (f"CascadeTamer(lam={self.lam:g}, K={self.K}, feature={self.feature!r}, agreement={self.agreement}, "
                f"recall={self.recall}, method={self.method!r})")


# ---------------------------------------------------------------------------------------------
def check_sequence(trace: Trace, sequence: Sequence[int | str]) -> np.ndarray:
    """Positions of ``sequence``; each model's parent must come earlier (or be absent for a root).

    Raises
    ------
    TTamerError
        Unless ``sequence`` is a list or tuple of distinct models of ``trace`` (names or
        positions), each after its parent.
    """
    if not isinstance(sequence, (list, tuple, np.ndarray)):
        raise TTamerError(f"a cascade sequence must be a list of model names or positions, got {short_repr(sequence)}")
    seq = np.array([trace.node_id(v) for v in sequence], dtype=np.int64)
    if len(seq) == 0:
        raise TTamerError("a cascade sequence needs at least one model")
    if len(set(seq.tolist())) != len(seq):
        raise TTamerError(f"cascade sequence {list(sequence)} repeats a model")
    for k, v in enumerate(seq):
        p = trace.parents[v]
        if p >= 0 and p not in seq[:k]:
            raise TTamerError(f"cascade sequence {list(sequence)}: model {trace.exit_names[v]!r} comes before "
                              f"its parent {trace.exit_names[p]!r}")
    return seq


def threshold_cascade(trace: Trace, sequence: Sequence[int | str],
                      thresholds: np.ndarray | Sequence[Sequence[float]] | None = None,
                      answer: str = "last", grid: int = 21) -> ExitDecisions:
    """The per-stage confidence-threshold cascade: run ``sequence[0], sequence[1], …`` and stop
    at the first stage ``k`` whose max-probability is ``≥ τ_k`` (the last stage always stops).

    ``thresholds [T, len(sequence) − 1]`` are the sweep's threshold vectors (default: every
    combination of ``grid`` quantiles of each stage's confidence, plus "never stop").
    ``answer="last"`` answers with the stage it stopped at (no recall, the usual cascade);
    ``"confident"`` with the consulted stage of largest max-probability (:data:`ANSWERS`). Vectorised
    over examples and thresholds.

    Raises
    ------
    TTamerError
        For a ``trace`` that is not a :class:`~ttamer.earlyexit.traces.Trace`, an ``answer``
        not in :data:`ANSWERS`, a bad ``sequence`` (:func:`check_sequence`), a ``grid`` that is
        not an integer ``>= 2``, ``thresholds`` that are not a ``[T, len(sequence) − 1]``
        array of numbers (``±inf`` allowed, ``nan`` not), or a sweep of more than
        ``MAX_SWEEP_CELLS`` threshold vectors × examples.
    """
    check_choice("answer", answer, ANSWERS)
    seq = check_sequence(check_trace(trace, "threshold_cascade"), sequence)
    mp = trace.max_prob[:, seq]  # [N, S]
    S = len(seq)
    if thresholds is None:
        grid = check_int(grid, "grid", minimum=2)
        _check_cells((grid + 1) ** (S - 1), trace.n_examples, "grid")
        qs = [np.concatenate([np.quantile(mp[:, k], np.linspace(0, 1, grid)), [np.inf]]) for k in range(S - 1)]
        th = np.array(list(itertools.product(*qs))) if S > 1 else np.zeros((1, 0))
    else:
        th = check_numbers(thresholds, "thresholds", ndim=2, infinite=True)
        if th.shape[1] != S - 1:
            raise TTamerError(f"thresholds must have shape [T, {S - 1}] (one per stage but the last), "
                              f"got {th.shape}")
        _check_cells(len(th), trace.n_examples, "thresholds")
    th_full = np.concatenate([th, np.full((len(th), 1), -np.inf)], axis=1)  # last stage always stops
    passed = mp[None, :, :] >= th_full[:, None, :]  # [T, N, S]
    stop = passed.argmax(axis=2)  # first passing stage
    ran = np.arange(S)[None, None, :] <= stop[:, :, None]  # [T, N, S]
    if answer == "last":
        ans_stage = stop
    else:
        ans_stage = np.where(ran, mp[None], -np.inf).argmax(axis=2)
    cost = (ran * trace.cost_matrix[:, seq][None]).sum(axis=2)
    consulted = np.zeros((len(th), trace.n_examples, trace.n_exits), dtype=bool)
    consulted[:, :, seq] = ran
    name = "threshold cascade " + "→".join(trace.exit_names[v] for v in seq)
    params = np.arange(len(th), dtype=float)
    out = ExitDecisions(seq[ans_stage], seq[stop], cost, params, name, consulted)
    out.thresholds = th  # type: ignore[attr-defined]
    return out


def _check_cells(n_vectors: int, n_examples: int, name: str) -> None:
    """Refuse a threshold sweep of more than ``MAX_SWEEP_CELLS`` vectors × examples (``name``
    is the argument that sets its size)."""
    if n_vectors * n_examples > MAX_SWEEP_CELLS:
        raise TTamerError(f"{name}: {n_vectors:,} threshold vectors on {n_examples:,} examples exceed "
                          f"MAX_SWEEP_CELLS={MAX_SWEEP_CELLS:,} vectors × examples; use a smaller grid")


def tuned_threshold_cascade(calibration: Trace, test: Trace, sequence: Sequence[int | str],
                            grid: int = 21, answer: str = "last") -> ExitDecisions:
    """:func:`threshold_cascade` with its threshold vectors chosen on the calibration examples:
    the grid (quantiles of the *calibration* confidences) is swept there, and only the
    vectors on the calibration Pareto frontier are run on ``test`` -- the multi-parameter
    heuristic is tuned on the same data as T-Tamer, not on the test examples.

    Raises
    ------
    TTamerError
        The errors of :func:`threshold_cascade`, or (:class:`~ttamer.core.errors.TraceError`,
        before any sweep) a ``test`` trace whose models, parents or classes are not the
        calibration trace's (:func:`check_same_models`).
    """
    check_trace(calibration, "tuned_threshold_cascade: calibration").validate()
    check_trace(test, "tuned_threshold_cascade: test").validate()
    check_same_models(test, calibration.exit_names, calibration.parents, calibration.n_classes,
                      "tuned_threshold_cascade: test: ", "calibration")
    sweep = threshold_cascade(calibration, sequence, answer=answer, grid=grid)
    cost, acc = sweep.points(calibration)
    th = sweep.thresholds[pareto_indices(cost, acc)]  # type: ignore[attr-defined]
    return threshold_cascade(test, sequence, thresholds=th, answer=answer)


def single_model(trace: Trace, node: int | str) -> ExitDecisions:
    """Always run ``node`` (and its ancestors, which must come first) and answer with it.

    Raises
    ------
    TTamerError
        For a ``trace`` that is not a :class:`~ttamer.earlyexit.traces.Trace`, or a ``node``
        it does not have.
    """
    v = check_trace(trace, "single_model").node_id(node)
    path = trace.path(v)
    consulted = np.zeros((trace.n_examples, trace.n_exits), dtype=bool)
    consulted[:, path] = True
    cost = trace.cost_matrix[:, path].sum(axis=1)
    answer = np.full(trace.n_examples, v, dtype=np.int64)
    return ExitDecisions(answer, answer.copy(), cost, None, f"{trace.exit_names[v]} (path)", consulted)


def oracle(trace: Trace) -> ExitDecisions:
    """The cheapest path whose end model is right (by path cost), else the reference model:
    a bound no real strategy reaches.

    Raises
    ------
    TTamerError
        For a ``trace`` that is not a :class:`~ttamer.earlyexit.traces.Trace`.
    """
    pc = check_trace(trace, "oracle").path_cost()
    order = np.argsort(pc, kind="stable")
    ok = trace.correct[:, order]
    ref = trace.reference()
    first = np.where(ok.any(axis=1), order[ok.argmax(axis=1)], ref)
    consulted = np.zeros((trace.n_examples, trace.n_exits), dtype=bool)
    paths = trace.paths()
    for v in range(trace.n_exits):  # loop over models only
        rows = first == v
        consulted[np.ix_(rows, paths[v])] = True
    cost = (trace.cost_matrix * consulted).sum(axis=1)
    first = first.astype(np.int64)
    return ExitDecisions(first, first.copy(), cost, None, "oracle", consulted)


# ---------------------------------------------------------------------------------------------
def compare_strategies(calibration: Trace, test: Trace, lams: Sequence[float] | None = None,
                       K: int = 6, agreement: bool = True, smoothing: float = 2.0,
                       sequences: Sequence[Sequence[int | str]] | None = None,
                       grid: int = 21) -> tuple[dict[str, ExitDecisions], CascadeTamer]:
    """Every strategy's decisions on the test examples: T-Tamer with recall (the tree index
    strategy), the exact no-recall optimum (exhaustive) and the best descend-only no-recall
    strategy (``method="dp"``) on the same calibrated instance, swept over ``lams``; the
    threshold cascade along each of ``sequences`` (default: every root-to-leaf path and all
    models in node order); each model alone (with its ancestors); the oracle. Returns the
    decisions by name and the fitted recall :class:`CascadeTamer`.

    Raises
    ------
    TTamerError
        For ``lams`` that :func:`~ttamer.earlyexit.crossval.check_lams` refuses, or the errors of :class:`CascadeTamer`
        and :func:`threshold_cascade`.
    """
    lams = lam_grid(40) if lams is None else check_lams(lams)
    opts = dict(K=K, agreement=agreement, smoothing=smoothing)
    rec = CascadeTamer(recall=True, **opts).fit(calibration)
    out = {"ttamer": rec.decide_sweep(test, lams),
           "no-recall (exact)": CascadeTamer(recall=False, method="auto", **opts).fit(calibration).decide_sweep(test, lams),
           "no-recall (descend-only)": CascadeTamer(recall=False, method="dp", **opts).fit(calibration).decide_sweep(test, lams)}
    if sequences is None:
        leaves = [v for v in range(test.n_exits) if v not in set(test.parents.tolist())]
        paths = test.paths()
        sequences = [paths[v] for v in leaves if len(paths[v]) > 1] + [list(range(test.n_exits))]
    for seq in sequences:
        d = tuned_threshold_cascade(calibration, test, seq, grid=grid)
        out["threshold " + "→".join(test.exit_names[test.node_id(v)] for v in seq)] = d
    for v in range(test.n_exits):
        out[test.exit_names[v]] = single_model(test, v)
    out["oracle"] = oracle(test)
    return out, rec


def frontier_metrics(decisions: dict[str, ExitDecisions], test: Trace, scale: float,
                     reference: int | str | None = None, cost_fractions: Sequence[float] = (0.25, 0.5, 0.75)
                     ) -> dict[str, dict[str, Any]]:
    """Per strategy: its points ``(cost / scale, accuracy)``, Pareto frontier and the metrics of
    the book's chapter *Early exit on real models* against the reference model (default: largest path cost) -- normalised area
    under the frontier over the common cost range, least cost reaching the reference's
    accuracy, accuracy at ``cost_fractions`` of the reference path's cost.

    Raises
    ------
    TTamerError
        For ``decisions`` that are not a dict of :class:`~ttamer.earlyexit.traces.ExitDecisions`,
        a ``test`` that is not a :class:`~ttamer.earlyexit.traces.Trace`, a ``scale`` that is
        not a finite number ``> 0``, a ``reference`` that is not one of its models, or
        ``cost_fractions`` that are not a non-empty 1-D array of at most
        ``MAX_SWEEP_POINTS`` finite numbers ``>= 0`` (fractions of the reference path's cost).
    """
    check_decisions(decisions, "frontier_metrics")
    scale = check_real(scale, "scale", low=0.0, low_open=True)
    ref = check_trace(test, "frontier_metrics").reference(reference)
    fractions = check_numbers(cost_fractions, "frontier_metrics: cost_fractions", low=0.0, max_len=MAX_SWEEP_POINTS)
    ref_acc = float(test.correct[:, ref].mean())
    pts = {k: d.points(test, scale) for k, d in decisions.items()}
    fronts = {k: pareto_frontier(c, a) for k, (c, a) in pts.items()}
    sweeps = [k for k, d in decisions.items() if d.is_sweep]
    lo = max(float(fronts[k][0, 0]) for k in sweeps) if sweeps else 0.0
    hi = 1.0 if lo < 1.0 else lo + 1.0
    out = {}
    for k, (c, a) in pts.items():
        f = fronts[k]
        cost_ref = cost_at_accuracy(f, ref_acc)
        out[k] = {"cost": c, "accuracy": a, "frontier": f, "range": (lo, hi),
                  "auc": frontier_auc(f, lo, hi) if decisions[k].is_sweep else None,
                  "cost_at_reference_accuracy": cost_ref,
                  "accuracy_at_cost": {float(x): float(y) for x, y in zip(fractions, accuracy_at(f, fractions))}}
    return out


def check_decisions(decisions: Any, who: str) -> dict[str, ExitDecisions]:
    """``decisions`` if it is a dict of :class:`~ttamer.earlyexit.traces.ExitDecisions` (one per
    strategy, by name); a :class:`~ttamer.core.errors.TTamerError` naming ``who`` otherwise."""
    if not isinstance(decisions, dict):
        raise TTamerError(f"{who}: decisions must be a dict of ExitDecisions by strategy name, got "
                          f"{type(decisions).__name__}")
    for k, d in decisions.items():
        if not isinstance(d, ExitDecisions):
            raise TTamerError(f"{who}: decisions[{short_repr(k)}] must be an ExitDecisions, got {type(d).__name__}")
    return decisions


#: Most bootstrap replicates of :func:`bootstrap_auc` and
#: :func:`~ttamer.earlyexit.skips.bootstrap_metrics`: each replicate's frontiers are computed in
#: turn, so their time grows with the replicates.
MAX_BOOTSTRAP_REPLICATES = 100_000


def check_resampling(n_boot: Any, n: int, seed: Any, who: str) -> tuple[int, int]:
    """``(n_boot, seed)`` of a bootstrap that draws its ``[n_boot, n]`` resampling weights at
    once: ``n_boot`` a count of at most :data:`MAX_BOOTSTRAP_REPLICATES` replicates whose
    weights are at most :data:`~ttamer.earlyexit.evaluation.BOOTSTRAP_CHUNK_CELLS` numbers,
    ``seed`` a seed; a :class:`~ttamer.core.errors.TTamerError` naming ``who`` and the
    argument otherwise (before anything is drawn)."""
    n_boot = check_count(n_boot, f"{who}: n_boot", minimum=0)
    most = min(MAX_BOOTSTRAP_REPLICATES, BOOTSTRAP_CHUNK_CELLS // max(n, 1))
    if n_boot > most:
        raise TTamerError(f"{who}: n_boot {n_boot:,} replicates of {n:,} test examples are above the "
                          f"{most:,} allowed (MAX_BOOTSTRAP_REPLICATES={MAX_BOOTSTRAP_REPLICATES:,}, and "
                          f"BOOTSTRAP_CHUNK_CELLS={BOOTSTRAP_CHUNK_CELLS:,} resampling weights of the examples)")
    return n_boot, check_seed(seed, f"{who}: seed")


def bootstrap_auc(decisions: dict[str, ExitDecisions], test: Trace, scale: float,
                  lo: float, hi: float = 1.0, n_boot: int = 200, seed: int = 0) -> dict[str, np.ndarray]:
    """``[n_boot]`` normalised areas under each sweep's frontier over ``[lo, hi]`` when the test
    examples are resampled with replacement (the same resample for every strategy, so
    differences are paired); policies and thresholds held fixed.

    Raises
    ------
    TTamerError
        Before any resampling, for inputs that :func:`check_bootstrap_inputs` refuses.
    """
    n, scale, n_boot, seed = check_bootstrap_inputs(decisions, test, scale, lo, hi, n_boot, seed, "bootstrap_auc")
    W = np.random.default_rng(seed).multinomial(n, np.full(n, 1.0 / n), size=n_boot) / n  # [B, N]
    out = {}
    for k, d in decisions.items():
        if not d.is_sweep:
            continue
        acc = W @ d.correct(test).T.astype(float)  # [B, P]
        cost = W @ (d.cost / scale).T
        out[k] = np.array([frontier_auc(pareto_frontier(cost[b], acc[b]), lo, hi) for b in range(n_boot)])
    return out


def check_bootstrap_inputs(decisions: Any, test: Any, scale: Any, lo: Any, hi: Any, n_boot: Any, seed: Any,
                           who: str) -> tuple[int, float, int, int]:
    """``(N, scale, n_boot, seed)`` of a paired bootstrap of the ``decisions`` on the ``N``
    examples of ``test``: ``decisions`` checked by :func:`check_decisions`, ``test`` a trace,
    ``scale`` a finite number ``> 0``, ``[lo, hi]`` by :func:`check_range` and ``n_boot`` and
    ``seed`` by :func:`check_resampling`; a :class:`~ttamer.core.errors.TTamerError` naming
    ``who`` otherwise."""
    check_decisions(decisions, who)
    n = check_trace(test, who).n_examples
    scale = check_real(scale, f"{who}: scale", low=0.0, low_open=True)
    check_range(lo, hi, who)
    n_boot, seed = check_resampling(n_boot, n, seed, who)
    return n, scale, n_boot, seed


def check_range(lo: Any, hi: Any, who: str) -> tuple[float, float]:
    """``(lo, hi)`` as floats if they are finite numbers with ``lo < hi`` and ``hi − lo`` a
    finite float64 (the cost range of an area under a frontier); a
    :class:`~ttamer.core.errors.TTamerError` naming ``who`` otherwise."""
    lo, hi = check_real(lo, f"{who}: lo"), check_real(hi, f"{who}: hi")
    if not (hi > lo and np.isfinite(hi - lo)):
        raise TTamerError(f"{who}: need lo < hi with hi - lo a finite float64, got [{lo:g}, {hi:g}]")
    return lo, hi
