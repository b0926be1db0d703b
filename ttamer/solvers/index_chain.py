"""The index strategy on a chain, compiled: the steps of :mod:`ttamer.solvers.index` for a
chain of nodes, in one call (the book's chapter *Recall*).

On a chain every node has at most one child, so :func:`~ttamer.solvers.index.combine` meets one
part and the whole bottom-up pass is a loop over nodes of the same three steps -- combine the
node's scaled losses with its child's capped surrogate, mix over the node's transition matrix,
solve for the reservation values -- on the same survival matrices (grid-major, one column per
conditioning state). The NumPy version spends most of its time calling NumPy on small arrays
(about forty calls per node); compiled with numba, the same arithmetic runs without those calls.
Grids are merged, cut and pruned exactly as there, so the step functions are the same; only the
rounding of the mixing product may differ (BLAS either way), and with it, rarely, which massless
grid points are pruned.
"""

from __future__ import annotations

import numpy as np

from ..core.compiled import compiled
from ..core.instance import Instance

#: Cumulative mass below this is treated as none when locating the least point of a support
#: (``κ c = 0``).
MASS_TOL = 1e-13
#: Grids shorter than this are not pruned (pruning changes no step function, only the size).
PRUNE_MIN = 32


def chain_nodes(instance: Instance) -> np.ndarray | None:
    """The nodes of ``instance`` from the leaf up to the root when it is one chain without skips
    (a single root, at most one child per node), else ``None``."""
    return None if instance.skips or not instance.is_chain else instance.order[::-1]


@compiled
def _merged(values: np.ndarray, grid: np.ndarray, sigma: np.ndarray, lo: float, top: float) -> np.ndarray:
    """Sorted distinct finite points of the three arrays in ``[lo, top]``."""
    pts = np.sort(np.concatenate((values, grid, sigma)))
    out = np.empty(len(pts))
    m = 0
    for x in pts:
        if np.isfinite(x) and x >= lo and x <= top and (m == 0 or x != out[m - 1]):
            out[m] = x
            m += 1
    return out[:m]


@compiled
def _combine(values: np.ndarray, grid: np.ndarray, surv: np.ndarray, sigma: np.ndarray) -> tuple:
    """``min(values[c], max(Z, σ[c]))`` as a survival matrix (``grid`` empty: no child)."""
    lo = values.min()
    if len(sigma):
        lo = min(lo, sigma.min())
    g = _merged(values, grid, sigma, lo, values.max())
    k = len(values)
    out = np.empty((len(g), k))
    pos = -1
    for j in range(len(g)):
        while pos + 1 < len(grid) and grid[pos + 1] <= g[j]:
            pos += 1
        for c in range(k):
            if g[j] >= values[c]:
                out[j, c] = 0.0
            elif len(grid) == 0 or g[j] < sigma[c]:
                out[j, c] = 1.0
            else:
                out[j, c] = surv[max(pos, 0), c]
    if len(g) < PRUNE_MIN:
        return g, out
    keep = np.zeros(len(g), dtype=np.bool_)
    for c in range(k):
        keep[0] |= out[0, c] != 1.0
    for j in range(1, len(g)):
        for c in range(k):
            if out[j, c] != out[j - 1, c]:
                keep[j] = True
                break
    return g[keep], out[keep]


@compiled
def _reservation(grid: np.ndarray, surv: np.ndarray, target: float) -> np.ndarray:
    """Per column the ``σ`` with ``E[(σ − Z)^+] = target``
    (:func:`~ttamer.solvers.index.reservation_values`)."""
    n, k = surv.shape
    sigma = np.empty(k)
    for c in range(k):
        if target == 0.0:
            j = 0
            while j < n and not 1.0 - surv[j, c] > MASS_TOL:
                j += 1
            sigma[c] = grid[j if j < n else 0]
            continue
        f, j = 0.0, 0
        while j + 1 < n:
            step = max(1.0 - surv[j, c], 0.0) * (grid[j + 1] - grid[j])
            if f + step > target:
                break
            f += step
            j += 1
        sigma[c] = grid[j] + (target - f) / (1.0 - surv[j, c])
    return sigma


@compiled
def _chain(values: np.ndarray, trans_t: np.ndarray, k: np.ndarray, k_parent: np.ndarray, targets: np.ndarray,
           top_value: float) -> tuple:
    """The bottom-up pass over a chain given leaf first: node ``i`` has ``k[i]`` scaled losses in
    ``values`` and its transposed ``k_parent[i] × k[i]`` transition matrix in ``trans_t``, one
    node after the other."""
    n = len(targets)
    sigma_out = np.empty(k_parent.sum())
    atoms = np.empty(n, dtype=np.int64)
    grid = np.empty(0)
    surv = np.empty((0, 0))
    sigma = np.empty(0)
    at_v, at_t, at_s = 0, 0, 0
    for i in range(n):
        grid, z = _combine(values[at_v:at_v + k[i]], grid, surv, sigma)
        atoms[i] = len(grid)
        surv = z @ trans_t[at_t:at_t + k[i] * k_parent[i]].reshape(k[i], k_parent[i])  # mixed over the transition
        sigma = _reservation(grid, surv, targets[i])
        sigma_out[at_s:at_s + k_parent[i]] = sigma
        at_v, at_t, at_s = at_v + k[i], at_t + k[i] * k_parent[i], at_s + k_parent[i]
    g, z = _combine(np.array([top_value]), grid, surv, sigma)
    return sigma_out, atoms, g, z


def chain_pass(instance: Instance, nodes: np.ndarray, lam: float, top_value: float
               ) -> tuple[list[np.ndarray], np.ndarray, np.ndarray, np.ndarray]:
    """Indices ``sigma[v]``, atoms per node and the root surrogate's grid and survival for the
    chain ``nodes`` (leaf first, :func:`chain_nodes`) at ``λ = lam``."""
    trans = [instance.transitions[v] for v in nodes]
    k_parent = [len(t) for t in trans]
    values = lam * np.concatenate([instance.losses[v] for v in nodes])  # λ ℓ_v, as Instance.scaled_losses
    flat_sigma, atoms_in_order, grid, surv = _chain(values, np.concatenate([t.T for t in trans], axis=None),
                                                    instance.n_states[nodes], np.array(k_parent, dtype=np.int64),
                                                    (1.0 - lam) * instance.costs[nodes], float(top_value))
    sigma: list[np.ndarray] = [np.empty(0)] * instance.n
    at = 0
    for v, kp in zip(nodes.tolist(), k_parent):
        sigma[v] = flat_sigma[at:at + kp]
        at += kp
    atoms = np.zeros(instance.n, dtype=np.int64)
    atoms[nodes] = atoms_in_order
    return sigma, atoms, grid, surv
