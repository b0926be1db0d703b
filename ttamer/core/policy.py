"""Policies: which node to consult next, when to stop, and which model answers.

A policy works on a *batch* of ``B`` partial histories at once. A history is described by

* ``states`` -- an ``int`` array ``(B, n)``: the state each node revealed, ``-1`` if not
  consulted;
* ``last`` -- an ``int`` array ``(B,)``: the node consulted last, ``-1`` if none.

``decide(states, last)`` returns, per history, the node to consult next or ``-1`` (stop);
``answer(states, last)`` returns the node whose output is returned, ``-1`` for the fallback.
With recall the answer is the consulted node of smallest loss (the fallback if ``y`` is
smaller); without recall it is the last node consulted. The simulator
(:mod:`ttamer.core.simulate`), the early-exit evaluation and the serving runtime all drive the
same objects through :func:`rollout`.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Callable, Sequence

import numpy as np

from .errors import TTamerError
from .instance import Instance, check_instance
from .validate import check_bool, check_lam, escape_text

STOP = -1


def padded(rows: list[np.ndarray]) -> np.ndarray:
    """``rows`` as one ``[len(rows), max length]`` table, ``+inf`` past each row's end."""
    table = np.full((len(rows), max(len(r) for r in rows)), np.inf)
    for v, r in enumerate(rows):
        table[v, : len(r)] = r
    return table


class Policy:
    """Base class: the answer rule and helpers shared by every policy."""

    def __init__(self, instance: Instance, lam: float, recall: bool) -> None:
        self.instance = check_instance(instance)
        self.lam = check_lam(lam)
        self.recall = check_bool(recall, "recall")
        self._y = np.inf if instance.fallback is None else float(instance.fallback)  # y, +inf if none

    @cached_property
    def _loss_table(self) -> np.ndarray:
        """Padded table of unscaled losses: ``loss_table[v, s] = ℓ_v(s)`` (``+inf`` past ``K_v``)."""
        return padded(self.instance.losses)

    # -- to be provided by subclasses
    def decide(self, states: np.ndarray, last: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def describe(self) -> str:
        """A short human-readable summary of the rule."""
        return type(self).__name__

    def rollout_known(self, states_all: np.ndarray) -> "Rollout":
        """:func:`~ttamer.core.policy.rollout` when every node's state is known in advance (a trace):
        ``states_all[b, v]`` is what node ``v`` reveals for history ``b``."""
        states_all = np.asarray(states_all, dtype=np.int64)
        return rollout(self, len(states_all), lambda rows, nodes, _s, _l: states_all[rows, nodes])

    # -- shared
    def consulted_losses(self, states: np.ndarray) -> np.ndarray:
        """``ℓ_v(s_v)`` for consulted nodes, ``+inf`` elsewhere, shape ``(B, n)``."""
        cols = np.arange(states.shape[1])
        return np.where(states >= 0, self._loss_table[cols, np.maximum(states, 0)], np.inf)

    def best_loss(self, states: np.ndarray) -> np.ndarray:
        """``min(y, min over consulted v of ℓ_v(s_v))`` (unscaled), shape ``(B,)``."""
        return np.minimum(self.consulted_losses(states).min(axis=1, initial=np.inf), self._y)

    def best_scaled(self, states: np.ndarray) -> np.ndarray:
        """``X`` of the book's chapter *Recall*: ``λ`` times :meth:`best_loss`, ``+inf`` while it is infinite."""
        best = self.best_loss(states)
        return np.where(np.isfinite(best), self.lam * np.where(np.isfinite(best), best, 0.0), np.inf)

    def answer(self, states: np.ndarray, last: np.ndarray) -> np.ndarray:
        """The node whose output is returned (``-1``: the fallback)."""
        states = np.asarray(states)
        last = np.asarray(last)
        if not self.recall:
            return last.copy()
        losses = self.consulted_losses(states)
        best = losses.argmin(axis=1)
        best_val = losses[np.arange(len(best)), best]
        return np.where((best_val <= self._y) & np.isfinite(best_val), best, STOP)

    def answer_loss(self, states: np.ndarray, last: np.ndarray) -> np.ndarray:
        """Loss of the returned answer, ``X`` of the book's chapter *The model* (unscaled)."""
        ans = self.answer(states, last)
        node = np.maximum(ans, 0)
        loss = self._loss_table[node, np.maximum(states[np.arange(len(ans)), node], 0)]
        return np.where(ans >= 0, loss, self._y)


Reveal = Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray], np.ndarray]


