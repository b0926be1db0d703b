"""A serving runtime that exits early with recall: the fitted policy drives real models.

:class:`EarlyExitServer` wraps a torch **multi-exit model** (:class:`~ttamer.serving.adapters.MultiExitModel`: a
``prepare`` step, a list of blocks and one exit head per block) and a fitted
:class:`~ttamer.core.policy.Policy`. For every query it runs block after block; after exit ``i``
it turns the exit's softmax (and those of earlier exits) into the state ``s_i`` with a
``state_fn``, asks the policy whether to go on, and when the policy stops it answers **per
recall** -- with the consulted exit of smallest calibrated loss ``ℓ_i(s_i)``
(:meth:`ttamer.core.policy.Policy.answer`). The loop is :func:`ttamer.core.policy.rollout` itself,
whose ``reveal`` callback runs the network, so the runtime takes exactly the decisions that
the trace-simulated policy takes on the same outputs (the key property, tested).

**Threshold rules** take a fast path without a policy object or a rollout: a rule with
``step(i, probs) -> (x_i, a_i)``, ``stops(i, x_i)`` and ``thresholds`` (a fitted
:class:`~ttamer.earlyexit.tamer.ThresholdTamer`'s ``runtime_rule()``, :class:`~ttamer.serving.rules.MaxProbRule`,
a stop / go-on ``state_fn`` compiled by :class:`~ttamer.serving.rules.StateFnRule`, a chain policy compiled by
:class:`~ttamer.serving.rules.ChainPolicyRule`, the path-wise :class:`~ttamer.serving.rules.PathwiseRule`) is
evaluated after every exit on the rows still running -- one ``advance`` of its running state
(:func:`~ttamer.serving.rules.begin_run`; the fitted rules keep their state from exit to exit) and one
vectorised comparison -- and the rows that stop leave the batch.
One query at a time the loop keeps its bookkeeping in Python scalars. The
runtime also records the per-exit cost profile of each serving mode (one query at a time,
batched) and each exit's time on batches of ``k`` rows in the trace's meta;
:func:`~ttamer.serving.latency.served_cost` prices a strategy's decisions in the mode served.

:class:`CascadeServer` does the same for a forest of *separate* models (each node a
callable from inputs to logits), e.g. the cascade of :mod:`ttamer.workloads.cascade`.

Two modes: **per example** (``batch_size=1``: one query at a time, the latency a user sees)
and **batched** (a batch enters together; examples whose policy stops leave the batch, so
later blocks run on fewer rows). Every run measures end-to-end wall-clock time (input
preparation such as tokenisation, blocks, heads, state computation and policy included):
:class:`ServeResult` has the per-example latency and the total time. CPU and CUDA
(``device``); on CUDA the clock is read after a synchronisation.

``state_fn(probs, node) -> states`` maps ``probs [B, n, C]`` -- the softmax of every exit
consulted so far (NaN for exits not consulted) -- to the ``int`` states of ``node`` for the
``B`` rows. :func:`~ttamer.serving.rules.tamer_state_fn` and :func:`~ttamer.serving.rules.cascade_state_fn` build it from a fitted
:class:`~ttamer.earlyexit.calibration.EarlyExitTamer` / :class:`~ttamer.earlyexit.cascade.CascadeTamer`;
:func:`~ttamer.serving.rules.threshold_rule` expresses the confidence-threshold heuristic as a (policy,
state_fn) pair, so heuristics run through the same runtime.
"""


from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from ..core.errors import TraceError, TTamerError
from ..core.policy import Policy, rollout
from ..core.validate import check_bool, check_count, check_int, check_integers, describe_value, short_repr
from ..earlyexit.calibration import EarlyExitTamer
from ..earlyexit.pathwise import PathwiseTamer
from ..earlyexit.tamer import ThresholdTamer
from ..earlyexit.traces import ExitDecisions, Trace, check_labels
from .adapters import (MultiExitModel, _n_rows, _softmax_np, _torch, check_eval, check_finite_probs, check_inputs,
                       input_error, input_slice, medians_in_turns, part_error, resolve_device, rows_on,
                       take)
from .graphs import GraphCache
from .rules import (AnswerFn, ChainPolicyRule, ExitMap, StateFn, StateFnRule, StopStatePolicy,
                    StopRowsRule, begin_run, check_runtime_rule, checked_states,
                    forced_rules, is_runtime_rule,
                    max_prob_rule, pathwise_rule, tamer_answer_fns, tamer_state_fn)


# --------------------------------------------------------------------------- results
@dataclass(eq=False, kw_only=True)
class ServeResult(ExitDecisions):
    """What a run of the runtime did on ``N`` inputs: the decisions record of evaluation
    (:class:`~ttamer.earlyexit.traces.ExitDecisions`: ``answer``, ``last``, ``consulted``
    ``[N, n]`` and ``cost``) and what the run measured.

    ``cost`` is the wall-clock seconds each example waited for its answer, from the moment its
    batch started until its answer was decided (also :attr:`latency`); ``prediction`` -- the
    class returned; ``states`` ``[N, n]`` (``-1``: not consulted); ``seconds`` -- wall-clock
    time of the whole run; ``probs`` ``[N, n, C]`` (NaN where not consulted); ``batch_size``;
    ``timing`` -- seconds of the run spent in ``prepare`` (e.g. tokenisation), ``network``
    (blocks, heads, softmax copied to the CPU), ``states`` (``state_fn``; a threshold rule's
    state and comparison) and ``policy`` (with a policy: the rest, decisions and rollout
    bookkeeping; with a threshold rule: stopping rows and pruning the batch, the rest being
    ``other``: splitting the inputs and collecting the results).
    """

    prediction: np.ndarray
    states: np.ndarray
    seconds: float
    probs: np.ndarray
    batch_size: int
    timing: dict = field(default_factory=dict)

    @property
    def latency(self) -> np.ndarray:
        """``[N]`` seconds from the moment each example's batch started until its answer was
        decided (the ``cost`` of the record)."""
        return self.cost

    def accuracy(self, labels: np.ndarray) -> float:
        """Share of the inputs whose predicted class is ``labels`` (one class index per input in
        ``0..C−1``, ``C`` the classes the exits gave; checked as a recording run and its trace
        check them: :func:`~ttamer.earlyexit.traces.check_labels`, then the classes).

        Raises
        ------
        TraceError
            Naming ``'labels'`` and the first example whose label is not a class index of
            the run."""
        y = check_labels(labels, len(self.prediction))
        C = self.probs.shape[2]
        bad = y >= C
        if bad.any():  # as a Trace refuses them (Trace.build)
            i = int(np.argmax(bad))
            raise TraceError(f"key 'labels': example {i} has label {int(y[i])}, outside 0..{C - 1} "
                             f"(C = {C} classes)")
        return float(np.mean(self.prediction == y))

    @property
    def mean_latency_ms(self) -> float:
        return 1e3 * float(self.latency.mean())

    def timing_ms(self) -> dict[str, float]:
        """``timing`` in milliseconds per example."""
        return {k: 1e3 * v / len(self.answer) for k, v in self.timing.items()}

    @property
    def decision_us_per_exit(self) -> float:
        """Microseconds per example per consulted exit spent on states and decisions
        (``timing["states"] + timing["policy"]``): the runtime's decision overhead."""
        spent = self.timing.get("states", 0.0) + self.timing.get("policy", 0.0)
        return 1e6 * spent / max(int(self.consulted.sum()), 1)

    @property
    def ms_per_example(self) -> float:
        """Total wall-clock time divided by the number of examples."""
        return 1e3 * self.seconds / len(self.answer)


