"""The frontier (the book's chapter *LP certificates and the error–cost frontier*): λ-sweep points lie on the budgeted-LP frontier, and between
two adjacent vertices the LP equals the best randomisation of the two."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from strategies import instances
from ttamer import SolverError
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
