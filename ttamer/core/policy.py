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
from typing import Any, Callable, Sequence

import numpy as np

from .errors import SolverError, TTamerError
from .instance import Instance, check_instance
from .validate import check_bool, check_count, check_lam, describe_value, escape_text, magnitude, short_repr

STOP = -1
#: Largest ``batch x nodes`` of one :func:`rollout`, checked before its tables (``states`` and
#: ``order``, 8 bytes a cell each) are allocated: 2 GiB for both. A trace file of at most
#: ``MAX_TRACE_BYTES`` (1 GiB of float32 probabilities, two classes or more) has fewer
#: example x exit cells; :func:`~ttamer.core.simulate.simulate` runs in smaller chunks.
MAX_ROLLOUT_CELLS = 2**27


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
        """The node each history consults next.

        Parameters
        ----------
        states : numpy.ndarray
            ``(B, n)`` integers: the state each node revealed, ``-1`` if not consulted.
        last : numpy.ndarray
            ``(B,)`` integers: the node consulted last, ``-1`` if none.

        Returns
        -------
        numpy.ndarray
            ``(B,)`` integers: per history, a node ``0..n-1`` not consulted yet, or ``-1``
            (stop). Without a fallback, a history with no node consulted may not stop.
            :func:`~ttamer.core.policy.rollout` checks every answer (:func:`~ttamer.core.policy.next_nodes`).
        """
        raise NotImplementedError(f"{escape_text(type(self).__name__, 60)} does not define decide(states, last); "
                                  "Policy is a base class: subclass it and define decide")

    def describe(self) -> str:
        """A short human-readable summary of the rule."""
        return type(self).__name__

    def rollout_known(self, states_all: np.ndarray) -> "Rollout":
        """:func:`~ttamer.core.policy.rollout` when every node's state is known in advance (a trace):
        ``states_all[b, v]`` is what node ``v`` reveals for history ``b`` (checked by
        :func:`check_known_states`)."""
        states_all = check_known_states(states_all, self.instance)
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


def check_policy(policy: Any, name: str = "policy") -> Policy:
    """``policy`` if it is a :class:`Policy`, else a :class:`~ttamer.core.errors.TTamerError` naming ``name``."""
    if not isinstance(policy, Policy):
        raise TTamerError(f"{name} must be a ttamer Policy, got {escape_text(type(policy).__name__, 60)}")
    return policy


def _as_array(values: Any) -> np.ndarray | None:
    """``values`` as an array, or ``None`` for a string, a masked array or a ragged nesting."""
    if isinstance(values, (str, bytes, np.ma.MaskedArray)):
        return None
    try:
        return np.asarray(values)
    except (TypeError, ValueError):
        return None


def check_known_states(states_all: Any, instance: Instance, name: str = "states_all") -> np.ndarray:
    """``states_all`` as an ``int64`` array ``(B, n)`` of states known in advance, ``states_all[b, v]``
    in ``0..K_v-1`` (one vectorised pass).

    Raises
    ------
    TTamerError
        Naming ``name``, for floats, booleans, strings, a masked array, another shape, or a
        state out of its node's range (the first such entry named).
    """
    arr = _as_array(states_all)
    if arr is None or arr.dtype.kind not in "iu" or arr.ndim != 2 or arr.shape[1] != instance.n:
        raise TTamerError(f"{name} must be a 2-D integer array with one column per node ({instance.n}): the state "
                          f"each node reveals for each history; got {describe_value(states_all)}")
    bad = (arr < 0) | (arr >= instance.n_states)
    if bad.any():
        b, v = (int(i) for i in np.unravel_index(int(np.argmax(bad)), bad.shape))
        raise TTamerError(f"{name}[{b}, {v}] is {short_repr(arr[b, v].item())}, not a state of node {v} "
                          f"({short_repr(instance.nodes[v].name)}): its states are 0..{int(instance.n_states[v]) - 1}")
    return arr.astype(np.int64, copy=False)


