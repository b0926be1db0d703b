"""Early-exit heuristics (the book's chapter *Early exit on real models*) against simple per-example reference loops."""

from __future__ import annotations

import numpy as np
import pytest

from ttamer.earlyexit import baselines as bl
from ttamer.core.errors import TTamerError
from ttamer.earlyexit.traces import synthetic_trace


@pytest.fixture(scope="module")
def trace():
    return synthetic_trace(60, 5, 3, seed=7, per_example_cost=True)


def _cum(trace, e, k):
    return float(trace.cost_matrix[e, : k + 1].sum())


def test_max_prob_threshold_matches_loop(trace):
    th = np.array([0.0, 0.4, 0.6, 0.8, 0.95, 2.0])
    mp = trace.max_prob
    for fallback in ("last", "confident"):
        d = bl.max_prob_threshold(trace, th, fallback=fallback)
        assert d.answer.shape == (len(th), trace.n_examples)
        for p, t in enumerate(th):
            for e in range(trace.n_examples):
                stop = next((i for i in range(trace.n_exits) if mp[e, i] >= t), None)
                last = trace.n_exits - 1 if stop is None else stop
                ans = last if stop is not None or fallback == "last" else int(np.argmax(mp[e]))
                assert d.last[p, e] == last and d.answer[p, e] == ans
                assert d.cost[p, e] == pytest.approx(_cum(trace, e, last))
    with pytest.raises(TTamerError, match="fallback"):
        bl.max_prob_threshold(trace, th, fallback="nope")


def test_entropy_threshold_matches_loop(trace):
    th = np.array([-1.0, 0.3, 0.7, 1.0, 5.0])
    h = trace.entropy
    d = bl.entropy_threshold(trace, th)
    for p, t in enumerate(th):
        for e in range(trace.n_examples):
            stop = next((i for i in range(trace.n_exits) if h[e, i] <= t), trace.n_exits - 1)
            assert d.last[p, e] == stop and d.answer[p, e] == stop


def test_patience_matches_loop(trace):
    pred = trace.predictions
    d = bl.patience(trace, [0, 1, 2, 3, 4])
    for p, t in enumerate([0, 1, 2, 3, 4]):
        for e in range(trace.n_examples):
            counter, stop = 0, trace.n_exits - 1
            for i in range(trace.n_exits):
                if i > 0:
                    counter = counter + 1 if pred[e, i] == pred[e, i - 1] else 0
                if counter >= t:
                    stop = i
                    break
            assert d.last[p, e] == stop, (t, e)
    np.testing.assert_array_equal(d.last[0], 0)


def test_static_full_and_oracle(trace):
    st = bl.static_exit(trace)
    for k in range(trace.n_exits):
        np.testing.assert_array_equal(st.answer[k], k)
    full = bl.full_model(trace)
    np.testing.assert_array_equal(full.answer[0], trace.n_exits - 1)
    np.testing.assert_allclose(full.cost[0], trace.full_cost)
    orc = bl.oracle(trace)
    right = trace.correct
    for e in range(trace.n_examples):
        for k in range(trace.n_exits):
            first = next((i for i in range(k + 1) if right[e, i]), k)
            assert orc.answer[k, e] == first
    # the classical oracle is at least as accurate as any exit and never costs more than the full model
    acc = orc.correct(trace)[-1].mean()
    assert acc >= right.mean(axis=0).max() and (orc.cost[-1] <= trace.full_cost + 1e-12).all()
    with pytest.raises(TTamerError):
        bl.static_exit(trace, [5])


def test_default_thresholds_span_both_extremes(trace):
    th = bl.default_thresholds(trace.max_prob, 20)
    d = bl.max_prob_threshold(trace, th)
    assert (d.last[0] == 0).all()  # lowest threshold: everyone stops at exit 0
    assert (d.last[-1] == trace.n_exits - 1).all()  # highest: nobody stops early