# --------------------------------------------------------------------------- the runtime
def checked_exits(values: Any, consulted: np.ndarray, name: str, fallback: bool = False) -> np.ndarray:
    """``[N]`` int64: the exits a user's callable (``answer_fn``, ``exit_map``) returned for
    ``N`` rows whose consulted exits are ``consulted [N, L]`` (bool), checked: one integer per
    row, each an exit that row consulted (or, with ``fallback``, a negative number: the
    policy's fallback, refused by the caller). A :class:`~ttamer.core.errors.TTamerError`
    naming ``name`` and the first row at fault otherwise."""
    arr = np.asarray(values)
    n, L = consulted.shape
    if arr.shape != (n,) or arr.dtype.kind not in "iu":
        raise TTamerError(f"{name} must return one integer exit per row ({n} rows), got an array of shape "
                          f"{list(arr.shape)} and dtype {arr.dtype}")
    arr = arr.astype(np.int64)
    ok = (arr >= 0) & (arr < L)
    ok[ok] = consulted[np.flatnonzero(ok), arr[ok]]
    bad = ~ok & ((arr >= 0) if fallback else True)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise TTamerError(f"{name} returned exit {int(arr[row])} for row {row}, which consulted exits "
                          f"{np.flatnonzero(consulted[row]).tolist()}: it must return an exit the row consulted")
    return arr


#: Who a rule's answers are named after in the errors of :func:`rule_answers` and
#: :func:`checked_exits`: the exits ``a_i`` its ``step`` (or running state's ``advance``) returns.
RULE_ANSWERS = "the rule (its answers a_i, from step or advance)"


def rule_answers(a: Any, rows: int, i: int) -> np.ndarray:
    """``a_i``, the exits a rule evaluated exit by exit answers with for the ``rows`` rows that
    stop after exit ``i``, checked to be one integer per row (attribute reads on an array:
    called only where rows stop). Their range -- an exit each row consulted -- is checked once
    the batch is done (:func:`checked_exits`). A :class:`~ttamer.core.errors.TTamerError`
    naming the rule and exit ``i`` otherwise."""
    arr = a if isinstance(a, np.ndarray) else _array_or_none(a)
    if arr is None or arr.shape != (rows,) or arr.dtype.kind not in "iu":
        raise TTamerError(f"{RULE_ANSWERS} must give one integer exit per row after exit {i} ({rows} rows), "
                          f"got {describe_value(a)}")
    return arr


def _array_or_none(values: Any) -> np.ndarray | None:
    """``values`` as an array, or ``None`` where NumPy cannot make one (ragged lists)."""
    try:
        return np.asarray(values)
    except (ValueError, TypeError):
        return None


def rule_answer_one(a: Any, last: int, L: int) -> int:
    """The exit a rule answers with on one query that stopped after exit ``last`` (of ``L``):
    an integer (Python or NumPy) in ``0..last``, read with two comparisons; else the error of
    :func:`rule_answers` or :func:`checked_exits`, naming the rule."""
    if (a.__class__ is int or isinstance(a, np.integer)) and 0 <= a <= last:
        return int(a)
    arr = rule_answers([a], 1, last)
    return int(checked_exits(arr, np.arange(L)[None, :] <= last, RULE_ANSWERS)[0])


#: Most timing rounds (``repeats``) and warm-up batches (``warmup``) of one measurement
#: (:meth:`EarlyExitServer.cost_profile <ttamer.serving.runtime.EarlyExitServer.cost_profile>`,
#: ``rows_cost``, ``state_cost``, ``gather_cost`` and ``run_all``;
#: :func:`~ttamer.serving.latency.compare_latency` and :func:`~ttamer.serving.latency.state_cost`):
#: every round serves the inputs again, so the count bounds the time before it starts.
MAX_REPEATS = 1000


def check_repeats(value: Any, name: str = "repeats", minimum: int = 1) -> int:
    """A count of timing rounds or warm-up batches: an int in ``minimum..MAX_REPEATS``
    (floats, bools and strings refused, not converted)."""
    out = check_count(value, name, minimum=minimum)
    if out > MAX_REPEATS:
        raise TTamerError(f"{name} must be <= {MAX_REPEATS} (MAX_REPEATS: every round serves the inputs "
                          f"again), got {short_repr(out)}")
    return out


#: Trace ``meta`` fields :meth:`EarlyExitServer.run_all` records from its own measurement
#: (its ``meta`` argument may not set them).
RECORDED_META = ("cost_unit", "cost_measure", "device", "batch_size", "cost_profiles", "batch_cost")
#: Largest batch size accepted (rows are counted in 64-bit integers, batches by the index of
#: their first row).
MAX_BATCH_SIZE = 2**31 - 1


def check_state_rows(rows: Sequence[int] | None, batch_size: int, name: str = "rows") -> np.ndarray:
    """The row counts of a state cost table (default ``(1, batch_size)``), increasing, in
    ``1..batch_size``; errors name the argument ``name``."""
    ks = np.array((1, batch_size)) if rows is None else check_integers(rows, name, 1, batch_size, batch_size)
    if (np.diff(ks) <= 0).any():  # check_integers bounded them to 1..batch_size
        raise TTamerError(f"{name} must be increasing row counts in 1..{batch_size}, got {ks.tolist()}")
    return ks


def check_batch_size(batch_size: Any, name: str = "batch_size") -> int:
    """A batch size: an int in ``1..MAX_BATCH_SIZE`` (floats, bools, strings and ``None``
    refused, not converted)."""
    return check_int(batch_size, name, minimum=1, maximum=MAX_BATCH_SIZE)


def batches(inputs: Any, n: int, bs: int, run: Callable[[Any, int], Any],
            locate: Callable[[Any], TTamerError | None] | None = None) -> list:
    """``run(batch, rows)`` on the consecutive batches of ``bs`` of the ``n`` inputs.

    An error of the model on the first batch -- a torch error on shapes or dtypes it does not
    take, a part returning what the next one cannot take, or any other exception a part of the
    user's model raises (a ``KeyError`` of a head, say) -- becomes a
    :class:`~ttamer.core.errors.TTamerError`: the part that fails, as ``locate(batch)`` finds it
    by running the model's parts one by one, else (a ``RuntimeError``) the inputs' shape and
    dtype. Running out of memory, an error no part of the model raises on its own, or an error
    after the first batch, is raised as it is (as are ``KeyboardInterrupt`` and ``SystemExit``).
    """
    out: list = []
    oom = getattr(_torch(), "OutOfMemoryError", ())
    try:
        for s in range(0, n, bs):
            out.append(run(input_slice(inputs, s, s + bs), min(bs, n - s)))
    except Exception as exc:  # the user's code: named where a part of the model raised it
        if out or isinstance(exc, (oom, MemoryError, TTamerError)):  # the model ran before, or already named
            raise
        found = locate(input_slice(inputs, 0, bs)) if locate is not None else None
        if found is not None:
            raise found from exc
        if isinstance(exc, RuntimeError):
            raise input_error(inputs, exc) from exc
        raise
    return out


