"""Internals of the index solver (``ttamer.solvers.index``): the balanced product used at nodes of high
degree agrees with the exhaustive solver and with the sequential product."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from strategies import build_random, instances, lams

import ttamer.solvers.index as index
from ttamer import Instance, solve

TOL = 1e-9


@given(inst=instances(shapes=("tree", "forest"), max_nodes=6), lam=lams)
def test_balanced_product_path_is_exact(inst, lam):
    old = index.MANY_PARTS
    index.MANY_PARTS = 0  # every node (and the start) takes the balanced tree
    try:
        value = index.compute_indices(inst, lam).value
    finally:
        index.MANY_PARTS = old
    assert value == pytest.approx(solve(inst, lam, method="exhaustive").value, abs=TOL)


@pytest.mark.parametrize("leaves,k", [(9, 3), (40, 4), (200, 2)])
def test_star_paths_agree(leaves, k, monkeypatch):
    rng = np.random.default_rng(leaves)
    parents = [None] + [0] * leaves
    losses = [rng.random(k) for _ in parents]
    mats = [rng.dirichlet(np.ones(k))] + [rng.dirichlet(np.ones(k), size=k) for _ in range(leaves)]
    inst = Instance.tree(parents, losses, mats, rng.random(leaves + 1) * 0.05, fallback=0.9)
    monkeypatch.setattr(index, "MANY_PARTS", 10**9)
    sequential = index.compute_indices(inst, 0.8)
    monkeypatch.setattr(index, "MANY_PARTS", 1)
    balanced = index.compute_indices(inst, 0.8)
    assert balanced.value == pytest.approx(sequential.value, abs=1e-12)
    for a, b in zip(balanced.sigma, sequential.sigma):
        np.testing.assert_allclose(a, b, atol=1e-12)


def test_atoms_respect_the_support_bound():
    inst = build_random(5, 40, 6, "tree", fallback=True, cost_mode="uniform", loss_mode="uniform")
    res = index.compute_indices(inst, 0.6)
    own = inst.n_states + np.array([inst.n_states[p] if p >= 0 else 1 for p in inst.parent])
    assert len(res.root_surrogate.grid) <= own.sum() + 1
    assert (res.atoms >= 1).all()
