"""The dynamic index strategy with recall on a forest (the book's chapter *Recall*).

With ``κ = 1 − λ``, work bottom-up. For node ``v`` in state ``t`` the *surrogate* of its
subtree is

    Z_v | (S_v = t) = min( λ ℓ_v(t), min over children u of max( Z_u | t, σ_u(t) ) ),

the children's terms independent given ``t``, where ``Z_u | t`` mixes ``Z_u | (S_u = w)`` over
``w ~ P_u[t, ·]`` and the *index* ``σ_u(t)`` is Weitzman's reservation value of that compound
box: the unique ``σ`` with ``E[(σ − Z_u | t)^+] = κ c_u`` (for ``κ c_u = 0``, the least point of
the support). The optimal expected trade-off is

    E[ min( λ y, min over roots ρ of max(Z_ρ, σ_ρ) ) ].

Representation. Every surrogate is a discrete distribution whose atoms are scaled losses and
indices of the subtree. We hold ``Z_v | (S_v = t)`` for all ``t`` at once as a *survival
matrix* on a sorted grid ``g``: ``S[j, t] = P(Z_v > g_j | S_v = t)`` (grid-major: one row per
grid point, one column per conditioning state), a step function that is right-continuous and
constant between grid points (and 1 below ``g_0``). Then

* mixing over a transition matrix ``P`` (parent states x states) is ``S @ P.T``;
* ``max(Z, σ)`` has survival 1 below ``σ`` and ``S`` from ``σ`` on;
* the minimum of independent variables multiplies survivals;
* ``E[(x − Z)^+] = ∫_{−∞}^x P(Z ≤ u) du`` is one cumulative sum down the grid;

so every step is a dense NumPy operation over (grid x states); grid points carrying no mass in
any column are dropped, which changes no step function. The grid-major layout makes the
cumulative sums and the gathers run along contiguous memory.

Cost. A surrogate has at most ``N_v = Σ_{u in subtree(v)} (K_u + K_parent(u))`` atoms, so
node ``v`` costs ``O(K_parent · K_v · N_v)`` for the mixing product plus ``O(N_v log N_v)``
for merging grids; a node with many children multiplies them in a balanced tree,
``O(N_v K log d)`` for degree ``d``. On a chain of ``n`` nodes with ``K`` states each that is
``O(n² K³)`` when the supports do not collapse (the book's Performance chapter measures it).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..core.errors import SolverError
from ..core.instance import Instance, check_instance
from ..core.policy import IndexPolicy
from ..core.validate import check_bool, check_lam
from .index_chain import MASS_TOL, PRUNE_MIN, chain_nodes, chain_pass

#: Nodes with more children than this multiply their capped children in a balanced tree.
MANY_PARTS = 8


@dataclass
class Surrogate:
    """``P(Z > grid[j] | column state) = survival[j, column]`` (a batch of step functions)."""

    grid: np.ndarray
    survival: np.ndarray

    def at(self, x: np.ndarray) -> np.ndarray:
        """The survival functions at the sorted points ``x`` (shape ``(len(x), columns)``)."""
        pos = np.searchsorted(self.grid, x, side="right") - 1
        out = self.survival[np.maximum(pos, 0)]
        out[pos < 0] = 1.0
        return out

    def masses(self) -> np.ndarray:
        """``P(Z = grid[j] | column)``: the drops of the survival functions."""
        p = np.empty_like(self.survival)
        p[0] = 1.0 - self.survival[0]
        np.subtract(self.survival[:-1], self.survival[1:], out=p[1:])
        return p

    def mix(self, P: np.ndarray) -> "Surrogate":
        """The surrogate given the parent's state: ``P(Z > g | s) = Σ_t P[s, t] S[g, t]``."""
        return Surrogate(self.grid, self.survival @ P.T)

    def mean(self) -> np.ndarray:
        """``E[Z | column]`` (every atom lies on the grid)."""
        return self.grid @ self.masses()


