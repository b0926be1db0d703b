"""Hostile inputs of the zoo report (the book's chapter *Across workloads*): every value of a run
checked, runs paired with traces, calibration areas and other runs only where they record the
same split, arguments checked before any work."""

from __future__ import annotations

import copy
import pickle

import numpy as np
import pandas as pd
import pytest

import ttamer.workloads.zoo_report as zr
import ttamer.workloads.zoo_runs as runs_module
from ttamer.core.errors import TTamerError
from ttamer.earlyexit.evaluation import HEURISTICS
from ttamer.earlyexit.heuristics import HEURISTIC_RULES
from ttamer.earlyexit.traces import synthetic_trace

SEEDS = [0, 1]


@pytest.fixture(scope="module")
def traces():
    return {"A": synthetic_trace(200, 4, 3, 0), "B": synthetic_trace(160, 3, 5, 1)}


@pytest.fixture(scope="module")
def zoo(traces):
    return zr.evaluate_zoo(traces, SEEDS, n_boot=5)


@pytest.fixture(scope="module")
def cal(traces):
    return zr.calibration_areas(traces, SEEDS)


def edited(zoo, path, value, trace="A", run=0):
    """A deep copy of ``zoo`` whose run ``run`` of ``trace`` has ``value`` at ``path`` (keys)."""
    z = copy.deepcopy(zoo)
    d = z[trace][run]
    for k in path[:-1]:
        d = d[k]
    if value is KeyError:
        del d[path[-1]]
    else:
        d[path[-1]] = value
    return z


FULL = ("slo", "full", "strategies", "ttamer")


@pytest.mark.parametrize("path, value, match", [
    (("auc", "ttamer"), None, r"run 0 of trace 'A': auc\['ttamer'\] must be a number"),
    (("auc", "ttamer"), float("nan"), r"auc\['ttamer'\] must be finite"),
    (("auc", "ttamer"), 5.0, r"auc\['ttamer'\] must be in \[0, 1\]"),
    (("auc", "ttamer"), True, r"auc\['ttamer'\] must be a number"),
    (("auc", "ttamer"), "0.5", r"auc\['ttamer'\] must be a number"),
    (("auc", "max-prob"), np.array([0.5, 0.6]), r"auc\['max-prob'\] must be a number"),
    (("cost_at_full", "ttamer"), "x", r"cost_at_full\['ttamer'\] must be a number >= 0, or inf"),
    (("cost_at_full", "ttamer"), float("nan"), r"cost_at_full\['ttamer'\] must be a number >= 0"),
    (("cost_at_full", "entropy"), -0.5, r"cost_at_full\['entropy'\] must be a number >= 0"),
    (("frontier", "ttamer"), np.array([0.1, 0.2]), r"frontier\['ttamer'\] must be a non-empty 2-D array"),
    (("frontier", "ttamer"), np.zeros((0, 2)), r"frontier\['ttamer'\] must be a non-empty 2-D array"),
    (("frontier", "ttamer"), None, r"frontier\['ttamer'\] must be"),
    (("frontier", "max-prob"), np.array([[0.5, 0.9], [0.2, np.nan]]), r"frontier\['max-prob'\]\[1, 1\]|"
                                                                       r"frontier\['max-prob'\]\[1\]\[1\]"),
    (("policy",), None, r"policy must be a str"),
    (("policy",), ["x"], r"policy must be a str"),
    (("full_accuracy",), 2.0, r"full_accuracy must be in \[0, 1\]"),
    (("replicates", "ttamer"), np.zeros(3), r"replicates must hold as many replicates for every strategy"),
    (("replicates", "ttamer"), np.full(5, np.nan), r"replicates\['ttamer'\]\[0\] must be a finite number"),
    (("replicates", "entropy"), KeyError, r"must map 'replicates' to a dict of the strategies .* it has no 'entropy'"),
    (FULL + ("met",), None, r"slo\['full'\]\['strategies'\]\['ttamer'\]\['met'\] must be True or False"),
    (FULL + ("met",), KeyError, r"slo\['full'\]\['strategies'\]\['ttamer'\] must be a dict of 'met'"),
    (FULL + ("cost",), float("nan"), r"slo\['full'\]\['strategies'\]\['ttamer'\]\['cost'\] must be finite"),
    (("seed",), -1, r"seed must be >= 0"),
    (("target",), "labels", r"target must be one of"),
])
def test_every_run_value_is_checked(zoo, traces, path, value, match):
    with pytest.raises(TTamerError, match=match):
        zr.gain_table(edited(zoo, path, value), traces)


