"""Random instances for tests and synthetic studies (the book's chapter *The model*).

:func:`random_instance` draws a chain, a tree, a forest or a chain with skips with

* ``K_v`` states per node (a fixed ``k`` or a range ``(k_min, k_max)``);
* losses ``ℓ_v(s)`` in ``[0, 1]``, sorted decreasing in ``s`` (state ``K_v − 1`` is the most
  confident one), multiplied by ``depth_decay ** depth(v)`` so that deeper models are better
  on average, as exits of one network are;
* costs ``c_v = cost_scale · U(0.5, 1.5)`` (``cost_scale = 0``: free models);
* transitions with a **correlation strength** ``ρ ∈ [0, 1]``:
  ``P_v = (1 − ρ) · 1 b_v^T + ρ · M_v`` where ``b_v ~ Dirichlet(1)`` is one row shared by all
  parent states (``ρ = 0``: ``S_v`` independent of ``S_parent``) and ``M_v`` is the monotone
  kernel sending parent state ``s`` to the child state at the same quantile
  (``ρ = 1``: the child's state is a deterministic function of the parent's);
* root distributions ``μ_v ~ Dirichlet(1)``;
* for ``kind="skips"``: each pair ``i -> j`` (``j ≥ i + 2``) is a skip with probability
  ``skip_prob``; its cost is ``skip_discount`` times the sum of the costs it jumps over.

Everything goes through :class:`~ttamer.core.instance.Instance`, so every draw is validated.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ..core.errors import TTamerError
from ..core.instance import Instance

#: The shapes of forest :func:`random_instance` draws (see the module docstring).
KINDS = ("chain", "tree", "forest", "skips")


def _check(cond: bool, msg: str) -> None:
    if not cond:
        raise TTamerError(msg)


def monotone_kernel(k_from: int, k_to: int) -> np.ndarray:
    """``M[s, t] = 1`` for ``t`` the state at the quantile of ``s``: ``round(s (k_to−1)/(k_from−1))``."""
    src = np.arange(k_from)
    tgt = np.zeros(k_from, dtype=int) if k_from == 1 else np.rint(src * (k_to - 1) / (k_from - 1)).astype(int)
    M = np.zeros((k_from, k_to))
    M[src, tgt] = 1.0
    return M


def correlated_transition(rng: np.random.Generator, k_from: int, k_to: int, rho: float) -> np.ndarray:
    """``(1 − ρ) 1 b^T + ρ M`` with ``b ~ Dirichlet(1)`` and ``M`` the monotone kernel."""
    base = rng.dirichlet(np.ones(k_to))
    P = (1.0 - rho) * np.broadcast_to(base, (k_from, k_to)) + rho * monotone_kernel(k_from, k_to)
    return P / P.sum(axis=1, keepdims=True)  # exact row sums (the mixture sums to 1 up to rounding)


def random_parents(rng: np.random.Generator, kind: str, n: int, roots: int) -> list[int | None]:
    """Parent positions: a chain, or a random recursive tree/forest (parent of ``v`` uniform
    among earlier nodes; the first ``roots`` nodes are roots)."""
    if kind in ("chain", "skips"):
        return [None] + list(range(n - 1))
    r = 1 if kind == "tree" else roots
    _check(1 <= r <= n, f"roots must be in [1, n={n}], got {r}")
    return [None] * r + [int(rng.integers(0, v)) for v in range(r, n)]


def _state_counts(rng: np.random.Generator, n: int, k: int | Sequence[int]) -> np.ndarray:
    if np.ndim(k) == 0:
        _check(int(k) >= 1, f"k must be >= 1, got {k}")
        return np.full(n, int(k))
    lo, hi = (int(x) for x in k)
    _check(1 <= lo <= hi, f"k range must satisfy 1 <= k_min <= k_max, got {tuple(k)}")
    return rng.integers(lo, hi + 1, size=n)


def random_instance(
    rng: np.random.Generator | int,
    kind: str = "chain",
    n: int = 4,
    k: int | Sequence[int] = 3,
    cost_scale: float = 0.1,
    correlation: float = 0.5,
    depth_decay: float = 0.8,
    roots: int = 2,
    skip_prob: float = 0.5,
    skip_discount: float = 0.7,
    fallback: float | None = None,
) -> Instance:
    """A random instance of ``kind`` in :data:`KINDS` (see the module docstring)."""
    rng = np.random.default_rng(rng)
    _check(kind in KINDS, f"kind must be one of {KINDS}, got {kind!r}")
    _check(isinstance(n, (int, np.integer)) and n >= 1, f"n must be an integer >= 1, got {n!r}")
    _check(np.isfinite(cost_scale) and cost_scale >= 0, f"cost_scale must be >= 0, got {cost_scale}")
    _check(0.0 <= correlation <= 1.0, f"correlation must be in [0, 1], got {correlation}")
    _check(0.0 < depth_decay <= 1.0, f"depth_decay must be in (0, 1], got {depth_decay}")
    _check(0.0 <= skip_prob <= 1.0, f"skip_prob must be in [0, 1], got {skip_prob}")
    _check(skip_discount >= 0.0, f"skip_discount must be >= 0, got {skip_discount}")
    parents = random_parents(rng, kind, int(n), roots)
    ks = _state_counts(rng, int(n), k)
    depth = np.zeros(n, dtype=int)
    for v, p in enumerate(parents):
        depth[v] = 0 if p is None else depth[p] + 1
    losses = [np.sort(rng.random(ks[v]))[::-1] * depth_decay ** depth[v] for v in range(n)]
    mats = [rng.dirichlet(np.ones(ks[v])) if p is None else correlated_transition(rng, ks[p], ks[v], correlation)
            for v, p in enumerate(parents)]
    costs = cost_scale * rng.uniform(0.5, 1.5, size=n)
    skips = []
    if kind == "skips":
        for i in range(n):
            for j in range(i + 2, n):
                if rng.random() < skip_prob:
                    skips.append((i, j, float(skip_discount * costs[i + 1: j + 1].sum())))
    return Instance.tree(parents, losses, mats, costs, names=[f"m{v}" for v in range(n)],
                         fallback=fallback, skips=skips, name=f"random {kind}")


def marginals(instance: Instance) -> list[np.ndarray]:
    """``π_v(s) = P(S_v = s)``: ``μ_v`` for roots, ``π_parent @ P_v`` below."""
    pi: list[np.ndarray] = [np.empty(0)] * instance.n
    for v in instance.order:
        p = int(instance.parent[v])
        M = instance.transitions[v]
        pi[v] = M[0] if p < 0 else pi[p] @ M
    return pi