def reservation_values(z: Surrogate, target: float) -> np.ndarray:
    """Per column, the ``σ`` solving ``E[(σ − Z)^+] = target`` (Weitzman's reservation value).

    ``f(σ) = E[(σ − Z)^+] = ∫_{−∞}^σ P(Z ≤ u) du`` is continuous, nondecreasing and piecewise
    linear with slope ``1 − S_k`` on ``[g_k, g_{k+1})``, so ``f(g_0) = 0`` and
    ``f(g_k) = Σ_{j<k} (1 − S_j)(g_{j+1} − g_j)``. Take the last ``k`` with ``f(g_k) ≤ target``;
    then ``σ = g_k + (target − f(g_k)) / (1 − S_k)``, which lies in ``[g_k, g_{k+1}]``.
    For ``target = 0`` the answer is the least point of the support. Either way ``σ ≥ g_0``.

    The crossing is usually near the bottom of the grid, so ``f`` is accumulated on a prefix
    that grows (x4) until every column has crossed — the same numbers, fewer of them.
    """
    if target == 0.0:
        return z.grid[(1.0 - z.survival > MASS_TOL).argmax(axis=0)]
    n = len(z.grid)
    m = min(n, 64)
    while True:
        below = 1.0 - z.survival[:m]  # P(Z <= g_k), k < m
        # f(g_1), ..., f(g_{m-1}); rounding may push 1 - S a hair below 0: clip so f stays monotone
        gaps = z.grid[1:m] - z.grid[: m - 1]
        f = (np.maximum(below[:-1], 0.0) * gaps[:, None]).cumsum(axis=0)
        if m == n or (f[-1] > target).all():
            break
        m = min(n, 4 * m)
    k = (f <= target).sum(axis=0)  # the last k with f(g_k) <= target (f(g_0) = 0 always is)
    cols = np.arange(len(k))
    f_k = np.where(k > 0, f[k - 1, cols], 0.0) if len(f) else np.zeros(len(k))
    return z.grid[k] + (target - f_k) / below[k, cols]


def merged_grid(points: list[np.ndarray]) -> np.ndarray:
    """The sorted distinct finite values of ``points`` (+inf, "no fallback", is never an atom).

    The pieces are mostly sorted runs (the children's grids), which the stable sort merges in
    about linear time.
    """
    g = np.concatenate(points)
    g.sort(kind="stable")
    if np.isinf(g[-1]):  # +inf sorts last
        g = g[np.isfinite(g)]
    if len(g) > 1:
        g = g[np.concatenate(([True], g[1:] != g[:-1]))]
    return g


def combine(values: np.ndarray, parts: list[tuple[Surrogate, np.ndarray]]) -> Surrogate:
    """Survival of ``min(values[col], min over parts of max(Z_part, σ_part[col]))``.

    ``values`` may be ``+inf`` (no point mass), as for the start node without a fallback.
    In column ``col`` every atom lies in ``[min(values[col], min σ_part[col]), values[col]]``,
    so grid points outside ``[min over columns of the lower end, max(values)]`` are cut before
    any survival is evaluated; the remaining massless points are pruned afterwards.
    With more than :data:`MANY_PARTS` parts (a node of high degree, or many roots) the capped
    parts are first multiplied pairwise in a balanced tree (:func:`capped_product`).
    """
    lo = min([values.min()] + [s.min() for _, s in parts])
    if len(parts) > MANY_PARTS:
        prod = capped_product(parts)
        parts = [(prod, np.full(len(values), prod.grid[0]))]  # capping at its least point: no-op
    grid = merged_grid([values] + [p for z, s in parts for p in (z.grid, s)])
    top = values.max()
    grid = grid[np.searchsorted(grid, lo): np.searchsorted(grid, top, side="right") if np.isfinite(top) else None]
    surv = (grid[:, None] < values[None, :]).astype(float)
    for z, s in parts:
        pos = np.searchsorted(z.grid, grid, side="right") - 1
        # max(Z, σ) does not fall below σ; below z.grid[0] (pos < 0) the survival is 1, and
        # those points are below σ too, since σ >= z.grid[0] (see reservation_values)
        surv *= np.where(grid[:, None] < s[None, :], 1.0, z.survival[np.maximum(pos, 0)])
    return prune(Surrogate(grid, surv))


def capped(z: Surrogate, sigma: np.ndarray) -> Surrogate:
    """``max(Z, σ[col])`` as a surrogate on its own grid (``z``'s grid and the ``σ``)."""
    grid = merged_grid([z.grid, sigma])
    return Surrogate(grid, np.where(grid[:, None] < sigma[None, :], 1.0, z.at(grid)))


def product(a: Surrogate, b: Surrogate) -> Surrogate:
    """``min(A, B)`` of independent surrogates: survivals multiplied on the union grid."""
    grid = merged_grid([a.grid, b.grid])
    return prune(Surrogate(grid, a.at(grid) * b.at(grid)))