@dataclass
class Rollout:
    """The raw history of a :func:`rollout` on a batch: ``states`` (``-1``: not consulted),
    ``last`` (last node consulted) and the visiting ``order`` (``order[b, k]`` = k-th node
    consulted, ``-1`` after the stop).

    It is the policy's history, not a decisions record: the early-exit layer turns it into an
    :class:`~ttamer.earlyexit.traces.ExitDecisions` (the answered node, the cost paid, the
    nodes consulted), the one record that evaluation and serving share (the book's chapter
    *Trees of models and a serving runtime*).
    """

    states: np.ndarray
    last: np.ndarray
    order: np.ndarray


def rollout(policy: Policy, batch: int, reveal: Reveal) -> Rollout:
    """Run ``policy`` on ``batch`` histories until every one stops.

    ``reveal(rows, nodes, states_rows, last_rows)`` returns the states that ``nodes`` reveal
    for those rows (sampled in a simulation, read off a trace in an evaluation). The loop is
    over steps (at most ``n``), never over histories.
    """
    n = policy.instance.n
    states = np.full((batch, n), -1, dtype=np.int64)
    last = np.full(batch, -1, dtype=np.int64)
    order = np.full((batch, n), -1, dtype=np.int64)
    active = np.arange(batch)
    for step in range(n + 1):
        if len(active) == 0:
            break
        nxt = np.asarray(policy.decide(states[active], last[active]), dtype=np.int64)
        go = nxt >= 0
        rows, nodes = active[go], nxt[go]
        if len(rows) == 0:
            break
        if step == n:
            raise RuntimeError("policy asked to consult a node after every node was consulted")
        bad = states[rows, nodes] >= 0
        if bad.any():
            raise RuntimeError(f"policy asked to consult node {int(nodes[bad][0])} twice")
        states[rows, nodes] = reveal(rows, nodes, states[rows], last[rows])
        last[rows] = nodes
        order[rows, step] = nodes
        active = rows
    return Rollout(states, last, order)


