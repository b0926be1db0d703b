"""Hostile inputs found by a fuzzing pass over the estimators' helpers and the zoo report: the
service-level protocol mixing up strategies or calibration traces, hand-built operating
points, state models and encoders given non-traces or unbounded state counts, the λ grid, the
folds, isotonic and logistic fits given degenerate arrays, the skip chain given mismatched
traces or costs, the zoo report's tables given malformed runs, and the trace cache's keys.
Each test fails on the code before the fix."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

from ttamer.core.errors import TraceError, TTamerError
from ttamer.earlyexit import crossval, isotonic, logistic, slo
from ttamer.earlyexit.features import MAX_STATES, StateEncoder, StateSpec
from ttamer.earlyexit.skips import exact_skip_decisions, scaled_costs
from ttamer.earlyexit.states import StateModel
from ttamer.earlyexit.tamer import ThresholdTamer
from ttamer.earlyexit.traces import synthetic_trace
from ttamer.workloads import registry
from ttamer.workloads import zoo_report as R


@pytest.fixture(autouse=True)
def no_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield


@pytest.fixture(scope="module")
def cal():
    return synthetic_trace(300, 4, 3, seed=0)


@pytest.fixture(scope="module")
def test_trace():
    return synthetic_trace(100, 4, 3, seed=1)


@pytest.fixture(scope="module")
def tamer(cal):
    return ThresholdTamer(n_lams=11).fit(cal)


def _points(n=300, **arrays):
    base = dict(cost=np.array([0.5, 1.0]), in_sample=np.array([0.7, 0.8]), accuracy=np.array([0.7, 0.8]),
                disagreement=np.array([0.1, 0.0]))
    base.update(arrays)
    return slo.OperatingPoints(n=n, apply=lambda trace, ps: None, **base)


# ------------------------------------------------------------------ 1. slo_block
@pytest.mark.parametrize("name", ["static", "max-prob", "entropy"])
def test_slo_block_refuses_a_tamer_named_after_another_strategy(cal, test_trace, tamer, name):
    with pytest.raises(TTamerError, match=f"the name '{name}' is also a strategy's"):
        slo.slo_block(cal, test_trace, {name: tamer})


def test_slo_block_refuses_non_string_names_and_repeated_heuristics(cal, test_trace, tamer):
    with pytest.raises(TTamerError, match="a tamer's name must be a string"):
        slo.slo_block(cal, test_trace, {("a",): tamer})
    with pytest.raises(TTamerError, match=r"heuristics lists \['max-prob'\] more than once"):
        slo.slo_block(cal, test_trace, {}, heuristics=("max-prob", "max-prob"))


def test_slo_block_refuses_a_tamer_fitted_on_another_calibration_trace(test_trace, tamer):
    other = synthetic_trace(300, 4, 3, seed=5)
    with pytest.raises(TTamerError, match="tamer_points: the trace is not the one this estimator was fitted on"):
        slo.slo_block(other, test_trace, {"t": tamer})
    with pytest.raises(TTamerError, match="tamer_points: the trace is not the one this estimator was fitted on"):
        slo.tamer_points(tamer, other)


# ------------------------------------------------------------------ 2. operating points
@pytest.mark.parametrize("n, match", [(0, "points.n must be >= 1"), (-5, "points.n must be >= 1"),
                                      (2.5, "points.n must be an integer")])
def test_meets_target_refuses_a_menu_on_no_examples(n, match):
    with pytest.raises(TTamerError, match=match):
        slo.meets_target(_points(n), 0.8, 0.0, 0.9, 10)


@pytest.mark.parametrize("arrays, match", [
    (dict(accuracy=np.array([0.7, 0.8, 0.9])), "points.accuracy has 3 values, points.cost 2"),
    (dict(in_sample=np.array([0.7])), "points.in_sample has 1 values, points.cost 2"),
    (dict(disagreement=np.array([0.1, 5.0])), r"points.disagreement\[1\] must be a finite number in \[0, 1\]"),
    (dict(cost=np.array([np.nan, 1.0])), r"points.cost\[0\] must be a finite number"),
    (dict(cost=np.array([[0.5, 1.0]])), "points.cost must be a non-empty 1-D array")])
def test_meets_target_refuses_ragged_or_impossible_points(arrays, match):
    with pytest.raises(TTamerError, match=match):
        slo.meets_target(_points(**arrays), 0.8, 0.0, 0.9, 10)


def test_a_menu_s_apply_is_checked():
    with pytest.raises(TTamerError, match="points.apply must be a function"):
        slo.meets_target(slo.OperatingPoints(*[np.array([0.5, 1.0])] * 4, 300, None), 0.8, 0.0, 0.9, 10)


def test_heuristic_and_static_points_check_their_arguments(cal):
    with pytest.raises(TTamerError, match=r"unknown heuristic \['max-prob'\]"):
        slo.heuristic_points(cal, ["max-prob"])
    with pytest.raises(TTamerError, match="heuristic_points expects a ttamer Trace"):
        slo.heuristic_points(None, "max-prob")
    with pytest.raises(TTamerError, match="static_points expects a ttamer Trace"):
        slo.static_points(None)


@pytest.mark.parametrize("ps, match", [([10**6], "got 1000000 at index 0"), ([-1], "got -1 at index 0"),
                                       ([1.7], "got array"), ([True], "got array")])
def test_a_menu_refuses_rules_it_does_not_have(cal, test_trace, tamer, ps, match):
    for menu in (slo.static_points(cal), slo.heuristic_points(cal, "max-prob"), slo.tamer_points(tamer, cal),
                 slo.united(slo.static_points(cal), slo.heuristic_points(cal, "entropy"))):
        with pytest.raises(TTamerError, match=r"ps \(rules of the menu\) must be .*" + match):
            menu.apply(test_trace, np.array(ps))


def test_a_menu_applies_its_last_rule_the_full_model(cal, test_trace):
    menu = slo.static_points(cal)
    dec = menu.apply(test_trace, np.array([len(menu.cost) - 1]))
    assert (dec.last == test_trace.n_exits - 1).all()


def test_out_of_fold_accuracy_bounds_the_budgets(tamer):
    curves = len(tamer.cv_curves_[tamer.candidate_.key])
    most = slo.MAX_SWEEP_CELLS // curves
    with pytest.raises(TTamerError, match=f"budgets has {most + 1:,} values; at most {most:,}"):
        slo.out_of_fold_accuracy(tamer, np.zeros(most + 1))


# ------------------------------------------------------------------ 3. states and encoders
def test_state_model_refuses_non_traces(cal):
    with pytest.raises(TTamerError, match="StateModel.fit expects a ttamer Trace"):
        StateModel.fit(None, "max_prob", "last")
    model = StateModel.fit(cal, "posterior", "posterior")
    with pytest.raises(TTamerError, match="StateModel.transform expects a ttamer Trace .*got ndarray"):
        model.transform(np.zeros((5, 4, 3)))


def test_state_encoder_checks_its_trace_loss_and_target(cal):
    spec = StateSpec(K=4, agreement=0)
    with pytest.raises(TTamerError, match="loss must be one of"):
        StateEncoder.fit(spec, cal, loss="nope")
    with pytest.raises(TTamerError, match="target must be one of"):
        StateEncoder.fit(spec, cal, target="x")
    with pytest.raises(TTamerError, match="StateEncoder.fit expects a ttamer Trace"):
        StateEncoder.fit(spec, None)
    with pytest.raises(TTamerError, match="needs a concrete StateSpec"):
        StateEncoder.fit("K=4", cal)
    with pytest.raises(TTamerError, match="StateEncoder.transform expects a ttamer Trace"):
        StateEncoder.fit(spec, cal).transform(None)


def test_state_encoder_bounds_the_states_per_exit_before_fitting(cal):
    spec = StateSpec(K=1000, agreement=3, entropy_bins=1000, prospect_bins=1000)
    assert spec.states_per_exit == 4 * 10**9
    with pytest.raises(TTamerError, match=f"4,000,000,000 states per exit, above MAX_STATES={MAX_STATES:,}"):
        StateEncoder.fit(spec, cal)
    ok = StateSpec(K=4, agreement=2, entropy_bins=3)
    assert ok.states_per_exit == 36 and StateEncoder.fit(ok, cal).n_states.max() <= 36


# ------------------------------------------------------------------ 4. helpers
@pytest.mark.parametrize("args, match", [((5, 0, 1), "lo must be > 0"), ((5, -1, 1), "lo must be > 0"),
                                         ((5, 1, np.nan), "hi must be finite"), ((5, 10, 1), "hi must be >= 10"),
                                         ((0,), "n must be >= 1"), ((2.5,), "n must be an integer"),
                                         ((10**10,), f"n must be <= {crossval.MAX_LAM_GRID}")])
def test_lam_grid_checks_its_arguments(args, match):
    with pytest.raises(TTamerError, match=match):
        crossval.lam_grid(*args)


@pytest.mark.parametrize("args, match", [((10, 0, 0), "folds must be >= 2"), ((10, -1, 0), "folds must be >= 2"),
                                         ((10, 3, -1), "seed must be >= 0"), ((10, 3, 1.5), "seed must be an integer"),
                                         ((-1, 2, 0), "n must be >= 1")])
def test_cv_folds_of_checks_its_arguments(args, match):
    with pytest.raises(TTamerError, match=match):
        crossval.cv_folds_of(*args)


@pytest.mark.parametrize("y, w, match", [([0.1, 0.5], [0.0, 0.0], r"w\[0\] is 0"),
                                         ([0.1, 0.5], [1.0, -1.0], r"w\[1\] must be a finite number in \[0, inf\]"),
                                         ([0.1, 0.5, 0.9], [1.0, 1.0], "w has 2 values, y 3"),
                                         ([1.0, np.nan, 0.5], [1.0, 1.0, 1.0], r"y\[1\] must be a finite number")])
def test_isotonic_refuses_zero_weights_and_mismatched_lengths(y, w, match):
    with pytest.raises(TTamerError, match=match):
        isotonic.isotonic(np.array(y), np.array(w))


def test_isotonic_pools_the_violators():
    assert np.allclose(isotonic.isotonic([0.1, 0.5], [1, 3]), [0.4, 0.4])


@pytest.mark.parametrize("x, y, kw, match", [
    (np.c_[np.ones(5), [1, 2, np.nan, 4, 5]], np.array([0, 1, 0, 1, 1.0]), {}, r"x\[2\]\[1\] must be a finite"),
    (np.c_[np.ones(4), [1, 2, 3, 4]], np.array([0, 1.0]), {}, "y has 2 values, x 4 rows"),
    (np.zeros((0, 2)), np.zeros(0), {}, "x must be a non-empty 2-D array"),
    (np.c_[np.ones(4), [1, 2, 3, 4]], np.array([0, 1, 2, 1.0]), {}, r"y\[2\] must be a finite number in \[0, 1\]"),
    (np.c_[np.ones(4), [1, 2, 3, 4]], np.array([0, 1, 0, 1.0]), dict(iters=-1), "iters must be >= 1"),
    (np.c_[np.ones(4), [1, 2, 3, 4]], np.array([0, 1, 0, 1.0]), dict(ridge=np.nan), "ridge must be finite")])
def test_fit_logistic_checks_its_arrays(x, y, kw, match):
    with pytest.raises(TTamerError, match=match):
        logistic.fit_logistic(x, y, **kw)


def test_feature_scale_refuses_no_examples():
    with pytest.raises(TTamerError, match="x must be a non-empty 2-D array"):
        logistic.feature_scale(np.zeros((0, 3)))


@pytest.mark.parametrize("i, match", [(9, "must be <= 3"), (-1, "must be >= 0"), (1.0, "must be an integer")])
def test_pair_features_refuses_an_exit_the_trace_lacks(cal, i, match):
    with pytest.raises(TTamerError, match=r"i \(an exit\) " + match):
        logistic.pair_features(cal, i)


def test_posterior_answers_needs_a_model_per_exit(cal):
    with pytest.raises(TTamerError, match="models must be a list of 4 fitted"):
        logistic.posterior_answers(cal, [])


def test_exact_skip_decisions_refuses_a_test_trace_of_other_models(cal):
    with pytest.raises(TraceError, match="the trace's 5 models .* differ from the calibration trace's 4"):
        exact_skip_decisions(cal, synthetic_trace(50, 5, 3), [0.5])


def test_scaled_costs_names_the_scale_given_and_checks_the_costs(test_trace):
    with pytest.raises(TTamerError, match="scale must be > 0, got -1"):
        scaled_costs(test_trace, np.ones(4), -1.0)
    with pytest.raises(TTamerError, match=r"costs has shape \(2,\); expected \(4,\) or \(100, 4\)"):
        scaled_costs(test_trace, np.ones(2), None)
    with pytest.raises(TTamerError, match=r"costs\[1\] must be a finite number"):
        scaled_costs(test_trace, np.array([1.0, -1.0, 1.0, 1.0]), 1.0)


# ------------------------------------------------------------------ 5. zoo report
@pytest.fixture(scope="module")
def zoo_trace():
    return synthetic_trace(240, 3, 3, seed=4)


@pytest.fixture(scope="module")
def runs(zoo_trace):
    return R.evaluate_zoo({"t": zoo_trace}, [0], n_boot=0)


@pytest.mark.parametrize("table", [R.gain_table, R.heldout_table])
def test_trace_tables_refuse_runs_without_their_fields(zoo_trace, runs, table):
    with pytest.raises(TTamerError, match="run 0 of trace 't' has no 'policy'"):
        table({"t": [{}]}, {"t": zoo_trace})
    with pytest.raises(TTamerError, match="traces must be a non-empty dict"):
        table(runs, None)


def test_run_tables_refuse_malformed_runs(zoo_trace, runs):
    bad = {"t": [dict(runs["t"][0], auc={"ttamer": 0.5})]}
    with pytest.raises(TTamerError, match="must map 'auc' to a dict of the strategies"):
        R.gain_table(bad, {"t": zoo_trace})
    with pytest.raises(TTamerError, match="has no 'auc'"):
        R.protocol_table({"t": [{}]}, runs)
    with pytest.raises(TTamerError, match="run 0 of trace 't' is 5, not a dict"):
        R.slo_table({"t": [5]})
    no_slo = {"t": [dict(runs["t"][0], slo={"full": {"strategies": {}}})]}
    with pytest.raises(TTamerError, match="every run's 'slo' must be slo_block's"):
        R.slo_table(no_slo)


@pytest.mark.parametrize("label, final, match", [
    (None, None, "needs the evaluate_zoo runs of at least one trace, got None"),
    ({}, {}, "needs the evaluate_zoo runs of at least one trace, got {}"),
    ({"x": []}, {"x": []}, "the runs of trace 'x' must be a non-empty list")])
def test_protocol_table_checks_its_runs(label, final, match):
    with pytest.raises(TTamerError, match=match):
        R.protocol_table(label, final)


def test_protocol_table_of_good_runs(zoo_trace, runs):
    final = R.evaluate_zoo({"t": zoo_trace}, [0], target="final", n_boot=0)
    table = R.protocol_table(runs, final)
    assert list(table.index) == ["t"]


@pytest.mark.parametrize("table", [R.heuristic_choice_table, R.split_half_correlation])
def test_paired_tables_refuse_what_gain_table_refuses(runs, table):
    for zoo in (None, {}):
        with pytest.raises(TTamerError, match="needs the evaluate_zoo runs of at least one trace"):
            table(zoo, {})
    with pytest.raises(TTamerError, match="same traces and splits"):
        table(runs, None)
    with pytest.raises(TTamerError, match="calibration areas 0 of trace 't' must map each of"):
        table(runs, {"t": [{}]})


def test_slo_dominated_checks_its_table(runs):
    with pytest.raises(TTamerError, match="slo must be an slo_table, got NoneType"):
        R.slo_dominated(None)
    t = R.slo_table(runs)
    with pytest.raises(TTamerError, match=r"\['nope'\] are not rows of the slo_table"):
        R.slo_dominated(t, others=("nope",))
    with pytest.raises(TTamerError, match="others must be a sequence"):
        R.slo_dominated(t, others="max-prob")


def test_recosted_checks_its_trace():
    with pytest.raises(TTamerError, match="recosted expects a ttamer Trace"):
        R.recosted(None, "rising")


def test_the_number_of_splits_is_bounded_before_any_work(zoo_trace):
    from ttamer.workloads.zoo_runs import MAX_SPLITS

    seeds = list(range(MAX_SPLITS + 1))
    for call in (lambda: R.evaluate_zoo({"t": zoo_trace}, seeds), lambda: R.calibration_areas({"t": zoo_trace}, seeds),
                 lambda: R.split_gain_table(zoo_trace, seeds)):
        with pytest.raises(TTamerError, match=f"{MAX_SPLITS + 1:,} split seeds; at most {MAX_SPLITS}"):
            call()


# ------------------------------------------------------------------ 6. registry
@pytest.mark.parametrize("seed, match", [(1.5, "seed must be an integer"), (True, "seed must be an integer"),
                                         (-1, "seed must be >= 0")])
def test_cache_names_refuse_seeds_that_are_not_seeds(seed, match):
    for call in (registry.trace_path, registry.cache_key):
        with pytest.raises(TTamerError, match=match):
            call("nlp", seed=seed)


def test_cache_names_refuse_unknown_devices():
    for call in (registry.trace_path, registry.cache_key):
        with pytest.raises(TTamerError, match=r"device must be one of \('cpu', 'cuda'\), got 'tpu'"):
            call("nlp", device="tpu")
    assert registry.cache_key("nlp", device="cuda")["device"] == "cuda"


def test_provenance_problem_checks_its_arguments():
    with pytest.raises(TTamerError, match="meta must be a trace's meta"):
        registry.provenance_problem(None, {})
    with pytest.raises(TTamerError, match="key must be a dict of the fields"):
        registry.provenance_problem({}, {})
    assert "no 'workload'" in registry.provenance_problem({}, registry.cache_key("nlp"))