def test_bootstrap_keys_are_in_every_run_of_a_trace_or_none(zoo, traces):
    for key in ("replicates", "auc_ci", "cost_ci"):
        with pytest.raises(TTamerError, match=f"trace 'A': run 1 has no '{key}' while run 0 has"):
            zr.gain_table(edited(zoo, (key,), KeyError, run=1), traces)
    z = copy.deepcopy(zoo)
    z["A"][1]["replicates"] = {k: v[:3] for k, v in z["A"][1]["replicates"].items()}
    with pytest.raises(TTamerError, match=r"the runs hold \[5, 3\] bootstrap replicates"):
        zr.heldout_table(z, traces)


@pytest.mark.parametrize("key, value, match", [
    ("auc_ci", None, r"run 0 of trace 'A' must map 'auc_ci' to a dict of the strategies .*got None"),
    ("cost_ci", None, r"must map 'cost_ci' to a dict"),
    (("auc_ci", "max-prob"), (0.1,), r"auc_ci\['max-prob'\] must be None or a \(2.5 %, 50 %, 97.5 %\) triple"),
    (("cost_ci", "max-prob"), [None, 0.0, None], r"JSON report writes ±inf as null"),
    (("cost_ci", "max-prob"), {2: 5.0}, r"cost_ci\['max-prob'\] must be None or a"),
    (("cost_ci", "max-prob"), (0.1, 0.0, -0.1), r"cost_ci\['max-prob'\] must be .*the first at most the last"),
    (("auc_ci", "entropy"), (np.nan, 0.0, 0.1), r"auc_ci\['entropy'\] must be None or a"),
    (("auc_ci", "entropy"), (-np.inf, 0.0, 0.1), r"auc_ci\['entropy'\] must be None or a .*finite numbers"),
    (("auc_ci", "entropy"), (True, 0.0, 0.1), r"auc_ci\['entropy'\] must be None or a"),
    (("cost_ci", "entropy"), KeyError, r"must map 'cost_ci' to a dict of the strategies .* it has no 'entropy'"),
])
def test_intervals_are_checked(zoo, key, value, match):
    path = (key,) if isinstance(key, str) else key
    z = edited(zoo, path, value)
    for fn in (zr.never_worse_table, zr.interval_widths):
        with pytest.raises(TTamerError, match=match):
            fn(z)


def test_interval_widths_of_infinite_numpy_bounds_make_no_nan_warning(zoo):
    """Two ``inf`` bounds of NumPy floats: a degenerate interval, no ``inf - inf`` warning;
    infinite bounds on both sides are valid."""
    z = edited(zoo, ("cost_ci", "max-prob"), tuple(np.full(3, np.inf)))
    with np.errstate(invalid="raise"):
        zr.interval_widths(z)
    z = edited(zoo, ("cost_ci", "max-prob"), (-np.inf, 0.0, np.inf))
    assert zr.interval_widths(z)["cost@full"] > 0
    assert zr.never_worse_table(z).equals(zr.never_worse_table(edited(zoo, ("cost_ci", "max-prob"), (-1.0, 0.0, 1.0))))


def _run(tt_cost, costs):
    names = runs_module.RUN_STRATEGIES
    run = {"policy": "p", "frontier": {k: np.array([[0.0, 0.5], [1.0, 0.9]]) for k in names}, "slo": {},
           "full_accuracy": 0.9, "auc": {k: 0.8 for k in names}, "cost_at_full": {k: 0.5 for k in names}}
    run["cost_at_full"] |= costs
    run["cost_at_full"]["ttamer"] = tt_cost
    return run