class _Runtime:
    """Rollout of a policy whose ``reveal`` runs models; subclasses compute exits."""

    n_nodes: int
    #: Classes the first exit must give (those of the trace a served estimator was fitted on), or None.
    _n_classes: int | None = None

    def __init__(self, policy: Policy, state_fn: StateFn, device: Any, answer_fn: AnswerFn | None = None,
                 exit_map: ExitMap | None = None) -> None:
        if not isinstance(policy, Policy):
            raise TTamerError(f"policy must be a ttamer Policy, got {type(policy).__name__}")
        if answer_fn is not None and not callable(answer_fn):
            raise TTamerError(f"answer_fn must be callable (states, last) -> node, got {answer_fn!r}")
        if exit_map is not None and not callable(exit_map):
            raise TTamerError(f"exit_map must be callable (probs, node) -> exit, got {exit_map!r}")
        self.answer_fn = answer_fn if answer_fn is not None else policy.answer
        self.exit_map = exit_map
        if not callable(state_fn):
            raise TTamerError(f"state_fn must be callable (probs [B, n, C], node) -> states [B], got {state_fn!r}")
        if policy.instance.n != self.n_nodes:
            raise TTamerError(f"the policy's instance has {policy.instance.n} nodes but the model has "
                              f"{self.n_nodes} exits / models")
        self.policy, self.state_fn = policy, state_fn
        self.device = resolve_device(device)

    def _check_model(self) -> None:
        """Checks of the model before a run (subclasses)."""

    def _locate(self, batch: Any) -> TTamerError | None:
        """The error naming the part of the model that fails on ``batch`` (subclasses), or
        ``None``: :func:`batches` then reports the inputs' form."""
        return None

    # subclasses: start a batch of n inputs, compute node outputs for rows
    def _begin(self, inputs: Any, n: int) -> None:
        raise NotImplementedError

    def _prune(self, rows: np.ndarray) -> None:
        """Forget every row not in ``rows`` (their policy stopped)."""

    def _logits(self, rows: np.ndarray, node: int) -> Any:
        raise NotImplementedError

    def _sync(self) -> None:
        if self.device.type == "cuda":
            _torch().cuda.synchronize(self.device)

    def _states(self, probs: np.ndarray, rows: np.ndarray, node: int) -> np.ndarray:
        return checked_states(self.state_fn(probs[rows], int(node)), len(rows),
                              int(self.policy.instance.n_states[node]), node)

    def _run_batch(self, inputs: Any, n: int) -> dict[str, Any]:
        """One batch through the policy: rollout with the model as ``reveal``. Also times its
        parts: ``prepare``, ``network`` (blocks, heads, softmax to the CPU), ``states``."""
        torch = _torch()
        clock = time.perf_counter
        t0 = clock()
        stop_time = np.zeros(n)
        probs: np.ndarray | None = None
        alive = np.arange(n)
        parts = {"prepare": 0.0, "network": 0.0, "states": 0.0}
        with torch.inference_mode():
            self._begin(inputs, n)
            self._sync()
            parts["prepare"] = clock() - t0

            def reveal(rows, nodes, _states, _last):
                nonlocal probs, alive
                now = clock() - t0
                if len(rows) < len(alive):  # rows is a subset of alive: equal lengths, equal sets
                    stop_time[np.setdiff1d(alive, rows, assume_unique=True)] = now
                    self._prune(rows)
                alive = rows
                out = np.empty(len(rows), dtype=np.int64)
                for v in (np.unique(nodes) if len(nodes) > 1 else nodes):  # usually one node per step
                    sel = np.flatnonzero(nodes == v) if len(nodes) > 1 else slice(None)
                    t1 = clock()
                    p = _softmax_np(self._logits(rows[sel], int(v)), len(rows[sel]), int(v),
                                    self._n_classes if probs is None else probs.shape[2])
                    t2 = clock()
                    if probs is None:
                        probs = np.full((n, self.n_nodes, p.shape[1]), np.nan, dtype=np.float32)
                    probs[rows[sel], v] = p
                    out[sel] = self._states(probs, rows[sel], int(v))
                    parts["network"] += t2 - t1
                    parts["states"] += clock() - t2
                return out

            ro = rollout(self.policy, n, reveal)
            answer = checked_exits(self.answer_fn(ro.states, ro.last), ro.states >= 0, "answer_fn", fallback=True)
            if self.exit_map is not None and probs is not None and (answer >= 0).all():
                answer = checked_exits(self.exit_map(probs, answer), ro.states >= 0, "exit_map")
            self._sync()
        stop_time[alive] = clock() - t0
        if probs is None or (answer < 0).any():
            raise TTamerError("the policy stopped before consulting any exit (answered with the fallback); "
                              "a served model needs at least one exit")
        pred = probs[np.arange(n), answer].argmax(axis=1)
        return {"answer": answer, "prediction": pred, "states": ro.states, "last": ro.last,
                "latency": stop_time, "probs": probs, "timing": parts}

    def serve(self, inputs: Any, batch_size: int = 1) -> ServeResult:
        """Answer every input: ``batch_size = 1`` one at a time, else in batches whose stopped
        examples leave the batch. Wall-clock time measured end to end.

        Raises
        ------
        TTamerError
            If ``batch_size`` is not an integer ``>= 1``; if ``inputs`` are empty, not a
            sequence, or a float array / tensor holding NaN or infinity (checked once, before
            the clock starts); if the model fails on the first batch (inputs of a shape or dtype
            it does not take); if a ``state_fn`` returns other than one valid state per row.
        """
        n = check_inputs(inputs)
        bs = check_batch_size(batch_size)
        self._check_model()
        t0 = time.perf_counter()
        run = self._run_rule_batch if getattr(self, "rule", None) is not None else self._run_batch
        parts = batches(inputs, n, bs, run, self._locate)
        self._sync()
        seconds = time.perf_counter() - t0
        for p in parts:  # after the clock: NaN logits would have driven the decisions
            check_finite_probs(p["probs"], p["states"] >= 0)
        if len(parts) == 1:  # one batch (e.g. one query): its arrays as they are
            cat, timing = parts[0], dict(parts[0]["timing"])
        else:
            C = max(p["probs"].shape[2] for p in parts)
            if any(p["probs"].shape[2] != C for p in parts):
                raise TTamerError("exits returned different numbers of classes across batches")
            cat = {k: np.concatenate([p[k] for p in parts]) for k in parts[0] if k not in ("timing", "marks")}
            timing = {k: float(sum(p["timing"][k] for p in parts)) for k in parts[0]["timing"]}
        rest = max(seconds - sum(timing.values()), 0.0)
        if "policy" in timing:  # a threshold rule: its decisions were timed in the loop
            timing["other"] = rest
        else:  # a policy: its decisions are the rollout, the rest of the run
            timing["policy"] = rest
        return ServeResult(cat["answer"], cat["last"], cat["latency"], consulted=cat["states"] >= 0,
                           prediction=cat["prediction"], states=cat["states"], seconds=seconds, probs=cat["probs"],
                           batch_size=bs, timing=timing)


