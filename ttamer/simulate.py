"""Monte-Carlo rollouts of any policy on an instance, vectorised over rollouts.

States are sampled lazily along the edges the policy takes (``μ_v`` for a root, the row
``P_e[s_source, ·]`` of the edge's matrix otherwise), costs are summed along those edges,
and the answer follows the policy's own rule (recall or not).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

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


class Sampler:
    """The ``reveal`` callback of :func:`ttamer.policy.rollout` that samples states and
    records the cost of every edge taken."""

    def __init__(self, instance: Instance, batch: int, rng: np.random.Generator) -> None:
        self.instance = instance
        self.rng = rng
        self.cost = np.zeros(batch)
        self.matrices = {(src, dst): np.cumsum(P, axis=1) for src, dst, _, P in instance.edges()}

    def __call__(self, rows, nodes, states_rows, last_rows) -> np.ndarray:
        src = edge_sources(self.instance, nodes, last_rows)
        self.cost[rows] += edge_costs(self.instance, src, nodes)
        out = np.empty(len(rows), dtype=np.int64)
        pairs = np.stack([src, nodes], axis=1)
        uniq, inverse = np.unique(pairs, axis=0, return_inverse=True)
        inverse = inverse.ravel()
        for k, (a, b) in enumerate(uniq):
            sel = np.flatnonzero(inverse == k)
            cum = self.matrices[(int(a), int(b))]
            given = np.zeros(len(sel), dtype=np.int64) if a < 0 else states_rows[sel, a]
            cdf = cum[given]
            u = self.rng.random(len(sel)) * cdf[:, -1]
            out[sel] = (cdf <= u[:, None]).sum(axis=1)
        return out


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
