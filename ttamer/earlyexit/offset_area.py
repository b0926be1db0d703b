r"""The area that the offset class maximises, compiled: what
:func:`~ttamer.earlyexit.thresholds.fit_offsets` evaluates for every trial of its coordinate
ascent.

For offsets :math:`\delta` the common-threshold rule on the shifted state
:math:`y_{n,i} = x_{n,i} - \delta_i` stops example :math:`n` at the first exit
:math:`i < L-1` with :math:`y_{n,i} \ge \tau`. Its curve over every distinct :math:`\tau`
(:func:`~ttamer.earlyexit.thresholds.common_threshold_curve`) changes only at the *records* of
each example (a :math:`y_{n,i}` above every earlier one), and lowering :math:`\tau` past record
:math:`(n, i)` moves the example's stop from its next record (or the end) to :math:`i`. The
curve is the running sum of those moves taken in decreasing order of :math:`y`, and the area
is that of its Pareto frontier (:func:`~ttamer.earlyexit.thresholds.curve_area`).

NumPy sorts all the records for every trial. Here each exit's states are sorted once
(:class:`ShiftedCurve`): a shift moves a whole exit by the same :math:`\delta_i`, which keeps
its order, so every trial merges the :math:`L-1` presorted exits instead of sorting. The
records, moves, curve, frontier and area follow in the same pass, with the same arithmetic up
to the order in which moves of exactly equal :math:`y` are added (the areas agree to rounding;
the tests compare them with :func:`~ttamer.earlyexit.thresholds.curve_area`).
"""

from __future__ import annotations

import numpy as np

from ..core.compiled import compiled

#: A Pareto point is kept only if it is more accurate than every cheaper one by more than this
#: (as :func:`~ttamer.earlyexit.metrics.pareto_frontier`).
PARETO_EPS = 1e-12


class ShiftedCurve:
    """The examples ``x``, ``loss``, ``cum`` ``[N, L]`` of :func:`~ttamer.earlyexit.thresholds.curve_area`,
    prepared once (each exit's states sorted, the sums that do not depend on the offsets);
    :meth:`area` is ``curve_area(x - delta, loss, cum)`` for any offsets ``delta``."""

    def __init__(self, x: np.ndarray, loss: np.ndarray, cum: np.ndarray) -> None:
        n, L = x.shape
        self.x = np.ascontiguousarray(x, dtype=np.float64)
        self.loss = np.ascontiguousarray(loss, dtype=np.float64)
        self.cum = np.ascontiguousarray(cum, dtype=np.float64)
        # per exit, examples by decreasing state, ties by index (a stable sort of −x)
        self.order = np.ascontiguousarray(np.argsort(-self.x[:, : L - 1].T, axis=1, kind="stable"))
        #: Total loss and cost when no exit stops early (``τ = +∞``), the full model's mean cost
        #: (the cost unit) and the left end of the area (exit 0 alone, in that unit).
        self.loss_sum, self.cost_sum = float(self.loss[:, -1].sum()), float(self.cum[:, -1].sum())
        self.scale = float(self.cum[:, -1].mean())
        self.lo = min(float(self.cum[:, 0].mean()) / self.scale, 1 - 1e-9)

    def area(self, delta: np.ndarray) -> float:
        """Area under the frontier of the rule on ``x − delta`` swept over every threshold,
        costs as fractions of the full model's, from exit 0 alone to the full model."""
        y, rec, dl, dc = _moves(self.x, self.loss, self.cum, np.asarray(delta, dtype=np.float64))
        mean_loss, mean_cost = _curve(self.order, y, rec, dl, dc, self.loss_sum, self.cost_sum)
        return float(_frontier_area(mean_loss, mean_cost, self.scale, self.lo))


