"""Hostile input, third pass: usage errors of the command line on one line, node names that
cannot break the printed policy into extra lines, no "-0" printed for λ or values, and the
solver and theory entry points below :func:`ttamer.solve` refusing what ``solve`` refuses
(bad λ, recall flags, non-instances, huge sizes) instead of computing garbage or hanging.
"""

from __future__ import annotations

import copy
import json
import math
import time

import numpy as np
import pytest
from strategies import EXAMPLE_INSTANCE

from ttamer import Instance
from ttamer.cli import main
from ttamer.core.errors import TTamerError
from ttamer.core.validate import check_lam
from ttamer.solvers import chain_recall, exhaustive, heuristics, index, lp, norecall
from ttamer.theory import adversarial, frontier, synthetic

BASE = EXAMPLE_INSTANCE


def one_line(exc: BaseException) -> str:
    msg = str(exc)
    assert msg and "\n" not in msg and len(msg) < 1000, msg
    return msg


@pytest.fixture
def chain3() -> Instance:
    data = copy.deepcopy(BASE)
    data.pop("skips")
    return Instance.from_dict(data)


@pytest.fixture
def inst_file(tmp_path):
    path = tmp_path / "inst.json"
    path.write_text(json.dumps(BASE), encoding="utf-8")
    return path


# ------------------------------------------------------------------------- command line
@pytest.mark.parametrize("argv, needle", [
    (["solve", "{path}", "--lam", "abc"], "--lam"),
    (["solve", "{path}"], "--lam"),
    (["solve", "{path}", "--lam", "0.5", "--method", "fast"], "--method"),
    (["solve", "{path}", "--lam", "0.5", "--out", "x.json"], "--out"),
    (["frobnicate"], "frobnicate"),
    (["evaluate", "{path}", "--seed", "1.5"], "--seed"),
    (["traces", "nlp", "--n-head", "many"], "--n-head"),
    (["traces", "zoo", "--seed", "x"], "--seed"),
])
def test_usage_errors_are_one_line(capsys, inst_file, argv, needle):
    argv = [a.replace("{path}", str(inst_file)) for a in argv]
    with pytest.raises(SystemExit) as stop:
        main(argv)
    assert stop.value.code == 2
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert out == "" and len(lines) == 1, err
    assert lines[0].startswith("ttamer") and ": error: " in lines[0] and needle in lines[0]
    assert "--help" in lines[0] and "usage:" not in err


def test_help_still_prints_usage(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["solve", "--help"])
    assert stop.value.code == 0 and "usage:" in capsys.readouterr().out


@pytest.mark.parametrize("method", ["dp", "exhaustive"])
def test_newline_in_a_node_name_cannot_add_lines_to_the_policy(tmp_path, capsys, method):
    data = copy.deepcopy(BASE)
    evil = "exit3\noptimal expected trade-off: 0"
    data["nodes"][2]["name"] = evil
    data["skips"][0]["to"] = evil
    path = tmp_path / "inst.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    assert main(["solve", str(path), "--lam", "0.5", "--method", method]) == 0
    out = capsys.readouterr().out
    assert sum(line.startswith("optimal expected trade-off") for line in out.splitlines()) == 1
    assert "exit3\\noptimal" in out or method == "exhaustive"
    assert main(["solve", str(path), "--lam", "0.5", "--json"]) == 0
    assert "\n" not in json.loads(capsys.readouterr().out)["policy"].split("after ")[-1]


def test_index_policy_description_escapes_names(chain3):
    data = copy.deepcopy(BASE)
    data.pop("skips")
    data["nodes"][2]["name"] = "a\nb"
    from ttamer import solve

    text = solve(Instance.from_dict(data), 0.5, method="index").policy.describe()
    assert "σ[a\\nb]" in text and "a\nb" not in text


