r"""LP certificates: the instance as a finite MDP, its primal LP and the budgeted dual (the book's chapter *LP certificates and the error–cost frontier*).

An instance and ``λ`` define a finite-horizon MDP. A state ``x`` is the information gathered
so far; its actions are *stop* (pay ``λ X(x)``, where ``X`` is the loss answered with) or
*consult* an available node ``a`` (pay ``κ c_a``, ``κ = 1 − λ``, and move to ``x'`` with
probability ``P(x' | x, a)``). The trade-off is a cost to minimise, so the optimal value
``V*(x)`` is the smallest expected trade-off from ``x`` and it is the largest solution of the
Bellman inequalities: ``V*`` is the optimum of the linear program

.. math::

   \begin{aligned}
   \text{maximise}\quad & \sum_x \nu(x)\, V(x) \\
   \text{s.t.}\quad & V(x) \le \lambda X(x)
       && \text{(stop, where stopping is allowed)} \\
   & V(x) \le \kappa c_a + \sum_{x'} P(x' \mid x, a)\, V(x')
       && \text{(every consult action } a \text{ at } x\text{)}
   \end{aligned}

for any weights ``ν > 0`` (the MDP is acyclic, so every feasible ``V`` is ``≤ V*``
componentwise and ``V*`` is feasible). We take ``ν = 1`` on every state so that ``V = V*``
everywhere and the greedy action w.r.t. ``V`` is an optimal policy; the value of the instance
is ``V*(start)``.

The dual of the same constraint matrix with ``ν = δ_start`` is the LP over *occupation
measures* ``ρ(x, a) ≥ 0`` (expected number of times action ``a`` is taken at ``x``):
``Σ_a ρ(x, a) − Σ_{x', a'} P(x | x', a') ρ(x', a') = ν(x)``. The expected loss and the
expected cost of the (possibly randomised) policy ``π(a | x) ∝ ρ(x, a)`` are linear in ``ρ``,
so a *budget* is one more linear constraint:

.. math::

   \text{minimise}\quad \mathbb{E}[\text{loss}] = \sum_x \rho(x, \text{stop})\, X(x)
   \quad\text{s.t.}\quad \mathbb{E}[\text{cost}] = \sum_{x, a} \rho(x, a)\, c_a \le B.

Two state spaces are built, independently of the exhaustive DP of :mod:`ttamer.solvers.exhaustive`:

* ``"exhaustive"`` -- the states revealed by every consulted node (``-1`` = not consulted),
  plus the last node without recall. Availability: a node whose parent is consulted (a root
  at any time), never twice; on a chain with skips, the edges out of the deepest consulted
  exit (so the exits skipped over are lost). Exponential: :class:`~ttamer.core.errors.SolverError` past
  ``max_states``.
* ``"chain"`` -- on a chain (skips allowed): ``(i, s_i, X)`` with recall, ``X`` in the finite
  set ``{y} ∪ {ℓ_v(s)}`` (``+∞`` at the start when there is no fallback), and ``(i, s_i)``
  without recall. Polynomial.

Losses and costs are stored unscaled, so one MDP serves every ``λ`` and every budget.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp

from ..core.errors import SolverError, TTamerError
from ..core.instance import Instance, check_instance
from ..core.policy import STOP, ExhaustivePolicy, LastStatePolicy, Policy
from ..core.solution import SolveResult
from ..core.validate import (check_bool, check_count, check_integers, check_lam, check_numbers, check_real,
                              magnitude_log10, short_repr)

#: Default limit on the number of information states of the exhaustive space.
MAX_STATES = 50_000
#: Default limit on the number of states of the chain MDP (``Σ_v K_v`` times the number of
#: loss levels with recall), checked before it is built (override: ``max_chain_states=``).
MAX_CHAIN_STATES = 300_000
#: Largest number of entries of one array of an MDP's construction (information states ×
#: nodes, states × edges, edges × states², nodes × states × loss levels), checked before it is
#: allocated: the exhaustive space stores a whole history per state, so its memory grows with
#: the number of nodes as well as the number of states.
MAX_CELLS = 50_000_000
#: Largest number of (state, action, next state) transitions of the chain MDP's LP, checked
#: before they are built: the LP solver's memory grows with them (about 300 bytes each with
#: HiGHS), beyond what :data:`MAX_CHAIN_STATES` bounds where a chain has many skips.
MAX_LP_TRANSITIONS = 5_000_000
#: Two actions whose values differ by less than this are ties; the greedy policy then stops
#: (or consults the node of smallest position).
TIE_TOL = 1e-9


# ---------------------------------------------------------------------------------------------
# Edges, availability and one step of the information process
# ---------------------------------------------------------------------------------------------
class _Edges:
    """The edges of an instance as arrays: source (``-1`` = start), target, cost and the
    padded transition tensor ``P[e, s, t] = P(S_target = t | S_source = s)``."""

    def __init__(self, inst: Instance) -> None:
        edges = inst.edges()
        self.inst = inst
        self.src = np.array([e[0] for e in edges], dtype=np.int64)
        self.tgt = np.array([e[1] for e in edges], dtype=np.int64)
        self.cost = np.array([e[2] for e in edges], dtype=float)
        kmax = int(inst.n_states.max())
        check_cells(inst, len(edges) * kmax * kmax, f"its {len(edges):,} edges' transition matrices padded to "
                                                    f"{kmax:,} x {kmax:,} states")
        self.P = np.zeros((len(edges), kmax, kmax))
        for e, (_, _, _, P) in enumerate(edges):
            self.P[e, : P.shape[0], : P.shape[1]] = P
        self.skips = bool(inst.skips)
        self.pos = inst.chain_position if inst.is_chain else None

    def deepest(self, states: np.ndarray) -> np.ndarray:
        """Deepest consulted exit of a chain (``-1`` if none), shape ``(M,)``."""
        pos = np.where(states >= 0, self.pos[None, :], -1)
        d = pos.argmax(axis=1)
        return np.where(pos.max(axis=1, initial=-1) >= 0, d, -1)

    def source(self, states: np.ndarray, target: np.ndarray) -> np.ndarray:
        """The node an edge into ``target`` leaves from, given the history (``-1``: start)."""
        if self.skips:
            return self.deepest(states)
        return self.inst.parent[target]

    def available(self, states: np.ndarray) -> np.ndarray:
        """``(M, E)`` mask of the edges that may be taken now.

        Forest: target not consulted and source consulted (or the start). Chain with skips:
        the edge leaves the deepest consulted exit (the start before any consult).
        """
        if self.skips:
            return self.deepest(states)[:, None] == self.src[None, :]
        src_ok = (self.src < 0)[None, :] | (states[:, np.maximum(self.src, 0)] >= 0)
        return src_ok & (states[:, self.tgt] < 0)

    def expand(self, states: np.ndarray, edge: np.ndarray):
        """Take edge ``edge[m]`` from history ``states[m]``: every outcome of positive
        probability. Returns ``(parent m, new states, new last, probability)``."""
        s_src = np.where(self.src[edge] >= 0, states[np.arange(len(edge)), np.maximum(self.src[edge], 0)], 0)
        probs = self.P[edge, s_src]  # (M, kmax)
        m, t = np.nonzero(probs > 0)
        new = states[m].copy()
        tgt = self.tgt[edge[m]]
        new[np.arange(len(m)), tgt] = t
        return m, new, tgt, probs[m, t]


def check_cells(inst: Instance, cells: int, what: str) -> None:
    """Raise :class:`~ttamer.core.errors.SolverError` before an array of more than
    :data:`MAX_CELLS` entries (``what``) is built for ``inst``."""
    if cells > MAX_CELLS:
        raise SolverError(f"the LP of {inst.label} ({inst.n:,} nodes) would hold {cells:,} entries for "
                          f"{what}, above MAX_CELLS={MAX_CELLS:,}; the LP certifies small instances -- use "
                          f"method='index' (recall) or 'dp' (a chain), or a smaller instance")


def _loss_table(inst: Instance) -> np.ndarray:
    check_cells(inst, inst.n * int(inst.n_states.max()), "its losses padded to the largest node's states")
    table = np.full((inst.n, int(inst.n_states.max())), np.inf)
    for v, l in enumerate(inst.losses):
        table[v, : len(l)] = l
    return table


def _answer_loss(inst: Instance, table: np.ndarray, states: np.ndarray, last: np.ndarray,
                 recall: bool) -> np.ndarray:
    """``X``: with recall ``min(y, min ℓ_v(s_v))``, without ``ℓ_last(s_last)`` (``y`` before
    any consult); ``+∞`` when there is no fallback and nothing was consulted."""
    y = np.inf if inst.fallback is None else inst.fallback
    if recall:
        cols = np.arange(inst.n)
        cons = np.where(states >= 0, table[cols, np.maximum(states, 0)], np.inf)
        return np.minimum(cons.min(axis=1, initial=np.inf), y)
    lv = np.maximum(last, 0)
    got = table[lv, np.maximum(states[np.arange(len(last)), lv], 0)]
    return np.where(last >= 0, got, y)


# ---------------------------------------------------------------------------------------------
# The finite MDP
# ---------------------------------------------------------------------------------------------
@dataclass
class FiniteMDP:
    """A finite acyclic MDP with unscaled losses and costs.

    One row per (state, action): ``row_state``, ``row_action`` (node consulted, ``-1`` =
    stop), ``row_cost`` (``c`` of the edge, 0 for stop), ``row_loss`` (``X`` for stop, 0
    otherwise) and ``trans`` (sparse ``rows x states``: ``P(x' | x, a)``, empty for stop).
    ``keys`` describe the states: ``(states tuple..., last)`` for ``space="exhaustive"``,
    ``(node, state, level)`` for ``space="chain"`` (``levels[level]`` is ``X``; node ``-1``
    is the start).
    """

    instance: Instance
    recall: bool
    space: str
    keys: np.ndarray
    start: int
    row_state: np.ndarray
    row_action: np.ndarray
    row_cost: np.ndarray
    row_loss: np.ndarray
    trans: sp.csr_matrix
    levels: np.ndarray | None = None
    build_seconds: float = 0.0
    _A: sp.csr_matrix | None = field(default=None, repr=False)

    @property
    def n_states(self) -> int:
        return len(self.keys)

    @property
    def n_rows(self) -> int:
        return len(self.row_state)

    @property
    def A(self) -> sp.csr_matrix:
        """``A[row, x] = 1{x = row_state} − P(x | row)``: the primal constraints are
        ``A V ≤ r`` and the dual flow constraints ``Aᵀ ρ = ν``."""
        if self._A is None:
            E = sp.csr_matrix((np.ones(self.n_rows), (np.arange(self.n_rows), self.row_state)),
                              shape=(self.n_rows, self.n_states))
            self._A = (E - self.trans).tocsr()
        return self._A

    def rewards(self, lam: float) -> np.ndarray:
        """Immediate trade-off of each row: ``λ X`` for stop, ``κ c_a`` for a consult."""
        return lam * self.row_loss + (1.0 - lam) * self.row_cost

    def label(self, x: int) -> str:
        """A readable description of state ``x``."""
        names = self.instance.names
        key = self.keys[x]
        if self.space == "chain":
            node, s, lv = (int(k) for k in key)
            where = "start" if node < 0 else f"after {names[node]} revealed {s}"
            if not self.recall:
                return where
            X = np.inf if lv < 0 else self.levels[lv]
            return f"{where}, X={X:.4g}"
        seen = [f"{names[v]}={int(key[v])}" for v in range(self.instance.n) if key[v] >= 0]
        txt = "start" if not seen else ", ".join(seen)
        if not self.recall and key[-1] >= 0:
            txt += f" (last {names[int(key[-1])]})"
        return txt

    def action_name(self, a: int) -> str:
        return "stop" if a < 0 else f"consult {self.instance.names[a]}"


def _finish(inst, recall, space, keys, start, rows, trans_coo, levels, t0) -> FiniteMDP:
    row_state, row_action, row_cost, row_loss = (np.concatenate(r) for r in zip(*rows))
    r_idx, x_idx, p = (np.concatenate(c) for c in zip(*trans_coo)) if trans_coo else (
        np.zeros(0, int), np.zeros(0, int), np.zeros(0))
    trans = sp.csr_matrix((p, (r_idx, x_idx)), shape=(len(row_state), len(keys)))
    return FiniteMDP(inst, recall, space, keys, start, row_state, row_action.astype(np.int64),
                     row_cost, row_loss, trans, levels, time.perf_counter() - t0)


def _lse_rows(mask: np.ndarray, x: np.ndarray) -> np.ndarray:
    """``log Σ_{t: mask[s, t]} exp(x[t])`` for every row ``s`` (``-inf`` on an empty row)."""
    vals = np.where(mask, x[None, :], -np.inf)
    top = vals.max(axis=1, initial=-np.inf)
    safe = np.where(np.isfinite(top), top, 0.0)
    with np.errstate(divide="ignore"):
        return safe + np.log(np.exp(vals - safe[:, None]).sum(axis=1))


def _lse(terms: list[np.ndarray]) -> np.ndarray:
    """Elementwise ``log Σ exp`` of a list of equal-shape arrays."""
    return np.logaddexp.reduce(np.stack(terms), axis=0)


def exhaustive_mdp_log10(instance: Instance, recall: bool = True) -> float:
    r"""``log10`` of the number of states :func:`exhaustive_mdp` builds, from the instance's
    structure alone (without enumerating them).

    A state is reachable when its consulted nodes may be consulted in some order and its
    revealed states have positive joint probability, which factorises over the edges between
    consulted nodes. So the states are counted by dynamic programming, in ``log`` space (the
    count can be astronomically large), in ``O(Σ_e K_src K_tgt)`` time:

    * forest: the consulted sets are the subforests closed under "parent". ``A_v(s)``, the
      number of histories of ``v``'s subtree given its parent's state ``s``, is
      ``1 + Σ_{t: P_v[s, t] > 0} Π_c A_c(t)``, and the count is ``Π_roots A_ρ``. Without recall
      the last node consulted is a consulted node none of whose children is consulted, counted
      by ``B_v(s) = Σ_{t: P_v[s, t] > 0} (1 + Σ_c B_c(t) Π_{c' ≠ c} A_{c'}(t))``;
    * chain with skips: the consulted sets are the paths from the start along the edges;
      ``C_v(t)`` counts the paths ending at ``v`` with ``S_v = t`` (the last node is the
      deepest one, so recall does not change the count).

    Parameters
    ----------
    instance : Instance
        The instance.
    recall : bool, default True
        Whether the strategy may answer with any model consulted; without recall a state also
        keeps the last node consulted.

    Returns
    -------
    float
        ``log10`` of the number of states (the count is exact to float rounding).
    """
    check_instance(instance)
    recall = check_bool(recall, "recall")
    inst = instance
    if inst.skips:
        log_c: list[np.ndarray | None] = [None] * inst.n
        for src, tgt, _, P in sorted(inst.edges(), key=lambda e: int(inst.chain_position[e[1]])):
            into = np.where(P[0] > 0, 0.0, -np.inf) if src < 0 else _lse_rows(P.T > 0, log_c[src])
            log_c[tgt] = into if log_c[tgt] is None else np.logaddexp(log_c[tgt], into)
        ends = np.concatenate(log_c)  # every path from the start, by its deepest node and state
        return float(np.logaddexp(0.0, np.logaddexp.reduce(ends))) / np.log(10)
    log_a: list[np.ndarray] = [np.zeros(0)] * inst.n  # log A_v, indexed by the parent's state
    log_b: list[np.ndarray] = [np.zeros(0)] * inst.n  # log B_v (no recall)
    for v in inst.order[::-1]:
        kids = inst.children[v]
        below = sum((log_a[c] for c in kids), np.zeros(int(inst.n_states[v])))  # log Π_c A_c(t)
        mask = inst.transitions[v] > 0
        log_a[v] = np.logaddexp(0.0, _lse_rows(mask, below))
        if not recall:
            inner = np.zeros(len(below)) if not kids else np.logaddexp(
                0.0, below + _lse([log_b[c] - log_a[c] for c in kids]))
            log_b[v] = _lse_rows(mask, inner)
    roots = list(inst.roots)
    total = float(sum(log_a[r][0] for r in roots))
    if not recall:
        total = float(np.logaddexp(0.0, total + _lse([log_b[r] - log_a[r] for r in roots])[0]))
    return total / np.log(10)


def _alternatives(instance: Instance, recall: bool) -> str:
    """What to use instead of an LP too large for ``instance``."""
    if instance.is_chain:
        return "use space='chain' (polynomial on a chain) or method='dp'"
    if recall:
        return "use method='index' (exact with recall on a forest) or 'auto'"
    return ("no recall on a branching forest has no polynomial exact method: method='dp' gives the best "
            "descend-only strategy (an upper bound)")


def check_exhaustive_size(instance: Instance, recall: bool, max_states: int) -> None:
    """Refuse, before anything is built, an exhaustive space of more than ``max_states``
    states (:func:`exhaustive_mdp_log10`) or whose histories (one entry per node and state)
    would hold more than :data:`MAX_CELLS` entries. Takes ``O(Σ_e K_src K_tgt)`` time, however
    large the space.

    Parameters
    ----------
    instance : Instance
        The instance.
    recall : bool
        Whether the strategy may answer with any model consulted.
    max_states : int
        The largest number of states allowed.

    Raises
    ------
    SolverError
        The space is too large; the message gives its size, the limit and what to use instead.
    """
    check_instance(instance)
    recall = check_bool(recall, "recall")
    max_states = check_count(max_states, "max_states")
    inst = instance
    log10 = exhaustive_mdp_log10(inst, recall)
    count = round(10 ** log10) if log10 < 15 else None  # exact below 10^15, to rounding
    too_many = count is None or count > max_states
    too_big = count is None or count * (inst.n + 1) > MAX_CELLS
    if not (too_many or too_big):
        return
    why = []
    if too_many:
        why.append(f"above max_states={max_states:,}")
    if too_big:
        cells = magnitude_log10(log10 + np.log10(inst.n + 1))
        why.append(f"each a history of {inst.n:,} nodes: {cells} array entries, above MAX_CELLS={MAX_CELLS:,}")
    roots = len(inst.roots)
    raise SolverError(
        f"the exhaustive LP of {inst.label} ({inst.n:,} nodes, {roots:,} root{'s' * (roots != 1)}) "
        f"would have {magnitude_log10(log10)} information states (one LP variable each), {'; '.join(why)}; "
        f"the LP certifies small instances -- {_alternatives(inst, recall)}"
        f"{', or raise max_states' if not too_big else ''}")


def exhaustive_mdp(instance: Instance, recall: bool = True, max_states: int = MAX_STATES) -> FiniteMDP:
    """The MDP over information states "which nodes were consulted and what they revealed"
    (plus the last node without recall), built layer by layer (one layer per number of
    consults), vectorised over the states of a layer. Only states of positive probability.

    Raises :class:`~ttamer.core.errors.SolverError` before anything is built when more than
    ``max_states`` states would be needed (:func:`check_exhaustive_size`).
    """
    check_instance(instance)
    recall = check_bool(recall, "recall")
    t0 = time.perf_counter()
    inst, ed, table = instance, _Edges(instance), _loss_table(instance)
    check_exhaustive_size(inst, recall, max_states)
    n = inst.n
    cur = np.full((1, n), -1, dtype=np.int64)
    cur_last = np.full(1, -1, dtype=np.int64)
    keys, rows, coo = [], [], []
    offset, n_rows = 0, 0
    while len(cur):
        M = len(cur)
        check_cells(inst, M * len(ed.src), f"{M:,} information states x {len(ed.src):,} edges")
        ids = offset + np.arange(M)
        keys.append(np.concatenate([cur, cur_last[:, None]], axis=1))
        X = _answer_loss(inst, table, cur, cur_last, recall)
        ok = np.isfinite(X)
        rows.append((ids[ok], np.full(ok.sum(), STOP), np.zeros(ok.sum()), X[ok]))
        m_idx, e_idx = np.nonzero(ed.available(cur))
        k = len(m_idx)
        row_ids = n_rows + ok.sum() + np.arange(k)
        rows.append((ids[m_idx], ed.tgt[e_idx], ed.cost[e_idx], np.zeros(k)))
        n_rows += ok.sum() + k
        check_cells(inst, k * int(inst.n_states.max()) * (n + 1),
                    f"the outcomes of {k:,} consults, each a history of {n:,} nodes")
        par, new, new_last, prob = ed.expand(cur[m_idx], e_idx)
        if recall:
            new_last = np.full(len(new_last), -1, dtype=np.int64)
        if len(new) == 0:
            break
        uniq, inv = np.unique(np.concatenate([new, new_last[:, None]], axis=1), axis=0, return_inverse=True)
        nxt = offset + M
        if nxt + len(uniq) > max_states:
            raise SolverError(
                f"the exhaustive information-state space of {inst.label} ({n} nodes, "
                f"up to {int(inst.n_states.max())} states each) has more than max_states={max_states} states "
                f"(already {nxt + len(uniq)} after {int((cur[0] >= 0).sum()) + 1} consults); "
                f"use space='chain' on a chain or raise max_states")
        coo.append((row_ids[par], nxt + inv.ravel(), prob))
        offset = nxt
        cur, cur_last = uniq[:, :n], uniq[:, n]
    return _finish(inst, recall, "exhaustive", np.concatenate(keys), 0, rows, coo, None, t0)


def _levels(instance: Instance, recall: bool) -> np.ndarray:
    """The loss levels ``X`` of :func:`chain_mdp`, increasing: the distinct values of
    ``{y} ∪ {ℓ_v(s)}`` (one level, 0, without recall)."""
    if not recall:
        return np.zeros(1)
    y = instance.fallback
    return np.unique(np.concatenate(instance.losses + ([np.array([y])] if y is not None else [])))


def chain_mdp_size(instance: Instance, recall: bool = True) -> int:
    """Number of states :func:`chain_mdp` would build at most (computed without building it)."""
    check_instance(instance)
    recall = check_bool(recall, "recall")
    return 1 + int(instance.n_states.sum()) * len(_levels(instance, recall))


def chain_mdp(instance: Instance, recall: bool = True, *, max_chain_states: int = MAX_CHAIN_STATES) -> FiniteMDP:
    """The polynomial MDP of a chain (skips allowed).

    With recall a state is ``(i, s_i, X)``: the deepest exit consulted, its state and the best
    loss so far, ``X`` in ``levels`` = the sorted values ``{y} ∪ {ℓ_v(s)}`` (only
    ``X ≤ ℓ_i(s_i)`` and ``X ≤ y`` can occur). Without recall it is ``(i, s_i)``. The start
    has node ``-1`` and ``X = y`` (``+∞`` without a fallback: no stop there).
    """
    check_instance(instance)
    recall = check_bool(recall, "recall")
    inst = instance
    if not inst.is_chain:
        raise SolverError(f"space='chain' needs a chain, but {inst.label} is a forest with "
                          f"{len(inst.roots)} root(s) -- use space='exhaustive'")
    size = chain_mdp_size(inst, recall)
    if size > check_count(max_chain_states, "max_chain_states"):
        raise SolverError(f"the chain MDP of {inst.label} ({inst.n} nodes) would have {size:,} "
                          f"states, above max_chain_states={max_chain_states:,} (MAX_CHAIN_STATES); use "
                          f"method='dp' or 'index', or raise the limit")
    t0 = time.perf_counter()
    ed, table = _Edges(inst), _loss_table(inst)
    y = inst.fallback
    levels = _levels(inst, recall)
    M = len(levels)
    check_cells(inst, inst.n * table.shape[1] * M, "the (node, state, loss level) table")
    if recall:
        lev = np.where(np.isfinite(table), np.searchsorted(levels, np.where(np.isfinite(table), table, 0)), M)
        y_lev = M if y is None else int(np.searchsorted(levels, y))
        m_grid = np.arange(M)[None, None, :]
        valid = (m_grid <= lev[:, :, None]) & (m_grid <= y_lev)
    else:
        lev = np.zeros(table.shape, dtype=np.int64)
        y_lev = 0
        valid = np.isfinite(table)[:, :, None]
    valid &= np.isfinite(table)[:, :, None]
    ident = np.full(valid.shape, -1, dtype=np.int64)  # ident[v, s, m] -> state id (start is 0)
    v_i, s_i, m_i = np.nonzero(valid)
    ident[v_i, s_i, m_i] = 1 + np.arange(len(v_i))
    start_lev = (-1 if y is None else y_lev) if recall else 0
    keys = np.concatenate([[[-1, -1, start_lev]], np.stack([v_i, s_i, m_i], axis=1)]).astype(np.int64)
    # stop rows
    rows, coo = [], []
    X = levels[m_i] if recall else table[v_i, s_i]
    ids = 1 + np.arange(len(v_i))
    rows.append((ids, np.full(len(ids), STOP), np.zeros(len(ids)), X))
    if y is not None:
        rows.append((np.array([0]), np.array([STOP]), np.zeros(1), np.array([float(y)])))
    n_rows = sum(len(r[0]) for r in rows)
    # consult rows: state x at node v (or the start) takes every edge leaving v
    x_node = np.concatenate([[-1], v_i])
    x_state = np.concatenate([[0], s_i])
    x_lev = np.concatenate([[M if (recall and y is None) else start_lev], m_i])
    # pairs (state x, edge e leaving x's node), x-major: a sort, not a states x edges table
    by_src = np.argsort(ed.src, kind="stable")
    lo = np.searchsorted(ed.src[by_src], x_node, "left")
    counts = np.searchsorted(ed.src[by_src], x_node, "right") - lo
    transitions = int(counts.sum()) * int(inst.n_states.max())
    if transitions > MAX_LP_TRANSITIONS:
        raise SolverError(f"the chain MDP of {inst.label} ({inst.n} nodes, {len(inst.skips):,} skips) would have "
                          f"about {transitions:,} transitions, above MAX_LP_TRANSITIONS={MAX_LP_TRANSITIONS:,}; "
                          f"use method='dp' or 'index', or fewer skips")
    x_id = np.repeat(np.arange(len(x_node)), counts)
    e_id = by_src[np.repeat(lo, counts) + np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)]
    k = len(x_id)
    rows.append((x_id, ed.tgt[e_id], ed.cost[e_id], np.zeros(k)))
    probs = ed.P[e_id, x_state[x_id]]
    r, t = np.nonzero(probs > 0)
    tgt = ed.tgt[e_id[r]]
    new_lev = np.minimum(x_lev[x_id[r]], lev[tgt, t]) if recall else np.zeros(len(r), dtype=np.int64)
    coo.append((n_rows + r, ident[tgt, t, new_lev], probs[r, t]))
    return _finish(inst, recall, "chain", keys, 0, rows, coo, levels if recall else None, t0)


def build_mdp(instance: Instance, recall: bool = True, space: str = "auto",
              max_states: int = MAX_STATES, *, max_chain_states: int = MAX_CHAIN_STATES) -> FiniteMDP:
    """``space``: ``"chain"`` (polynomial, chains only), ``"exhaustive"`` or ``"auto"``
    (chain on a chain, exhaustive otherwise)."""
    check_instance(instance)
    recall = check_bool(recall, "recall")
    if not isinstance(space, str):
        raise SolverError(f"space must be 'auto', 'chain' or 'exhaustive', got {type(space).__name__}")
    if space == "auto":
        space = "chain" if instance.is_chain else "exhaustive"
    if space == "chain":
        return chain_mdp(instance, recall, max_chain_states=max_chain_states)
    if space == "exhaustive":
        return exhaustive_mdp(instance, recall, max_states)
    raise SolverError(f"unknown space {space!r}; expected 'auto', 'chain' or 'exhaustive'")


# ---------------------------------------------------------------------------------------------
# Solvers
# ---------------------------------------------------------------------------------------------
_BANNER_SILENCED = False


def _silence_highs_banner() -> None:
    """HiGHS prints a copyright banner on stdout (file descriptor 1, from C++) the first time a
    solver object is built in a process; build that first one with fd 1 sent to /dev/null."""
    global _BANNER_SILENCED
    if _BANNER_SILENCED:
        return
    _BANNER_SILENCED = True
    try:
        import highspy
    except ImportError:  # pragma: no cover - HiGHS not installed
        return
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 1)
            highspy.Highs()
    finally:
        os.dup2(saved, 1)
        os.close(saved)


def default_solver() -> str:
    """HiGHS when cvxpy has it, else Clarabel."""
    import cvxpy as cp

    if "HIGHS" in cp.installed_solvers():
        _silence_highs_banner()
        return "HIGHS"
    return "CLARABEL"


def _resolve_solver(solver: str | None) -> str:
    solver = default_solver() if solver is None else str(solver).upper()
    if solver == "HIGHS":
        _silence_highs_banner()
    return solver


#: Solver options, with tolerances tighter than the defaults (1e-7), so that LP values match the
#: exact solvers to about 1e-9 rather than 1e-7.
SOLVER_OPTIONS = {
    "HIGHS": {"primal_feasibility_tolerance": 1e-10, "dual_feasibility_tolerance": 1e-10},
    "CLARABEL": {"tol_gap_abs": 1e-10, "tol_gap_rel": 1e-10, "tol_feas": 1e-10},
}


#: Rewards of magnitude beyond this are out of reach of an LP solver's absolute tolerances.
LP_SCALE = 1e9


def _scale_hint(rewards: np.ndarray) -> str:
    """A hint for a failed solve whose rewards are far from 1 (empty if they are not)."""
    big = float(np.abs(rewards).max(initial=0.0))
    if big <= LP_SCALE:
        return ""
    return (f" (its losses and costs reach {big:.3g}; an LP solver works to absolute tolerances near 1e-9, so "
            f"rescale them to about 1, or use method='index' or 'dp')")


def _check_lam(lam: float) -> float:
    try:
        return check_lam(lam)
    except TTamerError as exc:
        raise SolverError(str(exc)) from None


def _check_tol(tol: Any) -> float:
    """A tolerance: a finite number ``>= 0``, else a :class:`~ttamer.core.errors.SolverError` naming ``tol``."""
    try:
        return check_real(tol, "tol", low=0.0)
    except TTamerError as exc:
        raise SolverError(str(exc)) from None


@dataclass
class LPValues:
    """The primal LP's solution: ``V`` on every state, the greedy action per state."""

    mdp: FiniteMDP
    lam: float
    V: np.ndarray
    value: float
    action: np.ndarray
    solver: str
    status: str
    solve_seconds: float


def check_mdp(mdp: Any, V: Any = None) -> np.ndarray | None:
    """Raise :class:`~ttamer.core.errors.SolverError` unless ``mdp`` is a :class:`FiniteMDP`
    (:func:`build_mdp` makes one) and ``V``, where given, one finite value per state of it;
    return ``V`` as a float array."""
    if not isinstance(mdp, FiniteMDP):
        raise SolverError(f"mdp must be a FiniteMDP (build_mdp makes one), got {type(mdp).__name__}")
    if V is None:
        return None
    try:
        V = check_numbers(V, "V (values per state)")
    except TTamerError as exc:
        raise SolverError(str(exc)) from None
    if len(V) != mdp.n_states:
        raise SolverError(f"V must hold one value per state of the MDP ({mdp.n_states:,}), got {len(V):,}")
    return V


def primal_lp(mdp: FiniteMDP, lam: float, solver: str | None = None) -> LPValues:
    """Solve ``max Σ_x V(x)  s.t.  A V ≤ r_λ`` (module docstring) and take the greedy action."""
    import cvxpy as cp

    check_mdp(mdp)
    lam = _check_lam(lam)
    solver = _resolve_solver(solver)
    r = mdp.rewards(lam)
    V = cp.Variable(mdp.n_states)
    prob = cp.Problem(cp.Maximize(cp.sum(V)), [mdp.A @ V <= r])
    t0 = time.perf_counter()
    try:
        prob.solve(solver=solver, **SOLVER_OPTIONS.get(solver, {}))
    except cp.error.SolverError as exc:
        raise SolverError(f"LP solver {solver} failed on {mdp.instance.label}: {exc}") from None
    secs = time.perf_counter() - t0
    if prob.status != cp.OPTIMAL:
        raise SolverError(f"LP solver {solver} returned status {prob.status!r} on {mdp.instance.label}"
                          f"{_scale_hint(r)}")
    v = np.asarray(V.value, dtype=float)
    return LPValues(mdp, lam, v, float(v[mdp.start]), greedy_actions(mdp, lam, v), solver, prob.status, secs)


def action_values(mdp: FiniteMDP, lam: float, V: np.ndarray) -> np.ndarray:
    """``Q(row) = r_λ(row) + Σ_x' P(x' | row) V(x')`` for every (state, action) row."""
    V = check_mdp(mdp, V)
    return mdp.rewards(_check_lam(lam)) + mdp.trans @ V


def optimal_rows(mdp: FiniteMDP, lam: float, V: np.ndarray, tol: float = TIE_TOL) -> np.ndarray:
    """Mask of the rows whose action is optimal: ``Q(row) ≤ min_a Q(x, a) + tol``.

    Raises
    ------
    SolverError
        ``tol`` is not a finite number ``>= 0``, or ``mdp``, ``lam`` or ``V`` is not valid.
    """
    tol = _check_tol(tol)
    q = action_values(mdp, lam, V)
    best = np.full(mdp.n_states, np.inf)
    np.minimum.at(best, mdp.row_state, q)
    return q <= best[mdp.row_state] + tol


def action_table(mdp: FiniteMDP, lam: float, V: np.ndarray | None = None,
                 tol: float = TIE_TOL) -> dict[str, np.ndarray]:
    r"""Every (state, action) row of ``mdp`` with its value and whether it is optimal, as columns.

    .. math::

       Q(x, a) = r_\lambda(x, a) + \sum_{x'} P(x' \mid x, a)\, V(x'),

    with ``V`` the LP's optimal values (:func:`primal_lp` if not given).

    Returns
    -------
    dict of ndarray
        ``x`` (state index), ``action`` (node consulted, ``-1`` = stop), ``Q`` and ``optimal``
        (within ``tol`` of the state's best row); on the chain space also the state's ``node``
        (``-1`` = start), revealed state ``s`` and ``X`` (the best answer's loss scaled by
        ``λ``, ``inf`` before any exit).
    """
    V = primal_lp(mdp, lam).V if V is None else check_mdp(mdp, V)
    out = {"x": mdp.row_state, "action": mdp.row_action, "Q": action_values(mdp, lam, V),
           "optimal": optimal_rows(mdp, lam, V, tol)}
    if mdp.space == "chain":
        node, s, m = mdp.keys[mdp.row_state].T
        out |= {"node": node, "s": s, "X": np.where(m >= 0, lam * mdp.levels[np.maximum(m, 0)], np.inf)}
    return out


def greedy_actions(mdp: FiniteMDP, lam: float, V: np.ndarray, tol: float = TIE_TOL) -> np.ndarray:
    """Per state, the action minimising ``r_λ(row) + P(row) V``; within ``tol`` of the
    minimum, stop first, then the node of smallest position."""
    cand = optimal_rows(mdp, lam, V, tol)
    order = np.lexsort((mdp.row_action, ~cand, mdp.row_state))
    first = order[np.r_[True, np.diff(mdp.row_state[order]) != 0]]
    action = np.empty(mdp.n_states, dtype=np.int64)
    action[mdp.row_state[first]] = mdp.row_action[first]
    return action


def check_actions(mdp: FiniteMDP, action: Any) -> np.ndarray:
    """``action`` as an ``int64`` array of one action per state of ``mdp``, each an action of
    its state (a row of the MDP: ``-1`` to stop where stopping is allowed, or an available node).

    Raises
    ------
    SolverError
        ``action`` is not a 1-D integer array of length ``mdp.n_states``, or one of its
        entries is not an action of its state (the entry, the state and its actions are named).
    """
    check_mdp(mdp)
    n = mdp.instance.n
    what = "action (one per state of the MDP)"
    try:
        act = check_integers(action, what, -1, n - 1, max_len=mdp.n_states)
    except TTamerError as exc:
        raise SolverError(f"{exc} (-1: stop, v: consult node v)") from None
    if len(act) != mdp.n_states:
        raise SolverError(f"action must hold one action per state of the MDP ({mdp.n_states:,}), got {len(act):,}")
    allowed = mdp.row_state.astype(np.int64) * (n + 1) + (mdp.row_action + 1)
    bad = ~np.isin(np.arange(mdp.n_states, dtype=np.int64) * (n + 1) + (act + 1), allowed)
    if bad.any():
        x = int(np.argmax(bad))
        names = ", ".join(mdp.action_name(int(a)) for a in mdp.row_action[mdp.row_state == x])
        raise SolverError(f"action[{x}] = {int(act[x])} ({mdp.action_name(int(act[x]))}) is not an action of "
                          f"state {x} ({short_repr(mdp.label(x), 120)}); its actions are: {names}")
    return act


def policy_from_actions(mdp: FiniteMDP, lam: float, action: np.ndarray) -> Policy:
    """A :class:`~ttamer.core.policy.Policy` that plays ``action[x]`` in state ``x``.

    Exhaustive space: an :class:`~ttamer.core.policy.ExhaustivePolicy` keyed by ``(states tuple, last or -1)``.
    Chain space: a :class:`~ttamer.core.policy.LastStatePolicy` with ``table[v][s, m]`` and levels ``λ X``
    (``+∞`` appended without a fallback).

    Raises
    ------
    SolverError
        ``lam`` is not in ``[0, 1]``, or ``action`` is not one action of its state per state
        of ``mdp`` (:func:`check_actions`).
    """
    lam = _check_lam(lam)
    action = check_actions(mdp, action)
    inst = mdp.instance
    if mdp.space == "exhaustive":
        acts = {(tuple(int(s) for s in k[:-1]), int(k[-1])): int(a) for k, a in zip(mdp.keys, action)}
        return ExhaustivePolicy(inst, lam, mdp.recall, acts)
    node, s, m = mdp.keys.T
    inner = node >= 0
    if mdp.recall:
        levels = lam * mdp.levels
        if inst.fallback is None:
            levels = np.append(levels, np.inf)
        Mp = len(levels)
        table = [np.full((inst.n_states[v], Mp), STOP, dtype=np.int64) for v in range(inst.n)]
        for v in range(inst.n):
            sel = inner & (node == v)
            grid = table[v]
            grid[s[sel], m[sel]] = action[sel]
            # X never exceeds ℓ_v(s) after v: fill those unreachable cells from the largest valid X
            for st in range(inst.n_states[v]):
                ms = m[sel & (s == st)]
                if len(ms):
                    grid[st, ms.max() + 1:] = grid[st, ms.max()]
        start = np.full(Mp, action[mdp.start], dtype=np.int64)
        return LastStatePolicy(inst, lam, True, table, start, levels)
    table = [np.full((inst.n_states[v], 1), STOP, dtype=np.int64) for v in range(inst.n)]
    for v in range(inst.n):
        sel = inner & (node == v)
        table[v][s[sel], 0] = action[sel]
    return LastStatePolicy(inst, lam, False, table, np.array([action[mdp.start]], dtype=np.int64))


def solve_lp(instance: Instance, lam: float, recall: bool = True, space: str = "auto",
             solver: str | None = None, max_states: int = MAX_STATES, *,
             max_chain_states: int = MAX_CHAIN_STATES) -> SolveResult:
    """Optimal expected trade-off by the primal LP (method ``"lp"`` of :func:`~ttamer.solvers.solve.solve`).

    Parameters
    ----------
    instance : Instance
        The instance to solve.
    lam : float
        The weight of the loss, in ``[0, 1]``.
    recall : bool, default True
        Whether the strategy may answer with any model it consulted.
    space : {"auto", "chain", "exhaustive"}
        The state space of the Markov decision process (:func:`build_mdp`).
    solver : str, optional
        The cvxpy solver (default :func:`default_solver`).
    max_states : int, default MAX_STATES
        Largest exhaustive state space built.
    max_chain_states : int, default MAX_CHAIN_STATES
        Largest ``(i, s, X)`` state space built on a chain.

    Returns
    -------
    SolveResult
        ``value`` is ``V*(start)``; the policy plays the greedy action with respect to the LP's
        ``V``; ``n_states`` is the size of the state space and ``lp`` the :class:`LPValues`
        (solver, status, timings, ``V`` and the ``mdp``).
    """
    lam = _check_lam(lam)
    mdp = build_mdp(instance, recall, space, max_states, max_chain_states=max_chain_states)
    sol = primal_lp(mdp, lam, solver)
    policy = policy_from_actions(mdp, sol.lam, sol.action)
    return SolveResult(value=sol.value, policy=policy, method="lp", lam=sol.lam, recall=recall,
                       n_states=mdp.n_states, lp=sol)


# ---------------------------------------------------------------------------------------------
# Budgeted LP over occupation measures
# ---------------------------------------------------------------------------------------------
@dataclass
class BudgetResult:
    """Least expected loss under ``E[cost] ≤ budget`` and the randomised policy achieving it.

    ``occupation[row]`` is ``ρ(x, a)``; ``table`` lists, for every state of positive mass,
    ``{"state", "label", "mass", "actions": {action: probability}}``; ``randomised`` lists the
    states where more than one action carries mass (at most one for a basic solution).
    """

    budget: float
    loss: float
    cost: float
    occupation: np.ndarray
    table: list[dict]
    randomised: list[int]
    mdp: FiniteMDP
    solver: str
    status: str
    solve_seconds: float

    @property
    def policy_mixture(self) -> list[dict]:
        """The randomised policy, ``table`` (states of positive mass, action probabilities)."""
        return self.table

    def describe(self) -> str:
        lines = [f"budget {self.budget:.4g}: E[loss]={self.loss:.6g}, E[cost]={self.cost:.6g}"]
        for row in self.table:
            acts = ", ".join(f"{self.mdp.action_name(a)} w.p. {p:.4g}" for a, p in row["actions"].items())
            mark = "  (randomised)" if row["state"] in self.randomised else ""
            lines.append(f"  [{row['mass']:.4g}] {row['label']}: {acts}{mark}")
        return "\n".join(lines)


class BudgetedLP:
    """``min Σ ρ(x, stop) X(x)  s.t.  Aᵀ ρ = δ_start,  ρ ≥ 0,  Σ ρ c ≤ B`` with ``B`` a cvxpy
    parameter, so a sweep over budgets compiles the problem once."""

    def __init__(self, mdp: FiniteMDP, solver: str | None = None) -> None:
        import cvxpy as cp

        self.mdp, self.solver = mdp, _resolve_solver(solver)
        nu = np.zeros(mdp.n_states)
        nu[mdp.start] = 1.0
        self.rho = cp.Variable(mdp.n_rows, nonneg=True)
        self.B = cp.Parameter(nonneg=True)
        cons = [mdp.A.T @ self.rho == nu, mdp.row_cost @ self.rho <= self.B]
        self.problem = cp.Problem(cp.Minimize(mdp.row_loss @ self.rho), cons)

    def min_cost(self) -> float:
        """Least expected cost of any policy (``λ = 0``), by the primal LP."""
        return primal_lp(self.mdp, 0.0, self.solver).value

    def solve(self, budget: float, tol: float = 1e-9) -> BudgetResult:
        """The least expected loss with expected cost ``≤ budget``; states of occupation mass
        ``≤ tol`` (a finite number ``>= 0``) are left out of the policy's table."""
        import cvxpy as cp

        try:  # a number, never a string or a flag converted
            budget = check_real(budget, "budget", low=0.0)
        except TTamerError as exc:
            raise SolverError(str(exc)) from None
        tol = _check_tol(tol)
        self.B.value = budget
        t0 = time.perf_counter()
        try:
            self.problem.solve(solver=self.solver, **SOLVER_OPTIONS.get(self.solver, {}))
        except cp.error.SolverError as exc:
            raise SolverError(f"budgeted LP: solver {self.solver} failed: {exc}") from None
        secs = time.perf_counter() - t0
        if self.problem.status in (cp.INFEASIBLE, cp.INFEASIBLE_INACCURATE):
            raise SolverError(f"budget {budget:.6g} is below the least expected cost "
                              f"{self.min_cost():.6g} of {self.mdp.instance.label}")
        if self.problem.status != cp.OPTIMAL:
            raise SolverError(f"budgeted LP: solver {self.solver} returned status {self.problem.status!r}")
        rho = np.maximum(np.asarray(self.rho.value, dtype=float), 0.0)
        table, randomised = _mixture(self.mdp, rho, tol)
        return BudgetResult(budget, float(self.mdp.row_loss @ rho), float(self.mdp.row_cost @ rho), rho,
                            table, randomised, self.mdp, self.solver, self.problem.status, secs)


def _mixture(mdp: FiniteMDP, rho: np.ndarray, tol: float) -> tuple[list[dict], list[int]]:
    mass = np.bincount(mdp.row_state, weights=rho, minlength=mdp.n_states)
    table, randomised = [], []
    for x in np.flatnonzero(mass > tol):
        rows = np.flatnonzero((mdp.row_state == x) & (rho > tol))
        acts = {int(mdp.row_action[r]): float(rho[r] / mass[x]) for r in rows}
        table.append({"state": int(x), "label": mdp.label(int(x)), "mass": float(mass[x]), "actions": acts})
        if len(acts) > 1:
            randomised.append(int(x))
    return table, randomised


def budgeted_lp(instance: Instance, budget: float, recall: bool = True, space: str = "auto",
                solver: str | None = None, max_states: int = MAX_STATES) -> BudgetResult:
    """Least expected loss of any (possibly randomised) strategy with expected cost
    ``≤ budget``: the dual LP over occupation measures (module docstring).

    Raises :class:`~ttamer.core.errors.SolverError` if the budget is below the least achievable expected cost.
    """
    return BudgetedLP(build_mdp(instance, recall, space, max_states), solver).solve(budget)
