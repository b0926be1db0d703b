"""Hostile input, eleventh round, early exit: test traces unlike the calibration trace, the
pairwise answer table's histories, bootstrap options, NaN and overflow in results, the tree
instance's arrays and the cross-validation helpers."""

import warnings

import numpy as np
import pytest

from ttamer.core.errors import TraceError, TTamerError
from ttamer.earlyexit import baselines as BL
from ttamer.earlyexit import cascade as CA
from ttamer.earlyexit import crossval as CV
from ttamer.earlyexit import evaluation as EV
from ttamer.earlyexit import skips as SK
from ttamer.earlyexit.calibration import EarlyExitTamer
from ttamer.earlyexit.features import StateEncoder, StateSpec
from ttamer.earlyexit.pairwise import PairwiseAnswer
from ttamer.earlyexit.traces import Trace


def chain(N=200, L=3, C=3, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, C, N)
    logits = rng.normal(size=(N, L, C))
    for i in range(L):
        logits[np.arange(N), i, y] += 0.6 * (i + 1)
    p = np.exp(logits)
    p /= p.sum(-1, keepdims=True)
    return Trace.build(p.astype(np.float32), y, np.arange(1, L + 1, dtype=float), {"model": "m", "dataset": "d"})


def tree(N=200, C=3, seed=0):
    t = chain(N, 3, C, seed)
    return Trace.build(t.probs, t.labels, t.cost, {"model": "m", "dataset": "d"}, parents=[None, 0, 0])


@pytest.fixture(scope="module")
def fitted_cascade():
    tt = tree()
    return tt, CA.CascadeTamer(lam=0.3, K=3).fit(tt)


@pytest.fixture(scope="module")
def table():
    et = EarlyExitTamer(K=3, feature="max_prob", agreement=0, loss="label").fit(chain(N=300))
    return et.answer_table_, et.states(chain(N=300))


@pytest.fixture(scope="module")
def cascade_decisions():
    tt = tree()
    cal, test = tt.subset(np.arange(100)), tt.subset(np.arange(100, 200))
    decs, _ = CA.compare_strategies(cal, test, lams=[0.5, 0.9], K=2, grid=3)
    return decs, test


# ------------------------------------------------------------------ A5: calibration vs test
@pytest.mark.parametrize("call, match", [
    (lambda: SK.sequential_threshold(chain(), chain(L=4, seed=3)), "sequential_threshold: test: the trace's 4 models"),
    (lambda: SK.sequential_threshold(chain(), chain(C=5)), "sequential_threshold: test: the trace has 5 classes"),
    (lambda: SK.exact_skip_decisions(chain(), chain(C=5), [0.9], K=3), "exact_skip_decisions: test: the trace has 5"),
    (lambda: CA.tuned_threshold_cascade(tree(), chain(), [0, 1]), r"tuned_threshold_cascade: test: .*parents"),
    (lambda: CA.tuned_threshold_cascade(tree(), tree(C=5), [0, 1]), "tuned_threshold_cascade: test: the trace has 5"),
])
def test_a_test_trace_unlike_the_calibration_trace_is_refused(call, match):
    with pytest.raises(TraceError, match=match):
        call()


# ------------------------------------------------------------------ A6: the pairwise table
def test_pairwise_answer_refuses_states_and_last_out_of_range(table):
    pa, st = table
    last = np.full(len(st), 2)
    bad = st.copy()
    bad[:, 0] = len(pa.losses[0])  # == K_0: read off the neighbouring table before
    with pytest.raises(TTamerError, match=r"PairwiseAnswer.answer: states\[0, 0\] is 3, not a state of exit 0"):
        pa.answer(bad, last)
    bad[:, 0] = -2
    with pytest.raises(TTamerError, match=r"states\[0, 0\] is -2"):
        pa.answer(bad, last)
    with pytest.raises(TTamerError, match=r"last\[0\] is 3, not an exit 0..2"):
        pa.answer(st, np.full(len(st), 3))
    with pytest.raises(TTamerError, match="last must be an integer array"):
        pa.answer(st, last.astype(float))
    want = pa.answer(st[:20], last[:20])  # valid histories: answered as before, by both
    assert [pa.answer_one(list(row), 2) for row in st[:20]] == want.tolist()
    assert pa.answer_one(np.array([0, 1, 2]), np.int64(2)) == pa.answer_one([0, 1, 2], 2)


