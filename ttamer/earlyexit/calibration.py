"""From a trace to a chain instance, and T-Tamer on held-out examples (the book's chapter *Early exit on real models*).

**States.** The state ``s_i`` of exit ``i`` is computed from what is observable once exit
``i`` has run (:class:`StateSpec`); its axes are combined into one index (product state):

* a quantile bin of a confidence feature ``f_i`` (default the max-probability
  ``max_c p_i(c)``; also ``"entropy"``, ``"margin"`` = top-1 minus top-2, or ``"learned"`` =
  a logistic model of P(exit ``i`` right | history features of exits ``0..i``), see
  :func:`history_features`): ``K`` bins with edges at the ``1/K, …, (K−1)/K`` quantiles of
  ``f_i`` on the calibration examples (duplicate edges merged, so exit ``i`` may have fewer
  than ``K`` bins);
  ``"posterior"`` = the largest fitted P(exit ``j`` right | exits ``0..i``) over ``j ≤ i``, in
  which case node ``i`` answers with that exit ``a_i`` (:func:`posterior_answers`);
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
by weighted isotonic regression (:func:`monotone_losses`), which removes the noise of small
bins. **Costs** ``c_i`` =
mean measured cost of exit ``i``, divided by the full model's mean cost
(``normalize_cost=True``) so that ``λ`` weighs an error rate against a fraction of the full
model.

:class:`EarlyExitTamer` builds this chain, solves it with :func:`ttamer.solve` (recall: the
index strategy; no recall: the DP), and runs the *same* policy object on test examples
through :meth:`~ttamer.core.policy.Policy.rollout_known` (the step loop of
:func:`ttamer.core.policy.rollout` with the states read off the trace).

**Recall answer rule.** T-Tamer answers with the consulted exit of least ``ℓ_v(s_v)``, which
is optimal when ``wrong_v ⊥ s_k | s_v`` for later exits ``k`` (the Markov property). Real
networks violate this strongly -- a later exit that disagrees makes an earlier one likely
wrong (measured by :func:`ttamer.earlyexit.evaluation.markov_violation`) -- so the rule is
over-confident in earlier exits. The default ``answer_rule="pairwise"``
(:class:`PairwiseAnswer`) answers instead with the consulted exit of least
``P̂(wrong_v | s_v, s_last)``; under the Markov property ``P(wrong_v | s_v, s_last) = ℓ_v(s_v)``
and the two rules coincide (up to estimation noise).

Any of ``K``, ``agreement``, ``feature``, ``loss``,
``smoothing``, ``monotone``, ``answer_rule`` may be ``"auto"`` (defaults: ``K``, ``agreement``,
``feature`` and ``loss``):
:meth:`EarlyExitTamer.fit` then picks the configuration by ``cv_folds``-fold
cross-validation inside the calibration examples, maximising the normalised area under the
held-out accuracy–cost frontier of a ``λ`` sweep. The test examples are never used.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, replace
from typing import Callable, Sequence

import numpy as np

from .baselines import agreement_run_length
from .base import BaseTamer
from ..core.errors import TraceError, TTamerError
from ..core.instance import Instance
from ..solvers.solve import Solution, solve
from .traces import ExitDecisions, Trace, target_labels
from ..core.validate import check_bool, check_int, check_lam, check_seed

FEATURES = ("max_prob", "entropy", "margin", "learned", "posterior")
LOSSES = ("label", "final")
#: Candidates tried for ``K="auto"`` (those leaving < ``MIN_PER_STATE`` examples per state dropped).
K_GRID = (4, 8, 16, 32)
FEATURE_GRID = ("max_prob", "learned")
AGREEMENT_GRID = (0, 1)
SMOOTHING_GRID = (0.5, 2.0, 8.0)
#: ``K="auto"`` keeps candidates with at least this many training examples per state on average.
MIN_PER_STATE = 8
#: ``"auto"`` needs at least this many calibration examples per cross-validation fold.
MIN_CV_EXAMPLES = 20
#: Cross-validation scores are computed on at most this many calibration examples.
MAX_CV_EXAMPLES = 10000
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
    ``"entropy"``, ``"margin"``, ``"learned"``, ``"posterior"`` or ``"auto"`` (cross-validated
    over ``FEATURE_GRID``); ``agreement`` -- cap ``r`` on the run of consecutive
    agreeing predictions (``0``/``False``: off, ``1``/``True``: agrees with previous exit, or
    ``"auto"``); ``entropy_bins`` -- extra entropy bins (``0``: off).
    """

    K: int | str = AUTO
    feature: str = "max_prob"
    agreement: int | bool | str = AUTO
    entropy_bins: int = 0
    prospect_bins: int = 0

    def __post_init__(self) -> None:
        if self.K != AUTO and (isinstance(self.K, bool) or not isinstance(self.K, (int, np.integer)) or self.K < 1):
            raise TTamerError(f"StateSpec.K must be a positive integer or 'auto', got {self.K!r}")
        if self.feature != AUTO and self.feature not in FEATURES:
            raise TTamerError(f"StateSpec.feature must be one of {FEATURES} or 'auto', got {self.feature!r}")
        ag = self.agreement
        if ag != AUTO and not (isinstance(ag, (bool, int, np.integer)) and int(ag) >= 0):
            raise TTamerError(f"StateSpec.agreement must be a bool, an int >= 0 or 'auto', got {ag!r}")
        for field in ("entropy_bins", "prospect_bins"):
            v = getattr(self, field)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 0:
                raise TTamerError(f"StateSpec.{field} must be an int >= 0, got {v!r}")

    @property
    def is_concrete(self) -> bool:
        return AUTO not in (self.K, self.agreement, self.feature)

    @property
    def agreement_cap(self) -> int:
        return int(self.agreement)

    def describe(self) -> str:
        parts = [f"{self.K} {self.feature} bins"]
        if self.entropy_bins:
            parts.append(f"{self.entropy_bins} entropy bins")
        if self.prospect_bins:
            parts.append(f"{self.prospect_bins} prospect bins")
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
    predicts (PABEE's patience counter), capped at ``cap`` (0 at exit 0)."""
    return np.minimum(agreement_run_length(pred), cap)


def _quantile_edges(x: np.ndarray, k: int) -> np.ndarray:
    """Interior edges at the ``1/k..(k−1)/k`` quantiles, duplicates removed."""
    if k <= 1:
        return np.zeros(0)
    e = np.unique(np.quantile(x, np.arange(1, k) / k))
    # an edge equal to the maximum would leave an empty top bin
    return e[e < x.max()] if len(e) else e


def history_features(trace: Trace) -> np.ndarray:
    """``[N, L, F]`` features observable once exit ``i`` has run, for ``feature="learned"``:
    a bias, exit ``i``'s log-odds of max-probability, top-2 margin and normalised entropy,
    the mean log-odds of the earlier exits, the share of earlier exits predicting exit
    ``i``'s class and the run of agreeing predictions just before ``i`` (over ``i``)."""
    n, L = trace.n_examples, trace.n_exits
    mp = np.clip(trace.max_prob, 1e-6, 1 - 1e-6)
    lo = np.log(mp) - np.log1p(-mp)
    pred = trace.predictions
    prev_lo = np.zeros((n, L))
    share = np.zeros((n, L))
    for i in range(1, L):
        prev_lo[:, i] = lo[:, :i].mean(axis=1)
        share[:, i] = (pred[:, :i] == pred[:, i : i + 1]).mean(axis=1)
    run = agreement_run_length(pred) / np.maximum(np.arange(L), 1)[None, :]
    feats = [np.ones((n, L)), lo, confidence_feature(trace, "margin"),
             trace.entropy / np.log(trace.n_classes), prev_lo, share, run]
    return np.stack(feats, axis=2)


def fit_logistic(x: np.ndarray, y: np.ndarray, ridge: float = 1e-2, iters: int = 30) -> np.ndarray:
    """Ridge-penalised logistic regression by Newton's method: ``w`` minimising
    ``−Σ [y log σ(xw) + (1−y) log(1−σ(xw))] + ridge·n·|w_{1:}|²/2`` (bias unpenalised)."""
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


def _logistic_models(x: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-exit logistic models of ``target [N, L]`` on ``x [N, L, F]``: (weights ``[L, F]``,
    feature scale ``[F]``)."""
    scale = np.maximum(x.reshape(-1, x.shape[2]).std(axis=0), 1e-9)
    scale[0] = 1.0
    w = np.stack([fit_logistic(x[:, i] / scale, target[:, i]) for i in range(x.shape[1])])
    return w, scale


def _predict(x: np.ndarray, w: np.ndarray, scale: np.ndarray) -> np.ndarray:
    z = np.einsum("nlf,lf->nl", x / scale, w)
    return 1.0 / (1.0 + np.exp(-np.clip(z, -30, 30)))


def pair_features(trace: Trace, i: int) -> np.ndarray:
    """``[N, i+1, F]`` features, observable once exit ``i`` has run, of the hypothesis
    "exit ``j ≤ i``'s prediction is right": a bias, exit ``j``'s max-probability log-odds,
    exit ``i``'s, the share of exits ``0..i`` predicting exit ``j``'s class, the log-odds of
    the running ensemble ``p̄_i(ĉ_j) = mean_{k≤i} p_k(ĉ_j)`` of that class, and whether
    ``j = i``."""
    probs = trace.probs[:, : i + 1].astype(np.float64)  # [N, i+1, C]
    pred = trace.predictions[:, : i + 1]
    mp = np.clip(trace.max_prob[:, : i + 1], 1e-6, 1 - 1e-6)
    lo = np.log(mp) - np.log1p(-mp)
    ens = probs.mean(axis=1)  # [N, C]
    ens_j = np.clip(np.take_along_axis(ens, pred, axis=1), 1e-6, 1 - 1e-6)  # [N, i+1]
    share = (pred[:, :, None] == pred[:, None, :]).mean(axis=1)  # [N, i+1]: share of k predicting ĉ_j
    n = trace.n_examples
    is_last = np.zeros((n, i + 1))
    is_last[:, i] = 1.0
    feats = [np.ones((n, i + 1)), lo, np.repeat(lo[:, i : i + 1], i + 1, 1), share,
             np.log(ens_j) - np.log1p(-ens_j), is_last]
    return np.stack(feats, axis=2)


def _posterior_models(trace: Trace, wrong: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per exit ``i`` a logistic model of P(exit ``j`` right | history ``0..i``), ``j ≤ i``,
    fitted on all pairs ``(example, j)`` (``wrong [N, L]`` 0/1 losses)."""
    out = []
    for i in range(trace.n_exits):
        x = pair_features(trace, i).reshape(-1, 6)
        y = 1.0 - wrong[:, : i + 1].reshape(-1)
        sd = x.std(axis=0)
        scale = np.where(sd > 1e-9, sd, np.inf)  # constant columns (e.g. at exit 0) drop out
        scale[0] = 1.0
        out.append((fit_logistic(x / scale, y), scale))
    return out


def posterior_answers(trace: Trace, models: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """``(q [N, L], a [N, L])``: after exit ``i``, the exit ``a_i ≤ i`` whose prediction is
    most probably right given exits ``0..i`` (the *posterior answer*) and that probability
    ``q_i = max_{j≤i} P̂(exit j right | history 0..i)``."""
    n, L = trace.n_examples, trace.n_exits
    q, a = np.zeros((n, L)), np.zeros((n, L), dtype=np.int64)
    for i, (w, scale) in enumerate(models):
        z = pair_features(trace, i) @ (w / scale)
        p = 1.0 / (1.0 + np.exp(-np.clip(z, -30, 30)))
        a[:, i] = p.argmax(axis=1)
        q[:, i] = p.max(axis=1)
    return q, a


@dataclass
class StateEncoder:
    """A fitted :class:`StateSpec`: per-exit bin edges of each axis of the state (the
    confidence feature, then optionally entropy and prospect), and the logistic models of
    the learned features. ``transform`` maps a trace to ``[N, L]`` int64 states with
    ``0 ≤ s_i < n_states[i]``; the axes are combined in mixed radix, agreement last."""

    spec: StateSpec
    edges: dict[str, list[np.ndarray]]
    models: dict[str, tuple[np.ndarray, np.ndarray]]

    @classmethod
    def fit(cls, spec: StateSpec, trace: Trace, loss: str = "label", target: str = "label") -> "StateEncoder":
        """Fit on ``trace``: the learned feature predicts that exit ``i`` is right in the
        sense of ``loss``; the prospect, that the final exit is right against ``target``."""
        if not spec.is_concrete:
            raise TTamerError(f"StateEncoder.fit needs a concrete StateSpec (no 'auto'), got {spec}")
        enc = cls(spec, {}, {})
        if spec.feature == "posterior":
            enc.models["posterior"] = _posterior_models(trace, exit_losses(trace, loss))
        if spec.feature == "learned" or spec.prospect_bins:
            x = history_features(trace)
            if spec.feature == "learned":
                enc.models["feature"] = _logistic_models(x, 1.0 - exit_losses(trace, loss))
            if spec.prospect_bins:
                final_right = (trace.predictions[:, -1] == target_labels(trace, target)).astype(float)
                enc.models["prospect"] = _logistic_models(x, np.repeat(final_right[:, None], trace.n_exits, 1))
        vals = enc.axis_values(trace, x if spec.feature == "learned" or spec.prospect_bins else None)
        enc.edges = {name: [_quantile_edges(v[:, i], k) for i in range(trace.n_exits)]
                     for name, (v, k) in vals.items()}
        return enc

    def axis_values(self, trace: Trace, x: np.ndarray | None = None) -> dict[str, tuple[np.ndarray, int]]:
        """``{axis: ([N, L] values, number of bins)}`` for every axis of the state."""
        spec = self.spec
        if x is None and (spec.feature == "learned" or spec.prospect_bins):
            x = history_features(trace)
        if spec.feature == "posterior":
            f = posterior_answers(trace, self.models["posterior"])[0]
        elif spec.feature == "learned":
            f = _predict(x, *self.models["feature"])
        else:
            f = confidence_feature(trace, spec.feature)
        out = {"feature": (f, int(spec.K))}
        if spec.entropy_bins:
            out["entropy"] = (trace.entropy, int(spec.entropy_bins))
        if spec.prospect_bins:
            out["prospect"] = (_predict(x, *self.models["prospect"]), int(spec.prospect_bins))
        return out

    def feature(self, trace: Trace) -> np.ndarray:
        """``[N, L]`` the binned confidence feature (for ``"learned"``: the fitted P(exit right))."""
        return self.axis_values(trace)["feature"][0]

    def answers(self, trace: Trace) -> np.ndarray:
        """``[N, L]``: the exit whose prediction node ``i`` answers with -- ``i`` itself, or for
        ``feature="posterior"`` the posterior answer ``a_i`` (:func:`posterior_answers`)."""
        if self.spec.feature == "posterior":
            return posterior_answers(trace, self.models["posterior"])[1]
        return np.broadcast_to(np.arange(trace.n_exits), (trace.n_examples, trace.n_exits)).copy()

    @property
    def n_exits(self) -> int:
        return len(self.edges["feature"])

    @property
    def base_states(self) -> np.ndarray:
        """States from the binned axes alone, per exit."""
        k = np.ones(self.n_exits, dtype=np.int64)
        for e in self.edges.values():
            k *= np.array([len(x) + 1 for x in e])
        return k

    @property
    def n_states(self) -> np.ndarray:
        """``K_i`` per exit (agreement levels multiply exits ``i ≥ 1``)."""
        k = self.base_states.copy()
        k[1:] *= self.spec.agreement_cap + 1
        return k

    def layout(self, i: int) -> tuple[int, int, int]:
        """Exit ``i``'s states as ``(agreement levels, feature bins, other axes)``: state
        ``s = a·(F·R) + f·R + r``."""
        f = len(self.edges["feature"][i]) + 1
        a = 1 if i == 0 else self.spec.agreement_cap + 1
        return a, f, int(self.base_states[i]) // f

    @property
    def loss_decreasing(self) -> bool:
        """Whether errors fall as the binned feature grows (not so for entropy)."""
        return self.spec.feature != "entropy"

    def transform(self, trace: Trace) -> np.ndarray:
        if trace.n_exits != self.n_exits:
            raise TraceError(f"trace has {trace.n_exits} exits; the encoder was fitted on {self.n_exits}")
        s = np.zeros((trace.n_examples, self.n_exits), dtype=np.int64)
        for name, (v, _) in self.axis_values(trace).items():
            e = self.edges[name]
            b = np.stack([np.searchsorted(e[i], v[:, i], side="right") for i in range(self.n_exits)], 1)
            s = s * np.array([len(x) + 1 for x in e]) + b
        cap = self.spec.agreement_cap
        if cap:
            s = s + self.base_states * agreement_run(trace.predictions, cap)
        return s


# ---------------------------------------------------------------------------------------------
def exit_losses(trace: Trace, loss: str) -> np.ndarray:
    """``[N, L]`` float64 0/1: exit ``i`` is wrong (``"label"``) or disagrees with the final
    exit (``"final"``)."""
    if loss not in LOSSES:
        raise TTamerError(f"loss must be one of {LOSSES}, got {loss!r}")
    truth = target_labels(trace, loss)
    return (trace.predictions != truth[:, None]).astype(np.float64)


def isotonic(y: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Weighted least-squares non-increasing fit of ``y`` (pool-adjacent-violators)."""
    vals: list[float] = []
    wts: list[float] = []
    sizes: list[int] = []
    for yi, wi in zip(y.tolist(), w.tolist()):
        vals.append(yi)
        wts.append(wi)
        sizes.append(1)
        while len(vals) > 1 and vals[-2] < vals[-1]:
            wsum = wts[-2] + wts[-1]
            v = (vals[-2] * wts[-2] + vals[-1] * wts[-1]) / wsum
            size = sizes[-2] + sizes[-1]
            del vals[-1], wts[-1], sizes[-1]
            vals[-1], wts[-1], sizes[-1] = v, wsum, size
    return np.repeat(vals, sizes)


def monotone_losses(ell: np.ndarray, weight: np.ndarray, layout: tuple[int, int, int],
                    decreasing: bool) -> np.ndarray:
    """Make ``ℓ`` monotone along the confidence-bin axis: ``ell`` viewed as ``[A, F, R]``
    (agreement level, feature bin, other axes) is fitted by weighted isotonic regression along
    ``F`` for every ``(a, r)``, non-increasing (``decreasing``: more confidence, fewer
    errors) or non-decreasing (entropy)."""
    A, F, R = layout
    e, wt = ell.reshape(A, F, R), weight.reshape(A, F, R)
    out = np.empty_like(e)
    for a in range(A):
        for r in range(R):
            col, cw = e[a, :, r], wt[a, :, r]
            out[a, :, r] = isotonic(col, cw) if decreasing else isotonic(col[::-1], cw[::-1])[::-1]
    return out.reshape(-1)


def build_instance(states: np.ndarray, losses: np.ndarray, n_states: Sequence[int], costs: np.ndarray,
                   smoothing: float, names: Sequence[str] | None = None, name: str = "",
                   layouts: Sequence[tuple[int, int, int]] | None = None, decreasing: bool = True) -> Instance:
    """The chain instance of the book's chapter *Early exit on real models* from calibration ``states [N, L]``, 0/1 ``losses
    [N, L]`` and edge ``costs [L]``, smoothed with strength ``α = smoothing`` (module
    docstring). With ``layouts`` (per exit, see :func:`monotone_losses`) the smoothed
    losses are then made monotone in the confidence bin (weights ``n_i(s) + α``). Loops over
    exits only."""
    if not (np.isfinite(smoothing) and smoothing > 0):
        raise TTamerError(f"smoothing must be > 0 (it defines empty bins), got {smoothing!r}")
    n, L = states.shape
    a = float(smoothing)
    K = [int(k) for k in n_states]
    ell, mats = [], []
    for i in range(L):
        cnt = np.bincount(states[:, i], minlength=K[i]).astype(float)
        err = np.bincount(states[:, i], weights=losses[:, i], minlength=K[i])
        li = (err + a * losses[:, i].mean()) / (cnt + a)
        if layouts is not None:
            li = monotone_losses(li, cnt + a, layouts[i], decreasing)
        ell.append(li)
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
    answer_table: "PairwiseAnswer | None" = None


ANSWER_RULES = ("index", "pairwise")
#: Folds of the cross-validated log-loss test that decides, per pair of exits, whether the
#: pairwise answer rule uses that pair's table (:meth:`PairwiseAnswer.fit`).
PAIRWISE_FOLDS = 5


def _pair_table(sv: np.ndarray, sj: np.ndarray, wrong_v: np.ndarray, prior: np.ndarray, kv: int, kj: int,
                smoothing: float) -> np.ndarray:
    """``[K_v, K_j]``: ``(e(s_v, s_j) + α prior(s_v)) / (n(s_v, s_j) + α)``."""
    key = sv * kj + sj
    cnt = np.bincount(key, minlength=kv * kj).reshape(kv, kj)
    err = np.bincount(key, weights=wrong_v, minlength=kv * kj).reshape(kv, kj)
    return (err + smoothing * prior[:, None]) / (cnt + smoothing)


def _log_loss(p: np.ndarray, y: np.ndarray) -> float:
    p = np.clip(p, 1e-4, 1 - 1e-4)
    return float(-(y * np.log(p) + (1 - y) * np.log1p(-p)).sum())


@dataclass
class PairwiseAnswer:
    """The *pairwise* recall answer rule. T-Tamer's rule (``"index"``) answers with the
    consulted exit of least ``ℓ_v(s_v)``, which is right only under the Markov property
    ``wrong_v ⊥ s_k | s_v`` for later ``k``; on real networks a later exit that disagrees
    makes an earlier one likely wrong, so that rule is over-confident in earlier exits.
    This rule re-estimates each consulted exit's loss given also the last consulted exit's
    state,

        r_v = P̂(wrong_v | s_v, s_last) = (e_{v,last}(s_v, s_last) + α ℓ_v(s_v)) / (n_{v,last}(s_v, s_last) + α),

    (calibration counts, shrunk toward ``ℓ_v(s_v)`` with strength ``α``; ``r_last = ℓ_last``)
    and answers with the consulted exit of least ``r_v`` (ties: the later exit). A pair
    ``(v, last)`` whose table does not beat ``ℓ_v(s_v)`` in cross-validated log-loss on the
    calibration examples uses ``r_v = ℓ_v(s_v)`` (``kept[(v, j)]`` records the test). The
    stopping decisions stay the index policy's. ``tables[(v, j)]`` is ``r`` as a
    ``[K_v, K_j]`` array."""

    tables: dict[tuple[int, int], np.ndarray]
    losses: list[np.ndarray]
    kept: dict[tuple[int, int], bool] | None = None

    @classmethod
    def fit(cls, states: np.ndarray, wrong: np.ndarray, losses: Sequence[np.ndarray], n_states: Sequence[int],
            smoothing: float, folds: int = PAIRWISE_FOLDS) -> "PairwiseAnswer":
        """Count tables on calibration ``states``/``wrong`` ``[N, L]``. A pair ``(v, j)`` keeps
        its table only if it predicts ``wrong_v`` better than ``ℓ_v(s_v)`` alone in
        ``folds``-fold cross-validation (log-loss); otherwise ``r_v = ℓ_v(s_v)`` there, so
        pairs where later evidence is noise fall back to the index rule."""
        n, L = states.shape
        fold = np.arange(n) % folds
        tables, kept = {}, {}
        for j in range(1, L):
            for v in range(j):
                tables[(v, j)] = _pair_table(states[:, v], states[:, j], wrong[:, v], np.asarray(losses[v]),
                                             int(n_states[v]), int(n_states[j]), smoothing)
                gain = 0.0
                for f in range(folds):
                    tr, te = fold != f, fold == f
                    cnt = np.bincount(states[tr, v], minlength=n_states[v]).astype(float)
                    err = np.bincount(states[tr, v], weights=wrong[tr, v], minlength=n_states[v])
                    marg = (err + smoothing * wrong[tr, v].mean()) / (cnt + smoothing)
                    pair = _pair_table(states[tr, v], states[tr, j], wrong[tr, v], marg, int(n_states[v]),
                                       int(n_states[j]), smoothing)
                    y = wrong[te, v]
                    gain += _log_loss(marg[states[te, v]], y) - _log_loss(pair[states[te, v], states[te, j]], y)
                kept[(v, j)] = gain > 0
                if not kept[(v, j)]:
                    tables[(v, j)] = np.repeat(np.asarray(losses[v])[:, None], int(n_states[j]), axis=1)
        return cls(tables, [np.asarray(x) for x in losses], kept)

    def answer(self, states: np.ndarray, last: np.ndarray) -> np.ndarray:
        """``[N]`` node to answer with, for ``states [N, L]`` (−1 = not consulted) and the
        last consulted node ``last [N]``. Loops over pairs of exits only."""
        n, L = states.shape
        rows = np.arange(n)
        s_last = states[rows, last]
        r = np.full((n, L), np.inf)
        for v in range(L):
            cons = (states[:, v] >= 0) & (v <= last)
            if not cons.any():
                continue
            sv = np.maximum(states[:, v], 0)
            val = np.full(n, np.inf)
            for j in range(v, L):
                m = cons & (last == j)
                if not m.any():
                    continue
                val[m] = self.losses[v][sv[m]] if j == v else self.tables[(v, j)][sv[m], s_last[m]]
            r[:, v] = val
        # least r; ties go to the later exit
        return L - 1 - np.argmin(r[:, ::-1], axis=1)


def _fit_concrete(trace: Trace, spec: StateSpec, smoothing: float, loss: str, normalize_cost: bool,
                  target: str = "label", monotone: bool = False) -> _Fitted:
    enc = StateEncoder.fit(spec, trace, loss, target)
    costs = trace.mean_cost
    if normalize_cost:
        total = costs.sum()
        if total <= 0:
            raise TraceError("key 'cost': the full model's mean cost is 0; cannot normalise")
        costs = costs / total
    name = f"{trace.meta.get('model', '?')} on {trace.meta.get('dataset', '?')}: {spec.describe()}"
    layouts = [enc.layout(i) for i in range(trace.n_exits)] if monotone else None
    wrong = exit_losses(trace, loss)
    if spec.feature == "posterior":  # node i answers with exit a_i: its loss is a_i's error
        wrong = np.take_along_axis(wrong, enc.answers(trace), axis=1)
    inst = build_instance(enc.transform(trace), wrong, enc.n_states, costs,
                          smoothing, names=trace.exit_names, name=name, layouts=layouts,
                          decreasing=enc.loss_decreasing)
    table = PairwiseAnswer.fit(enc.transform(trace), wrong, inst.losses, enc.n_states, float(smoothing))
    return _Fitted(spec, float(smoothing), enc, inst, table)


def run_policy(solution: Solution, states: np.ndarray, trace: Trace, name: str = "",
               answers: np.ndarray | None = None, answer_rule: PairwiseAnswer | None = None) -> ExitDecisions:
    """Run ``solution.policy`` on the examples of ``trace`` (states ``[N, L]``) through
    :meth:`~ttamer.core.policy.Policy.rollout_known` (:func:`ttamer.core.policy.rollout` with each
    example's states read off ``states``; one vectorised pass on chains). Returns the exit answered with, the last exit consulted and the cost.
    ``answers [N, L]`` (default: node ``i`` answers with exit ``i``) maps the node the policy
    answers with to the exit whose prediction is returned (:meth:`StateEncoder.answers`)."""
    policy = solution.policy
    ro = policy.rollout_known(states)
    answer = policy.answer(ro.states, ro.last)
    if answer_rule is not None and solution.recall:
        answer = answer_rule.answer(ro.states, ro.last)
    if (answer < 0).any():
        raise TTamerError("the policy answered with the fallback; early-exit instances have none")
    consulted = ro.states >= 0
    if not np.array_equal(consulted, np.arange(trace.n_exits)[None, :] <= ro.last[:, None]):
        raise TTamerError("the policy did not consult a prefix of the exits")  # chain invariant
    if answers is not None:
        answer = answers[np.arange(len(states)), answer]
    return ExitDecisions.from_last(trace, answer, ro.last, name=name)


def _stack(decs: list[ExitDecisions], params: Sequence[float], name: str) -> ExitDecisions:
    return ExitDecisions(np.stack([d.answer for d in decs]), np.stack([d.last for d in decs]),
                         np.stack([d.cost for d in decs]), np.asarray(params, dtype=float), name)


def refined_sweep(run: Callable[[float], ExitDecisions], trace: Trace, lams: Sequence[float],
                  refine: bool = True, max_gap: float = 0.01, max_points: int = 160,
                  name: str = "") -> ExitDecisions:
    """``run(λ)`` (the decisions on ``trace`` of the policy fitted for ``λ``) for every ``λ``
    in ``lams``: arrays ``[P, N]``, ``params`` = the ``λ`` values, increasing.

    With ``refine``, ``λ`` values are bisected (in ``log λ/(1−λ)``) wherever two neighbours'
    mean costs on ``trace`` differ by more than ``max_gap`` (a fraction of the full cost), up
    to ``max_points`` values in all. Only costs are read, never labels.
    """
    scale = trace.full_cost.mean()
    decs = {float(lam): run(float(lam)) for lam in lams}
    while refine and len(decs) < max_points:
        keys = np.array(sorted(decs))
        cost = np.array([decs[k].cost.mean() / scale for k in keys])
        logit = np.log(keys) - np.log1p(-np.minimum(keys, 1 - 1e-15))
        gaps = np.flatnonzero((np.abs(np.diff(cost)) > max_gap) & (np.diff(logit) > 1e-3))
        if len(gaps) == 0:
            break
        for g in gaps[: max_points - len(decs)]:
            lam = float(1.0 / (1.0 + np.exp(-0.5 * (logit[g] + logit[g + 1]))))
            decs[lam] = run(lam)
    keys = sorted(decs)
    return _stack([decs[k] for k in keys], keys, name)


def sweep(instance: Instance, recall: bool, states: np.ndarray, trace: Trace, lams: Sequence[float],
          refine: bool = True, max_gap: float = 0.01, max_points: int = 160, name: str = "",
          answers: np.ndarray | None = None, answer_rule: PairwiseAnswer | None = None) -> ExitDecisions:
    """Solve ``instance`` for every ``λ`` in ``lams`` and run each policy on ``trace``
    (states ``[N, L]``): :func:`refined_sweep` of :func:`run_policy`."""
    return refined_sweep(
        lambda lam: run_policy(solve(instance, lam, recall=recall), states, trace, answers=answers,
                               answer_rule=answer_rule),
        trace, lams, refine, max_gap, max_points, name)


def heldout_auc(decisions: ExitDecisions, test: Trace, target: str = "label") -> float:
    """Normalised area under the accuracy–cost frontier of a sweep on held-out examples,
    over the cost range from exit 0 alone to the full model: the cross-validation score."""
    from .metrics import frontier_auc, pareto_frontier

    scale = test.full_cost.mean()
    front = pareto_frontier(decisions.cost.mean(axis=1) / scale, decisions.correct(test, target).mean(axis=1))
    return frontier_auc(front, test.cumulative_cost[:, 0].mean() / scale, 1.0)


def choose_by_cv(trace: Trace, candidates: list, score: Callable, folds: int, options: str) -> tuple:
    """``(best, [(candidate, score), ...])``: the candidate of largest ``score(trace,
    candidate)`` (ties: the first listed); no scoring (and an empty list) when there is only
    one. Raises if ``trace`` is too small for ``folds``-fold cross-validation, naming the
    ``options`` to give explicitly instead. On a trace of more than :data:`MAX_CV_EXAMPLES`
    examples the scores are computed on a seeded sample of that many."""
    if len(candidates) == 1:
        return candidates[0], []
    if trace.n_examples < MIN_CV_EXAMPLES * folds:
        raise TTamerError(
            f"calibration trace has {trace.n_examples} examples: too few to choose the 'auto' options by "
            f"{folds}-fold cross-validation (need {MIN_CV_EXAMPLES * folds}); give {options} explicitly")
    if trace.n_examples > MAX_CV_EXAMPLES:
        pick = np.random.default_rng(0).choice(trace.n_examples, MAX_CV_EXAMPLES, replace=False)
        trace = trace.subset(np.sort(pick))
    scores = [score(trace, c) for c in candidates]
    return candidates[int(np.argmax(scores))], list(zip(candidates, scores))


def cv_folds_of(n: int, folds: int, seed: int) -> np.ndarray:
    """``[n]`` fold index of each example (a seeded permutation, balanced)."""
    return np.random.default_rng(seed).permutation(n) % folds


# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Candidate:
    """One concrete configuration tried by the cross-validation of :meth:`EarlyExitTamer.fit`."""

    spec: StateSpec
    smoothing: float
    loss: str
    monotone: bool = False
    answer_rule: str = "index"

    def describe(self) -> str:
        mono = ", monotone losses" if self.monotone else ""
        rule = ", pairwise answer rule" if self.answer_rule == "pairwise" else ""
        return f"{self.spec.describe()}, loss={self.loss}, α={self.smoothing:g}{mono}{rule}"


class EarlyExitTamer(BaseTamer):
    """T-Tamer for early exit, scikit-learn style (the book's chapter *Early exit on real models*).

    ``EarlyExitTamer(lam=0.95, state=StateSpec(...), recall=True, loss="auto",
    answer_rule="pairwise")``; the default state is ``StateSpec(feature="auto")`` (``K``,
    agreement and feature chosen by cross-validation). With recall, ``answer_rule`` picks the
    consulted exit answered with: ``"index"`` -- T-Tamer's ``argmin ℓ_v(s_v)``, or
    ``"pairwise"`` (default) -- :class:`PairwiseAnswer`, which corrects the rule for the
    measured violation of the Markov property (:func:`ttamer.earlyexit.evaluation.markov_violation`);
    the stopping decisions are the index policy's either way.
    :meth:`fit` (calibration trace) sets ``spec_``, ``smoothing_``, ``loss_``, ``encoder_``,
    ``instance_``, ``solution_`` and ``cv_scores_`` (list of ``(Candidate, score)``, empty when
    nothing was ``"auto"``); :meth:`decide` (test trace) returns
    :class:`~ttamer.earlyexit.traces.ExitDecisions`; :meth:`decide_sweep` re-solves the same instance
    for many ``λ``.

    ``"auto"`` fields (``state.K``, ``state.agreement``, ``state.feature``, ``loss``,
    ``smoothing``, ``monotone``, ``answer_rule``) are chosen by ``cv_folds``-fold cross-validation inside the calibration
    examples: each candidate is fitted on the other folds, swept over ``cv_lams`` (refined)
    on the held-out fold, and scored by the mean normalised area under the held-out
    accuracy–cost frontier (accuracy against ``target``), over the cost range from exit 0
    alone to the full model. Ties go to the candidate listed first (fewer states).
    """

    def __init__(self, lam: float = 0.95, state: StateSpec | None = None, recall: bool = True,
                 loss: str = AUTO, smoothing: float | str = 2.0, monotone: bool | str = False,
                 answer_rule: str = "pairwise", normalize_cost: bool = True,
                 cv_folds: int = 3, cv_lams: Sequence[float] | None = None, target: str = "label",
                 seed: int = 0) -> None:
        self.lam = lam
        self.state = state
        self.recall = recall
        self.loss = loss
        self.smoothing = smoothing
        self.monotone = monotone
        self.answer_rule = answer_rule
        self.normalize_cost = normalize_cost
        self.cv_folds = cv_folds
        self.cv_lams = cv_lams
        self.target = target
        self.seed = seed

    def _validated(self) -> None:
        """Check the constructor's parameters (called by :meth:`fit`; nothing is converted)."""
        check_lam(self.lam)
        check_bool(self.recall, "recall")
        check_bool(self.normalize_cost, "normalize_cost")
        if self.state is not None and not isinstance(self.state, StateSpec):
            raise TTamerError(f"state must be a StateSpec or None, got {type(self.state).__name__}")
        if self.loss != AUTO and self.loss not in LOSSES:
            raise TTamerError(f"loss must be one of {LOSSES} or 'auto', got {self.loss!r}")
        sm = self.smoothing
        if sm != AUTO and not (isinstance(sm, (int, float)) and not isinstance(sm, bool) and np.isfinite(sm) and sm > 0):
            raise TTamerError(f"smoothing must be > 0 or 'auto', got {sm!r}")
        if self.monotone != AUTO and not isinstance(self.monotone, (bool, np.bool_)):
            raise TTamerError(f"monotone must be True, False or 'auto', got {self.monotone!r}")
        if self.answer_rule != AUTO and self.answer_rule not in ANSWER_RULES:
            raise TTamerError(f"answer_rule must be one of {ANSWER_RULES} or 'auto', got {self.answer_rule!r}")
        check_int(self.cv_folds, "cv_folds", minimum=2)
        check_seed(self.seed)
        if self.target not in LOSSES:
            raise TTamerError(f"target must be one of {LOSSES}, got {self.target!r}")

    @property
    def _spec(self) -> StateSpec:
        return StateSpec(feature=AUTO) if self.state is None else self.state

    @property
    def _cv_lams(self) -> np.ndarray:
        return lam_grid(12) if self.cv_lams is None else np.asarray(self.cv_lams, dtype=float)

    # ------------------------------------------------------------------ fitting
    def candidates(self, n_train: int) -> list[Candidate]:
        """Concrete configurations that the ``"auto"`` fields expand to, simplest first;
        ``K`` values leaving fewer than ``MIN_PER_STATE`` training examples per state are
        dropped (the smallest ``K`` is always kept)."""
        s = self._spec
        ks = [s.K] if s.K != AUTO else list(K_GRID)
        ags = [int(s.agreement)] if s.agreement != AUTO else list(AGREEMENT_GRID)
        feats = [s.feature] if s.feature != AUTO else list(FEATURE_GRID)
        sms = [float(self.smoothing)] if self.smoothing != AUTO else list(SMOOTHING_GRID)
        losses = [self.loss] if self.loss != AUTO else list(LOSSES)
        monos = [bool(self.monotone)] if self.monotone != AUTO else [False, True]
        rules = [self.answer_rule] if self.answer_rule != AUTO else list(ANSWER_RULES)
        if not self.recall:
            rules = rules[:1]
        out = []
        for k, ag, feat, sm, loss, mono, rule in itertools.product(ks, ags, feats, sms, losses, monos, rules):
            states = int(k) * max(s.entropy_bins, 1) * max(s.prospect_bins, 1) * (ag + 1)
            if s.K == AUTO and n_train / states < MIN_PER_STATE and k != min(ks):
                continue
            out.append(Candidate(replace(s, K=int(k), agreement=int(ag), feature=feat), sm, loss, mono, rule))
        return out

    def fit(self, trace: Trace) -> "EarlyExitTamer":
        """Build the chain instance from calibration examples and solve it at ``lam``."""
        self._validated()
        trace.validate()
        cands = self.candidates(int(trace.n_examples * (self.cv_folds - 1) / self.cv_folds))
        best, self.cv_scores_ = choose_by_cv(trace, cands, self._cv_score, self.cv_folds,
                                             "K, agreement, feature, loss and smoothing")
        fitted = _fit_concrete(trace, best.spec, best.smoothing, best.loss, self.normalize_cost, self.target,
                               best.monotone)
        self.spec_, self.smoothing_, self.loss_ = fitted.spec, fitted.smoothing, best.loss
        self.monotone_ = best.monotone
        self.answer_rule_ = best.answer_rule
        self.answer_table_ = fitted.answer_table if best.answer_rule == "pairwise" else None
        self.encoder_, self.instance_ = fitted.encoder, fitted.instance
        self.solution_ = solve(self.instance_, self.lam, recall=self.recall)
        return self

    def _cv_score(self, trace: Trace, cand: Candidate) -> float:
        """Mean over folds of the held-out normalised area under the accuracy–cost frontier."""
        folds = cv_folds_of(trace.n_examples, self.cv_folds, self.seed)
        scores = []
        for f in range(self.cv_folds):
            tr, te = trace.subset(folds != f), trace.subset(folds == f)
            fitted = _fit_concrete(tr, cand.spec, cand.smoothing, cand.loss, self.normalize_cost, self.target,
                                   cand.monotone)
            d = sweep(fitted.instance, self.recall, fitted.encoder.transform(te), te, self._cv_lams,
                      max_gap=0.04, max_points=32, answers=fitted.encoder.answers(te),
                      answer_rule=fitted.answer_table if cand.answer_rule == "pairwise" else None)
            scores.append(heldout_auc(d, te, self.target))
        return float(np.mean(scores))

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
        self.lam = check_lam(lam)
        self.solution_ = solve(self.instance_, self.lam, recall=self.recall)
        return self

    def decide(self, trace: Trace) -> ExitDecisions:
        """Run the fitted policy on every example of ``trace``: exit answered with, last exit
        consulted, cost paid."""
        self._check_fitted()
        return run_policy(self.solution_, self.states(trace), trace, name=self.name,
                          answers=self.encoder_.answers(trace), answer_rule=self.answer_table_)

    def decide_sweep(self, trace: Trace, lams: Sequence[float] | None = None, refine: bool = True,
                     max_gap: float = 0.01, max_points: int = 160) -> ExitDecisions:
        """:meth:`decide` for many ``λ`` (default :func:`lam_grid` with 40 values, refined
        where the mean cost jumps; see :func:`sweep`): arrays ``[P, N]``."""
        self._check_fitted()
        lams = lam_grid(40) if lams is None else np.asarray(lams, dtype=float)
        return sweep(self.instance_, self.recall, self.states(trace), trace, lams, refine, max_gap,
                     max_points, self.name, answers=self.encoder_.answers(trace), answer_rule=self.answer_table_)

    @property
    def name(self) -> str:
        return "ttamer" if self.recall else "no-recall"

    def describe(self) -> str:
        """The fitted configuration in words."""
        self._check_fitted()
        return Candidate(self.spec_, self.smoothing_, self.loss_, self.monotone_, self.answer_rule_).describe()

    def __repr__(self) -> str:
        fitted = f", fitted: {self.describe()}" if hasattr(self, "spec_") else ""
        return (f"EarlyExitTamer(lam={self.lam:g}, recall={self.recall}, loss={self.loss!r}, "
                f"state={self.state}{fitted})")
