"""The Monte-Carlo simulator against exact values, within statistical error."""

from __future__ import annotations

import numpy as np
import pytest
from strategies import build_random

from ttamer import evaluate_exactly, simulate, solve


@pytest.mark.parametrize("seed, shape, recall, skips", [
    (0, "chain", True, 0), (1, "chain", False, 0), (2, "tree", True, 0), (3, "forest", True, 0),
    (4, "forest", False, 0), (5, "chain", True, 2), (6, "chain", False, 2),
])
def test_simulation_matches_exact_values(seed, shape, recall, skips):
    inst = build_random(seed, 5, 3, shape, fallback=seed % 2 == 0, cost_mode="uniform",
                        loss_mode="uniform", n_skips=skips)
    sol = solve(inst, 0.75, recall=recall)
    exact = evaluate_exactly(sol.policy)
    sim = simulate(sol.policy, n=40_000, seed=seed)
    for name in ("tradeoff", "loss", "cost"):
        err = abs(getattr(sim, name) - getattr(exact, name))
        assert err <= 4.5 * getattr(sim, f"{name}_se") + 1e-12, name
    assert exact.tradeoff == pytest.approx(sol.value, abs=1e-9)


def test_simulation_is_reproducible_and_answers_follow_the_rule():
    inst = build_random(9, 4, 3, "chain", fallback=True, cost_mode="uniform", loss_mode="uniform")
    pol = solve(inst, 0.9).policy
    a, b = simulate(pol, 1000, seed=5), simulate(pol, 1000, seed=5)
    assert a.tradeoff == b.tradeoff
    states = a.samples["states"]
    # recall: the loss returned is the smallest among consulted models and the fallback
    consulted = np.where(states >= 0, pol._loss_table[np.arange(inst.n), states.clip(0)], np.inf)
    best = np.minimum(consulted.min(axis=1), inst.fallback)
    np.testing.assert_array_equal(a.samples["loss"], best)


def test_evaluate_exactly_checks_its_arguments():
    from ttamer import Instance, TTamerError

    inst = Instance.chain([[0.1, 0.2], [0.3, 0.0]], [0.5, 0.5], [[[0.5, 0.5], [0.2, 0.8]]], [1.0, 1.0])
    pol = solve(inst, 0.5).policy
    for max_histories in (0, -1, 1.5, "x", True):
        with pytest.raises(TTamerError, match="max_histories"):
            evaluate_exactly(pol, max_histories)
    with pytest.raises(TTamerError, match="Policy"):
        evaluate_exactly(None)
