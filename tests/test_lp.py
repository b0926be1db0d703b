"""LP certificates (the book's chapter *Optimality of the index strategy with recall*): the primal LP against a brute force written here, the lead's
exhaustive DP and fast solvers; the polynomial chain space against the exhaustive space; the
budgeted dual; exact policy evaluation; errors."""

from __future__ import annotations

import functools
import math
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import ttamer
from strategies import build_random, instances, lams
from ttamer import Instance, SolverError
from ttamer.solvers import lp

TOL = 1e-6
LP_SETTINGS = settings(max_examples=100, deadline=None)


def brute(inst: Instance, lam: float, recall: bool) -> float:
    """Optimal trade-off by plain recursion over (states revealed, last node)."""
    n, kappa, y = inst.n, 1.0 - lam, inst.fallback
    edges = inst.edges()
    pos = inst.chain_position if inst.is_chain else None

    @functools.lru_cache(maxsize=None)
    def V(states: tuple, last: int) -> float:
        cons = [v for v in range(n) if states[v] >= 0]
        if recall:
            cands = [inst.losses[v][states[v]] for v in cons] + ([y] if y is not None else [])
            X = min(cands) if cands else None
        else:
            X = inst.losses[last][states[last]] if last >= 0 else y
        best = math.inf if X is None else lam * X
        if inst.skips:
            deepest = max(cons, key=lambda v: pos[v]) if cons else -1
            avail = [e for e in edges if e[0] == deepest]
        else:
            avail = [e for e in edges if states[e[1]] < 0 and (e[0] < 0 or states[e[0]] >= 0)]
        for src, tgt, c, P in avail:
            q = kappa * c
            for t, p in enumerate(P[0 if src < 0 else states[src]]):
                if p > 0:
                    nxt = list(states)
                    nxt[tgt] = t
                    q += p * V(tuple(nxt), tgt)
            best = min(best, q)
        return best

    return V(tuple([-1] * n), -1)


def _tradeoff(inst: Instance, policy, lam: float) -> float:
    exact = ttamer.evaluate_exactly(policy)
    return lam * exact.loss + (1 - lam) * exact.cost


# ------------------------------------------------------------------ primal LP = ground truth
@LP_SETTINGS
@given(inst=instances(max_nodes=4, kmax=3, skips=True), lam=lams, recall=st.booleans())
def test_lp_equals_brute_force(inst, lam, recall):
    want = brute(inst, lam, recall)
    spaces = ["exhaustive", "chain"] if inst.is_chain else ["exhaustive"]
    for space in spaces:
        sol = lp.solve_lp(inst, lam, recall, space=space)
        assert sol.value == pytest.approx(want, abs=TOL), space
        assert _tradeoff(inst, sol.policy, lam) == pytest.approx(want, abs=TOL), space


@LP_SETTINGS
@given(inst=instances(max_nodes=5, kmax=3, skips=True), lam=lams, recall=st.booleans())
def test_lp_equals_exhaustive_and_fast_solvers(inst, lam, recall):
    from ttamer.solvers.exhaustive import solve_exhaustive

    ex, _ = solve_exhaustive(inst, lam, recall)
    sol = lp.solve_lp(inst, lam, recall)
    assert sol.value == pytest.approx(ex, abs=TOL)
    if recall or inst.is_chain:  # index / (i, s, X) DP / no-recall chain DP
        fast = ttamer.solve(inst, lam, recall)
        assert sol.value == pytest.approx(fast.value, abs=TOL)
        assert _tradeoff(inst, fast.policy, lam) == pytest.approx(ex, abs=TOL)


@LP_SETTINGS
@given(inst=instances(shapes=("chain",), max_nodes=6, kmax=3, skips=True), lam=lams, recall=st.booleans())
def test_chain_space_equals_exhaustive_space(inst, lam, recall):
    a = lp.primal_lp(lp.chain_mdp(inst, recall), lam)
    b = lp.primal_lp(lp.exhaustive_mdp(inst, recall), lam)
    assert a.value == pytest.approx(b.value, abs=TOL)


def test_two_model_gap_closed_form():
    """The lower-bound family of the chapter *Why recall matters*: zero costs, λ = 1; recall pays 1/α³, no recall 1/α²."""
    for alpha in (2.0, 5.0, 20.0):
        inst = Instance.chain([[1 / alpha**2], [0.0, 1 / alpha]], [1.0], [[[1 - 1 / alpha, 1 / alpha]]], [0.0, 0.0])
        assert lp.solve_lp(inst, 1.0, True).value == pytest.approx(alpha**-3, abs=1e-9)
        assert lp.solve_lp(inst, 1.0, False).value == pytest.approx(alpha**-2, abs=1e-9)


