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
from .policy import Policy, Rollout, check_policy, next_nodes, rollout
from .validate import check_count, check_seed, short_repr

#: Rollouts are run in chunks of at most this many ``(rollout, node)`` cells, so memory stays
#: bounded whatever ``n`` and the instance size (override: ``max_cells=``). The per-rollout
#: ``states`` and ``order`` arrays are kept only when everything fits in one chunk.
MAX_SIM_CELLS = 4_000_000
#: Largest number of rollouts one call may ask for (override it with ``max_samples=``).
MAX_SAMPLES = 50_000_000
#: :func:`evaluate_exactly` refuses a step whose histories, grown by the node consulted, hold
#: more numbers than this (histories x (nodes + 1), 8 bytes each, a few copies while they are
#: merged), before it builds them: memory and time stay bounded on any instance.
MAX_HISTORY_CELLS = 1 << 25


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


def edge_sources(instance: Instance, nodes: np.ndarray, last: np.ndarray,
                 states: np.ndarray | None = None) -> np.ndarray:
    """The source of the edge used to consult ``nodes``: the parent, or on a chain with
    skips the last (deepest) exit consulted; ``-1`` is the start.

    With ``states`` given, checks that the nodes are available (parent consulted).
    """
    src = last.copy() if instance.skips else instance.parent[nodes]
    if states is not None:
        bad = (src >= 0) & (states[np.arange(len(nodes)), np.maximum(src, 0)] < 0)
        if bad.any():
            v = int(nodes[bad][0])
            raise SolverError(f"the policy consults node {short_repr(instance.nodes[v].name)}, which is not available "
                              f"(its parent has not been consulted)")
    return src


def edge_costs(instance: Instance, sources: np.ndarray, nodes: np.ndarray) -> np.ndarray:
    """Costs of the edges ``sources[b] -> nodes[b]``."""
    table = {(src, dst): cost for src, dst, cost, _ in instance.edges()}
    pairs = np.stack([sources, nodes], axis=1)
    uniq, inverse = np.unique(pairs, axis=0, return_inverse=True)
    missing = [(int(a), int(b)) for a, b in uniq if (int(a), int(b)) not in table]
    if missing:
        a, b = missing[0]
        frm = "the start" if a < 0 else short_repr(instance.nodes[a].name)
        raise SolverError(f"the policy consults node {short_repr(instance.nodes[b].name)} from {frm}: no such edge")
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
    """The ``reveal`` callback of :func:`ttamer.core.policy.rollout` that samples states and
    records the cost of every edge taken."""

    def __init__(self, instance: Instance, batch: int, rng: np.random.Generator) -> None:
        self.instance = instance
        self.rng = rng
        self.cost = np.zeros(batch)

    def __call__(self, rows, nodes, states_rows, last_rows) -> np.ndarray:
        src = edge_sources(self.instance, nodes, last_rows, states_rows)
        self.cost[rows] += edge_costs(self.instance, src, nodes)
        cdf = np.cumsum(edge_rows(self.instance, src, nodes, states_rows), axis=1)
        u = self.rng.random(len(rows)) * cdf[:, -1]
        return (cdf <= u[:, None]).sum(axis=1)


