"""A serving runtime that exits early with recall: the fitted policy drives real models.

:class:`EarlyExitServer` wraps a torch **multi-exit model** (:class:`MultiExitModel`: a
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
:class:`~ttamer.earlyexit.tamer.ThresholdTamer`'s ``runtime_rule()``, :class:`MaxProbRule`,
a stop / go-on ``state_fn`` compiled by :class:`StateFnRule`, a chain policy compiled by
:class:`ChainPolicyRule`) is evaluated after every exit on the rows still running -- one state
computation and one vectorised comparison -- and the rows that stop leave the batch. The
runtime also records the per-exit cost profile of each serving mode (one query at a time,
batched) in the trace's meta; :func:`with_cost_profile` prices a trace in the mode served.

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
``B`` rows. :func:`tamer_state_fn` and :func:`cascade_state_fn` build it from a fitted
:class:`~ttamer.earlyexit.calibration.EarlyExitTamer` / :class:`~ttamer.earlyexit.cascade.CascadeTamer`;
:func:`threshold_rule` expresses the confidence-threshold heuristic as a (policy,
state_fn) pair, so heuristics run through the same runtime; :func:`pathwise_rule` does the
same for T-Tamer's path-wise rule (:class:`~ttamer.earlyexit.pathwise.PathwiseTamer`).
"""

from __future__ import annotations

import contextlib
import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from ..core.errors import TTamerError
from ..core.instance import Instance
from ..core.policy import LastStatePolicy, Policy, rollout
from ..earlyexit.traces import Trace
from ..workloads.common import resolve_device

StateFn = Callable[[np.ndarray, int], np.ndarray]
AnswerFn = Callable[[np.ndarray, np.ndarray], np.ndarray]
ExitMap = Callable[[np.ndarray, np.ndarray], np.ndarray]


# --------------------------------------------------------------------------- small torch helpers
def _torch():
    import torch

    return torch


def take(x: Any, idx: "torch.Tensor") -> Any:  # noqa: F821
    """Rows ``idx`` of a tensor, or of every tensor in a tuple / list / dict (``None`` stays)."""
    torch = _torch()
    if x is None:
        return None
    if torch.is_tensor(x):
        return x.index_select(0, idx.to(x.device))
    if isinstance(x, (tuple, list)):
        return type(x)(take(e, idx) for e in x)
    if isinstance(x, dict):
        return {k: take(v, idx) for k, v in x.items()}
    raise TTamerError(f"cannot select rows of a {type(x).__name__}; hidden states and contexts must be "
                      "tensors or tuples / lists / dicts of tensors")


def _n_rows(x: Any) -> int:
    torch = _torch()
    if torch.is_tensor(x):
        return int(x.shape[0])
    if isinstance(x, (tuple, list)) and x:
        return _n_rows(x[0])
    if isinstance(x, dict) and x:
        return _n_rows(next(iter(x.values())))
    raise TTamerError(f"cannot count the rows of a {type(x).__name__}")


def _softmax_np(logits: "torch.Tensor") -> np.ndarray:  # noqa: F821
    """float32 softmax on the CPU -- exactly what the workloads store in traces."""
    return _torch().softmax(logits.float(), dim=-1).cpu().numpy()


# --------------------------------------------------------------------------- models
@dataclass
class MultiExitModel:
    """A network with an exit after every block.

    ``prepare(inputs, device) -> (h, ctx)`` turns a list / array / tensor of ``B`` raw inputs
    into the first hidden state and a per-row context (e.g. an attention mask; ``None`` if
    unused); ``blocks[i](h, ctx) -> h`` and ``heads[i](h, ctx) -> logits [B, C]``. Tensors
    carry the batch on dimension 0.
    """

    blocks: Sequence[Callable]
    heads: Sequence[Callable]
    prepare: Callable[[Any, Any], tuple[Any, Any]]
    names: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if len(self.blocks) == 0:
            raise TTamerError("MultiExitModel needs at least one block")
        if len(self.blocks) != len(self.heads):
            raise TTamerError(f"MultiExitModel: {len(self.blocks)} blocks but {len(self.heads)} exit heads "
                              "(one head per block)")
        if not self.names:
            self.names = [f"exit{i}" for i in range(len(self.blocks))]
        if len(self.names) != len(self.blocks):
            raise TTamerError(f"MultiExitModel: {len(self.names)} names for {len(self.blocks)} exits")

    @property
    def n_exits(self) -> int:
        return len(self.blocks)

    @classmethod
    def from_modules(cls, blocks: Sequence[Callable], heads: Sequence[Callable],
                     names: Sequence[str] | None = None) -> "MultiExitModel":
        """Blocks and heads that take the hidden state only (e.g. a CNN: ``model.blocks``,
        ``model.heads``); inputs are a float tensor (or array) ``[B, ...]``."""
        torch = _torch()

        def prepare(inputs: Any, device: Any) -> tuple[Any, None]:
            x = inputs if torch.is_tensor(inputs) else torch.as_tensor(np.asarray(inputs))
            return x.to(device), None

        wrap = lambda f: (lambda h, _ctx: f(h))  # noqa: E731
        return cls([wrap(b) for b in blocks], [wrap(h) for h in heads], prepare, list(names or []))