def capped_product(parts: list[tuple[Surrogate, np.ndarray]]) -> Surrogate:
    """``min over parts of max(Z_part, σ_part)``, multiplied pairwise in a balanced tree.

    Multiplying ``d`` parts one by one on the merged grid of all their atoms costs
    ``O(d N K)``; the balanced tree costs ``O(N K log d)``, since each level of the tree holds
    every atom at most once. The step functions are the same (up to the order of rounding).
    """
    layer = [capped(z, s) for z, s in parts]
    while len(layer) > 1:
        paired = [product(a, b) for a, b in zip(layer[0::2], layer[1::2])]
        layer = paired + ([layer[-1]] if len(layer) % 2 else [])
    return layer[0]


def prune(z: Surrogate) -> Surrogate:
    """Drop grid points that carry no mass in any column (the step functions are unchanged).
    Grids of fewer than :data:`~ttamer.solvers.index_chain.PRUNE_MIN` points are kept as they are
    (cheaper than looking)."""
    S = z.survival
    if len(z.grid) < PRUNE_MIN:
        return z
    keep = np.empty(len(z.grid), dtype=bool)
    keep[0] = (S[0] != 1.0).any()
    keep[1:] = (S[1:] != S[:-1]).any(axis=1)  # mass S[j-1] - S[j] != 0 somewhere
    if keep.all():
        return z
    return Surrogate(z.grid[keep], S[keep])


@dataclass
class IndexResult:
    """Indices ``sigma[v][s]`` (one entry for a root), the optimal value, the law of the
    optimal trade-off (``root_surrogate``) and ``atoms[v]``, the grid size of ``Z_v`` (the
    number of atoms the computation carried at node ``v``; a diagnostic of its cost)."""

    sigma: list[np.ndarray]
    value: float
    root_surrogate: Surrogate
    atoms: np.ndarray


def compute_indices(instance: Instance, lam: float, compiled: bool = True) -> IndexResult:
    """Surrogates bottom-up, the index of every node, and the optimal value (the book's chapter *Recall*).

    On a chain without skips the pass runs compiled (:mod:`ttamer.solvers.index_chain`: the same
    step functions, to rounding); ``compiled=False`` runs the NumPy steps of this module on every
    instance, the reference the compiled pass is tested and benchmarked against.
    """
    check_instance(instance)
    lam = check_lam(lam)
    compiled = check_bool(compiled, "compiled")
    if instance.skips:
        k = len(instance.skips)
        raise SolverError(f"the index solver handles forests without skips, but {instance.label} is a "
                          f"chain with {k:,} skip{'s' * (k != 1)}; use method='dp' (exact on a chain with skips) "
                          f"or 'auto'")
    y = np.inf if instance.fallback is None else lam * instance.fallback
    nodes = chain_nodes(instance) if compiled else None
    if nodes is not None:  # one chain: the same pass, compiled
        sigma, atoms, grid, surv = chain_pass(instance, nodes, lam, y)
        top = Surrogate(grid, surv)
        return IndexResult(sigma=sigma, value=float(top.mean()[0]), root_surrogate=top, atoms=atoms)
    kappa = 1.0 - lam
    scaled = instance.scaled_losses(lam)
    sigma: list[np.ndarray] = [np.empty(0)] * instance.n
    below: list[list[tuple[Surrogate, np.ndarray]]] = [[] for _ in range(instance.n)]
    at_roots: list[tuple[Surrogate, np.ndarray]] = []
    atoms = np.zeros(instance.n, dtype=np.int64)
    for v in instance.order[::-1]:
        z_v = combine(scaled[v], below[v])
        atoms[v] = len(z_v.grid)
        below[v] = []
        mixed = z_v.mix(instance.transitions[v])  # Z_v given the parent's state (or μ_v)
        sigma[v] = reservation_values(mixed, kappa * float(instance.costs[v]))
        parent = int(instance.parent[v])
        (below[parent] if parent >= 0 else at_roots).append((mixed, sigma[v]))
    top = combine(np.array([y]), at_roots)
    value = float(top.mean()[0])
    return IndexResult(sigma=sigma, value=value, root_surrogate=top, atoms=atoms)


def solve_index(instance: Instance, lam: float) -> tuple[float, IndexPolicy, IndexResult]:
    """The optimal recall value and the dynamic index policy."""
    res = compute_indices(instance, lam)
    return res.value, IndexPolicy(instance, lam, res.sigma), res
