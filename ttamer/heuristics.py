"""Threshold heuristics on chains, and the exact expected trade-off of any policy.

:func:`evaluate_exact` computes ``E[λ X + (1 − λ) cost]`` of a :class:`~ttamer.policy.Policy`
by enumerating every history it can produce (branching over the states each consulted node
may reveal, with their probabilities) -- no sampling. The batch of histories grows by a
factor ``K_v`` at each consultation, so it is meant for small instances (``Π K_v`` up to a
few million).

:class:`ThresholdPolicy` is the confidence-threshold early-exit rule (BranchyNet / SDN style)
on a chain: walk down the chain and stop at the first exit ``i`` with ``ℓ_i(s_i) ≤ τ``
(the last exit answers otherwise); without recall it answers with the exit it stopped at.
:func:`best_threshold` finds the best ``τ`` exactly: the value is a step function of ``τ``
whose steps sit at the loss values, so the candidates are the distinct losses.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import SolverError, TTamerError
from .instance import Instance
from .policy import STOP, Policy
from .simulate import edge_costs, edge_sources

#: Default cap on the number of histories :func:`evaluate_exact` holds at once.
MAX_HISTORIES = 4_000_000


@dataclass
class ExactValue:
    """Exact expectations of a policy: ``tradeoff = λ loss + (1 − λ) cost``."""

    tradeoff: float
    loss: float
    cost: float
    histories: int


def _expand(instance: Instance, states: np.ndarray, last: np.ndarray, prob: np.ndarray,
            nodes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Branch each history over the states ``nodes`` may reveal: rows repeated ``K_node``
    times, weighted by ``P_e[s_source, t]``; zero-probability branches dropped."""
    src = edge_sources(instance, nodes, last)
    mats = {(s, d): P for s, d, _, P in instance.edges()}
    kmax = int(instance.n_states.max())
    weights = np.zeros((len(nodes), kmax))
    for a, b in {(int(a), int(b)) for a, b in zip(src, nodes)}:
        sel = np.flatnonzero((src == a) & (nodes == b))
        given = np.zeros(len(sel), dtype=np.int64) if a < 0 else states[sel, a]
        P = mats[(a, b)]
        weights[sel, : P.shape[1]] = P[given]
    rows, t = np.nonzero(weights)
    new_states = states[rows].copy()
    new_states[np.arange(len(rows)), nodes[rows]] = t
    return new_states, nodes[rows], prob[rows] * weights[rows, t], rows


def evaluate_exact(policy: Policy, max_histories: int = MAX_HISTORIES) -> ExactValue:
    """The exact expected trade-off, loss and cost of ``policy`` on its instance."""
    inst = policy.instance
    n = inst.n
    states = np.full((1, n), -1, dtype=np.int64)
    last = np.full(1, -1, dtype=np.int64)
    prob = np.ones(1)
    paid = np.zeros(1)
    loss_sum = cost_sum = 0.0
    total = 0
    for step in range(n + 1):
        nxt = np.asarray(policy.decide(states, last), dtype=np.int64)
        stop = nxt == STOP
        if stop.any():
            x = policy.answer_loss(states[stop], last[stop])
            if not np.all(np.isfinite(x[prob[stop] > 0])):
                raise TTamerError("the policy stopped before consulting any model and the instance has no fallback")
            loss_sum += float(prob[stop] @ np.where(np.isfinite(x), x, 0.0))
            cost_sum += float(prob[stop] @ paid[stop])
            total += int(stop.sum())
        go = ~stop
        if not go.any():
            break
        if step == n:
            raise TTamerError("the policy asked to consult a node after every node was consulted")
        states, last, prob, paid, nodes = states[go], last[go], prob[go], paid[go], nxt[go]
        if np.any(states[np.arange(len(nodes)), nodes] >= 0):
            raise TTamerError("the policy asked to consult a node twice")
        paid = paid + edge_costs(inst, edge_sources(inst, nodes, last), nodes)
        states, last, prob, rows = _expand(inst, states, last, prob, nodes)
        paid = paid[rows]
        if len(states) > max_histories:
            raise SolverError(f"exact evaluation would hold {len(states):,} histories "
                              f"(> max_histories={max_histories:,}); use ttamer.simulate")
    lam = policy.lam
    return ExactValue(lam * loss_sum + (1.0 - lam) * cost_sum, loss_sum, cost_sum, total)


class ThresholdPolicy(Policy):
    """On a chain: consult exits in order, stop at the first exit with ``ℓ_i(s_i) ≤ τ``.

    ``tau = -inf`` runs to the last exit; ``tau = +inf`` stops at the first. With
    ``recall=True`` the same stopping rule answers with the best exit consulted.
    Skips, if any, are not used.
    """

    def __init__(self, instance: Instance, lam: float, tau: float, recall: bool = False) -> None:
        if not instance.is_chain:
            raise TTamerError(f"ThresholdPolicy needs a chain; got {instance!r}")
        if np.isnan(tau):
            raise TTamerError("tau must be a number, got nan")
        super().__init__(instance, lam, recall)
        self.tau = float(tau)
        order = instance.order
        self._next = np.full(instance.n, STOP, dtype=np.int64)
        self._next[order[:-1]] = order[1:]
        self._first = int(order[0])

    def decide(self, states: np.ndarray, last: np.ndarray) -> np.ndarray:
        last = np.asarray(last)
        cur = np.maximum(last, 0)
        loss = self._loss_table[cur, np.maximum(states[np.arange(len(last)), cur], 0)]
        cont = np.where(loss <= self.tau, STOP, self._next[cur])
        return np.where(last < 0, self._first, cont)

    def describe(self) -> str:
        kind = "recall" if self.recall else "no recall"
        return f"threshold rule ({kind}): stop at the first exit with loss <= {self.tau:.4g}, λ={self.lam:g}"


def threshold_candidates(instance: Instance) -> np.ndarray:
    """Every ``τ`` at which the threshold rule can change: ``-inf`` and the distinct losses."""
    return np.concatenate([[-np.inf], np.unique(np.concatenate(instance.losses))])


def best_threshold(instance: Instance, lam: float, recall: bool = False) -> tuple[float, ExactValue]:
    """The threshold ``τ`` of smallest exact expected trade-off, and that value."""
    best: tuple[float, ExactValue] | None = None
    for tau in threshold_candidates(instance):
        val = evaluate_exact(ThresholdPolicy(instance, lam, tau, recall))
        if best is None or val.tradeoff < best[1].tradeoff - 1e-15:
            best = (float(tau), val)
    assert best is not None
    return best