def transformer_exits(tokenizer: Any, encoder: Any, heads: Sequence[Any], max_length: int = 64,
                      names: Sequence[str] | None = None, layers: int | None = None) -> MultiExitModel:
    """A BERT-family encoder with an exit after each of its first ``layers`` layers (default
    all): block 0 = embeddings + layer 1, block ``i`` = layer ``i+1``; exit ``i`` = the
    hidden state mean-pooled over the tokens (attention mask) through ``heads[i]``
    (the convention of :mod:`ttamer.workloads.nlp`). ``prepare`` tokenises (padding to the
    longest text of the batch, truncation at ``max_length``)."""
    torch = _torch()
    emb = getattr(encoder, "embeddings", None)
    all_layers = getattr(getattr(encoder, "encoder", None), "layer", None)
    if emb is None or all_layers is None:
        raise TTamerError(f"model {type(encoder).__name__}: expected BERT-like .embeddings and .encoder.layer")
    L = len(all_layers) if layers is None else int(layers)
    if not 1 <= L <= len(all_layers):
        raise TTamerError(f"layers must be in 1..{len(all_layers)}, got {layers}")
    if len(heads) != L:
        raise TTamerError(f"{len(heads)} exit heads for {L} layers (one head per layer)")

    def prepare(texts: Any, device: Any) -> tuple[Any, dict]:
        texts = [str(t) for t in (texts if not isinstance(texts, str) else [texts])]
        b = tokenizer(texts, padding=True, truncation=True, max_length=int(max_length), return_tensors="pt")
        b = {k: v.to(device) for k, v in b.items()}
        mask = b["attention_mask"]
        m = mask.unsqueeze(-1).to(torch.float32)
        # the exits' mean-pooling weights [B, 1, T], computed once per batch: a head is then one
        # batched product and its linear layer
        ctx = {"input_ids": b["input_ids"], "pool": (m / m.sum(1, keepdim=True).clamp_min(1.0)).transpose(1, 2),
               "additive": (1.0 - mask[:, None, None, :].to(torch.float32)) * torch.finfo(torch.float32).min}
        if "token_type_ids" in b:
            ctx["token_type_ids"] = b["token_type_ids"]
        return b["input_ids"], ctx

    def layer_block(i: int) -> Callable:
        layer = all_layers[i]

        def block(h: Any, ctx: dict) -> Any:
            if i == 0:
                h = emb(input_ids=ctx["input_ids"], token_type_ids=ctx.get("token_type_ids"))
            out = layer(h, attention_mask=ctx["additive"].to(h.dtype))
            return out[0] if isinstance(out, tuple) else out
        return block

    def exit_head(i: int) -> Callable:
        def head(h: Any, ctx: dict) -> Any:
            w = ctx["pool"]  # [B, 1, T]
            return heads[i](torch.bmm(w if w.dtype == h.dtype else w.to(h.dtype), h)[:, 0])
        return head

    names = list(names) if names is not None else [f"layer{i + 1}" for i in range(L)]
    return MultiExitModel([layer_block(i) for i in range(L)], [exit_head(i) for i in range(L)], prepare, names)