def next_nodes(policy: Policy, states: np.ndarray, last: np.ndarray) -> np.ndarray:
    """``policy.decide(states, last)``, checked against the contract of :meth:`Policy.decide`
    once per step, vectorised over the histories.

    Raises
    ------
    SolverError
        Naming the policy's ``decide``, for an answer that is not one integer per history, a
        node out of ``0..n-1`` other than ``-1``, a node already consulted, or a stop before any
        node is consulted on an instance without fallback.
    """
    raw = policy.decide(states, last)
    out = _as_array(raw)
    inst = policy.instance
    who = f"{escape_text(type(policy).__name__, 60)}.decide"
    allowed = f"a node 0..{inst.n - 1} not consulted yet, or -1 to stop"
    if out is None or out.dtype.kind not in "iu" or out.shape != last.shape:
        raise SolverError(f"{who} must return an integer array of shape ({len(last)},), per history {allowed}; "
                          f"got {describe_value(raw)}")
    bad = (out < STOP) | (out >= inst.n)
    if bad.any():
        b = int(np.argmax(bad))
        raise SolverError(f"{who} returned {short_repr(out[b].item())} for history #{b}; allowed: {allowed}")
    go = np.flatnonzero(out >= 0)
    again = go[states[go, out[go]] >= 0]
    if len(again):
        v = int(out[again[0]])
        raise SolverError(f"{who} returned node {v} ({short_repr(inst.nodes[v].name)}) for history #{int(again[0])}, "
                          f"which has consulted it already; allowed: {allowed}")
    if inst.fallback is None and ((out < 0) & (last < 0)).any():
        raise SolverError(f"{who} stopped (-1) before consulting any node, but the instance has no fallback: "
                          "the policy must consult a node first")
    return out.astype(np.int64, copy=False)


def _revealed(values: Any, rows: np.ndarray, nodes: np.ndarray, instance: Instance) -> np.ndarray:
    """The states ``reveal`` returned for ``nodes``, checked: one integer per row, in ``0..K_v-1``."""
    arr = _as_array(values)
    if arr is None or arr.dtype.kind not in "iu" or arr.shape != nodes.shape:
        raise TTamerError(f"reveal must return an integer array of shape ({len(nodes)},), one state per row it is "
                          f"given, in 0..K_v-1 for the node v consulted; got {describe_value(values)}")
    k = instance.n_states[nodes]
    bad = (arr < 0) | (arr >= k)
    if bad.any():
        i = int(np.argmax(bad))
        v = int(nodes[i])
        raise TTamerError(f"reveal returned state {short_repr(arr[i].item())} for node {v} "
                          f"({short_repr(instance.nodes[v].name)}) in history #{int(rows[i])}; "
                          f"expected an integer state in 0..{int(k[i]) - 1}")
    return arr


def rollout(policy: Policy, batch: int, reveal: Reveal) -> Rollout:
    """Run ``policy`` on ``batch`` histories until every one stops.

    The loop is over steps (at most ``n``), never over histories; each step's decisions
    (:func:`next_nodes`) and revealed states are checked once, vectorised.

    Parameters
    ----------
    policy : Policy
        The policy to run.
    batch : int
        Number of histories, ``>= 0``; ``batch x n`` at most :data:`MAX_ROLLOUT_CELLS`.
    reveal : callable
        ``reveal(rows, nodes, states_rows, last_rows)`` returns the states that ``nodes``
        reveal for those rows (sampled in a simulation, read off a trace in an evaluation):
        an integer array, one state in ``0..K_v-1`` per row.

    Returns
    -------
    Rollout
        The states revealed, the last node consulted and the visiting order.

    Raises
    ------
    TTamerError
        ``policy`` is not a :class:`Policy`, ``batch`` is not a non-negative integer or is too
        large, ``reveal`` is not callable or returns anything but one valid state per row.
    SolverError
        The policy's ``decide`` breaks its contract (:func:`next_nodes`).
    """
    policy = check_policy(policy)
    n = policy.instance.n
    batch = check_count(batch, "batch", minimum=0)
    if batch * n > MAX_ROLLOUT_CELLS:
        raise TTamerError(f"batch: {magnitude(batch)} histories of {n:,} nodes are above MAX_ROLLOUT_CELLS="
                          f"{MAX_ROLLOUT_CELLS:,} cells; run them in chunks")
    if not callable(reveal):
        raise TTamerError(f"reveal must be callable as reveal(rows, nodes, states_rows, last_rows), "
                          f"got {short_repr(reveal)}")
    states = np.full((batch, n), -1, dtype=np.int64)
    last = np.full(batch, -1, dtype=np.int64)
    order = np.full((batch, n), -1, dtype=np.int64)
    active = np.arange(batch)
    for step in range(n + 1):  # after n steps every node is consulted: next_nodes lets the histories only stop
        if len(active) == 0:
            break
        nxt = next_nodes(policy, states[active], last[active])
        go = nxt >= 0
        rows, nodes = active[go], nxt[go]
        if len(rows) == 0:
            break
        states[rows, nodes] = _revealed(reveal(rows, nodes, states[rows], last[rows]), rows, nodes, policy.instance)
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
    slice is the policy's own rollout to the last bit. ``states_all`` is checked once
    (:func:`check_known_states`)."""
    if not policies or not all(isinstance(p, IndexPolicy) for p in policies) \
            or any(p.instance is not policies[0].instance for p in policies) or not policies[0].instance.is_chain:
        raise TTamerError("chain_index_rollouts needs index policies of one chain instance")
    inst = policies[0].instance
    chain = inst.order
    S = check_known_states(states_all, inst)[:, chain]
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
