"""Hostile inputs found by a ninth fuzzing round: the zoo report's table builders given empty,
repeated or mistyped arguments, a refitted estimator keeping the previous fit's
cross-validation, ``without_recall`` given another trace of the same size, and
``ttamer traces zoo --list`` ignoring the options beside it. (The zoo's ``--n-trace`` checks
are in ``test_zoo.py``.) Each test fails on the code before the fix."""
from __future__ import annotations

import json

import numpy as np
import pytest

from ttamer.cli import main
from ttamer.core.errors import TTamerError
from ttamer.earlyexit.tamer import ThresholdTamer
from ttamer.earlyexit.traces import synthetic_trace
from ttamer.workloads import zoo_report as R


@pytest.fixture(scope="module")
def tr():
    return synthetic_trace(240, 3, 3, seed=4)


@pytest.fixture(scope="module")
def runs(tr):
    return R.evaluate_zoo({"t": tr}, [0], n_boot=0)


def test_a_refit_without_cross_validation_drops_the_previous_folds(tr):
    t = ThresholdTamer().fit(tr)
    assert hasattr(t, "cv_fold_scores_") and hasattr(t, "cv_curves_")
    small = tr.subset(np.arange(30))  # too few examples to cross-validate
    t.fit(small)
    assert t.cv_scores_ == [] and not hasattr(t, "cv_fold_scores_") and not hasattr(t, "cv_curves_")
    assert t.without_recall(small).candidate_.key == "common:max_prob:last"
    t.set_params(policy="per_exit:posterior:posterior").fit(tr)
    assert not hasattr(t, "cv_fold_scores_")
    assert not t.without_recall(tr).candidate_.recall


def test_without_recall_refuses_another_trace_of_the_same_size(tr):
    t = ThresholdTamer().fit(tr)
    other = synthetic_trace(240, 3, 3, seed=5)
    with pytest.raises(TTamerError, match="not the one this estimator was fitted on"):
        t.without_recall(other)
    same = tr.subset(np.arange(tr.n_examples))  # another object, the same numbers
    assert t.without_recall(same).candidate_.key == t.without_recall(tr).candidate_.key


def test_a_fingerprint_tells_traces_apart(tr):
    assert tr.fingerprint() == tr.subset(np.arange(tr.n_examples)).fingerprint()
    assert tr.fingerprint() != tr.subset(np.arange(1, tr.n_examples)).fingerprint()
    relabelled = tr.subset(np.arange(tr.n_examples))
    relabelled.labels = (tr.labels + 1) % tr.n_classes
    assert relabelled.fingerprint() != tr.fingerprint()


@pytest.mark.parametrize("seeds, match", [([0, 1, 1], r"must differ; repeated: \[1\]"), (3, "sequence of split seeds"),
                                          (None, "sequence of split seeds"), ("01", "sequence of split seeds"),
                                          ([], "at least one split seed"), ([0.5], "split seed must be an integer")])
def test_split_seeds_are_checked_alike_by_every_table(tr, seeds, match):
    for call in (lambda: R.split_gain_table(tr, seeds), lambda: R.evaluate_zoo({"t": tr}, seeds),
                 lambda: R.resolution_table({"t": tr}, seeds), lambda: R.calibration_areas({"t": tr}, seeds),
                 lambda: R.cost_profile_table({"t": tr}, "rising", seeds)):
        with pytest.raises(TTamerError, match=match):
            call()


def test_traces_must_be_a_dict_of_traces(tr):
    for bad in ({}, [tr], {"t": "x"}):
        with pytest.raises(TTamerError, match="traces"):
            R.evaluate_zoo(bad, [0])
    with pytest.raises(TTamerError, match="trace must be a ttamer Trace"):
        R.split_gain_table({"a": tr}, [0])
    with pytest.raises(TTamerError, match="non-empty dict of name -> Trace"):
        R.class_table({}, [0], {})


def test_run_tables_refuse_empty_runs_missing_traces_and_unknown_strategies(tr, runs):
    for table in (R.gain_table, R.heldout_table):
        with pytest.raises(TTamerError, match="runs of trace 't' must be a non-empty list"):
            table({"t": []}, {"t": tr})
        with pytest.raises(TTamerError, match="trace 't' has runs but is not among the traces given"):
            table(runs, {})
    with pytest.raises(TTamerError, match=r"unknown strategies \['nope'\]"):
        R.slo_table(runs, strategies=("nope",))
    with pytest.raises(TTamerError, match="strategies must be a non-empty sequence"):
        R.slo_table(runs, strategies="ttamer")
    with pytest.raises(TTamerError, match=r"unknown strategies \['nope'\]"):
        R.cost_at_level_table(runs, 0.5, strategies=("ttamer", "nope"))


def test_subset_table_bounds_repeats_and_checks_seed_and_fractions(tr):
    with pytest.raises(TTamerError, match=f"repeats must be <= {R.MAX_SUBSET_REPEATS:,}|repeats must be <= "
                                          f"{R.MAX_SUBSET_REPEATS}"):
        R.subset_size_table({"t": tr}, repeats=10**9)
    for seed, match in ((0.7, "seed must be an integer"), (-1, "seed must be >= 0")):
        with pytest.raises(TTamerError, match=match):
            R.subset_size_table({"t": tr}, repeats=2, seed=seed)
    for fractions in ((0.1, 0.1000001), (0.5, 0.5), ()):
        with pytest.raises(TTamerError, match="fractions must be one or more shares that differ"):
            R.subset_size_table({"t": tr}, repeats=2, fractions=fractions)


def test_zoo_list_refuses_what_it_would_ignore_and_speaks_json(capsys):
    assert main(["traces", "zoo", "nosuchname", "--list"]) == 2
    assert "--list only lists the zoo; it takes no NAME" in capsys.readouterr().err
    assert main(["traces", "zoo", "--list", "--n-trace", "5", "--seed", "3"]) == 2
    assert "it takes no --n-trace, --seed" in capsys.readouterr().err
    assert main(["traces", "zoo", "--list", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows and {"name", "kind", "modality", "description", "shipped"} <= set(rows[0])