class EarlyExitServer(_Runtime):
    """Serve a :class:`~ttamer.serving.adapters.MultiExitModel` with a fitted policy over its exits (module docstring).

    ``EarlyExitServer(model, policy, state_fn, device="cpu")``; :meth:`serve` answers inputs
    (per example or batched), :meth:`run_all` computes every exit (a trace), :meth:`run_full`
    times the plain network (all blocks, the last head only). Skips of a chain policy are
    honoured: the blocks in between run, their heads do not.

    ``compact`` (threshold rules, batched): ``True`` drops a batch's stopped rows from its
    hidden states at the exit where they stop (each later exit runs on fewer rows, at the price
    of a row selection); ``False`` keeps the batch whole until its last row stops (no
    selection; every row pays for the batch's deepest exit). Which is cheaper is a property of
    the hardware -- whether a block's time falls with its rows (a CPU) or not (a GPU running a
    small model, bound by kernel launches): compare both with
    :func:`~ttamer.serving.latency.compare_latency`, and price each with
    :func:`~ttamer.serving.latency.served_cost` (``compact=``).

    ``cuda_graphs`` (threshold rules, ``device="cuda"``): one query at a time, each exit --
    its block, its head and the softmax -- is replayed as one CUDA graph, and :meth:`run_full`
    replays the plain network as one (:class:`~ttamer.serving.graphs.ExitGraphs`, captured on
    the first query of each input shape, which pays for the capture: warm a server up on
    inputs of every shape it will serve before timing it). A small model at batch 1 on a GPU is bound by the
    host's launches, which the graphs remove; the copy of each exit's probabilities that the
    decision reads stays. Batches are served without graphs. The decisions are the same.
    """

    def __init__(self, model: MultiExitModel, policy: Any, state_fn: StateFn | None = None, device: Any = "cpu",
                 answer_fn: AnswerFn | None = None, exit_map: ExitMap | None = None, compile: bool = True,
                 compact: bool = True, cuda_graphs: bool = False) -> None:
        if not isinstance(model, MultiExitModel):
            raise TTamerError(f"model must be a MultiExitModel, got {type(model).__name__}")
        compact, compile = check_bool(compact, "compact"), check_bool(compile, "compile")
        self.cuda_graphs = check_bool(cuda_graphs, "cuda_graphs")
        self._graphs = GraphCache(model) if self.cuda_graphs else None
        self.model = model
        self.n_nodes = model.n_exits
        self.rule: Any = None
        self.compact = bool(compact)
        if is_runtime_rule(policy):  # a threshold rule, evaluated exit by exit
            if state_fn is not None or answer_fn is not None:
                raise TTamerError("a threshold rule computes its own states and answers: pass no state_fn "
                                  "or answer_fn with it")
            check_runtime_rule(policy, self.n_nodes, "EarlyExitServer", "the model")
            if exit_map is not None and not callable(exit_map):
                raise TTamerError(f"exit_map must be callable (probs, node) -> exit, got {exit_map!r}")
            self.rule, self.policy, self.state_fn, self.answer_fn = policy, None, None, None
            self.exit_map = exit_map
            fitted = getattr(policy, "n_classes", None)  # a fitted rule's exits must give its classes
            self._n_classes = None if fitted is None else int(fitted)
            self.device = resolve_device(device)
            self._pos = np.arange(self.n_nodes)
            if self.cuda_graphs and self.device.type != "cuda":
                raise TTamerError(f"cuda_graphs=True replays CUDA graphs: it needs device='cuda', got "
                                  f"device={str(self.device)!r}")
            return
        if self.cuda_graphs:
            raise TTamerError("cuda_graphs=True serves a threshold rule exit by exit; this policy is driven through "
                              "the rollout (serve it with cuda_graphs=False)")
        super().__init__(policy, state_fn, device, answer_fn, exit_map)
        if not policy.instance.is_chain:
            raise TTamerError("EarlyExitServer needs a policy on a chain of exits; use CascadeServer for trees")
        self._pos = np.asarray(policy.instance.chain_position)
        if compile and isinstance(policy, StopStatePolicy) and answer_fn is None:
            self.rule = StateFnRule(self.n_nodes, state_fn, policy.instance.name)
        if not self.compact and self.rule is None:
            raise TTamerError("compact=False keeps a batch whole under a threshold rule; this policy is driven "
                              "through the rollout, which always drops stopped rows (use compact=True)")

    @classmethod
    def from_tamer(cls, model: MultiExitModel, tamer: Any, device: Any = "cpu", compact: bool = True,
                   cuda_graphs: bool = False) -> "EarlyExitServer":
        """Serve with a fitted :class:`~ttamer.earlyexit.tamer.ThresholdTamer` (its
        :meth:`~ttamer.earlyexit.tamer.ThresholdTamer.runtime_rule`, one threshold per exit), a
        fitted :class:`~ttamer.earlyexit.calibration.EarlyExitTamer` (its policy and answer rule
        exit by exit, :class:`~ttamer.serving.rules.ChainPolicyRule`; a policy that skips exits is
        driven through the rollout, with :func:`~ttamer.serving.rules.tamer_state_fn` and
        :func:`~ttamer.serving.rules.tamer_answer_fns`) or a fitted
        :class:`~ttamer.earlyexit.pathwise.PathwiseTamer` (:func:`~ttamer.serving.rules.pathwise_rule`);
        either way the served decisions are ``tamer.decide``'s."""
        if not isinstance(tamer, (ThresholdTamer, PathwiseTamer, EarlyExitTamer)):
            raise TTamerError(f"from_tamer serves a fitted ThresholdTamer, PathwiseTamer or EarlyExitTamer, "
                              f"got {type(tamer).__name__}")
        tamer.check_fitted()
        if not isinstance(model, MultiExitModel):
            raise TTamerError(f"model must be a MultiExitModel, got {type(model).__name__}")
        L, C = tamer.fitted_shape_
        if L != model.n_exits:
            raise TTamerError(f"the {type(tamer).__name__} was fitted on a trace of {L} exits but the model has "
                              f"{model.n_exits}; fit it on a trace of this model")
        opts = {"device": device, "compact": compact, "cuda_graphs": cuda_graphs}
        if isinstance(tamer, ThresholdTamer):
            server = cls(model, tamer.runtime_rule(), **opts)
        elif isinstance(tamer, PathwiseTamer):
            server = cls(model, pathwise_rule(tamer), **opts)
        else:
            table = tamer.answer_table_ if tamer.solution_.recall else None
            rule = ChainPolicyRule.compile(tamer.solution_.policy, tamer.encoder_, table)
            if rule is not None:
                server = cls(model, rule, **opts)
            else:
                answer_fn, exit_map = tamer_answer_fns(tamer)
                server = cls(model, tamer.solution_.policy, tamer_state_fn(tamer), answer_fn=answer_fn,
                             exit_map=exit_map, **opts)
        server._n_classes = int(C)  # the first exit must give the classes it was fitted on
        return server

    def _check_model(self) -> None:
        check_eval(self.model)
        if self.model.n_exits != self.n_nodes:
            raise TTamerError(f"the model has {self.model.n_exits} exits but had {self.n_nodes} when the server was "
                              "built; build a new EarlyExitServer for the changed model")

    def _locate(self, batch: Any) -> TTamerError | None:
        """Run ``prepare``, then every block and exit head in turn on ``batch`` (as the runtime
        runs them, without decisions) and return the error naming the first part that fails and
        what it was given (:func:`~ttamer.serving.adapters.part_error`); ``None`` if none does,
        or if ``prepare`` or block 0 raise a torch ``RuntimeError`` (the inputs' form, which
        :func:`batches` names)."""
        m = self.model
        with _torch().inference_mode():
            try:
                h, ctx = m.prepare(batch, self.device)
            except Exception as exc:  # the user's code: any failure is named, not hidden
                return None if isinstance(exc, RuntimeError) else part_error("the model's prepare", batch, exc)
            for i in range(m.n_exits):
                got = h
                try:
                    h = m.blocks[i](got, ctx)
                except Exception as exc:
                    if i == 0 and isinstance(exc, RuntimeError):
                        return None
                    return part_error(f"block {i} ({m.names[i]})", got, exc)
                try:
                    m.heads[i](h, ctx)
                except Exception as exc:
                    return part_error(f"exit {i}'s head ({m.names[i]}), on block {i}'s output,", h, exc)
        return None

    # groups of rows sharing a hidden state at one depth (-1 = before block 0)
    def _begin(self, inputs: Any, n: int) -> None:
        h, ctx = self.model.prepare(inputs, self.device)
        try:
            rows = _n_rows(h)
        except TTamerError as exc:
            raise TTamerError(f"the model's prepare returned hidden states whose rows cannot be counted ({exc}); "
                              "it must return torch tensors, one row per input") from None
        if rows != n:  # the rows of the groups are the inputs'
            raise TTamerError(f"the model's prepare returned hidden states of {rows} rows for a batch of {n} inputs; "
                              "it must return one row per input")
        self._groups = [(np.arange(n), -1, h, ctx)]

    def _prune(self, rows: np.ndarray) -> None:
        if len(self._groups) == 1 and len(self._groups[0][0]) == len(rows):
            return
        groups = []
        for g_rows, depth, h, ctx in self._groups:
            keep = np.isin(g_rows, rows)
            if keep.all():
                groups.append((g_rows, depth, h, ctx))
            elif keep.any():
                idx = rows_on(np.flatnonzero(keep), self.device)
                groups.append((g_rows[keep], depth, take(h, idx), take(ctx, idx)))
        self._groups = groups

    def _logits(self, rows: np.ndarray, node: int) -> Any:
        """Advance ``rows`` from their depth to exit ``node`` (blocks in between, no heads) and
        return the exit's logits in the order of ``rows``."""
        torch = _torch()
        target = int(self._pos[node])
        groups, got_rows, got = [], [], []
        for g_rows, depth, h, ctx in self._groups:
            sel = np.ones(len(g_rows), dtype=bool) if len(self._groups) == 1 and len(g_rows) == len(rows) \
                else np.isin(g_rows, rows)
            if not sel.any():
                groups.append((g_rows, depth, h, ctx))
                continue
            if not sel.all():  # rows of this group going elsewhere stay as they are
                rest = rows_on(np.flatnonzero(~sel), self.device)
                groups.append((g_rows[~sel], depth, take(h, rest), take(ctx, rest)))
                idx = rows_on(np.flatnonzero(sel), self.device)
                g_rows, h, ctx = g_rows[sel], take(h, idx), take(ctx, idx)
            if depth >= target:
                raise TTamerError(f"policy asked for exit {node} after exit {depth} on a chain")
            for d in range(depth + 1, target + 1):
                h = self.model.blocks[d](h, ctx)
            got_rows.append(g_rows)
            got.append(self.model.heads[target](h, ctx))
            groups.append((g_rows, target, h, ctx))
        self._groups = groups
        R = np.concatenate(got_rows)
        logits = got[0] if len(got) == 1 else torch.cat(got)
        if len(R) == len(rows) and np.array_equal(R, rows):
            return logits
        order = np.argsort(R)
        pos = order[np.searchsorted(R[order], rows)]
        return logits.index_select(0, rows_on(pos, logits.device))

    def _run_rule_batch(self, inputs: Any, n: int, rule: Any = None, keep_rows: int | None = None,
                        compact: bool | None = None) -> dict[str, Any]:
        """One batch under a threshold rule, exit by exit: block, head and softmax copied to the
        host (the one synchronisation the decision needs), one ``advance`` of the rule's running
        state (:func:`~ttamer.serving.rules.begin_run`) on the rows still running and one
        vectorised comparison with the exit's threshold; stopped rows leave the batch (their
        hidden states selected only when some stopped and some did not) or, with
        ``compact=False``, ride along to the exit where the batch's last row stops. No policy, no
        rollout. ``marks[i]``: seconds from the batch's start until the decisions at exit ``i``
        were taken and the stopped rows handled, ``decided[i]`` until the decisions were taken;
        ``alive[i]``: rows that ran exit ``i``. One query (``n = 1``) takes
        :meth:`_run_rule_one`. ``keep_rows``: the ``n`` inputs are prepared together (padded
        to the longest of them), then only the first ``keep_rows`` run the exits -- rows left
        in a batch whose other rows stopped, as :meth:`rows_cost` prices them. ``compact``:
        the server's own setting unless given."""
        rule = self.rule if rule is None else rule
        compact = self.compact if compact is None else compact
        if n == 1 and keep_rows is None:
            return self._run_rule_one(inputs, rule)
        n = n if keep_rows is None else min(int(keep_rows), n)
        torch = _torch()
        clock = time.perf_counter
        L = self.n_nodes
        t0 = clock()
        parts = {"prepare": 0.0, "network": 0.0, "states": 0.0, "policy": 0.0}
        marks, decided, alive = np.full(L, np.nan), np.full(L, np.nan), np.zeros(L, dtype=np.int64)
        state_s = []  # per exit run: seconds of the state's advance and the comparison
        answer, last = np.full(n, -1, dtype=np.int64), np.full(n, -1, dtype=np.int64)
        states, stop_time = np.full((n, L), -1, dtype=np.int64), np.zeros(n)
        probs = None
        rows: Any = slice(None)  # the rows still running: all of them until some stop
        live = n
        with torch.inference_mode():
            h, ctx = self.model.prepare(inputs, self.device)
            if keep_rows is not None:
                idx = torch.arange(n, device=self.device)
                h, ctx = take(h, idx), take(ctx, idx)
            parts["prepare"] = clock() - t0
            run = begin_run(rule, n, check_rows=False)
            for i in range(L):
                t1 = clock()
                h = self.model.blocks[i](h, ctx)
                p = _softmax_np(self.model.heads[i](h, ctx), live if compact else n, i,
                                self._n_classes if probs is None else probs.shape[2])
                t2 = clock()
                if not compact and not isinstance(rows, slice):  # the batch kept whole
                    p = p[rows]
                x, a = run.advance(i, p)
                stop = rule.stops(i, x) if i < L - 1 else None  # None: every row stops
                t3 = clock()
                parts["network"] += t2 - t1
                parts["states"] += t3 - t2
                state_s.append(t3 - t2)
                decided[i] = t3 - t0
                if probs is None:
                    probs = np.full((n, L, p.shape[1]), np.nan, dtype=np.float32)
                probs[rows, i] = p
                alive[i] = live if compact else n
                if stop is None or stop.all():
                    states[rows, i] = 1
                    last[rows], answer[rows] = i, rule_answers(a, live, i)
                    stop_time[rows] = marks[i] = clock() - t0
                    parts["policy"] += marks[i] - (t3 - t0)
                    break
                states[rows, i] = stop
                if stop.any():
                    running = np.arange(n) if isinstance(rows, slice) else rows
                    r = running[stop]
                    last[r], answer[r] = i, rule_answers(a, live, i)[stop]
                    stop_time[r] = clock() - t0
                    keep = ~stop
                    rows = running[keep]
                    live = len(rows)
                    run.keep(keep)
                    if compact:
                        idx = rows_on(np.flatnonzero(keep), self.device)
                        h, ctx = take(h, idx), take(ctx, idx)
                marks[i] = clock() - t0
                parts["policy"] += marks[i] - (t3 - t0)
            ran = np.arange(L)[None, :] <= last[:, None]
            answer = checked_exits(answer, ran, RULE_ANSWERS)  # once, after the run's timed steps
            if self.exit_map is not None:
                answer = checked_exits(self.exit_map(probs, answer), ran, "exit_map")
        pred = probs[np.arange(n), answer].argmax(axis=1)
        return {"answer": answer, "prediction": pred, "states": states, "last": last, "latency": stop_time,
                "probs": probs, "timing": parts, "marks": marks, "decided": decided, "alive": alive,
                "state_s": state_s}

    def _run_rule_one(self, inputs: Any, rule: Any) -> dict[str, Any]:
        """One query under a threshold rule: the loop of :meth:`_run_rule_batch` with scalars
        for the bookkeeping -- per exit only the block, the head, the softmax copied to the
        host, one ``advance`` of the rule's running state and one comparison; the results are
        written once, when the rule stops, from arrays prepared once per server."""
        torch = _torch()
        clock = time.perf_counter
        L = self.n_nodes
        t0 = clock()
        marks = []
        net = st = 0.0
        with torch.inference_mode():
            h, ctx = self.model.prepare(inputs, self.device)
            t_prep = clock() - t0
            run = begin_run(rule, 1, check_rows=False)
            decide = getattr(run, "decide_one", None)
            one = getattr(run, "advance_one", None) if decide is None else None
            thr = self._thresholds(rule)
            blocks, heads = self.model.blocks, self.model.heads
            graphs = self._graphs.loaded(h, ctx, self._n_classes) if self._graphs is not None else None
            seen = []
            for i in range(L):
                t1 = clock()
                if graphs is None:
                    h = blocks[i](h, ctx)
                    p = _softmax_np(heads[i](h, ctx), 1, i, seen[0].shape[1] if seen else self._n_classes)
                else:  # block, head and softmax replayed in one CUDA graph
                    p = graphs.exit_probs(i)
                t2 = clock()
                if decide is not None:  # the running state's own comparison with the threshold
                    stop, a = decide(i, p, thr[i])
                    stop = stop or i == L - 1
                elif one is not None:  # scalars; the rule stops where x ≥ its threshold
                    x, a = one(i, p)
                    stop = i == L - 1 or x >= thr[i]
                else:  # a_i read once the query stops
                    x, a = run.advance(i, p)
                    stop = i == L - 1 or bool(rule.stops(i, x)[0])
                t3 = clock()
                net += t2 - t1
                st += t3 - t2
                seen.append(p)
                marks.append(t3 - t0)
                if stop:
                    break
            t4 = clock()  # the decision is taken; what follows writes the results
            tpl = self._one_templates(p.shape[1])
            if decide is None and one is None:  # the running state's arrays a_i [1]
                a = rule_answers(a, 1, i)[0]
            answer = np.array([rule_answer_one(a, i, L)], dtype=np.int64)
            probs = np.concatenate(seen + [tpl["nan"][: L - 1 - i]])[None]
            if self.exit_map is not None:
                answer = checked_exits(self.exit_map(probs, answer), np.arange(L)[None, :] <= i, "exit_map")
        parts = {"prepare": t_prep, "network": net, "states": st, "policy": t4 - t0 - marks[-1]}
        marks = np.array(marks + [np.nan] * (L - 1 - i))  # one query: no stopped rows to handle after a decision
        return {"answer": answer, "prediction": np.array([int(probs[0, answer[0]].argmax())]),
                "states": tpl["states"][i].copy(), "last": np.array([i], dtype=np.int64),
                "latency": np.array([marks[i]]), "probs": probs, "timing": parts,
                "marks": marks, "decided": marks, "alive": tpl["alive"][i]}

    def _thresholds(self, rule: Any) -> list[float]:
        """``rule.thresholds`` as Python floats (kept per rule: compared as scalars at batch 1)."""
        cache = self.__dict__.setdefault("_thr_cache", {})
        got = cache.get(id(rule))
        if got is None or got[0] is not rule:
            got = cache[id(rule)] = (rule, np.asarray(rule.thresholds, dtype=np.float64).tolist())
        return got[1]

    def _one_templates(self, C: int) -> dict[str, Any]:
        """Arrays a one-query result is made from: per last exit ``i`` its states row and
        ``alive``, and NaN rows for the exits not consulted (``C`` classes)."""
        cache = self.__dict__.setdefault("_one_cache", {})
        if C not in cache:
            L = self.n_nodes
            states = [np.where(np.arange(L) < i, 0, np.where(np.arange(L) == i, 1, -1))[None].astype(np.int64)
                      for i in range(L)]
            alive = [(np.arange(L) <= i).astype(np.int64) for i in range(L)]
            for a in alive:
                a.flags.writeable = False
            cache[C] = {"states": states, "alive": alive, "nan": np.full((L, C), np.nan, dtype=np.float32)}
        return cache[C]

    def cost_profile(self, inputs: Any, batch_size: int = 1, warmup: int = 1, repeats: int = 3,
                     rule: Any = None) -> np.ndarray:
        """``[L]`` wall-clock ms per example of each exit when serving ``inputs`` in batches of
        ``batch_size`` through the runtime forced to the last exit (every block, head, state and
        decision; exit 0 also pays for ``prepare``): the per-exit cost profile of that serving
        mode. Every batch is served ``repeats`` times in a row and each of its exits keeps its
        median time -- on a shared machine the other tenants preempt the process now and then
        for milliseconds, and at batch 1 such a pause falls on one exit of a query and would
        misprice it -- then the mean over the batches after ``warmup``.

        ``rule``: the profile of serving that rule (its state advanced at every exit, forced
        on to the last one: :class:`~ttamer.serving.rules.ForcedRule`) instead of the
        max-probability rule's -- what a rule whose state costs more per exit pays. A list of
        rules (``None`` for the max-probability rule) gives ``[R, L]``, the rules taking turns
        on every batch, so that a slow spell of the machine hits them alike.
        ``repeats`` and ``warmup`` are at most :data:`MAX_REPEATS`."""
        n, bs = check_inputs(inputs), check_batch_size(batch_size)
        repeats, warmup = check_repeats(repeats), check_repeats(warmup, "warmup", minimum=0)
        self._check_model()
        many = isinstance(rule, (list, tuple))
        if many and not rule:
            raise TTamerError("cost_profile: rule is an empty list; give a rule, None, or a list of them")
        self._first_batch(inputs, n, bs)
        forced = forced_rules(rule if many else [rule], self.n_nodes, "cost_profile")

        def per_row(b: int, j: int) -> np.ndarray:
            out = self._run_rule_batch(input_slice(inputs, b * bs, b * bs + bs), min(bs, n - b * bs), forced[j])
            return np.diff(np.r_[0.0, out["marks"]]) / out["alive"]

        prof = 1e3 * medians_in_turns(-(-n // bs), len(forced), per_row, repeats, warmup)  # [R, L]
        return prof if many else prof[0]

    def run_all(self, inputs: Any, labels: Any, batch_size: int = 64, meta: dict | None = None,
                warmup: int = 1, profile_examples: int = 0, profile_rows: Sequence[int] = ()) -> Trace:
        """Every exit on every input, batched: a :class:`~ttamer.earlyexit.traces.Trace` whose ``cost[i]``
        is the median (over batches after ``warmup``) wall-clock ms per example of block ``i``
        with its head (exit 0 also pays for ``prepare``).

        ``meta["cost_profiles"]`` keeps the per-exit cost profile of each serving mode:
        ``"batched"`` (the trace's ``cost``) and, with ``profile_examples > 0``, ``"batch1"``
        -- the first ``profile_examples`` inputs served one at a time by the runtime forced to
        the last exit (:meth:`cost_profile`). :func:`~ttamer.serving.latency.with_cost_profile` prices the trace in the
        mode that will be served.

        With ``profile_rows`` (batch sizes, e.g. ``1, 2, 4, …, batch_size``),
        ``meta["batch_cost"]`` keeps ``{"rows": [k, …], "ms_per_batch": [[L] per k]}``: the
        wall-clock ms of each exit on ``k`` rows of a batch of ``batch_size`` inputs prepared
        together (:meth:`rows_cost`, two rounds, on the first ``profile_examples`` inputs and at
        least 4 batches): the rows a served batch still runs once others have stopped, padded as their
        batch was, and ``"gather_ms": [per k]``, what a stop that leaves ``k`` rows running costs
        beyond that (:meth:`gather_cost`). A block's time is far from proportional to its rows;
        :func:`~ttamer.serving.latency.served_cost` prices batched serving with this table.
        ``warmup`` is at most :data:`MAX_REPEATS`."""
        batch_size = check_batch_size(batch_size)
        profile_examples = check_int(profile_examples, "profile_examples", minimum=0)
        warmup = check_repeats(warmup, "warmup", minimum=0)
        if meta is not None and not isinstance(meta, dict):
            raise TTamerError(f"meta must be a dict of trace meta fields, got {type(meta).__name__}")
        measured = sorted(set(meta or {}) & set(RECORDED_META))
        if measured:
            raise TTamerError(f"meta may not set {measured}: run_all records them from what it measures "
                              f"({', '.join(RECORDED_META)})")
        rows_grid = [] if isinstance(profile_rows, (list, tuple)) and not profile_rows else sorted(set(
            check_integers(profile_rows, "profile_rows (row counts up to batch_size)", 1, batch_size,
                           batch_size).tolist()))
        n = check_inputs(inputs)
        labels = check_labels(labels, n)  # before the model runs on every input
        self._check_model()
        L = self.n_nodes
        with _torch().inference_mode():
            got = batches(inputs, n, batch_size, self._all_exits, self._locate)
        out, times = [g[0] for g in got], [g[1] for g in got]
        timed = times[warmup:] if len(times) > warmup else times
        cost_ms = 1e3 * np.median(np.stack(timed), axis=0)
        m = {"model": "served multi-exit model", "dataset": "?", "cost_unit": "ms/example",
             "exit_names": list(self.model.names), "cost_measure": "serving runtime, all exits, batched",
             "device": str(self.device), "batch_size": int(batch_size)}
        m.update(meta or {})
        profiles = {"batched": [float(c) for c in cost_ms]}
        if int(profile_examples) > 0:
            k = min(int(profile_examples), n)
            profiles["batch1"] = [float(c) for c in self.cost_profile(input_slice(inputs, 0, k), 1, warmup=min(3, k - 1))]
        m["cost_profiles"] = profiles
        if rows_grid:
            m_in = min(n, max(int(profile_examples), 4 * int(batch_size)))
            table = self.rows_cost(input_slice(inputs, 0, m_in), int(batch_size), rows_grid, repeats=2)
            gather = self.gather_cost(input_slice(inputs, 0, m_in), int(batch_size), rows_grid, repeats=2) \
                if L > 1 else np.zeros(len(rows_grid))
            m["batch_cost"] = {"rows": rows_grid, "ms_per_batch": table.tolist(), "gather_ms": gather.tolist()}
        return Trace.build(np.concatenate(out), labels, cost_ms, m)

    def _all_exits(self, batch: Any, _rows: int) -> tuple[np.ndarray, np.ndarray]:
        """Every exit on one batch: its softmax ``[B, L, C]`` and each block's seconds per row."""
        marks = [time.perf_counter()]
        h, ctx = self.model.prepare(batch, self.device)
        probs = []
        for i in range(self.n_nodes):
            h = self.model.blocks[i](h, ctx)
            probs.append(_softmax_np(self.model.heads[i](h, ctx), _rows, i, probs[0].shape[1] if probs else None))
            self._sync()
            marks.append(time.perf_counter())
        return np.stack(probs, axis=1), np.diff(marks) / len(probs[0])

    def _first_batch(self, inputs: Any, n: int, bs: int) -> None:
        """The runtime forced to the last exit on the first batch of ``inputs``, its failures
        named as a run names them (:func:`batches`): the check before a measurement."""
        forced = max_prob_rule(self.n_nodes, np.inf)
        batches(input_slice(inputs, 0, bs), min(bs, n), bs, lambda b, r: self._run_rule_batch(b, r, forced),
                self._locate)

    def rows_cost(self, inputs: Any, batch_size: int, rows: Sequence[int], repeats: int = 3) -> np.ndarray:
        """``[R, L]`` wall-clock ms of each exit on ``k`` rows (``k`` in ``rows``, each at most
        ``batch_size``) of a batch of ``batch_size`` inputs prepared together -- the rows a served
        batch still runs once others have stopped, padded as their batch was -- through the
        runtime forced to the last exit. On every batch the row counts take turns (the order
        rotated from batch to batch), ``repeats`` times, and each keeps its median, so that a
        slow spell of the machine hits them alike; then the mean over the batches after the
        first (a warm-up). ``repeats`` is at most :data:`MAX_REPEATS`."""
        n, bs = check_inputs(inputs), check_batch_size(batch_size)
        ks = check_integers(rows, "rows", 1, bs, 1 << 16).tolist()
        repeats = check_repeats(repeats)
        self._check_model()
        self._first_batch(inputs, n, bs)
        forced = max_prob_rule(self.n_nodes, np.inf)

        def per_batch(b: int, j: int) -> np.ndarray:  # seconds of the whole k rows, per exit
            out = self._run_rule_batch(input_slice(inputs, b * bs, b * bs + bs), min(bs, n - b * bs), forced, ks[j])
            return np.diff(np.r_[0.0, out["marks"]])

        return 1e3 * medians_in_turns(-(-n // bs), len(ks), per_batch, repeats, 1)

    def state_cost(self, inputs: Any, rules: Sequence[Any], batch_size: int, rows: Sequence[int] | None = None,
                   repeats: int = 3) -> np.ndarray:
        """``[R, K, L]`` host ms that one call of each rule's state and decision takes at each
        exit on ``k`` rows of a batch (``k`` in ``rows``, default ``(1, batch_size)``), timed in
        place: each rule forced on to the last exit (:class:`~ttamer.serving.rules.ForcedRule`;
        ``None`` is the max-probability rule) serves batches of ``batch_size`` inputs, their
        first ``k`` rows running the exits (as :meth:`rows_cost`), and the runtime's clock
        times each exit's ``advance`` and comparison, right after the exit's block and head
        ran. On every batch the rules and row counts take turns, ``repeats`` times, medians per
        batch, then the mean over the batches after the first (a warm-up). The table of
        :func:`~ttamer.serving.latency.state_cost` (``state_ms=`` of
        :func:`~ttamer.serving.latency.served_cost`, a rule's row minus the max-probability
        rule's), measured where the served rule runs: after a block, the state's code finds
        the caches that the block left, and on a network whose exits take little time per row
        (a small model, a GPU) it costs several times what the same calls cost replayed on a
        trace. ``repeats`` is at most :data:`MAX_REPEATS`."""
        n, bs = check_inputs(inputs), check_batch_size(batch_size)
        ks = check_state_rows(rows, bs).tolist()
        repeats = check_repeats(repeats)
        self._check_model()
        forced = forced_rules(rules, self.n_nodes, "state_cost")
        self._first_batch(inputs, n, bs)

        def per_batch(b: int, j: int) -> np.ndarray:  # variant j: rule j // K on ks[j % K] rows
            out = self._run_rule_batch(input_slice(inputs, b * bs, b * bs + bs), min(bs, n - b * bs),
                                       forced[j // len(ks)], ks[j % len(ks)])
            return np.asarray(out["state_s"])

        ms = 1e3 * medians_in_turns(-(-n // bs), len(forced) * len(ks), per_batch, repeats, 1)
        return ms.reshape(len(forced), len(ks), self.n_nodes)

    def gather_cost(self, inputs: Any, batch_size: int, rows: Sequence[int], repeats: int = 3) -> np.ndarray:
        """``[R]`` wall-clock ms that a stop costs a batch of ``batch_size`` inputs beyond its
        exits' times when ``k`` rows go on (``k`` in ``rows``; 0 for ``k ≥ batch_size``): the
        bookkeeping of the rows that stopped, the gathering of the others' hidden states and the
        extra time of the next exit on the freshly gathered rows. Timed in the runtime's own
        loop: from the decisions at exit 0 to the end of exit 1 where every row but the first
        ``k`` stops at exit 0 (:class:`~ttamer.serving.rules.StopRowsRule`, the stopped rows
        dropped), against exit 1 alone on ``k`` rows prepared together (which :meth:`rows_cost`
        times); on every batch with the row counts and the two variants taking turns,
        ``repeats`` times, medians per batch, then the mean over the batches after the first
        (a warm-up). ``repeats`` is at most :data:`MAX_REPEATS`."""
        n, bs = check_inputs(inputs), check_batch_size(batch_size)
        rows = check_integers(rows, "rows", 1, None, 1 << 16)
        repeats = check_repeats(repeats)
        self._check_model()
        if self.n_nodes < 2:
            raise TTamerError("gather_cost times the exit after a stop: the model needs at least 2 exits")
        self._first_batch(inputs, n, bs)
        ks = [int(k) for k in rows if int(k) < bs]

        def second_exit(b: int, j: int) -> float:  # variant 2i stops all but ks[i] rows, 2i + 1 prepares them
            batch = input_slice(inputs, b * bs, b * bs + bs)
            return self._after_exit_0(batch, min(bs, n - b * bs), min(ks[j // 2], n - b * bs), j % 2 == 0)

        t = medians_in_turns(-(-n // bs), 2 * len(ks), second_exit, repeats, 1) if ks else np.zeros(0)
        g = dict(zip(ks, 1e3 * (t[0::2] - t[1::2])))
        return np.array([max(g.get(int(k), 0.0), 0.0) for k in rows])

    def _after_exit_0(self, batch: Any, n: int, k: int, stopped: bool) -> float:
        """Seconds from the decisions at exit 0 to the end of exit 1 on the first ``k`` rows of
        ``batch`` (``n`` inputs): the others stopped at exit 0 and left the batch (``stopped``),
        or the ``k`` rows selected when the batch was prepared (then exit 0 ran on ``k`` rows).
        Either way every row stops at exit 1 (:class:`~ttamer.serving.rules.StopRowsRule`), so
        no later exit runs."""
        rule = StopRowsRule(self.n_nodes, k)
        if stopped:
            out = self._run_rule_batch(batch, n, rule, compact=True)
            return float(out["marks"][1] - out["decided"][0])
        out = self._run_rule_batch(batch, n, rule, keep_rows=k)
        return float(out["marks"][1] - out["marks"][0])

    def run_full(self, inputs: Any, batch_size: int = 1) -> ServeResult:
        """The plain network (every block, the last head only, no policy): the baseline.

        Raises
        ------
        TTamerError
            As :meth:`serve`: a ``batch_size`` not an integer ``>= 1``, inputs empty or not
            finite, or inputs the model fails on.
        """
        n = check_inputs(inputs)
        bs = check_batch_size(batch_size)
        self._check_model()
        L = self.n_nodes
        t0 = time.perf_counter()
        with _torch().inference_mode():
            got = batches(inputs, n, bs, self._full_batch, self._locate)
        seconds = time.perf_counter() - t0
        t_prep = float(sum(g[1] for g in got))
        if len({g[0].shape[1] for g in got}) > 1:
            raise TTamerError("the last exit returned different numbers of classes across batches")
        P = np.concatenate([g[0] for g in got])
        last_only = np.zeros((n, L), dtype=bool)
        last_only[:, L - 1] = True
        check_finite_probs(np.broadcast_to(P[:, None], (n, L, P.shape[1])), last_only)  # names exit L-1
        lat = [np.full(len(g[0]), g[2]) for g in got]
        preds = [g[0].argmax(axis=1) for g in got]
        probs = np.full((n, L, P.shape[1]), np.nan, dtype=np.float32)
        probs[:, L - 1] = P
        states = np.full((n, L), -1, dtype=np.int64)
        consulted = np.zeros((n, L), dtype=bool)
        consulted[:, L - 1] = True
        timing = {"prepare": t_prep, "network": seconds - t_prep, "states": 0.0, "policy": 0.0}
        return ServeResult(np.full(n, L - 1), np.full(n, L - 1), np.concatenate(lat), consulted=consulted,
                           prediction=np.concatenate(preds), states=states, seconds=seconds, probs=probs,
                           batch_size=bs, timing=timing)

    def _full_batch(self, batch: Any, _rows: int) -> tuple[np.ndarray, float, float]:
        """One batch through every block and the last head: ``(softmax [B, C], seconds
        preparing, seconds in all)``."""
        tb = time.perf_counter()
        h, ctx = self.model.prepare(batch, self.device)
        t_prep = time.perf_counter() - tb
        if self._graphs is not None and _rows == 1:  # the plain network replayed in one CUDA graph
            p = self._graphs.loaded(h, ctx, self._n_classes).full_probs()
            self._sync()
            return p, t_prep, time.perf_counter() - tb
        for block in self.model.blocks:
            h = block(h, ctx)
        p = _softmax_np(self.model.heads[self.n_nodes - 1](h, ctx), _rows, self.n_nodes - 1, self._n_classes)
        self._sync()
        return p, t_prep, time.perf_counter() - tb


class CascadeServer(_Runtime):
    """Serve a forest of separate models with a fitted policy over them.

    ``models[v](inputs, device) -> logits [B, C]`` runs model ``v`` on a batch of raw inputs
    (a list -- where the inputs are a list or a tuple -- or an array / tensor, indexed by rows);
    ``policy`` is solved on the cascade instance (same node order).

    Raises
    ------
    TTamerError
        If ``models`` is not a non-empty list of callables, or as the policy and ``state_fn``
        are checked (one node per model).
    """

    def __init__(self, models: Sequence[Callable], policy: Policy, state_fn: StateFn, device: Any = "cpu") -> None:
        what = "models must be a non-empty list of callables (inputs, device) -> logits, one per node of the policy"
        if isinstance(models, (str, bytes)) or not hasattr(models, "__len__") or not hasattr(models, "__iter__"):
            raise TTamerError(f"{what}, got {short_repr(models)}")
        if len(models) == 0 or not all(callable(m) for m in models):
            raise TTamerError(f"{what}, got {short_repr(list(models))}")
        self.models = list(models)
        self.n_nodes = len(self.models)
        super().__init__(policy, state_fn, device)

    def _begin(self, inputs: Any, n: int) -> None:
        self._inputs = inputs

    @staticmethod
    def _subset(x: Any, rows: np.ndarray) -> Any:
        """The inputs of ``rows``: a list of them where ``x`` is a list or a tuple, else ``x[rows]``."""
        return [x[int(i)] for i in rows] if isinstance(x, (list, tuple)) else x[rows]

    def _logits(self, rows: np.ndarray, node: int) -> Any:
        return self.models[node](self._subset(self._inputs, rows), self.device)

    def _locate(self, batch: Any) -> TTamerError | None:
        """Run every model on ``batch`` (as the runtime gives it to them) and return the error
        naming the first that fails and what it was given
        (:func:`~ttamer.serving.adapters.part_error`); ``None`` if none does, or if it raises a
        torch ``RuntimeError`` (the inputs' form, which :func:`batches` names)."""
        sub = self._subset(batch, np.arange(len(batch)))
        with _torch().inference_mode():
            for v, model in enumerate(self.models):
                try:
                    model(sub, self.device)
                except Exception as exc:  # the user's code: any failure is named, not hidden
                    return None if isinstance(exc, RuntimeError) else part_error(f"model {v}", sub, exc)
        return None