def best_action(stop: np.ndarray, options: list[tuple[int, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """Elementwise minimum of stopping and each ``(target, continuation value)``.

    Returns the minimum and the chosen target (``-1``: stop); ties go to stopping, then to
    the earlier option.
    """
    stacked = np.stack([np.broadcast_to(stop, options[0][1].shape) if options else stop]
                       + [vals for _, vals in options])
    targets = np.array([STOP] + [t for t, _ in options], dtype=np.int64)
    choice = stacked.argmin(axis=0)
    return np.take_along_axis(stacked, choice[None], axis=0)[0], targets[choice]


# ---------------------------------------------------------------------------------------------
class IndexPolicy(Policy):
    """The dynamic index strategy with recall on a forest (the book's chapter *Recall*).

    ``sigma[v]`` holds ``σ_v(s)`` for every state ``s`` of ``parent(v)`` (one entry for a
    root). Consult the available node of smallest index while that index is below
    ``X = min(λ y, λ ℓ of consulted nodes)``.
    """

    def __init__(self, instance: Instance, lam: float, sigma: list[np.ndarray]) -> None:
        super().__init__(instance, lam, recall=True)
        self.sigma = [np.asarray(s, dtype=float) for s in sigma]

    @cached_property
    def _sigma_table(self) -> np.ndarray:
        """Padded table of indices: ``sigma_table[v, s] = σ_v(s)`` (``+inf`` past ``parent(v)``'s states)."""
        return padded(self.sigma)

    def decide(self, states: np.ndarray, last: np.ndarray) -> np.ndarray:
        inst = self.instance
        par = inst.parent
        par_state = np.where(par >= 0, states[:, np.maximum(par, 0)], 0)  # (B, n)
        available = (states < 0) & ((par < 0) | (par_state >= 0))
        idx = np.where(available, self._sigma_table[np.arange(inst.n), np.maximum(par_state, 0)], np.inf)
        best = idx.argmin(axis=1)
        best_idx = idx[np.arange(len(best)), best]
        x = self.best_scaled(states)
        return np.where(np.isfinite(best_idx) & (best_idx < x), best, STOP)

    def rollout_known(self, states_all: np.ndarray) -> "Rollout":
        """On a chain, one vectorised pass (the threshold form, Theorem 4.5): after exit ``i``
        continue iff ``σ_{i+1}(s_i) < X_i``, with ``X_i`` the running minimum of the scaled
        losses; the same histories as :func:`rollout`, without a loop over steps
        (:func:`chain_index_rollouts` with this policy alone)."""
        inst = self.instance
        if not inst.is_chain:
            return super().rollout_known(states_all)
        visited, last = chain_index_rollouts([self], states_all)
        order = np.where(visited[0][:, inst.order] >= 0, inst.order[None, :], -1)
        return Rollout(visited[0], last[0], order)

    def describe(self) -> str:
        lines = [f"dynamic index strategy (recall), λ={self.lam:g}"]
        for v in self.instance.order:
            nd = self.instance.nodes[v]
            given = "" if nd.parent is None else f" given state of {nd.parent!r}"
            vals = ", ".join(f"{x:.4g}" for x in self.sigma[v])
            lines.append(f"  σ[{escape_text(nd.name)}]{given}: [{vals}]")
        return "\n".join(lines)


def chain_index_rollouts(policies: Sequence[IndexPolicy], states_all: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """:meth:`IndexPolicy.rollout_known` of several index policies of one chain instance (a
    ``λ`` each) on the same known states ``states_all [B, n]``, in one vectorised pass over
    all of them: the states seen ``[P, B, n]`` (``-1``: not consulted) and the last node
    consulted ``[P, B]``. The arithmetic is that of one policy, element for element, so each
    slice is the policy's own rollout to the last bit."""
    inst = policies[0].instance
    if any(p.instance is not inst for p in policies) or not inst.is_chain:
        raise TTamerError("chain_index_rollouts needs index policies of one chain instance")
    chain = inst.order
    S = np.asarray(states_all, dtype=np.int64)[:, chain]
    B, L = S.shape
    lam = np.array([p.lam for p in policies])[:, None, None]
    y_scaled = np.array([p.lam * p._y if np.isfinite(p._y) else np.inf for p in policies])[:, None, None]
    X = np.minimum.accumulate(lam * policies[0]._loss_table[chain[None, :], S][None], axis=2)
    X = np.minimum(np.concatenate([np.full((len(policies), B, 1), np.inf), X[:, :, :-1]], axis=2), y_scaled)
    before = np.concatenate([np.zeros((B, 1), np.int64), S[:, :-1]], axis=1)  # the state each σ is read at
    sigma = np.stack([p._sigma_table for p in policies])[:, chain[None, :], before]
    consulted = np.cumprod(sigma < X, axis=2).astype(bool)  # X before exit i; go on while σ < X
    m = consulted.sum(axis=2)
    visited = np.full((len(policies), B, inst.n), -1, dtype=np.int64)
    visited[:, :, chain] = np.where(consulted, S[None], -1)
    return visited, np.where(m > 0, chain[np.maximum(m - 1, 0)], -1)


class LastStatePolicy(Policy):
    """A table keyed by (last node, its state, level of ``X``).

    ``table[v]`` has shape ``(K_v, M)``: the node to consult after ``v`` revealed ``s`` when
    ``X`` (the best scaled loss so far, recall only) is ``levels[m]``; ``start`` has shape
    ``(M,)``. Without recall ``M = 1`` and ``X`` is ignored. Used by the no-recall DP and the
    chain-with-skips recall DP (the book's chapters *Recall* and *No recall*).
    """

    def __init__(self, instance: Instance, lam: float, recall: bool, table: list[np.ndarray],
                 start: np.ndarray, levels: np.ndarray | None = None) -> None:
        super().__init__(instance, lam, recall)
        self.table = [np.asarray(t, dtype=np.int64) for t in table]
        self.start = np.asarray(start, dtype=np.int64)
        self.levels = np.zeros(1) if levels is None else np.asarray(levels, dtype=float)

    def level_of(self, states: np.ndarray) -> np.ndarray:
        """Index into ``levels`` of the current ``X`` (``M-1`` for ``+inf``)."""
        if not self.recall:
            return np.zeros(len(states), dtype=np.int64)
        x = self.best_scaled(states)
        lv = np.searchsorted(self.levels, x)
        return np.minimum(lv, len(self.levels) - 1)

    def decide(self, states: np.ndarray, last: np.ndarray) -> np.ndarray:
        level = self.level_of(states)
        out = np.full(len(last), STOP, dtype=np.int64)
        none = last < 0
        out[none] = self.start[level[none]]
        for v in np.unique(last[~none]):
            rows = np.flatnonzero(last == v)
            out[rows] = self.table[v][states[rows, v], level[rows]]
        return out

    def describe(self) -> str:
        inst = self.instance
        kind = "recall" if self.recall else "no recall"
        first = int(self.start[self.level_of(np.full((1, inst.n), -1))[0]])
        start = "stop (answer with the fallback)" if first < 0 else escape_text(inst.nodes[first].name)
        lines = [f"table policy ({kind}), λ={self.lam:g}", f"  start -> {start}"]
        for v in inst.order:
            row = "; ".join(f"s={s}: {self._rule(self.table[v][s], self.lam * inst.losses[v][s])}"
                            for s in range(inst.n_states[v]))
            lines.append(f"  after {escape_text(inst.nodes[v].name)}: {row}")
        return "\n".join(lines)

    def _rule(self, actions: np.ndarray, x_max: float) -> str:
        """One row of the table in words: with recall, a threshold on the scaled best loss
        ``λX`` (the levels of the table)."""
        name = lambda u: "stop" if u < 0 else escape_text(self.instance.nodes[int(u)].name)  # noqa: E731
        if not self.recall:
            return name(actions[0])
        reach = self.levels <= x_max
        acts, lv = actions[reach], self.levels[reach]
        goes = sorted({name(a) for a in acts if a >= 0})
        if not goes:
            return "stop"
        stops = lv[acts < 0]
        target = " or ".join(goes)
        return target if len(stops) == 0 else f"stop if λX <= {stops.max():.4g}, else {target}"


class ExhaustivePolicy(Policy):
    """The optimal rule of the exhaustive DP: a dictionary from information states
    ``(states tuple, last)`` to the node to consult (``-1``: stop)."""

    def __init__(self, instance: Instance, lam: float, recall: bool, actions: dict) -> None:
        super().__init__(instance, lam, recall)
        self.actions = actions

    def key(self, states_row: np.ndarray, last: int) -> tuple:
        return (tuple(int(s) for s in states_row), -1 if self.recall else int(last))

    def decide(self, states: np.ndarray, last: np.ndarray) -> np.ndarray:
        if len(states) == 0:
            return np.zeros(0, dtype=np.int64)
        both = np.concatenate([states, np.asarray(last)[:, None]], axis=1)
        uniq, inverse = np.unique(both, axis=0, return_inverse=True)
        keys = [self.key(u[:-1], u[-1]) for u in uniq]
        missing = next((k for k in keys if k not in self.actions), None)
        if missing is not None:
            raise TTamerError(f"the exhaustive policy has no action for the history {missing[0]} (states per node, "
                              "-1: not consulted): its instance gives that history probability 0, so the solver "
                              "never reached it; give every state of every node a positive probability")
        acts = np.array([self.actions[k] for k in keys], dtype=np.int64)
        return acts[inverse.ravel()]

    def describe(self) -> str:
        kind = "recall" if self.recall else "no recall"
        return f"exhaustive optimal policy ({kind}), λ={self.lam:g}, {len(self.actions)} information states"
