"""Threshold stopping rules on a chain of exits, fitted exactly on calibration paths.

A *threshold rule* walks the exits ``0, 1, …, L−1`` and stops at the first exit ``i < L−1``
whose state ``x_i`` (a scalar observed once exit ``i`` has run) reaches its threshold
``τ_i``; the last exit always stops. Two policy classes, both vectorised over examples and
over a sweep of parameters:

* **common** -- one threshold for every exit (``τ_i = τ``). The max-probability, entropy and
  patience heuristics are rules of this class on their own states.
  :func:`common_threshold_curve` gives the mean loss and mean cost of the rule at *every*
  distinct threshold in one sort (``O(NL log NL)``): as ``τ`` falls, example ``n`` moves its
  stop only at the *records* of its running maximum ``M_{n,i} = max_{j≤i} x_{n,j}``, so the
  curve is a cumulative sum of per-record changes.
* **per exit** -- thresholds ``τ_0, …, τ_{L−2}`` found by backward induction on the
  calibration paths for the trade-off ``θ_λ = λ·loss + κ·cost`` (``κ = 1 − λ``), the
  recursion of the book's chapter *Early exit on real models*:

  .. math::

     G_{L-1} = λ\\,\\ell_{L-1}, \\qquad
     τ_i = \\arg\\min_τ \\sum_n \\big[x_{n,i} ≥ τ\\big]\\,λ\\,\\ell_{n,i}
           + \\big[x_{n,i} < τ\\big]\\,(κ c_{i+1} + G_{n,i+1}),

  with ``G_i`` the realised trade-off of the rule from exit ``i`` on. Each ``τ_i`` is the
  exact minimiser over all cuts of the sorted ``x_{·,i}`` (suffix sums), for every ``λ`` of
  the sweep at once (:func:`backward_thresholds`).

Between them, the **offset** class keeps one threshold on a state shifted per exit,
``x_i − δ_i ≥ τ``, with ``δ`` fitted once to the whole calibration curve
(:func:`fit_offsets`). A fitted sweep of per-exit rules is a path through threshold space;
:func:`path_rules` lists every rule on it that given examples tell apart, so that it is
swept at the resolution of the data, as a one-threshold rule is by :func:`common_threshold_curve`.

``loss [N, L]`` is the 0/1 loss of the answer given when stopping at each exit (the exit
itself, or a recall answer among the exits consulted so far), and ``cum [N, L]`` the cost paid
when stopping there.
"""

from __future__ import annotations

import numpy as np

from .metrics import frontier_auc, pareto_frontier
from .offset_area import ShiftedCurve

#: Elements per chunk of the ``[P, N]`` sweeps over rules or ``λ`` values: a chunk's arrays
#: stay in the CPU's cache across its loop over the exits (and memory stays bounded).
CHUNK_ELEMENTS = 1 << 18