def test_solution_fields_and_dispatch():
    inst = build_random(3, 4, 3, "tree", True, "uniform", "uniform")
    sol = ttamer.solve(inst, 0.7, recall=True, method="lp")
    assert sol.method == "lp" and sol.recall and sol.lam == 0.7
    assert sol.lp.solver == lp.default_solver()
    assert sol.lp.status == "optimal"
    assert sol.n_states == sol.lp.mdp.n_states > 1
    res = ttamer.simulate(sol.policy, 4000, seed=1)
    assert abs(res.tradeoff - sol.value) < 5 * res.tradeoff_se + 1e-9


def test_no_fallback_forbids_stopping_at_start():
    inst = Instance.chain([[0.5]], [1.0], [], [2.0])
    # must consult: value = κ c + λ ℓ
    assert lp.solve_lp(inst, 0.25, True).value == pytest.approx(0.75 * 2 + 0.25 * 0.5)
    inst_y = Instance.chain([[0.5]], [1.0], [], [2.0], fallback=0.9)
    assert lp.solve_lp(inst_y, 0.25, True).value == pytest.approx(0.25 * 0.9)


# ------------------------------------------------------------------ errors
def test_size_limit_error():
    inst = build_random(0, 8, 3, "forest", False, "uniform", "uniform")
    with pytest.raises(SolverError, match="max_states=50"):
        lp.exhaustive_mdp(inst, True, max_states=50)
    with pytest.raises(SolverError, match="max_states"):
        lp.solve_lp(inst, 0.5, False, space="exhaustive", max_states=100)


def _star(k_root: int, leaves: int) -> Instance:
    """A root of ``k_root`` states with ``leaves`` one-state children: small to write, but
    its transition matrices padded to the root's states are ``leaves x k_root²``."""
    return Instance.tree([None] + [0] * leaves, [np.linspace(0.1, 0.9, k_root)] + [[0.5]] * leaves,
                         [np.full(k_root, 1.0 / k_root)] + [np.ones((k_root, 1))] * leaves,
                         [1.0] + [0.1] * leaves, name="star")


