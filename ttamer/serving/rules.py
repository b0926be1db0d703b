"""Stopping rules the serving runtime evaluates: fitted estimators and heuristics as rules.

A rule is either a ``(policy, state_fn)`` pair driven through :func:`~ttamer.core.policy.rollout`
or an object evaluated exit by exit (``step``/``stops``/``thresholds``,
:func:`is_runtime_rule`). The runtime drives the latter through a running state per batch
(:func:`begin_run`): ``rule.begin(n)`` where the rule keeps its own state from exit to exit
(:class:`MaxProbRule`, :class:`~ttamer.earlyexit.tamer.RuntimeRule`), else a
:class:`HistoryRun` that buffers the exits' softmax rows and calls ``step``; either has
``advance(i, p)`` on exit ``i``'s rows and ``keep(mask)`` when rows stop (and may have
``advance_one(i, p) -> (float, int)`` for one query, compared with ``thresholds[i]``).
``state_fn(probs, node) -> states`` maps ``probs [B, n, C]`` -- the
softmax of every exit consulted so far (NaN for exits not consulted) -- to the ``int`` states of
``node`` for the ``B`` rows. :func:`tamer_state_fn` and :func:`cascade_state_fn` build it from a
fitted :class:`~ttamer.earlyexit.calibration.EarlyExitTamer` /
:class:`~ttamer.earlyexit.cascade.CascadeTamer`; :func:`threshold_rule` and :class:`MaxProbRule`
express the confidence-threshold heuristic, :func:`pathwise_rule` T-Tamer's path-wise rule
(:class:`~ttamer.earlyexit.pathwise.PathwiseTamer`). See the book's chapter *Serving*
(:doc:`/serving`).
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from ..core.errors import TTamerError
from ..core.instance import Instance
from ..core.policy import LastStatePolicy, Policy
from ..earlyexit.calibration import EarlyExitTamer
from ..earlyexit.cascade import CascadeTamer
from ..earlyexit.pathwise import PathwiseTamer
from ..earlyexit.traces import Trace

StateFn = Callable[[np.ndarray, int], np.ndarray]
AnswerFn = Callable[[np.ndarray, np.ndarray], np.ndarray]
ExitMap = Callable[[np.ndarray, np.ndarray], np.ndarray]


def _fitted(tamer: Any, kind: type, what: str) -> None:
    """Raise unless ``tamer`` is a fitted ``kind``, naming ``what`` needs it."""
    if not isinstance(tamer, kind):
        raise TTamerError(f"{what} needs a fitted {kind.__name__}, got {type(tamer).__name__}")
    tamer.check_fitted()


# --------------------------------------------------------------------------- state functions
def tamer_states_fn(tamer: Any) -> Callable[[np.ndarray], np.ndarray]:
    """The states ``[B, L]`` of every exit of a fitted
    :class:`~ttamer.earlyexit.calibration.EarlyExitTamer` from the exits consulted so far (``probs
    [B, L, C]``, later exits NaN and padded uniformly; the state of exit ``i`` depends only on
    exits ``0..i``, so the columns of the consulted exits are final)."""
    _fitted(tamer, EarlyExitTamer, "tamer_states_fn")
    enc = tamer.encoder_
    L = enc.n_exits
    names = [f"e{i}" for i in range(L)]

    def states_fn(probs: np.ndarray) -> np.ndarray:
        B, n, C = probs.shape
        if n != L:
            raise TTamerError(f"state_fn: probs has {n} exits, the encoder was fitted on {L}")
        p = np.where(np.isnan(probs), np.float32(1.0 / C), probs).astype(np.float32)
        return enc.transform(Trace(p, np.zeros(B, dtype=np.int64), np.zeros(L), {"exit_names": names}))
    return states_fn


def tamer_state_fn(tamer: Any) -> StateFn:
    """The states of a fitted :class:`~ttamer.earlyexit.calibration.EarlyExitTamer` computed online:
    the encoder sees the exits consulted so far (later exits padded uniformly; the state of
    exit ``i`` depends only on exits ``0..i``)."""
    states_fn = tamer_states_fn(tamer)

    def state_fn(probs: np.ndarray, node: int) -> np.ndarray:
        return states_fn(probs)[:, node]
    return state_fn


def _padded_trace(probs: np.ndarray, names: list[str]) -> Trace:
    """A trace view of partial outputs: exits not consulted (NaN) padded uniformly."""
    B, n, C = probs.shape
    p = np.where(np.isnan(probs), np.float32(1.0 / C), probs).astype(np.float32)
    return Trace(p, np.zeros(B, dtype=np.int64), np.zeros(n), {"exit_names": names})


def tamer_answer_fns(tamer: Any) -> tuple[AnswerFn | None, ExitMap | None]:
    """The answer rule of a fitted :class:`~ttamer.earlyexit.calibration.EarlyExitTamer` as
    ``(answer_fn, exit_map)``: its pairwise answer table when it has one (with recall), and
    the map from the node answered with to the exit whose prediction is returned
    (``encoder_.answers``, e.g. the posterior answer); ``None`` where the defaults apply
    (the policy's own recall answer; node ``i`` answers with exit ``i``)."""
    _fitted(tamer, EarlyExitTamer, "tamer_answer_fns")
    table = getattr(tamer, "answer_table_", None)
    answer_fn = table.answer if table is not None and tamer.solution_.recall else None
    enc = tamer.encoder_
    exit_map = None
    if hasattr(enc, "answers") and getattr(getattr(enc, "spec", None), "feature", None) == "posterior":
        L = enc.n_exits

        def exit_map(probs: np.ndarray, node: np.ndarray) -> np.ndarray:
            ans = enc.answers(_padded_trace(probs, [f"e{i}" for i in range(L)]))
            return ans[np.arange(len(node)), node]
    return answer_fn, exit_map


def cascade_state_fn(tamer: Any) -> StateFn:
    """The states of a fitted :class:`~ttamer.earlyexit.cascade.CascadeTamer`: model ``v``'s confidence
    bin (and agreement with its parent, consulted before it)."""
    from ..earlyexit.cascade import tree_states

    _fitted(tamer, CascadeTamer, "cascade_state_fn")
    n_models = len(tamer.parents_)

    def state_fn(probs: np.ndarray, node: int) -> np.ndarray:
        B, n, C = probs.shape
        if n != n_models:
            raise TTamerError(f"state_fn: probs has {n} models, the tamer was fitted on {n_models}")
        p = np.where(np.isnan(probs), np.float32(1.0 / C), probs).astype(np.float32)
        tr = Trace(p, np.zeros(B, dtype=np.int64), np.zeros(n), {"exit_names": list(tamer.names_)})
        return tree_states(tamer.encoder_, tr, tamer.parents_, tamer.agreement)[:, node]
    return state_fn


def stop_state_policy(n_exits: int, lam: float = 1.0, name: str = "") -> Policy:
    """A chain policy on two states per exit -- ``1``: stop here, ``0``: go on -- that stops at
    the first exit in state ``1`` (else at the last) and answers with it (no recall): the
    runtime form of any rule that decides exit by exit (:func:`threshold_rule`,
    :func:`pathwise_rule`)."""
    L = int(n_exits)
    if L < 1:
        raise TTamerError(f"n_exits must be >= 1, got {n_exits}")
    half = np.array([0.5, 0.5])
    inst = Instance.chain([np.zeros(2)] * L, half, [np.full((2, 2), 0.5)] * (L - 1), np.zeros(L),
                          names=[f"exit{i}" for i in range(L)], name=name)
    table = [np.array([[i + 1 if i < L - 1 else -1], [-1]]) for i in range(L)]
    return StopStatePolicy(inst, lam, recall=False, table=table, start=np.array([0]))


class StopStatePolicy(LastStatePolicy):
    """The chain policy of :func:`stop_state_policy`: stop at the first exit in state ``1``.
    :class:`~ttamer.serving.runtime.EarlyExitServer` compiles it with its ``state_fn`` into a threshold rule
    (:class:`StateFnRule`) instead of driving it through :func:`~ttamer.core.policy.rollout`."""


class StateFnRule:
    """A stop / go-on ``state_fn`` (state ``1``: stop) as a rule the runtime evaluates exit by
    exit (the interface of :meth:`ttamer.earlyexit.tamer.ThresholdTamer.runtime_rule`):
    ``step(i, probs [B, i+1, C]) -> (x_i, a_i)``, stop where ``x_i ≥ thresholds[i]``.

    ``state_fn`` sees the exits consulted so far, later ones NaN (its usual input); the answer
    is the exit stopped at, mapped through ``exit_map`` by the runtime once the batch is done.
    """

    def __init__(self, n_exits: int, state_fn: StateFn, exit_map: ExitMap | None = None, name: str = "") -> None:
        if not callable(state_fn):
            raise TTamerError(f"state_fn must be callable (probs [B, n, C], node) -> states [B], got {state_fn!r}")
        if exit_map is not None and not callable(exit_map):
            raise TTamerError(f"exit_map must be callable (probs, node) -> exit, got {exit_map!r}")
        self.n_exits = int(n_exits)
        self.state_fn, self.exit_map, self.name = state_fn, exit_map, name
        self.thresholds = np.r_[np.full(self.n_exits - 1, 0.5), -np.inf]

    def step(self, i: int, probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(x_i, a_i)``: ``1.0`` where the state function says stop after exit ``i``."""
        B, seen, C = probs.shape
        full = np.full((B, self.n_exits, C), np.nan, dtype=np.float32)
        full[:, :seen] = probs
        s = np.asarray(self.state_fn(full, int(i))).reshape(-1)
        if len(s) != B or (len(s) and not np.isin(s, (0, 1)).all()):
            raise TTamerError(f"state_fn returned states {s[:5].tolist()}... for node {i} "
                              f"({B} rows, expected values in 0..1)")
        return s.astype(np.float64), np.full(B, i, dtype=np.int64)

    def stops(self, i: int, x: np.ndarray) -> np.ndarray:
        """``[B]`` bool: stop after exit ``i`` (always at the last exit)."""
        return x >= self.thresholds[i]


class ChainPolicyRule:
    """A policy on a chain without skips, evaluated exit by exit like a threshold rule: after
    exit ``i`` the states of exits ``0..i`` (``states_fn``: one call on the outputs seen so far)
    and one ``policy.decide`` on the rows still running -- stop or go on to exit ``i + 1``; the
    rows that stop are answered by ``answer_fn`` (default ``policy.answer``, recall). The
    decisions are those of :func:`~ttamer.core.policy.rollout` on the same states, without its
    bookkeeping. Build it with :meth:`compile`, which says when a policy qualifies.

    ``states_fn(probs [B, L, C]) -> [B, L]`` int states, later exits NaN in ``probs``; the
    state of exit ``j`` must read exits ``0..j`` only (as the calibrated encoders do).
    """

    def __init__(self, policy: Policy, states_fn: Callable[[np.ndarray], np.ndarray],
                 answer_fn: AnswerFn | None = None, name: str = "") -> None:
        self.policy, self.states_fn = policy, states_fn
        self.answer_fn = answer_fn if answer_fn is not None else policy.answer
        self.n_exits = int(policy.instance.n)
        self.thresholds = np.r_[np.full(self.n_exits - 1, 0.5), -np.inf]
        self.name = name or policy.describe().split("\n")[0]

    @classmethod
    def compile(cls, policy: Policy, states_fn: Callable[[np.ndarray], np.ndarray],
                answer_fn: AnswerFn | None = None) -> "ChainPolicyRule | None":
        """The rule, or ``None`` where the policy is not one exit after the other from exit 0
        (a tree, skips, a chain in another order, or a policy that starts elsewhere)."""
        inst = policy.instance
        if not inst.is_chain or inst.skips or not np.array_equal(inst.chain_position, np.arange(inst.n)):
            return None
        first = policy.decide(np.full((1, inst.n), -1, dtype=np.int64), np.full(1, -1, dtype=np.int64))
        return cls(policy, states_fn, answer_fn) if int(first[0]) == 0 else None

    def step(self, i: int, probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(x_i, a_i)``: ``1.0`` where the policy stops after exit ``i``, and the exit that
        answers there (``i`` where it goes on)."""
        B, seen, C = probs.shape
        L = self.n_exits
        full = np.full((B, L, C), np.nan, dtype=np.float32)
        full[:, :seen] = probs
        states = np.full((B, L), -1, dtype=np.int64)
        states[:, : i + 1] = np.asarray(self.states_fn(full), dtype=np.int64)[:, : i + 1]
        last = np.full(B, i, dtype=np.int64)
        nxt = np.asarray(self.policy.decide(states, last), dtype=np.int64)
        stop = nxt < 0
        wrong = ~stop & (nxt != i + 1)
        if wrong.any():
            raise TTamerError(f"the policy went from exit {i} to exit {int(nxt[wrong][0])}; a chain rule "
                              "goes on to the next exit or stops")
        answer = last.copy()
        if stop.any():
            answer[stop] = np.asarray(self.answer_fn(states[stop], last[stop]), dtype=np.int64)
        return stop.astype(np.float64), answer

    def stops(self, i: int, x: np.ndarray) -> np.ndarray:
        """``[B]`` bool: the policy stops after exit ``i``."""
        return x >= self.thresholds[i]


class HistoryRun:
    """The running state of a rule that has only the stateless ``step(i, probs [B, i+1, C])``
    (:class:`StateFnRule`, :class:`ChainPolicyRule`, a user's rule): the softmax rows of the
    exits seen so far in a buffer ``[n, L, C]`` allocated once per batch; :meth:`advance`
    writes exit ``i``'s rows and calls ``step`` on the view of exits ``0..i``."""

    def __init__(self, rule: Any, n: int) -> None:
        self.rule, self.n = rule, int(n)
        self.hist: np.ndarray | None = None

    def advance(self, i: int, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``rule.step(i, …)`` on the exits seen so far, exit ``i``'s rows ``p [B, C]`` added."""
        if self.hist is None:
            self.hist = np.empty((len(p), int(self.rule.n_exits), p.shape[1]), dtype=np.float32)
        self.hist[:, i] = p
        return self.rule.step(i, self.hist[:, : i + 1])

    def keep(self, mask: np.ndarray) -> None:
        """Keep the rows where ``mask`` is true."""
        if self.hist is not None:
            self.hist = self.hist[mask]


class ForcedRule:
    """``rule`` forced on to the last exit: its state advanced after every exit as when it is
    served, its threshold never reached (``+inf``, the last exit ``−inf``). The runtime
    serving it pays, exit by exit, what serving ``rule`` pays for every exit it consults --
    the per-exit cost profile of that rule (:meth:`~ttamer.serving.runtime.EarlyExitServer.cost_profile`)."""

    def __init__(self, rule: Any) -> None:
        if not is_runtime_rule(rule):
            raise TTamerError(f"ForcedRule needs a rule evaluated exit by exit, got {type(rule).__name__}")
        self.rule, self.n_exits = rule, int(rule.n_exits)
        self.thresholds = np.r_[np.full(self.n_exits - 1, np.inf), -np.inf]
        self.name = f"{getattr(rule, 'name', 'rule')} (forced to the last exit)"

    def step(self, i: int, probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The rule's own step."""
        return self.rule.step(i, probs)

    def stops(self, i: int, x: np.ndarray) -> np.ndarray:
        """``[B]`` False: never stops before the last exit."""
        return np.zeros(len(x), dtype=bool)

    def begin(self, n: int) -> Any:
        """The rule's own running state (:func:`begin_run`)."""
        return begin_run(self.rule, n)


def begin_run(rule: Any, n: int) -> Any:
    """The running state of ``rule`` on a batch of ``n`` examples: ``rule.begin(n)`` where the
    rule keeps its own (incremental) state, else a :class:`HistoryRun`. Either has
    ``advance(i, p [B, C]) -> (x_i, a_i)`` and ``keep(mask)``."""
    return rule.begin(n) if callable(getattr(rule, "begin", None)) else HistoryRun(rule, n)


def is_runtime_rule(rule: Any) -> bool:
    """Whether ``rule`` has the interface of a rule evaluated exit by exit: ``n_exits``,
    ``thresholds [n_exits]``, ``step(i, probs) -> (x, a)`` and ``stops(i, x)`` (optionally
    ``begin(n)``, a running state with ``advance`` and ``keep``: :func:`begin_run`)."""
    return (not isinstance(rule, Policy) and callable(getattr(rule, "step", None))
            and callable(getattr(rule, "stops", None)) and hasattr(rule, "thresholds"))


def threshold_rule(n_exits: int, tau: float, lam: float = 1.0) -> tuple[Policy, StateFn]:
    """The confidence-threshold heuristic (BranchyNet / SDN style) as a (policy, state_fn)
    pair: state ``1`` iff the exit's max-probability is ``≥ tau``; stop at the first such
    exit, else go on to the last; answer with the exit stopped at (no recall).
    ``tau = inf`` is the full model through the runtime."""
    if np.isnan(tau):
        raise TTamerError("tau must be a number, got nan")
    policy = stop_state_policy(n_exits, lam, name=f"max-prob >= {tau:g}")

    def state_fn(probs: np.ndarray, node: int) -> np.ndarray:
        return (np.nanmax(probs[:, node], axis=1) >= tau).astype(np.int64)
    return policy, state_fn


class MaxProbRule:
    """The confidence-threshold heuristic as a rule evaluated exit by exit: stop at the first
    exit whose max-probability is ``≥ tau`` (else at the last) and answer with it; one
    reduction and one comparison per exit (``tau = inf``: the runtime forced to the last exit)."""

    def __init__(self, n_exits: int, tau: float) -> None:
        if np.isnan(tau):
            raise TTamerError("tau must be a number, got nan")
        if int(n_exits) < 1:
            raise TTamerError(f"n_exits must be >= 1, got {n_exits}")
        self.n_exits, self.tau = int(n_exits), float(tau)
        self.thresholds = np.r_[np.full(self.n_exits - 1, self.tau), -np.inf]
        self.name = f"max-prob >= {tau:g}"
        self._exit = [np.full(1, i, dtype=np.int64) for i in range(self.n_exits)]

    def step(self, i: int, probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(max-probability of exit i, i)`` for the rows of ``probs [B, i+1, C]`` (float32, as
        in the trace; compared with the float64 threshold exactly)."""
        B = len(probs)
        if len(self._exit[i]) < B:
            self._exit[i] = np.full(B, i, dtype=np.int64)
        return probs[:, i].max(axis=1), self._exit[i][:B]

    def stops(self, i: int, x: np.ndarray) -> np.ndarray:
        """``[B]`` bool: ``x ≥`` exit ``i``'s threshold."""
        return x >= self.tau

    def begin(self, n: int) -> "MaxProbRule":
        """The rule's running state on a batch: none (its state reads exit ``i`` only), so
        the rule itself, whose :meth:`advance` is the step on exit ``i``'s rows."""
        return self

    def advance(self, i: int, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(max-probability of exit i, i)`` from exit ``i``'s softmax rows ``p [B, C]``."""
        B = len(p)
        if len(self._exit[i]) < B:
            self._exit[i] = np.full(B, i, dtype=np.int64)
        return p.max(axis=1), self._exit[i][:B]

    def advance_one(self, i: int, p: np.ndarray) -> tuple[float, int]:
        """:meth:`advance` on one query (``p [1, C]``) as Python scalars: the max-probability
        (the float32 value, exactly) and ``i``; no numpy call beyond reading the row."""
        return max(p.tolist()[0]), i

    def keep(self, mask: np.ndarray) -> None:
        """Nothing to forget when rows stop."""


def max_prob_rule(n_exits: int, tau: float) -> MaxProbRule:
    """:class:`MaxProbRule`: the decisions of :func:`threshold_rule` (and of
    :func:`ttamer.earlyexit.baselines.max_prob_threshold`), served without a policy object."""
    return MaxProbRule(n_exits, tau)


def pathwise_rule(tamer: Any) -> tuple[Policy, StateFn, ExitMap | None]:
    """A fitted :class:`~ttamer.earlyexit.pathwise.PathwiseTamer` as ``(policy, state_fn, exit_map)``:
    the state of exit ``i`` is ``1`` iff its stopping rule says stop on the exits consulted so
    far (later exits padded uniformly; the rule at exit ``i`` reads exits ``0..i`` only), and
    ``exit_map`` maps the exit stopped at to the exit answered with (its posterior answer;
    ``None`` for ``answer="last"``). The served decisions are ``tamer.decide``'s."""
    _fitted(tamer, PathwiseTamer, "pathwise_rule")
    model, rule = tamer.model_, tamer.rule_
    L = len(model.features.center)
    names = [f"e{i}" for i in range(L)]

    def state_fn(probs: np.ndarray, node: int) -> np.ndarray:
        if probs.shape[1] != L:
            raise TTamerError(f"state_fn: probs has {probs.shape[1]} exits, the rule was fitted on {L}")
        x = model.features.transform(_padded_trace(probs, names))
        return rule.stops(x)[:, node].astype(np.int64)

    exit_map = None
    if model.answer_models is not None:
        def exit_map(probs: np.ndarray, node: np.ndarray) -> np.ndarray:
            return model.answers(_padded_trace(probs, names))[np.arange(len(node)), node]
    return stop_state_policy(L, tamer.lam, name=f"path-wise rule at λ={tamer.lam:g}"), state_fn, exit_map


