"""The dynamic index strategy with recall on a forest (SPEC §3.1).

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
matrix* on a sorted grid ``g``: ``S[t, j] = P(Z_v > g_j | S_v = t)``, a step function that is
right-continuous and constant between grid points (and 1 below ``g_0``). Then

* mixing over a transition matrix is ``P @ S``;
* ``max(Z, σ)`` has survival 1 below ``σ`` and ``S`` from ``σ`` on;
* the minimum of independent variables multiplies survivals;

so every step is a dense NumPy operation over (states x grid); grid columns carrying no mass in
any row are dropped, which changes no step function.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import SolverError
from .instance import Instance
from .policy import IndexPolicy

#: Mass below this is treated as none when locating the least point of a support (κ c = 0).
MASS_TOL = 1e-13


@dataclass
class Surrogate:
    """``P(Z > grid[j] | row state) = survival[row, j]`` (a batch of step functions)."""

    grid: np.ndarray
    survival: np.ndarray

    def at(self, x: np.ndarray) -> np.ndarray:
        """The survival functions evaluated at the points ``x`` (shape ``(rows, len(x))``)."""
        pos = np.searchsorted(self.grid, x, side="right") - 1
        out = self.survival[:, np.maximum(pos, 0)]
        out[:, pos < 0] = 1.0
        return out

    def masses(self) -> np.ndarray:
        """``P(Z = grid[j] | row)``: drops of the survival function."""
        before = np.concatenate([np.ones((len(self.survival), 1)), self.survival[:, :-1]], axis=1)
        return before - self.survival

    def mix(self, P: np.ndarray) -> "Surrogate":
        """The surrogate given the parent's state: rows mixed by ``P[s, ·]``."""
        return Surrogate(self.grid, P @ self.survival)

    def mean(self) -> np.ndarray:
        """``E[Z | row]`` (every atom lies on the grid)."""
        return self.masses() @ self.grid


def reservation_values(z: Surrogate, target: float) -> np.ndarray:
    """Per row, the ``σ`` solving ``E[(σ − Z)^+] = target`` (Weitzman's reservation value).

    ``f(σ) = E[(σ − Z)^+]`` is continuous, increasing and piecewise linear with kinks on the
    grid: ``f(g_k) = F_{k−1} g_k − M_{k−1}`` with ``F_k = Σ_{j≤k} p_j``, ``M_k = Σ_{j≤k} p_j g_j``.
    Take the last ``k`` with ``f(g_k) ≤ target``; then ``σ = (target + M_k) / F_k``.
    For ``target = 0`` the answer is the least point of the support.
    """
    p = np.clip(z.masses(), 0.0, None)
    if target == 0.0:
        first = (p > MASS_TOL).argmax(axis=1)
        return z.grid[first]
    F = np.cumsum(p, axis=1)
    M = np.cumsum(p * z.grid, axis=1)
    f_at_grid = np.zeros_like(F)
    f_at_grid[:, 1:] = F[:, :-1] * z.grid[1:] - M[:, :-1]
    f_at_grid = np.maximum.accumulate(f_at_grid, axis=1)
    k = (f_at_grid <= target).sum(axis=1) - 1
    rows = np.arange(len(k))
    return (target + M[rows, k]) / F[rows, k]


def capped(z: Surrogate, sigma: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """Survival of ``max(Z, σ)`` per row, evaluated on ``grid``."""
    return np.where(grid[None, :] < sigma[:, None], 1.0, z.at(grid))


def point_masses(values: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """Survival of the constant ``values[row]`` on ``grid``."""
    return (grid[None, :] < values[:, None]).astype(float)


def combine(values: np.ndarray, parts: list[tuple[Surrogate, np.ndarray]]) -> Surrogate:
    """Survival of ``min(values[row], min over parts of max(Z_part, σ_part[row]))``.

    ``values`` may be ``+inf`` (no point mass), as for the start node without a fallback.
    """
    grid = np.concatenate([values] + [np.concatenate([z.grid, s]) for z, s in parts])
    grid = np.unique(grid[np.isfinite(grid)])  # +inf (no fallback) is never an atom
    surv = point_masses(values, grid)
    for z, s in parts:
        surv *= capped(z, s, grid)
    return prune(Surrogate(grid, surv))


def prune(z: Surrogate) -> Surrogate:
    """Drop grid points that carry no mass in any row (the step functions are unchanged)."""
    keep = (z.masses() != 0.0).any(axis=0)
    return Surrogate(z.grid[keep], z.survival[:, keep])


@dataclass
class IndexResult:
    """Indices ``sigma[v][s]`` (one entry for a root) and the optimal value."""

    sigma: list[np.ndarray]
    value: float
    root_surrogate: Surrogate


def compute_indices(instance: Instance, lam: float) -> IndexResult:
    """Surrogates bottom-up, the index of every node, and the optimal value (SPEC §3.1)."""
    if instance.skips:
        raise SolverError("the index solver handles forests without skips; use method='dp' on a chain with skips")
    kappa = 1.0 - lam
    scaled = instance.scaled_losses(lam)
    sigma: list[np.ndarray] = [np.empty(0)] * instance.n
    below: list[list[tuple[Surrogate, np.ndarray]]] = [[] for _ in range(instance.n)]
    at_roots: list[tuple[Surrogate, np.ndarray]] = []
    for v in instance.order[::-1]:
        z_v = combine(scaled[v], below[v])
        below[v] = []
        mixed = z_v.mix(instance.transitions[v])  # Z_v given the parent's state (or μ_v)
        sigma[v] = reservation_values(mixed, kappa * float(instance.costs[v]))
        parent = int(instance.parent[v])
        (below[parent] if parent >= 0 else at_roots).append((mixed, sigma[v]))
    y = np.inf if instance.fallback is None else lam * instance.fallback
    top = combine(np.array([y]), at_roots)
    value = float(top.mean()[0])
    return IndexResult(sigma=sigma, value=value, root_surrogate=top)


def solve_index(instance: Instance, lam: float) -> tuple[float, IndexPolicy, IndexResult]:
    """The optimal recall value and the dynamic index policy."""
    res = compute_indices(instance, lam)
    return res.value, IndexPolicy(instance, lam, res.sigma), res