# --------------------------------------------------------------------------- results
@dataclass
class ServeResult:
    """What a run of the runtime did on ``N`` inputs.

    ``answer`` -- exit / model answered with; ``prediction`` -- the class returned;
    ``consulted`` ``[N, n]``; ``states`` ``[N, n]`` (``-1``: not consulted); ``last``;
    ``latency`` ``[N]`` seconds from the moment the example's batch started until its
    answer was decided; ``seconds`` -- wall-clock time of the whole run; ``probs``
    ``[N, n, C]`` (NaN where not consulted); ``timing`` -- seconds of the run spent in
    ``prepare`` (e.g. tokenisation), ``network`` (blocks, heads, softmax copied to the CPU),
    ``states`` (``state_fn``; a threshold rule's state and comparison) and ``policy`` (with a
    policy: the rest, decisions and rollout bookkeeping; with a threshold rule: stopping rows
    and pruning the batch, the rest being ``other``: splitting the inputs and collecting the
    results).
    """

    answer: np.ndarray
    prediction: np.ndarray
    consulted: np.ndarray
    states: np.ndarray
    last: np.ndarray
    latency: np.ndarray
    seconds: float
    probs: np.ndarray
    batch_size: int
    timing: dict = field(default_factory=dict)

    def accuracy(self, labels: np.ndarray) -> float:
        return float(np.mean(self.prediction == np.asarray(labels)))

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
class _Runtime:
    """Rollout of a policy whose ``reveal`` runs models; subclasses compute exits."""

    n_nodes: int

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

    # subclasses: start a batch, compute node outputs for rows
    def _begin(self, inputs: Any) -> None:
        raise NotImplementedError

    def _prune(self, rows: np.ndarray) -> None:
        """Forget every row not in ``rows`` (their policy stopped)."""

    def _logits(self, rows: np.ndarray, node: int) -> Any:
        raise NotImplementedError

    def _sync(self) -> None:
        if self.device.type == "cuda":
            _torch().cuda.synchronize(self.device)

    def _states(self, probs: np.ndarray, rows: np.ndarray, node: int) -> np.ndarray:
        s = np.asarray(self.state_fn(probs[rows], int(node)), dtype=np.int64).reshape(-1)
        K = int(self.policy.instance.n_states[node])
        if len(s) != len(rows) or (len(s) and (s.min() < 0 or s.max() >= K)):
            raise TTamerError(f"state_fn returned states {s[:5].tolist()}... for node {node} "
                              f"({len(rows)} rows, expected values in 0..{K - 1})")
        return s

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
            self._begin(inputs)
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
                    p = _softmax_np(self._logits(rows[sel], int(v)))
                    t2 = clock()
                    if probs is None:
                        probs = np.full((n, self.n_nodes, p.shape[1]), np.nan, dtype=np.float32)
                    probs[rows[sel], v] = p
                    out[sel] = self._states(probs, rows[sel], int(v))
                    parts["network"] += t2 - t1
                    parts["states"] += clock() - t2
                return out

            ro = rollout(self.policy, n, reveal)
            answer = np.asarray(self.answer_fn(ro.states, ro.last), dtype=np.int64)
            if self.exit_map is not None and probs is not None and (answer >= 0).all():
                answer = np.asarray(self.exit_map(probs, answer), dtype=np.int64)
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
        examples leave the batch. Wall-clock time measured end to end."""
        n = _length(inputs)
        bs = int(batch_size)
        if bs < 1:
            raise TTamerError(f"batch_size must be >= 1, got {batch_size!r}")
        parts = []
        t0 = time.perf_counter()
        run = self._run_rule_batch if getattr(self, "rule", None) is not None else self._run_batch
        for s in range(0, n, bs):
            parts.append(run(_slice(inputs, s, s + bs), min(bs, n - s)))
        seconds = time.perf_counter() - t0
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
        return ServeResult(cat["answer"], cat["prediction"], cat["states"] >= 0, cat["states"], cat["last"],
                           cat["latency"], seconds, cat["probs"], bs, timing)


def _length(inputs: Any) -> int:
    try:
        n = len(inputs)
    except TypeError:
        raise TTamerError(f"inputs must be a sequence, array or tensor of examples, got {type(inputs).__name__}") from None
    if n == 0:
        raise TTamerError("no inputs to serve")
    return n


def _slice(inputs: Any, a: int, b: int) -> Any:
    return inputs[a:b]


class EarlyExitServer(_Runtime):
    """Serve a :class:`MultiExitModel` with a fitted policy over its exits (module docstring).

    ``EarlyExitServer(model, policy, state_fn, device="cpu")``; :meth:`serve` answers inputs
    (per example or batched), :meth:`run_all` computes every exit (a trace), :meth:`run_full`
    times the plain network (all blocks, the last head only). Skips of a chain policy are
    honoured: the blocks in between run, their heads do not.
    """

    def __init__(self, model: MultiExitModel, policy: Any, state_fn: StateFn | None = None, device: Any = "cpu",
                 answer_fn: AnswerFn | None = None, exit_map: ExitMap | None = None, compile: bool = True) -> None:
        if not isinstance(model, MultiExitModel):
            raise TTamerError(f"model must be a MultiExitModel, got {type(model).__name__}")
        self.model = model
        self.n_nodes = model.n_exits
        self.rule: Any = None
        if is_runtime_rule(policy):  # a threshold rule, evaluated exit by exit
            if state_fn is not None or answer_fn is not None:
                raise TTamerError("a threshold rule computes its own states and answers: pass no state_fn "
                                  "or answer_fn with it")
            if int(policy.n_exits) != self.n_nodes:
                raise TTamerError(f"the rule has {policy.n_exits} exits but the model has {self.n_nodes}")
            if exit_map is not None and not callable(exit_map):
                raise TTamerError(f"exit_map must be callable (probs, node) -> exit, got {exit_map!r}")
            self.rule, self.policy, self.state_fn, self.answer_fn = policy, None, None, None
            self.exit_map = exit_map
            self.device = resolve_device(device)
            self._pos = np.arange(self.n_nodes)
            return
        super().__init__(policy, state_fn, device, answer_fn, exit_map)
        if not policy.instance.is_chain:
            raise TTamerError("EarlyExitServer needs a policy on a chain of exits; use CascadeServer for trees")
        self._pos = np.asarray(policy.instance.chain_position)
        if compile and isinstance(policy, StopStatePolicy) and answer_fn is None:
            self.rule = StateFnRule(self.n_nodes, state_fn, None, policy.instance.name)

    @classmethod
    def from_tamer(cls, model: MultiExitModel, tamer: Any, device: Any = "cpu") -> "EarlyExitServer":
        """Serve with a fitted :class:`~ttamer.earlyexit.tamer.ThresholdTamer` (its
        :meth:`~ttamer.earlyexit.tamer.ThresholdTamer.runtime_rule`, one threshold per exit), a
        fitted :class:`~ttamer.earlyexit.calibration.EarlyExitTamer` (its policy, its states computed
        online by :func:`tamer_state_fn` and its answer rule, :func:`tamer_answer_fns`) or a
        fitted :class:`~ttamer.earlyexit.pathwise.PathwiseTamer` (:func:`pathwise_rule`); either way the
        served decisions are ``tamer.decide``'s."""
        if callable(getattr(tamer, "runtime_rule", None)):
            return cls(model, tamer.runtime_rule(), device=device)
        if hasattr(tamer, "rule_"):
            policy, state_fn, exit_map = pathwise_rule(tamer)
            return cls(model, policy, state_fn, device, exit_map=exit_map)
        answer_fn, exit_map = tamer_answer_fns(tamer)
        rule = ChainPolicyRule.compile(tamer.solution_.policy, tamer_states_fn(tamer), answer_fn)
        if rule is not None:
            return cls(model, rule, device=device, exit_map=exit_map)
        return cls(model, tamer.solution_.policy, tamer_state_fn(tamer), device, answer_fn, exit_map)

    # groups of rows sharing a hidden state at one depth (-1 = before block 0)
    def _begin(self, inputs: Any) -> None:
        h, ctx = self.model.prepare(inputs, self.device)
        n = _n_rows(h)
        self._groups = [(np.arange(n), -1, h, ctx)]

    def _prune(self, rows: np.ndarray) -> None:
        torch = _torch()
        if len(self._groups) == 1 and len(self._groups[0][0]) == len(rows):
            return
        groups = []
        for g_rows, depth, h, ctx in self._groups:
            keep = np.isin(g_rows, rows)
            if keep.all():
                groups.append((g_rows, depth, h, ctx))
            elif keep.any():
                idx = torch.as_tensor(np.flatnonzero(keep), device=self.device)
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
                rest = torch.as_tensor(np.flatnonzero(~sel), device=self.device)
                groups.append((g_rows[~sel], depth, take(h, rest), take(ctx, rest)))
                idx = torch.as_tensor(np.flatnonzero(sel), device=self.device)
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
        return logits.index_select(0, torch.as_tensor(pos, device=logits.device))

    def _run_rule_batch(self, inputs: Any, n: int, rule: Any = None) -> dict[str, Any]:
        """One batch under a threshold rule, exit by exit: block, head and softmax copied to the
        host (the one synchronisation the decision needs), ``rule.step`` on the rows still
        running and one vectorised comparison with the exit's threshold; stopped rows leave
        the batch. No policy, no rollout. ``marks[i]``: seconds from the batch's start until
        the decisions at exit ``i`` were taken; ``alive[i]``: rows that ran exit ``i``."""
        torch = _torch()
        rule = self.rule if rule is None else rule
        clock = time.perf_counter
        L = self.n_nodes
        t0 = clock()
        parts = {"prepare": 0.0, "network": 0.0, "states": 0.0, "policy": 0.0}
        marks, alive = np.full(L, np.nan), np.zeros(L, dtype=np.int64)
        answer, last = np.full(n, -1, dtype=np.int64), np.full(n, -1, dtype=np.int64)
        states, stop_time = np.full((n, L), -1, dtype=np.int64), np.zeros(n)
        probs = hist = None
        rows = np.arange(n)
        with torch.inference_mode():
            h, ctx = self.model.prepare(inputs, self.device)
            self._sync()
            parts["prepare"] = clock() - t0
            for i in range(L):
                t1 = clock()
                h = self.model.blocks[i](h, ctx)
                p = _softmax_np(self.model.heads[i](h, ctx))
                t2 = clock()
                if hist is None:
                    probs = np.full((n, L, p.shape[1]), np.nan, dtype=np.float32)
                    hist = np.empty((n, L, p.shape[1]), dtype=np.float32)
                hist[:, i] = p
                x, a = rule.step(i, hist[:, : i + 1])
                stop = np.ones(len(rows), dtype=bool) if i == L - 1 else rule.stops(i, x)
                t3 = clock()
                parts["network"] += t2 - t1
                parts["states"] += t3 - t2
                states[rows, i] = stop
                alive[i] = len(rows)
                if stop.any():
                    r = rows[stop]
                    last[r], answer[r] = i, np.asarray(a)[stop]
                    probs[r, : i + 1] = hist[stop, : i + 1]
                    stop_time[r] = clock() - t0
                    if stop.all():
                        marks[i] = clock() - t0
                        parts["policy"] += marks[i] - (t3 - t0)
                        break
                    keep = ~stop
                    rows, hist = rows[keep], hist[keep]
                    idx = torch.as_tensor(np.flatnonzero(keep), device=self.device)
                    h, ctx = take(h, idx), take(ctx, idx)
                marks[i] = clock() - t0
                parts["policy"] += marks[i] - (t3 - t0)
            if self.exit_map is not None:
                answer = np.asarray(self.exit_map(probs, answer), dtype=np.int64)
            self._sync()
        pred = probs[np.arange(n), answer].argmax(axis=1)
        return {"answer": answer, "prediction": pred, "states": states, "last": last, "latency": stop_time,
                "probs": probs, "timing": parts, "marks": marks, "alive": alive}

    def cost_profile(self, inputs: Any, batch_size: int = 1, warmup: int = 1, repeats: int = 3) -> np.ndarray:
        """``[L]`` wall-clock ms per example of each exit when serving ``inputs`` in batches of
        ``batch_size`` through the runtime forced to the last exit (every block, head, state and
        decision; exit 0 also pays for ``prepare``): the per-exit cost profile of that serving
        mode. Every batch is served ``repeats`` times in a row and each of its exits keeps its
        median time -- on a shared machine the other tenants preempt the process now and then
        for milliseconds, and at batch 1 such a pause falls on one exit of a query and would
        misprice it -- then the mean over the batches after ``warmup``."""
        n, bs = _length(inputs), int(batch_size)
        if bs < 1:
            raise TTamerError(f"batch_size must be >= 1, got {batch_size!r}")
        if int(repeats) < 1:
            raise TTamerError(f"repeats must be >= 1, got {repeats!r}")
        forced = max_prob_rule(self.n_nodes, np.inf)
        per = []
        for s in range(0, n, bs):
            batch, rows = _slice(inputs, s, s + bs), min(bs, n - s)
            runs = []
            for _ in range(int(repeats)):
                out = self._run_rule_batch(batch, rows, forced)
                runs.append(np.diff(np.r_[0.0, out["marks"]]) / out["alive"])
            per.append(np.median(runs, axis=0))
        timed = per[warmup:] if len(per) > warmup else per
        return 1e3 * np.mean(np.stack(timed), axis=0)

    def run_all(self, inputs: Any, labels: Any, batch_size: int = 64, meta: dict | None = None,
                warmup: int = 1, profile_examples: int = 0) -> Trace:
        """Every exit on every input, batched: a :class:`~ttamer.earlyexit.traces.Trace` whose ``cost[i]``
        is the median (over batches after ``warmup``) wall-clock ms per example of block ``i``
        with its head (exit 0 also pays for ``prepare``).

        ``meta["cost_profiles"]`` keeps the per-exit cost profile of each serving mode:
        ``"batched"`` (the trace's ``cost``) and, with ``profile_examples > 0``, ``"batch1"``
        -- the first ``profile_examples`` inputs served one at a time by the runtime forced to
        the last exit (:meth:`cost_profile`). :func:`with_cost_profile` prices the trace in the
        mode that will be served."""
        if int(profile_examples) < 0:
            raise TTamerError(f"profile_examples must be >= 0, got {profile_examples!r}")
        torch = _torch()
        n = _length(inputs)
        L = self.n_nodes
        out, times = [], []
        with torch.inference_mode():
            for s in range(0, n, int(batch_size)):
                batch = _slice(inputs, s, s + int(batch_size))
                marks = [time.perf_counter()]
                h, ctx = self.model.prepare(batch, self.device)
                probs = []
                for i in range(L):
                    h = self.model.blocks[i](h, ctx)
                    probs.append(_softmax_np(self.model.heads[i](h, ctx)))
                    self._sync()
                    marks.append(time.perf_counter())
                out.append(np.stack(probs, axis=1))
                times.append(np.diff(marks) / len(probs[0]))
        timed = times[warmup:] if len(times) > warmup else times
        cost_ms = 1e3 * np.median(np.stack(timed), axis=0)
        m = {"model": "served multi-exit model", "dataset": "?", "cost_unit": "ms/example",
             "exit_names": list(self.model.names), "cost_measure": "serving runtime, all exits, batched",
             "device": str(self.device), "batch_size": int(batch_size)}
        m.update(meta or {})
        profiles = {"batched": [float(c) for c in cost_ms]}
        if int(profile_examples) > 0:
            k = min(int(profile_examples), n)
            profiles["batch1"] = [float(c) for c in self.cost_profile(_slice(inputs, 0, k), 1, warmup=min(3, k - 1))]
        m["cost_profiles"] = profiles
        return Trace.build(np.concatenate(out), np.asarray(labels), cost_ms, m)

    def run_full(self, inputs: Any, batch_size: int = 1) -> ServeResult:
        """The plain network (every block, the last head only, no policy): the baseline."""
        torch = _torch()
        n = _length(inputs)
        L = self.n_nodes
        preds, lat, probs_all = [], [], []
        t_prep = 0.0
        t0 = time.perf_counter()
        with torch.inference_mode():
            for s in range(0, n, int(batch_size)):
                tb = time.perf_counter()
                h, ctx = self.model.prepare(_slice(inputs, s, s + int(batch_size)), self.device)
                self._sync()
                t_prep += time.perf_counter() - tb
                for i in range(L):
                    h = self.model.blocks[i](h, ctx)
                p = _softmax_np(self.model.heads[L - 1](h, ctx))
                self._sync()
                lat.append(np.full(len(p), time.perf_counter() - tb))
                preds.append(p.argmax(axis=1))
                probs_all.append(p)
        seconds = time.perf_counter() - t0
        P = np.concatenate(probs_all)
        probs = np.full((n, L, P.shape[1]), np.nan, dtype=np.float32)
        probs[:, L - 1] = P
        states = np.full((n, L), -1, dtype=np.int64)
        consulted = np.zeros((n, L), dtype=bool)
        consulted[:, L - 1] = True
        timing = {"prepare": t_prep, "network": seconds - t_prep, "states": 0.0, "policy": 0.0}
        return ServeResult(np.full(n, L - 1), np.concatenate(preds), consulted, states, np.full(n, L - 1),
                           np.concatenate(lat), seconds, probs, int(batch_size), timing)


