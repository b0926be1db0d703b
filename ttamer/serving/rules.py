"""Stopping rules the serving runtime evaluates: fitted estimators and heuristics as rules.

A rule is either a ``(policy, state_fn)`` pair driven through :func:`~ttamer.core.policy.rollout`
or an object evaluated exit by exit (``step``/``stops``/``thresholds``,
:func:`is_runtime_rule`). The runtime drives the latter through a running state per batch
(:func:`begin_run`): ``rule.begin(n)`` where the rule keeps its own state from exit to exit
(:class:`MaxProbRule`, :class:`~ttamer.earlyexit.tamer.RuntimeRule`, the binned chain policy
:class:`ChainPolicyRule`, the path-wise :class:`PathwiseRule`), else a
:class:`HistoryRun` that buffers the exits' softmax rows and calls ``step``; either has
``advance(i, p)`` on exit ``i``'s rows and ``keep(mask)`` when rows stop (and may have
``advance_one(i, p) -> (float, int)`` for one query, compared with ``thresholds[i]``, or
``decide_one(i, p, tau) -> (bool, int)``, that comparison with ``tau = thresholds[i]`` done by
the running state).
``state_fn(probs, node) -> states`` maps ``probs [B, n, C]`` -- the
softmax of every exit consulted so far (NaN for exits not consulted) -- to the ``int`` states of
``node`` for the ``B`` rows. :func:`tamer_state_fn` and :func:`cascade_state_fn` build it from a
fitted :class:`~ttamer.earlyexit.calibration.EarlyExitTamer` /
:class:`~ttamer.earlyexit.cascade.CascadeTamer`; :func:`threshold_rule` and :class:`MaxProbRule`
express the confidence-threshold heuristic, :class:`ChainPolicyRule` a fitted
:class:`~ttamer.earlyexit.calibration.EarlyExitTamer`'s policy and :func:`pathwise_rule` T-Tamer's
path-wise rule (:class:`~ttamer.earlyexit.pathwise.PathwiseTamer`), both keeping their states'
features from exit to exit (:mod:`ttamer.earlyexit.online`). See the book's chapter *Serving*
(:doc:`/serving`).
"""

from __future__ import annotations

import bisect
import math
import numbers
from typing import Any, Callable

import numpy as np

from ..core.errors import TTamerError
from ..core.instance import Instance
from ..core.policy import IndexPolicy, LastStatePolicy, Policy
from ..core.validate import check_int, check_lam, check_numbers, short_repr
from ..earlyexit.base import MAX_EXITS
from ..earlyexit.calibration import EarlyExitTamer
from ..earlyexit.cascade import CascadeTamer
from ..earlyexit.features import StateEncoder
from ..earlyexit.online import (MATH_RTOL, EncoderRun, ExitHistory, InTurn, check_batch, check_exit, check_exit_probs,
                                check_exit_rows, check_mask, check_stop_states, exit_column, exit_row, log_odds,
                                logistic_at, posterior_answer)
from ..earlyexit.pairwise import PairwiseAnswer
from ..earlyexit.pathwise import PathwiseTamer
from ..earlyexit.tamer import MAX_RUN_CELLS
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
def tamer_state_fn(tamer: Any) -> StateFn:
    """The states of a fitted :class:`~ttamer.earlyexit.calibration.EarlyExitTamer` computed from
    the exits consulted so far (``probs [B, L, C]``, later exits NaN and padded uniformly; the
    state of exit ``i`` depends only on exits ``0..i``): the ``state_fn`` of a policy driven
    through :func:`~ttamer.core.policy.rollout` (one that skips exits)."""
    _fitted(tamer, EarlyExitTamer, "tamer_state_fn")
    enc = tamer.encoder_
    L = enc.n_exits
    names = [f"e{i}" for i in range(L)]

    def state_fn(probs: np.ndarray, node: int) -> np.ndarray:
        if probs.shape[1] != L:
            raise TTamerError(f"state_fn: probs has {probs.shape[1]} exits, the encoder was fitted on {L}")
        return enc.transform(_padded_trace(probs, names))[:, node]
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
    if not (hasattr(enc, "answers") and getattr(getattr(enc, "spec", None), "feature", None) == "posterior"):
        return answer_fn, None
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
    n_models, n_classes = len(tamer.parents_), int(tamer.n_classes_)

    def state_fn(probs: np.ndarray, node: int) -> np.ndarray:
        B, n, C = probs.shape
        if n != n_models:
            raise TTamerError(f"state_fn: probs has {n} models, the tamer was fitted on {n_models}")
        if C != n_classes:  # every model gives the classes of the first one consulted, this one at first
            raise TTamerError(f"state_fn: model {node} ({tamer.names_[node]}) returned logits of {C} classes, but the "
                              f"CascadeTamer was fitted on a trace of {n_classes} classes; serve models that give "
                              "the classes of the trace it was fitted on")
        p = np.where(np.isnan(probs), np.float32(1.0 / C), probs).astype(np.float32)
        tr = Trace(p, np.zeros(B, dtype=np.int64), np.zeros(n), {"exit_names": list(tamer.names_)})
        return tree_states(tamer.encoder_, tr, tamer.parents_, tamer.agreement)[:, node]
    return state_fn


def check_n_exits(n_exits: Any) -> int:
    """``n_exits`` as an int in ``1..MAX_EXITS``, or a :class:`~ttamer.core.errors.TTamerError`
    (floats, bools and strings refused, not converted)."""
    L = check_int(n_exits, "n_exits", minimum=1)
    if L > MAX_EXITS:
        raise TTamerError(f"n_exits must be <= {MAX_EXITS} (MAX_EXITS, the most exits the early-exit "
                          f"tools handle), got {short_repr(L)}")
    return L