@pytest.mark.parametrize("states, last, match", [
    ([-1, 0, 0], 2, r"states\[0\] is -1, not a state of exit 0"),
    ([0, 0, 3], 2, r"states\[2\] is 3"),
    ([0, 0, 0], 3, "last must be an integer exit 0..2"),
    ([0, 0, 0], -1, "last must be an integer exit"),
    ([0, 0, 0], 1.0, "last must be an integer exit"),
    ([0, 1.0, 0], 2, r"states\[1\] is 1.0"),
    ([0], 2, "states has 1 values"),
])
def test_pairwise_answer_one_refuses_bad_histories(table, states, last, match):
    pa, _ = table
    with pytest.raises(TTamerError, match=match):
        pa.answer_one(states, last)


def _pair_data(n=40, L=3, K=3):
    rng = np.random.default_rng(0)
    return rng.integers(0, K, (n, L)), (rng.random((n, L)) < 0.3).astype(float), [np.full(K, 0.3)] * L, [K] * L


@pytest.mark.parametrize("change, match", [
    (dict(smoothing=-1.0), "smoothing must be > 0"),
    (dict(smoothing=np.nan), "smoothing must be finite"),
    (dict(folds=0), "folds .* must be >= 2"),
    (dict(folds=1), "folds .* must be >= 2"),
    (dict(folds=2.5), "folds .* must be an integer"),
    (dict(folds=10**9), "folds .* must be <= 100"),
    (dict(states=np.zeros((0, 3), dtype=np.int64)), "at least 2 examples"),
    (dict(states=np.zeros((40, 3))), "states must be an integer array"),
    (dict(wrong=np.zeros((40, 2))), "wrong has shape"),
    (dict(n_states=[3, 3]), "one entry per exit"),
    (dict(losses=[np.full(2, 0.3)] * 3), r"losses\[0\] has 2 values"),
    (dict(states=np.full((40, 3), 3)), r"states\[0, 0\] is 3, outside exit 0's states"),
])
def test_pairwise_fit_refuses_bad_calibration(change, match):
    states, wrong, losses, n_states = _pair_data()
    args = dict(states=states, wrong=wrong, losses=losses, n_states=n_states, smoothing=2.0) | change
    with pytest.raises(TTamerError, match=match):
        PairwiseAnswer.fit(**args)


# ------------------------------------------------------------------ A7
def test_exact_skip_decisions_refuses_a_string_for_skips():
    with pytest.raises(TTamerError, match="skips must be True or False, got 'no'"):
        SK.exact_skip_decisions(chain(), chain(), [0.9], K=3, skips="no")


# ------------------------------------------------------------------ A8: nan / inf results
def test_run_tree_policy_refuses_a_nan_or_misshapen_cost(fitted_cascade):
    tt, tam = fitted_cascade
    st = tam.states(tt)
    with pytest.raises(TTamerError, match=r"run_tree_policy: cost\[0\]\[0\] must be a finite number"):
        CA.run_tree_policy(tam.solution_, st, np.full(st.shape, np.nan))
    with pytest.raises(TTamerError, match="run_tree_policy: cost has shape"):
        CA.run_tree_policy(tam.solution_, st, np.ones((len(st), 2)))
    with pytest.raises(TTamerError, match="run_tree_policy: solution must be a SolveResult"):
        CA.run_tree_policy(None, st, tt.cost_matrix)


def test_frontier_metrics_refuses_negative_cost_fractions_and_non_dicts(cascade_decisions):
    decs, test = cascade_decisions
    with pytest.raises(TTamerError, match=r"cost_fractions\[0\] must be a finite number in \[0, inf\]"):
        CA.frontier_metrics(decs, test, 1.0, cost_fractions=[-1.0])
    with pytest.raises(TTamerError, match="decisions must be a dict of ExitDecisions"):
        CA.frontier_metrics(list(decs.values()), test, 1.0)
    with pytest.raises(TTamerError, match=r"decisions\['x'\] must be an ExitDecisions"):
        CA.frontier_metrics({"x": 1}, test, 1.0)


def test_default_thresholds_of_huge_values_are_finite_and_ordered():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        th = BL.default_thresholds(np.array([1e308, -1e308]), 5)
    assert np.isfinite(th).all() and (np.diff(th) > 0).all()
    assert th[0] < -1e308 and th[-1] > 1e308 and 0.0 in th
    np.testing.assert_array_equal(BL.default_thresholds(np.array([0.1, 0.5, 0.9]), 6),
                                  np.unique(np.r_[-0.9, np.quantile([0.1, 0.5, 0.9], np.linspace(0, 1, 4)), 1.9]))


def test_grid_auc_needs_two_grid_points():
    with pytest.raises(TTamerError, match="grid_auc: curves must be a numeric array"):
        EV.grid_auc(np.ones((2, 1)))
    np.testing.assert_allclose(EV.grid_auc(np.ones((2, 3))), [1.0, 1.0])


