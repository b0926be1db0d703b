"""The frontier (the book's chapter *LP certificates and the error–cost frontier*): λ-sweep points lie on the budgeted-LP frontier, and between
two adjacent vertices the LP equals the best randomisation of the two."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from strategies import instances
from ttamer import SolverError, TTamerError
from ttamer.theory import frontier as fr

TOL = 1e-6


def test_lower_envelope():
    costs = [0.0, 1.0, 2.0, 3.0, 1.0, 2.5, 4.0]
    losses = [1.0, 0.5, 0.4, 0.1, 0.7, 0.45, 0.1]
    # (2, 0.4) lies above the segment (1, 0.5)-(3, 0.1); (4, 0.1) costs more for the same loss
    assert fr.lower_envelope(costs, losses).tolist() == [0, 1, 3]
    assert fr.lower_envelope([1.0], [2.0]).tolist() == [0]


def test_randomise():
    a, b = fr.FrontierPoint(0.9, 1.0, 0.5), fr.FrontierPoint(0.3, 3.0, 0.1)
    w, loss = fr.randomise(a, b, 1.5)
    assert w == pytest.approx(0.75) and loss == pytest.approx(0.4)
    assert fr.randomise(a, b, 1.0) == pytest.approx((1.0, 0.5))
    with pytest.raises(SolverError, match="not between"):
        fr.randomise(a, b, 4.0)
    with pytest.raises(SolverError, match="different expected cost"):
        fr.randomise(a, a, 1.0)
    lam = fr.tie_weight(a, b)
    assert a.tradeoff(lam) == pytest.approx(b.tradeoff(lam))
    assert fr.envelope_loss([a, b], 2.0) == pytest.approx(0.3)
    assert fr.envelope_loss([a, b], 0.5) == np.inf


@settings(max_examples=50, deadline=None)
@given(inst=instances(max_nodes=4, kmax=3, skips=True), recall=st.booleans(),
       lams=st.lists(st.floats(0.01, 1.0), min_size=1, max_size=4))
def test_sweep_points_lie_on_the_lp_frontier(inst, recall, lams):
    if not recall and not inst.is_chain:
        lams = lams[:2]  # exhaustive solver per point: keep it small
    pts = fr.index_sweep(inst, lams, recall)
    res = fr.lp_frontier(inst, [p.cost for p in pts], recall)
    for p, r in zip(pts, res):
        assert r.loss == pytest.approx(p.loss, abs=TOL)
    # λ = 0 (cost only): on or above the frontier
    p0 = fr.strategy_point(inst, 0.0, recall)
    assert fr.lp_frontier(inst, [p0.cost], recall)[0].loss <= p0.loss + TOL


@settings(max_examples=50, deadline=None)
@given(inst=instances(max_nodes=4, kmax=3, skips=True), recall=st.booleans())
def test_lp_between_vertices_is_the_randomisation(inst, recall):
    verts = fr.exact_frontier(inst, recall)
    costs = np.array([v.cost for v in verts])
    losses = np.array([v.loss for v in verts])
    assert np.all(np.diff(costs) > 0) and np.all(np.diff(losses) < 0)
    mids = (costs[1:] + costs[:-1]) / 2
    budgets = np.concatenate([costs, mids, [costs[-1] + 1.0]])
    res = fr.lp_frontier(inst, budgets, recall)
    got = np.array([r.loss for r in res])
    k = len(verts)
    assert got[:k] == pytest.approx(losses, abs=TOL)
    want_mid = [fr.randomise(a, b, m)[1] for a, b, m in zip(verts[:-1], verts[1:], mids)]
    assert got[k:-1] == pytest.approx(want_mid, abs=TOL)
    assert got[-1] == pytest.approx(losses[-1], abs=TOL)  # beyond the costliest vertex: flat
    for r in res[k:-1]:  # strictly between vertices the optimum randomises
        assert len(r.randomised) == 1


def test_exact_frontier_checks_its_arguments_first():
    from ttamer.theory.synthetic import random_instance

    inst = random_instance(3, "tree", n=4, k=3)
    for kw, match in [(dict(tol=-1.0), "tol"), (dict(eps=0.6), "eps"), (dict(eps=0.5), "eps"),
                      (dict(eps=float("nan")), "eps"), (dict(max_points=1.5), "max_points"),
                      (dict(max_points=1), "max_points")]:
        with pytest.raises(TTamerError, match=match):
            fr.exact_frontier(inst, **kw)
    for budgets in (5, ["x"], [float("nan")], [[1.0, 2.0]]):
        with pytest.raises(TTamerError, match="budgets"):
            fr.lp_frontier(inst, budgets)


def test_point_helpers_check_their_arguments():
    a, b = fr.FrontierPoint(0.9, 1.0, 0.5), fr.FrontierPoint(0.3, 3.0, 0.1)
    with pytest.raises(SolverError, match="tie at no lam"):
        fr.tie_weight(a, a)
    with pytest.raises(SolverError, match="tie at no lam"):
        fr.tie_weight(a, fr.FrontierPoint(0.5, 0.5, 0.2))  # cheaper and less lossy than a
    assert fr.tie_weight(b, a) == pytest.approx(fr.tie_weight(a, b))
    with pytest.raises(TTamerError, match="at least one point"):
        fr.envelope_loss([], 1.0)
    with pytest.raises(TTamerError, match="budget"):
        fr.envelope_loss([a, b], float("nan"))
    with pytest.raises(TTamerError, match="budget"):
        fr.randomise(a, b, "1")
    with pytest.raises(TTamerError, match=r"cost \(of a frontier point\) must be finite"):
        fr.FrontierPoint(0.5, float("nan"), 0.2)  # refused where it is made, before any helper reads it
    with pytest.raises(TTamerError, match=r"loss \(of a frontier point\) must be finite"):
        fr.FrontierPoint(0.5, 0.0, float("inf"))
    with pytest.raises(TTamerError, match="lam"):
        a.tradeoff(float("nan"))


@pytest.mark.parametrize("costs, losses, match", [([1, 2], [1], "same length"), ([1, np.nan, 3], [3, 2, 1], "finite"),
                                                  (["1"], [1], "costs"), ([[1, 2]], [[1, 2]], "costs"),
                                                  ([True], [1], "costs")])
def test_lower_envelope_refuses_bad_points(costs, losses, match):
    with pytest.raises(TTamerError, match=match):
        fr.lower_envelope(costs, losses)


metrics = pytest.importorskip("ttamer.earlyexit.metrics")
FRONT = np.array([[1.0, 0.5], [2.0, 0.6], [3.0, 0.7]])


@pytest.mark.parametrize("call, match", [
    (lambda: metrics.pareto_frontier([np.nan, 1], [0.5, 0.6]), r"cost\[0\] must be a finite number, got nan"),
    (lambda: metrics.hull_frontier([np.inf, 1], [0.5, 0.6]), r"cost\[0\] must be a finite number"),
    (lambda: metrics.pareto_frontier([1, 2], [np.nan, 0.5]), r"accuracy\[0\]"),
    (lambda: metrics.pareto_frontier([[1, 2]], [[0.5, 0.6]]), "cost must be a non-empty 1-D array"),
    (lambda: metrics.hull_frontier("ab", "cd"), "cost must be a non-empty 1-D array"),
    (lambda: metrics.pareto_indices([1.0, 2.0], [0.5]), "same length, got 2 and 1"),
    (lambda: metrics.accuracy_at(FRONT, 1.5, kind="bogus"), "frontier kind must be one of"),
    (lambda: metrics.accuracy_at(FRONT, np.nan), "cost must be a number, not nan"),
    (lambda: metrics.accuracy_at(np.zeros((0, 2)), 1.5), "front must be a non-empty 2-D array"),
    (lambda: metrics.accuracy_at(np.array([1.0, 2.0]), 1.5), "front must be a non-empty 2-D array"),
    (lambda: metrics.accuracy_at(FRONT[::-1], 1.5), r"front must be an \[M, 2\] array .* increasing cost"),
    (lambda: metrics.cost_at_accuracy(FRONT, -1), r"accuracy must be in \[0, 1\], got -1"),
    (lambda: metrics.cost_at_accuracy(FRONT, "x"), "accuracy must be a number"),
    (lambda: metrics.frontier_auc(FRONT, -np.inf, np.inf), "lo must be finite"),
    (lambda: metrics.frontier_auc(FRONT, "a", 1), "lo must be a number"),
])
def test_frontier_metrics_refuse_bad_points(call, match):
    with pytest.raises(TTamerError, match=match):
        call()


def test_frontier_metrics_keep_valid_inputs():
    assert metrics.pareto_frontier(np.array([2.0, 1.0]), np.array([0.6, 0.5])).tolist() == [[1.0, 0.5], [2.0, 0.6]]
    assert metrics.accuracy_at(FRONT, np.inf) == 0.7 and np.isnan(metrics.accuracy_at(FRONT, 0.5))
    assert metrics.cost_at_accuracy(FRONT, 1.0 + 1e-15) is None