def _chunks(n_rows: int, row_size: int) -> list[slice]:
    """Slices of at most ``CHUNK_ELEMENTS / row_size`` rows covering ``0..n_rows``."""
    step = max(1, CHUNK_ELEMENTS // max(row_size, 1))
    return [slice(s, min(s + step, n_rows)) for s in range(0, n_rows, step)]


def evenly(n: int, at_most: int) -> np.ndarray:
    """At most ``at_most`` (at least 2) indices spread evenly over ``0..n−1``, ends included."""
    return np.unique(np.linspace(0, n - 1, max(2, min(n, at_most))).round().astype(np.int64))


def stable_argsort(v: np.ndarray) -> np.ndarray:
    """``np.argsort(v, kind="stable")`` of a 1-D ``v``: the same permutation, from numpy's faster
    unstable sort, the runs of equal values (``nan`` with ``nan``) then put back in index order
    by a sort on (run, index), whose keys are distinct."""
    order = np.argsort(v)
    s = v[order]
    tied = (s[1:] == s[:-1]) | (np.isnan(s[1:]) & np.isnan(s[:-1]))
    if not tied.any():
        return order
    run = np.cumsum(np.r_[0, ~tied])
    return order[np.argsort(run * len(v) + order)]


def first_stop(x: np.ndarray, taus: np.ndarray, cols: np.ndarray | None = None) -> np.ndarray:
    """``[P, N]`` exit each example stops at: the first ``i < L−1`` with ``x[n, i] ≥ taus[p, i]``,
    else ``L−1``. ``x [N, L]``, ``taus [P, L−1]`` (or ``[P]`` for a common threshold); ``cols``,
    optional, is ``x[:, :L−1].T`` made contiguous (:func:`exit_columns`), for callers that run
    many rules on the same ``x``. Rules are taken in chunks (:data:`CHUNK_ELEMENTS`), each swept
    over the exits from the last to the first (the first exit that stops is written last)."""
    n, L = x.shape
    taus = np.asarray(taus, dtype=float)
    taus = np.repeat(taus[:, None], L - 1, axis=1) if taus.ndim == 1 else taus
    out = np.empty((len(taus), n), dtype=np.int64)
    cols = exit_columns(x) if cols is None else cols
    for s in _chunks(len(taus), n):
        t = taus[s]
        stop = np.full((len(t), n), L - 1, dtype=np.min_scalar_type(L - 1))
        hit, move = np.empty(stop.shape, dtype=bool), np.empty_like(stop)
        for i in range(L - 2, -1, -1):  # stop ← i where hit, as integer arithmetic (stop > i)
            np.greater_equal(cols[i], t[:, i, None], out=hit)
            np.subtract(stop, stop.dtype.type(i), out=move)
            np.multiply(move, hit, out=move)
            stop -= move
        out[s] = stop
    return out


def exit_columns(x: np.ndarray) -> np.ndarray:
    """``[L−1, N]`` the states of the exits that may stop, one contiguous row per exit (the
    layout :func:`first_stop` reads)."""
    return np.ascontiguousarray(x[:, : x.shape[1] - 1].T)


def common_threshold_curve(x: np.ndarray, loss: np.ndarray, cum: np.ndarray,
                           end_loss: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean loss and mean cost of the common-threshold rule at every distinct threshold.

    Parameters
    ----------
    x, loss, cum : ndarray of shape (N, L)
        State, loss of the answer when stopping at each exit, and cost paid when stopping there.
    end_loss : ndarray of shape (N,), optional
        Loss when no exit reaches the threshold (default ``loss[:, L−1]``); SDN's fallback to
        the most confident exit is such an end rule.

    Returns
    -------
    taus, mean_loss, mean_cost : ndarray of shape (R + 1,)
        ``taus[0] = +inf`` (never stop early), then the distinct record values in decreasing
        order; ``mean_loss[r]`` and ``mean_cost[r]`` are those of the rule "stop at the first
        ``i < L−1`` with ``x_i ≥ taus[r]``".
    """
    n, L = x.shape
    end = loss[:, L - 1] if end_loss is None else end_loss
    head = x[:, : L - 1]
    prev_max = np.concatenate([np.full((n, 1), -np.inf), np.maximum.accumulate(head, axis=1)[:, :-1]], axis=1)
    record = head > prev_max
    nxt = _next_records(record)
    stop_loss = np.column_stack([loss[:, : L - 1], end]).astype(float)
    stop_cost = cum.astype(float)
    d_loss = stop_loss[:, : L - 1] - np.take_along_axis(stop_loss, nxt, axis=1)
    d_cost = stop_cost[:, : L - 1] - np.take_along_axis(stop_cost, nxt, axis=1)
    at = np.flatnonzero(record)  # the records, example-major
    vals, dl, dc = np.ascontiguousarray(head).ravel()[at], np.take(d_loss, at), np.take(d_cost, at)
    order = stable_argsort(-vals)
    vals, dl, dc = vals[order], np.cumsum(dl[order]), np.cumsum(dc[order])
    last_of_value = np.flatnonzero(np.r_[vals[1:] != vals[:-1], True])
    taus = np.r_[np.inf, vals[last_of_value]]
    mean_loss = (end.sum() + np.r_[0.0, dl[last_of_value]]) / n
    mean_cost = (cum[:, L - 1].sum() + np.r_[0.0, dc[last_of_value]]) / n
    # a sum of differences may fall below 0 by a rounding error where exit 0 costs nothing
    return taus, mean_loss, np.maximum(mean_cost, 0.0)


def _next_records(record: np.ndarray) -> np.ndarray:
    """``[N, L−1]``: for each exit ``i``, the first record after it (``record [N, L−1]``), or
    ``L−1`` (the end) if there is none -- where the example stops when the threshold is just
    above its state at ``i``."""
    m = record.shape[1]
    at = np.where(record, np.arange(m), m)
    first_from = np.minimum.accumulate(at[:, ::-1], axis=1)[:, ::-1]
    return np.column_stack([first_from[:, 1:], np.full(len(record), m)])


def lower_hull(cost: np.ndarray, loss: np.ndarray) -> np.ndarray:
    """Indices of the vertices of the lower-left convex hull of the points ``(cost, loss)``,
    cost increasing: the points that minimise ``λ·loss + κ·cost`` for some ``λ ∈ [0, 1]``."""
    order = np.lexsort((loss, cost))
    keep: list[int] = []
    for j in order:
        if keep and loss[j] >= loss[keep[-1]]:
            continue  # dominated: no cheaper-or-equal point has less loss
        while len(keep) >= 2:
            a, b = keep[-2], keep[-1]
            if (loss[b] - loss[a]) * (cost[j] - cost[b]) >= (loss[j] - loss[b]) * (cost[b] - cost[a]):
                keep.pop()  # b lies on or above the segment a–j
            else:
                break
        keep.append(int(j))
    return np.asarray(keep, dtype=np.int64)


def hull_choice(cost: np.ndarray, loss: np.ndarray, lams: np.ndarray) -> np.ndarray:
    """For each ``λ`` in ``lams``, the index of the point minimising ``λ·loss + (1−λ)·cost``
    (ties: the more accurate point)."""
    v = lower_hull(cost, loss)
    lams = np.asarray(lams, dtype=float)[:, None]
    value = lams * loss[v][None, :] + (1.0 - lams) * cost[v][None, :]
    best = value.min(axis=1, keepdims=True)
    tie = value <= best + 1e-12 * np.maximum(1.0, np.abs(best))
    return v[tie.shape[1] - 1 - np.argmax(tie[:, ::-1], axis=1)]


def _best_cuts(xs: np.ndarray, d: np.ndarray) -> np.ndarray:
    """``[P]`` cut ``k`` (stop the examples at sorted positions ``≥ k``) minimising the suffix
    sums of ``d [P, N]``; cuts only between distinct ``xs``; ties prefer continuing (larger k)."""
    n = len(xs)
    suffix = np.zeros((d.shape[0], n + 1))
    suffix[:, :n] = np.cumsum(d[:, ::-1], axis=1)[:, ::-1]
    valid = np.r_[True, xs[1:] > xs[:-1], True]
    suffix[:, ~valid] = np.inf
    return n - np.argmin(suffix[:, ::-1], axis=1)


def _cut_to_threshold(xs: np.ndarray, k: np.ndarray) -> np.ndarray:
    """Threshold halfway between the sorted values either side of cut ``k`` (``±inf`` at ends)."""
    n = len(xs)
    lo = xs[np.clip(k - 1, 0, n - 1)]
    hi = xs[np.clip(k, 0, n - 1)]
    return np.where(k <= 0, -np.inf, np.where(k >= n, np.inf, (lo + hi) / 2))


def backward_thresholds(x: np.ndarray, loss: np.ndarray, costs: np.ndarray, lams: np.ndarray) -> np.ndarray:
    """``[P, L−1]`` per-exit thresholds by backward induction (module docstring), one row per
    ``λ`` of ``lams``.

    Parameters
    ----------
    x, loss : ndarray of shape (N, L)
        Calibration states and 0/1 losses of the answer when stopping at each exit.
    costs : ndarray of shape (L,)
        ``costs[i]`` = cost of running exit ``i`` after exit ``i−1`` (the book's ``c_i``).
    lams : ndarray of shape (P,)
        The ``λ`` values.
    """
    n, L = x.shape
    lams = np.asarray(lams, dtype=float)
    taus = np.full((len(lams), L - 1), np.inf)
    orders = [stable_argsort(x[:, i]) for i in range(L - 1)]
    sorted_x = [x[order, i] for i, order in enumerate(orders)]
    for s in _chunks(len(lams), 4 * n):
        lam = lams[s, None]
        G = lam * loss[None, :, L - 1]
        for i in range(L - 2, -1, -1):
            cont = (1.0 - lam) * costs[i + 1] + G
            stop = lam * loss[None, :, i]
            xs = sorted_x[i]
            tau = _cut_to_threshold(xs, _best_cuts(xs, (stop - cont)[:, orders[i]]))
            taus[s, i] = tau
            G = np.where(x[None, :, i] >= tau[:, None], stop, cont)
    return taus


def rule_points(x: np.ndarray, loss: np.ndarray, cum: np.ndarray, taus: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean loss and mean cost ``[P]`` of the rules ``taus [P, L−1]`` on the examples (in
    chunks of rules, so that memory stays bounded)."""
    mean_loss, mean_cost = np.empty(len(taus)), np.empty(len(taus))
    rows, cols = np.arange(len(x))[None, :], exit_columns(x)
    for s in _chunks(len(taus), len(x)):
        last = first_stop(x, taus[s], cols)
        mean_loss[s], mean_cost[s] = loss[rows, last].mean(axis=1), cum[rows, last].mean(axis=1)
    return mean_loss, mean_cost


def budget_points(cost: np.ndarray, loss: np.ndarray, resolution: float) -> np.ndarray:
    """Indices of the Pareto points (no other point is as cheap and more accurate), thinned so
    that consecutive kept points differ in cost by about ``resolution`` at least: for each
    budget on a grid of that step, the most accurate point within the budget. Cost increasing."""
    order = np.lexsort((loss, cost))
    best = np.minimum.accumulate(loss[order])
    pareto = order[np.r_[True, best[1:] < best[:-1]]]
    grid = np.arange(cost[pareto][0], cost[pareto][-1] + resolution, resolution)
    pick = np.unique(np.r_[np.searchsorted(cost[pareto], grid, side="right") - 1, len(pareto) - 1])
    return pareto[pick[pick >= 0]]


def quantile_path(xs: np.ndarray, taus_a: np.ndarray, taus_b: np.ndarray, steps: int) -> np.ndarray:
    """``[steps, L−1]`` thresholds between two rules: each exit's threshold moves linearly in
    the rank of the examples' states (``xs [N, L−1]``, each column sorted) from ``taus_a`` to
    ``taus_b``, both ends excluded; ``−inf`` is rank 0 and ``+inf`` rank ``N``."""
    n, m = xs.shape
    cols = np.arange(m)
    rank_a = np.array([np.searchsorted(xs[:, i], taus_a[i]) for i in cols])
    rank_b = np.array([np.searchsorted(xs[:, i], taus_b[i]) for i in cols])
    t = (np.arange(1, steps + 1) / (steps + 1))[:, None]
    k = np.rint((1 - t) * rank_a + t * rank_b).astype(np.int64)  # [steps, L-1] cut positions
    lo, hi = xs[np.clip(k - 1, 0, n - 1), cols], xs[np.clip(k, 0, n - 1), cols]
    return np.where(k <= 0, -np.inf, np.where(k >= n, np.inf, (lo + hi) / 2))


def frontier_taus(x: np.ndarray, loss: np.ndarray, cum: np.ndarray, max_points: int = 2000) -> np.ndarray:
    """Thresholds of the common-threshold rules on the frontier of the *complete* sweep (every
    distinct state value) on these examples, thinned evenly in cost beyond ``max_points``."""
    taus, mean_loss, mean_cost = common_threshold_curve(x, loss, cum)
    span = float(mean_cost.max() - mean_cost.min())
    return taus[budget_points(mean_cost, mean_loss, span / max_points if span > 0 else 1.0)]


#: Offsets tried per exit by :func:`fit_offsets`, in standard deviations of the exit's state.
OFFSET_STEPS = np.linspace(-0.5, 0.5, 11)
#: Passes of the coordinate ascent of :func:`fit_offsets` over the exits.
OFFSET_PASSES = 2
#: :func:`fit_offsets` reads at most this many examples (evenly spaced; more change the
#: offsets by far less than their sampling error and cost time in proportion).
OFFSET_MAX_EXAMPLES = 2000


def curve_area(x: np.ndarray, loss: np.ndarray, cum: np.ndarray) -> float:
    """Area under the frontier of the common-threshold rule on ``x`` swept over every distinct
    threshold (:func:`common_threshold_curve`), costs as fractions of the full model's, from
    exit 0 alone to the full model."""
    scale = cum[:, -1].mean()
    _, mean_loss, mean_cost = common_threshold_curve(x, loss, cum)
    lo = min(cum[:, 0].mean() / scale, 1 - 1e-9)
    return frontier_auc(pareto_frontier(mean_cost / scale, 1.0 - mean_loss), lo, 1.0)


#: Bisection steps of :func:`shifted_thresholds` (it needs about 60 to reach adjacent floats).
BISECTION_STEPS = 200


def shifted_thresholds(taus: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """``[P, L−1]`` per-exit thresholds equivalent, exactly in floating point, to the common
    thresholds ``taus [P]`` on the state shifted by ``offsets [L]``: ``x ≥ t[p, i]`` if and only
    if ``x − offsets[i] ≥ taus[p]`` (as computed, for every float ``x``).

    ``t = taus + offsets`` can miss by a few units in the last place (more where ``x`` is
    much smaller than the offset), so that an example whose shifted state equals a fitted
    threshold would not stop where the fitted curve says it does. Subtraction is monotone,
    so the least float ``t`` whose shifted value reaches the threshold exists; it is found by
    bisection between two floats a few units in the last place either side of ``taus + offsets``."""
    tau = np.asarray(taus, dtype=float)[:, None]
    off = np.broadcast_to(np.asarray(offsets, dtype=float)[None, :-1], (tau.shape[0], len(offsets) - 1))
    guess = tau + off
    finite = np.isfinite(guess) & np.isfinite(tau)
    width = 8 * np.spacing(np.maximum(np.maximum(np.abs(tau), np.abs(off)), np.abs(guess)))
    lo, hi = np.where(finite, guess - width, 0.0), np.where(finite, guess + width, 0.0)
    for _ in range(BISECTION_STEPS):  # invariant: lo − off < tau ≤ hi − off
        mid = lo + (hi - lo) / 2
        moving = (mid != lo) & (mid != hi)
        if not moving.any():
            break
        reach = mid - off >= tau
        hi = np.where(moving & reach, mid, hi)
        lo = np.where(moving & ~reach, mid, lo)
    return np.where(finite, hi, guess)


def fit_offsets(x: np.ndarray, loss: np.ndarray, cum: np.ndarray) -> np.ndarray:
    r"""``[L]`` per-exit offsets ``δ`` of the *offset* class: one threshold ``τ`` common to every
    exit on the shifted state ``x_i − δ_i``, i.e. the per-exit thresholds ``τ + δ_i``.

    ``δ`` maximises the area under the calibration frontier of the whole one-parameter family
    (:func:`curve_area`, every ``τ``), by coordinate ascent over the exits
    (:data:`OFFSET_PASSES` passes, each ``δ_i`` on the grid :data:`OFFSET_STEPS` times the
    standard deviation of ``x_{·,i}``; ``δ = 0`` -- the common class -- is the start, and a
    move is kept only if it raises the area). With measured exit costs in ``cum`` the offsets
    price them: an exit followed by an expensive one gets a lower threshold. ``δ_{L−1} = 0``
    (the last exit always stops). On more than :data:`OFFSET_MAX_EXAMPLES` examples, that many,
    evenly spaced, are read. Each trial's area is computed compiled, from exits sorted once
    (:class:`~ttamer.earlyexit.offset_area.ShiftedCurve`: :func:`curve_area` to rounding).
    """
    n, L = x.shape
    if n > OFFSET_MAX_EXAMPLES:
        keep = evenly(n, OFFSET_MAX_EXAMPLES)
        x, loss, cum = x[keep], loss[keep], cum[keep]
    delta = np.zeros(L)
    sd = x[:, : L - 1].std(axis=0)
    curve = ShiftedCurve(x, loss, cum)
    best = curve.area(delta)
    for _ in range(OFFSET_PASSES):  # coordinate ascent: loops over passes, exits and the grid
        moved = False
        for i in range(L - 1):
            for step in OFFSET_STEPS * sd[i]:
                if step == delta[i]:
                    continue  # the current offsets, whose area is ``best``
                trial = delta.copy()
                trial[i] = step
                area = curve.area(trial)
                if area > best + 1e-12:
                    best, delta, moved = area, trial, True
        if not moved:
            break
    return delta


def path_rules(vertices: np.ndarray, x: np.ndarray, max_rules: int) -> np.ndarray:
    """``[P, L−1]`` every distinct rule, as the examples ``x [N, L]`` tell them apart, on the
    path through the rules ``vertices [K, L−1]`` (linear in threshold between consecutive
    vertices): a rule changes only where some threshold crosses some example's state, so one
    rule between each two consecutive crossings, and the vertices, is the complete sweep of
    the path. Thinned evenly along the path to at most ``max_rules`` rules besides the vertices."""
    if len(vertices) < 2:
        return vertices.copy()
    head = x[:, :-1]
    finite = np.r_[head[np.isfinite(head)], vertices[np.isfinite(vertices)]]
    lo, hi = (finite.min() - 1.0, finite.max() + 1.0) if finite.size else (-1.0, 1.0)
    ends = np.clip(vertices, lo, hi)
    xs = np.sort(head, axis=0)
    params = [np.arange(len(ends), dtype=float)]
    params += [_crossings(xs[:, i], ends[:-1, i], ends[1:, i]) for i in range(head.shape[1])]  # a loop over exits
    s = np.unique(np.concatenate(params))
    s = np.unique(np.r_[s, (s[1:] + s[:-1]) / 2])
    if len(s) > max_rules:  # thin evenly, keeping the vertices
        s = np.union1d(s[evenly(len(s), max_rules)],
                       np.arange(len(ends), dtype=float))
    j = np.clip(np.floor(s).astype(np.int64), 0, len(ends) - 2)
    t = (s - j)[:, None]
    out = ends[j] + t * (ends[j + 1] - ends[j])
    out[s == np.floor(s)] = vertices[s[s == np.floor(s)].astype(np.int64)]  # the vertices themselves, exactly
    return out


def _crossings(xs: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Positions ``j + t``, ``0 < t < 1``, where the threshold moving linearly from ``a[j]`` to
    ``b[j]`` along segment ``j`` crosses one of the states ``xs`` (sorted): ``t = (x − a)/(b − a)``
    for the states strictly between the two ends, found by binary search."""
    first = np.searchsorted(xs, np.minimum(a, b), side="right")
    stop = np.searchsorted(xs, np.maximum(a, b), side="left")
    count = np.maximum(stop - first, 0)
    seg = np.repeat(np.arange(len(a)), count)
    at = np.arange(count.sum()) - np.repeat(np.cumsum(count) - count, count) + first[seg]
    t = (xs[at] - a[seg]) / (b[seg] - a[seg])
    keep = (t > 0) & (t < 1)
    return seg[keep] + t[keep]
