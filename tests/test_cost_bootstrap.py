"""The paired bootstrap of the cost at the full model's accuracy (the book's chapter *Early exit
on real models*) against a direct recomputation on each resample, and the never-worse table
of the chapter *Across workloads* on hand-made runs."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from ttamer.earlyexit import baselines
from ttamer.core.errors import TTamerError
from ttamer.earlyexit import evaluation
from ttamer.earlyexit.evaluation import (HEURISTICS, _replicate_metrics, _resampled_points, bootstrap_weights,
                                         evaluate_trace, paired_bootstrap, paired_quantiles, strategy_sweeps,
                                         sweep_points)
from ttamer.earlyexit.metrics import cost_at_accuracy, frontier, hull_frontier
from ttamer.earlyexit.tamer import ThresholdTamer
from ttamer.earlyexit.traces import synthetic_trace
from ttamer.workloads.zoo_report import interval_widths, never_worse_table


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 10_000), st.sampled_from(["pareto", "hull"]))
def test_replicate_costs_are_cost_at_accuracy_of_each_replicate(seed, kind):
    rng = np.random.default_rng(seed)
    B, P, n = 6, 5, 30
    correct = rng.random((P, n)) < rng.random((P, 1))
    cost = np.sort(rng.random((P, n)), axis=0)
    counts = bootstrap_weights(n, B, seed)
    cost_b, acc_b = _resampled_points(correct, cost, counts)
    level = rng.choice(acc_b.ravel(), B)  # levels some point reaches exactly, and others
    level[::2] = rng.random(B)[::2]
    curves, got = _replicate_metrics(cost_b, acc_b, np.linspace(0, 1, 5), level, kind)
    assert np.array_equal(curves, _replicate_metrics(cost_b, acc_b, np.linspace(0, 1, 5), None, kind)[0],
                          equal_nan=True)
    for b in range(B):
        front = hull_frontier(cost_b[b], acc_b[b]) if kind == "hull" else frontier(cost_b[b], acc_b[b], "pareto")
        want = cost_at_accuracy(front, float(level[b]), kind)
        if want is None:
            assert got[b] == np.inf
        else:
            assert got[b] == pytest.approx(want, abs=1e-12)


def test_paired_bootstrap_recomputes_each_resample():
    """Replicate b of every strategy's cost at the full model's accuracy is the cost read on
    the frontier of that strategy's sweep rescored on resample b of the test examples, the full
    model's accuracy read on the same resample."""
    trace = synthetic_trace(n=240, n_exits=4, n_classes=3, seed=3)
    cal, test = trace.split(0.5, 0)
    tamers = {"ttamer": ThresholdTamer().fit(cal)}
    pts = {name: sweep_points(sweep(), test) for name, sweep in strategy_sweeps(test, tamers).items()}
    full = baselines.full_model(test).correct(test)[0]
    grid = np.linspace(0.3, 1.0, 7)
    _, costs = paired_bootstrap(pts, full, grid, 9, seed=4)
    counts = bootstrap_weights(test.n_examples, 9, np.random.default_rng(4))  # the same stream, one chunk
    for name, p in pts.items():
        for b, w in enumerate(counts):
            c = (p["cost_ex"] * w).sum(axis=1) / test.n_examples
            a = (p["correct"] * w).sum(axis=1) / test.n_examples
            want = cost_at_accuracy(frontier(c, a, "pareto"), float((full * w).sum() / test.n_examples))
            assert costs[name][b] == pytest.approx(np.inf if want is None else want, abs=1e-12), (name, b)


def test_every_heuristic_sweep_ends_with_the_full_model():
    trace = synthetic_trace(n=200, n_exits=4, n_classes=3, seed=2)
    _, test = trace.split(0.5, 0)
    sweeps = strategy_sweeps(test, {})
    for name in HEURISTICS[:-1]:  # the one-threshold heuristics ("static" holds every exit)
        d = sweeps[name]()
        assert np.all(d.last[-1] == test.n_exits - 1) and np.all(d.answer[-1] == test.n_exits - 1), name


def test_evaluate_reports_the_paired_cost_interval():
    trace = synthetic_trace(n=300, n_exits=4, n_classes=3, seed=7)
    r = evaluate_trace(trace, n_boot=40, with_chain=False, keep_replicates=True)
    tt = r.strategies["ttamer"]
    assert tt.cost_at_full_minus_ttamer_ci == (0.0, 0.0, 0.0)
    for name, m in r.strategies.items():
        lo, mid, hi = m.cost_at_full_minus_ttamer_ci
        assert lo <= mid <= hi
        assert (lo, mid, hi) == paired_quantiles(m.cost_at_full_replicates, tt.cost_at_full_replicates)
    d = json.loads(json.dumps(r.to_dict(), allow_nan=False))
    assert len(d["strategies"]["max-prob"]["cost_at_full_minus_ttamer_ci"]) == 3
    bare = evaluate_trace(trace, n_boot=0, with_chain=False).strategies["max-prob"]
    assert bare.cost_at_full_minus_ttamer_ci is None and "cost_at_full_minus_ttamer_ci" not in bare.to_dict()