@compiled
def _moves(x: np.ndarray, loss: np.ndarray, cum: np.ndarray, delta: np.ndarray) -> tuple:
    """Per example and exit ``i < L−1``: the shifted state, whether it is a record, and the
    change of loss and cost when the example stops at ``i`` instead of its next record."""
    n, L = x.shape
    m = L - 1
    y = np.empty((n, m))
    rec = np.zeros((n, m), dtype=np.bool_)
    dl = np.empty((n, m))
    dc = np.empty((n, m))
    for r in range(n):
        best = -np.inf
        for i in range(m):
            y[r, i] = x[r, i] - delta[i]
            if y[r, i] > best:
                rec[r, i] = True
                best = y[r, i]
        nxt = m  # the first record after i, or the end
        for i in range(m - 1, -1, -1):
            dl[r, i] = loss[r, i] - loss[r, nxt]
            dc[r, i] = cum[r, i] - cum[r, nxt]
            if rec[r, i]:
                nxt = i
    return y, rec, dl, dc


@compiled
def _curve(order: np.ndarray, y: np.ndarray, rec: np.ndarray, dl: np.ndarray, dc: np.ndarray,
           loss_sum: float, cost_sum: float) -> tuple:
    """Mean loss and mean cost at ``τ = +∞`` and after each distinct record value, in
    decreasing order: each exit's records laid out in its presorted order, then merged (ties:
    the lower example, then the lower exit)."""
    m, n = order.shape
    start = np.zeros(m + 1, dtype=np.int64)
    for i in range(m):
        start[i + 1] = start[i]
        for k in range(n):
            start[i + 1] += rec[order[i, k], i]
    count = start[m]
    val, row = np.empty(count), np.empty(count, dtype=np.int64)
    move_loss, move_cost = np.empty(count), np.empty(count)
    for i in range(m):
        j = start[i]
        for k in range(n):
            r = order[i, k]
            if rec[r, i]:
                val[j], row[j], move_loss[j], move_cost[j] = y[r, i], r, dl[r, i], dc[r, i]
                j += 1
    mean_loss = np.empty(count + 1)
    mean_cost = np.empty(count + 1)
    mean_loss[0], mean_cost[0] = loss_sum / n, cost_sum / n
    head = start[:m].copy()
    sl, sc, k, last = 0.0, 0.0, 0, np.nan
    for _ in range(count):
        pick, col = -1, -1
        for i in range(m):
            h = head[i]
            if h < start[i + 1] and (pick < 0 or val[h] > val[pick] or (val[h] == val[pick] and row[h] < row[pick])):
                pick = h
                col = i
        v = val[pick]
        if k > 0 and v != last:
            mean_loss[k], mean_cost[k] = (loss_sum + sl) / n, (cost_sum + sc) / n
        if k == 0 or v != last:
            k += 1
        sl += move_loss[pick]
        sc += move_cost[pick]
        head[col] += 1
        last = v
    if count > 0:
        mean_loss[k], mean_cost[k] = (loss_sum + sl) / n, (cost_sum + sc) / n
    return mean_loss[: k + 1], mean_cost[: k + 1]


@compiled
def _frontier_area(mean_loss: np.ndarray, mean_cost: np.ndarray, scale: float, lo: float) -> float:
    """Area over ``[lo, 1]`` under the Pareto staircase of the points (cost non-increasing
    along the arrays, as the curve's), as :func:`~ttamer.earlyexit.metrics.frontier_auc`."""
    total, prev_best = 0.0, -np.inf
    c_prev, a_prev, have = 0.0, 0.0, False
    j = len(mean_cost) - 1
    while j >= 0:  # cost increasing; equal costs: the most accurate of them
        c = mean_cost[j] / scale
        a = 1.0 - mean_loss[j]
        while j > 0 and mean_cost[j - 1] / scale == c:
            j -= 1
            a = max(a, 1.0 - mean_loss[j])
        j -= 1
        if a > prev_best + PARETO_EPS:
            if have:
                total += max(min(c, 1.0) - max(c_prev, lo), 0.0) * a_prev
            c_prev, a_prev, have = c, a, True
        prev_best = max(prev_best, a)
    if have:
        total += max(1.0 - max(c_prev, lo), 0.0) * a_prev
    return total / (1.0 - lo)
