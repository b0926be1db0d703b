"""Measuring the serving runtime: latency compared fairly, and traces priced per serving mode.

:func:`compare_latency` times several ways of serving the same inputs in turns, chunk by chunk;
:func:`with_cost_profile` prices a trace in the serving mode it will be served in (the per-exit
cost profiles the runtime records). See the book's chapter *Serving* (:doc:`/serving`).
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

from ..core.errors import TTamerError
from ..earlyexit.traces import Trace
from .adapters import input_length, input_slice
from .runtime import ServeResult

#: Serving modes whose per-exit cost profiles a trace recorded by the runtime keeps.
COST_PROFILES = ("batch1", "batched")


def with_cost_profile(trace: Trace, mode: str | int) -> Trace:
    """``trace`` priced in a serving mode: its ``cost`` replaced by
    ``meta["cost_profiles"][mode]`` (recorded by :meth:`~ttamer.serving.runtime.EarlyExitServer.run_all`); ``mode`` is
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




# --------------------------------------------------------------------------- measuring
def concat_results(parts: Sequence[ServeResult]) -> ServeResult:
    """One :class:`~ttamer.serving.runtime.ServeResult` from results on consecutive chunks of the inputs."""
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
    ``result`` -- the last round's :class:`~ttamer.serving.runtime.ServeResult`.
    """
    n = input_length(inputs)
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
            x = input_slice(inputs, s, s + step)
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