def test_never_worse_table_reads_infinite_costs_without_nan():
    """A split where T-Tamer and max-prob never reach the full model's accuracy is a tie for
    max-prob; against the others, which reach it, T-Tamer is below on the mean."""
    zoo = {"t": [_run(np.inf, {"max-prob": np.inf, "entropy": 0.3}), _run(0.5, {"entropy": 0.3})]}
    t = zr.never_worse_table(zoo)
    assert not t.loc["t", "holds"]
    assert t.loc["t", "cost@full, mean gain (pt)"] == -np.inf
    assert t.loc["t", "cost@full, mean below"] != ""
    # neither reaches it on any split: a tie, gain 0, not nan
    both = {"t": [_run(np.inf, {h: np.inf for h in HEURISTICS})] * 2}
    t = zr.never_worse_table(both)
    assert t.loc["t", "cost@full, mean gain (pt)"] == 0.0 and t.loc["t", "holds"]


def test_runs_record_their_split(traces, zoo, cal):
    for name, runs in zoo.items():
        for s, run in zip(SEEDS, runs):
            assert (run["seed"], run["target"], run["calibration_fraction"]) == (s, "label", 0.5)
            assert run["fingerprint"] == traces[name].fingerprint()
        for s, areas in zip(SEEDS, cal[name]):
            assert areas.meta == {"seed": s, "target": "label", "calibration_fraction": 0.5,
                                  "fingerprint": traces[name].fingerprint()}
            assert areas == {h: areas[h] for h in HEURISTIC_RULES}  # still a dict of areas
            for back in (copy.deepcopy(areas), pickle.loads(pickle.dumps(areas))):
                assert back == areas and back.meta == areas.meta


def test_areas_of_other_splits_are_refused(traces, zoo, cal):
    other = zr.calibration_areas(traces, [7, 8])
    for fn in (zr.split_half_correlation, zr.heuristic_choice_table):
        with pytest.raises(TTamerError, match=r"run 0 of trace 'A': the run and the calibration areas are not of "
                                              r"the same split \(seed 0, the areas' 7\)"):
            fn(zoo, other)
    frac = zr.calibration_areas(traces, SEEDS, calibration_fraction=0.6)
    with pytest.raises(TTamerError, match=r"not of the same split \(calibration_fraction 0.5, the areas' 0.6\)"):
        zr.heuristic_choice_table(zoo, frac)
    swapped = zr.calibration_areas({"A": traces["B"], "B": traces["A"]}, SEEDS)
    with pytest.raises(TTamerError, match=r"not of the same split \(of another trace\)"):
        zr.split_half_correlation(zoo, swapped)
    plain = {n: [dict(a) for a in areas] for n, areas in cal.items()}
    with pytest.raises(TTamerError, match=r"the calibration areas do not record their split"):
        zr.split_half_correlation(zoo, plain)
    bare = {n: [{"auc": r["auc"]} for r in runs] for n, runs in zoo.items()}
    with pytest.raises(TTamerError, match=r"run 0 of trace 'A': the run has no 'seed'"):
        zr.heuristic_choice_table(bare, cal)


def test_areas_judged_against_the_label_need_a_label_zoo(traces, cal):
    final = zr.evaluate_zoo(traces, SEEDS, target="final", n_boot=0)
    for fn in (zr.split_half_correlation, zr.heuristic_choice_table):
        with pytest.raises(TTamerError, match=r"the run judges answers against target 'final'"):
            fn(final, cal)
    with pytest.raises(TTamerError, match=r"class_table: zoo holds runs judged against target 'final'"):
        zr.class_table(traces, SEEDS, final)


def test_non_finite_calibration_areas_are_refused(zoo, cal):
    for bad, match in ((float("nan"), "must be finite"), (float("inf"), "must be finite"), (None, "must be a number")):
        c = copy.deepcopy(cal)
        c["A"][0]["entropy"] = bad
        for fn in (zr.split_half_correlation, zr.heuristic_choice_table):
            with pytest.raises(TTamerError, match=r"cal\['A'\]\[0\]\['entropy'\] " + match):
                fn(zoo, c)