def check_runtime_rule(rule: Any, n_exits: int, who: str, of: str = "the model (or trace)") -> Any:
    """``rule``, checked to be a rule evaluated exit by exit (:func:`is_runtime_rule`) over
    the ``n_exits`` exits of ``of``: its ``n_exits`` an int (floats, bools and strings refused,
    not converted) equal to ``n_exits``, its ``thresholds`` ``n_exits`` numbers (``±inf``
    allowed, NaN not). A :class:`~ttamer.core.errors.TTamerError` naming ``who`` and what is
    wrong otherwise."""
    if not is_runtime_rule(rule):
        raise TTamerError(f"{who} needs rules evaluated exit by exit, got {type(rule).__name__}")
    L = check_int(getattr(rule, "n_exits", None), f"{who}: the rule's n_exits", minimum=1)
    if L != n_exits:
        raise TTamerError(f"{who}: the rule has {L} exits but {of} has {n_exits}")
    thr = check_numbers(rule.thresholds, f"{who}: the rule's thresholds", ndim=None, infinite=True)
    if thr.shape != (L,):
        raise TTamerError(f"{who}: the rule's thresholds must hold one number per exit ({L}), got shape "
                          f"{list(thr.shape)}")
    return rule


def check_tau(tau: Any) -> float:
    """A max-probability threshold ``tau`` as a float: a real number, not NaN (``inf``: never
    stop before the last exit); strings, bools and arrays refused."""
    if isinstance(tau, (bool, np.bool_)) or not isinstance(tau, numbers.Real):
        raise TTamerError(f"tau must be a number (a max-probability threshold; inf: the last exit), "
                          f"got {short_repr(tau)}")
    if math.isnan(tau):
        raise TTamerError("tau must be a number, got nan")
    return float(tau)


def stop_state_policy(n_exits: int, lam: float = 1.0, name: str = "") -> Policy:
    """A chain policy on two states per exit -- ``1``: stop here, ``0``: go on -- that stops at
    the first exit in state ``1`` (else at the last) and answers with it (no recall): the
    runtime form of a stop / go-on state function (:func:`threshold_rule`).

    Raises
    ------
    TTamerError
        If ``n_exits`` is not an integer in ``1..MAX_EXITS`` or ``lam`` not a number in [0, 1].
    """
    L = check_n_exits(n_exits)
    lam = check_lam(lam)
    half = np.array([0.5, 0.5])
    inst = Instance.chain([np.zeros(2)] * L, half, [np.full((2, 2), 0.5)] * (L - 1), np.zeros(L),
                          names=[f"exit{i}" for i in range(L)], name=name)
    table = [np.array([[i + 1 if i < L - 1 else -1], [-1]]) for i in range(L)]
    return StopStatePolicy(inst, lam, recall=False, table=table, start=np.array([0]))


class StopStatePolicy(LastStatePolicy):
    """The chain policy of :func:`stop_state_policy`: stop at the first exit in state ``1``.
    :class:`~ttamer.serving.runtime.EarlyExitServer` compiles it with its ``state_fn`` into a threshold rule
    (:class:`StateFnRule`) instead of driving it through :func:`~ttamer.core.policy.rollout`."""


def checked_states(values: Any, n_rows: int, n_states: int, node: int) -> np.ndarray:
    """``[n_rows]`` int64: the states a ``state_fn`` returned for the ``n_rows`` rows of
    ``node``, checked: one per row, each an integer in ``0..n_states−1`` (integer, boolean or
    floating-point numbers holding such integers); a
    :class:`~ttamer.core.errors.TTamerError` naming the node otherwise."""
    raw = np.asarray(values).reshape(-1)
    if len(raw) != n_rows:
        raise TTamerError(f"state_fn returned {len(raw)} states for the {n_rows} rows of node {node}; "
                          "it must return one state per row")
    integral = raw.dtype.kind in "iub" or (raw.dtype.kind == "f" and bool(np.all(raw == np.round(raw))))
    if not integral or (len(raw) and (raw.min() < 0 or raw.max() >= n_states)):
        raise TTamerError(f"state_fn returned states {raw[:5].tolist()}... for node {node} "
                          f"({n_rows} rows, expected integers in 0..{n_states - 1})")
    return raw.astype(np.int64)


