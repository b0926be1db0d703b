"""The exact no-recall dynamic program (the book's chapter *No recall*).

Without recall the answer is the last node consulted, so the state of a descending strategy
is ``(last node v, its state s)``:

    W_v(s) = min( λ ℓ_v(s),  min over edges v -> u of  κ c_{v->u} + Σ_t P_{v->u}[s, t] W_u(t) ),

and from the start ``W = min( λ y, min over roots ρ of κ c_ρ + μ_ρ · W_ρ )``. The edges
leaving ``v`` are its children and, on a chain, its skips. This is exact on chains (with or
without skips), where every strategy descends; on a branching forest it is the best
*descend-only* strategy (never leaves a branch for another), an upper bound on the optimum.
"""

from __future__ import annotations

import numpy as np

from ..core.instance import Instance, check_instance
from ..core.policy import LastStatePolicy, best_action
from ..core.validate import check_lam


def solve_norecall_dp(instance: Instance, lam: float) -> tuple[float, LastStatePolicy]:
    """Value and policy of the no-recall DP (exact on chains, descend-only on forests)."""
    check_instance(instance)
    lam = check_lam(lam)
    kappa = 1.0 - lam
    out = instance.out_edges()
    W: list[np.ndarray] = [np.empty(0)] * instance.n
    table: list[np.ndarray] = [np.empty(0, dtype=np.int64)] * instance.n
    for v in instance.order[::-1]:  # every edge points further down: children first
        stop = lam * instance.losses[v]
        W[v], table[v] = best_action(stop, [(u, kappa * c + P @ W[u]) for u, c, P in out.get(int(v), [])])
    y = np.array([np.inf if instance.fallback is None else lam * instance.fallback])
    w0, start = best_action(y, [(u, kappa * c + P @ W[u]) for u, c, P in out[-1]])
    policy = LastStatePolicy(instance, lam, recall=False, table=[t[:, None] for t in table], start=start)
    return float(w0[0]), policy

