"""Closed forms of the adversarial families against the exact solvers and the LP (the book's chapter *Why recall matters*)."""

from __future__ import annotations

import numpy as np
import pytest

from ttamer import TTamerError, solve
from ttamer.theory import adversarial as A
from ttamer.solvers.exhaustive import solve_exhaustive

ALPHAS = [1.25, 2.0, 3.0, 7.5, 40.0]


def _close(a: float, b: float, tol: float = 1e-12) -> bool:
    return abs(a - b) <= tol * max(1.0, abs(b))


@pytest.mark.parametrize("alpha", ALPHAS)
def test_paper_family_closed_form(alpha):
    inst, v = A.paper_family(alpha), A.paper_family_values(alpha)
    assert inst.is_chain and inst.n == 2 and np.all(inst.costs == 0)
    for recall, key in ((True, "recall"), (False, "no_recall")):
        assert _close(solve(inst, 1.0, recall=recall).value, v[key])
        assert _close(solve_exhaustive(inst, 1.0, recall)[0], v[key])
    assert v["ratio"] == alpha
    assert _close(A.gap(inst, 1.0)["ratio"], alpha, 1e-9)


@pytest.mark.parametrize("alpha", [2.0, 10.0])
def test_paper_family_every_no_recall_strategy_pays_the_same(alpha):
    # the two deterministic no-recall strategies: stop at model 1, or go on to model 2
    inst = A.paper_family(alpha)
    stop_first = inst.losses[0][0]
    go_on = float(inst.transitions[1][0] @ inst.losses[1])
    assert _close(stop_first, alpha**-2) and _close(go_on, alpha**-2)


@pytest.mark.parametrize("alpha", [1.5, 2.0, 5.0])
@pytest.mark.parametrize("n", [2, 3, 4, 5])
@pytest.mark.parametrize("family", ["chain", "star"])
def test_chain_and_star_families(alpha, n, family):
    build = A.chain_family if family == "chain" else A.star_family
    v = (A.chain_family_values if family == "chain" else A.star_family_values)(alpha, n)
    inst = build(alpha, n)
    assert inst.n == n and inst.is_chain == (family == "chain" or n == 2)
    for recall, key in ((True, "recall"), (False, "no_recall")):
        assert _close(solve(inst, 1.0, recall=recall).value, v[key])
        assert _close(solve_exhaustive(inst, 1.0, recall)[0], v[key])
    assert _close(v["ratio"], alpha ** (n - 1))
    assert _close(A.gap(inst, 1.0)["ratio"], v["ratio"], 1e-9)


def test_chain_family_two_exits_is_the_paper_family():
    a = 3.0
    c, p = A.chain_family(a, 2), A.paper_family(a)
    for x, y in zip(c.losses + c.transitions, p.losses + p.transitions):
        np.testing.assert_allclose(x, y)


@pytest.mark.parametrize("alpha", [1.5, 2.0, 4.0, 30.0])
@pytest.mark.parametrize("lam", [0.2, 0.5, 0.9])
@pytest.mark.parametrize("beta", [0.0, 0.5, 1.0, 3.0])
def test_costly_family(alpha, lam, beta):
    inst, v = A.costly_family(alpha, lam, beta), A.costly_family_values(alpha, lam, beta)
    assert beta == 0 or np.all(inst.costs > 0)
    for recall, key in ((True, "recall"), (False, "no_recall")):
        assert _close(solve(inst, lam, recall=recall).value, v[key])
        assert _close(solve_exhaustive(inst, lam, recall)[0], v[key])
    assert _close(A.gap(inst, lam)["ratio"], v["ratio"], 1e-9)
    assert v["ratio"] <= A.root_cost_bound(inst, lam) + 1e-12


@pytest.mark.parametrize("delta", [0.5, 0.1, 0.01])
def test_floor_family_attains_the_bound(delta):
    inst, v = A.floor_family(delta), A.floor_family_values(delta)
    g = A.gap(inst, 1.0)
    assert _close(g["no_recall"], v["no_recall"]) and _close(g["recall"], v["recall"])
    assert _close(g["ratio"], A.floor_bound(delta), 1e-9)


def test_families_against_the_lp():
    from ttamer.solvers import lp
    cases = [(A.paper_family(3.0), A.paper_family_values(3.0)),
             (A.chain_family(2.0, 3), A.chain_family_values(2.0, 3)),
             (A.star_family(2.0, 3), A.star_family_values(2.0, 3)),
             (A.costly_family(3.0, 0.5, 1.0), A.costly_family_values(3.0, 0.5, 1.0))]
    for inst, v in cases:
        for recall, key in ((True, "recall"), (False, "no_recall")):
            assert abs(lp.solve_lp(inst, v["lam"], recall=recall).value - v[key]) <= 1e-6