class CascadeServer(_Runtime):
    """Serve a forest of separate models with a fitted policy over them.

    ``models[v](inputs, device) -> logits [B, C]`` runs model ``v`` on a batch of raw inputs
    (a list or an array); ``policy`` is solved on the cascade instance (same node order).
    """

    def __init__(self, models: Sequence[Callable], policy: Policy, state_fn: StateFn, device: Any = "cpu") -> None:
        if len(models) == 0 or not all(callable(m) for m in models):
            raise TTamerError("models must be a non-empty list of callables (inputs, device) -> logits")
        self.models = list(models)
        self.n_nodes = len(self.models)
        super().__init__(policy, state_fn, device)

    def _begin(self, inputs: Any) -> None:
        self._inputs = inputs

    def _logits(self, rows: np.ndarray, node: int) -> Any:
        x = self._inputs
        sub = [x[int(i)] for i in rows] if isinstance(x, list) else x[rows]
        return self.models[node](sub, self.device)


# --------------------------------------------------------------------------- state functions
def tamer_states_fn(tamer: Any) -> Callable[[np.ndarray], np.ndarray]:
    """The states ``[B, L]`` of every exit of a fitted
    :class:`~ttamer.earlyexit.calibration.EarlyExitTamer` from the exits consulted so far (``probs
    [B, L, C]``, later exits NaN and padded uniformly; the state of exit ``i`` depends only on
    exits ``0..i``, so the columns of the consulted exits are final)."""
    if not hasattr(tamer, "encoder_"):
        raise TTamerError("tamer_state_fn needs a fitted EarlyExitTamer (call fit first)")
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
    if not hasattr(tamer, "solution_"):
        raise TTamerError("tamer_answer_fns needs a fitted EarlyExitTamer (call fit first)")
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
    from ..earlyexit.cascade import CascadeTrace, tree_states

    if not hasattr(tamer, "encoder_"):
        raise TTamerError("cascade_state_fn needs a fitted CascadeTamer (call fit first)")
    n_models = len(tamer.parents_)

    def state_fn(probs: np.ndarray, node: int) -> np.ndarray:
        B, n, C = probs.shape
        if n != n_models:
            raise TTamerError(f"state_fn: probs has {n} models, the tamer was fitted on {n_models}")
        p = np.where(np.isnan(probs), np.float32(1.0 / C), probs).astype(np.float32)
        tr = Trace(p, np.zeros(B, dtype=np.int64), np.zeros(n), {"exit_names": list(tamer.names_)})
        return tree_states(tamer.encoder_, CascadeTrace(tr, tamer.parents_), tamer.agreement)[:, node]
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
    :class:`EarlyExitServer` compiles it with its ``state_fn`` into a threshold rule
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