def test_oracle_frontier_bounds_every_strategy(trace):
    from ttamer.earlyexit.evaluation import accuracy_at, sweep_points
    from ttamer.earlyexit.metrics import pareto_frontier

    orc = bl.oracle_frontier(trace)
    p = sweep_points(orc, trace)
    assert np.all(np.diff(p["cost"]) >= -1e-12) and np.all(np.diff(p["accuracy"]) > 0)
    assert p["accuracy"][0] == pytest.approx(trace.correct[:, 0].mean())
    assert p["accuracy"][-1] == pytest.approx(trace.correct.any(axis=1).mean())
    front = pareto_frontier(p["cost"], p["accuracy"])
    for d in (bl.max_prob_threshold(trace), bl.static_exit(trace), bl.patience(trace), bl.oracle(trace)):
        q = sweep_points(d, trace)
        # each point is at most as accurate as the oracle at the same cost (up to one example)
        assert np.all(q["accuracy"] <= accuracy_at(front, q["cost"]) + 1.0 / trace.n_examples + 1e-12)


@pytest.mark.parametrize("call, match", [
    (lambda t: bl.patience(t, [1.5]), "patiences must be a non-empty 1-D array of integers"),
    (lambda t: bl.patience(t, [True]), "patiences must be"),
    (lambda t: bl.patience(t, [np.nan]), "patiences must be"),
    (lambda t: bl.patience(t, [-1]), "patiences must be .* >= 0, got -1"),
    (lambda t: bl.static_exit(t, [1.5]), "exits must be"),
    (lambda t: bl.static_exit(t, [True]), "exits must be"),
    (lambda t: bl.static_exit(t, [2**63]), r"exits must be .* in 0\.\.4"),
    (lambda t: bl.oracle(t, budgets=[-1]), r"budgets must be .* in 0\.\.4, got -1"),
    (lambda t: bl.oracle(t, budgets=[1.5]), "budgets must be"),
    (lambda t: bl.oracle(t, budgets=[10**12]), "budgets must be"),
    (lambda t: bl.oracle_frontier(t, n_points=-1), "n_points must be >= 2"),
    (lambda t: bl.oracle_frontier(t, n_points="3"), "n_points must be an integer"),
    (lambda t: bl.oracle_frontier(t, n_points=10**9), "n_points must be <= 2000"),
    (lambda t: bl.full_model(None), "full_model expects a ttamer Trace"),
    (lambda t: bl.max_prob_threshold(t, [np.nan]), r"thresholds\[0\] must be a number, not nan"),
    (lambda t: bl.max_prob_threshold(t, []), "thresholds must be a non-empty"),
    (lambda t: bl.max_prob_threshold(t, [[0.5]]), "thresholds must be a non-empty 1-D"),
    (lambda t: bl.entropy_threshold(t, "x"), "thresholds must be"),
    (lambda t: bl.entropy_threshold(t, np.full(10**5, 0.5)), "at most 2,000"),
    (lambda t: bl.default_thresholds(t.max_prob, 0), "n must be >= 4"),
    (lambda t: bl.default_thresholds(t.max_prob, 1.5), "n must be an integer"),
    (lambda t: bl.default_thresholds(np.array([])), "values must be a non-empty"),
])
def test_bad_baseline_arguments_are_named(trace, call, match):
    with pytest.raises(TTamerError, match=match):
        call(trace)


def test_baselines_keep_numpy_integers_and_infinite_thresholds(trace):
    assert bl.static_exit(trace, np.arange(2, dtype=np.uint8)).last[:, 0].tolist() == [0, 1]
    assert bl.oracle(trace, budgets=np.array([4], dtype=np.int32)).last.shape == (1, trace.n_examples)
    assert (bl.max_prob_threshold(trace, [np.inf]).last == 4).all()


heuristics = pytest.importorskip("ttamer.earlyexit.heuristics")


@pytest.mark.parametrize("call, match", [
    (lambda t: heuristics.threshold_curve(None, "max-prob"), "threshold_curve expects a ttamer Trace"),
    (lambda t: heuristics.sweep(t, "max-prob", [[0.5]]), "taus must be a non-empty 1-D"),
    (lambda t: heuristics.sweep(t, "max-prob", "x"), "taus must be"),
    (lambda t: heuristics.sweep(t, "max-prob", [np.nan]), r"taus\[0\] must be a number, not nan"),
    (lambda t: heuristics.complete_sweep(t, "max-prob", max_points=0), "max_points must be >= 2"),
    (lambda t: heuristics.complete_sweep(t, "max-prob", max_points=1.5), "max_points must be an integer"),
    (lambda t: heuristics.complete_sweep(t, "max-prob", max_points="5"), "max_points must be an integer"),
])
def test_bad_heuristic_arguments_are_named(trace, call, match):
    with pytest.raises(TTamerError, match=match):
        call(trace)
