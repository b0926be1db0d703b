"""Accuracy–cost frontiers and the metrics of the book's chapter *Early exit on real models*.

Every strategy is a sweep of points ``(cost, accuracy)`` measured on the **test** examples:
``cost`` is the mean cost per example as a fraction of the full model's mean cost,
``accuracy`` the share of examples whose answer is right (``target="label"``: the true class;
``"final"``: agreement with the full model). The **frontier** of a sweep is its Pareto
(upper-left) staircase: the points not dominated by a cheaper-or-equal, at-least-as-accurate
point, sorted by cost. ``acc(c)`` = best accuracy of a point of cost ``≤ c`` (undefined below
the cheapest point). With ``frontier_kind="hull"`` every strategy may also randomise between
two of its sweep points (the book's chapter *The frontier*): the frontier is then the concave envelope and ``acc(c)``
interpolates linearly between its vertices. Metrics, per strategy:

* ``auc`` -- ``(1/(hi−lo)) ∫_lo^hi acc(c) dc`` over the common range ``[lo, hi]``: ``lo`` =
  the largest of the strategies' cheapest costs (usually exit 0 alone), ``hi = 1`` (the
  full model); accuracy counts 0 where a frontier is undefined;
* ``cost_at_full_accuracy`` -- least cost of a frontier point at least as accurate as the
  full model (and at 0.5 and 1 point below it); ``None`` if never reached;
  ``cost_saved_at_full_accuracy`` = 1 − that;
* ``accuracy_at_cost`` -- ``acc(c)`` at 25 / 50 / 75 % of the full cost;
* ``oracle_gain_share`` -- cost saved at the full model's accuracy divided by the oracle's
  (the hindsight frontier :func:`~ttamer.earlyexit.baselines.oracle_frontier`, which no strategy
  beats); ``None`` if not reached;
* ``band`` -- pointwise 95 % bootstrap band of ``acc(c)`` on a cost grid: test examples
  resampled with replacement (``n_boot`` times, all sweep points at once by a multinomial
  weight matrix), policies held fixed;
* ``auc_ci`` -- 95 % bootstrap interval of the AUC (trapezoid on the band's grid), and
  ``auc_minus_ttamer_ci`` -- (2.5 %, 50 %, 97.5 %) quantiles of this strategy's AUC minus
  T-Tamer's over the *same* resamples (paired): an interval above 0 means the strategy beats
  T-Tamer beyond test-set noise; ``cost_at_full_minus_ttamer_ci`` -- the same quantiles of this
  strategy's cost at the full model's accuracy minus T-Tamer's, the full model's accuracy read
  on each resample (an interval below 0 means the strategy is cheaper beyond test-set noise;
  a bound is infinite where, on that share of the resamples, only one of the two reaches it).

For the research question of the early-exit chapters (does T-Tamer's frontier dominate every heuristic?):
:func:`domination_summary` (per heuristic: AUC gap with its paired interval, cost gap at the
full model's accuracy, pointwise domination), :func:`ablation` (a tidy table of T-Tamer
configurations on one split) and :func:`markov_diagnostics` (how far the calibration data
are from the Markov chain T-Tamer assumes, against a Markov resample of the same size).
"""

from __future__ import annotations

import math
import time
from functools import partial
from typing import Any, Callable, Sequence

import numpy as np
from tqdm import tqdm

from . import baselines
from .base import check_trace
from .calibration import EarlyExitTamer
from ..core.errors import TTamerError
from ..core.validate import (MIN_SPLIT_EXAMPLES, check_bool, check_count, check_int, check_numbers, check_real,
                             check_seed, describe_value, escape_text, short_repr)
from ..core.parallel import available_memory, map_processes
from .pathwise import PathwiseTamer
from .results import Band, EvaluationResult, FullModelSummary, SplitSummary, StrategyResult, TraceSummary
from .traces import META_DEFAULTS, ExitDecisions, Trace, target_labels
from . import heuristics
from .slo import CONFIDENCE, check_confidence, slo_block
from .tamer import ThresholdTamer, with_full_model
from .crossval import check_lams
from .metrics import accuracy_at, check_kind, cost_at_accuracy, frontier, frontier_auc, hull_frontier  # noqa: F401

#: Names of the strategies :func:`evaluate_trace` reports, in order (``"ttamer-chain"``, the
#: paper's estimation, unless ``estimation="chain"``).
STRATEGIES = ("ttamer", "no-recall", "ttamer-chain", "max-prob", "max-prob-sdn", "entropy", "patience", "static",
              "oracle")
ACCURACY_DROPS = {"cost_at_full_accuracy": 0.0, "cost_at_full_accuracy_minus_0.5pt": 0.005,
                  "cost_at_full_accuracy_minus_1pt": 0.01}
COST_FRACTIONS = (0.25, 0.5, 0.75)
_EPS = 1e-12


#: The bootstrap draws its resampling counts and resamples every strategy in chunks of at most
#: this many entries (replicates x test examples, and replicates x sweep points x cost grid),
#: so that its memory does not grow with ``n_boot``.
BOOTSTRAP_CHUNK_CELLS = 20_000_000
#: :func:`evaluate_trace` refuses more resampled examples than this (replicates x test
#: examples) before any work starts: the bootstrap's time grows with their number.
MAX_BOOTSTRAP_DRAWS = 2_000_000_000
#: :func:`evaluate_trace` refuses bootstrap curves of more cells than this (replicates x points
#: of the cost grid x strategies; 8 bytes each) before any work starts: every strategy's
#: replicated curves are held at once for the paired intervals.
MAX_BOOTSTRAP_CURVE_CELLS = 40_000_000
#: :func:`evaluate_trace` refuses, for hull frontiers, more bootstrap envelopes than this
#: (replicates x strategies) before any work starts: each is built point by point in Python,
#: about a millisecond on a sweep of a few thousand rules.
MAX_BOOTSTRAP_HULLS = 100_000


def check_bootstrap(n_boot: Any, n_test: int, name: str = "n_boot", band_points: int = 41, kind: str = "pareto",
                    n_strategies: int = len(STRATEGIES)) -> int:
    """``n_boot`` as a count of replicates whose ``n_boot x n_test`` resampled examples are at
    most :data:`MAX_BOOTSTRAP_DRAWS`, whose curves on ``band_points`` costs, for
    ``n_strategies`` strategies (every one of :data:`STRATEGIES` by default), hold at most
    :data:`MAX_BOOTSTRAP_CURVE_CELLS` numbers, and, for ``kind="hull"`` frontiers (one envelope
    built per replicate and strategy), whose envelopes are at most
    :data:`MAX_BOOTSTRAP_HULLS` (the error names the option ``name``)."""
    n_boot = check_count(n_boot, name, minimum=0)
    if n_boot * n_test > MAX_BOOTSTRAP_DRAWS:
        raise TTamerError(f"{name} {n_boot:,} replicates of {n_test:,} test examples resample {n_boot * n_test:,} "
                          f"examples, above MAX_BOOTSTRAP_DRAWS={MAX_BOOTSTRAP_DRAWS:,}; use at most "
                          f"{MAX_BOOTSTRAP_DRAWS // max(n_test, 1):,} replicates")
    per_replicate = int(band_points) * int(n_strategies)
    if n_boot * per_replicate > MAX_BOOTSTRAP_CURVE_CELLS:
        raise TTamerError(f"{name} {n_boot:,} replicates of curves on {int(band_points)} costs for "
                          f"{int(n_strategies)} strategies hold {n_boot * per_replicate:,} numbers, above "
                          f"MAX_BOOTSTRAP_CURVE_CELLS={MAX_BOOTSTRAP_CURVE_CELLS:,}; use at most "
                          f"{MAX_BOOTSTRAP_CURVE_CELLS // per_replicate:,} replicates (or fewer band points)")
    if kind == "hull" and n_boot * int(n_strategies) > MAX_BOOTSTRAP_HULLS:
        raise TTamerError(f"{name} {n_boot:,} replicates of hull frontiers for {int(n_strategies)} strategies build "
                          f"{n_boot * int(n_strategies):,} envelopes, above MAX_BOOTSTRAP_HULLS="
                          f"{MAX_BOOTSTRAP_HULLS:,}; use at most {MAX_BOOTSTRAP_HULLS // int(n_strategies):,} "
                          "replicates (or Pareto frontiers)")
    return n_boot


