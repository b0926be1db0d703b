"""Hostile input, tenth round: long non-ASCII output names, booleans among numbers, numbers
beyond a trace's dtypes, decisions that do not fit their trace, traces built directly."""

import os
import re

import numpy as np
import pytest

from ttamer.core.errors import TraceError
from ttamer.core.safeio import TMP_STEM_BYTES, temp_path
from ttamer.earlyexit.traces import ExitDecisions, Trace, load_trace, save_trace, synthetic_trace

HALF = np.full((2, 1, 2), 0.5)


def test_a_long_non_ascii_name_that_a_file_may_have_is_written(tmp_path):
    name = "é" * 120 + ".npz"  # 244 bytes: a legal name, whose temporary name must be cut by bytes
    tr = synthetic_trace(50, 3, 3)
    save_trace(tmp_path / name, tr)
    assert load_trace(tmp_path / name).fingerprint() == tr.fingerprint()
    assert len(os.fsencode(temp_path(tmp_path / name).name)) <= 255
    stem = temp_path(tmp_path / ("€" * 80)).name[1:].split(".ttamer-tmp")[0]
    assert len(os.fsencode(stem)) <= TMP_STEM_BYTES and set(stem) == {"€"}  # whole characters kept


@pytest.mark.parametrize("probs, labels, cost, key, index", [
    ([[[True, 0.0]], [[0.5, 0.5]]], [0, 1], [1.0], "probs", "[0, 0, 0]"),
    (HALF, [True, 1], [1.0], "labels", "[0]"),
    (np.full((2, 2, 2), 0.5), [0, 1], [1, True], "cost", "[1]"),
    ([np.array([[False, True]]), np.array([[0.5, 0.5]])], [0, 1], [1.0], "probs", "[0, 0, 0]"),
])
def test_booleans_among_numbers_are_refused_not_counted(probs, labels, cost, key, index):
    with pytest.raises(TraceError, match=re.escape(f"key '{key}': the entry at index {index} is a boolean")):
        Trace.build(probs, labels, cost)


def test_a_finite_number_beyond_the_file_dtype_is_named_not_called_infinite():
    with pytest.raises(TraceError, match=r"key 'probs': the number at index \[0, 0, 0\] \(1e\+40\) is beyond "
                                         r"the range of float32"):
        Trace.build(np.full((2, 1, 2), 1e40), [0, 1], [1.0])
    with pytest.raises(TraceError, match=r"key 'cost': the number at index \[0\] \(1e\+400\) is beyond the range "
                                         r"of float64"):
        Trace.build(HALF, [0, 1], np.array([np.longdouble("1e400")]))


@pytest.fixture
def trace():
    return synthetic_trace(20, 3, 3)


@pytest.mark.parametrize("last, match", [
    (np.full(20, 9), r"ExitDecisions last: exit 9 at index \[0\] is outside 0\.\.2"),
    (np.full(20, -1), r"ExitDecisions last: exit -1 at index \[0\] is outside 0\.\.2"),
    (np.full(20, 0.7), r"ExitDecisions last: expected integer exit positions .* got dtype float64"),
    (np.zeros(19, int), r"ExitDecisions last: .*N = 20 .* shape \(19,\)"),
    (np.zeros((2, 20), int), r"from_last: answer has shape \(20,\), last \(2, 20\)"),
])
def test_decisions_that_do_not_fit_the_trace_are_refused(trace, last, match):
    with pytest.raises(TraceError, match=match):
        ExitDecisions.from_last(trace, np.zeros(20, int), last)


def test_decisions_are_scored_only_on_their_own_trace(trace):
    dec = ExitDecisions.from_last(trace, np.zeros(20, int), np.zeros(20, int))
    with pytest.raises(TraceError, match=r"ExitDecisions answer: .*N = 30"):
        dec.correct(synthetic_trace(30, 3, 3))
    with pytest.raises(TraceError, match=r"ExitDecisions answer: exit 2 at index \[0\] is outside 0\.\.1"):
        ExitDecisions.from_last(trace, np.full(20, 2), np.full(20, 2)).correct(synthetic_trace(20, 2, 3))
    with pytest.raises(Exception, match=r"points: scale must be > 0"):
        dec.points(trace, 0.0)