def test_paired_quantiles_count_one_sided_misses_and_drop_double_ones():
    a = np.array([0.5, np.inf, np.inf, 0.2] + [0.4] * 36)
    b = np.array([0.4, 0.3, np.inf, 0.2] + [0.4 + 1e-16] * 36)  # the same rule, summed in another order
    lo, mid, hi = paired_quantiles(a, b)  # 39 replicates: the one where neither reaches is left out
    assert (lo, mid, hi) == (0.0, 0.0, np.inf)
    assert paired_quantiles(np.full(3, np.inf), np.full(3, np.inf)) is None


def _run(tt_auc, h_auc, tt_cost, h_cost, auc_lo=None, cost_hi=None):
    """A hand-made summary of one split: every heuristic as given (``auc_lo`` the 2.5 % bound of
    heuristic − T-Tamer's area, ``cost_hi`` the 97.5 % bound of its cost minus T-Tamer's; without
    them, no interval: ``None``, as every run of a trace holds the intervals or none does)."""
    names = ("ttamer", "no-recall") + tuple(HEURISTICS)
    run = {"policy": "common:max_prob:last", "frontier": {k: np.zeros((1, 2)) for k in names}, "slo": {},
           "full_accuracy": 0.8, "auc": {k: h_auc for k in names}, "cost_at_full": {k: h_cost for k in names}}
    run["auc"]["ttamer"], run["cost_at_full"]["ttamer"] = tt_auc, tt_cost
    run["auc_ci"] = {k: None if auc_lo is None else (auc_lo, 0.0, 1.0) for k in names}
    run["cost_ci"] = {k: None if auc_lo is None else (-1.0, 0.0, cost_hi) for k in names}
    return run


def test_never_worse_table_reads_the_noise_of_each_split():
    zoo = {
        "better": [_run(0.8, 0.7, 0.5, 0.6), _run(0.8, 0.7, 0.5, 0.6)],
        # behind on one split but within its noise, ahead on the mean: holds
        "noise": [_run(0.70, 0.71, 0.62, 0.6, auc_lo=-0.01, cost_hi=0.01), _run(0.8, 0.7, 0.5, 0.6)],
        # behind beyond the noise of one split
        "beyond": [_run(0.70, 0.71, 0.5, 0.6, auc_lo=0.001, cost_hi=0.1), _run(0.8, 0.7, 0.5, 0.6)],
        # within the noise of every split, behind on the mean cost
        "mean": [_run(0.8, 0.7, 0.7, 0.6, auc_lo=-0.1, cost_hi=0.01), _run(0.8, 0.7, 0.6, 0.6)],
    }
    t = never_worse_table(zoo)
    assert t["holds"].to_dict() == {"better": True, "noise": True, "beyond": False, "mean": False}
    assert t.loc["beyond", "area: splits ok"] == "1/2" and t.loc["noise", "area: splits ok"] == "2/2"
    assert t.loc["beyond", "area beyond noise"] == " ".join(HEURISTICS)
    assert t.loc["beyond", "area, mean below"] == "" and t.loc["beyond", "area, mean gain (pt)"] == pytest.approx(4.5)
    assert t.loc["mean", "cost@full: splits ok"] == "2/2" and t.loc["mean", "cost@full beyond noise"] == ""
    assert t.loc["mean", "cost@full, mean gain (pt)"] == pytest.approx(-5.0)
    assert t.loc["mean", "cost@full, mean below"] == HEURISTICS[0]
    # without the intervals only the point values count
    bare = {"a": [{k: v for k, v in r.items() if k not in ("auc_ci", "cost_ci")} for r in zoo["noise"]]}
    assert never_worse_table(bare).loc["a", "area: splits ok"] == "1/2"


def test_interval_widths_are_the_median_widths_in_pt():
    runs = [_run(0.8, 0.7, 0.5, 0.6, auc_lo=lo, cost_hi=hi) for lo, hi in ((-0.01, 0.02), (-0.03, np.inf), (0.0, 0.1))]
    w = interval_widths({"a": runs[:2], "b": runs[2:]})
    assert w["area"] == pytest.approx(100 * 1.01) and w["cost@full"] == pytest.approx(100 * 1.1)
    same = [_run(0.8, 0.7, 0.5, 0.6, auc_lo=1.0, cost_hi=-1.0)]  # zero widths: the same rule, left out
    assert interval_widths({"a": runs[:2] + same})["area"] == pytest.approx(100 * 1.02)
    assert all(np.isnan(v) for v in interval_widths({"a": [_run(0.8, 0.7, 0.5, 0.6)]}).values())


def _paired_inputs():
    trace = synthetic_trace(n=120, n_exits=3, n_classes=2, seed=1)
    pts = {name: sweep_points(sweep(), trace) for name, sweep in strategy_sweeps(trace, {}).items()}
    return pts, baselines.full_model(trace).correct(trace)[0]


