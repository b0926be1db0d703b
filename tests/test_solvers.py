"""The fast solvers against the exhaustive solver on random instances (the book's chapter *Optimality of the index strategy with recall*)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from strategies import build_random, instances, lams

import ttamer
from ttamer import Instance, SolverError, TTamerError, evaluate_exactly, solve
from ttamer.core.policy import IndexPolicy, LastStatePolicy

TOL = 1e-9


def exhaustive(inst, lam, recall):
    return solve(inst, lam, recall, method="exhaustive")


@given(inst=instances(shapes=("chain", "tree", "forest"), max_nodes=6), lam=lams)
def test_index_strategy_is_optimal_with_recall_on_forests(inst, lam):
    fast = solve(inst, lam, recall=True)
    assert fast.method == "index" and isinstance(fast.policy, IndexPolicy)
    assert fast.value == pytest.approx(exhaustive(inst, lam, True).value, abs=TOL)
    # the policy object achieves the value it claims
    assert evaluate_exactly(fast.policy).tradeoff == pytest.approx(fast.value, abs=TOL)


@given(inst=instances(shapes=("chain",), max_nodes=6, skips=True), lam=lams)
def test_chain_dp_is_optimal_with_recall_and_skips(inst, lam):
    fast = solve(inst, lam, recall=True, method="dp")
    assert fast.value == pytest.approx(exhaustive(inst, lam, True).value, abs=TOL)
    assert evaluate_exactly(fast.policy).tradeoff == pytest.approx(fast.value, abs=TOL)
    if not inst.skips:  # without skips the index strategy and the (i, s, X) DP agree
        assert solve(inst, lam, recall=True, method="index").value == pytest.approx(fast.value, abs=TOL)


@given(inst=instances(shapes=("chain",), max_nodes=6, skips=True), lam=lams)
def test_no_recall_dp_is_exact_on_chains(inst, lam):
    fast = solve(inst, lam, recall=False)
    assert fast.method == "dp" and isinstance(fast.policy, LastStatePolicy)
    assert fast.value == pytest.approx(exhaustive(inst, lam, False).value, abs=TOL)
    assert evaluate_exactly(fast.policy).tradeoff == pytest.approx(fast.value, abs=TOL)


@given(inst=instances(shapes=("tree", "forest"), max_nodes=6), lam=lams)
def test_no_recall_on_forests(inst, lam):
    exact = solve(inst, lam, recall=False)  # auto: exhaustive on small branching forests
    assert exact.value == pytest.approx(exhaustive(inst, lam, False).value, abs=TOL)
    descend = solve(inst, lam, recall=False, method="dp")
    assert descend.value >= exact.value - TOL  # descend-only strategies are a subset
    assert evaluate_exactly(descend.policy).tradeoff == pytest.approx(descend.value, abs=TOL)
    # recall never hurts
    assert solve(inst, lam, recall=True).value <= exact.value + TOL


@given(inst=instances(max_nodes=5, skips=True), lam=lams, recall=st.booleans())
def test_exhaustive_policy_achieves_its_value(inst, lam, recall):
    sol = exhaustive(inst, lam, recall)
    assert evaluate_exactly(sol.policy).tradeoff == pytest.approx(sol.value, abs=TOL)


@given(inst=instances(max_nodes=5), recall=st.booleans())
def test_lambda_extremes(inst, recall):
    # λ = 0: only cost counts -- stop at once if a fallback exists, else the cheapest root
    sol = solve(inst, 0.0, recall=recall, method="exhaustive")
    expected = 0.0 if inst.fallback is not None else inst.costs[list(inst.roots)].min()
    assert sol.value == pytest.approx(expected, abs=TOL)
    # λ = 1: cost is free; with recall consult everything reachable, the value is E[min loss]
    if recall:
        full = solve(inst, 1.0, recall=True).value
        assert full <= min(inst.fallback if inst.fallback is not None else np.inf,
                           min(float(inst.transitions[r][0] @ inst.losses[r]) for r in inst.roots)) + TOL


def test_paper_family_ratio_is_alpha():
    # the lower-bound family of the chapter *Why recall matters*: zero costs, λ = 1; the ratio of no recall to recall is α
    for alpha in [2.0, 5.0, 40.0]:
        inst = Instance.chain(losses=[[1 / alpha**2], [0.0, 1 / alpha]], initial=[1.0],
                              transitions=[[[1 - 1 / alpha, 1 / alpha]]], costs=[0.0, 0.0])
        rec, norec = solve(inst, 1.0).value, solve(inst, 1.0, recall=False).value
        assert rec == pytest.approx(1 / alpha**3, rel=1e-12)
        assert norec == pytest.approx(1 / alpha**2, rel=1e-12)
        assert norec / rec == pytest.approx(alpha, rel=1e-12)


def test_threshold_form_on_chains():
    # Theorem 4.5: on a chain, continue after exit i in state s iff X > σ_{i+1}(s)
    inst = build_random(7, 5, 3, "chain", fallback=True, cost_mode="uniform", loss_mode="uniform")
    sol = solve(inst, 0.8)
    dp = solve(inst, 0.8, method="dp")
    levels = dp.policy.levels
    for i in range(inst.n - 1):
        for s in range(inst.n_states[i]):
            sigma = sol.policy.sigma[i + 1][s]
            acts = dp.policy.table[i][s]
            reach = levels <= 0.8 * inst.losses[i][s]
            # the DP may be indifferent exactly at the threshold; away from it the rules agree
            away = reach & (np.abs(levels - sigma) > 1e-9)
            np.testing.assert_array_equal(acts[away] >= 0, levels[away] > sigma)


def test_solver_errors_are_clear():
    inst = build_random(1, 4, 2, "tree", fallback=False, cost_mode="uniform", loss_mode="uniform")
    with pytest.raises(SolverError, match="recall"):
        solve(inst, 0.5, recall=False, method="index")
    with pytest.raises(SolverError, match="chain"):
        solve(inst, 0.5, recall=True, method="dp")
    with pytest.raises(TTamerError, match=r"lam must be in \[0, 1\]"):
        solve(inst, 1.5)
    with pytest.raises(TTamerError, match="unknown method"):
        solve(inst, 0.5, method="magic")
    big = build_random(2, 14, 3, "tree", fallback=False, cost_mode="uniform", loss_mode="uniform")
    with pytest.raises(SolverError, match="max_states"):
        solve(big, 0.5, method="exhaustive")
    with pytest.raises(SolverError, match="descend-only"):
        solve(big, 0.5, recall=False)
    skips = build_random(3, 5, 2, "chain", fallback=False, cost_mode="uniform", loss_mode="uniform", n_skips=2)
    with pytest.raises(SolverError, match="skips"):
        solve(skips, 0.5, method="index")


def test_index_solver_scales_to_a_large_forest():
    inst = build_random(11, 2000, 8, "forest", fallback=True, cost_mode="uniform", loss_mode="uniform")
    sol = solve(inst, 0.7)
    sim = ttamer.simulate(sol.policy, 4000, seed=3)
    assert abs(sim.tradeoff - sol.value) < 5 * sim.tradeoff_se + 1e-12


@given(inst=instances(shapes=("chain", "tree"), max_nodes=6), lam=lams, seed=st.integers(0, 1000))
def test_known_state_rollout_matches_the_stepwise_rollout(inst, lam, seed):
    # the one-pass threshold form on chains gives exactly the histories of the step loop
    pol = solve(inst, lam).policy
    rng = np.random.default_rng(seed)
    states = np.stack([rng.integers(0, k, size=64) for k in inst.n_states], axis=1)
    fast = pol.rollout_known(states)
    slow = ttamer.rollout(pol, len(states), lambda rows, nodes, _s, _l: states[rows, nodes])
    np.testing.assert_array_equal(fast.states, slow.states)
    np.testing.assert_array_equal(fast.last, slow.last)
    np.testing.assert_array_equal(fast.order, slow.order)


def test_method_errors_name_the_instance_and_the_method_that_applies():
    tree = Instance.tree([None, 0, 0], [[0.5, 0.1]] * 3, [np.array([0.5, 0.5])] + [np.eye(2)] * 2, [1.0] * 3,
                         name="wide")
    with pytest.raises(SolverError, match="needs a single chain, but instance 'wide' is a branching tree "
                                          r"\(3 nodes\); use method='index'"):
        solve(tree, 0.5, method="dp")
    skips = build_random(3, 5, 2, "chain", fallback=False, cost_mode="uniform", loss_mode="uniform", n_skips=2)
    with pytest.raises(SolverError, match="but an unnamed instance is a chain with 2 skips; use method='dp'"):
        solve(skips, 0.5, method="index")