def test_a_sweep_point_is_indexed_like_a_sequence(trace):
    single = ExitDecisions.from_last(trace, np.zeros(20, int), np.zeros(20, int))
    with pytest.raises(TraceError, match="not a sweep"):
        single[0]
    sweep = ExitDecisions.from_last(trace, np.zeros((3, 20), int), np.tile([[0], [1], [2]], 20),
                                    np.array([0.1, 0.2, 0.3]))
    assert sweep[-1].params.tolist() == [0.3] and sweep[-1].last.tolist() == [2] * 20
    with pytest.raises(IndexError, match="sweep point 3 is outside the 3 points"):
        sweep[3]
    assert [d.params[0] for d in sweep] == [0.1, 0.2, 0.3]  # iteration stops at the end


@pytest.mark.parametrize("args, match", [
    ((np.full((2, 1, 2), 0.5, np.float32), np.array([0, 1]), np.ones(1), [1, 2]), "key 'meta': expected a dict"),
    (([[[1.0, 0.0]]], np.array([0]), np.ones(1)), "key 'probs': expected a plain NumPy array"),
    ((np.zeros(3, np.float32), np.array([0]), np.ones(1)), r"key 'probs': expected shape \[N, L, C\]"),
    ((np.full((2, 1, 2), 0.5, np.float32), np.array([0, 1, 1]), np.ones(1)), "key 'labels': shape"),
])
def test_a_trace_built_directly_gets_the_cheap_checks(args, match):
    with pytest.raises(TraceError, match=match):
        Trace(*args)


def test_repr_of_a_trace_with_bad_parents_does_not_raise():
    tr = Trace(np.full((2, 2, 2), 0.5, np.float32), np.array([0, 1]), np.ones(2), {"parents": ["zz", 5]})
    assert "parents not valid" in repr(tr)
    with pytest.raises(TraceError, match="unknown parent 'zz'"):
        tr.validate()


@pytest.mark.parametrize("seed", [27, 28])
def test_budgets_stay_non_negative_where_the_first_exit_costs_nothing(seed):
    """The calibration costs of a sweep are sums of differences; where exit 0 costs 0 they
    came out at -1e-15, which the SLO's own budget check then refused."""
    from ttamer.earlyexit.slo import out_of_fold_accuracy
    from ttamer.earlyexit.tamer import ThresholdTamer

    rng = np.random.default_rng(seed)
    tr = synthetic_trace(int(rng.integers(100, 3000)), int(rng.integers(2, 8)), 4, seed=seed,
                         per_example_cost=bool(seed % 2))
    cost = tr.cost.copy()
    cost[..., 0] = 0.0
    tamer = ThresholdTamer(policy="offset:max_prob:last").fit(Trace.build(tr.probs, tr.labels, cost, tr.meta))
    assert tamer.sweep_cost_.min() >= 0.0
    out_of_fold_accuracy(tamer, tamer.sweep_cost_)  # raised "budgets[0] must be ... in [0, inf]"


def test_an_unknown_target_is_quoted_short():
    from ttamer.earlyexit.traces import target_labels

    with pytest.raises(TraceError, match="target must be 'label' or 'final'") as err:
        target_labels(synthetic_trace(20, 2, 3), "x" * 10**6)
    assert len(str(err.value)) < 300


@pytest.mark.parametrize("states, wrong, match", [
    (-np.ones((20, 3), int), np.zeros((20, 3)), r"markov_violation: states\[0\]\[0\] must be a finite number in \[0"),
    (np.full((20, 3), 0.7), np.zeros((20, 3)), "markov_violation: states must be integer state indices"),
    (np.zeros((20, 3), int), np.zeros((20, 2)), r"markov_violation: wrong has shape \(20, 2\), states \(20, 3\)"),
    (np.zeros((20, 3), int), np.full((20, 3), 2.0), r"markov_violation: wrong\[0\]\[0\] must be a finite number"),
    (np.full((20, 3), 10**7), np.zeros((20, 3)), "above MARKOV_MAX_CELLS"),
])
def test_markov_diagnostics_check_their_arrays(states, wrong, match):
    from ttamer.core.errors import TTamerError
    from ttamer.earlyexit.evaluation import markov_violation

    with pytest.raises(TTamerError, match=match):
        markov_violation(synthetic_trace(20, 3, 3), states, wrong)


def test_markov_resample_checks_its_seed():
    from ttamer.core.errors import TTamerError
    from ttamer.earlyexit.evaluation import markov_resample

    with pytest.raises(TTamerError, match="seed must be >= 0, got -1"):
        markov_resample(np.zeros((5, 2), int), np.zeros((5, 2)), seed=-1)