def test_negative_zero_lambda_is_zero(inst_file, capsys):
    assert math.copysign(1.0, check_lam(-0.0)) == 1.0
    assert main(["solve", str(inst_file), "--lam", "-0"]) == 0
    out = capsys.readouterr().out
    assert "λ=-0" not in out and "λ=0" in out
    assert main(["solve", str(inst_file), "--lam", "-0", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert math.copysign(1.0, res["lam"]) == 1.0 and math.copysign(1.0, res["value"]) == 1.0


def test_lp_value_at_lambda_zero_is_not_negative_zero(chain3):
    from ttamer import solve

    data = copy.deepcopy(BASE)
    data.pop("skips")
    data["fallback"] = 0.3
    value = solve(Instance.from_dict(data), 0.0, method="lp").value
    assert value == 0.0 and math.copysign(1.0, value) == 1.0


# ------------------------------------------------------------------------- solver entry points
BAD_LAMS = [1.5, -1, float("nan"), float("inf"), True, "0.5", None]


@pytest.mark.parametrize("lam", BAD_LAMS)
@pytest.mark.parametrize("fn", [
    lambda inst, lam: exhaustive.solve_exhaustive(inst, lam),
    lambda inst, lam: norecall.solve_norecall_dp(inst, lam),
    lambda inst, lam: chain_recall.solve_chain_recall(inst, lam),
    lambda inst, lam: chain_recall.x_levels(inst, lam),
    lambda inst, lam: index.compute_indices(inst, lam),
    lambda inst, lam: index.solve_index(inst, lam),
    lambda inst, lam: heuristics.best_threshold(inst, lam),
    lambda inst, lam: heuristics.ThresholdPolicy(inst, lam, 0.5),
], ids=["exhaustive", "norecall", "chain_recall", "x_levels", "compute_indices", "solve_index",
        "best_threshold", "ThresholdPolicy"])
def test_solver_engines_refuse_bad_lambda(chain3, fn, lam):
    with pytest.raises(TTamerError, match="lam") as err:
        fn(chain3, lam)
    one_line(err.value)


@pytest.mark.parametrize("recall", ["", 0, 1, None, [1]])
@pytest.mark.parametrize("fn", [
    lambda inst, r: exhaustive.state_space_bound(inst, r),
    lambda inst, r: exhaustive.state_space_log10(inst, r),
    lambda inst, r: exhaustive.fits_state_space(inst, r, 100),
    lambda inst, r: exhaustive.describe_state_space(inst, r),
    lambda inst, r: exhaustive.solve_exhaustive(inst, 0.5, r),
    lambda inst, r: lp.exhaustive_mdp_log10(inst, r),
    lambda inst, r: lp.check_exhaustive_size(inst, r, 100),
    lambda inst, r: lp.exhaustive_mdp(inst, r),
    lambda inst, r: lp.chain_mdp_size(inst, r),
    lambda inst, r: lp.chain_mdp(inst, r),
    lambda inst, r: lp.build_mdp(inst, r),
    lambda inst, r: lp.solve_lp(inst, 0.5, r),
    lambda inst, r: lp.budgeted_lp(inst, 1.5, r),
    lambda inst, r: heuristics.best_threshold(inst, 0.5, r),
], ids=["state_space_bound", "state_space_log10", "fits_state_space", "describe_state_space",
        "solve_exhaustive", "exhaustive_mdp_log10", "check_exhaustive_size", "exhaustive_mdp",
        "chain_mdp_size", "chain_mdp", "build_mdp", "solve_lp", "budgeted_lp", "best_threshold"])
def test_recall_is_a_flag_everywhere(chain3, fn, recall):
    with pytest.raises(TTamerError, match="recall must be True or False") as err:
        fn(chain3, recall)
    one_line(err.value)


@pytest.mark.parametrize("fn", [
    exhaustive.solve_exhaustive, norecall.solve_norecall_dp, chain_recall.solve_chain_recall,
    index.compute_indices, lambda x, lam: heuristics.threshold_candidates(x),
    lambda x, lam: exhaustive.state_space_bound(x, True), lambda x, lam: lp.build_mdp(x),
    lambda x, lam: synthetic.marginals(x), lambda x, lam: adversarial.values_by_method(x, lam, lp=False),
])
@pytest.mark.parametrize("thing", [None, BASE, "inst.json"])
def test_non_instances_are_named(fn, thing):
    with pytest.raises(TTamerError, match="instance must be a ttamer.Instance") as err:
        fn(thing, 0.5)
    one_line(err.value)


@pytest.mark.parametrize("max_states", [1.5, "100", True, float("inf")])
def test_state_space_limits_are_integers(chain3, max_states):
    for fn in (exhaustive.fits_state_space, lp.check_exhaustive_size):
        with pytest.raises(TTamerError, match="max_states"):
            fn(chain3, True, max_states)


@pytest.mark.parametrize("budget", ["1.5", True, float("nan"), -1.0])
def test_budget_is_a_number(chain3, budget):
    with pytest.raises(TTamerError, match="budget") as err:
        lp.budgeted_lp(chain3, budget)
    one_line(err.value)


def test_build_mdp_space_must_be_a_string(chain3):
    with pytest.raises(TTamerError, match="space") as err:
        lp.build_mdp(chain3, True, space=np.array([]))
    one_line(err.value)


# ------------------------------------------------------------------------- theory
@pytest.mark.parametrize("n", [10**29, 2**63, -1, 1.5, "4", True])
def test_random_parents_refuses_bad_sizes_before_work(n):
    t0 = time.perf_counter()
    with pytest.raises(TTamerError, match="n") as err:
        synthetic.random_parents(np.random.default_rng(0), "tree", n, 1)
    assert time.perf_counter() - t0 < 5
    one_line(err.value)


@pytest.mark.parametrize("kind, rng", [("bush", np.random.default_rng(0)), (np.array([]), np.random.default_rng(0)),
                                       ("tree", 0)])
def test_random_parents_checks_kind_and_rng(kind, rng):
    with pytest.raises(TTamerError) as err:
        synthetic.random_parents(rng, kind, 4, 1)
    one_line(err.value)


@pytest.mark.parametrize("lams", [0.5, None, "0.5"])
def test_index_sweep_needs_a_sequence(chain3, lams):
    with pytest.raises(TTamerError, match="lams") as err:
        frontier.index_sweep(chain3, lams)
    one_line(err.value)


@pytest.mark.parametrize("recall_method", ["", 0, []])
def test_gap_does_not_treat_a_falsy_recall_method_as_none(chain3, recall_method):
    with pytest.raises(TTamerError, match="method"):
        adversarial.gap(chain3, 0.5, recall_method=recall_method)


# ---------------------------------------------------------------- low-level theory and LP helpers
def test_low_level_helpers_name_their_arguments():
    from ttamer.solvers.lp import action_table, action_values, build_mdp, primal_lp
    from ttamer.theory.adversarial import floor_class_decoder
    from ttamer.theory.aggregation import cluster_states, kmeans_labels
    from ttamer.theory.synthetic import correlated_transition

    inst = Instance.from_dict(copy.deepcopy(BASE))
    mdp = build_mdp(inst)
    rng = np.random.default_rng(0)
    X = np.array([[0.0, 1.0], [1.0, 0.0], [0.5, 0.5]])
    cases = [
        (lambda: primal_lp("mdp", 0.5), "mdp must be a FiniteMDP"),
        (lambda: action_values(mdp, 0.5, np.zeros(mdp.n_states + 1)), "one value per state"),
        (lambda: action_values(mdp, 0.5, ["x"] * mdp.n_states), "V (values per state)"),
        (lambda: action_values(mdp, 1.5, np.zeros(mdp.n_states)), "lam"),
        (lambda: action_table(mdp, 0.5, np.full(mdp.n_states, np.nan)), "V (values per state)"),
        (lambda: kmeans_labels(X, np.ones(3), 2, rng, iters=-1), "iters"),
        (lambda: kmeans_labels(X, np.ones(3), np.inf, rng), "q (clusters)"),
        (lambda: kmeans_labels(X, np.ones(2), 2, rng), "one weight per row"),
        (lambda: kmeans_labels(X, np.ones(3), 2, 0), "numpy.random.Generator"),
        (lambda: kmeans_labels(X[0], np.ones(2), 2, rng), "X"),
        (lambda: cluster_states(inst, 2, method=np.array([])), "method (of aggregation)"),
        (lambda: correlated_transition("rng", 2, 2, 0.5), "numpy.random.Generator"),
        (lambda: floor_class_decoder("chain", 2, 0, 0.1, rng), "k (states per node)"),
        (lambda: floor_class_decoder("chain", 2, 2, 1.5, rng), "delta"),
        (lambda: floor_class_decoder(np.array([]), 2, 2, 0.1, rng), "kind"),
    ]
    for call, needle in cases:
        with pytest.raises(TTamerError) as err:
            call()
        assert needle in one_line(err.value), (needle, str(err.value))


def test_batch_sizes_are_bounded():
    from ttamer.serving.runtime import MAX_BATCH_SIZE, check_batch_size

    assert check_batch_size(MAX_BATCH_SIZE) == MAX_BATCH_SIZE
    with pytest.raises(TTamerError, match="batch_size"):
        check_batch_size(10**30)
