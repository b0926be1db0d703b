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
from ..core.instance import Instance, check_instance
from ..core.validate import check_choice, check_count, check_int, check_real, check_seed, short_repr

#: The shapes of forest :func:`random_instance` draws (see the module docstring).
KINDS = ("chain", "tree", "forest", "skips")
#: Largest ``n`` of :func:`random_instance` (a forest of 100,000 nodes draws in about 10 s).
MAX_NODES = 100_000
#: Largest ``n`` for ``kind="skips"``: up to ``n²/2`` skips, each validated (300 nodes: about 2 s).
MAX_SKIP_NODES = 300
#: Largest number of states per node (:func:`random_instance`, :func:`monotone_kernel`).
MAX_STATES = 1_000
#: Largest ``n · k_max²`` of :func:`random_instance`, which bounds the transition entries drawn
#: (10^7 floats, 80 MB, under a second).
MAX_ENTRIES = 10_000_000


def _check(cond: bool, msg: str) -> None:
    if not cond:
        raise TTamerError(msg)


def monotone_kernel(k_from: int, k_to: int) -> np.ndarray:
    """``M[s, t] = 1`` for ``t`` the state at the quantile of ``s``: ``round(s (k_to−1)/(k_from−1))``.

    Raises
    ------
    TTamerError
        ``k_from`` or ``k_to`` is not an integer in ``[1, MAX_STATES]`` (:data:`MAX_STATES`).
    """
    k_from = check_count(k_from, "k_from", maximum=MAX_STATES)
    k_to = check_count(k_to, "k_to", maximum=MAX_STATES)
    src = np.arange(k_from)
    tgt = np.zeros(k_from, dtype=int) if k_from == 1 else np.rint(src * (k_to - 1) / (k_from - 1)).astype(int)
    M = np.zeros((k_from, k_to))
    M[src, tgt] = 1.0
    return M


