"""Measuring the serving runtime: latency compared fairly, and traces priced per serving mode.

:func:`compare_latency` times several ways of serving the same inputs in turns, chunk by chunk;
:func:`with_cost_profile` prices a trace in the serving mode it will be served in (the per-exit
cost profiles the runtime records) and :func:`served_cost` prices a strategy's decisions in that
mode (batched: each exit's time on the rows of a batch still running there). See the book's
chapter *Serving* (:doc:`/serving`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from typing import Any, Callable, Sequence

import numpy as np

from ..core.errors import TTamerError
from ..core.validate import check_bool, check_int, check_integers, check_numbers, escape_text
from ..earlyexit.traces import Trace
from .adapters import input_length, input_slice, medians_in_turns, no_collection
from .rules import begin_run, runtime_rules
from .runtime import ServeResult, check_batch_size, check_repeats, check_state_rows

#: Serving modes whose per-exit cost profiles a trace recorded by the runtime keeps.
COST_PROFILES = ("batch1", "batched")


def with_cost_profile(trace: Trace, mode: str | int) -> Trace:
    """``trace`` priced in a serving mode: its ``cost`` replaced by
    ``meta["cost_profiles"][mode]`` (recorded by :meth:`~ttamer.serving.runtime.EarlyExitServer.run_all`); ``mode`` is
    ``"batch1"``, ``"batched"`` or a batch size (1: ``"batch1"``, more: ``"batched"``). The
    simulation of a strategy served one query at a time should use ``"batch1"``."""
    if not isinstance(trace, Trace):
        raise TTamerError(f"with_cost_profile prices a ttamer Trace, got {type(trace).__name__}")
    if not isinstance(mode, str):
        mode = "batch1" if check_batch_size(mode, "mode (a name or a batch size)") == 1 else "batched"
    if mode not in COST_PROFILES:
        raise TTamerError(f"mode must be one of {COST_PROFILES} or a batch size, got {mode!r}")
    profiles = trace.meta.get("cost_profiles")
    if not isinstance(profiles, dict) or mode not in profiles:
        have = sorted(profiles) if isinstance(profiles, dict) else []
        raise TTamerError(f"the trace's meta has no {mode!r} cost profile (cost_profiles: {have}); record it with "
                          "EarlyExitServer.run_all(..., profile_examples=k)")
    cost = check_numbers(profiles[mode], f"meta['cost_profiles'][{mode!r}]", low=0.0)
    if cost.shape != (trace.n_exits,):
        raise TTamerError(f"cost profile {mode!r} has {cost.size} values for {trace.n_exits} exits")
    meta = dict(trace.meta, cost_measure=f"serving runtime, cost profile {mode!r}")
    return Trace.build(trace.probs, trace.labels, cost, meta)




def batch_cost_table(trace: Trace) -> tuple[np.ndarray, np.ndarray] | None:
    """``(rows [R], ms_per_batch [R, L])`` from ``meta["batch_cost"]`` (recorded by
    :meth:`~ttamer.serving.runtime.EarlyExitServer.run_all` with ``profile_rows``), or ``None``."""
    tab = trace.meta.get("batch_cost")
    if tab is None:
        return None
    what = (f"meta['batch_cost'] must be a dict holding increasing row counts 'rows' (integers >= 1) and "
            f"'ms_per_batch' [rows, {trace.n_exits}] (finite ms >= 0, some time at every row count)")
    if not isinstance(tab, dict) or "rows" not in tab or "ms_per_batch" not in tab:
        raise TTamerError(f"{what}, got {escape_text(repr(tab), 120)}")
    rows = check_integers(tab["rows"], "meta['batch_cost']['rows']", 1, None, 1 << 20).astype(np.float64)
    ms = check_numbers(tab["ms_per_batch"], "meta['batch_cost']['ms_per_batch']", ndim=2, low=0.0)
    if ms.shape != (len(rows), trace.n_exits) or (np.diff(rows) <= 0).any() or not (ms.sum(axis=1) > 0).all():
        raise TTamerError(what)
    return rows, ms


def gather_cost_table(trace: Trace) -> np.ndarray | None:
    """``[R]`` ms per stop that leaves ``rows[r]`` rows running, from ``meta["batch_cost"]["gather_ms"]``
    (recorded by :meth:`~ttamer.serving.runtime.EarlyExitServer.run_all` with ``profile_rows``;
    :meth:`~ttamer.serving.runtime.EarlyExitServer.gather_cost`), or ``None`` if the table has none."""
    tab = trace.meta.get("batch_cost")
    if not isinstance(tab, dict) or "gather_ms" not in tab:  # a table that is not a dict: batch_cost_table
        return None
    g = check_numbers(tab["gather_ms"], "meta['batch_cost']['gather_ms']", low=0.0, empty=True)
    if g.shape != (len(tab.get("rows", [])),):
        raise TTamerError("meta['batch_cost']['gather_ms'] must hold a finite ms >= 0 per row count of 'rows'")
    return g


def state_cost(rules: Sequence[Any], trace: Trace, batch_size: int, rows: Sequence[int] | None = None,
               repeats: int = 3, batches: int = 8) -> np.ndarray:
    """``[R, K, L]`` host ms that one call of each rule's state and decision takes at each exit
    on ``k`` rows of a batch, for ``k`` in ``rows`` (default ``(1, batch_size)``): the rule
    replayed on the trace's probabilities (every row advanced at every exit, as
    :class:`~ttamer.serving.rules.ForcedRule` serves it), with the bookkeeping of rows that
    leave (the run's ``keep``, timed as if some left at every exit but the last); on the first
    ``batches`` batches of ``batch_size`` after a warm-up batch, the first ``k`` rows of
    each, the rules and row counts taking turns on every batch, ``repeats`` times; medians
    per batch, then the mean. A call costs a fixed part -- a few numpy calls whatever the rows
    -- and a part per row, so a rule whose state is costlier pays most where few rows are
    left. ``None`` in ``rules`` is the max-probability rule, whose cost the table of exit times
    against rows already carries (``meta["batch_cost"]``): a rule's table minus its table is
    what :func:`served_cost` adds (``state_ms=``, ``state_rows=rows``). Replayed on a trace, the
    calls find warm caches; :meth:`EarlyExitServer.state_cost
    <ttamer.serving.runtime.EarlyExitServer.state_cost>` times them in place, after each exit's
    block and head, which a network whose exits take little time per row makes the faithful
    one. ``repeats`` is at most :data:`~ttamer.serving.runtime.MAX_REPEATS`."""
    if not isinstance(trace, Trace):
        raise TTamerError(f"state_cost replays rules on a ttamer Trace, got {type(trace).__name__}")
    bs, L = check_batch_size(batch_size), trace.n_exits
    repeats, batches = check_repeats(repeats), check_int(batches, "batches", minimum=1)
    ks = check_state_rows(rows, bs)
    rules = runtime_rules(rules, L, "state_cost")
    clock = time.perf_counter

    def per_call(b: int, j: int) -> np.ndarray:  # variant j: rule j // K on ks[j % K] rows
        rule = rules[j // len(ks)]
        p = trace.probs[b * bs : b * bs + min(bs, int(ks[j % len(ks)]))]
        run, t, kept = begin_run(rule, len(p), check_rows=False), np.empty(L), np.ones(len(p), dtype=bool)
        for i in range(L):
            t0 = clock()
            x, _ = run.advance(i, p[:, i])
            rule.stops(i, x)
            if i < L - 1:
                run.keep(kept)
            t[i] = clock() - t0
        return t

    n_batches = min(-(-trace.n_examples // bs), int(batches) + 1)
    ms = 1e3 * medians_in_turns(n_batches, len(rules) * len(ks), per_call, repeats, 1)
    return ms.reshape(len(rules), len(ks), L)


def served_cost(trace: Trace, last: np.ndarray, batch_size: int = 1, profile: np.ndarray | None = None,
                reference: np.ndarray | None = None, compact: bool = True, state_ms: np.ndarray | None = None,
                state_rows: Sequence[int] | None = None) -> float:
    r"""The simulated cost of decisions served at ``batch_size``, as a fraction of the full
    network's cost in the same mode: exits ``0..last[n]`` consulted on example ``n``.

    One query at a time (``batch_size = 1``), and batched where the trace has no
    ``meta["batch_cost"]``, each exit costs its per-example cost in the profile of the mode
    (:func:`with_cost_profile`): :math:`\sum_n \sum_{i \le last_n} c_i / N \sum_i c_i`.
    Batched with the table, the examples are served in consecutive batches of
    ``batch_size`` in the trace's order and exit ``i`` of a batch costs
    :math:`T_i(k)`, the ms of exit ``i`` on the ``k`` rows still running there (the table
    interpolated linearly in ``k``, :math:`T_i(0) = 0`; beyond its largest batch, in
    proportion to the rows): the cost is :math:`\sum_b \sum_i T_i(k_{bi}) / \sum_b \sum_i
    T_i(n_b)` -- what the runtime pays where stopped rows leave the batch but a block's time
    does not fall in proportion to its rows (see the book's chapter *Measured: a served
    early-exit policy*). Where the table also holds ``gather_ms`` (:func:`gather_cost_table`),
    every stop that leaves :math:`0 < k_{b,i+1} < k_{bi}` rows running adds :math:`G(k_{b,i+1})`,
    the gathering of those rows and the slower exit after it (interpolated likewise).

    ``profile`` (one query at a time only): ``[L]`` ms per exit of the rule served -- its own
    state's cost included, :meth:`~ttamer.serving.runtime.EarlyExitServer.cost_profile` with
    ``rule=`` -- charged for the exits consulted, as a fraction of the full cost of
    ``reference`` (``[L]``: the max-probability rule's profile measured alongside, the rules
    taking turns, so that the machine's state then cancels) or, without it, of the trace's
    batch-1 profile.

    ``compact=False`` prices batches kept whole until their last row stops
    (:class:`~ttamer.serving.runtime.EarlyExitServer` with ``compact=False``): every row of
    batch :math:`b` runs the exits up to :math:`\max_{n \in b} last_n`.

    ``state_ms`` (batched): ``[K, L]`` host ms that one call of the served rule's state takes
    at each exit on ``state_rows[k]`` rows (default ``(1, batch_size)``) beyond the
    max-probability rule's (:func:`state_cost`), charged for every exit of every batch at its
    rows still running (interpolated linearly in the rows) -- what a rule with a costlier state
    pays in batches, where the exits' times were recorded under the max-probability rule."""
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):  # refused below, by name
        value = _served_cost(trace, last, batch_size, profile, reference, compact, state_ms, state_rows)
    return _finite_fraction(value)


def _served_cost(trace: Trace, last: np.ndarray, batch_size: int, profile: np.ndarray | None,
                 reference: np.ndarray | None, compact: bool, state_ms: np.ndarray | None,
                 state_rows: Sequence[int] | None) -> float:
    """:func:`served_cost`, unchecked for overflow."""
    if not isinstance(trace, Trace):
        raise TTamerError(f"served_cost prices decisions on a ttamer Trace, got {type(trace).__name__}")
    L, n = trace.n_exits, trace.n_examples
    last = check_integers(last, "last", 0, L - 1, n)
    if len(last) != n:
        raise TTamerError(f"last must hold {n} exits in 0..{L - 1}, got {len(last)}")
    for key in ("cost_profiles", "batch_cost"):
        if key in trace.meta and not isinstance(trace.meta[key], dict):
            raise TTamerError(f"the trace's meta[{key!r}] must be a dict (as EarlyExitServer.run_all records it), "
                              f"got {type(trace.meta[key]).__name__}")
    bs = check_batch_size(batch_size)
    compact = check_bool(compact, "compact")
    if state_ms is not None and bs == 1:
        raise TTamerError("state_ms prices batches; one query at a time a rule's own cost profile does (profile=)")
    batch = np.arange(n) // bs
    # the rule advances the rows still running, also where the batch is kept whole
    extra = 0.0 if state_ms is None else _state_extra(state_ms, state_rows, _alive(batch, last, L), bs)
    if not compact and bs > 1:  # every row of a batch runs to the batch's deepest exit
        starts = np.arange(0, n, bs)
        last = np.repeat(np.maximum.reduceat(last, starts), np.diff(np.r_[starts, n]))
    table = batch_cost_table(trace) if bs > 1 else None
    if profile is not None:
        if bs != 1:
            raise TTamerError("a rule's own cost profile prices one query at a time (batch_size=1)")
        c = check_numbers(profile, "profile", low=0.0)
        if c.shape != (L,):
            raise TTamerError(f"profile must hold {L} costs, got {c.size}")
        if reference is not None:
            ref = check_numbers(reference, "reference", low=0.0)
            if ref.shape != (L,) or not ref.sum() > 0:
                raise TTamerError(f"reference must hold {L} costs >= 0 of positive sum, got {ref.tolist()}")
        elif isinstance(trace.meta.get("cost_profiles"), dict):
            ref = with_cost_profile(trace, 1).cost
        else:
            ref = trace.mean_cost
        return float(np.cumsum(c)[last].mean() / ref.sum())
    alive = _alive(batch, last, L)
    if table is None:
        priced = with_cost_profile(trace, bs) if isinstance(trace.meta.get("cost_profiles"), dict) else trace
        cum = priced.cumulative_cost
        return float((cum[np.arange(n), last].sum() + extra) / (n * priced.full_cost.mean()))
    rows, ms = table
    size = np.bincount(batch).astype(np.float64)
    xp = np.r_[0.0, rows]

    def per_batch(k: np.ndarray) -> np.ndarray:
        """``T_i(k)`` for ``k [B, L]`` rows: the table interpolated, ``T(0) = 0``."""
        out = np.empty_like(k)
        for i in range(L):
            fp = np.r_[0.0, ms[:, i]]
            out[:, i] = np.where(k[:, i] <= rows[-1], np.interp(k[:, i], xp, fp), k[:, i] * ms[-1, i] / rows[-1])
        return out

    paid = per_batch(alive).sum() + extra
    gather = gather_cost_table(trace) if compact else None
    if gather is not None:  # the stops that leave some rows running: k_{b,i+1} in (0, k_{bi})
        nxt = alive[:, 1:][(alive[:, 1:] > 0) & (alive[:, 1:] < alive[:, :-1])]
        paid += np.interp(nxt, xp, np.r_[0.0, gather]).sum()
    return float(paid / per_batch(np.repeat(size[:, None], L, 1)).sum())


def _finite_fraction(value: float) -> float:
    """A priced cost as a float, refused where the costs it was priced with over- or underflow,
    or where a rule's extra state cost (``state_ms``) takes it below 0."""
    with np.errstate(all="ignore"):
        value = float(value)
    if not math.isfinite(value):
        raise TTamerError("the cost tables overflow float64 when summed, or their full cost is 0: give the costs "
                          "in a unit that keeps them within float64 (e.g. ms rather than ns)")
    if value < 0:
        raise TTamerError(f"the priced cost is {value:g} < 0: state_ms takes more than the exits cost (it is a "
                          "rule's extra ms over the max-probability rule's, state_cost's table)")
    return value


def _alive(batch: np.ndarray, last: np.ndarray, L: int) -> np.ndarray:
    """``[B, L]`` rows of each batch that ran exit ``i`` (example ``n`` in batch ``batch[n]``
    ran exits ``0..last[n]``)."""
    alive = np.zeros((batch[-1] + 1, L))
    np.add.at(alive, batch, (np.arange(L)[None, :] <= last[:, None]))
    return alive


def _state_extra(state_ms: np.ndarray, state_rows: Sequence[int] | None, alive: np.ndarray, batch_size: int
                 ) -> float:
    """ms that a rule's costlier state adds over batches whose exits ran on ``alive [B, L]``
    rows: one call per batch and exit with rows running, priced by ``state_ms [K, L]`` at
    ``state_rows`` (:func:`served_cost`)."""
    ks = check_state_rows(state_rows, batch_size, "state_rows")
    st = check_numbers(state_ms, "state_ms", ndim=None)  # beyond another rule's: may be < 0
    if st.shape != (len(ks), alive.shape[1]):
        raise TTamerError(f"state_ms must hold finite ms [{len(ks)}, {alive.shape[1]}] (row counts {ks.tolist()} by "
                          f"exits, state_cost's table), got shape {list(st.shape)}")
    paid = [np.interp(alive[:, i], ks, st[:, i]) for i in range(alive.shape[1])]  # a loop over exits
    return float(np.where(alive > 0, np.stack(paid, axis=1), 0.0).sum())


# --------------------------------------------------------------------------- measuring
def concat_results(parts: Iterable[ServeResult]) -> ServeResult:
    """One :class:`~ttamer.serving.runtime.ServeResult` from results on consecutive chunks of the
    inputs (``parts``: a list of them, or any iterable, e.g. a generator, read once).

    Raises
    ------
    TTamerError
        If ``parts`` is not an iterable of results, is empty, or holds results of other exits
        or classes."""
    if isinstance(parts, ServeResult) or not isinstance(parts, Iterable) or isinstance(parts, (str, bytes)):
        raise TTamerError(f"concat_results joins a list of ServeResult objects (what a run returns), got "
                          f"{escape_text(type(parts).__name__, 60)}")
    parts = list(parts)
    if not parts:
        raise TTamerError("no results to concatenate")
    if not all(isinstance(p, ServeResult) for p in parts):
        bad = next(p for p in parts if not isinstance(p, ServeResult))
        raise TTamerError(f"concat_results joins ServeResult objects (what a run returns), got {type(bad).__name__}")
    if len({p.probs.shape[1:] for p in parts}) > 1:
        raise TTamerError(f"concat_results: the results have different exits or classes "
                          f"({sorted({p.probs.shape[1:] for p in parts})}); they must come from one model")
    cat = lambda k: np.concatenate([getattr(p, k) for p in parts])  # noqa: E731
    timing = {k: float(sum(p.timing.get(k, 0.0) for p in parts)) for k in parts[0].timing}
    return ServeResult(cat("answer"), cat("last"), cat("cost"), consulted=cat("consulted"),
                       prediction=cat("prediction"), states=cat("states"), seconds=float(sum(p.seconds for p in parts)),
                       probs=cat("probs"), batch_size=parts[0].batch_size, timing=timing)


def compare_latency(runs: dict[str, Callable[[Any, int], ServeResult]], inputs: Any, batch_size: int = 1,
                    repeats: int = 2, chunk: int | None = None) -> dict[str, dict[str, Any]]:
    """Time several ways of serving the same inputs, fairly on a shared machine.

    ``runs[name](inputs, batch_size) -> ServeResult`` (e.g. ``server.serve`` or
    ``server.run_full``). The inputs are cut into chunks (``chunk``, default ``batch_size``
    -- one query at a time for ``batch_size=1``) and on every chunk the runs take turns, in an
    order rotated from chunk to chunk, for ``repeats`` rounds; a slow spell of the machine
    therefore hits every run alike. Per run: ``latency`` -- the per-example median over
    rounds (seconds), ``ms_per_example`` -- per chunk the median of its time over rounds,
    summed over the chunks, per example (a spell that slows one chunk in one round and another
    chunk in the next is dropped from both), ``result`` -- the last round's
    :class:`~ttamer.serving.runtime.ServeResult`. The garbage collector is off meanwhile
    (:func:`~ttamer.serving.adapters.no_collection`): a collection of a large process would
    land inside one call and add its pause to that run's mean. ``repeats`` is at most
    :data:`~ttamer.serving.runtime.MAX_REPEATS`.
    """
    n = input_length(inputs)
    if not isinstance(runs, dict) or not all(callable(r) for r in runs.values()):
        raise TTamerError("runs must be a dict of name -> callable (inputs, batch_size) -> ServeResult, "
                          f"got {escape_text(repr(runs), 80)}")
    names = list(runs)
    if not names:
        raise TTamerError("compare_latency needs at least one run")
    repeats = check_repeats(repeats)
    step = check_batch_size(batch_size) if chunk is None else check_batch_size(chunk, "chunk")
    lat: dict[str, list[np.ndarray]] = {k: [] for k in names}
    tot: dict[str, list[list[float]]] = {k: [] for k in names}  # per round, each chunk's seconds
    last: dict[str, ServeResult] = {}
    for _ in range(repeats):
        parts: dict[str, list[ServeResult]] = {k: [] for k in names}
        with no_collection():
            for c, s in enumerate(range(0, n, step)):
                x = input_slice(inputs, s, s + step)
                for j in range(len(names)):
                    k = names[(j + c) % len(names)]
                    parts[k].append(runs[k](x, batch_size))
        for k in names:
            res = concat_results(parts[k])
            lat[k].append(res.latency)
            tot[k].append([p.seconds for p in parts[k]])
            last[k] = res
    return {k: {"latency": np.median(np.stack(lat[k]), axis=0),
                "ms_per_example": 1e3 * float(np.median(np.array(tot[k]), axis=0).sum()) / n, "result": last[k]}
            for k in names}