def is_runtime_rule(rule: Any) -> bool:
    """Whether ``rule`` has the interface of a rule evaluated exit by exit: ``n_exits``,
    ``thresholds [n_exits]``, ``step(i, probs) -> (x, a)`` and ``stops(i, x)``."""
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


def max_prob_rule(n_exits: int, tau: float) -> MaxProbRule:
    """:class:`MaxProbRule`: the decisions of :func:`threshold_rule` (and of
    :func:`ttamer.earlyexit.baselines.max_prob_threshold`), served without a policy object."""
    return MaxProbRule(n_exits, tau)


#: Serving modes whose per-exit cost profiles a trace recorded by the runtime keeps.
COST_PROFILES = ("batch1", "batched")


def with_cost_profile(trace: Trace, mode: str | int) -> Trace:
    """``trace`` priced in a serving mode: its ``cost`` replaced by
    ``meta["cost_profiles"][mode]`` (recorded by :meth:`EarlyExitServer.run_all`); ``mode`` is
    ``"batch1"``, ``"batched"`` or a batch size (1: ``"batch1"``, more: ``"batched"``). The
    simulation of a strategy served one query at a time should use ``"batch1"``."""
    if not isinstance(mode, str):
        mode = "batch1" if int(mode) == 1 else "batched"
    if mode not in COST_PROFILES:
        raise TTamerError(f"mode must be one of {COST_PROFILES} or a batch size, got {mode!r}")
    profiles = trace.meta.get("cost_profiles")
    if not isinstance(profiles, dict) or mode not in profiles:
        have = sorted(profiles) if isinstance(profiles, dict) else []
        raise TTamerError(f"the trace's meta has no {mode!r} cost profile (cost_profiles: {have}); record it with "
                          "EarlyExitServer.run_all(..., profile_examples=k)")
    cost = np.asarray(profiles[mode], dtype=np.float64)
    if cost.shape != (trace.n_exits,):
        raise TTamerError(f"cost profile {mode!r} has {cost.size} values for {trace.n_exits} exits")
    meta = dict(trace.meta, cost_measure=f"serving runtime, cost profile {mode!r}")
    return Trace.build(trace.probs, trace.labels, cost, meta)


