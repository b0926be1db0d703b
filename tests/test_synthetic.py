"""Random instance generators, exact policy evaluation and threshold heuristics."""

from __future__ import annotations

import numpy as np
import pytest

from ttamer import Instance, TTamerError, simulate, solve
from ttamer import evaluate_exactly as evaluate_exact
from ttamer.solvers.heuristics import ThresholdPolicy, best_threshold, threshold_candidates
from ttamer.theory.synthetic import KINDS, correlated_transition, marginals, monotone_kernel, random_instance


@pytest.mark.parametrize("kind", KINDS)
def test_random_instance_shapes(kind):
    inst = random_instance(0, kind=kind, n=6, k=(2, 4), cost_scale=0.3, correlation=0.4)
    assert isinstance(inst, Instance) and inst.n == 6
    assert np.all((inst.n_states >= 2) & (inst.n_states <= 4))
    assert inst.is_chain == (kind in ("chain", "skips"))
    if kind == "tree":
        assert len(inst.roots) == 1
    if kind == "forest":
        assert len(inst.roots) == 2
    assert np.all(inst.costs <= 0.3 * 1.5) and np.all(inst.costs >= 0.3 * 0.5)
    for l in inst.losses:
        assert np.all(np.diff(l) <= 0) and np.all((l >= 0) & (l <= 1))


def test_random_instance_is_reproducible():
    a = random_instance(42, kind="skips", n=5).to_dict()
    b = random_instance(np.random.default_rng(42), kind="skips", n=5).to_dict()
    assert a == b


def test_correlation_extremes():
    rng = np.random.default_rng(0)
    P0 = correlated_transition(rng, 3, 4, 0.0)
    assert np.allclose(P0, P0[0])  # independent of the parent's state
    P1 = correlated_transition(rng, 3, 4, 1.0)
    np.testing.assert_array_equal(P1, monotone_kernel(3, 4))
    np.testing.assert_array_equal(monotone_kernel(3, 3), np.eye(3))


def test_zero_costs_and_marginals():
    inst = random_instance(1, kind="tree", n=5, k=3, cost_scale=0.0)
    assert np.all(inst.costs == 0)
    for v, pi in enumerate(marginals(inst)):
        assert abs(pi.sum() - 1) < 1e-12 and pi.shape == (inst.n_states[v],)


@pytest.mark.parametrize("bad", [dict(kind="dag"), dict(n=0), dict(k=0), dict(k=(3, 2)), dict(cost_scale=-1.0),
                                 dict(correlation=1.5), dict(depth_decay=0.0), dict(skip_prob=2.0),
                                 dict(kind="forest", roots=9)])
def test_bad_parameters(bad):
    with pytest.raises(TTamerError):
        random_instance(0, **{"n": 4, **bad})


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("recall", [True, False])
def test_evaluate_exact_matches_solvers(kind, recall):
    for seed in range(3):
        inst = random_instance(seed, kind=kind, n=4, k=(1, 3), cost_scale=0.2, fallback=0.6 if seed else None)
        sol = solve(inst, 0.6, recall=recall)
        ex = evaluate_exact(sol.policy)
        assert abs(ex.tradeoff - sol.value) <= 1e-12
        assert abs(0.6 * ex.loss + 0.4 * ex.cost - ex.tradeoff) <= 1e-12


def test_threshold_policy_extremes_and_simulation():
    inst = random_instance(3, kind="chain", n=4, k=3, cost_scale=0.2)
    first = evaluate_exact(ThresholdPolicy(inst, 0.5, np.inf))
    assert abs(first.loss - inst.transitions[0][0] @ inst.losses[0]) < 1e-12
    assert abs(first.cost - inst.costs[0]) < 1e-12
    full = evaluate_exact(ThresholdPolicy(inst, 0.5, -np.inf))
    assert abs(full.cost - inst.costs.sum()) < 1e-12
    pol = ThresholdPolicy(inst, 0.5, float(np.median(np.concatenate(inst.losses))))
    sim = simulate(pol, n=40_000, seed=1)
    assert abs(sim.tradeoff - evaluate_exact(pol).tradeoff) <= 5 * sim.tradeoff_se


@pytest.mark.parametrize("seed", range(4))
def test_recall_beats_no_recall_beats_best_threshold(seed):
    inst = random_instance(seed, kind="chain", n=5, k=3, cost_scale=0.1)
    r = solve(inst, 0.7, recall=True).value
    nr = solve(inst, 0.7, recall=False).value
    tau, val = best_threshold(inst, 0.7)
    assert r <= nr + 1e-12 <= val.tradeoff + 2e-12
    vals = [evaluate_exact(ThresholdPolicy(inst, 0.7, t)).tradeoff for t in threshold_candidates(inst)]
    assert abs(min(vals) - val.tradeoff) <= 1e-15


def test_threshold_needs_a_chain():
    inst = random_instance(0, kind="tree", n=4)
    with pytest.raises(TTamerError, match="chain"):
        ThresholdPolicy(inst, 0.5, 0.2)


@pytest.mark.parametrize("bad, match", [
    (dict(n=True), "n"), (dict(n=10**9), "MAX|<="), (dict(k=1.5), "k"), (dict(k="3"), "k"), (dict(k=[2]), "k"),
    (dict(k=10**9), "k"), (dict(n=1000, k=1000), "MAX_ENTRIES"), (dict(kind="skips", n=2000), "n"),
    (dict(cost_scale="1"), "cost_scale"), (dict(roots=-1), "roots"), (dict(roots=1.5), "roots"),
    (dict(skip_discount=float("inf")), "skip_discount"), (dict(correlation=float("nan")), "correlation")])
def test_random_instance_refuses_coercion_and_huge_sizes(bad, match):
    with pytest.raises(TTamerError, match=match):
        random_instance(0, **bad)


@pytest.mark.parametrize("rng", [-1, "x", 1.5])
def test_random_instance_checks_the_seed(rng):
    with pytest.raises(TTamerError, match="rng"):
        random_instance(rng)


def test_kernels_check_their_arguments():
    for k_from, k_to in [(2, 0), (-1, 2), (1.5, 2), (10**9, 10**9)]:
        with pytest.raises(TTamerError, match="k_"):
            monotone_kernel(k_from, k_to)
    for rho in (-1.0, 2.0, float("nan")):
        with pytest.raises(TTamerError, match="rho"):
            correlated_transition(np.random.default_rng(0), 2, 3, rho)