@pytest.mark.parametrize("kind", ["chain", "tree", "skips"])
def test_search_respects_exact_values_and_bound(kind):
    res = A.search_worst_ratio(kind, n=3, k=2, restarts=1, seed=1, delta=0.2, maxiter=150)
    nr = solve_exhaustive(res.instance, 1.0, recall=False)[0]
    r = solve_exhaustive(res.instance, 1.0, recall=True)[0]
    assert _close(res.no_recall, nr, 1e-9) and _close(res.recall, r, 1e-9)
    assert res.ratio <= A.ratio_of(nr, r) * (1 + 1e-9)
    assert 1.0 - 1e-9 <= res.ratio <= res.bound * (1 + 1e-9)
    assert res.evaluations > 0 and len(res.per_restart) == 1


def test_search_finds_the_floor_bound_on_two_models():
    res = A.search_worst_ratio("chain", n=2, k=2, restarts=3, seed=0, delta=0.25, maxiter=400)
    assert res.ratio >= 0.99 * res.bound


@pytest.mark.parametrize("alpha", [1.0, 0.5, -2.0, float("nan"), float("inf")])
def test_bad_alpha(alpha):
    with pytest.raises(TTamerError, match="alpha"):
        A.paper_family(alpha)
    with pytest.raises(TTamerError, match="alpha"):
        A.paper_family_values(alpha)


def test_bad_parameters():
    with pytest.raises(TTamerError, match="n"):
        A.chain_family(2.0, 1)
    with pytest.raises(TTamerError, match="n"):
        A.star_family(2.0, 2.5)
    with pytest.raises(TTamerError, match="lam"):
        A.costly_family(2.0, 1.0)
    with pytest.raises(TTamerError, match="beta"):
        A.costly_family(2.0, 0.5, -1.0)
    for d in (0.0, 1.0, -0.1):
        with pytest.raises(TTamerError, match="delta"):
            A.floor_family(d)
    with pytest.raises(TTamerError, match="kind"):
        A.search_worst_ratio("cycle")
    with pytest.raises(TTamerError, match="k"):
        A.search_worst_ratio("chain", k=1)
    with pytest.raises(TTamerError, match="restarts"):
        A.search_worst_ratio("chain", restarts=0)


def test_ratio_of_edge_cases():
    assert A.ratio_of(0.0, 0.0) == 1.0
    assert A.ratio_of(1.0, 0.0) == np.inf
    assert A.ratio_of(2.0, 1.0) == 2.0


@pytest.mark.parametrize("alpha", [None, "abc", [3], "3", True])
def test_alpha_must_be_a_real_number(alpha):
    with pytest.raises(TTamerError, match="alpha must be a number"):
        A.paper_family(alpha)


def test_string_parameters_are_refused():
    with pytest.raises(TTamerError, match="delta"):
        A.floor_family("0.1")
    with pytest.raises(TTamerError, match="beta"):
        A.costly_family(2.0, 0.5, "1")
    with pytest.raises(TTamerError, match="lam"):
        A.costly_family(2.0, "0.5")


def test_family_sizes_are_bounded():
    for build in (A.chain_family, A.star_family, A.chain_family_values, A.star_family_values):
        with pytest.raises(TTamerError, match=f"<= {A.MAX_FAMILY_NODES}"):
            build(2.0, 10**9)
    with pytest.raises(TTamerError, match="MAX_FAMILY_SCALE"):
        A.chain_family_values(2.0, 1100)  # 2**1099 overflows a float
    with pytest.raises(TTamerError, match="MAX_FAMILY_SCALE"):
        A.paper_family(1e101)
    assert A.paper_family_values(300.0)["ratio"] == 300.0


@pytest.mark.parametrize("bad, match", [(dict(n=10**9), "n"), (dict(k=10**9), "k"), (dict(k=2.0), "k"),
                                        (dict(restarts=10**9), "MAX_SEARCH_ITERATIONS"), (dict(maxiter=0), "maxiter"),
                                        (dict(seed=-1), "seed"), (dict(seed="x"), "seed")])
def test_search_arguments_are_checked_before_work(bad, match):
    with pytest.raises(TTamerError, match=match):
        A.search_worst_ratio("chain", **bad)


def test_root_cost_bound_and_ratio_of_check_their_arguments():
    inst = A.costly_family(2.0, 0.5)
    for lam in (float("nan"), 2, "0.5"):
        with pytest.raises(TTamerError, match="lam"):
            A.root_cost_bound(inst, lam)
    with pytest.raises(TTamerError, match="Instance"):
        A.root_cost_bound(None, 0.5)
    with pytest.raises(TTamerError, match="no_recall"):
        A.ratio_of(-1.0, 1.0)
    with pytest.raises(TTamerError, match="no_recall"):
        A.ratio_of("1", 1.0)
    with pytest.raises(TTamerError, match="recall"):
        A.ratio_of(1.0, float("nan"))