def test_memory_is_bounded_before_the_mdp_is_built(monkeypatch):
    """Every array of the construction is checked against MAX_CELLS before it is allocated:
    the padded transition tensor, the losses table and each layer of the exhaustive space
    (whose histories hold one entry per node)."""
    with pytest.raises(SolverError, match="padded to 300 x 300 states.*MAX_CELLS"):
        lp.solve_lp(_star(300, 600), 0.5)  # 54 million padded entries, from ~1 MB of numbers
    deep = Instance.tree([None] + [(v - 1) // 2 for v in range(1, 4095)], [[0.9, 0.1]] * 4095,
                         [np.array([0.5, 0.5])] + [np.array([[0.7, 0.3], [0.3, 0.7]])] * 4094, [0.01] * 4095)
    with pytest.raises(SolverError, match="each a history of 4,095 nodes.*MAX_CELLS"):
        lp.exhaustive_mdp(deep, True, max_states=10**9)
    small = _star(3, 4)  # 5 edges (the root's from the start) of 3 x 3 padded entries
    monkeypatch.setattr(lp, "MAX_CELLS", 5 * 3 * 3 - 1)
    with pytest.raises(SolverError, match="45 entries for its 5 edges' transition matrices padded"):
        lp.solve_lp(small, 0.5)
    monkeypatch.setattr(lp, "MAX_CELLS", 5 * 3 * 3)  # at the limit the tensor is built
    assert lp._Edges(small).P.shape == (5, 3, 3)


def test_bad_arguments():
    forest = build_random(1, 4, 2, "forest", True, "uniform", "uniform")
    if forest.is_chain:  # pragma: no cover - seed gives a forest
        pytest.skip("seed produced a chain")
    with pytest.raises(SolverError, match="needs a chain"):
        lp.chain_mdp(forest)
    with pytest.raises(SolverError, match="unknown space"):
        lp.build_mdp(forest, space="tree")
    with pytest.raises(SolverError, match="lam"):
        lp.solve_lp(forest, 1.5)


# ------------------------------------------------------------------ budgeted dual
@settings(max_examples=60, deadline=None)
@given(inst=instances(max_nodes=4, kmax=3, skips=True), lam=st.floats(0.05, 0.95), recall=st.booleans())
def test_budgeted_lp_at_the_cost_of_an_optimal_policy(inst, lam, recall):
    """At B = E[cost] of a λ-optimal deterministic policy the least loss is its loss, and the
    occupation measure is a (basic) policy randomising in at most one state."""
    sol = lp.solve_lp(inst, lam, recall)
    exact = ttamer.evaluate_exactly(sol.policy)
    loss, cost = exact.loss, exact.cost
    res = lp.budgeted_lp(inst, cost, recall)
    assert res.loss == pytest.approx(loss, abs=TOL)
    assert res.cost <= cost + TOL
    assert len(res.randomised) <= 1
    for row in res.table:
        assert sum(row["actions"].values()) == pytest.approx(1.0)
    # occupation measures sum to one stop per run
    stops = res.occupation[res.mdp.row_action < 0].sum()
    assert stops == pytest.approx(1.0, abs=1e-7)


def test_budget_extremes_and_infeasible():
    inst = build_random(7, 4, 3, "chain", False, "uniform", "uniform", n_skips=1)
    huge = lp.budgeted_lp(inst, 1e6)
    assert huge.loss == pytest.approx(lp.solve_lp(inst, 1.0).value, abs=TOL)  # cost free
    blp = lp.BudgetedLP(lp.build_mdp(inst))
    cmin = blp.min_cost()
    assert cmin > 0  # no fallback: a root must be consulted
    assert blp.solve(cmin).cost == pytest.approx(cmin, abs=TOL)
    with pytest.raises(SolverError, match="below the least expected cost"):
        blp.solve(cmin * 0.5)
    with pytest.raises(SolverError, match="budget"):
        blp.solve(-1.0)


def test_budgeted_randomised_policy_description():
    inst = Instance.chain([[0.6, 0.05], [0.7, 0.2, 0.01], [0.4, 0.02]], [0.5, 0.5],
                          [[[0.6, 0.3, 0.1], [0.1, 0.2, 0.7]], [[0.8, 0.2], [0.3, 0.7], [0.0, 1.0]]],
                          [1.0, 1.0, 1.0], skips=[(0, 2, 1.7)])
    res = lp.budgeted_lp(inst, 1.5)
    assert res.cost == pytest.approx(1.5, abs=1e-7)
    assert len(res.randomised) == 1
    assert res.policy_mixture is res.table
    text = res.describe()
    assert "randomised" in text and "consult" in text


# ------------------------------------------------------------------ exact evaluation
def test_exact_evaluation_rejects_unavailable_node():
    inst = build_random(2, 3, 2, "chain", True, "uniform", "uniform")

    class Bad(ttamer.Policy):
        def decide(self, states, last):
            return np.where(last < 0, inst.n - 1, -1)

    with pytest.raises(SolverError, match="not available"):
        ttamer.evaluate_exactly(Bad(inst, 0.5, True))


# ------------------------------------------------------------------ one result shape, LP options through solve
def test_solve_forwards_the_lp_options():
    inst = build_random(3, 4, 3, "chain", True, "uniform", "uniform")
    for space in ("chain", "exhaustive"):
        via = ttamer.solve(inst, 0.4, method="lp", space=space)
        direct = lp.solve_lp(inst, 0.4, True, space=space)
        assert via.lp.mdp.space == direct.lp.mdp.space == space
        assert via.n_states == direct.n_states == via.lp.mdp.n_states
        assert via.value == pytest.approx(direct.value, abs=TOL)
    assert ttamer.solve(inst, 0.4, method="lp", solver="CLARABEL").lp.solver == "CLARABEL"
    with pytest.raises(SolverError, match="max_states"):
        ttamer.solve(inst, 0.4, method="lp", space="exhaustive", max_states=2)
    with pytest.raises(SolverError):
        ttamer.solve(inst, 0.4, method="lp", space="chain", max_chain_states=2)
    with pytest.raises(ttamer.TTamerError, match="method='lp'"):
        ttamer.solve(inst, 0.4, method="index", space="chain")


def test_every_method_returns_one_shape():
    """The same fields whatever the method; each method sets the fields it documents."""
    import dataclasses

    inst = build_random(4, 3, 2, "chain", False, "uniform", "uniform")
    fields = {f.name for f in dataclasses.fields(ttamer.SolveResult)}
    res = {m: ttamer.solve(inst, 0.6, method=m) for m in ("index", "dp", "exhaustive", "lp")}
    for m, r in res.items():
        assert type(r) is ttamer.SolveResult and set(vars(r)) == fields and r.method == m and r.exact
    assert len(res["index"].sigma) == inst.n and res["index"].lp is None
    assert res["dp"].levels == len(res["dp"].policy.levels)
    assert res["exhaustive"].n_states == len(res["exhaustive"].policy.actions)
    assert res["lp"].lp.status == "optimal"
    values = [r.value for r in res.values()]
    assert max(values) - min(values) <= TOL
    assert ttamer.solve(inst, 0.6, recall=False, method="dp").exact  # a chain: the no-recall DP is exact


@pytest.mark.parametrize("space", ["chain", "exhaustive"])
def test_action_table_is_bellman(space):
    """min over a state's rows of Q equals the LP value V (Bellman); on the chain space the
    decoded X of a stop row is its immediate trade-off λ·X."""
    from ttamer.theory.synthetic import random_instance

    inst = random_instance(5, "chain", n=3, k=(1, 3), cost_scale=0.1, correlation=0.5, fallback=0.7)
    lam = 0.6
    mdp = lp.build_mdp(inst, recall=True, space=space)
    V = lp.primal_lp(mdp, lam).V
    t = lp.action_table(mdp, lam, V)
    best = np.full(mdp.n_states, np.inf)
    np.minimum.at(best, t["x"], t["Q"])
    np.testing.assert_allclose(best, V, atol=1e-7)
    assert np.array_equal(t["optimal"], lp.optimal_rows(mdp, lam, V))
    if space == "chain":
        stop = (t["action"] < 0) & (t["node"] >= 0)
        np.testing.assert_allclose(t["Q"][stop], t["X"][stop], atol=1e-12)


def test_exhaustive_space_is_counted_exactly_before_it_is_built():
    """The count from the instance's structure equals the states the layers enumerate: forests
    and trees (sparse transitions included), chains with skips, with and without recall."""
    for seed in range(40):
        for shape, skips in (("forest", 0), ("tree", 0), ("chain", 1 + seed % 3)):
            inst = build_random(seed, 2 + seed % 5, 1 + seed % 3, shape, seed % 2 == 0, "uniform",
                                ("grid", "uniform")[seed % 2], n_skips=skips)
            for recall in (True, False):
                built = lp.exhaustive_mdp(inst, recall, max_states=10**6).n_states
                assert round(10 ** lp.exhaustive_mdp_log10(inst, recall)) == built


def _wide(roots: int, children: int) -> Instance:
    """``roots`` unnamed two-state roots, the first with ``children`` two-state children."""
    mix = np.array([[0.5, 0.5], [0.5, 0.5]])
    return Instance.tree([None] * roots + [0] * children, [[0.5, 0.1]] * (roots + children),
                         [np.array([0.5, 0.5])] * roots + [mix] * children, [1.0] * (roots + children))


@pytest.mark.parametrize("roots, children", [(3000, 0), (1, 40)])
def test_huge_exhaustive_lp_is_refused_before_any_layer(monkeypatch, roots, children):
    """A star of 3000 roots, or a root with 40 children, used to run 14-18 s (and up to 1.4 GB)
    before refusing: the size is now known before the first layer is expanded."""
    inst = _wide(roots, children)

    def expand(*args, **kwargs):  # pragma: no cover - reached only without the up-front count
        raise AssertionError("a layer was expanded")

    monkeypatch.setattr(lp._Edges, "expand", expand)
    t0 = time.perf_counter()
    with pytest.raises(SolverError) as err:
        ttamer.solve(inst, 0.5, method="lp")
    assert time.perf_counter() - t0 < 2.0
    msg = str(err.value)
    assert "an unnamed instance" in msg and "''" not in msg
    assert "information states" in msg and "max_states=50,000" in msg and "method='index'" in msg
    with pytest.raises(SolverError, match="descend-only"):
        ttamer.solve(inst, 0.5, recall=False, method="lp")


def test_exhaustive_lp_at_its_size_limit(monkeypatch):
    """The limit is exact: a space of exactly ``max_states`` states is built, one more refused."""
    inst = _wide(1, 3)
    n_states = lp.exhaustive_mdp(inst, True, max_states=10**6).n_states
    assert lp.exhaustive_mdp(inst, True, max_states=n_states).n_states == n_states
    with pytest.raises(SolverError, match=f"above max_states={n_states - 1}.*raise max_states"):
        lp.exhaustive_mdp(inst, True, max_states=n_states - 1)


def test_lp_errors_name_an_unnamed_instance_as_such():
    forest = _wide(2, 1)
    with pytest.raises(SolverError, match="needs a chain, but an unnamed instance is a forest"):
        lp.chain_mdp(forest)
    with pytest.raises(SolverError, match="instance 'star'"):
        lp.exhaustive_mdp(_star(3, 40), True, max_states=100)
