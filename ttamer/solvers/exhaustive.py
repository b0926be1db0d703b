"""Exhaustive dynamic programming over information states -- the ground truth (the book's chapter *Recall*, section on the exhaustive solver).

An information state is ``(states, last)``: the state each node revealed (``-1`` if not
consulted) and the node consulted last (kept only without recall, where it answers). From it
a strategy may stop, paying ``λ X`` (``X`` as in the book's chapter *The model*, ``+inf`` if stopping is not
allowed), or consult an available node ``a`` through edge ``e``:

    V(x) = min( λ X(x),  min over a of  κ c_e + Σ_t P_e[s_src, t] V(x with a = t) ).

Available nodes: on a forest, any unconsulted node whose parent was consulted (roots always);
on a chain with skips, the targets of the edges leaving the deepest consulted exit (exits
skipped over are gone). Exponential by nature: it exists to check the fast solvers.
"""

from __future__ import annotations

import math
import sys
from functools import lru_cache

import numpy as np

from ..core.errors import SolverError
from ..core.instance import Instance, check_instance
from ..core.policy import STOP, ExhaustivePolicy
from ..core.validate import check_bool, check_count, check_lam, magnitude, magnitude_log10

#: Default cap on ``Π_v (K_v + 1)``, the number of information states (times n without recall).
MAX_STATES = 400_000


def state_space_bound(instance: Instance, recall: bool) -> int:
    """An upper bound on the number of information states the DP may visit (an exact
    integer, possibly huge: compare :func:`state_space_log10` first on large instances)."""
    check_instance(instance)
    recall = check_bool(recall, "recall")
    bound = int(np.prod([int(k) + 1 for k in instance.n_states], dtype=object))
    return bound if recall else bound * (instance.n + 1)


def state_space_log10(instance: Instance, recall: bool) -> float:
    """``log10`` of :func:`state_space_bound`, computed without forming the integer."""
    check_instance(instance)
    recall = check_bool(recall, "recall")
    out = float(np.log10(instance.n_states.astype(float) + 1.0).sum())
    return out if recall else out + math.log10(instance.n + 1)


def fits_state_space(instance: Instance, recall: bool, max_states: int) -> bool:
    """Whether :func:`state_space_bound` is at most ``max_states`` (cheap on huge instances)."""
    max_states = check_count(max_states, "max_states")
    if state_space_log10(instance, recall) > math.log10(max(max_states, 1)) + 1:
        return False
    return state_space_bound(instance, recall) <= max_states


def describe_state_space(instance: Instance, recall: bool) -> str:
    """The bound as a short text ("1,234" or "more than 10^k")."""
    log = state_space_log10(instance, recall)
    return magnitude(state_space_bound(instance, recall)) if log < 15 else magnitude_log10(log)


def _check_size(instance: Instance, recall: bool, max_states: int) -> None:
    max_states = check_count(max_states, "max_states")
    if not fits_state_space(instance, recall, max_states):
        raise SolverError(
            f"the exhaustive solver's bound on information states is {describe_state_space(instance, recall)} "
            f"({instance.n} nodes; Π_v (K_v+1){'' if recall else ' x (n+1)'}), above "
            f"max_states={max_states:,}; it is meant for small instances (about 8-10 nodes) -- use a "
            "polynomial method, aggregate states, or raise max_states"
        )


def solve_exhaustive(
    instance: Instance, lam: float, recall: bool = True, max_states: int = MAX_STATES
) -> tuple[float, ExhaustivePolicy]:
    """Optimal value and policy by DP over every information state."""
    check_instance(instance)
    lam = check_lam(lam)
    recall = check_bool(recall, "recall")
    _check_size(instance, recall, max_states)
    kappa = 1.0 - lam
    n = instance.n
    losses = instance.losses
    y = instance.fallback
    out_edges = instance.out_edges()
    pos = instance.chain_position if instance.skips else None
    actions: dict[tuple, int] = {}

    def available(states: tuple, last: int) -> list[tuple[int, int, float, np.ndarray]]:
        """``(target, source, cost, P)`` of every node that may be consulted now."""
        if pos is not None:  # chain with skips: edges out of the deepest consulted exit
            consulted = [v for v in range(n) if states[v] >= 0]
            src = max(consulted, key=lambda v: pos[v]) if consulted else -1
            return [(dst, src, c, P) for dst, c, P in out_edges.get(src, [])]
        return [
            (dst, src, c, P)
            for src in [-1] + [v for v in range(n) if states[v] >= 0]
            for dst, c, P in out_edges.get(src, [])
            if states[dst] < 0
        ]

    def stop_value(states: tuple, last: int) -> float:
        if recall:
            seen = [losses[v][s] for v, s in enumerate(states) if s >= 0]
            best = min(seen + ([y] if y is not None else []), default=np.inf)
        else:
            best = losses[last][states[last]] if last >= 0 else (np.inf if y is None else y)
        return lam * best if np.isfinite(best) else np.inf

    @lru_cache(maxsize=None)
    def value(states: tuple, last: int) -> float:
        best, act = stop_value(states, last), STOP
        for dst, src, cost, P in available(states, last):
            row = P[0] if src < 0 else P[states[src]]
            cont = kappa * cost
            for t in np.flatnonzero(row):
                nxt = states[:dst] + (int(t),) + states[dst + 1:]
                cont += row[t] * value(nxt, -1 if recall else dst)
            if cont < best:
                best, act = cont, dst
        actions[(states, last)] = act
        return best

    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 10 * n + 100))
    try:
        v0 = value(tuple([-1] * n), -1)
    finally:
        sys.setrecursionlimit(limit)
    return float(v0), ExhaustivePolicy(instance, lam, recall, actions)