#: :func:`evaluation_bytes`, measured with ``ttamer evaluate`` on synthetic traces of 10³ to
#: 10⁶ examples, 3 to 12 exits and 2 to 1,000 classes, rounded up: the interpreter and its
#: libraries; the sweeps and bootstrap chunks, which grow with the examples up to their caps
#: (:data:`~ttamer.earlyexit.heuristics.MAX_SWEEP_CELLS`, :data:`BOOTSTRAP_CHUNK_CELLS`); and
#: the per-example arrays, per exit and per exit and class.
EVALUATE_BYTES = {"base": 300 * 2**20, "capped": 1600 * 2**20, "per_example": 45_000, "per_exit": 160,
                  "per_probability": 24}
#: :func:`check_evaluation_memory` lets an evaluation estimated below this many bytes run
#: whatever the free memory, so that small work never depends on what else the machine runs.
EVALUATE_FREE_BYTES = 2**30


def evaluation_bytes(n_examples: int, n_exits: int, n_classes: int) -> int:
    r"""The peak memory of :func:`evaluate_trace` on a trace of this shape, about and from
    above (:data:`EVALUATE_BYTES`):

    .. math::

       b_0 + \min(b_{\mathrm{cap}},\ b_e N) + N L\,(b_L + b_K K)

    for :math:`N` examples, :math:`L` exits and :math:`K` classes."""
    b = EVALUATE_BYTES
    capped = min(b["capped"], b["per_example"] * n_examples)
    return int(b["base"] + capped + n_examples * n_exits * (b["per_exit"] + b["per_probability"] * n_classes))


def _most_examples(available: int, n_exits: int, n_classes: int) -> int:
    """The most examples whose :func:`evaluation_bytes` fit in ``available``, to two significant
    digits (rounded down)."""
    lo, hi = 0, 2**40
    while lo < hi:  # bisection: evaluation_bytes grows with the examples
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if evaluation_bytes(mid, n_exits, n_classes) <= available else (lo, mid - 1)
    step = 10 ** max(len(str(lo)) - 2, 0)
    return lo // step * step


def check_evaluation_memory(trace: Trace, available: int | None = None) -> int:
    """Refuse, before any work, a trace whose evaluation needs more memory than is free.

    ``available`` bytes (default :func:`~ttamer.core.parallel.available_memory`; no check
    where the system does not tell it) against :func:`evaluation_bytes`; an evaluation
    estimated below :data:`EVALUATE_FREE_BYTES` always runs. Returns the estimate; the error
    says how many examples would fit; ``available``, where given, must be an integer ``>= 0``."""
    need = evaluation_bytes(trace.n_examples, trace.n_exits, trace.n_classes)
    if available is None:
        available = available_memory()
    else:
        available = check_int(available, "available (bytes of free memory)", minimum=0)
    if available is None or need <= max(available, EVALUATE_FREE_BYTES):
        return need
    fits = _most_examples(available, trace.n_exits, trace.n_classes)
    hint = (f"evaluate a seeded sample of at most {fits:,} of its examples (ttamer evaluate --max-examples N; "
            f"in Python, trace.sample(N, seed))" if fits >= 2 * MIN_SPLIT_EXAMPLES
            else "free some memory, or use a machine with more")
    raise TTamerError(f"evaluating {trace.n_examples:,} examples x {trace.n_exits} exits x {trace.n_classes} classes "
                      f"needs about {need / 2**30:.1f} GiB of memory, more than the {available / 2**30:.1f} GiB "
                      f"free; {hint}")