def correlated_transition(rng: np.random.Generator, k_from: int, k_to: int, rho: float) -> np.ndarray:
    """``(1 − ρ) 1 b^T + ρ M`` with ``b ~ Dirichlet(1)`` and ``M`` the monotone kernel.

    Raises
    ------
    TTamerError
        ``rho`` is not a number in ``[0, 1]``, ``rng`` not a ``numpy.random.Generator``, or the
        sizes are invalid (:func:`monotone_kernel`).
    """
    rho = check_real(rho, "rho", low=0.0, high=1.0)
    _check(isinstance(rng, np.random.Generator), f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
    M = monotone_kernel(k_from, k_to)
    base = rng.dirichlet(np.ones(M.shape[1]))
    P = (1.0 - rho) * np.broadcast_to(base, M.shape) + rho * M
    return P / P.sum(axis=1, keepdims=True)  # exact row sums (the mixture sums to 1 up to rounding)


def random_parents(rng: np.random.Generator, kind: str, n: int, roots: int) -> list[int | None]:
    """Parent positions: a chain, or a random recursive tree/forest (parent of ``v`` uniform
    among earlier nodes; the first ``roots`` nodes are roots).

    Raises
    ------
    TTamerError
        ``rng`` is not a ``numpy.random.Generator``, ``kind`` is not in :data:`KINDS`, ``n`` is
        not an integer in ``[1, MAX_NODES]`` (:data:`MAX_NODES`) or ``roots`` not in ``[1, n]``.
    """
    _check(isinstance(rng, np.random.Generator), f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
    check_choice("kind", kind, KINDS)
    n = check_count(n, "n (number of nodes)", maximum=MAX_NODES)
    roots = check_count(roots, "roots")
    if kind in ("chain", "skips"):
        return [None] + list(range(n - 1))
    r = 1 if kind == "tree" else roots
    _check(1 <= r <= n, f"roots must be in [1, n={n}], got {r}")
    return [None] * r + [int(rng.integers(0, v)) for v in range(r, n)]


def _check_k(k: int | Sequence[int]) -> int | tuple[int, int]:
    """``k``: an integer or a pair ``(k_min, k_max)``, within ``[1, MAX_STATES]``."""
    if not isinstance(k, (tuple, list)):
        return check_int(k, "k (states per node)", minimum=1, maximum=MAX_STATES)
    _check(len(k) == 2, f"k must be an integer or a pair (k_min, k_max), got {short_repr(k)}")
    lo, hi = (check_int(x, f"k[{i}]", minimum=1, maximum=MAX_STATES) for i, x in enumerate(k))
    _check(lo <= hi, f"k range must satisfy 1 <= k_min <= k_max, got {(lo, hi)}")
    return lo, hi


def _check_size(kind: str, n: int, k: int | Sequence[int]) -> tuple[int, int | tuple[int, int]]:
    """``(n, k)`` within :data:`MAX_NODES` (:data:`MAX_SKIP_NODES`), :data:`MAX_STATES`, :data:`MAX_ENTRIES`."""
    check_choice("kind", kind, KINDS)
    n = check_count(n, "n (number of nodes)", maximum=MAX_SKIP_NODES if kind == "skips" else MAX_NODES)
    k = _check_k(k)
    k_max = max(k) if isinstance(k, tuple) else k
    _check(n * k_max**2 <= MAX_ENTRIES,
           f"n * k_max**2 must be <= {MAX_ENTRIES:,} (MAX_ENTRIES), got {n} * {k_max}**2")
    return n, k


def _state_counts(rng: np.random.Generator, n: int, k: int | tuple[int, int]) -> np.ndarray:
    return rng.integers(k[0], k[1] + 1, size=n) if isinstance(k, tuple) else np.full(n, k)


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
    """A random instance of ``kind`` in :data:`KINDS` (see the module docstring).

    Raises
    ------
    TTamerError
        ``rng`` is not a non-negative integer or a ``numpy.random.Generator``; ``kind`` is
        not in :data:`KINDS`; ``n`` is not an integer in ``[1, MAX_NODES]`` (``[1,
        MAX_SKIP_NODES]`` for skips); ``k`` is not an integer or pair of integers in ``[1,
        MAX_STATES]``, or ``n k_max²`` exceeds :data:`MAX_ENTRIES`; ``roots`` is not an
        integer in ``[1, n]`` (checked for forests); ``cost_scale`` or ``skip_discount`` is not
        a finite number ``>= 0``; ``correlation`` or ``skip_prob`` is not in ``[0, 1]``;
        ``depth_decay`` is not in ``(0, 1]``; ``fallback`` is invalid (an ``InstanceError``).
    """
    rng = np.random.default_rng(check_seed(rng, "rng", allow_generator=True))
    n, k = _check_size(kind, n, k)
    roots = check_count(roots, "roots")
    cost_scale = check_real(cost_scale, "cost_scale", low=0.0)
    correlation = check_real(correlation, "correlation", low=0.0, high=1.0)
    depth_decay = check_real(depth_decay, "depth_decay", low=0.0, high=1.0, low_open=True)
    skip_prob = check_real(skip_prob, "skip_prob", low=0.0, high=1.0)
    skip_discount = check_real(skip_discount, "skip_discount", low=0.0)
    if cost_scale * 1.5 * (n + 1) ** 2 * max(1.0, skip_discount) > 1e300:
        raise TTamerError(f"cost_scale={cost_scale:g} and skip_discount={skip_discount:g}: the instance's costs, and "
                          "their sums along its paths, would overflow float64; use smaller values")
    parents = random_parents(rng, kind, n, roots)
    ks = _state_counts(rng, n, k)
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
    check_instance(instance)
    pi: list[np.ndarray] = [np.empty(0)] * instance.n
    for v in instance.order:
        p = int(instance.parent[v])
        M = instance.transitions[v]
        pi[v] = M[0] if p < 0 else pi[p] @ M
    return pi
