"""Internals of the index solver (``ttamer.solvers.index``): the balanced product used at nodes of high
degree agrees with the exhaustive solver and with the sequential product; the compiled chain pass
agrees with the NumPy steps."""

from __future__ import annotations

import importlib

import numpy as np
import pytest
from hypothesis import given
from strategies import build_random, instances, lams

import ttamer.solvers.index as index
from ttamer.solvers.index_chain import chain_nodes
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


@given(inst=instances(shapes=("chain",), max_nodes=12, kmax=5), lam=lams)
def test_compiled_chain_pass_equals_the_numpy_steps(inst, lam):
    """The compiled pass (``index_chain``) gives the same indices, value and law of the optimal
    trade-off as the NumPy steps it replaces (only the rounding of the mixing product may differ,
    and with it which massless grid points are pruned)."""
    fast, ref = index.compute_indices(inst, lam), index.compute_indices(inst, lam, compiled=False)
    assert fast.value == pytest.approx(ref.value, rel=1e-12, abs=1e-12)
    for a, b in zip(fast.sigma, ref.sigma):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)
    # the same law of the optimal trade-off: both step functions agree on every atom of either
    points = np.union1d(fast.root_surrogate.grid, ref.root_surrogate.grid)
    np.testing.assert_allclose(fast.root_surrogate.at(points), ref.root_surrogate.at(points), atol=1e-12)


def test_only_chains_take_the_compiled_pass():
    chain = build_random(1, 6, 3, "chain", fallback=True, cost_mode="uniform", loss_mode="uniform")
    assert list(chain_nodes(chain)) == list(chain.order[::-1])
    star = Instance.tree([None, 0, 0], [np.ones(1)] * 3, [np.ones(1), np.ones((1, 1)), np.ones((1, 1))], np.zeros(3))
    assert chain_nodes(star) is None
    two_roots = Instance.tree([None, None], [np.ones(1)] * 2, [np.ones(1)] * 2, np.zeros(2))
    assert chain_nodes(two_roots) is None
    skips = build_random(2, 5, 2, "chain", fallback=False, cost_mode="grid", loss_mode="grid", n_skips=2)
    assert skips.skips and chain_nodes(skips) is None


def test_the_chain_pass_compiles_without_a_writable_cache(monkeypatch):
    """A read-only install (no place to cache machine code) still imports and solves."""
    from numba.core import caching
    import ttamer.core.compiled as compiled
    import ttamer.solvers.index_chain as index_chain

    inst = build_random(3, 5, 3, "chain", fallback=True, cost_mode="uniform", loss_mode="uniform")
    monkeypatch.setattr(caching.CacheImpl, "_locator_classes", [])
    try:
        importlib.reload(compiled)
        fresh = importlib.reload(index_chain)
        sigma, _, grid, surv = fresh.chain_pass(inst, fresh.chain_nodes(inst), 0.7, 0.7 * inst.fallback)
    finally:
        monkeypatch.undo()
        importlib.reload(compiled)
        importlib.reload(index_chain)
    ref = index.compute_indices(inst, 0.7, compiled=False)
    assert float(index.Surrogate(grid, surv).mean()[0]) == pytest.approx(ref.value, abs=1e-12)
    for a, b in zip(sigma, ref.sigma):
        np.testing.assert_allclose(a, b, atol=1e-12)


def test_compiled_kernels_release_the_gil():
    """Every compiled kernel runs without the GIL, so the cross-validation's folds, which run
    on a thread pool, run them side by side."""
    from numba.core.registry import CPUDispatcher

    import ttamer.earlyexit.offset_area as offset_area
    import ttamer.solvers.index_chain as index_chain

    kernels = [f for m in (offset_area, index_chain) for f in vars(m).values() if isinstance(f, CPUDispatcher)]
    assert len(kernels) >= 7
    assert all(k.targetoptions.get("nogil") for k in kernels)