def test_protocol_table_checks_its_two_zoos(traces, zoo):
    final = zr.evaluate_zoo(traces, SEEDS[:1], target="final", n_boot=0)
    assert list(zr.protocol_table(zoo, final).index) == ["A", "B"]  # splits may differ in number
    with pytest.raises(TTamerError, match=r"protocol_table: zoo_label holds runs judged against target 'final'"):
        zr.protocol_table(final, zoo)
    with pytest.raises(TTamerError, match=r"only in zoo_label: \['A'\], only in zoo_final: \['B'\]"):
        zr.protocol_table({"A": zoo["A"]}, {"B": final["B"]})
    swapped = zr.evaluate_zoo({"A": traces["B"], "B": traces["A"]}, SEEDS[:1], target="final", n_boot=0)
    with pytest.raises(TTamerError, match=r"runs of trace 'A' in zoo_label and zoo_final come from another trace"):
        zr.protocol_table(zoo, swapped)
    with pytest.raises(TTamerError, match=r"different targets \['final', 'label'\]"):
        zr.gain_table({"A": zoo["A"], "B": final["B"]}, traces)


def test_class_table_checks_seeds_fraction_and_traces(traces, zoo):
    with pytest.raises(TTamerError, match=r"split seeds \[0, 1\] at calibration fraction 0.5; the table fits the "
                                          r"seeds \[5, 6\]"):
        zr.class_table({"A": traces["A"]}, [5, 6], {"A": zoo["A"]})
    with pytest.raises(TTamerError, match=r"the table fits the seeds \[0, 1\] at 0.6"):
        zr.class_table({"A": traces["A"]}, SEEDS, {"A": zoo["A"]}, calibration_fraction=0.6)
    with pytest.raises(TTamerError, match=r"class_table: the runs of trace 'A' were evaluated on another trace"):
        zr.class_table({"A": traces["B"]}, SEEDS, {"A": zoo["A"]})


def test_tables_of_traces_check_the_trace(traces, zoo):
    other = {"A": traces["B"], "B": traces["A"]}
    for fn in (zr.gain_table, zr.heldout_table):
        with pytest.raises(TTamerError, match=r"runs of trace 'A' were evaluated on another trace than traces\['A'\]"):
            fn(zoo, other)
    with pytest.raises(TTamerError, match=r"gain_table: run 0 of trace 'A' in zoo has no 'fingerprint'"):
        zr.gain_table({n: [{k: v for k, v in r.items() if k != "fingerprint"} for r in rs] for n, rs in zoo.items()},
                      traces)


def test_runs_of_one_trace_agree(traces, zoo):
    with pytest.raises(TTamerError, match=r"trace 'A': the runs repeat a split seed \(\[0, 0\]\)"):
        zr.never_worse_table({"A": [zoo["A"][0], zoo["A"][0]]})
    with pytest.raises(TTamerError, match=r"trace 'A': the runs differ in 'fingerprint'"):
        zr.never_worse_table({"A": [zoo["A"][0], zoo["B"][1]]})


@pytest.mark.parametrize("kw, match", [
    ({"n_boot": "5"}, r"evaluate_zoo: n_boot must be an integer"),
    ({"n_boot": None}, r"evaluate_zoo: n_boot must be an integer"),
    ({"n_boot": 10**12}, r"evaluate_zoo: traces\['A'\]: n_boot"),
    ({"progress": None}, r"evaluate_zoo: progress must be True or False"),
    ({"progress": "yes"}, r"evaluate_zoo: progress must be True or False"),
    ({"progress": 1}, r"evaluate_zoo: progress must be True or False"),
    ({"target": "labels"}, r"evaluate_zoo: target must be one of"),
    ({"calibration_fraction": 0.95}, r"evaluate_zoo: traces\['A'\]: calibration_fraction 0.95 of 200 examples"),
])
def test_evaluate_zoo_checks_before_any_evaluation(traces, monkeypatch, kw, match):
    def never(*args, **kwargs):
        raise AssertionError("evaluated before the arguments were checked")

    monkeypatch.setattr(runs_module, "evaluate_trace", never)
    with pytest.raises(TTamerError, match=match):
        zr.evaluate_zoo(traces, [0], **kw)


def test_a_trace_too_small_to_split_is_named_before_any_work(traces, monkeypatch):
    def never(*args, **kwargs):
        raise AssertionError("worked before the arguments were checked")

    monkeypatch.setattr(runs_module, "evaluate_trace", never)
    monkeypatch.setattr(runs_module, "map_processes", never)
    both = {"A": traces["A"], "tiny": synthetic_trace(30, 3, 3, 2)}
    match = r"traces\['tiny'\]: calibration_fraction 0.5 of 30 examples leaves 15 calibration"
    for call in (lambda: zr.evaluate_zoo(both, [0]), lambda: zr.calibration_areas(both, [0]),
                 lambda: zr.resolution_table(both, [0]), lambda: zr.cost_profile_table(both, "rising", [0]),
                 lambda: zr.class_table(both, [0], {})):
        with pytest.raises(TTamerError, match=match):
            call()
    with pytest.raises(TTamerError, match=r"split_gain_table: calibration_fraction 0.5 of 30 examples"):
        zr.split_gain_table(both["tiny"], [0])