def pathwise_rule(tamer: Any) -> tuple[Policy, StateFn, ExitMap | None]:
    """A fitted :class:`~ttamer.earlyexit.pathwise.PathwiseTamer` as ``(policy, state_fn, exit_map)``:
    the state of exit ``i`` is ``1`` iff its stopping rule says stop on the exits consulted so
    far (later exits padded uniformly; the rule at exit ``i`` reads exits ``0..i`` only), and
    ``exit_map`` maps the exit stopped at to the exit answered with (its posterior answer;
    ``None`` for ``answer_rule="last"``). The served decisions are ``tamer.decide``'s."""
    if not hasattr(tamer, "rule_"):
        raise TTamerError("pathwise_rule needs a fitted PathwiseTamer (call fit first)")
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


# --------------------------------------------------------------------------- the workloads' models
@contextlib.contextmanager
def quiet(progress: bool):
    """Without ``progress``: no weight-loading progress bars from ``transformers`` and no
    warning from ``tqdm.auto`` about missing notebook widgets."""
    if progress:
        yield
        return
    try:
        from transformers.utils import logging as hf_logging
    except ImportError:  # pragma: no cover - transformers is optional
        hf_logging = None
    was = hf_logging.is_progress_bar_enabled() if hf_logging else False
    if hf_logging:
        hf_logging.disable_progress_bar()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="IProgress not found")
        try:
            yield
        finally:
            if hf_logging and was:
                hf_logging.enable_progress_bar()


