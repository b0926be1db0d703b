"""Recall on a chain with skips: dynamic programming over ``(exit i, state s_i, X)`` (the book's chapter *Recall*).

``X``, the best scaled loss so far, takes finitely many values: the *levels*
``{λ ℓ_v(s)} ∪ {λ y}`` (``∪ {+inf}`` without a fallback). After exit ``i`` revealed ``s`` with
best-so-far level ``m``,

    V_i(s, m) = min( X_m,  min over edges i -> j of  κ c_{i->j} + Σ_t P_{i->j}[s, t] V_j(t, min(m, lev_j(t))) ),

where ``lev_j(t)`` is the level of ``λ ℓ_j(t)`` (levels are sorted, so the smaller level index
is the smaller ``X``). The polynomial size is ``O(n K M)`` values with ``M ≤ Σ K_v + 2`` levels.
``V`` is nondecreasing and 1-Lipschitz in ``X``, so the stop rule is a threshold in ``X``; the
next exit may depend on ``X``.
"""

from __future__ import annotations

import numpy as np

from ..core.errors import SolverError
from ..core.instance import Instance, check_instance
from ..core.policy import LastStatePolicy, best_action
from ..core.validate import check_count, check_lam

#: Default limit on the size of the value table ``Σ_v K_v × M`` (``M`` levels), checked before
#: any work (override: ``max_cells=``); 8 bytes per cell, twice (values and actions).
MAX_DP_CELLS = 20_000_000


def x_levels(instance: Instance, lam: float) -> np.ndarray:
    """Sorted distinct values of ``X``: scaled losses, ``λ y``, and ``+inf`` if no fallback."""
    check_instance(instance)
    lam = check_lam(lam)
    vals = [lam * l for l in instance.losses]
    tail = [np.inf] if instance.fallback is None else [lam * instance.fallback]
    return np.unique(np.concatenate(vals + [np.array(tail)]))


def solve_chain_recall(instance: Instance, lam: float, *, max_cells: int = MAX_DP_CELLS
                       ) -> tuple[float, LastStatePolicy]:
    """Optimal recall value and policy on a chain (skips allowed)."""
    check_instance(instance)
    lam = check_lam(lam)
    if not instance.is_chain:
        roots = len(instance.roots)
        shape = "a branching tree" if roots == 1 else f"a forest with {roots:,} roots"
        raise SolverError(f"method 'dp' with recall (the (i, s, X) dynamic program) needs a single chain, but "
                          f"{instance.label} is {shape} ({instance.n:,} nodes); use method='index' "
                          f"(exact with recall on a forest) or 'auto'")
    kappa = 1.0 - lam
    levels = x_levels(instance, lam)
    cells = int(instance.n_states.sum()) * len(levels)
    if cells > check_count(max_cells, "max_cells"):
        raise SolverError(f"the (i, s, X) dynamic program on {instance.n} nodes needs {cells:,} table cells "
                          f"({len(levels):,} loss levels), above max_cells={max_cells:,} (MAX_DP_CELLS); "
                          f"without skips use method='index', or raise the limit")
    lev = [np.searchsorted(levels, lam * l) for l in instance.losses]  # level of λ ℓ_v(t)
    m_idx = np.arange(len(levels))
    out = instance.out_edges()
    V: list[np.ndarray] = [np.empty(0)] * instance.n
    table: list[np.ndarray] = [np.empty(0, dtype=np.int64)] * instance.n

    def after(dst: int) -> np.ndarray:
        """``V_dst(t, min(m, lev_dst(t)))`` as a ``(K_dst, M)`` array."""
        return V[dst][np.arange(len(lev[dst]))[:, None], np.minimum(m_idx[None, :], lev[dst][:, None])]

    def continuations(src: int) -> list[tuple[int, np.ndarray]]:
        return [(j, kappa * c + P @ after(j)) for j, c, P in out.get(src, [])]

    for v in instance.order[::-1]:
        stop = np.broadcast_to(levels, (instance.n_states[v], len(levels)))
        V[v], table[v] = best_action(stop, continuations(int(v)))
    start_values, start = best_action(levels[None, :], continuations(-1))
    m0 = len(levels) - 1 if instance.fallback is None else int(np.searchsorted(levels, lam * instance.fallback))
    policy = LastStatePolicy(instance, lam, recall=True, table=table, start=start[0], levels=levels)
    return float(start_values[0, m0]), policy
