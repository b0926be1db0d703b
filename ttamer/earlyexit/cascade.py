"""Cascades of separate models arranged in a tree: calibration into an instance (the book's chapters *The model* and *Early exit on real models*).

A **cascade trace** holds ``n`` separate models evaluated on the same ``N`` examples, arranged
in a forest: ``parents[v]`` is the model that must have been consulted before ``v`` (``-1``
for a root) and ``cost[v]`` is the cost of consulting ``v`` once its parent has been (the
edge cost ``c_v``: for separate models, ``v``'s own running time). It is stored as an
ordinary :class:`~ttamer.earlyexit.traces.Trace` (``probs [N, n, C]``, one "exit" per model) whose
``meta["parents"]`` lists each model's parent name (``null`` for a root); the chain
semantics of a trace's cumulative cost do not apply.

**Calibration** generalises the chain of :mod:`ttamer.earlyexit.calibration` to a tree. The state
``s_v`` of model ``v`` is a quantile bin (``K`` bins, fitted on the calibration examples) of
its confidence ``f_v`` (max-probability, entropy or margin), optionally times two for
"``v`` agrees with its parent's prediction" (observable: the parent was consulted first).
With calibration counts ``n`` and smoothing strength ``α``:

    ℓ_v(s)   = (e_v(s) + α ē_v) / (n_v(s) + α)              ē_v = overall error rate of v
    P_v[s,t] = (n_v(s,t) + α π_v(t)) / (n_parent(v)(s) + α)  π_v = state frequencies of v
    μ_v(t)   = (n_v(t) + α / K_v) / (N + α)                  (roots)

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
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from .crossval import lam_grid
from .features import StateEncoder, StateSpec
from ..core.errors import TraceError, TTamerError
from ..core.instance import Instance
from ..core.solution import SolveResult
from ..solvers.solve import solve
from .traces import Trace
from ..core.validate import check_bool, check_int, check_lam
from .base import BaseTamer

ANSWERS = ("last", "most_confident")
#: The state features of a tree, each model's own confidence (chain-history features do not apply).
TREE_FEATURES = ("max_prob", "entropy", "margin")


# ---------------------------------------------------------------------------------------------
def _parents_array(parents: Sequence[Any], names: Sequence[str]) -> np.ndarray:
    """Parents as positions (``-1`` roots) from positions, names or ``None``; checks that they
    form a forest."""
    n = len(names)
    if len(parents) != n:
        raise TraceError(f"key 'meta': field 'parents' has {len(parents)} entries for {n} models")
    index = {name: i for i, name in enumerate(names)}
    out = np.full(n, -1, dtype=np.int64)
    for v, p in enumerate(parents):
        if p is None or (isinstance(p, (int, np.integer)) and not isinstance(p, bool) and p < 0):
            continue
        if isinstance(p, str):
            if p not in index:
                raise TraceError(f"key 'meta': field 'parents', model {names[v]!r}: unknown parent {p!r}")
            out[v] = index[p]
        elif isinstance(p, (int, np.integer)) and not isinstance(p, bool) and p < n:
            out[v] = int(p)
        else:
            raise TraceError(f"key 'meta': field 'parents', model {names[v]!r}: bad parent {p!r}")
    for v in range(n):  # walk up: a cycle never reaches a root
        u, steps = v, 0
        while out[u] >= 0:
            u, steps = int(out[u]), steps + 1
            if steps > n:
                raise TraceError(f"key 'meta': field 'parents': model {names[v]!r} is on a cycle")
    return out


@dataclass(eq=False)
class CascadeTrace:
    """Separate models in a forest on the same examples (module docstring).

    ``trace`` -- the per-model outputs (``probs [N, n, C]``, ``labels``, ``cost [n]`` or
    ``[N, n]`` = edge costs ``c_v``); ``parents`` -- ``int [n]``, ``-1`` for roots.
    """

    trace: Trace
    parents: np.ndarray

    @classmethod
    def build(cls, probs: Any, labels: Any, cost: Any, parents: Sequence[Any],
              meta: dict | None = None) -> "CascadeTrace":
        """From arrays; ``parents`` as positions, names or ``None``. ``meta`` needs ``model``
        and ``dataset`` (see :data:`ttamer.earlyexit.traces.META_DEFAULTS`); ``exit_names`` = model names."""
        tr = Trace.build(probs, labels, cost, dict(meta or {}))
        par = _parents_array(list(parents), tr.exit_names)
        tr.meta["parents"] = [None if p < 0 else tr.exit_names[p] for p in par]
        return cls(tr, par)

    @classmethod
    def from_trace(cls, trace: Trace) -> "CascadeTrace":
        """A trace whose ``meta["parents"]`` describes the forest (as written by :meth:`build`)."""
        trace.validate()
        if "parents" not in trace.meta:
            raise TraceError("key 'meta': no field 'parents'; not a cascade trace")
        return cls(trace, _parents_array(list(trace.meta["parents"]), trace.exit_names))

    # ------------------------------------------------------------------ views
    @property
    def n_examples(self) -> int:
        return self.trace.n_examples

    @property
    def n_models(self) -> int:
        return self.trace.n_exits

    @property
    def names(self) -> list[str]:
        return self.trace.exit_names

    @property
    def labels(self) -> np.ndarray:
        return self.trace.labels

    @property
    def predictions(self) -> np.ndarray:
        return self.trace.predictions

    @property
    def correct(self) -> np.ndarray:
        return self.trace.correct

    @property
    def cost_matrix(self) -> np.ndarray:
        """``[N, n]`` per-example edge costs."""
        return self.trace.cost_matrix

    @property
    def mean_cost(self) -> np.ndarray:
        return self.trace.mean_cost

    def path(self, v: int) -> list[int]:
        """Root-to-``v`` path (positions)."""
        out = [int(v)]
        while self.parents[out[-1]] >= 0:
            out.append(int(self.parents[out[-1]]))
        return out[::-1]

    def path_cost(self) -> np.ndarray:
        """``[n]`` mean cost of consulting ``v`` and its ancestors (the cheapest way to reach ``v``)."""
        c = self.mean_cost
        return np.array([c[self.path(v)].sum() for v in range(self.n_models)])

    def node_id(self, node: int | str) -> int:
        if isinstance(node, str):
            if node not in self.names:
                raise TTamerError(f"unknown model {node!r}; models: {self.names}")
            return self.names.index(node)
        if not 0 <= int(node) < self.n_models:
            raise TTamerError(f"model index {node} out of range for {self.n_models} models")
        return int(node)

    def reference(self, node: int | str | None = None) -> int:
        """The reference model (``None``: the one of largest path cost)."""
        return int(np.argmax(self.path_cost())) if node is None else self.node_id(node)

    def subset(self, idx: Any) -> "CascadeTrace":
        return CascadeTrace(self.trace.subset(idx), self.parents.copy())

    def split(self, fraction: float, seed: int = 0) -> tuple["CascadeTrace", "CascadeTrace"]:
        a, b = self.trace.split(fraction, seed)
        return CascadeTrace(a, self.parents.copy()), CascadeTrace(b, self.parents.copy())

    def __repr__(self) -> str:
        tree = ", ".join(f"{n}<-{'start' if p < 0 else self.names[p]}" for n, p in zip(self.names, self.parents))
        return f"CascadeTrace(N={self.n_examples}, models: {tree})"


# ---------------------------------------------------------------------------------------------
@dataclass(eq=False)
class CascadeDecisions:
    """What a strategy did on a cascade trace: ``answer`` (model answered with), ``consulted``
    (bool, models run), ``cost`` (total paid, trace units). Shapes ``[N]``/``[N, n]``, or with a
    leading sweep axis ``P`` (``params``)."""

    answer: np.ndarray
    consulted: np.ndarray
    cost: np.ndarray
    params: np.ndarray | None = None
    name: str = ""

    @property
    def is_sweep(self) -> bool:
        return self.answer.ndim == 2

    def correct(self, ctrace: CascadeTrace) -> np.ndarray:
        """Bool, shape of ``answer``: the answering model's prediction equals the label."""
        pred = ctrace.predictions
        rows = np.arange(ctrace.n_examples)
        rows = rows if self.answer.ndim == 1 else rows[None, :]
        return pred[rows, self.answer] == ctrace.labels

    def points(self, ctrace: CascadeTrace, scale: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
        """``(mean cost / scale, accuracy)``, one entry per sweep point."""
        c = self.correct(ctrace)
        cost = self.cost / scale
        if not self.is_sweep:
            c, cost = c[None], cost[None]
        return cost.mean(axis=1), c.mean(axis=1)


def _stack(decs: list[CascadeDecisions], params: Sequence[float], name: str) -> CascadeDecisions:
    return CascadeDecisions(np.stack([d.answer for d in decs]), np.stack([d.consulted for d in decs]),
                            np.stack([d.cost for d in decs]), np.asarray(params, dtype=float), name)


# ---------------------------------------------------------------------------------------------
def tree_states(encoder: StateEncoder, ctrace: CascadeTrace, agreement: bool) -> np.ndarray:
    """``[N, n]`` states: confidence bins of every model (the fitted ``encoder``), and with
    ``agreement`` the flag "prediction equals the parent's" on non-roots (``s + K_v·flag``)."""
    s = encoder.transform(ctrace.trace)
    if agreement:
        pred = ctrace.predictions
        par = ctrace.parents
        agree = (par >= 0)[None, :] & (pred == pred[:, np.maximum(par, 0)])
        s = s + encoder.base_states[None, :] * agree
    return s.astype(np.int64)


def tree_n_states(encoder: StateEncoder, parents: np.ndarray, agreement: bool) -> np.ndarray:
    """``K_v`` per model (agreement doubles the non-roots)."""
    k = encoder.base_states.copy()
    return np.where((parents >= 0) & agreement, 2 * k, k)


def build_tree_instance(states: np.ndarray, losses: np.ndarray, n_states: Sequence[int],
                        parents: np.ndarray, costs: np.ndarray, smoothing: float,
                        names: Sequence[str] | None = None, name: str = "") -> Instance:
    """The forest instance from calibration ``states [N, n]``, 0/1 ``losses [N, n]`` and edge
    ``costs [n]`` (module docstring for the smoothing). Loops over models only."""
    if not (np.isfinite(smoothing) and smoothing > 0):
        raise TTamerError(f"smoothing must be > 0 (it defines empty bins), got {smoothing!r}")
    n, m = states.shape
    if losses.shape != (n, m):
        raise TTamerError(f"losses has shape {losses.shape}, expected {(n, m)} like states")
    K = [int(k) for k in n_states]
    for v in range(m):
        if states[:, v].min() < 0 or states[:, v].max() >= K[v]:
            raise TTamerError(f"states of model {v}: values outside 0..{K[v] - 1}")
    a = float(smoothing)
    ell, mats = [], []
    for v in range(m):
        cnt = np.bincount(states[:, v], minlength=K[v]).astype(float)
        err = np.bincount(states[:, v], weights=losses[:, v], minlength=K[v])
        ell.append((err + a * losses[:, v].mean()) / (cnt + a))
        p = int(parents[v])
        if p < 0:
            mu = cnt + a / K[v]
            mats.append(mu / mu.sum())
            continue
        joint = np.bincount(states[:, p] * K[v] + states[:, v], minlength=K[p] * K[v])
        P = joint.reshape(K[p], K[v]).astype(float) + a * cnt / cnt.sum()
        mats.append(P / P.sum(axis=1, keepdims=True))
    return Instance.tree([int(p) if p >= 0 else None for p in parents], ell, mats, costs,
                         names=names, name=name)


def run_tree_policy(solution: SolveResult, states: np.ndarray, cost: np.ndarray, name: str = "") -> CascadeDecisions:
    """Run ``solution.policy`` on examples with known ``states [N, n]`` and per-example edge
    costs ``cost [N, n]`` through :meth:`~ttamer.core.policy.Policy.rollout_known`."""
    policy = solution.policy
    ro = policy.rollout_known(states)
    answer = policy.answer(ro.states, ro.last)
    if (answer < 0).any():
        raise TTamerError("the policy answered with the fallback; cascade instances have none")
    consulted = ro.states >= 0
    return CascadeDecisions(answer, consulted, (cost * consulted).sum(axis=1), None, name)


# ---------------------------------------------------------------------------------------------
class CascadeTamer(BaseTamer):
    """T-Tamer for a tree of separate models, scikit-learn style.

    ``CascadeTamer(lam=0.95, K=8, feature="max_prob", agreement=False, smoothing=2.0,
    recall=True, method="auto")``; :meth:`fit` (calibration :class:`CascadeTrace`) sets
    ``encoder_``, ``instance_``, ``scale_`` (cost normaliser), ``solution_``; :meth:`decide`
    (test trace) returns :class:`CascadeDecisions`; :meth:`decide_sweep` re-solves for
    several ``λ``. ``method`` is passed to :func:`~ttamer.solvers.solve.solve` (no recall on a branching
    tree: ``"auto"`` = exhaustive, ``"dp"`` = best descend-only strategy).
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
        if self.feature not in TREE_FEATURES:
            raise TTamerError(f"feature must be one of {TREE_FEATURES} (a model's own confidence), "
                              f"got {self.feature!r}")
        check_int(self.K, "K", minimum=1)
        sm = self.smoothing
        if isinstance(sm, bool) or not (isinstance(sm, (int, float)) and np.isfinite(sm) and sm > 0):
            raise TTamerError(f"smoothing must be > 0, got {sm!r}")
        check_lam(self.lam)
        for name in ("agreement", "recall", "normalize_cost"):
            check_bool(getattr(self, name), name)

    def fit(self, ctrace: CascadeTrace) -> "CascadeTamer":
        """Calibrate the forest instance on ``ctrace`` and solve it at ``lam``."""
        self._validated()
        if not isinstance(ctrace, CascadeTrace):
            raise TTamerError(f"fit expects a CascadeTrace, got {type(ctrace).__name__}")
        spec = StateSpec(K=self.K, feature=self.feature, agreement=0)
        self.encoder_ = StateEncoder.fit(spec, ctrace.trace)
        self.parents_ = ctrace.parents.copy()
        self.names_ = ctrace.names
        self.reference_ = ctrace.reference(self.reference)
        scale = float(ctrace.path_cost()[self.reference_]) if self.normalize_cost else 1.0
        if not scale > 0:
            raise TraceError(f"key 'cost': the reference path to {ctrace.names[self.reference_]!r} costs 0")
        self.scale_ = scale
        losses = (~ctrace.correct).astype(float)
        k = tree_n_states(self.encoder_, self.parents_, self.agreement)
        name = f"cascade {ctrace.trace.meta.get('dataset', '?')}: {spec.describe()}" + \
            (" + agreement with parent" if self.agreement else "")
        self.instance_ = build_tree_instance(tree_states(self.encoder_, ctrace, self.agreement), losses, k,
                                             self.parents_, ctrace.mean_cost / scale, self.smoothing,
                                             names=ctrace.names, name=name)
        self.solution_ = self._solve(self.lam)
        return self

    def _solve(self, lam: float) -> SolveResult:
        return solve(self.instance_, lam, recall=self.recall, method=self.method)

    def _check(self, ctrace: CascadeTrace) -> None:
        if not hasattr(self, "solution_"):
            raise TTamerError("CascadeTamer is not fitted; call fit(calibration_trace) first")
        if not isinstance(ctrace, CascadeTrace):
            raise TTamerError(f"expected a CascadeTrace, got {type(ctrace).__name__}")
        if not np.array_equal(ctrace.parents, self.parents_) or ctrace.names != self.names_:
            raise TraceError(f"the trace's models {ctrace.names} / parents {ctrace.parents.tolist()} differ "
                             f"from the fitted ones {self.names_} / {self.parents_.tolist()}")

    def states(self, ctrace: CascadeTrace) -> np.ndarray:
        """``[N, n]`` states of ``ctrace``'s examples under the fitted encoder."""
        self._check(ctrace)
        return tree_states(self.encoder_, ctrace, self.agreement)

    def set_lam(self, lam: float) -> "CascadeTamer":
        """Re-solve the fitted instance at another ``λ``."""
        self.check_fitted()
        self.lam = check_lam(lam)
        self.solution_ = self._solve(self.lam)
        return self

    def check_fitted(self) -> None:
        if not hasattr(self, "solution_"):
            raise TTamerError("CascadeTamer is not fitted; call fit(calibration_trace) first")

    def decide(self, ctrace: CascadeTrace) -> CascadeDecisions:
        """Run the fitted policy on every example of ``ctrace``."""
        states = self.states(ctrace)
        return run_tree_policy(self.solution_, states, ctrace.cost_matrix, self.name)

    def decide_sweep(self, ctrace: CascadeTrace, lams: Sequence[float] | None = None) -> CascadeDecisions:
        """:meth:`decide` for each ``λ`` in ``lams`` (default :func:`~ttamer.earlyexit.crossval.lam_grid`
        with 40 points): arrays ``[P, N]``."""
        lams = lam_grid(40) if lams is None else np.asarray(lams, dtype=float)
        st = self.states(ctrace)
        decs = [run_tree_policy(self._solve(lam), st, ctrace.cost_matrix) for lam in lams]
        return _stack(decs, lams, self.name)

    @property
    def name(self) -> str:
        return "ttamer" if self.recall else f"no-recall ({self.method})"

    def __repr__(self) -> str:
        return (f"CascadeTamer(lam={self.lam:g}, K={self.K}, feature={self.feature!r}, agreement={self.agreement}, "
                f"recall={self.recall}, method={self.method!r})")


# ---------------------------------------------------------------------------------------------
def check_sequence(ctrace: CascadeTrace, sequence: Sequence[int | str]) -> np.ndarray:
    """Positions of ``sequence``; each model's parent must come earlier (or be absent for a root)."""
    seq = np.array([ctrace.node_id(v) for v in sequence], dtype=np.int64)
    if len(seq) == 0:
        raise TTamerError("a cascade sequence needs at least one model")
    if len(set(seq.tolist())) != len(seq):
        raise TTamerError(f"cascade sequence {list(sequence)} repeats a model")
    for k, v in enumerate(seq):
        p = ctrace.parents[v]
        if p >= 0 and p not in seq[:k]:
            raise TTamerError(f"cascade sequence {list(sequence)}: model {ctrace.names[v]!r} comes before "
                              f"its parent {ctrace.names[p]!r}")
    return seq


def threshold_cascade(ctrace: CascadeTrace, sequence: Sequence[int | str],
                      thresholds: np.ndarray | Sequence[Sequence[float]] | None = None,
                      answer: str = "last", grid: int = 21) -> CascadeDecisions:
    """The per-stage confidence-threshold cascade: run ``sequence[0], sequence[1], …`` and stop
    at the first stage ``k`` whose max-probability is ``≥ τ_k`` (the last stage always stops).

    ``thresholds [T, len(sequence) − 1]`` are the sweep's threshold vectors (default: every
    combination of ``grid`` quantiles of each stage's confidence, plus "never stop").
    ``answer="last"`` answers with the stage it stopped at (no recall, the usual cascade);
    ``"most_confident"`` with the consulted stage of largest max-probability. Vectorised
    over examples and thresholds.
    """
    if answer not in ANSWERS:
        raise TTamerError(f"answer must be one of {ANSWERS}, got {answer!r}")
    seq = check_sequence(ctrace, sequence)
    mp = ctrace.trace.max_prob[:, seq]  # [N, S]
    S = len(seq)
    if thresholds is None:
        qs = [np.concatenate([np.quantile(mp[:, k], np.linspace(0, 1, grid)), [np.inf]]) for k in range(S - 1)]
        th = np.array(list(itertools.product(*qs))) if S > 1 else np.zeros((1, 0))
    else:
        th = np.asarray(thresholds, dtype=float)
        if th.ndim != 2 or th.shape[1] != S - 1:
            raise TTamerError(f"thresholds must have shape [T, {S - 1}] (one per stage but the last), "
                              f"got {th.shape}")
    th_full = np.concatenate([th, np.full((len(th), 1), -np.inf)], axis=1)  # last stage always stops
    passed = mp[None, :, :] >= th_full[:, None, :]  # [T, N, S]
    stop = passed.argmax(axis=2)  # first passing stage
    ran = np.arange(S)[None, None, :] <= stop[:, :, None]  # [T, N, S]
    if answer == "last":
        ans_stage = stop
    else:
        ans_stage = np.where(ran, mp[None], -np.inf).argmax(axis=2)
    cost = (ran * ctrace.cost_matrix[:, seq][None]).sum(axis=2)
    consulted = np.zeros((len(th), ctrace.n_examples, ctrace.n_models), dtype=bool)
    consulted[:, :, seq] = ran
    name = "threshold cascade " + "→".join(ctrace.names[v] for v in seq)
    params = np.arange(len(th), dtype=float)
    out = CascadeDecisions(seq[ans_stage], consulted, cost, params, name)
    out.thresholds = th  # type: ignore[attr-defined]
    return out


def pareto_indices(cost: np.ndarray, accuracy: np.ndarray) -> np.ndarray:
    """Indices of the points on the upper-left Pareto frontier (cost increasing, accuracy
    strictly increasing)."""
    order = np.lexsort((-np.asarray(accuracy), np.asarray(cost)))
    a = np.asarray(accuracy)[order]
    prev = np.concatenate([[-np.inf], np.maximum.accumulate(a)[:-1]])
    return order[a > prev + 1e-12]


def tuned_threshold_cascade(calibration: CascadeTrace, test: CascadeTrace, sequence: Sequence[int | str],
                            grid: int = 21, answer: str = "last") -> CascadeDecisions:
    """:func:`threshold_cascade` with its threshold vectors chosen on the calibration examples:
    the grid (quantiles of the *calibration* confidences) is swept there, and only the
    vectors on the calibration Pareto frontier are run on ``test`` -- the multi-parameter
    heuristic is tuned on the same data as T-Tamer, not on the test examples."""
    sweep = threshold_cascade(calibration, sequence, answer=answer, grid=grid)
    cost, acc = sweep.points(calibration)
    th = sweep.thresholds[pareto_indices(cost, acc)]  # type: ignore[attr-defined]
    return threshold_cascade(test, sequence, thresholds=th, answer=answer)


def single_model(ctrace: CascadeTrace, node: int | str) -> CascadeDecisions:
    """Always run ``node`` (and its ancestors, which must come first) and answer with it."""
    v = ctrace.node_id(node)
    path = ctrace.path(v)
    consulted = np.zeros((ctrace.n_examples, ctrace.n_models), dtype=bool)
    consulted[:, path] = True
    cost = ctrace.cost_matrix[:, path].sum(axis=1)
    return CascadeDecisions(np.full(ctrace.n_examples, v, dtype=np.int64), consulted, cost, None,
                            f"{ctrace.names[v]} (path)")


def oracle(ctrace: CascadeTrace) -> CascadeDecisions:
    """The cheapest path whose end model is right (by path cost), else the reference model:
    a bound no real strategy reaches."""
    pc = ctrace.path_cost()
    order = np.argsort(pc, kind="stable")
    ok = ctrace.correct[:, order]
    ref = ctrace.reference()
    first = np.where(ok.any(axis=1), order[ok.argmax(axis=1)], ref)
    consulted = np.zeros((ctrace.n_examples, ctrace.n_models), dtype=bool)
    paths = [ctrace.path(v) for v in range(ctrace.n_models)]
    for v in range(ctrace.n_models):  # loop over models only
        rows = first == v
        consulted[np.ix_(rows, paths[v])] = True
    cost = (ctrace.cost_matrix * consulted).sum(axis=1)
    return CascadeDecisions(first.astype(np.int64), consulted, cost, None, "oracle")



# ---------------------------------------------------------------------------------------------
def compare_strategies(calibration: CascadeTrace, test: CascadeTrace, lams: Sequence[float] | None = None,
                       K: int = 6, agreement: bool = True, smoothing: float = 2.0,
                       sequences: Sequence[Sequence[int | str]] | None = None,
                       grid: int = 21) -> tuple[dict[str, CascadeDecisions], CascadeTamer]:
    """Every strategy's decisions on the test examples: T-Tamer with recall (the tree index
    strategy), the exact no-recall optimum (exhaustive) and the best descend-only no-recall
    strategy (``method="dp"``) on the same calibrated instance, swept over ``lams``; the
    threshold cascade along each of ``sequences`` (default: every root-to-leaf path and all
    models in node order); each model alone (with its ancestors); the oracle. Returns the
    decisions by name and the fitted recall :class:`CascadeTamer`."""
    lams = lam_grid(40) if lams is None else np.asarray(lams, dtype=float)
    opts = dict(K=K, agreement=agreement, smoothing=smoothing)
    rec = CascadeTamer(recall=True, **opts).fit(calibration)
    out = {"ttamer": rec.decide_sweep(test, lams),
           "no-recall (exact)": CascadeTamer(recall=False, method="auto", **opts).fit(calibration).decide_sweep(test, lams),
           "no-recall (descend-only)": CascadeTamer(recall=False, method="dp", **opts).fit(calibration).decide_sweep(test, lams)}
    if sequences is None:
        leaves = [v for v in range(test.n_models) if v not in set(test.parents.tolist())]
        sequences = [test.path(v) for v in leaves if len(test.path(v)) > 1] + [list(range(test.n_models))]
    for seq in sequences:
        d = tuned_threshold_cascade(calibration, test, seq, grid=grid)
        out["threshold " + "→".join(test.names[test.node_id(v)] for v in seq)] = d
    for v in range(test.n_models):
        out[test.names[v]] = single_model(test, v)
    out["oracle"] = oracle(test)
    return out, rec


def frontier_metrics(decisions: dict[str, CascadeDecisions], test: CascadeTrace, scale: float,
                     reference: int | str | None = None, cost_fractions: Sequence[float] = (0.25, 0.5, 0.75)
                     ) -> dict[str, dict[str, Any]]:
    """Per strategy: its points ``(cost / scale, accuracy)``, Pareto frontier and the metrics of
    the book's chapter *Early exit on real models* against the reference model (default: largest path cost) -- normalised area
    under the frontier over the common cost range, least cost reaching the reference's
    accuracy, accuracy at ``cost_fractions`` of the reference path's cost."""
    from .evaluation import accuracy_at, cost_at_accuracy, frontier_auc, pareto_frontier

    ref = test.reference(reference)
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
                  "accuracy_at_cost": {float(x): float(y) for x, y in zip(cost_fractions, accuracy_at(f, np.asarray(cost_fractions)))}}
    return out


def bootstrap_auc(decisions: dict[str, CascadeDecisions], test: CascadeTrace, scale: float,
                  lo: float, hi: float = 1.0, n_boot: int = 200, seed: int = 0) -> dict[str, np.ndarray]:
    """``[n_boot]`` normalised areas under each sweep's frontier over ``[lo, hi]`` when the test
    examples are resampled with replacement (the same resample for every strategy, so
    differences are paired); policies and thresholds held fixed."""
    from .evaluation import frontier_auc, pareto_frontier

    n = test.n_examples
    W = np.random.default_rng(seed).multinomial(n, np.full(n, 1.0 / n), size=n_boot) / n  # [B, N]
    out = {}
    for k, d in decisions.items():
        if not d.is_sweep:
            continue
        acc = W @ d.correct(test).T.astype(float)  # [B, P]
        cost = W @ (d.cost / scale).T
        out[k] = np.array([frontier_auc(pareto_frontier(cost[b], acc[b]), lo, hi) for b in range(n_boot)])
    return out