@pytest.mark.parametrize("change, match", [
    (lambda p, f, g: ({}, f, g), "pts must be a non-empty dict"),
    (lambda p, f, g: ({"x": {"correct": p["static"]["correct"]}}, f, g), r"pts\['x'\] must be a dict with 'correct'"),
    (lambda p, f, g: (p, f[:-1], g), r"\['correct'\] must be a bool array \[rules, 119\]"),
    (lambda p, f, g: (p, f.astype(int), g), "full_correct must be a non-empty 1-D bool array"),
    (lambda p, f, g: ({"s": dict(p["static"], cost_ex=p["static"]["cost_ex"] * np.nan)}, f, g), r"cost_ex'\]\[0\]\[0\] must be a finite"),
    (lambda p, f, g: ({"s": dict(p["static"], cost_ex=p["static"]["cost_ex"][:, :5])}, f, g), "one cost per rule"),
    (lambda p, f, g: (p, f, []), "grid must be a non-empty"),
])
def test_paired_bootstrap_checks_its_inputs_first(change, match):
    pts, full = _paired_inputs()
    with pytest.raises(TTamerError, match=match):
        paired_bootstrap(*change(pts, full, np.linspace(0.3, 1, 4)), 5, 0)


@pytest.mark.parametrize("kw, match", [(dict(n_boot=0), "at least 1 replicate"), (dict(n_boot=-1), "n_boot"),
                                       (dict(seed=-1), "seed"), (dict(kind="convex"), "frontier kind"),
                                       (dict(n_boot=10**12), "MAX_BOOTSTRAP_DRAWS")])
def test_paired_bootstrap_checks_its_options_before_drawing(kw, match):
    pts, full = _paired_inputs()
    args = dict(n_boot=5, seed=0, kind="pareto") | kw
    with pytest.raises(TTamerError, match=match):
        paired_bootstrap(pts, full, np.linspace(0.3, 1, 4), **args)


def test_hull_bootstraps_are_bounded_before_work(monkeypatch):
    monkeypatch.setattr(evaluation, "MAX_BOOTSTRAP_HULLS", 9 * 10)
    trace = synthetic_trace(n=200, n_exits=3, n_classes=3, seed=1)
    with pytest.raises(TTamerError, match=r"11 replicates of hull frontiers .* at most 10 replicates"):
        evaluate_trace(trace, n_boot=11, frontier_kind="hull", with_chain=False)
    assert evaluate_trace(trace, n_boot=11, with_chain=False).strategies["ttamer"].band is not None  # Pareto: no bound


@pytest.mark.parametrize("a, b, match", [(None, np.ones(2), "a .costs"), (np.ones(2), [np.nan, 1.0], r"b .*\[0\]"),
                                         (np.ones(2), np.ones(3), "the same resamples"),
                                         (-np.ones(2), np.ones(2), "a .costs")])
def test_paired_quantiles_checks_its_replicates(a, b, match):
    with pytest.raises(TTamerError, match=match):
        paired_quantiles(a, b)


def test_domination_summary_and_the_cli_line_read_the_noise_of_the_split():
    from dataclasses import replace

    from ttamer.cli.evaluate import format_table
    from ttamer.earlyexit.evaluation import domination_summary

    r = evaluate_trace(synthetic_trace(n=300, n_exits=4, n_classes=3, seed=7), n_boot=40, with_chain=False)
    for h, d in domination_summary(r).items():
        lo, _, hi = r.strategies[h].cost_at_full_minus_ttamer_ci
        assert d["cost_gap_ci"] == [lo, hi]
        assert d["never_worse"]["area"] == (d["auc_gap"] >= -1e-12 or d["auc_gap_ci"][1] >= 0)
        assert d["never_worse"]["cost"] == (d["cost_gap"] >= -1e-12 or hi >= 0)
    tt = r.strategies["ttamer"]
    ahead = replace(r.strategies["max-prob"], auc=tt.auc + 0.05, auc_minus_ttamer_ci=(0.01, 0.05, 0.09),
                    cost_at_full_accuracy=tt.cost_at_full_accuracy - 0.2,
                    cost_at_full_minus_ttamer_ci=(-0.3, -0.2, -0.1))
    beaten = replace(r, strategies=dict(r.strategies, **{"max-prob": ahead}))
    assert domination_summary(beaten)["max-prob"]["never_worse"] == {"area": False, "cost": False}
    line = format_table(beaten).splitlines()[-1]
    assert line.startswith("T-Tamer never worse than every heuristic on this split (at least as good, or behind")
    assert "area no, behind max-prob" in line and "cost at the full model's accuracy no, behind max-prob" in line
    within = replace(ahead, auc_minus_ttamer_ci=(-0.01, 0.05, 0.09), cost_at_full_minus_ttamer_ci=(-0.3, -0.2, 0.0))
    assert domination_summary(replace(r, strategies=dict(r.strategies, **{"max-prob": within})))["max-prob"][
        "never_worse"] == {"area": True, "cost": True}
