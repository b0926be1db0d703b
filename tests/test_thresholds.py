"""Threshold rules on a chain of exits: every fast routine against a brute-force loop."""

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from ttamer.earlyexit.thresholds import (backward_thresholds, budget_points, common_threshold_curve, curve_area,
                                         first_stop, fit_offsets, frontier_taus, hull_choice, lower_hull, path_rules,
                                         quantile_path, rule_points, shifted_thresholds)
from ttamer.earlyexit.offset_area import ShiftedCurve


def _problem(seed: int, n: int, L: int, ties: bool):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 4, (n, L)).astype(float) if ties else rng.random((n, L))
    loss = rng.integers(0, 2, (n, L)).astype(float)
    costs = rng.uniform(0.05, 1.0, L)
    cum = np.cumsum(np.broadcast_to(costs, (n, L)), axis=1)
    return x, loss, costs, cum


def _loop_stop(x, tau):
    """Reference: walk the exits one by one."""
    n, L = x.shape
    out = np.full(n, L - 1)
    for k in range(n):
        for i in range(L - 1):
            if x[k, i] >= tau[i]:
                out[k] = i
                break
    return out


params = dict(seed=st.integers(0, 10**6), n=st.integers(1, 25), L=st.integers(2, 5), ties=st.booleans())


@settings(max_examples=150, deadline=None)
@given(**params)
def test_first_stop_matches_a_loop(seed, n, L, ties):
    x, _, _, _ = _problem(seed, n, L, ties)
    taus = np.random.default_rng(seed + 1).choice(np.r_[x.ravel(), -np.inf, np.inf], (4, L - 1))
    got = first_stop(x, taus)
    for p in range(4):
        assert np.array_equal(got[p], _loop_stop(x, taus[p]))


@settings(max_examples=150, deadline=None)
@given(**params)
def test_common_curve_is_every_threshold(seed, n, L, ties):
    """The curve holds the mean loss and cost of the rule at each of its thresholds, and every
    threshold one could pick gives a rule equal to one of them."""
    x, loss, _, cum = _problem(seed, n, L, ties)
    end = np.random.default_rng(seed).integers(0, 2, n).astype(float)
    taus, mean_loss, mean_cost = common_threshold_curve(x, loss, cum, end)
    assert taus[0] == np.inf and np.all(np.diff(taus[1:]) < 0)
    rows = np.arange(n)
    for t, ml, mc in zip(taus, mean_loss, mean_cost):
        last = _loop_stop(x, np.full(L - 1, t))
        assert np.isclose(np.where(last == L - 1, end, loss[rows, last]).mean(), ml)
        assert np.isclose(cum[rows, last].mean(), mc)
    points = {(round(c, 9), round(l_, 9)) for c, l_ in zip(mean_cost, mean_loss)}
    for t in np.r_[np.unique(x), -np.inf]:
        last = _loop_stop(x, np.full(L - 1, t))
        pt = (round(cum[rows, last].mean(), 9), round(np.where(last == L - 1, end, loss[rows, last]).mean(), 9))
        assert pt in points


@settings(max_examples=100, deadline=None)
@given(seed=st.integers(0, 10**6), n=st.integers(1, 7), L=st.integers(2, 3), ties=st.booleans())
def test_backward_thresholds_are_stagewise_optimal(seed, n, L, ties):
    """At each exit the threshold minimises the realised trade-off over every possible cut,
    given the rule from the next exit on (brute force over all thresholds)."""
    x, loss, costs, _ = _problem(seed, n, L, ties)
    lams = np.array([0.0, 0.2, 0.7, 0.95, 1.0])
    taus = backward_thresholds(x, loss, costs, lams)
    for p, lam in enumerate(lams):
        G = lam * loss[:, L - 1]
        for i in range(L - 2, -1, -1):
            cont, stop = (1 - lam) * costs[i + 1] + G, lam * loss[:, i]
            best = min(np.where(x[:, i] >= t, stop, cont).sum() for t in np.r_[-np.inf, np.unique(x[:, i]), np.inf])
            got = np.where(x[:, i] >= taus[p, i], stop, cont)
            assert got.sum() <= best + 1e-9
            G = got


def test_backward_thresholds_limits():
    """λ = 0: cost alone counts, so exit 0 stops everything; λ = 1 with free continuation: no
    stop that a later exit would improve on."""
    x, loss, costs, _ = _problem(3, 40, 4, False)
    taus = backward_thresholds(x, loss, costs, np.array([0.0, 1.0]))
    assert np.all(first_stop(x, taus[:1]) == 0)
    last = first_stop(x, taus[1:])[0]
    assert loss[np.arange(40), last].mean() <= loss[:, -1].mean() + 1e-12