# ------------------------------------------------------------------ A9
@pytest.mark.parametrize("feature", ["learned", "posterior", "max_prob"])
def test_state_encoder_refuses_a_trace_of_other_classes(feature):
    enc = StateEncoder.fit(StateSpec(K=3, agreement=0, feature=feature), chain())
    with pytest.raises(TraceError, match="StateEncoder.transform: the trace has 5 classes; the encoder was fitted on"):
        enc.transform(chain(C=5))
    with pytest.raises(TraceError, match="StateEncoder.answers: the trace has 5 classes"):
        enc.answers(chain(C=5))
    assert enc.transform(chain(seed=1)).shape == (200, 3)


# ------------------------------------------------------------------ B3: bootstrap options
@pytest.mark.parametrize("opts, match", [
    (dict(n_boot=-1), "bootstrap_auc: n_boot must be >= 0"),
    (dict(n_boot=2.5), "bootstrap_auc: n_boot must be an integer"),
    (dict(n_boot=10**9), "n_boot 1,000,000,000 replicates of 100 test examples are above the 100,000 allowed"),
    (dict(n_boot=300_000), "MAX_BOOTSTRAP_REPLICATES"),
    (dict(seed=-1), "bootstrap_auc: seed must be >= 0"),
    (dict(scale=0.0), "bootstrap_auc: scale must be > 0"),
    (dict(lo=1.0, hi=0.5), "bootstrap_auc: need lo < hi"),
])
def test_bootstrap_auc_checks_its_options(cascade_decisions, opts, match):
    decs, test = cascade_decisions
    args = dict(scale=1.0, lo=0.1, hi=1.0, n_boot=2, seed=0) | opts
    with pytest.raises(TTamerError, match=match):
        CA.bootstrap_auc(decs, test, **args)


@pytest.mark.parametrize("opts, match", [
    (dict(n_boot=-1), "bootstrap_metrics: n_boot must be >= 0"),
    (dict(seed=-1), "bootstrap_metrics: seed must be >= 0"),
    (dict(reference=7), r"bootstrap_metrics: reference .* must be <= 2, got 7"),
    (dict(reference=-4), r"bootstrap_metrics: reference .* must be >= -3"),
    (dict(reference="x"), "unknown model 'x'"),
    (dict(gaps="x"), "bootstrap_metrics: gaps must be"),
    (dict(gaps=[np.nan]), r"bootstrap_metrics: gaps\[0\] must be a finite number"),
    (dict(scale=0), "bootstrap_metrics: scale must be > 0"),
])
def test_bootstrap_metrics_checks_its_options(opts, match):
    cal = chain()
    args = dict(scale=1.0, lo=0.1, n_boot=2) | opts
    with pytest.raises(TTamerError, match=match):
        SK.bootstrap_metrics(SK.fixed_routes(cal), cal, **args)


def test_bootstrap_metrics_reference_by_name_or_from_the_end_and_large_gaps():
    cal = chain()
    routes = SK.fixed_routes(cal)
    a = SK.bootstrap_metrics(routes, cal, 1.0, 0.1, reference=-1, n_boot=2, gaps=(0.0, 2.0, -2.0))
    b = SK.bootstrap_metrics(routes, cal, 1.0, 0.1, reference=cal.exit_names[-1], n_boot=2, gaps=(0.0, 2.0, -2.0))
    for k in a:
        np.testing.assert_array_equal(a[k]["cost_at_ref"], b[k]["cost_at_ref"])
        assert not np.isnan(a[k]["cost_at_ref"][1]).any()  # 2 points below: any point meets it
        assert np.isnan(a[k]["cost_at_ref"][2]).all()  # 2 points above: never reached


def test_tradeoff_names_decisions_that_are_not_decisions():
    with pytest.raises(TTamerError, match="tradeoff: decisions must be an ExitDecisions"):
        SK.tradeoff(None, chain(), 0.5, 1.0)


def test_markov_violation_bounds_the_states_of_an_exit_before_allocating():
    big = np.zeros((2, 3), int)
    big[0, 2] = 2**24
    with pytest.raises(TTamerError, match="markov_violation: exit 2 has states up to 16,777,216.*MARKOV_MAX_STATES"):
        EV.markov_violation(chain(), big, np.zeros((2, 3)))


# ------------------------------------------------------------------ B3: the tree instance
def _tree_args(fitted_cascade):
    tt, tam = fitted_cascade
    st = tam.states(tt)
    return dict(states=st, losses=np.zeros(st.shape), n_states=[int(k) for k in tam.instance_.n_states],
                parents=np.array([-1, 0, 0]), costs=np.ones(3), smoothing=2.0)


