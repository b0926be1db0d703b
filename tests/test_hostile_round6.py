"""Hostile and mismatched inputs found by a sixth fuzzing round: the serving runtime (decisions
in every mode, fitted rules' classes, user callables, cost tables, a model changed after its
server was built) and the estimators and evaluation (traces replaced after they were built,
conflicting targets, bootstrap memory, the full model closing every sweep, λ after fit, argument
checks of the helpers). Each test fails on the code before the fix."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

import ttamer
from ttamer.benchmarks import _mlp_exits
from ttamer.core.errors import TraceError, TTamerError
from ttamer.earlyexit import slo
from ttamer.earlyexit.evaluation import (ablation, accuracy_at, domination_summary, evaluate_trace,
                                         markov_diagnostics)
from ttamer.earlyexit.skips import SkipTamer
from ttamer.earlyexit.traces import Trace, synthetic_trace
from ttamer.serving import (ChainPolicyRule, EarlyExitServer, max_prob_rule, pathwise_rule, served_cost,
                            threshold_rule, with_cost_profile)
from ttamer.serving.adapters import MultiExitModel

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def mlp():
    model = _mlp_exits(8, exits=3, classes=3)
    x = np.random.default_rng(0).normal(size=(30, 8)).astype(np.float32)
    return model, x


# --------------------------------------------------------------------------- serving
def test_max_prob_rule_decides_alike_one_query_at_a_time_and_in_batches(mlp):
    """A threshold just above an exit's float32 max-probability: a Python float compared with a
    float32 array is rounded to float32 first (NEP 50) and stopped the batched run there."""
    model, x = mlp
    trace = EarlyExitServer(model, max_prob_rule(3, np.inf)).run_all(x, np.zeros(30, int))
    tau = float(trace.probs[0, 0].max()) + 1e-12
    one = EarlyExitServer(model, max_prob_rule(3, tau)).serve(x[:8], 1).last
    batched = EarlyExitServer(model, max_prob_rule(3, tau)).serve(x[:8], 8).last
    rollout = EarlyExitServer(model, *threshold_rule(3, tau), compile=False).serve(x[:8], 8).last
    simulated = ttamer.earlyexit.baselines.max_prob_threshold(trace.subset(np.arange(8)), [tau])[0].last
    assert one[0] > 0  # exit 0's max-probability is below tau: it goes on
    np.testing.assert_array_equal(one, simulated)
    np.testing.assert_array_equal(batched, simulated)
    np.testing.assert_array_equal(rollout, simulated)


def test_rules_built_from_fitted_tamers_refuse_a_model_of_other_classes(mlp):
    model, x = mlp  # 3 classes
    five = synthetic_trace(400, 3, 5, seed=1)
    pw = ttamer.PathwiseTamer(lam=0.8).fit(five)
    chain = ttamer.EarlyExitTamer(lam=0.8, K=4, feature="max_prob", agreement=1).fit(five)
    rules = [pathwise_rule(pw), ChainPolicyRule.compile(chain.solution_.policy, chain.encoder_, chain.answer_table_)]
    for rule in rules:
        for bs in (1, 8):
            with pytest.raises(TTamerError, match=r"\[\d+, 5\]"):
                EarlyExitServer(model, rule).serve(x[:8], bs)


@pytest.mark.parametrize("bad, match", [
    (lambda p, a: np.zeros(len(a) + 1, int), "one integer exit per row"),
    (lambda p, a: np.full(len(a), -1), "returned exit -1 for row 0"),
    (lambda p, a: a + 0.0, "one integer exit per row"),
    (lambda p, a: np.full(len(a), 5), "returned exit 5"),
])
def test_exit_map_must_return_an_exit_each_row_consulted(mlp, bad, match):
    model, x = mlp
    for bs in (1, 4):
        with pytest.raises(TTamerError, match=match):
            EarlyExitServer(model, max_prob_rule(3, 0.6), exit_map=bad).serve(x[:8], bs)


def test_answer_fn_of_a_policy_must_return_an_exit_each_row_consulted(mlp):
    model, x = mlp
    policy, state_fn = threshold_rule(3, 0.6)
    server = EarlyExitServer(model, policy, state_fn, answer_fn=lambda s, last: np.full(len(last), 2),
                             compile=False)
    with pytest.raises(TTamerError, match="answer_fn returned exit 2 for row"):
        server.serve(x[:8], 4)


def test_accuracy_checks_its_labels(mlp):
    model, x = mlp
    res = EarlyExitServer(model, max_prob_rule(3, 0.6)).serve(x[:20], 4)
    y = np.arange(20) % 3
    assert res.accuracy(y) == float(np.mean(res.prediction == y))
    for bad in (y[:, None], y[:1], 0, ["a"] * 20):
        with pytest.raises(TraceError, match="labels"):
            res.accuracy(bad)


@pytest.fixture(scope="module")
def priced(mlp):
    model, x = mlp
    server = EarlyExitServer(model, max_prob_rule(3, 0.6))
    trace = server.run_all(x[:24], np.arange(24) % 3, batch_size=8, profile_examples=6, profile_rows=[1, 4, 8])
    return trace, server.serve(x[:24], 8).last


def _with_meta(trace, **meta):
    return Trace.build(trace.probs, trace.labels, trace.cost, {**trace.meta, **meta})


@pytest.mark.parametrize("meta, batch, match", [
    ({"batch_cost": "junk"}, 8, r"meta\['batch_cost'\] must be a dict"),
    ({"batch_cost": {"rows": [-4, 4, 8], "ms_per_batch": [[1] * 3] * 3}}, 8, r"\['rows'\]"),
    ({"batch_cost": {"rows": [1.5, 4, 8], "ms_per_batch": [[1] * 3] * 3}}, 8, r"\['rows'\]"),
    ({"batch_cost": {"rows": [1, 4, 8], "ms_per_batch": [[-1, 5, 5]] * 3}}, 8, r"\['ms_per_batch'\]"),
    ({"batch_cost": {"rows": [1, 4, 8], "ms_per_batch": [[0, 0, 0]] * 3}}, 8, "some time at every row count"),
    ({"batch_cost": {"rows": [1, 4, 8], "ms_per_batch": [[1e308] * 3] * 3}}, 8, "overflow"),
    ({"cost_profiles": "x"}, 1, r"meta\['cost_profiles'\] must be a dict"),
    ({"cost_profiles": {"batch1": "x", "batched": [1, 1, 1]}}, 1, r"\['batch1'\]"),
])
def test_served_cost_refuses_hostile_cost_tables(priced, meta, batch, match):
    trace, last = priced
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # refused by name, without a RuntimeWarning first
        with pytest.raises(TTamerError, match=match):
            served_cost(_with_meta(trace, **meta), last, batch)


def test_served_cost_refuses_overflowing_or_negative_prices(priced):
    trace, last = priced
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(TTamerError, match="overflow"):
            served_cost(trace, last, 1, profile=np.ones(3), reference=np.full(3, 1e-320))
        with pytest.raises(TTamerError, match="< 0"):
            served_cost(trace, last, 8, state_ms=np.full((2, 3), -1.0))
    with pytest.raises(TTamerError, match="last must be"):
        served_cost(trace, np.full(24, 3), 8)
    with pytest.raises(TTamerError, match="ttamer Trace"):
        with_cost_profile("not a trace", 1)


def test_run_all_keeps_what_it_measured(mlp):
    model, x = mlp
    with pytest.raises(TTamerError, match=r"meta may not set \['batch_size', 'cost_unit', 'device'\]"):
        EarlyExitServer(model, max_prob_rule(3, 0.6)).run_all(
            x[:8], np.zeros(8, int), batch_size=4, meta={"batch_size": "x", "device": "cuda:9", "cost_unit": "MACs"})


def test_a_model_changed_after_its_server_was_built_is_refused():
    model = _mlp_exits(8, exits=3, classes=3)
    server = EarlyExitServer(model, max_prob_rule(3, 0.9))
    extra = _mlp_exits(8, exits=1, classes=3, seed=5)
    model.blocks.append(extra.blocks[0])
    model.heads.append(extra.heads[0])
    x = np.zeros((4, 8), np.float32)
    for run in (lambda: server.serve(x, 4), lambda: server.serve(x, 1), lambda: server.run_full(x, 4)):
        with pytest.raises(TTamerError, match="the model has 4 exits but had 3"):
            run()


def test_run_full_names_the_last_exit_for_its_nan_logits():
    lin = torch.nn.Linear(8, 3)
    model = MultiExitModel.from_modules([torch.nn.Identity()] * 3, [lin, lin, lambda h: lin(h) * float("nan")])
    with pytest.raises(TTamerError, match="exit 2's head"):
        EarlyExitServer(model, max_prob_rule(3, 0.5)).run_full(np.zeros((4, 8), np.float32), 4)


@pytest.mark.parametrize("states", [0.7, np.nan, 2**70])
def test_a_policy_state_fn_must_return_integer_states_in_every_path(mlp, states):
    model, x = mlp
    policy, _ = threshold_rule(3, 0.6)
    fn = lambda p, node: np.full(len(p), states, dtype=object if states == 2**70 else float)  # noqa: E731
    for compile in (True, False):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            with pytest.raises(TTamerError, match="state_fn returned"):
                EarlyExitServer(model, policy, fn, compile=compile).serve(x[:8], 4)


# --------------------------------------------------------------------------- estimators, evaluation
@pytest.fixture(scope="module")
def small():
    return synthetic_trace(200, 4, 3, seed=1), synthetic_trace(30, 4, 3, seed=2)


def test_decide_validates_a_trace_whose_arrays_were_replaced(small):
    cal, test = small
    tamers = [ttamer.ThresholdTamer(), ttamer.PathwiseTamer(), ttamer.EarlyExitTamer(), SkipTamer()]
    tamers = [t.fit(cal) for t in tamers]
    bad = Trace(test.probs, test.labels, -test.cost)  # built directly, never validated
    for t in tamers:
        with pytest.raises(TraceError, match="key 'cost'"):
            t.decide(bad)
    with pytest.raises(TraceError, match="plain NumPy array"):
        ttamer.ThresholdTamer().fit(Trace(cal.probs.tolist(), cal.labels, cal.cost))


def test_skip_tamer_decides_one_example(small):
    cal, test = small
    assert SkipTamer().fit(cal).decide(test.subset(np.arange(1))).answer.shape == (1,)


def test_conflicting_targets_are_refused(small):
    cal, _ = small
    with pytest.raises(TTamerError, match="thresholds: target 'label' differs from the evaluation's target 'final'"):
        evaluate_trace(synthetic_trace(300, 4, 3, seed=11), n_boot=0, with_chain=False, target="final",
                       thresholds={"target": "label"})
    with pytest.raises(TTamerError, match="must be the same"):
        slo.slo_block(cal, cal, {"t": ttamer.ThresholdTamer(target="label").fit(cal)}, target="final")
    with pytest.raises(TraceError, match="same model"):
        slo.slo_block(cal, synthetic_trace(150, 5, 3, seed=2), {}, heuristics=())


def test_bootstrap_curves_are_bounded_before_any_work():
    with pytest.raises(TTamerError, match="MAX_BOOTSTRAP_CURVE_CELLS"):
        evaluate_trace(synthetic_trace(300, 4, 3, seed=11), n_boot=2000, band_points=10000, with_chain=False)


def test_every_ttamer_sweep_ends_with_the_full_model():
    """The chain estimation's recall answer at λ = 1 may answer below the full model; the full
    model (every exit, the last answering) is an operating point of every strategy."""
    r = evaluate_trace(synthetic_trace(200, 4, 3, seed=1), n_boot=0, estimation="chain")
    for name in ("ttamer", "no-recall"):
        front = np.asarray(r.strategies[name].frontier)
        assert accuracy_at(front, np.array([1.0]), "pareto")[0] >= r.full_model.accuracy
        assert r.strategies[name].cost_at_full_accuracy is not None


def test_threshold_tamer_decides_at_the_lambda_it_fitted(small):
    cal, test = small
    m = ttamer.ThresholdTamer(lam=0.95).fit(cal)
    before = m.decide(test)
    moved = m.set_params(lam=0.1).decide(test)
    assert moved.params.tolist() == [0.95] and np.array_equal(moved.last, before.last)
    assert m.set_lam(0.1).decide(test).params.tolist() == [0.1] and m.lam_ == 0.1
    assert "λ=0.1" in m.runtime_rule().name


def test_helpers_check_their_arguments(small):
    cal, _ = small
    r = evaluate_trace(synthetic_trace(300, 4, 3, seed=11), n_boot=0, with_chain=False)
    with pytest.raises(TTamerError, match="no strategy 'bogus'"):
        domination_summary(r, heuristics=("bogus",))
    assert list(domination_summary(r, heuristics="max-prob")) == ["max-prob"]
    with pytest.raises(TTamerError, match="EvaluationResult"):
        domination_summary({"a": 1})
    for bad in (None, ["abc"], {"name": "a"}):
        with pytest.raises(TTamerError, match="configs must be a list of dicts"):
            ablation(cal, bad)
    for kw, match in (({"seed": -1}, "seed"), ({"smoothing": -1}, "smoothing"), ({"smoothing": np.nan}, "smoothing"),
                      ({"state": "bogus"}, "concrete StateSpec")):
        with pytest.raises(TTamerError, match=match):
            markov_diagnostics(cal, **kw)
    with pytest.raises(TraceError, match="1 exit"):
        markov_diagnostics(synthetic_trace(30, 1, 3))
    fitted = ttamer.ThresholdTamer().fit(cal)
    with pytest.raises(TTamerError, match="not fitted"):
        slo.out_of_fold_accuracy(ttamer.ThresholdTamer(), np.array([0.5]))
    with pytest.raises(TTamerError, match="budgets"):
        slo.out_of_fold_accuracy(fitted, np.array([np.nan]))
    with pytest.raises(TraceError, match="fitted on 4 exits and 3 classes"):
        fitted.without_recall(synthetic_trace(100, 6, 5, seed=9))
    with pytest.raises(TTamerError, match="the trace has 100 examples"):
        fitted.without_recall(synthetic_trace(100, 4, 3, seed=9))


def test_runtime_rule_checks_exits_and_rows(small):
    cal, test = small
    rule = ttamer.ThresholdTamer(policy="common:ensemble:ensemble").fit(cal).runtime_rule()
    with pytest.raises(TTamerError, match="step: exit must be >= 0"):
        rule.step(-1, test.probs[:, :0])
    with pytest.raises(TTamerError, match="a numpy array"):
        rule.step(0, test.probs[:, :1].tolist())
    with pytest.raises(TTamerError, match="stops: exit must be <= 3"):
        rule.stops(9, np.ones(3))
    for n in (-1, 10**12):
        with pytest.raises(TTamerError, match="begin: n"):
            rule.begin(n)
    with pytest.raises(TTamerError, match="exit 0 comes next"):
        rule.begin(5).advance(2, test.probs[:5, 2])


def test_measuring_helpers_check_their_arguments(mlp, priced):
    from ttamer.serving.latency import compare_latency, concat_results, state_cost

    model, x = mlp
    trace, _ = priced
    server = EarlyExitServer(model, max_prob_rule(3, 0.6))
    with pytest.raises(TTamerError, match="failed on the first batch"):
        server.cost_profile(x[:4, :3], 2)
    with pytest.raises(TTamerError, match="rule is an empty list"):
        server.cost_profile(x[:4], 2, rule=[])
    for rows in ([0], [], [2.7]):
        with pytest.raises(TTamerError, match="rows must be"):
            server.rows_cost(x[:8], 4, rows)
    one = MultiExitModel.from_modules([torch.nn.Identity()], [torch.nn.Linear(8, 3)])
    with pytest.raises(TTamerError, match="at least 2 exits"):
        EarlyExitServer(one, max_prob_rule(1, 0.6)).gather_cost(x[:8], 4, [1, 2])
    with pytest.raises(TTamerError, match="ServeResult"):
        compare_latency({"a": lambda i, b: None}, x[:4])
    with pytest.raises(TTamerError, match="ServeResult"):
        concat_results([None])
    with pytest.raises(TTamerError, match="rules must be a non-empty list"):
        state_cost([], trace, 4)
    for bs in ("x", 2.5):
        with pytest.raises(TTamerError, match="batch_size must be an integer"):
            state_cost([None], trace, bs)
    with pytest.raises(TTamerError, match="ttamer Trace"):
        state_cost([None], "x", 4)


# --------------------------------------------------------------------------- solvers, theory, CLI
def test_exact_evaluation_refuses_a_step_too_large_before_building_it(monkeypatch):
    from ttamer.core import simulate
    from ttamer.theory.synthetic import random_instance

    policy = ttamer.solve(random_instance(0, kind="chain", n=50, k=2, cost_scale=0.0), 1.0).policy  # every exit
    monkeypatch.setattr(simulate, "MAX_HISTORY_CELLS", 51 * 2**10)
    with pytest.raises(ttamer.SolverError, match="MAX_HISTORY_CELLS"):
        ttamer.evaluate_exactly(policy)
    assert simulate.MAX_HISTORY_CELLS * 8 <= 2**28  # at most 256 MiB per array of histories


def test_search_work_is_bounded_before_it_starts():
    from ttamer.theory.adversarial import search_worst_ratio

    for kind, n, k, maxiter in (("tree", 6, 4, 20000), ("tree", 10, 10, 1)):
        with pytest.raises(TTamerError, match="MAX_SEARCH_WORK"):
            search_worst_ratio(kind, n=n, k=k, restarts=1, maxiter=maxiter)


def test_lp_refuses_a_chain_with_too_many_transitions():
    from ttamer.theory.synthetic import random_instance

    inst = random_instance(0, kind="skips", n=110, k=4, fallback=None)
    with pytest.raises(ttamer.SolverError, match="MAX_LP_TRANSITIONS"):
        ttamer.solve(inst, 0.5, method="lp")


def test_aggregation_and_theory_helpers_stay_finite_or_refuse():
    from ttamer.theory.aggregation import cluster_states, kmeans_labels, loss_quantile_labels
    from ttamer.theory.frontier import lower_envelope
    from ttamer.theory.synthetic import random_instance

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert loss_quantile_labels([.1, .2, .3, .4], [1e308, 1e308, 1e308, 0], 2).tolist() == [0, 1, 1, 1]
        assert len(set(kmeans_labels([[1.], [0.], [-1.], [5.]], np.full(4, 1e308), 2, np.random.default_rng(0)))) == 2
        with pytest.raises(TTamerError, match=r"X\[0\]\[0\] must be a finite number in"):
            kmeans_labels([[1e200], [0], [-1e200], [5.]], np.ones(4), 2, np.random.default_rng(0))
        with pytest.raises(TTamerError, match="MAX_KMEANS_WORK"):
            cluster_states(random_instance(0, kind="chain", n=2, k=1000), 999, "kmeans")
        with pytest.raises(TTamerError, match=r"costs\[1\] must be a finite number in"):
            lower_envelope([0, 1e200, 2e300], [1e300, 1e-300, 0])
        with pytest.raises(TTamerError, match="would overflow float64"):
            random_instance(0, kind="skips", n=10, cost_scale=1e300, skip_discount=1e300)


@pytest.mark.parametrize("args, match", [
    (["--lam", "0_1"], "expected a decimal number in ASCII, got '0_1'"),
    (["--lam", "1e-400"], "too small for a float64"),
    (["--lam", "\u0660.\u0665"], "expected a decimal number in ASCII"),
    (["--lam", "\uff11"], "expected a decimal number in ASCII"),
    (["--la", "0.5"], "required: --lam"),  # --la is not taken for --lam
])
def test_cli_numbers_are_ascii_decimals_and_options_are_not_abbreviated(tmp_path, capsys, args, match):
    from ttamer.cli import main

    path = tmp_path / "i.json"
    ttamer.save_instance(ttamer.Instance.chain([[0.0, 1.0]], [0.5, 0.5], [], [1.0]), path)
    with pytest.raises(SystemExit) as exc:
        main(["solve", str(path), *args])
    assert exc.value.code == 2 and match in capsys.readouterr().err


def test_cli_integers_are_ascii_digits(capsys):
    from ttamer.cli import main

    for seed in ("\u0661\u0662", "0_1", "1" * 45):
        with pytest.raises(SystemExit):
            main(["evaluate", "missing.npz", "--seed", seed])
        assert "expected an integer in ASCII digits" in capsys.readouterr().err


def test_adversarial_families_refuse_values_that_do_not_fit_a_float():
    from ttamer.theory.adversarial import costly_family, floor_bound, floor_family_values

    with pytest.raises(TTamerError, match="overflows float64"):
        costly_family(1.0000001, 1 - 1e-16, 1e308)
    for call in (lambda: floor_family_values(5e-324), lambda: floor_bound(1e-310)):
        with pytest.raises(TTamerError, match=r"delta \(the loss floor\) must be >= 1e-150"):
            call()


def test_the_command_line_loads_no_numerical_library_before_its_interrupt_handler():
    """``ttamer`` (the package) and ``ttamer.cli`` load lazily, so that an interrupt while a
    command starts ends as one line: before, numpy, scipy and torch loaded first (~0.5 s)."""
    import subprocess
    import sys

    code = "import sys, ttamer.cli; print(sorted(m for m in ('numpy', 'scipy', 'torch') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_an_interrupt_while_the_subcommands_load_is_one_line(monkeypatch, capsys):
    import importlib

    from ttamer.cli import main

    def interrupted():
        raise KeyboardInterrupt

    monkeypatch.setattr(importlib.import_module("ttamer.cli.main"), "build_parser", interrupted)
    assert main(["solve", "x.json", "--lam", "0.5"]) == 130
    assert capsys.readouterr().err == "ttamer: interrupted\n"


def test_a_boolean_state_fn_is_served_alike_in_every_path(mlp):
    """One check of a ``state_fn``'s states serves both paths: booleans (stop / go on) are
    integer states there, as they were before the checks."""
    model, x = mlp
    policy, _ = threshold_rule(3, 0.6)
    fn = lambda p, node: p[:, node].max(axis=1) >= 0.6  # noqa: E731
    lasts = [EarlyExitServer(model, policy, fn, compile=c).serve(x[:8], 4).last for c in (True, False)]
    np.testing.assert_array_equal(lasts[0], lasts[1])
    np.testing.assert_array_equal(lasts[0], EarlyExitServer(model, max_prob_rule(3, 0.6)).serve(x[:8], 4).last)