@dataclass
class ServedText:
    """A multi-exit text model ready to serve, and sentences it was not trained on:
    ``texts``/``labels`` (disjoint from the ``head_index`` sentences its heads saw)."""

    model: MultiExitModel
    texts: list[str]
    labels: np.ndarray
    head_index: np.ndarray
    trace_index: np.ndarray
    head_accuracy: list[float]


def text_exits_model(profile: str = "offline", *, seed: int = 0, device: str = "cpu", n_head: int | None = None,
                     n_trace: int | None = None, max_length: int | None = None, batch_size: int | None = None,
                     finetune_epochs: int | None = None, progress: bool = False) -> ServedText:
    """The text workload's network (:mod:`ttamer.workloads.nlp`: all-MiniLM-L6-v2 offline,
    BERT/IMDB full) as a :class:`MultiExitModel`, built by the workload's own recipe: the same
    data split, the encoder fine-tuned on the head sentences when ``finetune_epochs > 0``
    (``None``: the profile's default; ``0``: the frozen pretrained encoder), then one
    logistic-regression head per layer on its mean-pooled state (head sentences disjoint
    from the returned ones), exposed block by block (:func:`transformer_exits`)."""
    from ..workloads import nlp
    from ..workloads.common import set_runtime, train_linear_heads

    sizes = dict(n_head=n_head, n_trace=n_trace, max_length=max_length, batch_size=batch_size)
    if finetune_epochs is not None:
        sizes["finetune_epochs"] = finetune_epochs
    cfg = nlp.profile_config(profile, **sizes)
    nlp.offline_if_shipped(cfg)
    dev = resolve_device(device)
    set_runtime(seed, None)
    with quiet(progress):
        h_texts, h_labels, h_idx, t_texts, t_labels, t_idx = nlp.choose_examples(cfg, seed)
        tok, encoder = nlp.load_encoder(cfg, dev)
        if int(cfg.get("finetune_epochs", 0)) > 0:
            nlp.finetune_encoder(tok, encoder, h_texts, h_labels, cfg, dev, seed=seed, progress=progress)
            encoder.eval()
        feats, _ = nlp.run_encoder(tok, encoder, h_texts, cfg, dev, desc="heads", progress=progress)
    heads = [h.to(dev).eval() for h in train_linear_heads(feats, h_labels, len(cfg["label_names"]), seed=seed)]
    acc = [float(np.mean((f @ h.weight.detach().cpu().numpy().T + h.bias.detach().cpu().numpy()).argmax(1) == h_labels))
           for f, h in zip(feats, heads)]
    model = transformer_exits(tok, encoder, heads, max_length=int(cfg["max_length"]))
    return ServedText(model, t_texts, t_labels, h_idx, t_idx, acc)


