"""Frontiers and metrics (SPEC §5.4) on hand-made points, and evaluate_trace end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ttamer.evaluation import (STRATEGIES, accuracy_at, bootstrap_band, cost_at_accuracy, dominates,
                               evaluate_trace, frontier_auc, pareto_frontier, strategy_metrics)
from ttamer.traces import synthetic_trace


def test_pareto_frontier_hand_made():
    cost = [0.5, 0.2, 0.2, 0.8, 0.6, 1.0]
    acc = [0.7, 0.5, 0.6, 0.65, 0.9, 0.9]
    f = pareto_frontier(cost, acc)
    np.testing.assert_allclose(f, [[0.2, 0.6], [0.5, 0.7], [0.6, 0.9]])


def test_accuracy_at_auc_and_cost_at_accuracy():
    f = np.array([[0.2, 0.6], [0.5, 0.7], [0.6, 0.9]])
    np.testing.assert_allclose(accuracy_at(f, [0.1, 0.2, 0.3, 0.5, 0.99]), [np.nan, 0.6, 0.6, 0.7, 0.9])
    # ∫_0.2^1 = 0.3*0.6 + 0.1*0.7 + 0.4*0.9 = 0.61 over a width of 0.8
    assert frontier_auc(f, 0.2, 1.0) == pytest.approx(0.61 / 0.8)
    # below the first point counts 0: ∫_0^1 = 0.61
    assert frontier_auc(f, 0.0, 1.0) == pytest.approx(0.61)
    assert frontier_auc(f, 0.3, 0.55) == pytest.approx((0.2 * 0.6 + 0.05 * 0.7) / 0.25)
    assert cost_at_accuracy(f, 0.65) == pytest.approx(0.5)
    assert cost_at_accuracy(f, 0.9) == pytest.approx(0.6)
    assert cost_at_accuracy(f, 0.95) is None


def test_strategy_metrics_hand_made():
    f = np.array([[0.2, 0.6], [0.5, 0.79], [0.6, 0.80]])
    m = strategy_metrics(f, full_accuracy=0.8, cost_range=(0.2, 1.0), oracle_saving=0.8)
    assert m["cost_at_full_accuracy"] == pytest.approx(0.6)
    assert m["cost_at_full_accuracy_minus_0.5pt"] == pytest.approx(0.6)
    assert m["cost_at_full_accuracy_minus_1pt"] == pytest.approx(0.5)
    assert m["cost_saved_at_full_accuracy"] == pytest.approx(0.4)
    assert m["oracle_gain_share"] == pytest.approx(0.5)
    assert m["accuracy_at_cost"] == {"0.25": 0.6, "0.5": 0.79, "0.75": 0.8}
    never = strategy_metrics(f, full_accuracy=0.95, cost_range=(0.2, 1.0), oracle_saving=0.8)
    assert never["cost_at_full_accuracy"] is None and never["oracle_gain_share"] is None


def test_bootstrap_band_contains_point_estimate():
    rng = np.random.default_rng(0)
    n = 400
    correct = np.stack([rng.random(n) < 0.6, rng.random(n) < 0.8])
    cost = np.stack([np.full(n, 0.3), np.full(n, 0.9)])
    grid = np.array([0.1, 0.5, 1.0])
    lo, hi = bootstrap_band(correct, cost, grid, n_boot=300, seed=1)
    assert np.isnan(lo[0]) and np.isnan(hi[0])
    assert lo[1] <= correct[0].mean() <= hi[1] and lo[2] <= correct[1].mean() <= hi[2]
    assert 0.02 < hi[1] - lo[1] < 0.15  # about ±1.96·sqrt(.24/400) ≈ ±0.048


@pytest.fixture(scope="module")
def result():
    t = synthetic_trace(800, 5, 3, seed=11)
    return evaluate_trace(t, seed=0, n_boot=50, tamer={"state": None, "cv_lams": np.linspace(0.5, 0.99, 6)})


def test_evaluate_trace_schema(result):
    json.dumps(result, allow_nan=False)
    assert set(result["strategies"]) == set(STRATEGIES)
    assert 0 < result["full_model"]["accuracy"] <= 1
    assert result["split"]["n_calibration"] == 400 and result["split"]["n_test"] == 400
    for name, m in result["strategies"].items():
        f = np.asarray(m["frontier"])
        assert f.ndim == 2 and f.shape[1] == 2
        assert np.all(np.diff(f[:, 0]) >= 0) and np.all(np.diff(f[:, 1]) > 0)
        assert 0 <= m["auc"] <= 1
        assert m["cost_at_full_accuracy"] is None or 0 < m["cost_at_full_accuracy"] <= 1 + 1e-9
        assert len(m["band"]["lower"]) == len(m["band"]["cost"])


def test_evaluate_trace_sanity(result):
    s = result["strategies"]
    full = result["full_model"]["accuracy"]
    # static exits reach the full model at cost 1; the oracle is the best frontier
    assert s["static"]["cost_at_full_accuracy"] == pytest.approx(1.0)
    assert s["oracle"]["auc"] >= max(m["auc"] for m in s.values()) - 1e-12
    assert s["oracle"]["oracle_gain_share"] == pytest.approx(1.0)
    assert max(a for _, a in s["oracle"]["frontier"]) >= full
    assert dominates(result, "oracle", "static")