@pytest.mark.parametrize("fractions, match", [
    (0.5, r"fractions must be a sequence of shares"),
    (None, r"fractions must be a sequence of shares"),
    ("0.5", r"fractions must be a sequence of shares"),
    ([1e-9], r"the share 1e-09 of trace 'A''s 80 examples is 0 examples; a subset holds at least 20"),
    ([0.1, 0.2], r"the share 0.1 of trace 'A''s 80 examples is 8 examples"),
    ([0.3, 0.305], r"the shares 0.3 and 0.305 of trace 'A''s 80 examples are both subsets of 24 examples"),
    ([0.5] * 101, r"at most 100 \(MAX_SUBSET_SHARES\)"),
])
def test_subset_size_table_shares(fractions, match):
    with pytest.raises(TTamerError, match=match):
        zr.subset_size_table({"A": synthetic_trace(80, 3, 3, 0)}, fractions=fractions, repeats=2)


@pytest.mark.parametrize("where, match", [
    (3, r"where must be None or a function of a run"),
    (lambda r: np.array([1, 0]), r"where must return True or False for each run, got array"),
    (lambda r: "no", r"where must return True or False for each run, got 'no'"),
    (lambda r: None, r"where must return True or False for each run, got None"),
])
def test_slo_table_where(zoo, where, match):
    with pytest.raises(TTamerError, match=match):
        zr.slo_table(zoo, where=where)
    assert len(zr.slo_table(zoo, where=lambda r: np.bool_(r["seed"] == 0)))  # a NumPy bool is a bool


def test_repeated_strategies_are_refused(zoo):
    with pytest.raises(TTamerError, match=r"slo_table: strategies must differ; repeated: \['ttamer'\]"):
        zr.slo_table(zoo, strategies=["ttamer", "ttamer"])
    with pytest.raises(TTamerError, match=r"cost_at_level_table: strategies must differ"):
        zr.cost_at_level_table(zoo, 0.5, ["ttamer", "max-prob", "ttamer"])


def test_slo_dominated_needs_an_slo_table(zoo):
    s = zr.slo_table(zoo)
    with pytest.raises(TTamerError, match=r"the rows of the slo_table must differ; repeated: \['ttamer'\]"):
        zr.slo_dominated(pd.concat([s, s.iloc[:1]]))
    nan = s.copy()
    nan.iloc[0, 0] = np.nan
    with pytest.raises(TTamerError, match=r"column \('full', 'met \(%\)'\) of the slo_table must hold finite numbers"):
        zr.slo_dominated(nan)
    text = s.copy()
    text[("full", "cost (%)")] = "x"
    with pytest.raises(TTamerError, match=r"column \('full', 'cost \(%\)'\) of the slo_table must hold finite"):
        zr.slo_dominated(text)


def test_strategies_are_checked_in_every_run_under_every_key_read(zoo):
    z = edited(zoo, ("frontier", "oracle"), KeyError, trace="B", run=1)
    with pytest.raises(TTamerError, match=r"run 1 of trace 'B' has no strategy 'oracle' in frontier"):
        zr.cost_at_level_table(z, 0.5, ["oracle"])
    z = edited(zoo, ("auc_ci", "oracle"), KeyError, trace="B", run=1)
    with pytest.raises(TTamerError, match=r"run 1 of trace 'B' has no strategy 'oracle' in auc_ci"):
        zr.interval_widths(z, "oracle")


def test_cost_at_level_table_level(zoo):
    for bad in (1.5, float("nan"), "0.8", True):
        with pytest.raises(TTamerError, match=r"cost_at_level_table: level must"):
            zr.cost_at_level_table(zoo, bad)
    assert zr.cost_at_level_table(zoo, np.float64(0.8)).equals(zr.cost_at_level_table(zoo, 0.8))
