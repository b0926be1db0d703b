"""Hostile input, round 11: the LP's actions and tolerances, the threshold rule's ``tau``, the
plots' arguments, the benchmarks' arguments and ``--json`` path, ``index_sweep``'s λ grid and
``save_instance``'s argument order."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

import ttamer
from ttamer import benchmarks as bench
from ttamer.core.errors import TTamerError
from ttamer.core.instance import save_instance
from ttamer.solvers import heuristics, lp
from ttamer.theory import frontier
from ttamer.theory.synthetic import random_instance

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from ttamer import plots  # noqa: E402


@pytest.fixture(scope="module")
def inst():
    return random_instance(1, "chain", n=3, k=2)


@pytest.fixture(scope="module")
def mdp(inst):
    return lp.build_mdp(inst, True)


@pytest.fixture(scope="module")
def values(mdp):
    return lp.primal_lp(mdp, 0.5).V


def _ran(*_args, **_kwargs):
    raise AssertionError("the work ran before its arguments were checked")


# ----------------------------------------------------------------------------------- LP (B4)
def test_policy_from_actions_refuses_a_wrong_length(mdp):
    with pytest.raises(TTamerError, match=r"one action per state of the MDP \(\d+\), got 3"):
        lp.policy_from_actions(mdp, 0.5, np.zeros(3, int))


@pytest.mark.parametrize("bad", [10**6, -5])
def test_policy_from_actions_refuses_out_of_range_actions(mdp, bad):
    with pytest.raises(TTamerError, match=r"action \(one per state of the MDP\) must be .*integers in -1\.\.2"):
        lp.policy_from_actions(mdp, 0.5, np.full(mdp.n_states, bad))


def test_policy_from_actions_refuses_an_action_not_available_in_its_state(mdp, values):
    greedy = lp.greedy_actions(mdp, 0.5, values)
    pol = lp.policy_from_actions(mdp, 0.5, greedy)  # the greedy actions are still taken
    assert ttamer.evaluate_exactly(pol).tradeoff == pytest.approx(values[mdp.start], abs=1e-8)
    action = np.zeros_like(greedy)  # consulting the first exit everywhere, also after it was consulted
    with pytest.raises(TTamerError, match=r"action\[\d+\] = 0 \(consult .*\) is not an action of state"):
        lp.policy_from_actions(mdp, 0.5, action)


@pytest.mark.parametrize("tol", [np.nan, -1.0, "0"])
def test_optimal_rows_refuses_a_bad_tolerance(mdp, values, tol):
    with pytest.raises(TTamerError, match="tol must be"):
        lp.optimal_rows(mdp, 0.5, values, tol=tol)


@pytest.mark.parametrize("tol", [-1.0, np.nan])
def test_budgeted_lp_refuses_a_bad_tolerance_before_solving(mdp, tol):
    blp = lp.BudgetedLP(mdp)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(TTamerError, match="tol must be"):
            blp.solve(1.0, tol=tol)


def test_threshold_policy_names_tau(inst):
    for tau in ("x", True, None):
        with pytest.raises(TTamerError, match=r"tau \(the loss threshold of ThresholdPolicy\) must be a number"):
            heuristics.ThresholdPolicy(inst, 0.5, tau)
    assert heuristics.ThresholdPolicy(inst, 0.5, -np.inf).tau == -np.inf  # infinite thresholds stay allowed
    assert heuristics.ThresholdPolicy(inst, 0.5, np.float64(0.3)).tau == 0.3


# ----------------------------------------------------------------------------------- plots (B6)
@pytest.fixture(scope="module")
def sol(inst):
    return ttamer.solve(inst, 0.5)


@pytest.mark.parametrize("what", [None, "instance", {"policy": 1}])
def test_plot_policy_says_what_it_needs(inst, what):
    arg = inst if what == "instance" else what
    with pytest.raises(TTamerError, match="solution must be a solved result"):
        plots.plot_policy(arg)


def test_plot_policy_refuses_a_bad_ax(sol):
    with pytest.raises(TTamerError, match="ax must be a matplotlib Axes or None"):
        plots.plot_policy(sol, ax="x")


@pytest.mark.parametrize("points", [[np.zeros((2, 2))], None])
def test_plot_frontier_says_the_expected_form(points):
    with pytest.raises(TTamerError, match=r"points_by_strategy must be a mapping \(dict\) from strategy name"):
        plots.plot_frontier(points)


def test_plot_frontier_refuses_bands_as_a_list_and_a_bad_ax():
    pts = np.array([[1.0, 0.5], [2.0, 0.3]])
    with pytest.raises(TTamerError, match="bands must be None or a mapping"):
        plots.plot_frontier({"a": pts}, bands=[pts])
    with pytest.raises(TTamerError, match="ax must be a matplotlib Axes"):
        plots.plot_frontier({"a": pts}, ax="x")
    ax = plots.plot_frontier({"a": pts}, bands={"a": pts})
    assert len(ax.get_lines()) == 1
    plt.close(ax.figure)


def test_layout_and_annotations_name_their_argument():
    with pytest.raises(TTamerError, match="instance must be a ttamer.Instance"):
        plots.tree_layout(None)
    with pytest.raises(TTamerError, match="policy must be a ttamer Policy"):
        plots.policy_annotations(None)


# ----------------------------------------------------------------------------------- benchmarks (B7)
@pytest.mark.parametrize("path", ["missing/x.json", "."])
def test_benchmark_json_path_is_checked_before_the_run(tmp_path, monkeypatch, capsys, path):
    monkeypatch.setattr(bench, "run_all", _ran)
    with pytest.raises(SystemExit) as exc:
        bench.main(["--smoke", "--only", "serving", "--json", str(tmp_path / path)])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "cannot write --json" in err and ("does not exist" in err or "folder" in err)


def test_benchmark_json_is_written_atomically(tmp_path, monkeypatch):
    out = tmp_path / "bench.json"
    monkeypatch.setattr(bench, "run_all", lambda *a, **k: {"profile": "smoke", "x": 1.5})
    monkeypatch.setattr(bench, "report", lambda res: "report")
    written = []
    real = bench.atomic_write
    monkeypatch.setattr(bench, "atomic_write", lambda *a, **k: written.append(a[0]) or real(*a, **k))
    assert bench.main(["--smoke", "--json", str(out)]) == 0
    assert written == [str(out)] and json.loads(out.read_text()) == {"profile": "smoke", "x": 1.5}


def test_benchmark_choices_are_checked(monkeypatch):
    for name in ("compare_solvers", "serving_overhead"):
        monkeypatch.setattr(bench, name, _ran)
    with pytest.raises(TTamerError, match=r"regime must be one of \('typical', 'dense'\)"):
        bench.chain(3, 2, regime="x")
    with pytest.raises(TTamerError, match="profile must be one of"):
        bench.run_all("x")
    with pytest.raises(TTamerError, match=r"only must be one of \('serving',\) or None"):
        bench.run_all("smoke", only="x")
    with pytest.raises(TTamerError, match=r"device must be one of \('cpu', 'cuda'\)"):
        bench.run_all("smoke", device="tpu", only="serving")


def test_serving_overhead_refuses_a_device_before_torch():
    with pytest.raises(TTamerError, match=r"device must be one of \('cpu', 'cuda'\), got 'tpu'"):
        bench.serving_overhead(10, 8, device="tpu")


def test_benchmark_instances_and_fits_are_checked():
    with pytest.raises(TTamerError, match=r"n \(nodes\) must be >= 1"):
        bench.shaped("chain", 0, 2)
    with pytest.raises(TTamerError, match=r"x \(sizes\)\[0\] must be > 0"):
        bench.fit_exponent([0, 1], [0, 1])
    with pytest.raises(TTamerError, match="at least two distinct sizes"):
        bench.fit_exponent([2, 2], [1, 3])
    assert bench.fit_exponent([1, 2, 4], [1, 4, 16]) == pytest.approx(2.0)
    with pytest.raises(TTamerError, match=r"the profile p lacks \['target_chain', 'target_forest'\]"):
        bench.targets({})


def test_benchmark_synthetic_trace_is_bounded_before_allocating(monkeypatch):
    monkeypatch.setattr(np.random, "default_rng", _ran)
    with pytest.raises(TTamerError, match="above MAX_TRACE_CELLS"):
        bench.synthetic_trace(10**9, 3, 2)
    with pytest.raises(TTamerError, match="classes must be <= 1000"):
        bench.synthetic_trace(10, 3, 10**6)


# ----------------------------------------------------------------------------------- index_sweep (C)
def test_index_sweep_bounds_and_needs_lams(inst, monkeypatch):
    monkeypatch.setattr(frontier, "strategy_point", _ran)
    with pytest.raises(TTamerError, match="lams must be a non-empty"):
        frontier.index_sweep(inst, [])
    with pytest.raises(TTamerError, match=r"lams has 1,000,000 values; at most 2,000"):
        frontier.index_sweep(inst, np.linspace(0, 1, 10**6))
    with pytest.raises(TTamerError, match=r"lams has 2,001 values; at most 2,000"):
        frontier.index_sweep(inst, (float(i % 2) for i in range(10**9)))


# ----------------------------------------------------------------------------------- save_instance (D)
def test_save_instance_says_the_argument_order(inst, tmp_path):
    path = tmp_path / "x.json"
    with pytest.raises(TTamerError, match=r"the instance first, then the path: save_instance\(instance, path\)"):
        save_instance(str(path), inst)
    assert not path.exists()
    save_instance(inst, path)
    assert ttamer.load_instance(path).n == inst.n
