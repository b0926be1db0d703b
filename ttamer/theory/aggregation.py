"""State aggregation into ``q`` meta-states per node (the book's chapter *Recall*, the paper's scaling device).

**Clustering.** The states of node ``v`` are grouped into at most ``q`` meta-states
(``labels[v][s]`` = meta-state of ``s``); nodes with ``K_v ≤ q`` keep their states. Methods:

* ``"loss"`` -- sorted-loss merging: sort the states by ``ℓ_v(s)`` and cut the sorted list
  into ``q`` consecutive blocks of equal probability mass ``π_v`` (cut points at the mass
  quantiles ``j/q``; every block keeps at least one state);
* ``"kmeans"`` -- weighted k-means (Lloyd, k-means++ seeding, weights ``π_v(s)``) on the
  feature rows ``[ℓ_v(s) / max ℓ, P_u[s, ·] for every edge out of v]`` -- the loss and where
  the state leads.

**Aggregated instance.** With ``π_v`` the marginal law of ``S_v`` and ``w(s) = π_v(s) / π_v(g)``
the weight of ``s`` inside its group ``g`` (uniform when ``π_v(g) = 0``):

* ``ℓ'_v(g) = Σ_{s ∈ g} w(s) ℓ_v(s)`` (the probability-weighted mean loss);
* ``μ'_v(h) = Σ_{t ∈ h} μ_v(t)``; ``P'_v[g, h] = Σ_{s ∈ g} w(s) Σ_{t ∈ h} P_v[s, t]``.

These keep every marginal: ``π'_v(h) = Σ_{t ∈ h} π_v(t)``. Costs, skips and the fallback are
unchanged.

**Lifting.** A policy of the aggregated instance is run on the original one by showing it the
meta-state of every revealed state (:class:`LiftedPolicy`): a decision taken in a meta-state
applies to all its states. With recall it answers with the consulted model of smallest *true*
loss. The lifted policy is a policy of the original instance, so its exact value (computed by
:func:`~ttamer.core.simulate.evaluate_exactly`) is never below the optimum: the value error is
``≥ 0``, and ``0`` when ``q ≥ max K_v``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..core.errors import TTamerError
from ..core.simulate import evaluate_exactly
from ..core.instance import Instance, check_instance
from ..core.policy import Policy
from ..core.validate import check_choice, check_count, check_numbers, check_real, check_seed, short_repr
from ..solvers.solve import solve
from .synthetic import marginals

#: The ways of merging a node's states (sorted-loss merging, or weighted k-means; module docstring).
METHODS = ("loss", "kmeans")


# ------------------------------------------------------------------ clustering
def loss_quantile_labels(loss: np.ndarray, pi: np.ndarray, q: int) -> np.ndarray:
    """Consecutive blocks of the loss-sorted states with (about) equal mass ``1/q`` each.

    Raises
    ------
    TTamerError
        ``loss`` or ``pi`` is not a 1-D sequence of finite numbers ``>= 0``, their lengths
        differ, or ``q`` is not a positive integer.
    """
    q = check_count(q, "q (meta-states per node)")
    loss, pi = check_numbers(loss, "loss", empty=True), check_numbers(pi, "pi", empty=True)
    if len(loss) != len(pi) or (loss < 0).any() or (pi < 0).any():
        raise TTamerError(f"loss and pi must be non-negative and of the same length, "
                          f"got {len(loss)} and {len(pi)} entries")
    K = len(loss)
    if K <= q:
        return np.arange(K)
    order = np.argsort(loss, kind="stable")
    mass = pi[order] / pi.max() if pi.max() > 0 else pi[order]  # the blocks depend on shares only: no overflow
    total = mass.sum()
    mids = (np.cumsum(mass) - 0.5 * mass) / total if total > 0 else (np.arange(K) + 0.5) / K
    raw = np.searchsorted(mids, np.arange(1, q) / q)  # first sorted position of block j, j = 1..q-1
    cuts = np.empty(q - 1, dtype=np.int64)
    prev = 0
    for j in range(1, q):  # loop over blocks: strictly increasing cuts, room left for later blocks
        prev = cuts[j - 1] = min(max(int(raw[j - 1]), prev + 1), K - q + j)
    block = np.searchsorted(cuts, np.arange(K), side="right")
    labels = np.empty(K, dtype=np.int64)
    labels[order] = block
    return labels


#: Largest ``|x|`` of a k-means feature, so that squared distances of such points stay finite.
MAX_FEATURE = 1e100
#: Largest work of :func:`kmeans_labels` (points × clusters × features × (clusters +
#: iterations): the seeding and the Lloyd steps), refused before it starts.
MAX_KMEANS_WORK = 2_000_000_000


def _kmeans_pp(X: np.ndarray, w: np.ndarray, q: int, rng: np.random.Generator) -> np.ndarray:
    centres = [X[rng.choice(len(X), p=w / w.sum())]]
    for _ in range(1, q):
        d = ((X[:, None, :] - np.array(centres)[None]) ** 2).sum(-1).min(1) * w
        centres.append(X[rng.choice(len(X), p=d / d.sum())] if d.sum() > 0 else X[rng.integers(len(X))])
    return np.array(centres)


def kmeans_labels(X: np.ndarray, w: np.ndarray, q: int, rng: np.random.Generator, iters: int = 50) -> np.ndarray:
    """Weighted Lloyd iterations (k-means++ seeding); ``q`` non-empty clusters when ``K > q``.

    Raises
    ------
    TTamerError
        ``X`` is not a 2-D array of finite numbers ``[K, F]``, ``w`` not ``K`` finite weights
        ``>= 0``, ``q`` not a positive integer, ``rng`` not a ``numpy.random.Generator`` or
        ``iters`` not an integer ``>= 1``.
    """
    X = check_numbers(X, "X", ndim=2, low=-MAX_FEATURE, high=MAX_FEATURE)
    w = check_numbers(w, "w", low=0.0)
    q, iters = check_count(q, "q (clusters)"), check_count(iters, "iters")
    if len(w) != len(X) or not isinstance(rng, np.random.Generator):
        raise TTamerError(f"kmeans_labels needs one weight per row of X ({len(X)}, got {len(w)}) and a "
                          f"numpy.random.Generator rng (got {type(rng).__name__})")
    K = len(X)
    if K <= q:
        return np.arange(K)
    work = K * q * X.shape[1] * (q + iters)
    if work > MAX_KMEANS_WORK:
        raise TTamerError(f"kmeans_labels: {K:,} points of {X.shape[1]:,} features into q={q:,} clusters is about "
                          f"{work:,} operations, above MAX_KMEANS_WORK={MAX_KMEANS_WORK:,}; use a smaller q or the "
                          "'loss' method")
    w = np.maximum(w / w.max() if w.max() > 0 else w, 1e-12)  # relative weights: no overflow in their sums
    C = _kmeans_pp(X, w, q, rng)
    labels = np.zeros(K, dtype=np.int64)
    for it in range(iters):
        d = ((X[:, None, :] - C[None]) ** 2).sum(-1)
        new = d.argmin(1)
        empty = np.setdiff1d(np.arange(q), new)
        for j in empty:  # re-seed an empty cluster with the worst-served point (loop over <= q clusters)
            far = int((d[np.arange(K), new] * w).argmax())
            new[far] = j
            d[far] = 0.0
        if it > 0 and np.array_equal(new, labels):
            break
        labels = new
        onehot = np.eye(q)[labels] * w[:, None]
        C = (onehot.T @ X) / np.maximum(onehot.sum(0)[:, None], 1e-300)
    _, labels = np.unique(labels, return_inverse=True)
    return labels.ravel()


def _features(instance: Instance, v: int) -> np.ndarray:
    """``[ℓ_v / max ℓ_v, P_e rows of every edge out of v]``, one row per state of ``v``."""
    loss = instance.losses[v]
    cols = [(loss / loss.max() if loss.max() > 0 else loss)[:, None]]
    cols += [P for src, _, _, P in instance.edges() if src == v]
    return np.concatenate(cols, axis=1)


def cluster_states(instance: Instance, q: int, method: str = "loss", seed: int = 0) -> list[np.ndarray]:
    """``labels[v][s]``: the meta-state of state ``s`` of node ``v`` (see the module docstring).

    Raises
    ------
    TTamerError
        ``instance`` is not an :class:`~ttamer.core.instance.Instance`, ``q`` not a positive
        integer, ``method`` not in :data:`METHODS`, or ``seed`` not a non-negative integer
        (or a ``numpy.random.Generator``).
    """
    check_instance(instance)
    q = check_count(q, "q (meta-states per node)")
    check_choice("method (of aggregation)", method, METHODS)
    rng = np.random.default_rng(check_seed(seed, allow_generator=True))
    pi = marginals(instance)
    if method == "loss":
        return [loss_quantile_labels(instance.losses[v], pi[v], q) for v in range(instance.n)]
    return [kmeans_labels(_features(instance, v), pi[v], q, rng) for v in range(instance.n)]


# ------------------------------------------------------------------ the aggregated instance
def _membership(labels: np.ndarray) -> np.ndarray:
    """``G[s, g] = 1`` if ``s`` is in group ``g``."""
    return np.eye(int(labels.max()) + 1)[labels]


def _within_weights(labels: np.ndarray, pi: np.ndarray) -> np.ndarray:
    """``W[g, s] = π(s) / π(g)`` for ``s ∈ g`` (uniform over ``g`` if ``π(g) = 0``)."""
    G = _membership(labels)
    mass = G.T * pi[None, :]
    tot = mass.sum(1, keepdims=True)
    uniform = G.T / G.sum(0)[:, None]
    return np.where(tot > 0, mass / np.where(tot > 0, tot, 1.0), uniform)


def _check_labels(instance: Instance, labels: list[np.ndarray]) -> list[np.ndarray]:
    """``labels`` as integer arrays, one per node, each covering ``0..g-1`` without gaps."""
    check_instance(instance)
    if not isinstance(labels, (list, tuple)) or len(labels) != instance.n:
        raise TTamerError(f"labels must list one array per node ({instance.n}), got {short_repr(labels)}")
    out = [np.asarray(lab) for lab in labels]
    for v, lab in enumerate(out):
        if (lab.dtype.kind not in "iu" or lab.shape != (instance.n_states[v],) or lab.min() < 0
                or len(np.unique(lab)) != lab.max() + 1):
            raise TTamerError(f"labels of node {instance.names[v]!r}: need K_v={instance.n_states[v]} integer "
                              f"labels covering 0..g-1 without gaps, got {short_repr(labels[v])}")
    return out


def aggregate_instance(instance: Instance, labels: list[np.ndarray]) -> Instance:
    """The aggregated instance for the grouping ``labels`` (probability-weighted losses,
    transitions that keep the marginals).

    Raises
    ------
    TTamerError
        ``instance`` is not an :class:`~ttamer.core.instance.Instance`, or ``labels`` is not a
        list of one integer array per node, of ``K_v`` labels covering ``0..g-1`` without gaps.
    """
    labels = _check_labels(instance, labels)
    pi = marginals(instance)
    W = [_within_weights(l, pi[v]) for v, l in enumerate(labels)]
    G = [_membership(l) for l in labels]
    losses = [W[v] @ instance.losses[v] for v in range(instance.n)]
    mats = []
    for v in range(instance.n):
        p = int(instance.parent[v])
        M = instance.transitions[v] @ G[v]
        if p >= 0:
            M = W[p] @ M
        M = M / M.sum(axis=1, keepdims=True)  # rows sum to 1 up to rounding
        mats.append(M[0] if p < 0 else M)
    parents = [None if p < 0 else int(p) for p in instance.parent]
    skips = [(s.source, s.target, s.cost) for s in instance.skips]
    return Instance.tree(parents, losses, mats, instance.costs, names=instance.names,
                         fallback=instance.fallback, skips=skips, name=f"{instance.name} (aggregated)")


class LiftedPolicy(Policy):
    """A policy of the aggregated instance run on the original one through ``labels``."""

    def __init__(self, instance: Instance, inner: Policy, labels: list[np.ndarray]) -> None:
        super().__init__(instance, inner.lam, inner.recall)
        self.inner = inner
        kmax = int(instance.n_states.max())
        self._labels = np.zeros((instance.n, kmax), dtype=np.int64)
        for v, lab in enumerate(labels):
            self._labels[v, : len(lab)] = lab

    def meta(self, states: np.ndarray) -> np.ndarray:
        """Meta-state of every revealed state (``-1`` stays ``-1``)."""
        cols = np.arange(states.shape[1])
        return np.where(states >= 0, self._labels[cols, np.maximum(states, 0)], -1)

    def decide(self, states: np.ndarray, last: np.ndarray) -> np.ndarray:
        return self.inner.decide(self.meta(states), last)

    def describe(self) -> str:
        return f"lifted from the aggregated instance: {self.inner.describe()}"


@dataclass
class AggregationResult:
    """Values for one ``q``: the optimum, the aggregated model's own optimum, and the exact
    value of the lifted policy on the original instance; ``error = lifted − optimum ≥ 0``."""

    q: int
    optimum: float
    aggregated_model: float
    lifted: float
    error: float
    states: int
    instance: Instance
    policy: LiftedPolicy


def aggregation_error(instance: Instance, lam: float, q: int, recall: bool = True, method: str = "loss",
                      seed: int = 0, optimum: float | None = None) -> AggregationResult:
    """Aggregate ``instance`` into ``q`` meta-states per node, solve, lift, evaluate exactly.

    Raises
    ------
    TTamerError
        An argument is invalid (:func:`cluster_states`, :func:`~ttamer.solvers.solve.solve`),
        or ``optimum`` is neither ``None`` nor a finite number ``>= 0``.
    """
    if optimum is not None:
        optimum = check_real(optimum, "optimum", low=0.0)
    labels = cluster_states(instance, q, method, seed)
    agg = aggregate_instance(instance, labels)
    sol = solve(agg, lam, recall=recall)
    lifted = LiftedPolicy(instance, sol.policy, labels)
    value = evaluate_exactly(lifted).tradeoff
    best = solve(instance, lam, recall=recall).value if optimum is None else optimum
    return AggregationResult(int(q), best, sol.value, value, value - best,
                             int(agg.n_states.sum()), agg, lifted)