def simulate(policy: Policy, n: int = 100_000, seed: int | np.random.Generator = 0, *,
             max_cells: int = MAX_SIM_CELLS, max_samples: int = MAX_SAMPLES) -> SimulationResult:
    r"""Roll ``policy`` out ``n`` times: the mean trade-off and its parts, with standard errors.

    Rollout :math:`r` draws the states lazily along the edges the policy takes
    (:math:`\mu_v` for a root, the row :math:`P_e[s_{\mathrm{source}}, \cdot]` of the edge's
    matrix otherwise), pays the costs :math:`c_e` of those edges and answers with loss
    :math:`X_r` by the policy's own rule (recall or not). The estimate of the expected
    trade-off is

    .. math::

       \hat\theta_\lambda = \frac{1}{n} \sum_{r=1}^{n} \Big(\lambda\, X_r
       + (1 - \lambda) \sum_{e \text{ used in } r} c_e\Big),

    with :math:`\lambda` the policy's ``lam``; :func:`evaluate_exactly` computes the same
    expectation with no sampling.

    Parameters
    ----------
    policy : Policy
        The policy to roll out (its instance and :math:`\lambda` come with it).
    n : int, default 100000
        Number of rollouts, at most ``max_samples``.
    seed : int or numpy.random.Generator, default 0
        A non-negative integer seed, or a generator to draw from.
    max_cells : int, default MAX_SIM_CELLS
        Rollouts run in chunks of at most ``max_cells // instance.n`` (:data:`MAX_SIM_CELLS`),
        so memory stays bounded.
    max_samples : int, default MAX_SAMPLES
        Largest ``n`` accepted (:data:`MAX_SAMPLES`).

    Returns
    -------
    SimulationResult
        The means of the trade-off, the loss and the cost, their standard errors, ``n``, and
        ``samples``: the per-rollout ``tradeoff``, ``loss`` and ``cost``, plus ``states`` and
        ``order`` (``(n, nodes)``) when a single chunk covers every rollout.

    Raises
    ------
    TTamerError
        An argument is invalid, or a chunk of ``max_cells`` is above
        :data:`~ttamer.core.policy.MAX_ROLLOUT_CELLS`.
    SolverError
        The policy consults a node that is not available, or its ``decide`` breaks its
        contract (:func:`~ttamer.core.policy.next_nodes`).
    """
    policy = check_policy(policy)
    n = check_count(n, "n (number of rollouts)", minimum=1, maximum=check_count(max_samples, "max_samples"))
    seed = check_seed(seed, allow_generator=True)
    max_cells = check_count(max_cells, "max_cells")
    rng = np.random.default_rng(seed)
    chunk = max(1, max_cells // policy.instance.n)
    parts = []
    for start in range(0, n, chunk):
        b = min(chunk, n - start)
        sampler = Sampler(policy.instance, b, rng)
        run: Rollout = rollout(policy, b, sampler)
        loss = policy.answer_loss(run.states, run.last)
        keep = (run.states, run.order) if b == n else None
        parts.append((loss, sampler.cost, keep))
    loss = np.concatenate([p[0] for p in parts])
    cost = np.concatenate([p[1] for p in parts])
    tradeoff = policy.lam * loss + (1.0 - policy.lam) * cost
    se = lambda a: float(a.std(ddof=1) / np.sqrt(len(a))) if len(a) > 1 else float("nan")  # noqa: E731
    samples = {"tradeoff": tradeoff, "loss": loss, "cost": cost}
    if parts[0][2] is not None:
        samples["states"], samples["order"] = parts[0][2]
    return SimulationResult(
        tradeoff=float(tradeoff.mean()), loss=float(loss.mean()), cost=float(cost.mean()),
        tradeoff_se=se(tradeoff), loss_se=se(loss), cost_se=se(cost), n=n, samples=samples,
    )


@dataclass
class ExactEvaluation:
    """Exact expectations of a policy over every outcome it can reach."""

    tradeoff: float
    loss: float
    cost: float
    outcomes: int


def evaluate_exactly(policy: Policy, max_histories: int = 4_000_000) -> ExactEvaluation:
    r"""The expected trade-off, loss and cost of ``policy``, computed exactly with no simulation.

    With :math:`\lambda` the policy's ``lam``, :math:`X` the loss it answers with and the sum
    over the edges it uses,

    .. math::

       \mathbb{E}[\theta_\lambda] = \lambda\, \mathbb{E}[X]
       + (1 - \lambda)\, \mathbb{E}\Big[\sum_{e \text{ used}} c_e\Big].

    The probability of every history is pushed through ``policy.decide`` one step at a time:
    each consulted node splits a history into the states it may reveal, weighted by
    :math:`P_e[s_{\mathrm{source}}, t]` (zero-probability branches dropped), and histories
    that coincide in ``(states, last)`` are merged.

    Parameters
    ----------
    policy : Policy
        The policy to evaluate (its instance and :math:`\lambda` come with it).
    max_histories : int, default 4000000
        Largest number of distinct histories held at once (a positive integer).

    Returns
    -------
    ExactEvaluation
        :math:`\mathbb{E}[\theta_\lambda]`, :math:`\mathbb{E}[X]`, the expected cost, and the
        number of outcomes (histories at which the policy stops).

    Raises
    ------
    TTamerError
        ``policy`` is not a :class:`~ttamer.core.policy.Policy`, or ``max_histories`` is not a
        positive integer.
    SolverError
        The policy consults an unavailable node, its ``decide`` breaks its contract
        (:func:`~ttamer.core.policy.next_nodes`: a node out of range or consulted twice, a
        stop with no model consulted and no fallback), it holds more than ``max_histories``
        histories, or it would grow more than :data:`MAX_HISTORY_CELLS` numbers of histories
        at one step (checked before they are built).
    """
    policy = check_policy(policy)
    max_histories = check_count(max_histories, "max_histories")
    inst = policy.instance
    states = np.full((1, inst.n), -1, dtype=np.int64)
    last = np.full(1, -1, dtype=np.int64)
    prob = np.ones(1)
    e_loss = e_cost = 0.0
    outcomes = 0
    for _ in range(inst.n + 1):
        nxt = next_nodes(policy, states, last)
        stop = nxt < 0
        if stop.any():
            e_loss += float(prob[stop] @ policy.answer_loss(states[stop], last[stop]))
            outcomes += int(stop.sum())
        states, last, prob, nxt = states[~stop], last[~stop], prob[~stop], nxt[~stop]
        if len(nxt) == 0:
            break
        src = edge_sources(inst, nxt, last, states)
        e_cost += float(prob @ edge_costs(inst, src, nxt))
        rows = edge_rows(inst, src, nxt, states)
        b_idx, t_idx = np.nonzero(rows)
        if len(b_idx) * (inst.n + 1) > MAX_HISTORY_CELLS:
            raise SolverError(f"{len(b_idx):,} histories of {inst.n} nodes at one step, above MAX_HISTORY_CELLS="
                              f"{MAX_HISTORY_CELLS:,} numbers: the instance is too large to enumerate exactly; "
                              "estimate the policy's value with simulate(policy, n) instead")
        grown = states[b_idx].copy()
        grown[np.arange(len(b_idx)), nxt[b_idx]] = t_idx
        key = np.concatenate([grown, nxt[b_idx, None]], axis=1)
        uniq, inverse = np.unique(key, axis=0, return_inverse=True)
        prob = np.bincount(inverse.ravel(), weights=prob[b_idx] * rows[b_idx, t_idx], minlength=len(uniq))
        states, last = uniq[:, :-1], uniq[:, -1]
        if len(uniq) > max_histories:
            raise SolverError(f"more than {max_histories:,} histories: the instance is too large to enumerate")
    lam = policy.lam
    return ExactEvaluation(lam * e_loss + (1 - lam) * e_cost, e_loss, e_cost, outcomes)
