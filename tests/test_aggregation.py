"""State aggregation (the book's chapter *Optimality of the index strategy with recall*): q = K is exact, the lifted policy never beats the optimum."""

from __future__ import annotations

import numpy as np
import pytest

from ttamer import TTamerError, evaluate_exactly, simulate, solve
from ttamer.theory.aggregation import (
    LiftedPolicy, aggregate_instance, aggregation_error, cluster_states, kmeans_labels,
    loss_quantile_labels,
)
from ttamer.theory.synthetic import marginals, random_instance

CASES = [(kind, seed) for kind in ("chain", "tree", "forest", "skips") for seed in range(3)]


@pytest.mark.parametrize("kind,seed", CASES)
@pytest.mark.parametrize("method", ["loss", "kmeans"])
@pytest.mark.parametrize("recall", [True, False])
def test_error_nonnegative_and_zero_at_full_resolution(kind, seed, method, recall):
    inst = random_instance(seed, kind=kind, n=4, k=5, cost_scale=0.05, correlation=0.6)
    opt = solve(inst, 0.7, recall=recall).value
    for q in (1, 2, 3, 5):
        res = aggregation_error(inst, 0.7, q, recall=recall, method=method, optimum=opt)
        assert res.error >= -1e-12, (q, res.error)
        assert res.lifted >= opt - 1e-12
    assert abs(res.error) <= 1e-12  # q = K reproduces the exact value


@pytest.mark.parametrize("method", ["loss", "kmeans"])
def test_aggregation_keeps_marginals_and_mean_loss(method):
    inst = random_instance(7, kind="tree", n=5, k=6, correlation=0.8)
    labels = cluster_states(inst, 3, method, seed=0)
    agg = aggregate_instance(inst, labels)
    pi, pa = marginals(inst), marginals(agg)
    for v in range(inst.n):
        assert agg.n_states[v] == 3
        np.testing.assert_allclose(pa[v], np.bincount(labels[v], weights=pi[v]), atol=1e-12)
        np.testing.assert_allclose(pa[v] @ agg.losses[v], pi[v] @ inst.losses[v], atol=1e-12)


def test_q1_merges_every_node_into_one_state_and_costs_what_it_claims():
    inst = random_instance(3, kind="chain", n=3, k=4)
    res = aggregation_error(inst, 0.5, 1)
    assert np.all(res.instance.n_states == 1)
    sim = simulate(res.policy, n=40_000, seed=1)  # the lifted policy run on the real instance
    assert abs(sim.tradeoff - res.lifted) <= 5 * sim.tradeoff_se + 1e-12
    assert res.lifted >= solve(inst, 0.5).value - 1e-12


def test_lifted_value_matches_simulation():
    inst = random_instance(11, kind="chain", n=4, k=4, cost_scale=0.1)
    res = aggregation_error(inst, 0.6, 2)
    sim = simulate(res.policy, n=40_000, seed=3)  # Monte Carlo, independent of the exact evaluator
    assert abs(sim.tradeoff - res.lifted) <= 5 * sim.tradeoff_se + 1e-12


def test_quantile_labels_blocks():
    loss = np.array([0.9, 0.1, 0.5, 0.3, 0.7, 0.2])
    pi = np.array([0.5, 0.1, 0.1, 0.1, 0.1, 0.1])
    np.testing.assert_array_equal(loss_quantile_labels(loss, pi, 6), np.arange(6))  # K <= q: unchanged
    for q in range(1, 6):
        lab = loss_quantile_labels(loss, pi, q)
        assert sorted(set(lab)) == list(range(q))
        order = np.argsort(loss)
        assert np.all(np.diff(lab[order]) >= 0)  # consecutive in loss order
    lab = loss_quantile_labels(loss, np.zeros(6), 3)  # no mass: equal counts
    assert np.bincount(lab).tolist() == [2, 2, 2]


def test_kmeans_labels_with_duplicates():
    X = np.array([[0.0], [0.0], [0.0], [1.0]])
    lab = kmeans_labels(X, np.ones(4), 3, np.random.default_rng(0))
    assert sorted(set(lab)) == [0, 1, 2]


def test_lifted_policy_identity_labels_is_the_policy():
    inst = random_instance(5, kind="tree", n=4, k=3)
    sol = solve(inst, 0.5)
    ident = [np.arange(k) for k in inst.n_states]
    lifted = LiftedPolicy(inst, sol.policy, ident)
    assert abs(evaluate_exactly(lifted).tradeoff - sol.value) <= 1e-12


def test_bad_parameters():
    inst = random_instance(0, kind="chain", n=3, k=3)
    for q in (0, -1, 1.5, True):
        with pytest.raises(TTamerError, match="q"):
            cluster_states(inst, q)
    with pytest.raises(TTamerError, match="method"):
        cluster_states(inst, 2, method="spectral")
    with pytest.raises(TTamerError, match="labels"):
        aggregate_instance(inst, [np.array([0, 2, 2])] * 3)
    with pytest.raises(TTamerError, match="labels"):
        aggregate_instance(inst, [np.zeros(3, dtype=int)] * 2)


def test_labels_and_optimum_are_checked():
    inst = random_instance(0, kind="chain", n=3, k=3)
    for labels in (None, 5, [np.array([0.0, 1.0, 1.0])] * 3, [np.array([True, False, True])] * 3):
        with pytest.raises(TTamerError, match="labels"):
            aggregate_instance(inst, labels)
    with pytest.raises(TTamerError, match="Instance"):
        aggregate_instance(None, [np.zeros(3, dtype=int)] * 3)
    for optimum in ("x", float("nan"), -1.0):
        with pytest.raises(TTamerError, match="optimum"):
            aggregation_error(inst, 0.5, 2, optimum=optimum)
    for seed in (-1, "x"):
        with pytest.raises(TTamerError, match="seed"):
            cluster_states(inst, 2, "kmeans", seed)


def test_loss_quantile_labels_checks_its_arguments():
    loss, pi = np.array([0.1, 0.2]), np.array([0.5, 0.5])
    with pytest.raises(TTamerError, match="q"):
        loss_quantile_labels(loss, pi, 0)
    with pytest.raises(TTamerError, match="same length"):
        loss_quantile_labels(loss, np.array([1.0]), 2)
    with pytest.raises(TTamerError, match="finite"):
        loss_quantile_labels(np.array([np.nan, 0.2]), pi, 2)
    with pytest.raises(TTamerError, match="non-negative"):
        loss_quantile_labels(loss, np.array([1.5, -0.5]), 1)