@pytest.mark.parametrize("change, match", [
    (dict(n_states=[6]), "build_tree_instance: n_states has 1 values"),
    (dict(parents=np.array([-1])), "build_tree_instance: parents has 1 values"),
    (dict(parents=np.array([-1, 0, 5])), "build_tree_instance: parents must be"),
    (dict(smoothing="2"), "build_tree_instance: smoothing .* must be a number"),
    (dict(smoothing=0.0), "smoothing .* must be > 0"),
    (dict(states=np.zeros((0, 3), dtype=np.int64)), "states must be a non-empty integer array"),
    (dict(states=np.zeros((200, 3))), "states must be a non-empty integer array"),
    (dict(n_states=[10**9] * 3), "n_states must be .* integers in 1..2000"),
])
def test_build_tree_instance_names_the_bad_argument(fitted_cascade, change, match):
    args = _tree_args(fitted_cascade) | change
    with pytest.raises(TTamerError, match=match):
        CA.build_tree_instance(**args)


def test_build_tree_instance_takes_losses_as_a_list(fitted_cascade):
    args = _tree_args(fitted_cascade)
    want = CA.build_tree_instance(**args)
    got = CA.build_tree_instance(**(args | dict(losses=args["losses"].tolist())))
    for a, b in zip(want.losses, got.losses):
        np.testing.assert_array_equal(a, b)


# ------------------------------------------------------------------ B3: evaluation helpers
def test_bootstrap_band_and_curves_refuse_bad_level_and_kind():
    correct, cost = np.ones((2, 10), bool), np.full((2, 10), 0.5)
    with pytest.raises(TTamerError, match=r"bootstrap_band: level \(of the band\) must be < 1"):
        EV.bootstrap_band(correct, cost, np.linspace(0, 1, 3), n_boot=2, level=2)
    with pytest.raises(TTamerError, match="frontier kind must be one of"):
        EV.bootstrap_curves(correct, cost, np.linspace(0, 1, 3), n_boot=2, kind="x")


def test_strategy_sweeps_checks_lams():
    with pytest.raises(TTamerError, match="lams must be a non-empty"):
        EV.strategy_sweeps(chain(), {}, lams="abc")


def test_evaluate_trace_refuses_a_negative_cost_range():
    with pytest.raises(TTamerError, match=r"cost_range must be two numbers \(lo, hi\) with 0 <= lo < hi"):
        EV.evaluate_trace(chain(), cost_range=(-5, -4), n_boot=0)


# ------------------------------------------------------------------ B3: crossval helpers
def test_refined_sweep_checks_lams_before_running():
    runs = []

    def run(some):
        runs.append(some)
        return []

    with pytest.raises(TTamerError, match="lams must be a non-empty"):
        CV.refined_sweep(run, chain(), [])
    with pytest.raises(TTamerError, match=r"lams\[0\] must be a finite number"):
        CV.refined_sweep(run, chain(), [np.nan])
    assert runs == []


def test_choose_by_cv_and_cv_folds_of_refuse_empty_and_huge():
    with pytest.raises(TTamerError, match="choose_by_cv: candidates must be a non-empty list"):
        CV.choose_by_cv(chain(), [], lambda t, c: 0.0, 2, "K")
    with pytest.raises(TTamerError, match="n must be <= 134217728"):
        CV.cv_folds_of(10**12, 2, 0)


@pytest.mark.parametrize("parents", [np.array([-1, 0]), np.array([-1, 0, 3]), np.array([-2, 0, 0]),
                                     [-1, 0, 0], np.array([-1.0, 0.0, 0.0])])
def test_tree_states_refuse_parents_that_are_not_the_models(fitted_cascade, parents):
    tt, tam = fitted_cascade
    for call, who in ((lambda: CA.tree_states(tam.encoder_, tt, parents, True), "tree_states"),
                      (lambda: CA.tree_n_states(tam.encoder_, parents, True), "tree_n_states")):
        with pytest.raises(TTamerError, match=rf"{who}: parents must be an integer array \[3\]"):
            call()
    assert CA.tree_states(tam.encoder_, tt, tam.parents_, True).shape == (tt.n_examples, 3)


@pytest.mark.parametrize("available", ["1", -1, 1.5, True])
def test_check_evaluation_memory_refuses_what_is_not_a_byte_count(available):
    with pytest.raises(TTamerError, match=r"available \(bytes of free memory\)"):
        EV.check_evaluation_memory(chain(), available)
    assert EV.check_evaluation_memory(chain(), 2**40) > 0