def test_lower_hull_and_choice():
    cost = np.array([0.0, 0.2, 0.5, 0.6, 1.0, 0.5])
    loss = np.array([1.0, 0.5, 0.4, 0.1, 0.0, 0.45])
    v = lower_hull(cost, loss)
    assert list(v) == [0, 1, 3, 4]
    lams = np.linspace(0, 1, 101)
    pick = hull_choice(cost, loss, lams)
    brute = [int(np.argmin(l_ * loss + (1 - l_) * cost - 1e-12 * loss)) for l_ in lams]
    vals = lams * loss[pick] + (1 - lams) * cost[pick]
    assert np.allclose(vals, [l_ * loss[b] + (1 - l_) * cost[b] for l_, b in zip(lams, brute)])


@settings(max_examples=100, deadline=None)
@given(seed=st.integers(0, 10**6), n=st.integers(1, 60), res=st.sampled_from([1e-3, 0.05, 0.3]))
def test_budget_points_are_pareto_and_cover_the_budgets(seed, n, res):
    rng = np.random.default_rng(seed)
    cost, loss = rng.random(n).round(2), rng.random(n).round(2)
    keep = budget_points(cost, loss, res)
    for k in keep:  # nothing as cheap is more accurate
        assert not np.any((cost <= cost[k]) & (loss < loss[k]))
    for b in np.arange(cost.min(), cost.max() + res, res):  # each budget's best loss is kept (within res)
        within = cost <= b
        if within.any():
            near = keep[cost[keep] <= b + 1e-12]
            assert loss[near].min() <= loss[within].min() + 1e-12 or cost[within].max() > cost[near].max()


def test_quantile_path_moves_between_rules():
    x, loss, costs, cum = _problem(5, 200, 4, False)
    a, b = np.full(3, 0.9), np.array([0.1, 0.5, -np.inf])
    xs = np.sort(x[:, :3], axis=0)
    path = quantile_path(xs, a, b, 9)
    costs_path = rule_points(x, loss, cum, np.vstack([a, path, b]))[1]
    assert costs_path[0] >= costs_path[-1]
    assert np.all(np.diff(costs_path) <= 1e-12)  # every threshold falls, so every example stops earlier


def test_frontier_taus_reach_the_complete_frontier():
    x, loss, _, cum = _problem(11, 300, 5, True)
    taus, ml, mc = common_threshold_curve(x, loss, cum)
    kept = frontier_taus(x, loss, cum, max_points=10**6)
    got_loss, got_cost = rule_points(x, loss, cum, np.repeat(kept[:, None], 4, axis=1))
    for c, l_ in zip(mc, ml):  # every point of the complete sweep is matched or beaten by a kept one
        assert np.any((got_cost <= c + 1e-12) & (got_loss <= l_ + 1e-12))


def test_chunked_first_stop(monkeypatch):
    import ttamer.earlyexit.thresholds as th

    x, _, _, _ = _problem(2, 50, 4, False)
    taus = np.random.default_rng(0).random((37, 3))
    whole = first_stop(x, taus)
    monkeypatch.setattr(th, "CHUNK_ELEMENTS", 7 * 50 * 4)
    assert np.array_equal(th.first_stop(x, taus), whole)
    monkeypatch.setattr(th, "CHUNK_ELEMENTS", 64)
    lams = np.linspace(0, 1, 9)
    _, loss, costs, _ = _problem(2, 50, 4, False)
    full = backward_thresholds(x, loss, costs, lams)
    assert np.array_equal(th.backward_thresholds(x, loss, costs, lams), full)


@pytest.mark.parametrize("L", [2, 6])
def test_common_curve_endpoints(L):
    x, loss, _, cum = _problem(7, 30, L, False)
    taus, ml, mc = common_threshold_curve(x, loss, cum)
    assert np.isclose(ml[0], loss[:, -1].mean()) and np.isclose(mc[0], cum[:, -1].mean())
    assert np.isclose(mc[-1], cum[:, 0].mean())  # the lowest threshold stops everything at exit 0


def test_budget_points_come_cost_first():
    cost = np.array([0.9, 0.1, 0.5, 0.3])
    loss = np.array([0.0, 0.9, 0.2, 0.5])
    keep = budget_points(cost, loss, 0.01)
    assert list(keep) == [1, 3, 2, 0]