class StateFnRule:
    """A stop / go-on ``state_fn`` (state ``1``: stop) as a rule the runtime evaluates exit by
    exit (the interface of :meth:`ttamer.earlyexit.tamer.ThresholdTamer.runtime_rule`):
    ``step(i, probs [B, i+1, C]) -> (x_i, a_i)``, stop where ``x_i ≥ thresholds[i]``.

    ``state_fn`` sees the exits consulted so far, later ones NaN (its usual input); the answer
    is the exit stopped at (mapped through the server's ``exit_map``, if any, once the batch is
    done).

    Raises
    ------
    TTamerError
        If ``n_exits`` is not an integer in ``1..MAX_EXITS`` or ``state_fn`` not callable.
    """

    def __init__(self, n_exits: int, state_fn: StateFn, name: str = "") -> None:
        if not callable(state_fn):
            raise TTamerError(f"state_fn must be callable (probs [B, n, C], node) -> states [B], got {state_fn!r}")
        self.n_exits = check_n_exits(n_exits)
        self.state_fn, self.name = state_fn, name
        self.thresholds = np.r_[np.full(self.n_exits - 1, 0.5), -np.inf]

    def step(self, i: int, probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(x_i, a_i)``: ``1.0`` where the state function says stop after exit ``i``, from the
        softmax rows ``probs [B, i+1, C]`` of exits ``0..i``
        (:func:`~ttamer.earlyexit.online.check_exit_probs`)."""
        i = check_exit(i, self.n_exits, "step")
        check_exit_probs(i, probs, None)
        B, seen, C = probs.shape
        full = np.full((B, self.n_exits, C), np.nan, dtype=np.float32)
        full[:, :seen] = probs
        s = checked_states(self.state_fn(full, i), B, 2, i)
        return s.astype(np.float64), np.full(B, i, dtype=np.int64)

    def stops(self, i: int, x: np.ndarray) -> np.ndarray:
        """``[B]`` bool: stop after exit ``i`` (always at the last exit)."""
        return x >= self.thresholds[check_stop_states(i, x, self.n_exits)]


class ChainSteps:
    """A policy on a chain without skips, compiled into its decision after each exit: after
    exit ``i`` in state ``s``, with ``X`` the best scaled loss so far (``λ`` times the least
    ``ℓ_j(s_j)`` of the exits consulted, :meth:`~ttamer.core.policy.Policy.best_scaled`),
    stop or go on to exit ``i + 1``. The policy's own representation, read per exit:

    * an :class:`~ttamer.core.policy.IndexPolicy` goes on iff ``σ_{i+1}(s) < X`` (``σ`` not
      finite: stop) -- one lookup and one comparison;
    * a :class:`~ttamer.core.policy.LastStatePolicy` (the DP's table) reads ``table[i][s, m]``,
      ``m`` the level of ``X`` with recall, ``0`` without -- one lookup;
    * any other policy is asked (``decide``) on the states of the exits seen so far.

    ``X`` is kept from exit to exit as the running minimum of ``λ ℓ_j(s_j)`` (:attr:`scaled`),
    which is ``best_scaled``'s value exactly (multiplying by ``λ ≥ 0`` preserves the order).
    :meth:`of` says whether a policy is one exit after the other from exit 0.
    """

    def __init__(self, policy: Policy) -> None:
        inst, lam = policy.instance, policy.lam
        self.policy, self.n_exits = policy, int(inst.n)
        finite = np.isfinite(policy._loss_table)
        #: ``λ ℓ_i(s)`` per exit and state, ``+inf`` where ``ℓ`` is not finite.
        self.scaled = np.where(finite, lam * np.where(finite, policy._loss_table, 0.0), np.inf)
        self.x0 = lam * policy._y if np.isfinite(policy._y) else np.inf
        self.recall = bool(policy.recall)
        self.kind = ("index" if type(policy).decide is IndexPolicy.decide
                     else "table" if type(policy).decide is LastStatePolicy.decide else "decide")
        if self.kind == "index":
            sig = policy._sigma_table[1:]
            self.go = np.where(np.isfinite(sig), sig, np.inf)  # go[i, s]: σ_{i+1}(s)
        if self.kind == "table":
            self.stop = [np.asarray(t) < 0 for t in policy.table]  # stop[i][s, m]
            self.levels = policy.levels

    @classmethod
    def of(cls, policy: Policy) -> "ChainSteps | None":
        """The compiled steps, or ``None`` where the policy is not one exit after the other
        from exit 0 (a tree, skips, a chain in another order, a table that jumps, or a policy
        that starts elsewhere)."""
        inst = policy.instance
        if not inst.is_chain or inst.skips or not np.array_equal(inst.chain_position, np.arange(inst.n)):
            return None
        first = policy.decide(np.full((1, inst.n), -1, dtype=np.int64), np.full(1, -1, dtype=np.int64))
        if int(first[0]) != 0:
            return None
        if type(policy).decide is LastStatePolicy.decide and any(
                not np.isin(np.asarray(t), (-1, i + 1)).all() for i, t in enumerate(policy.table)):
            return None
        return cls(policy)

    def stops(self, i: int, s: np.ndarray, x: np.ndarray, states: np.ndarray) -> np.ndarray:
        """``[B]`` bool: the policy stops after exit ``i < L − 1`` in states ``s`` with best
        scaled loss ``x`` (``states [B, L]``: the exits seen so far, for a policy asked)."""
        if self.kind == "index":
            return ~(self.go[i, s] < x)
        if self.kind == "table":
            return self.stop[i][s, self.level(x)]
        nxt = np.asarray(self.policy.decide(states, np.full(len(s), i, dtype=np.int64)), dtype=np.int64)
        wrong = (nxt >= 0) & (nxt != i + 1)
        if wrong.any():
            raise TTamerError(f"the policy went from exit {i} to exit {int(nxt[wrong][0])}; a chain rule "
                              "goes on to the next exit or stops")
        return nxt < 0

    def level(self, x: Any) -> Any:
        """The table's level of ``X`` (:meth:`~ttamer.core.policy.LastStatePolicy.level_of`)."""
        if not self.recall:
            return 0
        return np.minimum(np.searchsorted(self.levels, x), len(self.levels) - 1)


class _StopOrGoOn:
    """What a rule evaluated exit by exit with a running state (its ``begin(n)``) shares: its
    ``x_i`` is ``1.0`` where it stops after exit ``i``, compared with the thresholds
    ``0.5, …, 0.5, −inf`` (the last exit always stops); ``_exit`` caches the arrays of
    :meth:`exits`; ``n_classes`` (``None``: any) are those each exit must give."""

    n_classes: int | None = None

    def __init__(self, n_exits: int) -> None:
        self.n_exits = int(n_exits)
        self.thresholds = np.r_[np.full(self.n_exits - 1, 0.5), -np.inf]
        self._exit = [np.full(1, i, dtype=np.int64) for i in range(self.n_exits)]

    def begin(self, n: int) -> Any:
        raise NotImplementedError

    def _rows(self, n: Any) -> int:
        """``n`` as the rows of a batch whose buffers (``n_exits`` by classes a row) stay within
        :data:`~ttamer.earlyexit.tamer.MAX_RUN_CELLS` numbers (:func:`~ttamer.earlyexit.online.check_batch`)."""
        return check_batch(n, self.n_exits * (self.n_classes or 1), MAX_RUN_CELLS)

    def step(self, i: int, probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(x_i, a_i)``: ``1.0`` where the rule stops after exit ``i``, and the exit answering
        there (``i`` where it goes on), from ``probs [B, i+1, C]``; stateless (replays the
        running state of :meth:`begin` over exits ``0..i``)."""
        i = check_exit(i, self.n_exits, "step")
        check_exit_probs(i, probs, self.n_classes)
        run = self.begin(len(probs))
        for k in range(i + 1):
            out = run.advance(k, probs[:, k])
        return out

    def stops(self, i: int, x: np.ndarray) -> np.ndarray:
        """``[B]`` bool: the rule stops after exit ``i``."""
        return x >= self.thresholds[check_stop_states(i, x, self.n_exits)]

    def exits(self, i: int, B: int) -> np.ndarray:
        """``[B]`` int64 filled with ``i`` (a cached read-only array)."""
        return exit_column(self._exit, i, B, MAX_RUN_CELLS)


class ChainPolicyRule(_StopOrGoOn):
    """A policy on the binned states of a fitted :class:`~ttamer.earlyexit.features.StateEncoder`
    over a chain without skips, evaluated exit by exit like a threshold rule
    (:class:`ChainRun`): after exit ``i``, exit ``i``'s states from its softmax and what the
    earlier exits left (:class:`~ttamer.earlyexit.online.EncoderRun`: the encoder's own
    arithmetic, so the states are ``encoder.transform``'s), the policy's decision compiled per
    exit (:class:`ChainSteps`) on the rows still running; the rows that stop are answered by
    the pairwise ``answer_table`` where given (:meth:`~ttamer.earlyexit.pairwise.PairwiseAnswer.answer`),
    else by ``policy.answer``, and, for the posterior feature, mapped to the exit whose
    prediction the node answers with (``encoder.answers``). The decisions are those of
    :func:`~ttamer.core.policy.rollout` on the same states. One query of the max-probability
    state (the confidence bin, optionally with agreement) runs on Python scalars
    (:class:`ChainRunOne`). Build it with :meth:`compile`, which says when a policy qualifies.
    """

    def __init__(self, policy: Policy, encoder: StateEncoder, answer_table: PairwiseAnswer | None = None,
                 name: str = "") -> None:
        steps = ChainSteps.of(policy)
        if steps is None:
            raise TTamerError("ChainPolicyRule needs a policy that consults the exits one after the other "
                              "from exit 0; serve this one with EarlyExitServer(model, policy, state_fn)")
        if encoder.n_exits != steps.n_exits:
            raise TTamerError(f"the encoder has {encoder.n_exits} exits, the policy {steps.n_exits}")
        super().__init__(steps.n_exits)
        self.policy, self.encoder, self.steps, self.answer_table = policy, encoder, steps, answer_table
        #: Classes of the trace the encoder was fitted on (``None`` where not recorded).
        self.n_classes = encoder.n_classes
        self.name = name or policy.describe().split("\n")[0]
        scalar = (encoder.spec.feature == "max_prob" and list(encoder.edges) == ["feature"] and steps.kind != "decide"
                  and (answer_table is not None or type(policy).answer is Policy.answer))
        self.one = _ChainTables(self) if scalar else None

    @classmethod
    def compile(cls, policy: Policy, encoder: StateEncoder,
                answer_table: PairwiseAnswer | None = None) -> "ChainPolicyRule | None":
        """The rule, or ``None`` where the policy is not one exit after the other from exit 0
        (:meth:`ChainSteps.of`)."""
        return cls(policy, encoder, answer_table) if ChainSteps.of(policy) is not None else None

    def begin(self, n: int) -> "ChainRun | ChainRunOne":
        """The running state of the rule on a batch of ``n`` examples, before exit 0 (one query
        of the max-probability state: on Python scalars)."""
        n = self._rows(n)
        return ChainRunOne(self) if n == 1 and self.one is not None else ChainRun(self, n)

    def answer(self, states: np.ndarray, i: int) -> np.ndarray:
        """``[B]``: the node answering for rows that stop after exit ``i`` in ``states [B, L]``."""
        last = self.exits(i, len(states))
        table = self.answer_table
        node = np.asarray(table.answer(states, last) if table is not None else self.policy.answer(states, last))
        if (node < 0).any():
            raise TTamerError("the policy answered with the fallback; early-exit instances have none")
        return node


class ChainRun(InTurn):
    """The running state of a :class:`ChainPolicyRule` on one batch: the encoder's running
    state (:class:`~ttamer.earlyexit.online.EncoderRun`), the states of the exits seen so far
    ``[B, L]`` (what the answer rule reads) and the best scaled loss ``X`` so far."""

    def __init__(self, rule: ChainPolicyRule, n: int) -> None:
        self.rule, self.n_exits = rule, rule.n_exits
        self.enc = EncoderRun(rule.encoder, n)
        self.states = np.full((n, rule.n_exits), -1, dtype=np.int64)
        self.x = np.full(n, rule.steps.x0)

    def keep(self, mask: np.ndarray) -> None:
        """Keep the rows where ``mask [B]`` (bool) is true; the others stopped."""
        self.enc.keep(mask)
        self.states, self.x = self.states[mask], self.x[mask]

    def advance(self, i: int, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(x_i, a_i)``, both ``[B]``: ``1.0`` where the policy stops after exit ``i`` (every
        row at the last exit), else ``0.0``, and the exit answering there, from exit ``i``'s
        float32 softmax rows ``p [B, C]``; called for ``i = 0, 1, …`` in turn."""
        i = self._in_turn(i)
        rule, steps = self.rule, self.rule.steps
        s = self.enc.advance(i, p, self.check_rows)
        self.next_exit = i + 1
        self.states[:, i] = s
        self.x = np.minimum(self.x, steps.scaled[i, s])
        B = len(s)
        stop = np.ones(B, dtype=bool) if i == rule.n_exits - 1 else steps.stops(i, s, self.x, self.states)
        a = rule.exits(i, B)
        if stop.any():
            rows = np.flatnonzero(stop) if not stop.all() else slice(None)
            a = a.copy()
            a[rows] = self.enc.answers(rule.answer(self.states[rows], i), rows)
        return stop.astype(np.float64), a


class _ChainTables:
    """What :class:`ChainRunOne` reads, as Python lists: per exit the confidence bin edges, the
    states per agreement level, the losses ``ℓ_i(s)`` and ``λ ℓ_i(s)``, and the decision
    (:class:`ChainSteps`: ``σ_{i+1}(s)`` or the table's stop flags)."""

    def __init__(self, rule: ChainPolicyRule) -> None:
        enc, steps, policy = rule.encoder, rule.steps, rule.policy
        self.edges = [e.tolist() for e in enc.edges["feature"]]
        self.base, self.cap = enc.base_states.tolist(), enc.spec.agreement_cap
        self.loss, self.scaled = policy._loss_table.tolist(), steps.scaled.tolist()
        self.y, self.x0, self.recall = float(policy._y), float(steps.x0), bool(policy.recall)
        self.go = steps.go.tolist() if steps.kind == "index" else None
        self.stop = [t.tolist() for t in steps.stop] if steps.kind == "table" else None
        self.levels = steps.levels.tolist() if steps.kind == "table" else None


class _OneQueryRun(InTurn):
    """What the running states of one query on Python numbers share: nothing to forget when
    rows stop (the query stops once), the exits in turn, each row checked and read once
    (:func:`~ttamer.earlyexit.online.exit_row`), the step and the answer rule kept apart --
    ``_step(i, row, p)`` (``1.0`` where the rule stops after exit ``i``, else ``0.0``) and
    ``_answer(i)`` (the exit answering there) -- so that :meth:`decide_one` runs the answer
    rule only where the runtime stops, and ``advance`` as :meth:`advance_one` on ``[1]``
    arrays."""

    def __init__(self, rule: Any) -> None:
        self.rule, self.n_exits, self.n_classes = rule, rule.n_exits, rule.n_classes

    def _step(self, i: int, row: list[float], p: np.ndarray) -> float:
        raise NotImplementedError

    def _answer(self, i: int) -> int:
        raise NotImplementedError

    def _row(self, i: Any, p: Any, who: str) -> tuple[int, list[float]]:
        """``(i, row)``: exit ``i`` (the one that comes next) and its softmax row ``p [1, C]``
        checked, as Python floats; the first row fixes the classes where the rule does not."""
        i = self._in_turn(i, who)
        row = exit_row(i, p, self.n_classes, who) if self.check_rows else p.tolist()[0]
        self.n_classes, self.next_exit = len(row), i + 1
        return i, row

    def advance_one(self, i: int, p: np.ndarray) -> tuple[float, int]:
        """``(x_i, a_i)`` on one query (``p [1, C]``) as Python scalars: ``1.0`` where the
        rule stops after exit ``i`` (always at the last exit), and the exit answering there."""
        i, row = self._row(i, p, "advance_one")
        x = self._step(i, row, p)
        return x, (self._answer(i) if x == 1.0 else i)

    def decide_one(self, i: int, p: np.ndarray, tau: float) -> tuple[bool, int]:
        """``(stop, a)`` on one query (``p [1, C]``): whether the runtime stops after exit
        ``i`` -- the rule's ``x_i`` (``1.0`` or ``0.0``) at least ``tau``, or the last exit --
        and the exit answering there. The answer rule runs only where the runtime stops, as it
        is served: a rule forced past its own stops (``tau = +inf``) pays it once, at the end."""
        i, row = self._row(i, p, "decide_one")
        stop = self._step(i, row, p) >= tau or i == self.n_exits - 1
        return stop, (self._answer(i) if stop else i)

    def keep(self, mask: np.ndarray) -> None:
        """Nothing to forget: the query stops once (``mask [1]`` checked)."""
        check_mask(mask, 1)

    def advance(self, i: int, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`advance_one` as ``[1]`` arrays."""
        x, a = self.advance_one(i, p)
        return np.array([x]), np.array([a], dtype=np.int64)


class ChainRunOne(_OneQueryRun):
    """The running state of a :class:`ChainPolicyRule` on one query of the max-probability
    state, on Python scalars (the rule's tables as Python lists): per exit the maximum and
    argmax of the softmax row (the float32 values, exactly the encoder's), the agreement run,
    one bisection of the bin edges (``searchsorted``'s), the running ``X`` and best loss, and
    one lookup of the decision; the answer rule once, when the policy stops."""

    def __init__(self, rule: ChainPolicyRule) -> None:
        super().__init__(rule)
        self.t = rule.one
        self.x, self.run, self.prev = self.t.x0, 0, -1
        self.states: list[int] = []
        self.best, self.best_loss = 0, np.inf

    def _step(self, i: int, row: list[float], p: np.ndarray) -> float:
        """Exit ``i``'s row (``p [1, C]``, as the list ``row``) added to the query's state;
        ``1.0`` where the policy stops after it (always at the last exit), else ``0.0``."""
        t = self.t
        mp = max(row)
        pred = row.index(mp)
        if t.cap:
            self.run = self.run + 1 if i > 0 and pred == self.prev else 0
            self.prev = pred
        s = bisect.bisect_right(t.edges[i], mp) + t.base[i] * min(self.run, t.cap)
        self.states.append(s)
        loss = t.loss[i][s]
        if loss < self.best_loss:  # the consulted exit of least loss, the first on ties
            self.best, self.best_loss = i, loss
        self.x = min(self.x, t.scaled[i][s])
        return 0.0 if i < self.rule.n_exits - 1 and not self._stops(i, s) else 1.0

    def _stops(self, i: int, s: int) -> bool:
        """The compiled decision after exit ``i < L − 1`` in state ``s``."""
        t = self.t
        if t.go is not None:
            return not t.go[i][s] < self.x
        level = min(bisect.bisect_left(t.levels, self.x), len(t.levels) - 1) if t.recall else 0
        return t.stop[i][s][level]

    def _answer(self, i: int) -> int:
        """The node answering after exit ``i`` (``policy.answer`` or the pairwise table)."""
        if self.rule.answer_table is not None:
            return self.rule.answer_table.answer_one(self.states, i)
        if not self.t.recall:
            return i
        if not (self.best_loss <= self.t.y and math.isfinite(self.best_loss)):
            raise TTamerError("the policy answered with the fallback; early-exit instances have none")
        return self.best


class HistoryRun(InTurn):
    """The running state of a rule that has only the stateless ``step(i, probs [B, i+1, C])``
    (:class:`StateFnRule`, a user's rule): the softmax rows of the
    exits seen so far in a buffer ``[n, L, C]`` allocated once per batch; :meth:`advance`
    writes exit ``i``'s rows (checked, the exits in turn) and calls ``step`` on the view of
    exits ``0..i``."""

    def __init__(self, rule: Any, n: int) -> None:
        self.rule, self.n_exits = rule, check_int(getattr(rule, "n_exits", None), "the rule's n_exits", minimum=1)
        self.n = self.rows = check_batch(n, self.n_exits, MAX_RUN_CELLS)
        self.hist: np.ndarray | None = None

    def advance(self, i: int, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``rule.step(i, …)`` on the exits seen so far, exit ``i``'s rows ``p [B, C]`` added."""
        i = self._in_turn(i)
        if self.check_rows:
            check_exit_rows(i, p, self.rows, None if self.hist is None else self.hist.shape[2])
        self.next_exit = i + 1
        if self.hist is None:
            self.hist = np.empty((len(p), self.n_exits, p.shape[1]), dtype=np.float32)
        self.hist[:, i] = p
        return self.rule.step(i, self.hist[:, : i + 1])

    def keep(self, mask: np.ndarray) -> None:
        """Keep the rows where ``mask [B]`` (bool) is true."""
        check_mask(mask, self.rows)
        self.rows = int(mask.sum())
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
        self.rule, self.n_exits = rule, check_int(rule.n_exits, "ForcedRule: the rule's n_exits", minimum=1)
        self.thresholds = np.r_[np.full(self.n_exits - 1, np.inf), -np.inf]
        self.name = f"{getattr(rule, 'name', 'rule')} (forced to the last exit)"

    def step(self, i: int, probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The rule's own step."""
        return self.rule.step(i, probs)

    def stops(self, i: int, x: np.ndarray) -> np.ndarray:
        """``[B]`` False: never stops before the last exit."""
        check_stop_states(i, x, self.n_exits)
        return np.zeros(len(x), dtype=bool)

    def begin(self, n: int) -> Any:
        """The rule's own running state (:func:`begin_run`)."""
        return begin_run(self.rule, n)


class StopRowsRule:
    """The max-probability rule made to stop every row of a batch but its first ``k`` at exit
    0, and the rest at exit 1: the runtime serving it pays what a stop that leaves ``k`` rows
    running costs -- the bookkeeping of the rows that stopped and, where stopped rows leave the
    batch, the gathering of the others -- and then the exit after it, and no more
    (:meth:`~ttamer.serving.runtime.EarlyExitServer.gather_cost` times that exit)."""

    def __init__(self, n_exits: int, k: int) -> None:
        self.rule, self.k = max_prob_rule(n_exits, np.inf), check_int(k, "k", minimum=0)
        self.n_exits = self.rule.n_exits
        self.thresholds = self.rule.thresholds

    def step(self, i: int, probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The max-probability rule's step."""
        return self.rule.step(i, probs)

    def stops(self, i: int, x: np.ndarray) -> np.ndarray:
        """``[B]``: at exit 0 the rows after the first ``k``, at exit 1 every row."""
        i = check_stop_states(i, x, self.n_exits)
        stop = np.full(len(x), i >= 1)
        if i == 0:
            stop[self.k:] = True
        return stop

    def begin(self, n: int) -> Any:
        """The max-probability rule's running state (:func:`begin_run`)."""
        return begin_run(self.rule, n)


def runtime_rules(rules: Any, n_exits: int, who: str) -> list[Any]:
    """``rules`` (a non-empty list; ``None`` is the max-probability rule, never stopping) as
    rules evaluated exit by exit over ``n_exits`` exits, or a
    :class:`~ttamer.core.errors.TTamerError` naming ``who`` and what is wrong."""
    if not isinstance(rules, (list, tuple)) or not rules:
        raise TTamerError(f"{who}: rules must be a non-empty list of rules (None: the max-probability rule), "
                          f"got {short_repr(rules)}")
    return [max_prob_rule(n_exits, np.inf) if r is None else check_runtime_rule(r, n_exits, who) for r in rules]


def forced_rules(rules: Any, n_exits: int, who: str) -> list[Any]:
    """:func:`runtime_rules`, each forced on to the last exit (:class:`ForcedRule`; ``None``
    is already the max-probability rule that never stops): what a rule's cost profile and
    state cost are measured with."""
    return [r if given is None else ForcedRule(r) for given, r in zip(rules, runtime_rules(rules, n_exits, who))]


def begin_run(rule: Any, n: int, check_rows: bool = True) -> Any:
    """The running state of ``rule`` on a batch of ``n`` examples: ``rule.begin(n)`` where the
    rule keeps its own (incremental) state, else a :class:`HistoryRun`. Either has
    ``advance(i, p [B, C]) -> (x_i, a_i)`` and ``keep(mask)``. With ``check_rows=False`` the
    run takes its rows unchecked (:attr:`~ttamer.earlyexit.online.InTurn.check_rows`: the
    serving runtime's, made by a softmax and checked once after the run)."""
    run = rule.begin(n) if callable(getattr(rule, "begin", None)) else HistoryRun(rule, n)
    if not check_rows and isinstance(run, InTurn):
        run.check_rows = False
    return run


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
    ``tau = inf`` is the full model through the runtime.

    Raises
    ------
    TTamerError
        If ``tau`` is not a number or NaN, ``n_exits`` not an integer in ``1..MAX_EXITS`` or
        ``lam`` not in [0, 1].
    """
    tau = check_tau(tau)
    policy = stop_state_policy(n_exits, lam, name=f"max-prob >= {tau:g}")

    tau64 = np.float64(tau)  # a float64 scalar: float32 states are compared in float64 (NEP 50)

    def state_fn(probs: np.ndarray, node: int) -> np.ndarray:
        return (probs[:, node].max(axis=1) >= tau64).astype(np.int64)  # NaN (a broken head) never stops
    return policy, state_fn


class MaxProbRule:
    """The confidence-threshold heuristic as a rule evaluated exit by exit: stop at the first
    exit whose max-probability is ``≥ tau`` (else at the last) and answer with it; one
    reduction and one comparison per exit (``tau = inf``: the runtime forced to the last exit).

    Raises
    ------
    TTamerError
        If ``tau`` is not a number or NaN, or ``n_exits`` not an integer in ``1..MAX_EXITS``.
    """

    def __init__(self, n_exits: int, tau: float) -> None:
        self.tau = check_tau(tau)
        self.n_exits = check_n_exits(n_exits)
        self.thresholds = np.r_[np.full(self.n_exits - 1, self.tau), -np.inf]
        self.name = f"max-prob >= {tau:g}"
        self._exit = [np.full(1, i, dtype=np.int64) for i in range(self.n_exits)]

    def step(self, i: int, probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(max-probability of exit i, i)`` for the rows of ``probs [B, i+1, C]`` (float32, as
        in the trace; compared with the float64 threshold exactly)."""
        i = check_exit(i, self.n_exits, "step")
        check_exit_probs(i, probs, None)
        return probs[:, i].max(axis=1), exit_column(self._exit, i, len(probs), MAX_RUN_CELLS)

    def stops(self, i: int, x: np.ndarray) -> np.ndarray:
        """``[B]`` bool: ``x ≥`` exit ``i``'s threshold, compared in float64 (a Python float
        would be rounded to the float32 of ``x`` first, and decide otherwise than one query at
        a time and the trace's simulation do)."""
        return x >= self.thresholds[check_stop_states(i, x, self.n_exits)]

    def begin(self, n: int) -> "MaxProbRun":
        """The rule's running state on a batch of ``n`` rows (:class:`MaxProbRun`: its state
        reads exit ``i`` only, and the run keeps the exits in turn)."""
        return MaxProbRun(self, check_batch(n, self.n_exits, MAX_RUN_CELLS))


class MaxProbRun(InTurn):
    """The running state of a :class:`MaxProbRule` on a batch: nothing but the exits in turn,
    the rows still running and the classes of the first exit's rows (which every exit must
    give)."""

    def __init__(self, rule: MaxProbRule, n: int) -> None:
        self.rule, self.n_exits, self.rows = rule, rule.n_exits, n
        self.n_classes: int | None = None

    def advance(self, i: int, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(max-probability of exit i, i)`` from exit ``i``'s softmax rows ``p [B, C]``."""
        i = self._in_turn(i)
        if self.check_rows:
            check_exit_rows(i, p, self.rows, self.n_classes)
        self.n_classes, self.next_exit = p.shape[1], i + 1
        return p.max(axis=1), exit_column(self.rule._exit, i, self.rows, MAX_RUN_CELLS)

    def advance_one(self, i: int, p: np.ndarray) -> tuple[float, int]:
        """:meth:`advance` on one query (``p [1, C]``) as Python scalars: the max-probability
        (the float32 value, exactly) and ``i``; no numpy call beyond reading the row."""
        i = self._in_turn(i, "advance_one")
        row = exit_row(i, p, self.n_classes) if self.check_rows else p.tolist()[0]
        self.n_classes, self.next_exit = len(row), i + 1
        return max(row), i

    def keep(self, mask: np.ndarray) -> None:
        """Nothing to forget when rows stop but how many are left (``mask [B]`` bool)."""
        check_mask(mask, self.rows)
        self.rows = int(mask.sum())


def max_prob_rule(n_exits: int, tau: float) -> MaxProbRule:
    """:class:`MaxProbRule`: the decisions of :func:`threshold_rule` (and of
    :func:`ttamer.earlyexit.baselines.max_prob_threshold`), served without a policy object."""
    return MaxProbRule(n_exits, tau)


class PathwiseRule(_StopOrGoOn):
    """A fitted :class:`~ttamer.earlyexit.pathwise.PathwiseTamer`'s stopping rule evaluated exit
    by exit (:class:`PathwiseRun`): after exit ``i``, exit ``i``'s standardised state ``x_i``
    from its softmax and what the earlier exits left (an
    :class:`~ttamer.earlyexit.online.ExitHistory`: the log-odds of the max-probability, or of
    the learned P(right | history)), then exit ``i``'s rule alone, stop where
    ``λ ℓ_i(x_i) ≤ C_i(x_i)`` (the last exit always stops); the rows that stop answer with the
    exit stopped at, or with the posterior answer (computed for those rows only). The
    arithmetic is the tamer's, so the decisions are ``tamer.decide``'s.
    """

    def __init__(self, tamer: Any) -> None:
        _fitted(tamer, PathwiseTamer, "PathwiseRule")
        model = tamer.model_
        self.features, self.rule = model.features, tamer.rule_
        super().__init__(len(self.features.center))
        #: Classes of the trace the tamer was fitted on, which each exit must give.
        self.n_classes = int(tamer.fitted_shape_[1])
        self.posterior = (None if model.answer_models is None
                          else [w / scale for w, scale in model.answer_models])
        learned = self.features.feature == "learned"
        self.keeps = frozenset(({"lo", "counts", "run", "history"} if learned else {"lo"})
                               | ({"pred", "counts", "total"} if self.posterior is not None else set()))
        self.name = f"path-wise rule at λ={tamer.lam:g}"
        #: Per exit the standardisation ``(center, scale)`` of the state, as Python floats.
        self.standard = list(zip(self.features.center.tolist(), self.features.scale.tolist()))

    def begin(self, n: int) -> "PathwiseRun | PathwiseRunOne":
        """The running state of the rule on a batch of ``n`` examples, before exit 0 (one query
        of the max-probability state: :class:`PathwiseRunOne`, on Python numbers)."""
        n = self._rows(n)
        return PathwiseRunOne(self) if n == 1 and self.features.feature == "max_prob" else PathwiseRun(self, n)


class PathwiseRun(InTurn):
    """The running state of a :class:`PathwiseRule` on one batch: an
    :class:`~ttamer.earlyexit.online.ExitHistory` of what its state and answer need."""

    def __init__(self, rule: PathwiseRule, n: int) -> None:
        self.rule, self.n_exits = rule, rule.n_exits
        self.h = ExitHistory(n, rule.n_exits, rule.n_classes, rule.keeps)

    def keep(self, mask: np.ndarray) -> None:
        """Keep the rows where ``mask [B]`` (bool) is true; the others stopped."""
        self.h.keep(mask)

    def advance(self, i: int, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(x_i, a_i)``, both ``[B]``: ``1.0`` where the rule stops after exit ``i`` (every row
        at the last exit), else ``0.0``, and the exit answering there, from exit ``i``'s
        float32 softmax rows ``p [B, C]``; called for ``i = 0, 1, …`` in turn."""
        i = self._in_turn(i)
        rule, h = self.rule, self.h
        h.add(i, p, self.check_rows)
        self.next_exit = i + 1
        if i == rule.n_exits - 1:
            stop = np.ones(len(p), dtype=bool)
        else:  # exit i's rule, λ ℓ_i(x) ≤ C_i(x), on the standardised state
            x = (self._raw(i) - rule.features.center[i]) / rule.features.scale[i]
            stop = rule.rule.stop_value(i, x) <= rule.rule.continue_value(i, x)
        a = rule.exits(i, len(stop))
        if rule.posterior is not None and stop.any():
            a = a.copy()
            rows = np.flatnonzero(stop) if not stop.all() else slice(None)
            a[rows] = h.posterior(i, rule.posterior[i], rows)[1]
        return stop.astype(np.float64), a

    def _raw(self, i: int) -> np.ndarray:
        """``[B]``: exit ``i``'s state before standardisation (``PathFeatures.raw``)."""
        if self.rule.features.feature == "max_prob":
            return self.h.lo_i
        w, scale = self.rule.features.model
        return log_odds(logistic_at(self.h.history(i), w[i : i + 1], scale))


class PathwiseRunOne(_OneQueryRun):
    """The running state of a :class:`PathwiseRule` of the max-probability state on one query:
    per exit the row's maximum (the float32 value), its log-odds and exit ``i``'s rule on
    Python floats (:meth:`~ttamer.earlyexit.pathwise.StoppingRule.stops_near`, with Python's
    ``math`` logarithms); where the margin is too thin for that to tell, the log-odds (numpy's
    logarithms, as ``PathFeatures.transform``) and the rule
    (:meth:`~ttamer.earlyexit.pathwise.StoppingRule.stops_one`) exactly as fitted, so that the
    decisions are ``tamer.decide``'s to the bit. Nothing at the last exit, which always stops.
    With the posterior answer, what it reads is kept as the batched
    :class:`~ttamer.earlyexit.online.ExitHistory` keeps it -- the max-probabilities and
    predictions of the exits seen, the running softmax sum, the class counts -- and the answer
    is computed once, where the rule stops (:func:`~ttamer.earlyexit.online.posterior_answer`,
    on the log-odds of the kept maxima)."""

    def __init__(self, rule: PathwiseRule) -> None:
        super().__init__(rule)
        if rule.posterior is not None:
            self.mp = np.zeros((1, rule.n_exits))
            self.pred = np.zeros((1, rule.n_exits), dtype=np.int64)
            self.total: np.ndarray | None = None
            self.counts: np.ndarray | None = None

    def _step(self, i: int, row: list[float], p: np.ndarray) -> float:
        """Exit ``i``'s row (``p [1, C]``, as the list ``row``) read (and kept, for the
        posterior answer); ``1.0`` where the rule stops after it, else ``0.0``."""
        rule = self.rule
        top = max(row)
        stop = i == rule.n_exits - 1 or self._stops(i, min(max(top, 1e-6), 1 - 1e-6))
        if rule.posterior is not None:
            self._add(i, p, top, row.index(top))
        return float(stop)

    def _answer(self, i: int) -> int:
        """The exit answering after exit ``i``: ``i``, or with the posterior answer the
        consulted exit most probably right."""
        rule = self.rule
        if rule.posterior is None:
            return i
        lo = log_odds(self.mp[:, : i + 1])
        return int(posterior_answer(i, rule.posterior[i], lo, self.pred, self.total, self.counts)[1][0])

    def _stops(self, i: int, m: float) -> bool:
        """Whether exit ``i < L−1``'s rule stops on the clipped maximum ``m``: on ``math``'s
        logarithms where the margin tells (the state ``x`` within ``dx`` of the fitted one),
        else on numpy's, exactly as fitted."""
        center, scale = self.rule.standard[i]
        l1, l2 = math.log(m), math.log1p(-m)
        x = (l1 - l2 - center) / scale
        stop = self.rule.rule.stops_near(i, x, MATH_RTOL * ((abs(l1) + abs(l2)) / abs(scale) + abs(x)))
        if stop is None:
            lo = float(np.log(np.float64(m))) - float(np.log1p(np.float64(-m)))
            stop = self.rule.rule.stops_one(i, (lo - center) / scale)
        return stop

    def _add(self, i: int, p: np.ndarray, top: float, pred: int) -> None:
        """Keep exit ``i``'s max-probability and prediction, and add its softmax row to the sum
        and its prediction to the class counts (float64 and int64, as the batched buffers)."""
        if self.total is None:
            self.total = np.zeros((1, p.shape[1]))
            self.counts = np.zeros((1, p.shape[1]), dtype=np.int64)
        self.mp[0, i], self.pred[0, i] = top, pred
        self.total += p
        self.counts[0, pred] += 1


def pathwise_rule(tamer: Any) -> PathwiseRule:
    """A fitted :class:`~ttamer.earlyexit.pathwise.PathwiseTamer` as a rule the runtime
    evaluates exit by exit (:class:`PathwiseRule`); the served decisions are ``tamer.decide``'s."""
    return PathwiseRule(tamer)