# --------------------------------------------------------------------------- measuring
def concat_results(parts: Sequence[ServeResult]) -> ServeResult:
    """One :class:`ServeResult` from results on consecutive chunks of the inputs."""
    if not parts:
        raise TTamerError("no results to concatenate")
    cat = lambda k: np.concatenate([getattr(p, k) for p in parts])  # noqa: E731
    timing = {k: float(sum(p.timing.get(k, 0.0) for p in parts)) for k in parts[0].timing}
    return ServeResult(cat("answer"), cat("prediction"), cat("consulted"), cat("states"), cat("last"),
                       cat("latency"), float(sum(p.seconds for p in parts)), cat("probs"), parts[0].batch_size,
                       timing)


def compare_latency(runs: dict[str, Callable[[Any, int], ServeResult]], inputs: Any, batch_size: int = 1,
                    repeats: int = 2, chunk: int | None = None) -> dict[str, dict[str, Any]]:
    """Time several ways of serving the same inputs, fairly on a shared machine.

    ``runs[name](inputs, batch_size) -> ServeResult`` (e.g. ``server.serve`` or
    ``server.run_full``). The inputs are cut into chunks (``chunk``, default ``batch_size``
    -- one query at a time for ``batch_size=1``) and on every chunk the runs take turns, in an
    order rotated from chunk to chunk, for ``repeats`` rounds; a slow spell of the machine
    therefore hits every run alike. Per run: ``latency`` -- the per-example median over
    rounds (seconds), ``ms_per_example`` -- the median over rounds of total time per example,
    ``result`` -- the last round's :class:`ServeResult`.
    """
    n = _length(inputs)
    names = list(runs)
    if not names:
        raise TTamerError("compare_latency needs at least one run")
    if int(repeats) < 1:
        raise TTamerError(f"repeats must be >= 1, got {repeats!r}")
    step = int(chunk or batch_size)
    lat: dict[str, list[np.ndarray]] = {k: [] for k in names}
    tot: dict[str, list[float]] = {k: [] for k in names}
    last: dict[str, ServeResult] = {}
    for _ in range(int(repeats)):
        parts: dict[str, list[ServeResult]] = {k: [] for k in names}
        for c, s in enumerate(range(0, n, step)):
            x = _slice(inputs, s, s + step)
            for j in range(len(names)):
                k = names[(j + c) % len(names)]
                parts[k].append(runs[k](x, batch_size))
        for k in names:
            res = concat_results(parts[k])
            lat[k].append(res.latency)
            tot[k].append(res.ms_per_example)
            last[k] = res
    return {k: {"latency": np.median(np.stack(lat[k]), axis=0), "ms_per_example": float(np.median(tot[k])),
                "result": last[k]} for k in names}