@settings(max_examples=60, deadline=None)
@given(**params)
def test_fit_offsets_never_lowers_the_calibration_area(seed, n, L, ties):
    """The offsets start at zero (the common class) and keep a move only if the area rises; the
    area they report is the area of the shifted common curve, recomputed independently."""
    x, loss, _, cum = _problem(seed, n, L, ties)
    delta = fit_offsets(x, loss, cum)
    assert delta.shape == (L,) and delta[-1] == 0.0
    base, shifted = curve_area(x, loss, cum), curve_area(x - delta, loss, cum)
    assert shifted >= base - 1e-12
    # independent: the staircase of (cost, accuracy) of every threshold of the shifted state, by a loop
    scale = cum[:, -1].mean()
    rows = np.arange(n)
    pts = []
    for t in np.r_[np.unique((x - delta)[:, :-1]), np.inf]:
        last = _loop_stop(x - delta, np.full(L - 1, t))
        pts.append((cum[rows, last].mean() / scale, 1 - loss[rows, last].mean()))
    pts = np.array(pts)
    lo = min(cum[:, 0].mean() / scale, 1 - 1e-9)
    grid = np.linspace(lo, 1.0, 4001)
    assert pts[:, 0].min() <= lo + 1e-12  # the cheapest rule (stop at exit 0) costs lo
    stair = np.array([pts[pts[:, 0] <= g + 1e-12, 1].max() for g in grid])
    assert abs(np.trapezoid(stair, grid) / (1.0 - lo) - shifted) < 5e-3


@settings(max_examples=200, deadline=None)
@given(**params, shift=st.sampled_from(["none", "random", "ties"]), flat_costs=st.booleans())
def test_compiled_area_is_the_numpy_area(seed, n, L, ties, shift, flat_costs):
    """The area fit_offsets maximises, merged from presorted exits (offset_area), equals
    curve_area's on the shifted state -- with tied states, shifts that create ties across exits,
    and exits that cost nothing more than the previous one (tied costs on the curve)."""
    x, loss, costs, cum = _problem(seed, n, L, ties)
    if flat_costs:
        cum = np.broadcast_to(np.cumsum(np.r_[costs[0], np.zeros(L - 1)]), (n, L))
    rng = np.random.default_rng(seed + 2)
    delta = {"none": np.zeros(L), "random": rng.normal(0, 0.3, L),
             "ties": rng.integers(-2, 3, L).astype(float)}[shift]
    delta[-1] = 0.0
    assert ShiftedCurve(x, loss, cum).area(delta) == pytest.approx(curve_area(x - delta, loss, cum), abs=1e-12)


def test_offsets_price_an_expensive_next_exit():
    """Two exits, the same confidence scale; exit 1 is very expensive and rarely better: the
    fitted offset lowers exit 0's threshold relative to the common rule's."""
    rng = np.random.default_rng(0)
    n = 400
    x = rng.random((n, 3))
    loss = (rng.random((n, 3)) > x).astype(float)  # confident exits are right
    loss[:, 2] = np.minimum(loss[:, 2], loss[:, 1])
    cum = np.cumsum(np.broadcast_to([0.05, 0.9, 0.05], (n, 3)), axis=1)
    delta = fit_offsets(x, loss, cum)
    assert delta[0] < 0.0 and curve_area(x - delta, loss, cum) > curve_area(x, loss, cum)


@settings(max_examples=100, deadline=None)
@given(**params)
def test_path_rules_are_the_complete_sweep_of_the_path(seed, n, L, ties):
    """Every rule on the path (sampled finely between its vertices) decides exactly as one of
    the rules :func:`path_rules` returns, and the vertices are among them."""
    x, _, _, _ = _problem(seed, n, L, ties)
    rng = np.random.default_rng(seed + 7)
    vertices = np.sort(rng.choice(np.r_[np.unique(x), -np.inf, np.inf], (3, L - 1)), axis=0)
    rules = path_rules(vertices, x, 10**6)
    got = {tuple(r) for r in first_stop(x, rules)}
    for v in first_stop(x, vertices):
        assert tuple(v) in got
    lo, hi = x.min() - 1.0, x.max() + 1.0
    ends = np.clip(vertices, lo, hi)
    for s in np.linspace(0, 2, 2001):
        j = min(int(s), 1)
        t = s - j
        rule = ends[j + 1] if t == 1 else ends[j] + t * (ends[j + 1] - ends[j])  # path_rules' interpolation
        assert tuple(first_stop(x, rule[None])[0]) in got


@settings(max_examples=150, deadline=None)
@given(**params)
def test_shifted_thresholds_stop_exactly_where_the_shifted_state_does(seed, n, L, ties):
    """Per-exit thresholds from a common threshold on the shifted state decide, for every
    example and exit, exactly as the shifted comparison x − δ ≥ τ (also at the fitted
    thresholds themselves, where τ + δ alone can miss by one float step)."""
    x, _, _, _ = _problem(seed, n, L, ties)
    delta = np.r_[np.random.default_rng(seed + 3).normal(0, 0.3, L - 1), 0.0]
    taus = np.r_[np.unique((x - delta)[:, :-1]), -np.inf, np.inf]
    t = shifted_thresholds(taus, delta)
    assert t.shape == (len(taus), L - 1)
    assert np.array_equal(x[None, :, :-1] >= t[:, None, :], (x - delta)[None, :, :-1] >= taus[:, None, None])
    assert np.array_equal(shifted_thresholds(taus, np.zeros(L)), np.repeat(taus[:, None], L - 1, axis=1))
