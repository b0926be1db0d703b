"""Monte-Carlo rollouts of any policy on an instance, vectorised over rollouts.

States are sampled lazily along the edges the policy takes (``μ_v`` for a root, the row
``P_e[s_source, ·]`` of the edge's matrix otherwise), costs are summed along those edges,
and the answer follows the policy's own rule (recall or not).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import SolverError
from .instance import Instance
from .policy import Policy, Rollout, rollout


@dataclass
class SimulationResult:
    """Means and standard errors over ``n`` rollouts; per-rollout arrays in ``samples``."""

    tradeoff: float
    loss: float
    cost: float
    tradeoff_se: float
    loss_se: float
    cost_se: float
    n: int
    samples: dict[str, np.ndarray]


def edge_sources(instance: Instance, nodes: np.ndarray, last: np.ndarray) -> np.ndarray:
    """The source of the edge used to consult ``nodes``: the parent, or on a chain with
    skips the last (deepest) exit consulted; ``-1`` is the start."""
    return last.copy() if instance.skips else instance.parent[nodes]


def edge_costs(instance: Instance, sources: np.ndarray, nodes: np.ndarray) -> np.ndarray:
    """Costs of the edges ``sources[b] -> nodes[b]``."""
    table = {(src, dst): cost for src, dst, cost, _ in instance.edges()}
    pairs = np.stack([sources, nodes], axis=1)
    uniq, inverse = np.unique(pairs, axis=0, return_inverse=True)
    return np.array([table[(int(a), int(b))] for a, b in uniq])[inverse.ravel()]


def edge_rows(instance: Instance, sources: np.ndarray, nodes: np.ndarray, states: np.ndarray) -> np.ndarray:
    """``P_e[s_source, ·]`` for each history (``μ`` from the start), padded to ``(B, K_max)``."""
    matrices = {(src, dst): P for src, dst, _, P in instance.edges()}
    out = np.zeros((len(nodes), int(instance.n_states.max())))
    pairs = np.stack([sources, nodes], axis=1)
    uniq, inverse = np.unique(pairs, axis=0, return_inverse=True)
    inverse = inverse.ravel()
    for k, (a, b) in enumerate(uniq):  # one pass per distinct edge, vectorised over histories
        sel = np.flatnonzero(inverse == k)
        given = np.zeros(len(sel), dtype=np.int64) if a < 0 else states[sel, a]
        P = matrices[(int(a), int(b))]
        out[sel, : P.shape[1]] = P[given]
    return out


class Sampler:
    """The ``reveal`` callback of :func:`ttamer.policy.rollout` that samples states and
    records the cost of every edge taken."""

    def __init__(self, instance: Instance, batch: int, rng: np.random.Generator) -> None:
        self.instance = instance
        self.rng = rng
        self.cost = np.zeros(batch)

    def __call__(self, rows, nodes, states_rows, last_rows) -> np.ndarray:
        src = edge_sources(self.instance, nodes, last_rows)
        self.cost[rows] += edge_costs(self.instance, src, nodes)
        cdf = np.cumsum(edge_rows(self.instance, src, nodes, states_rows), axis=1)
        u = self.rng.random(len(rows)) * cdf[:, -1]
        return (cdf <= u[:, None]).sum(axis=1)


def simulate(policy: Policy, n: int = 100_000, seed: int | np.random.Generator = 0) -> SimulationResult:
    """Roll ``policy`` out ``n`` times; mean trade-off ``λ loss + (1−λ) cost`` and its parts."""
    rng = np.random.default_rng(seed)
    sampler = Sampler(policy.instance, n, rng)
    run: Rollout = rollout(policy, n, sampler)
    loss = policy.answer_loss(run.states, run.last)
    tradeoff = policy.lam * loss + (1.0 - policy.lam) * sampler.cost
    se = lambda a: float(a.std(ddof=1) / np.sqrt(len(a))) if len(a) > 1 else float("nan")  # noqa: E731
    return SimulationResult(
        tradeoff=float(tradeoff.mean()), loss=float(loss.mean()), cost=float(sampler.cost.mean()),
        tradeoff_se=se(tradeoff), loss_se=se(loss), cost_se=se(sampler.cost), n=n,
        samples={"tradeoff": tradeoff, "loss": loss, "cost": sampler.cost, "states": run.states, "order": run.order},
    )


@dataclass
class ExactEvaluation:
    """Exact expectations of a policy over every outcome it can reach."""

    tradeoff: float
    loss: float
    cost: float
    outcomes: int


def evaluate_exactly(policy: Policy, max_outcomes: int = 1_000_000) -> ExactEvaluation:
    """``E[λ X + (1−λ) cost]``, ``E[X]`` and ``E[cost]`` of ``policy`` by enumerating outcomes.

    Histories are expanded breadth-first, one step of the policy at a time, each consulted
    node splitting a history into its ``K`` revealed states with their probabilities
    (zero-probability branches dropped). Exponential in the worst case; for small instances.
    """
    inst = policy.instance
    states = np.full((1, inst.n), -1, dtype=np.int64)
    last = np.full(1, -1, dtype=np.int64)
    prob, cost = np.ones(1), np.zeros(1)
    done: list[tuple[np.ndarray, ...]] = []
    for _ in range(inst.n + 1):
        nxt = np.asarray(policy.decide(states, last), dtype=np.int64)
        stop = nxt < 0
        done.append((states[stop], last[stop], prob[stop], cost[stop]))
        states, last, prob, cost, nxt = states[~stop], last[~stop], prob[~stop], cost[~stop], nxt[~stop]
        if len(nxt) == 0:
            break
        src = edge_sources(inst, nxt, last)
        cost = cost + edge_costs(inst, src, nxt)
        rows = edge_rows(inst, src, nxt, states)
        b_idx, t_idx = np.nonzero(rows)
        if len(b_idx) > max_outcomes:
            raise SolverError(f"more than {max_outcomes:,} outcomes: the instance is too large to enumerate")
        states = states[b_idx].copy()
        states[np.arange(len(b_idx)), nxt[b_idx]] = t_idx
        prob = prob[b_idx] * rows[b_idx, t_idx]
        last, cost = nxt[b_idx], cost[b_idx]
    states, last, prob, cost = (np.concatenate(parts) for parts in zip(*done))
    loss = policy.answer_loss(states, last)
    e_loss, e_cost = float(prob @ loss), float(prob @ cost)
    return ExactEvaluation(policy.lam * e_loss + (1 - policy.lam) * e_cost, e_loss, e_cost, len(prob))