def bootstrap_weights(n: int, n_boot: int, seed: int | np.random.Generator = 0) -> np.ndarray:
    """``[B, N]`` resampling counts ``~ Multinomial(N, 1/N)`` of ``n_boot`` bootstrap replicates
    of ``n`` examples, drawn from ``seed`` alone, or the next ones of a generator (float32:
    counts are exact integers).

    Raises
    ------
    TTamerError
        Unless ``n`` is a count of at most :data:`MAX_BOOTSTRAP_DRAWS` examples, ``n_boot`` a
        count of replicates whose ``n_boot x n`` counts are at most
        :data:`BOOTSTRAP_CHUNK_CELLS` (one replicate is always allowed) and ``seed`` a seed or
        a generator (checked before anything is drawn).
    """
    n = check_count(n, "n (examples to resample)", maximum=MAX_BOOTSTRAP_DRAWS)
    n_boot = check_count(n_boot, "n_boot")
    most = max(1, BOOTSTRAP_CHUNK_CELLS // n)
    if n_boot > most:
        raise TTamerError(f"bootstrap_weights: {n_boot:,} replicates of {n:,} examples are {n_boot * n:,} counts, "
                          f"above BOOTSTRAP_CHUNK_CELLS={BOOTSTRAP_CHUNK_CELLS:,}; draw at most {most:,} "
                          "replicates at a time (the next ones from the same numpy.random.Generator)")
    rng = np.random.default_rng(check_seed(seed, allow_generator=True))
    return rng.multinomial(n, np.full(n, 1.0 / n), size=n_boot).astype(np.float32)


#: :func:`weighted_sums` goes through the changes between consecutive sweep points when they
#: are at most this share of the entries (a sweep whose neighbouring rules differ on few examples).
SPARSE_SHARE = 0.05


def weighted_sums(counts: np.ndarray, values: np.ndarray) -> np.ndarray:
    """``[B, P]`` = ``counts [B, N] @ values[P, N].T``. Neighbouring points of a sweep differ
    on few examples, so the product is taken on the sparse differences between consecutive rows
    of ``values`` and summed back along the sweep when they are few
    (:data:`SPARSE_SHARE`), and directly otherwise."""
    import scipy.sparse as sp

    P, n = values.shape
    diffs = np.diff(values, axis=0, prepend=np.zeros((1, n), dtype=values.dtype))
    nnz = np.count_nonzero(diffs)
    if nnz > SPARSE_SHARE * P * n:
        return counts.astype(values.dtype if values.dtype == np.float32 else float) @ values.T
    return np.cumsum(sp.csr_matrix(diffs) @ counts.T.astype(float), axis=0).T


def _resampled_points(correct: np.ndarray, cost: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(cost_b, acc_b)``, each ``[B, P]``: a sweep's points on ``B`` resamples of its
    examples -- ``cost_b = W·cost/N`` and ``acc_b = W·correct/N`` for the resampling counts
    ``W = counts [B, N]`` and the sweep's per-example outcomes ``correct [P, N]`` (bool) and
    ``cost [P, N]`` (fractions of the full cost)."""
    n = correct.shape[1]
    acc_b = weighted_sums(counts, correct.astype(np.float32)).astype(float) / n  # integer sums, exact
    return weighted_sums(counts, np.asarray(cost, dtype=float)) / n, acc_b


def _replicate_metrics(cost_b: np.ndarray, acc_b: np.ndarray, grid: np.ndarray, level_b: np.ndarray | None,
                       kind: str) -> tuple[np.ndarray, np.ndarray | None]:
    """``(curves [B, G], costs [B])`` of the replicates' points: ``acc_b(c)`` on ``grid``
    (``nan`` where a replicate's frontier is undefined) and, for levels ``level_b [B]``, the least
    cost whose ``acc_b(c) ≥ level_b`` (``inf`` where it is never reached; ``None`` without
    levels). A hull frontier is built once per replicate for both."""
    if kind == "hull":  # a loop over replicates (not examples): the envelope of each, once
        hulls = [hull_frontier(cb, ab) for cb, ab in zip(cost_b, acc_b)]
        curves = np.stack([accuracy_at(h, grid, "hull") for h in hulls])
        if level_b is None:
            return curves, None
        found = (cost_at_accuracy(h, float(lv), "hull") for h, lv in zip(hulls, level_b))
        return curves, np.array([np.inf if c is None else c for c in found], dtype=float)
    ok = cost_b[:, :, None] <= np.asarray(grid)[None, None, :] + _EPS  # [B, P, G]
    curves = np.where(ok, acc_b[:, :, None], -np.inf).max(axis=1)  # [B, G]
    curves[np.isinf(curves)] = np.nan
    if level_b is None:
        return curves, None
    reached = acc_b >= np.asarray(level_b)[:, None] - _EPS
    return curves, np.where(reached, cost_b, np.inf).min(axis=1)


def bootstrap_curves(correct: np.ndarray, cost: np.ndarray, grid: np.ndarray, n_boot: int = 200,
                     seed: int = 0, kind: str = "pareto", counts: np.ndarray | None = None) -> np.ndarray:
    """``[B, G]``: ``acc_b(c)`` on ``grid`` for ``n_boot`` resamplings of the examples.

    ``correct [P, N]`` (bool) and ``cost [P, N]`` (already fractions of the full cost) are
    the sweep's per-example outcomes. Resampling counts ``W [B, N]`` ~ Multinomial(N, 1/N)
    (:func:`bootstrap_weights`, drawn from ``seed`` alone unless given as ``counts``, so two
    strategies with the same seed see the same resamples: a paired bootstrap); per replicate
    the sweep points are ``(W·cost/N, W·correct/N)``. ``nan`` where a replicate's frontier is
    undefined. Policies are held fixed.

    Raises
    ------
    TTamerError
        For a ``kind`` not in :data:`~ttamer.earlyexit.metrics.KINDS`, and the errors of
        :func:`bootstrap_weights`.
    """
    kind = check_kind(kind)
    W = bootstrap_weights(correct.shape[1], n_boot, seed) if counts is None else counts
    return _replicate_metrics(*_resampled_points(correct, cost, W), grid, None, kind)[0]


def check_paired_inputs(pts: Any, full_correct: Any, grid: Any) -> tuple[dict[str, dict[str, np.ndarray]], np.ndarray,
                                                                          np.ndarray]:
    """``(pts, full_correct, grid)`` of :func:`paired_bootstrap` as arrays, if ``pts`` is a
    non-empty dict of strategy name -> ``{"correct": bool [P, N], "cost_ex": [P, N]}`` (``P ≥ 1``
    rules, costs finite and ``≥ 0``), ``full_correct`` a bool array ``[N]`` (the same ``N ≥ 1``
    test examples) and ``grid`` a non-empty 1-D array of finite costs.

    Raises
    ------
    TTamerError
        Naming the strategy and the field at fault, for anything else.
    """
    if not (isinstance(full_correct, np.ndarray) and full_correct.dtype == bool and full_correct.ndim == 1
            and len(full_correct)):
        raise TTamerError(f"full_correct must be a non-empty 1-D bool array (whether the full model is right on "
                          f"each test example), got {describe_value(full_correct)}")
    n = len(full_correct)
    if not isinstance(pts, dict) or not pts:
        raise TTamerError(f"pts must be a non-empty dict of strategy name -> sweep_points(...), got {short_repr(pts)}")
    out = {}
    for name, p in pts.items():
        who = f"pts[{short_repr(name)}]"
        if not isinstance(p, dict) or "correct" not in p or "cost_ex" not in p:
            raise TTamerError(f"{who} must be a dict with 'correct' and 'cost_ex' (sweep_points(..., "
                              f"per_example=True)), got {short_repr(p)}")
        correct = p["correct"]
        if not (isinstance(correct, np.ndarray) and correct.dtype == bool and correct.ndim == 2
                and correct.shape[0] >= 1 and correct.shape[1] == n):
            raise TTamerError(f"{who}['correct'] must be a bool array [rules, {n:,}] (one column per test example "
                              f"of full_correct), got {describe_value(correct)}")
        cost = check_numbers(p["cost_ex"], f"{who}['cost_ex']", ndim=2, low=0.0)
        if cost.shape != correct.shape:
            raise TTamerError(f"{who}['cost_ex'] has shape {cost.shape}, its 'correct' {correct.shape}: one cost "
                              "per rule and test example")
        out[name] = {"correct": correct, "cost_ex": cost}
    return out, full_correct, check_numbers(grid, "grid")


def paired_bootstrap(pts: dict[str, dict[str, np.ndarray]], full_correct: np.ndarray, grid: np.ndarray,
                     n_boot: int, seed: int, kind: str = "pareto") -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    r"""Every strategy of ``pts`` (its ``correct`` and ``cost_ex``, :func:`sweep_points`) on the
    same resamples of the test examples, drawn from ``seed`` in chunks of replicates
    (:data:`BOOTSTRAP_CHUNK_CELLS`: the counts of one chunk are drawn, every strategy is
    resampled by them, and the next chunk continues the same random stream -- the replicates
    of one draw of all ``n_boot``, in a bounded memory).

    Returns two dicts by strategy: the curves ``[B, G]`` of :func:`bootstrap_curves`, and
    ``[B]`` the cost at the full model's accuracy of each replicate
    (:func:`~ttamer.earlyexit.metrics.cost_at_accuracy` on the replicate's frontier, ``inf``
    where it is never reached), the full model's accuracy :math:`\bar y_b = W_b \cdot y / N`
    read on the same replicate from ``full_correct [N]`` (whether the full model is right on
    each test example), so that both sides of the comparison move together.

    Raises
    ------
    TTamerError
        For inputs :func:`check_paired_inputs` refuses, an ``n_boot`` that is not a count
        :func:`check_bootstrap` allows for these strategies and this ``grid`` (at least 1), a
        ``seed`` that is not a seed, or a ``kind`` not in :data:`~ttamer.earlyexit.metrics.KINDS`
        -- all before anything is drawn.
    """
    pts, full_correct, grid = check_paired_inputs(pts, full_correct, grid)
    n = len(full_correct)
    kind = check_kind(kind)
    n_boot = check_bootstrap(n_boot, n, band_points=len(grid), kind=kind, n_strategies=len(pts))
    if n_boot < 1:
        raise TTamerError("n_boot must be at least 1 replicate, got 0")
    rng = np.random.default_rng(check_seed(seed))
    points = max(len(p["correct"]) for p in pts.values())  # a replicate's frontier is [points, grid]
    step = max(1, min(BOOTSTRAP_CHUNK_CELLS // n, BOOTSTRAP_CHUNK_CELLS // (points * len(grid))))
    curves: dict[str, list[np.ndarray]] = {name: [] for name in pts}
    costs: dict[str, list[np.ndarray]] = {name: [] for name in pts}
    for start in range(0, n_boot, step):  # a loop over chunks of replicates
        counts = bootstrap_weights(n, min(step, n_boot - start), rng)
        level = weighted_sums(counts, full_correct.astype(np.float32)[None]).astype(float)[:, 0] / n
        for name, p in pts.items():
            c, k = _replicate_metrics(*_resampled_points(p["correct"], p["cost_ex"], counts), grid, level, kind)
            curves[name].append(c)
            costs[name].append(k)
    return ({name: np.concatenate(c) for name, c in curves.items()},
            {name: np.concatenate(c) for name, c in costs.items()})


def paired_quantiles(a: np.ndarray, b: np.ndarray) -> tuple[float, float, float] | None:
    """The 2.5, 50 and 97.5 % quantiles of the paired bootstrap differences ``a − b`` of two
    strategies' costs at an accuracy level (``[B]`` each, the replicates of :func:`paired_bootstrap`:
    ``inf`` where a replicate never reaches it), over the replicates where at least one of them
    reaches it (the difference is ``±inf`` where only one does). Each quantile is an order
    statistic (numpy's ``inverted_cdf``), so that the infinite differences count without being
    interpolated; a difference within ``1e-12`` of zero (the same rule, summed in another order)
    counts as zero. ``None`` if no replicate is left.

    Raises
    ------
    TTamerError
        For ``a`` or ``b`` that is not a non-empty 1-D array of numbers ``≥ 0`` or ``inf`` (no
        ``nan``), or for two of different lengths.
    """
    a = check_numbers(a, "a (costs of the replicates)", low=0.0, infinite=True)
    b = check_numbers(b, "b (costs of the replicates)", low=0.0, infinite=True)
    if len(a) != len(b):
        raise TTamerError(f"a has {len(a):,} replicates, b {len(b):,}: paired differences need the same resamples")
    with np.errstate(invalid="ignore"):  # inf − inf: neither reaches the level, left out
        diff = a - b
    diff = diff[~np.isnan(diff)]
    if not len(diff):
        return None
    diff[np.abs(diff) < _EPS] = 0.0
    return tuple(float(np.quantile(diff, q, method="inverted_cdf")) for q in (0.025, 0.5, 0.975))


def _quantiles(x: np.ndarray, qs: Sequence[float]) -> list[np.ndarray]:
    """Column-wise ``nanquantile`` of ``x [B, G]``; ``nan`` for all-``nan`` columns."""
    out = [np.full(x.shape[1], np.nan) for _ in qs]
    cols = np.isfinite(x).any(axis=0)
    if cols.any():
        for o, q in zip(out, qs):
            o[cols] = np.nanquantile(x[:, cols], q, axis=0)
    return out


def bootstrap_band(correct: np.ndarray, cost: np.ndarray, grid: np.ndarray, n_boot: int = 200,
                   seed: int = 0, level: float = 0.95, kind: str = "pareto") -> tuple[np.ndarray, np.ndarray]:
    """Pointwise ``level`` band (lower, upper) of ``acc(c)`` on ``grid`` (see
    :func:`bootstrap_curves`); ``nan`` where undefined.

    Raises
    ------
    TTamerError
        For a ``level`` that is not a number strictly between 0 and 1 (checked before any
        resampling), and the errors of :func:`bootstrap_curves`.
    """
    level = check_real(level, "bootstrap_band: level (of the band)", low=0.0, high=1.0, low_open=True, high_open=True)
    alpha = (1.0 - level) / 2
    lower, upper = _quantiles(bootstrap_curves(correct, cost, grid, n_boot, seed, kind), (alpha, 1 - alpha))
    return lower, upper


def grid_auc(curves: np.ndarray) -> np.ndarray:
    """Normalised area under curves sampled on a uniform grid (trapezoid; ``nan`` counts 0).

    Raises
    ------
    TTamerError
        For ``curves`` that are not a numeric array ``[..., G]`` of at least 2 grid points
        (a trapezoid needs two).
    """
    if not (isinstance(curves, np.ndarray) and curves.ndim >= 1 and curves.shape[-1] >= 2
            and curves.dtype.kind in "iuf"):
        raise TTamerError(f"grid_auc: curves must be a numeric array [..., G] sampled on at least 2 grid points, "
                          f"got {describe_value(curves)}")
    c = np.nan_to_num(curves, nan=0.0)
    return ((c[..., 1:] + c[..., :-1]) / 2).mean(axis=-1)


# ---------------------------------------------------------------------------------------------
def sweep_points(decisions: ExitDecisions, trace: Trace, target: str = "label", per_example: bool = True
                 ) -> dict[str, np.ndarray]:
    """The points of a sweep, ``cost``/``accuracy`` ``[P]`` (cost as a fraction of the full
    model's mean cost), and with ``per_example`` the outcomes they average, ``correct [P, N]``
    and ``cost_ex [P, N]`` (what the bootstrap resamples)."""
    d = decisions
    correct = d.correct(trace, target)
    cost = d.cost / trace.full_cost.mean()
    if not d.is_sweep:
        correct, cost = correct[None], cost[None]
    out = {"cost": cost.mean(axis=1), "accuracy": correct.mean(axis=1)}
    if per_example:
        out |= {"correct": correct, "cost_ex": cost}
    return out


def strategy_metrics(front: np.ndarray, full_accuracy: float, cost_range: tuple[float, float],
                     oracle_saving: float | None = None, kind: str = "pareto") -> dict[str, Any]:
    """The scalar metrics of one frontier (module docstring)."""
    out: dict[str, Any] = {"auc": frontier_auc(front, *cost_range, kind=kind)}
    for key, drop in ACCURACY_DROPS.items():  # a level below 0 (a full model under 1 %): any point meets it
        out[key] = cost_at_accuracy(front, max(full_accuracy - drop, 0.0), kind)
    c = out["cost_at_full_accuracy"]
    out["cost_saved_at_full_accuracy"] = None if c is None else 1.0 - c
    acc = accuracy_at(front, np.array(COST_FRACTIONS), kind)
    out["accuracy_at_cost"] = {f"{f:g}": (None if np.isnan(a) else float(a)) for f, a in zip(COST_FRACTIONS, acc)}
    saved = out["cost_saved_at_full_accuracy"]
    out["oracle_gain_share"] = (None if saved is None or not oracle_saving or oracle_saving <= 0
                                else saved / oracle_saving)
    return out


#: How T-Tamer's rule is estimated, by threshold rules on calibration paths (the default,
#: :class:`~ttamer.earlyexit.tamer.ThresholdTamer`), a least-squares regression of the
#: continuation value (:class:`~ttamer.earlyexit.pathwise.PathwiseTamer`), or the paper's binned Markov
#: chain (:class:`~ttamer.earlyexit.calibration.EarlyExitTamer`).
ESTIMATIONS = ("thresholds", "regression", "chain")


def _chain_info(tamer: EarlyExitTamer) -> dict[str, Any]:
    spec = tamer.spec_
    return {"estimation": "chain", "description": tamer.describe(), "state": spec.describe(), "K": int(spec.K),
            "agreement": int(spec.agreement), "feature": spec.feature, "entropy_bins": int(spec.entropy_bins),
            "smoothing": tamer.smoothing_, "loss": tamer.loss_, "monotone": tamer.monotone_,
            "answer_rule": tamer.answer_, "n_states": tamer.instance_.n_states.tolist(),
            "cv": [{"candidate": c.describe(), "auc": sc} for c, sc in tamer.cv_scores_]}


def _regression_info(tamer: PathwiseTamer) -> dict[str, Any]:
    c = tamer.candidate_
    return {"estimation": "regression", "description": tamer.describe(), "feature": c.feature, "loss": c.loss,
            "answer_rule": c.answer, "degree": int(tamer.degree),
            "cv": [{"candidate": k.describe(), "auc": sc} for k, sc in tamer.cv_scores_]}


def _thresholds_info(rec: ThresholdTamer, norec: ThresholdTamer) -> dict[str, Any]:
    return {"estimation": "thresholds", "description": rec.describe(), "policy": rec.candidate_.key,
            "recall": rec.candidate_.recall, "loss": rec.target, "no_recall_policy": norec.candidate_.key,
            "cv": rec.cv_scores_}


def estimator_options(opts: Any, cls: type, name: str) -> dict[str, Any]:
    """``opts`` (``None``: none) as a dict of options of estimator ``cls``; a
    :class:`~ttamer.core.errors.TTamerError` naming the argument ``name`` and the options ``cls``
    has otherwise. ``recall`` is not an option here: both strategies, with and without recall,
    are fitted."""
    if opts is None:
        return {}
    if not isinstance(opts, dict):
        raise TTamerError(f"{name} must be a dict of {cls.__name__} options, got {type(opts).__name__}")
    known = [p for p in cls._param_names() if p != "recall"]
    unknown = [k for k in opts if k not in known]
    if unknown:
        raise TTamerError(f"{name}: {cls.__name__} has no option {escape_text(repr(unknown[0]), 60)} "
                          f"(recall is not one here: both strategies are fitted); its options: {', '.join(known)}")
    return dict(opts)


def fit_tamers(calibration: Trace, target: str = "label", estimation: str = "thresholds",
               thresholds: dict | None = None, pathwise: dict | None = None,
               tamer: dict | None = None, with_chain: bool = True) -> tuple[dict[str, Any], dict[str, Any]]:
    """T-Tamer with and without recall fitted on ``calibration`` (``{"ttamer": ...,
    "no-recall": ...}``, plus ``"ttamer-chain"``, the paper's estimation, if ``with_chain`` and
    ``estimation`` is not ``"chain"`` itself; where the chain cannot be fitted -- too few
    calibration examples for its cross-validation -- it is left out and
    ``info["chain"]["skipped"]`` says why), and a JSON-ready description of the fit. Options
    per estimator:
    ``thresholds`` (:class:`~ttamer.earlyexit.tamer.ThresholdTamer`), ``pathwise``
    (:class:`~ttamer.earlyexit.pathwise.PathwiseTamer`), ``tamer`` (:class:`~ttamer.earlyexit.calibration.EarlyExitTamer`)."""
    if estimation not in ESTIMATIONS:
        raise TTamerError(f"estimation must be one of {ESTIMATIONS}, got {estimation!r}")
    thresholds, pathwise, tamer = (estimator_options(opts, cls, name) for opts, cls, name in (
        (thresholds, ThresholdTamer, "thresholds"), (pathwise, PathwiseTamer, "pathwise"),
        (tamer, EarlyExitTamer, "tamer")))
    for opts, name in ((thresholds, "thresholds"), (pathwise, "pathwise"), (tamer, "tamer")):
        if "target" in opts and opts["target"] != target:
            raise TTamerError(f"{name}: target {escape_text(repr(opts['target']), 40)} differs from the evaluation's "
                              f"target {target!r}; every strategy is judged against one target: give it once, as "
                              "target= (ttamer evaluate --target)")
    opts = dict(tamer, target=target) if "target" not in tamer else dict(tamer)
    chain, skipped = None, None
    paper = EarlyExitTamer(recall=True, **opts)
    paper._validated()  # bad options are an error, not a reason to skip the chain
    if estimation == "chain":
        chain = paper.fit(calibration)
    elif with_chain:
        try:
            chain = paper.fit(calibration)
        except TTamerError as exc:  # e.g. too few calibration examples for its cross-validation
            skipped = {"estimation": "chain", "skipped": str(exc)}
    if estimation == "chain":
        spec = chain.spec_
        nr_opts = dict(opts, K=spec.K, feature=spec.feature, agreement=spec.agreement,
                       entropy_bins=spec.entropy_bins, prospect_bins=spec.prospect_bins,
                       smoothing=chain.smoothing_, loss=chain.loss_, monotone=chain.monotone_)
        return ({"ttamer": chain, "no-recall": EarlyExitTamer(recall=False, **nr_opts).fit(calibration)},
                _chain_info(chain))
    if estimation == "regression":
        pw = dict(pathwise)
        pw.setdefault("target", target)
        rec = PathwiseTamer(recall=True, **pw).fit(calibration)
        nr_opts = dict(pw, feature=rec.candidate_.feature, loss=rec.candidate_.loss)
        norec = PathwiseTamer(recall=False, **nr_opts).fit(calibration)
        out, info = {"ttamer": rec, "no-recall": norec}, _regression_info(rec)
        if chain is not None:
            out["ttamer-chain"], info["chain"] = chain, _chain_info(chain)
        return out, info
    th = dict(thresholds)
    th.setdefault("target", target)
    rec = ThresholdTamer(recall=True, **th).fit(calibration)
    norec = rec.without_recall(calibration)
    out, info = {"ttamer": rec, "no-recall": norec}, _thresholds_info(rec, norec)
    if chain is not None:
        out["ttamer-chain"], info["chain"] = chain, _chain_info(chain)
    elif skipped:
        info["chain"] = skipped
    return out, info


def strategy_sweeps(test: Trace, tamers: dict[str, Any], lams: Sequence[float] | None = None,
                    target: str = "label") -> dict[str, Callable[[], ExitDecisions]]:
    """Per strategy, a function that sweeps it on the test examples (called one at a time, so
    that only one strategy's decisions ``[P, N]`` are held at once).

    The fitted T-Tamer estimators ``tamers`` (:func:`fit_tamers`) are swept on ``test``
    (``lams`` applies to the chain and regression estimations; the threshold estimation sweeps
    its budgets, or, for its one-threshold class, every threshold like a heuristic:
    :meth:`~ttamer.earlyexit.tamer.ThresholdTamer.frontier_sweep`), each followed by the full
    model (every exit, answering with the last), an operating point of every strategy. Each
    heuristic is swept completely on ``test`` (:func:`~ttamer.earlyexit.heuristics.complete_sweep`,
    which keeps the rules on the test frontier), then the full model too, so that a bootstrap
    resample of the test examples finds it there as it finds T-Tamer's; ``static``
    every exit; ``oracle`` the hindsight bound (:data:`~ttamer.earlyexit.baselines.ORACLE_POINTS`
    points, fewer where they would hold more than
    :data:`~ttamer.earlyexit.heuristics.MAX_SWEEP_CELLS` decisions).

    Raises
    ------
    TTamerError
        For ``lams`` that are not ``None`` or what :func:`~ttamer.earlyexit.crossval.check_lams`
        accepts (checked before any sweep).
    """
    lams = None if lams is None else check_lams(lams)

    def tamer_sweep(t: Any) -> Callable[[], ExitDecisions]:
        if isinstance(t, ThresholdTamer):
            return partial(t.frontier_sweep, test)
        return lambda: with_full_model(test, t.decide_sweep(test, lams), np.inf)

    out = {name: tamer_sweep(t) for name, t in tamers.items()}
    def heuristic_sweep(name: str) -> Callable[[], ExitDecisions]:
        return lambda: with_full_model(test, heuristics.complete_sweep(test, name, target), np.inf)

    out |= {name: heuristic_sweep(name) for name in heuristics.HEURISTIC_RULES}
    oracle_points = max(2, min(baselines.ORACLE_POINTS, heuristics.MAX_SWEEP_CELLS // test.n_examples))
    out |= {"static": partial(baselines.static_exit, test),
            "oracle": partial(baselines.oracle_frontier, test, target, oracle_points)}
    return out


#: Most points of the cost grid of the bootstrap bands (``band_points``).
MAX_BAND_POINTS = 10_000


def check_sweep_and_band(lams: Any, band_points: Any, cost_range: Any,
                         frontier_kind: Any) -> tuple[np.ndarray | None, tuple[float, float] | None]:
    """The options of :func:`evaluate_trace` that shape its sweeps and bands, checked before any
    work: ``lams`` (``None`` or a grid of ``λ``, :func:`~ttamer.earlyexit.crossval.check_lams`),
    ``band_points`` (an integer in ``2..MAX_BAND_POINTS``), ``cost_range`` (``None`` or two
    finite numbers ``0 <= lo < hi``: costs are fractions of the full model's) and
    ``frontier_kind``. Returns ``(lams, cost_range)`` as arrays
    and floats; a :class:`~ttamer.core.errors.TTamerError` naming the option otherwise."""
    lams = None if lams is None else check_lams(lams)
    check_int(band_points, "band_points", minimum=2, maximum=MAX_BAND_POINTS)
    check_kind(frontier_kind)
    if cost_range is None:
        return lams, None
    rng = check_numbers(cost_range, "cost_range")
    if len(rng) != 2 or not 0.0 <= rng[0] < rng[1] or not math.isfinite(float(rng[1]) - float(rng[0])):
        raise TTamerError(f"cost_range must be two numbers (lo, hi) with 0 <= lo < hi (costs are fractions of the "
                          f"full model's, never negative) and hi - lo a finite float64, got {short_repr(cost_range)}")
    return lams, (float(rng[0]), float(rng[1]))


def evaluate_trace(trace: Trace, seed: int = 0, calibration_fraction: float = 0.5,
                   lams: Sequence[float] | None = None, tamer: dict | None = None, target: str = "label",
                   n_boot: int = 200, band_points: int = 41,
                   cost_range: tuple[float, float] | None = None,
                   frontier_kind: str = "pareto", estimation: str = "thresholds",
                   pathwise: dict | None = None, thresholds: dict | None = None, with_chain: bool = True,
                   keep_replicates: bool = False, slo_confidence: float = CONFIDENCE,
                   progress: bool = False) -> dict[str, Any]:
    r"""Split ``trace`` (seeded), fit T-Tamer on the calibration part, run every strategy on
    the test part and report frontiers, bands and metrics (the book's chapter
    :doc:`/early_exit`).

    Every strategy is swept on the test examples into points (cost, accuracy), cost as a
    fraction of the full model's mean cost; its frontier :math:`\mathrm{acc}(c)` is the best
    accuracy at cost at most :math:`c`, and its main metric is the normalised area

    .. math::

       \mathrm{AUC} = \frac{1}{c_{\mathrm{hi}} - c_{\mathrm{lo}}}
       \int_{c_{\mathrm{lo}}}^{c_{\mathrm{hi}}} \mathrm{acc}(c)\, \mathrm{d}c

    over ``cost_range`` (the module docstring lists the other metrics).

    Parameters
    ----------
    trace : Trace
        The measured model (at least 2 exits).
    seed : int, default 0
        Seed of the calibration / test split (and, plus one, of the bootstrap).
    calibration_fraction : float, default 0.5
        Share of the examples used for fitting; the rest are the test examples.
    lams : sequence of float, optional
        The :math:`\lambda` grid swept by the chain and regression estimations (their
        default grid if ``None``).
    tamer : dict, optional
        Options of :class:`~ttamer.earlyexit.calibration.EarlyExitTamer` (the paper's estimation).
    target : {"label", "final"}
        What an answer is judged against: the true class, or the full model's prediction.
    n_boot : int, default 200
        Bootstrap resamples of the test examples (0: no bands and no intervals).
    band_points : int, default 41
        Points of the cost grid of the bands (2 to :data:`MAX_BAND_POINTS`).
    cost_range : tuple of float, optional
        :math:`(c_{\mathrm{lo}}, c_{\mathrm{hi}})`, two finite numbers, ``0 <= lo < hi``; by default
        from the largest of the strategies' cheapest costs to 1 (the full model).
    frontier_kind : {"pareto", "hull"}
        ``"pareto"``: the staircase of the deterministic sweep points; ``"hull"``: their
        concave envelope, reached by randomising between neighbouring sweep points (applied
        to every strategy alike).
    estimation : {"thresholds", "regression", "chain"}
        How T-Tamer is estimated (:data:`ESTIMATIONS`, :func:`fit_tamers`).
    pathwise : dict, optional
        Options of :class:`~ttamer.earlyexit.pathwise.PathwiseTamer` (``estimation="regression"``).
    thresholds : dict, optional
        Options of :class:`~ttamer.earlyexit.tamer.ThresholdTamer`
        (``estimation="thresholds"``).
    with_chain : bool, default True
        Also fit the paper's estimation as ``"ttamer-chain"`` (the slowest fit).
    keep_replicates : bool, default False
        Keep each strategy's bootstrap replicates of its AUC and of its cost at the full
        model's accuracy (``auc_replicates``, ``cost_at_full_replicates``; the same resamples
        for every strategy).
    slo_confidence : float, default 0.9
        The confidence with which every strategy's operating point of the service-level
        protocol must meet each target on the calibration examples
        (:func:`~ttamer.earlyexit.slo.meets_target`; 0.5: the naive rule).
    progress : bool, default False
        Show progress bars (T-Tamer's cross-validation, then the strategies) on stderr.

    Returns
    -------
    EvaluationResult
        The trace and its split, the full model, per strategy a
        :class:`~ttamer.earlyexit.results.StrategyResult` (frontier, sweep points, band and the
        metrics of the module docstring), the service-level protocol
        (:func:`~ttamer.earlyexit.slo.slo_block`) and the time taken;
        :meth:`~ttamer.earlyexit.results.EvaluationResult.to_dict` gives the JSON report of
        ``ttamer evaluate --json``.

    Raises
    ------
    TraceError
        The trace is invalid, or has fewer than 2 or more than
        :data:`~ttamer.earlyexit.base.MAX_EXITS` exits (checked before any work).
    TTamerError
        ``trace`` is not a :class:`~ttamer.earlyexit.traces.Trace`, an option is invalid (an
        estimator's options name only its parameters, :func:`estimator_options`), or the
        evaluation would need more memory than is free (:func:`check_evaluation_memory`,
        checked before any work).
    """
    t0 = time.perf_counter()
    check_trace(trace, "evaluate_trace", chain=True).validate()
    for name, flag in (("with_chain", with_chain), ("keep_replicates", keep_replicates), ("progress", progress)):
        check_bool(flag, name)
    seed = check_seed(seed)  # a Python int: the bootstrap's seed is seed + 1
    target_labels(trace, target)  # validates target
    slo_confidence = check_confidence(slo_confidence)
    lams, cost_range = check_sweep_and_band(lams, band_points, cost_range, frontier_kind)
    check_evaluation_memory(trace)
    cal, test = trace.split(calibration_fraction, seed)
    n_boot = check_bootstrap(n_boot, test.n_examples, band_points=band_points, kind=frontier_kind)
    if progress:
        thresholds = dict(thresholds or {}, progress=True)
    tamers, info = fit_tamers(cal, target, estimation, thresholds, pathwise, tamer, with_chain)
    pts = {}
    for name, sweep in strategy_sweeps(test, tamers, lams, target).items():  # one strategy's decisions at a time
        d = sweep()
        pts[name] = sweep_points(d, test, target, per_example=n_boot > 0) | {"params": d.params}
        del d
    fronts = {name: frontier(p["cost"], p["accuracy"], frontier_kind) for name, p in pts.items()}
    full_correct = baselines.full_model(test).correct(test, target)[0]  # a sweep of one point
    full_acc = float(full_correct.mean())
    if cost_range is None:
        lo = max(float(f[0, 0]) for f in fronts.values())
        cost_range = (min(lo, 1.0 - 1e-9), 1.0)
    oracle_cost = cost_at_accuracy(fronts["oracle"], full_acc, frontier_kind)
    oracle_saving = None if oracle_cost is None else 1.0 - oracle_cost
    grid = np.linspace(cost_range[0], cost_range[1], band_points)
    strategies: dict[str, StrategyResult] = {}
    curves, cost_b = (paired_bootstrap(pts, full_correct, grid, n_boot, seed + 1, frontier_kind) if n_boot > 0
                      else ({}, {}))
    for name in tqdm(pts, desc="strategies", disable=not progress, leave=False):
        params = np.asarray(pts[name]["params"], dtype=float)
        points = np.column_stack([np.where(np.isfinite(params), params, np.nan), pts[name]["cost"],
                                  pts[name]["accuracy"]])
        m = StrategyResult.from_metrics(strategy_metrics(fronts[name], full_acc, cost_range, oracle_saving,
                                                         frontier_kind), fronts[name], points)
        if n_boot > 0:
            lower, upper = _quantiles(curves[name], (0.025, 0.975))
            m.band = Band(grid.copy(), np.asarray(lower, dtype=float), np.asarray(upper, dtype=float))
        strategies[name] = m
    if n_boot > 0:  # paired bootstrap (same resamples for every strategy) of AUC and cost differences
        auc_b = {name: grid_auc(c) for name, c in curves.items()}
        for name, m in strategies.items():
            m.auc_ci = tuple(float(np.quantile(auc_b[name], q)) for q in (0.025, 0.975))
            diff = auc_b[name] - auc_b["ttamer"]
            m.auc_minus_ttamer_ci = tuple(float(np.quantile(diff, q)) for q in (0.025, 0.5, 0.975))
            m.cost_at_full_minus_ttamer_ci = paired_quantiles(cost_b[name], cost_b["ttamer"])
            if keep_replicates:
                m.auc_replicates = np.array(auc_b[name], dtype=float)
                m.cost_at_full_replicates = np.array(cost_b[name], dtype=float)
    elapsed = time.perf_counter() - t0
    exit_accuracy = (test.correct.mean(axis=0) if target == "label"
                     else (test.predictions == target_labels(test, target)[:, None]).mean(axis=0))
    return EvaluationResult(
        trace=TraceSummary(**{key: trace.meta.get(key, META_DEFAULTS.get(key))
                              for key in ("model", "dataset", "split", "cost_unit")},
                           exit_names=trace.exit_names, n_examples=trace.n_examples, n_exits=trace.n_exits,
                           n_classes=trace.n_classes),
        split=SplitSummary(int(seed), float(calibration_fraction), cal.n_examples, test.n_examples),
        target=target,
        frontier_kind=frontier_kind,
        full_model=FullModelSummary(full_acc, 1.0, float(test.full_cost.mean()), exit_accuracy,
                                    test.cumulative_cost.mean(axis=0) / test.full_cost.mean()),
        cost_range=(float(cost_range[0]), float(cost_range[1])),
        ttamer_fit=info,
        strategies=strategies,
        slo=slo_block(cal, test, {k: t for k, t in tamers.items() if isinstance(t, ThresholdTamer)}, target,
                      confidence=slo_confidence),
        seconds=elapsed,
    )


def check_strategies(result: Any, names: Any, who: str) -> list[str]:
    """``names`` (a strategy name, or a list or tuple of them) as a list, if ``result`` is an
    :class:`~ttamer.earlyexit.results.EvaluationResult` that reports each of them; a
    :class:`~ttamer.core.errors.TTamerError` naming ``who`` otherwise."""
    if not isinstance(result, EvaluationResult):
        raise TTamerError(f"{who} reads an EvaluationResult (of evaluate_trace), got {type(result).__name__}")
    names = [names] if isinstance(names, str) else names
    if not isinstance(names, (list, tuple)) or not all(isinstance(h, str) for h in names):
        raise TTamerError(f"{who}: strategies must be names (a str, list or tuple), got {short_repr(names)}")
    missing = [h for h in names if h not in result.strategies]
    if missing:
        raise TTamerError(f"{who}: the result has no strategy {escape_text(repr(missing[0]), 60)}; it has "
                          f"{', '.join(result.strategies)}")
    return list(names)


def dominates(result: EvaluationResult, a: str = "ttamer", b: str = "max-prob", tol: float = 0.0,
              grid_points: int = 101) -> bool:
    """Whether frontier ``a`` is at least as accurate as ``b`` (within ``tol``) at every cost
    of the common range where ``b`` is defined."""
    check_strategies(result, [a, b], "dominates")
    tol = check_real(tol, "tol", low=0.0)
    check_int(grid_points, "grid_points", minimum=2, maximum=MAX_BAND_POINTS)
    lo, hi = result.cost_range
    grid = np.linspace(lo, hi, grid_points)
    fa = np.asarray(result.strategies[a].frontier)
    fb = np.asarray(result.strategies[b].frontier)
    kind = result.frontier_kind
    acc_a, acc_b = accuracy_at(fa, grid, kind), accuracy_at(fb, grid, kind)
    defined = ~np.isnan(acc_b)
    return bool(np.all(np.nan_to_num(acc_a[defined], nan=-np.inf) >= acc_b[defined] - tol))


# ---------------------------------------------------------------------------------------------
#: Heuristics that T-Tamer's frontier should dominate; the oracle is a bound, not one.
HEURISTICS = ("max-prob", "max-prob-sdn", "entropy", "patience", "static")


def never_worse_split(auc: tuple[float, float], auc_ci: Sequence[float] | None, cost: tuple[float, float],
                      cost_ci: Sequence[float] | None) -> dict[str, bool]:
    """Whether T-Tamer is never worse than a heuristic on one split, for ``"area"`` and
    ``"cost"``: at least as good, or behind by less than the paired-bootstrap noise.
    ``auc`` and ``cost`` are ``(T-Tamer's, the heuristic's)`` area and cost at the full model's
    accuracy (``inf`` where never reached); ``auc_ci`` is the (2.5, 50, 97.5 %) interval of the
    heuristic's area minus T-Tamer's and ``cost_ci`` that of its cost minus T-Tamer's
    (``None``: no bootstrap, the point values alone)."""
    area = auc[0] >= auc[1] - _EPS or (auc_ci is not None and auc_ci[0] <= 0.0)
    cheaper = cost[0] <= cost[1] + _EPS or (cost_ci is not None and cost_ci[2] >= 0.0)
    return {"area": bool(area), "cost": bool(cheaper)}


def domination_summary(result: EvaluationResult, heuristics: Sequence[str] = HEURISTICS) -> dict[str, Any]:
    """Whether T-Tamer dominates each heuristic in ``result`` (of :func:`evaluate_trace`):
    ``auc_gap`` = T-Tamer's AUC minus the heuristic's; ``auc_gap_ci`` its paired 95 %
    bootstrap interval (``None`` without bootstrap); ``cost_gap`` = heuristic's cost at the
    full model's accuracy minus T-Tamer's (``None`` where either never reaches it; ``+inf``
    where only T-Tamer does) and ``cost_gap_ci`` its paired 95 % interval (``±inf`` bounds where
    only one side reaches it on that share of the resamples); ``frontier`` = :func:`dominates`
    pointwise (no tolerance); ``never_worse`` = :func:`never_worse_split` -- the per-split half
    of the book's *never worse* (chapter *Early exit on real models*, section *Metrics*)."""
    heuristics = check_strategies(result, heuristics, "domination_summary")
    check_strategies(result, "ttamer", "domination_summary")
    st = result.strategies
    tt = st["ttamer"]
    out: dict[str, Any] = {}
    for h in heuristics:
        m = st[h]
        ci, cci = m.auc_minus_ttamer_ci, m.cost_at_full_minus_ttamer_ci
        ch, ct = m.cost_at_full_accuracy, tt.cost_at_full_accuracy
        cost_gap = (None if ct is None else (np.inf if ch is None else ch - ct))
        out[h] = {"auc_gap": tt.auc - m.auc,
                  "auc_gap_ci": None if ci is None else [-ci[2], -ci[0]],
                  "cost_gap": cost_gap, "cost_gap_ci": None if cci is None else [cci[0], cci[2]],
                  "frontier": dominates(result, "ttamer", h),
                  "never_worse": never_worse_split((tt.auc, m.auc), ci, (np.inf if ct is None else ct,
                                                                          np.inf if ch is None else ch), cci)}
    return out


#: The keys of an :func:`ablation` configuration.
ABLATION_KEYS = ("name", "estimation", "thresholds", "pathwise", "tamer", "calibration_fraction", "frontier_kind",
                 "lams")


def ablation(trace: Trace, configs: Sequence[dict[str, Any]], seed: int = 0, n_boot: int = 200,
             target: str = "label", n_jobs: int = 1) -> list[dict[str, Any]]:
    """A tidy table (list of rows; ``pandas.DataFrame(rows)`` shows it) comparing T-Tamer
    configurations with the heuristics on one trace and one split (``seed``).

    Each config is a dict: ``"name"`` (row label), ``"estimation"`` (one of :data:`ESTIMATIONS`,
    default ``"thresholds"``), ``"thresholds"`` / ``"pathwise"`` / ``"tamer"`` (options of
    :class:`~ttamer.earlyexit.tamer.ThresholdTamer` / :class:`~ttamer.earlyexit.pathwise.PathwiseTamer` /
    :class:`~ttamer.earlyexit.calibration.EarlyExitTamer`,
    default the package defaults) and optionally ``"calibration_fraction"`` (0.5),
    ``"frontier_kind"`` (``"pareto"``), ``"lams"``.
    Configurations must be chosen on calibration data (``"auto"`` options are picked by
    cross-validation inside the calibration split); the table reports test figures. Row:
    ``name``, T-Tamer's ``auc`` and ``cost_at_full`` (cost at the full model's accuracy),
    the best heuristic's AUC and name, and per heuristic ``h``: ``auc_gap[h]`` (T-Tamer −
    h), its paired 95 % interval bounds ``auc_gap_lo[h]``/``auc_gap_hi[h]`` and
    ``dominates[h]`` (pointwise frontier); ``dominates_all``; the chosen configuration
    (``estimation``, ``description``, ``loss``). The configurations are evaluated in
    ``n_jobs`` worker processes (:func:`~ttamer.core.parallel.map_processes`; the same rows)."""
    if not isinstance(configs, (list, tuple)) or not all(isinstance(c, dict) for c in configs):
        raise TTamerError(f"ablation: configs must be a list of dicts (one configuration each), got "
                          f"{short_repr(configs)}")
    for cfg in configs:
        unknown = [key for key in cfg if key not in ABLATION_KEYS]
        if unknown:
            keys = escape_text(", ".join(sorted(map(short_repr, unknown))), 200)
            raise TTamerError(f"ablation config {short_repr(cfg.get('name'))}: unknown keys {keys}; a config's "
                              f"keys are {', '.join(ABLATION_KEYS)}")
    seed = check_seed(seed)
    return map_processes(_ablation_row, [(trace, cfg, seed, n_boot, target) for cfg in configs], n_jobs)


def _ablation_row(trace: Trace, cfg: dict[str, Any], seed: int, n_boot: int, target: str) -> dict[str, Any]:
    """One row of :func:`ablation` (T-Tamer of ``cfg`` only: the paper's chain is not fitted
    beside it, as no column reads it)."""
    r = evaluate_trace(trace, seed=seed, calibration_fraction=cfg.get("calibration_fraction", 0.5),
                       lams=cfg.get("lams"), tamer=cfg.get("tamer"), target=target, n_boot=n_boot,
                       frontier_kind=cfg.get("frontier_kind", "pareto"),
                       estimation=cfg.get("estimation", "thresholds"), pathwise=cfg.get("pathwise"),
                       thresholds=cfg.get("thresholds"), with_chain=False)
    st = r.strategies
    best = max(HEURISTICS, key=lambda h: st[h].auc)
    row: dict[str, Any] = {"name": cfg.get("name", ""), "auc": st["ttamer"].auc,
                           "cost_at_full": st["ttamer"].cost_at_full_accuracy,
                           "best_heuristic": best, "best_heuristic_auc": st[best].auc,
                           "no_recall_auc": st["no-recall"].auc}
    dom = domination_summary(r)
    for h, d in dom.items():
        row[f"auc_gap[{h}]"] = d["auc_gap"]
        if d["auc_gap_ci"] is not None:
            row[f"auc_gap_lo[{h}]"], row[f"auc_gap_hi[{h}]"] = d["auc_gap_ci"]
        row[f"cost_at_full[{h}]"] = st[h].cost_at_full_accuracy
        row[f"dominates[{h}]"] = d["frontier"]
    row["dominates_all"] = all(d["frontier"] for d in dom.values())
    fit = r.ttamer_fit
    row.update(estimation=fit["estimation"], description=fit["description"], loss=fit["loss"],
               frontier_kind=r.frontier_kind, calibration_fraction=r.split.calibration_fraction,
               seconds=r.seconds)
    return row


#: Most numbers ``N·K`` (examples × states of an exit) of the one-hot tables of
#: :func:`markov_violation`.
MARKOV_MAX_CELLS = 2**26
#: Most states ``K`` (largest state + 1) of an exit in :func:`markov_violation`, which
#: estimates the transition to each state of an exit in turn: its time grows with ``K``.
MARKOV_MAX_STATES = 4096


def _chain_data(states: Any, wrong: Any, who: str) -> tuple[np.ndarray, np.ndarray]:
    """``states [N, L]`` (integers ``≥ 0``) and ``wrong [N, L]`` (losses in ``[0, 1]``) checked
    and converted, ``N·K`` bounded by :data:`MARKOV_MAX_CELLS`; a clear error naming ``who``."""
    s = check_numbers(states, f"{who}: states", ndim=2, low=0.0)
    if np.any(s != np.floor(s)):
        raise TTamerError(f"{who}: states must be integer state indices (nothing is rounded)")
    w = check_numbers(wrong, f"{who}: wrong", ndim=2, low=0.0, high=1.0)
    if w.shape != s.shape:
        raise TTamerError(f"{who}: wrong has shape {w.shape}, states {s.shape}; one loss per example and exit")
    if s.shape[0] * (s.max() + 1) > MARKOV_MAX_CELLS:
        raise TTamerError(f"{who}: {s.shape[0]:,} examples x {int(s.max()) + 1:,} states are above "
                          f"MARKOV_MAX_CELLS = {MARKOV_MAX_CELLS:,}; use fewer examples or coarser states")
    return s.astype(np.int64), w


def markov_violation(trace: Trace, states: np.ndarray, wrong: np.ndarray, smoothing: float = 1.0) -> list[dict[str, float]]:
    """How far the calibration data are from the Markov chain T-Tamer assumes (the book's chapter *The model*), per
    exit ``i ≥ 1``, for ``states [N, L]`` and 0/1 losses ``wrong [N, L]``:

    * ``transition_tv`` -- ``E_{s_{i−2}, s_{i−1}} TV( P(s_i | s_{i−1}, s_{i−2}), P(s_i | s_{i−1}) )``
      (``nan`` for ``i = 1``), weighted by the examples in each conditioning pair;
    * ``loss_gap_next`` -- ``E |P(wrong_{i−1} | s_{i−1}, s_i) − P(wrong_{i−1} | s_{i−1})|``: how
      much the *next* exit's state says about an earlier exit's correctness beyond its own
      state -- the violation that makes the recall answer rule (``min ℓ_v(s_v)``)
      over-confident;
    * ``loss_gap_prev`` -- ``E |P(wrong_i | s_i, s_{i−1}) − P(wrong_i | s_i)|``.

    Frequencies are smoothed by ``smoothing`` pseudo-counts toward the coarser estimate, so
    that tiny cells do not inflate the gaps; still, finite samples make every gap positive
    (compare with a Markov synthetic trace).

    Raises
    ------
    TTamerError
        Before any work, for ``states`` and ``wrong`` that are not arrays ``[N, L]`` of state
        indices ``>= 0`` and losses in [0, 1], above :data:`MARKOV_MAX_CELLS` one-hot numbers
        or :data:`MARKOV_MAX_STATES` states of an exit, or a ``smoothing`` that is not a
        finite number ``>= 0``.
    """
    states, wrong = _chain_data(states, wrong, "markov_violation")
    n, L = states.shape
    K = states.max(axis=0) + 1
    if K.max() > MARKOV_MAX_STATES:
        v = int(np.argmax(K))
        raise TTamerError(f"markov_violation: exit {v} has states up to {int(K[v]) - 1:,}; at most "
                          f"MARKOV_MAX_STATES = {MARKOV_MAX_STATES:,} states per exit are compared; use coarser states")
    a = check_real(smoothing, "markov_violation: smoothing", low=0.0)
    out = []

    def cond_mean(keys: np.ndarray, y: np.ndarray, prior: np.ndarray) -> np.ndarray:
        """Per example: smoothed mean of ``y`` over examples sharing its key."""
        u, inv = np.unique(keys, return_inverse=True)
        cnt = np.bincount(inv).astype(float)
        s = np.bincount(inv, weights=y)
        prior_k = np.bincount(inv, weights=prior) / cnt
        return ((s + a * prior_k) / (cnt + a))[inv]

    for i in range(1, L):
        row = {"exit": float(i)}
        si, sp = states[:, i], states[:, i - 1]
        base = cond_mean(sp, wrong[:, i - 1], np.full(n, wrong[:, i - 1].mean()))
        row["loss_gap_next"] = float(np.abs(cond_mean(sp * K[i] + si, wrong[:, i - 1], base) - base).mean())
        base_i = cond_mean(si, wrong[:, i], np.full(n, wrong[:, i].mean()))
        row["loss_gap_prev"] = float(np.abs(cond_mean(si * K[i - 1] + sp, wrong[:, i], base_i) - base_i).mean())
        if i >= 2:
            spp = states[:, i - 2]
            onehot = np.zeros((n, K[i]))  # [N, K_i]
            onehot[np.arange(n), si] = 1.0
            p1 = np.stack([cond_mean(sp, onehot[:, t], np.full(n, onehot[:, t].mean())) for t in range(K[i])], 1)
            pair = spp * K[i - 1] + sp
            p2 = np.stack([cond_mean(pair, onehot[:, t], p1[:, t]) for t in range(K[i])], 1)
            row["transition_tv"] = float(0.5 * np.abs(p2 - p1).sum(axis=1).mean())
        else:
            row["transition_tv"] = float("nan")
        out.append(row)
    return out


def markov_resample(states: np.ndarray, wrong: np.ndarray, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A sample of the same size from the empirical *Markov* chain of ``states [N, L]`` and 0/1
    ``wrong [N, L]``: ``s_0`` drawn from the examples, ``s_i`` from the examples sharing
    ``s_{i−1}``, and ``wrong_i`` from the examples sharing ``s_i``. Its
    :func:`markov_violation` is the finite-sample floor of the measure. Loops over exits only."""
    states, wrong = _chain_data(states, wrong, "markov_resample")
    rng = np.random.default_rng(check_seed(seed))
    n, L = states.shape

    def draw(keys: np.ndarray, wanted: np.ndarray) -> np.ndarray:
        """Per wanted key, a random example index among those with that key."""
        order = np.argsort(keys, kind="stable")
        sk = keys[order]
        lo, hi = np.searchsorted(sk, wanted, "left"), np.searchsorted(sk, wanted, "right")
        return order[lo + (rng.random(len(wanted)) * (hi - lo)).astype(np.int64)]

    s = np.empty_like(states)
    s[:, 0] = states[rng.integers(0, n, n), 0]
    for i in range(1, L):
        s[:, i] = states[draw(states[:, i - 1], s[:, i - 1]), i]
    w = np.stack([wrong[draw(states[:, i], s[:, i]), i] for i in range(L)], axis=1)
    return s, w


def markov_diagnostics(calibration: Trace, state: Any = None, loss: str = "label", seed: int = 0,
                       smoothing: float = 1.0) -> list[dict[str, Any]]:
    """:func:`markov_violation` of the states of ``state`` (a concrete
    :class:`~ttamer.earlyexit.features.StateSpec`, default 8 max-probability bins) on the
    ``calibration`` examples, next to the same measure on a :func:`markov_resample` of them
    (``null_*``): the ratio says how far the real network is from T-Tamer's model beyond
    sampling noise. Rows per exit ``i ≥ 1``."""
    from .features import StateEncoder, StateSpec, exit_losses

    check_trace(calibration, "markov_diagnostics", MIN_SPLIT_EXAMPLES, chain=True).validate()
    check_seed(seed)
    smoothing = check_real(smoothing, "smoothing", low=0.0)
    spec = StateSpec(K=8, agreement=0) if state is None else state
    if not isinstance(spec, StateSpec) or not spec.is_concrete:
        raise TTamerError(f"markov_diagnostics: state must be a concrete StateSpec (no 'auto'), got {short_repr(state)}")
    enc = StateEncoder.fit(spec, calibration, loss)
    s = enc.transform(calibration)
    w = exit_losses(calibration, loss)
    if spec.feature == "posterior":
        w = np.take_along_axis(w, enc.answers(calibration), axis=1)
    real = markov_violation(calibration, s, w, smoothing)
    null = markov_violation(calibration, *markov_resample(s, w, seed), smoothing)
    rows = []
    for r, q in zip(real, null):
        row: dict[str, Any] = {"state": spec.describe(), "loss": loss, "exit": int(r["exit"])}
        for key in ("loss_gap_next", "loss_gap_prev", "transition_tv"):
            row[key], row[f"null_{key}"] = r[key], q[key]
        rows.append(row)
    return rows
