"""From a trace to a chain instance, and T-Tamer on held-out examples (SPEC §5.2).

**States.** The state ``s_i`` of exit ``i`` is computed from what is observable once exit
``i`` has run (:class:`StateSpec`):

* a quantile bin of a confidence feature ``f_i`` (default the max-probability
  ``max_c p_i(c)``; also ``"entropy"`` or ``"margin"`` = top-1 minus top-2): ``K`` bins
  with edges at the ``1/K, …, (K−1)/K`` quantiles of ``f_i`` on the calibration examples
  (duplicate edges merged, so exit ``i`` may have fewer than ``K`` bins);
* optionally (``entropy_bins = E > 0``) a quantile bin of the entropy as a second axis
  (product state);
* optionally (``agreement = r ≥ 1``) the number of consecutive earlier exits whose
  prediction equals exit ``i``'s, capped at ``r`` (``r = 1``: "agrees with the previous
  exit"); this multiplies the states of exits ``i ≥ 1`` by ``r + 1``.

**Loss.** ``ℓ_i(s)`` is the smoothed calibration error rate of exit ``i`` in state ``s``:
error against the true label (``loss="label"``) or disagreement with the final exit
(``loss="final"``). **Smoothing** (a Beta/Dirichlet prior of strength ``α``, centred on the
pooled frequency so that empty bins are defined and tiny bins shrink toward it):

    ℓ_i(s)   = (e_i(s) + α ē_i) / (n_i(s) + α)          ē_i = overall error rate of exit i
    P_i[s,t] = (n_i(s,t) + α π_i(t)) / (n_{i−1}(s) + α)  π_i  = state frequencies of exit i
    μ(t)     = (n_0(t) + α / K_0) / (N + α)

with ``n`` the calibration counts. **Costs** ``c_i`` = mean measured cost of exit ``i``,
divided by the full model's mean cost (``normalize_cost=True``) so that ``λ`` weighs an error
rate against a fraction of the full model.

:class:`EarlyExitTamer` builds this chain, solves it with :func:`ttamer.solve` (recall: the
index strategy; no recall: the DP), and runs the *same* policy object on test examples
through :func:`ttamer.policy.rollout`. Any of ``K``, ``agreement``, ``smoothing`` may be
``"auto"``: :meth:`EarlyExitTamer.fit` then picks the value by ``cv_folds``-fold
cross-validation inside the calibration examples, maximising the normalised area under the
held-out accuracy–cost frontier of a ``λ`` sweep.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, replace
from typing import Any, Sequence

import numpy as np

from .errors import TraceError, TTamerError
from .instance import Instance
from .policy import rollout
from .solve import Solution, solve
from .traces import ExitDecisions, Trace, target_labels

FEATURES = ("max_prob", "entropy", "margin")
LOSSES = ("label", "final")
#: Candidates tried for ``K="auto"`` (those leaving < ``MIN_PER_STATE`` examples per state dropped).
K_GRID = (2, 3, 4, 6, 8, 12, 16, 24, 32)
AGREEMENT_GRID = (0, 1)
SMOOTHING_GRID = (0.5, 2.0, 8.0)
#: ``K="auto"`` keeps candidates with at least this many training examples per state on average.
MIN_PER_STATE = 8
AUTO = "auto"


def lam_grid(n: int = 60, lo: float = 1e-2, hi: float = 1e4) -> np.ndarray:
    """``λ`` values with ``λ/(1−λ)`` log-spaced in ``[lo, hi]`` (plus nothing else): with costs
    as fractions of the full model and losses as error rates, the interesting trade-offs
    sit at ratios between about 0.01 and 10⁴."""
    r = np.logspace(np.log10(lo), np.log10(hi), n)
    return r / (1.0 + r)


# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class StateSpec:
    """How an exit's state is computed (see the module docstring).

    ``K`` -- bins of ``feature`` (int or ``"auto"``); ``feature`` -- ``"max_prob"``,
    ``"entropy"`` or ``"margin"``; ``agreement`` -- cap ``r`` on the run of consecutive
    agreeing predictions (``0``/``False``: off, ``1``/``True``: agrees with previous exit, or
    ``"auto"``); ``entropy_bins`` -- extra entropy bins (``0``: off).
    """

    K: int | str = AUTO
    feature: str = "max_prob"
    agreement: int | bool | str = AUTO
    entropy_bins: int = 0

    def __post_init__(self) -> None:
        if self.K != AUTO and (isinstance(self.K, bool) or not isinstance(self.K, (int, np.integer)) or self.K < 1):
            raise TTamerError(f"StateSpec.K must be a positive integer or 'auto', got {self.K!r}")
        if self.feature not in FEATURES:
            raise TTamerError(f"StateSpec.feature must be one of {FEATURES}, got {self.feature!r}")
        ag = self.agreement
        if ag != AUTO and not (isinstance(ag, (bool, int, np.integer)) and int(ag) >= 0):
            raise TTamerError(f"StateSpec.agreement must be a bool, an int >= 0 or 'auto', got {ag!r}")
        if not isinstance(self.entropy_bins, (int, np.integer)) or self.entropy_bins < 0:
            raise TTamerError(f"StateSpec.entropy_bins must be an int >= 0, got {self.entropy_bins!r}")

    @property
    def is_concrete(self) -> bool:
        return self.K != AUTO and self.agreement != AUTO

    @property
    def agreement_cap(self) -> int:
        return int(self.agreement)

    def describe(self) -> str:
        parts = [f"{self.K} {self.feature} bins"]
        if self.entropy_bins:
            parts.append(f"{self.entropy_bins} entropy bins")
        if self.agreement != AUTO and int(self.agreement) == 1:
            parts.append("agreement with the previous exit")
        elif self.agreement != AUTO and int(self.agreement) > 1:
            parts.append(f"agreement run (cap {int(self.agreement)})")
        elif self.agreement == AUTO:
            parts.append("agreement auto")
        return " + ".join(parts)


def confidence_feature(trace: Trace, feature: str) -> np.ndarray:
    """``[N, L]`` float64 feature of every exit: max-probability, entropy or top-2 margin."""
    if feature == "max_prob":
        return trace.max_prob
    if feature == "entropy":
        return trace.entropy
    if feature == "margin":
        top2 = np.partition(trace.probs, trace.n_classes - 2, axis=2)[:, :, -2:].astype(np.float64)
        return top2[:, :, 1] - top2[:, :, 0]
    raise TTamerError(f"unknown feature {feature!r}; choose one of {FEATURES}")


def agreement_run(pred: np.ndarray, cap: int) -> np.ndarray:
    """``[N, L]``: number of consecutive exits just before ``i`` predicting what exit ``i``
    predicts, capped at ``cap`` (0 at exit 0). Loop over exits only."""
    n, L = pred.shape
    out = np.zeros((n, L), dtype=np.int64)
    for i in range(1, L):
        run = np.zeros(n, dtype=np.int64)
        alive = np.ones(n, dtype=bool)
        for j in range(i - 1, max(i - 1 - cap, -1), -1):
            alive &= pred[:, j] == pred[:, i]
            run += alive
        out[:, i] = run
    return out


def _quantile_edges(x: np.ndarray, k: int) -> np.ndarray:
    """Interior edges at the ``1/k..(k−1)/k`` quantiles, duplicates removed."""
    if k <= 1:
        return np.zeros(0)
    e = np.unique(np.quantile(x, np.arange(1, k) / k))
    # an edge equal to the maximum would leave an empty top bin
    return e[e < x.max()] if len(e) else e


@dataclass
class StateEncoder:
    """A fitted :class:`StateSpec`: per-exit bin edges. ``transform`` maps a trace to
    ``[N, L]`` int64 states with ``0 ≤ s_i < n_states[i]``."""

    spec: StateSpec
    feature_edges: list[np.ndarray]
    entropy_edges: list[np.ndarray]

    @classmethod
    def fit(cls, spec: StateSpec, trace: Trace) -> "StateEncoder":
        if not spec.is_concrete:
            raise TTamerError(f"StateEncoder.fit needs a concrete StateSpec (no 'auto'), got {spec}")
        f = confidence_feature(trace, spec.feature)
        fe = [_quantile_edges(f[:, i], int(spec.K)) for i in range(trace.n_exits)]
        if spec.entropy_bins:
            h = trace.entropy
            he = [_quantile_edges(h[:, i], spec.entropy_bins) for i in range(trace.n_exits)]
        else:
            he = [np.zeros(0) for _ in range(trace.n_exits)]
        return cls(spec, fe, he)

    @property
    def n_exits(self) -> int:
        return len(self.feature_edges)

    @property
    def base_states(self) -> np.ndarray:
        """States from the confidence bins alone, per exit."""
        return np.array([(len(a) + 1) * (len(b) + 1) for a, b in zip(self.feature_edges, self.entropy_edges)])

    @property
    def n_states(self) -> np.ndarray:
        """``K_i`` per exit (agreement levels multiply exits ``i ≥ 1``)."""
        k = self.base_states.copy()
        k[1:] *= self.spec.agreement_cap + 1
        return k

    def transform(self, trace: Trace) -> np.ndarray:
        if trace.n_exits != self.n_exits:
            raise TraceError(f"trace has {trace.n_exits} exits; the encoder was fitted on {self.n_exits}")
        f = confidence_feature(trace, self.spec.feature)
        s = np.stack([np.searchsorted(e, f[:, i], side="right") for i, e in enumerate(self.feature_edges)], 1)
        if self.spec.entropy_bins:
            h = trace.entropy
            hb = np.stack([np.searchsorted(e, h[:, i], side="right") for i, e in enumerate(self.entropy_edges)], 1)
            s = s * np.array([len(e) + 1 for e in self.entropy_edges]) + hb
        cap = self.spec.agreement_cap
        if cap:
            s = s + self.base_states * agreement_run(trace.predictions, cap)
        return s.astype(np.int64)


# ---------------------------------------------------------------------------------------------
def exit_losses(trace: Trace, loss: str) -> np.ndarray:
    """``[N, L]`` float64 0/1: exit ``i`` is wrong (``"label"``) or disagrees with the final
    exit (``"final"``)."""
    if loss not in LOSSES:
        raise TTamerError(f"loss must be one of {LOSSES}, got {loss!r}")
    truth = target_labels(trace, loss)
    return (trace.predictions != truth[:, None]).astype(np.float64)


def build_instance(states: np.ndarray, losses: np.ndarray, n_states: Sequence[int], costs: np.ndarray,
                   smoothing: float, names: Sequence[str] | None = None, name: str = "") -> Instance:
    """The chain instance of SPEC §5.2 from calibration ``states [N, L]``, 0/1 ``losses
    [N, L]`` and edge ``costs [L]``, smoothed with strength ``α = smoothing`` (module
    docstring). Loops over exits only."""
    if not (np.isfinite(smoothing) and smoothing > 0):
        raise TTamerError(f"smoothing must be > 0 (it defines empty bins), got {smoothing!r}")
    n, L = states.shape
    a = float(smoothing)
    K = [int(k) for k in n_states]
    ell, mats = [], []
    for i in range(L):
        cnt = np.bincount(states[:, i], minlength=K[i]).astype(float)
        err = np.bincount(states[:, i], weights=losses[:, i], minlength=K[i])
        ell.append((err + a * losses[:, i].mean()) / (cnt + a))
        if i == 0:
            mu = cnt + a / K[0]
            mats.append(mu / mu.sum())
            continue
        pi = cnt / cnt.sum()
        joint = np.bincount(states[:, i - 1] * K[i] + states[:, i], minlength=K[i - 1] * K[i])
        P = joint.reshape(K[i - 1], K[i]).astype(float) + a * pi
        mats.append(P / P.sum(axis=1, keepdims=True))
    return Instance.chain(ell, mats[0], mats[1:], costs, names=names, name=name)


@dataclass
class _Fitted:
    spec: StateSpec
    smoothing: float
    encoder: StateEncoder
    instance: Instance


def _fit_concrete(trace: Trace, spec: StateSpec, smoothing: float, loss: str, normalize_cost: bool) -> _Fitted:
    enc = StateEncoder.fit(spec, trace)
    costs = trace.mean_cost
    if normalize_cost:
        total = costs.sum()
        if total <= 0:
            raise TraceError("key 'cost': the full model's mean cost is 0; cannot normalise")
        costs = costs / total
    name = f"{trace.meta.get('model', '?')} on {trace.meta.get('dataset', '?')}: {spec.describe()}"
    inst = build_instance(enc.transform(trace), exit_losses(trace, loss), enc.n_states, costs,
                          smoothing, names=trace.exit_names, name=name)
    return _Fitted(spec, float(smoothing), enc, inst)


def run_policy(solution: Solution, states: np.ndarray, trace: Trace, name: str = "") -> ExitDecisions:
    """Run ``solution.policy`` on the examples of ``trace`` (states ``[N, L]``) through
    :func:`ttamer.policy.rollout`; the reveal function reads each example's state off
    ``states``. Returns the exit answered with, the last exit consulted and the cost."""
    policy = solution.policy

    def reveal(rows: np.ndarray, nodes: np.ndarray, _s: np.ndarray, _l: np.ndarray) -> np.ndarray:
        return states[rows, nodes]

    ro = rollout(policy, len(states), reveal)
    answer = policy.answer(ro.states, ro.last)
    if (answer < 0).any():
        raise TTamerError("the policy answered with the fallback; early-exit instances have none")
    consulted = ro.states >= 0
    if not np.array_equal(consulted, np.arange(trace.n_exits)[None, :] <= ro.last[:, None]):
        raise TTamerError("the policy did not consult a prefix of the exits")  # chain invariant
    return ExitDecisions.from_last(trace, answer, ro.last, name=name)


def _stack(decs: list[ExitDecisions], params: Sequence[float], name: str) -> ExitDecisions:
    return ExitDecisions(np.stack([d.answer for d in decs]), np.stack([d.last for d in decs]),
                         np.stack([d.cost for d in decs]), np.asarray(params, dtype=float), name)


# ---------------------------------------------------------------------------------------------
class EarlyExitTamer:
    """T-Tamer for early exit, scikit-learn style (SPEC §5.2).

    ``EarlyExitTamer(lam=0.95, state=StateSpec(...), recall=True, loss="label")``;
    :meth:`fit` (calibration trace) sets ``spec_``, ``smoothing_``, ``encoder_``,
    ``instance_``, ``solution_`` (and ``cv_scores_`` when something was ``"auto"``);
    :meth:`decide` (test trace) returns :class:`~ttamer.traces.ExitDecisions`;
    :meth:`decide_sweep` re-solves the same instance for several ``λ``.
    """

    def __init__(self, lam: float = 0.95, state: StateSpec | None = None, recall: bool = True,
                 loss: str = "label", smoothing: float | str = 2.0, normalize_cost: bool = True,
                 cv_folds: int = 3, cv_lams: Sequence[float] | None = None, target: str = "label",
                 seed: int = 0) -> None:
        self.lam = float(lam)
        self.state = StateSpec() if state is None else state
        self.recall = bool(recall)
        if loss not in LOSSES:
            raise TTamerError(f"loss must be one of {LOSSES}, got {loss!r}")
        self.loss = loss
        if smoothing != AUTO and not (isinstance(smoothing, (int, float)) and smoothing > 0):
            raise TTamerError(f"smoothing must be > 0 or 'auto', got {smoothing!r}")
        self.smoothing = smoothing
        self.normalize_cost = bool(normalize_cost)
        if int(cv_folds) < 2:
            raise TTamerError(f"cv_folds must be >= 2, got {cv_folds!r}")
        self.cv_folds = int(cv_folds)
        self.cv_lams = lam_grid(20) if cv_lams is None else np.asarray(cv_lams, dtype=float)
        self.target = target
        self.seed = int(seed)

    # ------------------------------------------------------------------ fitting
    def candidates(self, n_train: int) -> list[tuple[StateSpec, float]]:
        """Concrete (spec, smoothing) pairs that ``"auto"`` fields expand to."""
        s = self.state
        ks = [s.K] if s.K != AUTO else list(K_GRID)
        ags = [int(s.agreement)] if s.agreement != AUTO else list(AGREEMENT_GRID)
        sms = [float(self.smoothing)] if self.smoothing != AUTO else list(SMOOTHING_GRID)
        out = []
        for k, ag, sm in itertools.product(ks, ags, sms):
            spec = replace(s, K=int(k), agreement=int(ag))
            states = int(k) * max(s.entropy_bins, 1) * (ag + 1)
            if s.K == AUTO and n_train / states < MIN_PER_STATE and k != min(ks):
                continue
            out.append((spec, sm))
        return out

    def fit(self, trace: Trace) -> "EarlyExitTamer":
        """Build the chain instance from calibration examples and solve it at ``lam``."""
        trace.validate()
        cands = self.candidates(int(trace.n_examples * (self.cv_folds - 1) / self.cv_folds))
        if len(cands) > 1:
            scores = [self._cv_score(trace, spec, sm) for spec, sm in cands]
            best = int(np.argmax(scores))
            self.cv_scores_ = [(spec, sm, sc) for (spec, sm), sc in zip(cands, scores)]
        else:
            best = 0
            self.cv_scores_ = []
        spec, sm = cands[best]
        fitted = _fit_concrete(trace, spec, sm, self.loss, self.normalize_cost)
        self.spec_, self.smoothing_ = fitted.spec, fitted.smoothing
        self.encoder_, self.instance_ = fitted.encoder, fitted.instance
        self.solution_ = solve(self.instance_, self.lam, recall=self.recall)
        return self

    def _cv_score(self, trace: Trace, spec: StateSpec, smoothing: float) -> float:
        """Held-out normalised area under the accuracy–cost frontier of the ``cv_lams`` sweep,
        pooled over ``cv_folds`` folds of the calibration examples."""
        from .evaluation import frontier_auc, pareto_frontier

        n = trace.n_examples
        folds = np.random.default_rng(self.seed).permutation(n) % self.cv_folds
        P = len(self.cv_lams)
        correct = np.zeros((P, n), dtype=bool)
        cost = np.zeros((P, n))
        for f in range(self.cv_folds):
            tr, te = trace.subset(folds != f), trace.subset(folds == f)
            fitted = _fit_concrete(tr, spec, smoothing, self.loss, self.normalize_cost)
            st = fitted.encoder.transform(te)
            for p, lam in enumerate(self.cv_lams):
                d = run_policy(solve(fitted.instance, lam, recall=self.recall), st, te)
                correct[p, folds == f] = d.correct(te, self.target)
                cost[p, folds == f] = d.cost
        scale = trace.full_cost.mean()
        front = pareto_frontier(cost.mean(axis=1) / scale, correct.mean(axis=1))
        lo = trace.cumulative_cost[:, 0].mean() / scale
        return frontier_auc(front, lo, 1.0)

    # ------------------------------------------------------------------ deciding
    def _check_fitted(self) -> None:
        if not hasattr(self, "solution_"):
            raise TTamerError("EarlyExitTamer is not fitted; call fit(calibration_trace) first")

    def states(self, trace: Trace) -> np.ndarray:
        """``[N, L]`` states of ``trace``'s examples under the fitted encoder."""
        self._check_fitted()
        return self.encoder_.transform(trace)

    def set_lam(self, lam: float) -> "EarlyExitTamer":
        """Re-solve the fitted instance at another ``λ`` (no refitting)."""
        self._check_fitted()
        self.lam = float(lam)
        self.solution_ = solve(self.instance_, self.lam, recall=self.recall)
        return self

    def decide(self, trace: Trace) -> ExitDecisions:
        """Run the fitted policy on every example of ``trace``: exit answered with, last exit
        consulted, cost paid."""
        self._check_fitted()
        return run_policy(self.solution_, self.states(trace), trace, name=self.name)

    def decide_sweep(self, trace: Trace, lams: Sequence[float] | None = None) -> ExitDecisions:
        """:meth:`decide` for every ``λ`` in ``lams`` (default :func:`lam_grid`): arrays ``[P, N]``."""
        self._check_fitted()
        lams = lam_grid() if lams is None else np.asarray(lams, dtype=float)
        st = self.states(trace)
        decs = [run_policy(solve(self.instance_, lam, recall=self.recall), st, trace) for lam in lams]
        return _stack(decs, lams, self.name)

    @property
    def name(self) -> str:
        return "ttamer" if self.recall else "no-recall"

    def __repr__(self) -> str:
        fitted = f", fitted: {self.spec_.describe()}, α={self.smoothing_:g}" if hasattr(self, "spec_") else ""
        return (f"EarlyExitTamer(lam={self.lam:g}, recall={self.recall}, loss={self.loss!r}, "
                f"state={self.state}{fitted})")
