"""The zoo report's tables (the book's chapter *Across workloads*) against direct computations."""

from __future__ import annotations

import numpy as np
import pytest

from ttamer.earlyexit.evaluation import HEURISTICS, evaluate_trace
from ttamer.earlyexit.traces import synthetic_trace
from ttamer.core.errors import TTamerError
from ttamer.earlyexit.heuristics import HEURISTIC_RULES
from ttamer.earlyexit.tamer import ThresholdTamer
from ttamer.workloads.zoo_report import (COST_PROFILES, calibration_areas, class_table, cost_profile_table,
                                        evaluate_zoo, gain_table, heldout_table, heuristic_choice_table, recosted,
                                        resolution_table, slo_dominated, slo_table, split_gain_table,
                                        split_half_correlation, subset_size_table)

SEEDS = [0, 1]


@pytest.fixture(scope="module")
def traces():
    return {"a": synthetic_trace(240, 3, 3, seed=1), "b": synthetic_trace(200, 4, 2, seed=2)}


@pytest.fixture(scope="module")
def zoo(traces):
    return evaluate_zoo(traces, SEEDS, n_boot=5)


def test_runs_are_the_evaluations_in_order(traces, zoo):
    for name, tr in traces.items():
        assert len(zoo[name]) == len(SEEDS)
        for s, run in zip(SEEDS, zoo[name]):
            r = evaluate_trace(tr, seed=s, n_boot=5, with_chain=False, keep_replicates=True)
            assert run["auc"] == {k: m.auc for k, m in r.strategies.items()}
            assert run["policy"] == r.ttamer_fit["policy"]


def test_worker_processes_give_the_same_runs(traces, zoo):
    par = evaluate_zoo(traces, SEEDS, n_boot=5, n_jobs=2)
    for name in traces:
        for a, b in zip(zoo[name], par[name]):
            assert a["auc"] == b["auc"] and a["policy"] == b["policy"]
            for k in a["replicates"]:
                assert np.array_equal(a["replicates"][k], b["replicates"][k])


def test_gain_columns(traces, zoo):
    g = gain_table(zoo, traces)
    for name, runs in zoo.items():
        per_split = [r["auc"]["ttamer"] - max(r["auc"][h] for h in HEURISTICS) for r in runs]
        assert g.loc[name, "AUC gain (pt)"] == pytest.approx(round(100 * np.mean(per_split), 2), abs=1e-9)
        each = min(np.mean([r["auc"]["ttamer"] for r in runs]) - np.mean([r["auc"][h] for r in runs])
                   for h in HEURISTICS)
        assert g.loc[name, "vs each heuristic, mean (pt)"] == pytest.approx(round(100 * each, 2), abs=1e-9)
        assert g.loc[name, "95% low"] <= g.loc[name, "95% high"] + 1e-9
        for col, k in (("best accuracy − full (pt)", "ttamer"), ("max-prob's (pt)", "max-prob")):
            tr = traces[name]
            peak = []
            for s, r in zip(SEEDS, runs):
                test = tr.split(0.5, s)[1]
                peak.append(max(a for _, a in r["frontier"][k]) - (test.predictions[:, -1] == test.labels).mean())
            assert g.loc[name, col] == pytest.approx(round(100 * np.mean(peak), 2), abs=1e-9)


def test_heldout_table_judges_each_heuristic_on_its_own(traces, zoo):
    t = heldout_table(zoo, traces)
    for name, runs in zoo.items():
        def mean(k, what="auc"):
            return np.mean([r[what][k] for r in runs])

        area = {h: 100 * (mean("ttamer") - mean(h)) for h in HEURISTICS}
        worst = min(area, key=area.get)
        assert t.loc[name, "vs each heuristic, area (pt)"] == pytest.approx(round(area[worst], 3), abs=1e-9)
        assert t.loc[name, "below"] == (worst if area[worst] < -1e-9 else "")
        assert t.loc[name, "SDN − max-prob, area (pt)"] == pytest.approx(
            round(100 * (mean("max-prob-sdn") - mean("max-prob")), 3), abs=1e-9)
        pairs = {h: [r["cost_at_full"][h] - r["cost_at_full"]["ttamer"] for r in runs
                     if np.isfinite(r["cost_at_full"][h]) and np.isfinite(r["cost_at_full"]["ttamer"])]
                 for h in HEURISTICS}
        cost = {h: 100 * np.mean(d) for h, d in pairs.items() if d}
        if cost:
            dear = min(cost, key=cost.get)
            assert t.loc[name, "vs each heuristic, cost@full (pt)"] == pytest.approx(round(cost[dear], 3), abs=1e-9)
            assert t.loc[name, "dearer than"] == (dear if cost[dear] < -1e-9 else "")
        assert set(t.loc[name, "policies"].split()) == {r["policy"] for r in runs}
        diff = np.mean([r["replicates"]["ttamer"] - r["replicates"][worst] for r in runs], axis=0)
        lo, hi = 100 * np.quantile(diff, 0.025), 100 * np.quantile(diff, 0.975)
        assert t.loc[name, "95% low"] == pytest.approx(round(lo, 3), abs=1e-9)
        assert t.loc[name, "95% high"] == pytest.approx(round(hi, 3), abs=1e-9)
        assert t.loc[name, "beyond noise"] == (hi < -1e-9)


def test_heldout_table_without_replicates_has_no_interval(traces, zoo):
    bare = {name: [{k: v for k, v in r.items() if k != "replicates"} for r in runs] for name, runs in zoo.items()}
    t = heldout_table(bare, traces)
    assert t["95% low"].isna().all() and t["95% high"].isna().all()
    assert not t["beyond noise"].any()
    assert t.drop(columns=["95% low", "95% high", "beyond noise"]).equals(
        heldout_table(zoo, traces).drop(columns=["95% low", "95% high", "beyond noise"]))


def test_calibration_areas_are_complete_sweeps_on_the_calibration_half(traces):
    from ttamer.earlyexit.heuristics import complete_sweep
    from ttamer.earlyexit.crossval import heldout_auc

    cal = calibration_areas(traces, SEEDS)
    assert calibration_areas(traces, SEEDS, n_jobs=2) == cal
    for name, tr in traces.items():
        assert len(cal[name]) == len(SEEDS)
        for s, areas in zip(SEEDS, cal[name]):
            half = tr.split(0.5, s)[0]
            assert areas == {h: heldout_auc(complete_sweep(half, h), half, "label") for h in HEURISTIC_RULES}


def test_heuristic_choice_table(traces, zoo):
    """The plain rule picks, per split, the heuristic with the best calibration area; both
    columns are the smallest mean test-area difference to a heuristic."""
    cal = calibration_areas(traces, SEEDS)
    t = heuristic_choice_table(zoo, cal)
    h = list(HEURISTICS)
    for name, runs in zoo.items():
        picks = [max(HEURISTIC_RULES, key=lambda k: a[k]) for a in cal[name]]
        mean = {k: np.mean([r["auc"][k] for r in runs]) for k in h + ["ttamer"]}
        chosen = np.mean([r["auc"][p] for r, p in zip(runs, picks)])
        assert t.loc[name, "best heuristic on calibration (pt)"] == pytest.approx(
            round(100 * min(chosen - mean[k] for k in h), 2), abs=1e-9)
        assert t.loc[name, "T-Tamer's default (pt)"] == pytest.approx(
            round(100 * min(mean["ttamer"] - mean[k] for k in h), 2), abs=1e-9)
        assert t.loc[name, "heuristics picked (splits)"] == " ".join(sorted(set(picks)))
    with pytest.raises(TTamerError, match="same traces and splits"):
        heuristic_choice_table(zoo, {n: a[:1] for n, a in cal.items()})


def test_split_half_correlation_of_a_mean_over_examples_is_minus_one(traces):
    """Where the areas are accuracies of fixed rules (means over examples) on equal halves, the
    calibration half's advantage and the test half's sum to twice the whole trace's: the
    correlation is -1, whatever the trace. Rules that never differ are left out."""
    tr = synthetic_trace(400, 4, 3, seed=7)
    rules = {h: ThresholdTamer(policy=f"common:{st}:{ans}").fit(tr) for h, (st, ans) in HEURISTIC_RULES.items()}
    taus = np.full((1, tr.n_exits - 1), 0.7)

    def accuracies(half):
        return {h: float(r.decide_rules(half, taus).correct(half, "label").mean()) for h, r in rules.items()}

    seeds = range(6)
    halves = [tr.split(0.5, s) for s in seeds]
    cal = {"t": [accuracies(a) for a, _ in halves]}
    zoo = {"t": [{"auc": accuracies(b)} for _, b in halves]}
    assert split_half_correlation(zoo, cal) == pytest.approx(-1.0, abs=1e-9)
    same = {"t": [{h: 0.5 for h in HEURISTIC_RULES} for _ in seeds]}
    with pytest.raises(TTamerError, match="varies"):
        split_half_correlation({"t": [{"auc": a} for a in same["t"]]}, same)
    with pytest.raises(TTamerError, match="reference must be one of"):
        split_half_correlation(zoo, cal, reference="static")


def test_slo_table_means(zoo):
    t = slo_table(zoo)
    runs = [r["slo"]["full"]["strategies"]["max-prob"] for rs in zoo.values() for r in rs]
    assert t.loc["max-prob", ("full", "met (%)")] == pytest.approx(round(100 * np.mean([x["met"] for x in runs]), 1))
    assert t.loc["max-prob", ("full", "cost (%)")] == pytest.approx(round(100 * np.mean([x["cost"] for x in runs]), 1))
    only_a = slo_table(zoo, where=lambda r: any(r is x for x in zoo["a"]))
    runs = [r["slo"]["full-1pt"]["strategies"]["ttamer"] for r in zoo["a"]]
    assert only_a.loc["ttamer", ("full-1pt", "met (%)")] == pytest.approx(round(100 * np.mean([x["met"] for x in runs]), 1))
    with pytest.raises(TTamerError, match="no run"):
        slo_table(zoo, where=lambda r: False)


def test_slo_dominated_is_met_at_least_as_often_and_no_dearer(zoo):
    t = slo_table(zoo)
    dom = slo_dominated(t)
    for target, beaten in dom.items():
        met, cost = t[(target, "met (%)")], t[(target, "cost (%)")]
        for h in HEURISTICS:
            assert (h in beaten) == (met["ttamer"] >= met[h] and cost["ttamer"] <= cost[h])


def test_complete_sweep_is_worth_at_least_the_calibration_thresholds(traces):
    """On small traces the complete test sweep holds every threshold's decisions, so the
    resolution effect cannot be negative."""
    r = resolution_table(traces, SEEDS)
    assert (r["resolution effect (pt)"] >= -1e-9).all()


def test_class_table_against_direct_fits(traces, zoo):
    """Each class fixed and the default, against the max-probability rule: a fixed class's row
    is the mean over splits of its own fit, computed directly; the default's row, the
    evaluation's T-Tamer against max-prob."""
    from ttamer.earlyexit.heuristics import complete_sweep
    from ttamer.earlyexit.crossval import heldout_auc
    from ttamer.earlyexit.tamer import CANDIDATES

    t = class_table(traces, SEEDS, zoo)
    assert list(t.index) == [c.key for c in CANDIDATES[1:]] + ["auto (the default)"]
    key = "offset:max_prob:last"
    per_trace = []
    for tr in traces.values():
        gains = []
        for s in SEEDS:
            cal, test = tr.split(0.5, s)
            base = heldout_auc(complete_sweep(test, "max-prob"), test, "label")
            fixed = ThresholdTamer(policy=key).fit(cal).frontier_sweep(test)
            gains.append(100 * (heldout_auc(fixed, test, "label") - base))
        per_trace.append(np.mean(gains))
    assert t.loc[key, "mean gain (pt)"] == pytest.approx(np.mean(per_trace), abs=0.006)
    assert t.loc[key, "worst trace (pt)"] == pytest.approx(min(per_trace), abs=0.006)
    auto = [np.mean([100 * (r["auc"]["ttamer"] - r["auc"]["max-prob"]) for r in zoo[n]]) for n in traces]
    assert t.loc["auto (the default)", "mean gain (pt)"] == pytest.approx(np.mean(auto), abs=0.006)
    assert t.loc["auto (the default)", "traces at least max-prob"] == sum(a >= -1e-9 for a in auto)
    with pytest.raises(TTamerError, match="one per seed"):
        class_table(traces, SEEDS[:1], zoo)


def test_subset_size_table_against_direct_sweeps(traces):
    """The whole-trace column is the two rules' complete sweeps on every example; a subset
    column the mean over its seeded subsets; the same rule against itself gives zero; rules
    that fit a model, or more than one threshold, are refused."""
    from ttamer.earlyexit.heuristics import complete_sweep
    from ttamer.earlyexit.crossval import heldout_auc

    t = subset_size_table(traces, fractions=(0.5, 1.0), repeats=3, seed=4, n_jobs=2)
    assert list(t.index) == list(traces) and list(t.columns) == ["50 % of the examples", "100 % of the examples"]
    for name, tr in traces.items():
        rule = ThresholdTamer(policy="common:max_prob:confident").fit(tr)
        whole = 100 * (heldout_auc(rule.frontier_sweep(tr), tr, "label")
                       - heldout_auc(complete_sweep(tr, "max-prob"), tr, "label"))
        assert t.loc[name, "100 % of the examples"] == pytest.approx(whole, abs=0.006)
    rng, first = np.random.default_rng([4, 0]), next(iter(traces.values()))  # the first trace's seed
    rule = ThresholdTamer(policy="common:max_prob:confident").fit(first)
    gaps = []
    for _ in range(3):
        s = first.subset(np.sort(rng.choice(first.n_examples, first.n_examples // 2, replace=False)))
        gaps.append(heldout_auc(rule.frontier_sweep(s), s, "label")
                    - heldout_auc(complete_sweep(s, "max-prob"), s, "label"))
    assert t.iloc[0, 0] == pytest.approx(100 * np.mean(gaps), abs=0.006)
    same = subset_size_table(traces, policy="common:max_prob:last", fractions=(0.3,), repeats=2)
    assert same.equals(subset_size_table(traces, policy="common:max_prob:last", fractions=(0.3,), repeats=2,
                                         n_jobs=2))
    assert (same.abs() < 1e-9).all().all()
    for bad in ("offset:max_prob:last", "common:learned:last", "common:max_prob:posterior_at_end"):
        with pytest.raises(TTamerError, match="subset_size_table"):
            subset_size_table(traces, policy=bad)


def test_recosted_reweights_the_exit_costs_and_keeps_everything_else(traces):
    tr = next(iter(traces.values()))
    for profile, weights in COST_PROFILES.items():
        re = recosted(tr, profile)
        w = weights(tr.n_exits)
        np.testing.assert_allclose(re.mean_cost / tr.mean_cost, w * tr.mean_cost.sum() / (tr.mean_cost * w).sum())
        assert re.mean_cost.sum() == pytest.approx(tr.mean_cost.sum())
        np.testing.assert_array_equal(re.probs, tr.probs)
        np.testing.assert_array_equal(re.labels, tr.labels)
        assert profile in re.meta["cost_measure"] and re.meta["model"] == tr.meta["model"]
    rising = COST_PROFILES["rising"](5)
    assert rising[0] == 1.0 and rising[-1] == 4.0 and np.all(np.diff(rising) > 0)
    with pytest.raises(TTamerError, match="profile must be one of"):
        recosted(tr, "flat")


def test_cost_profile_table_against_direct_fits(traces):
    from ttamer.earlyexit.baselines import static_exit
    from ttamer.earlyexit.crossval import heldout_auc
    from ttamer.earlyexit.heuristics import complete_sweep

    t = cost_profile_table(traces, "last-5x", SEEDS, n_jobs=2)
    assert list(t.index) == list(traces)
    for name, tr in traces.items():
        areas, chosen = {}, set()
        for s in SEEDS:
            cal, test = recosted(tr, "last-5x").split(0.5, s)
            tamer = ThresholdTamer().fit(cal)
            chosen.add(tamer.candidate_.key)
            got = {h: heldout_auc(complete_sweep(test, h), test, "label")
                   for h in ("max-prob", "max-prob-sdn", "entropy", "patience")}
            got |= {"static": heldout_auc(static_exit(test), test, "label"),
                    "ttamer": heldout_auc(tamer.frontier_sweep(test), test, "label")}
            for k, v in got.items():
                areas.setdefault(k, []).append(v)
        mean = {k: np.mean(v) for k, v in areas.items()}
        assert t.loc[name, "vs max-prob (pt)"] == pytest.approx(100 * (mean["ttamer"] - mean["max-prob"]), abs=0.006)
        worst = min(mean["ttamer"] - mean[h] for h in mean if h != "ttamer")
        assert t.loc[name, "vs each heuristic (pt)"] == pytest.approx(100 * worst, abs=0.006)
        assert t.loc[name, "classes chosen"] == " ".join(sorted(chosen))
    with pytest.raises(TTamerError, match="profile must be one of"):
        cost_profile_table(traces, "flat", SEEDS)
    for bad, match in ((({}, SEEDS), "non-empty dict of name -> Trace"), ((traces, []), "at least one split seed")):
        with pytest.raises(TTamerError, match=match):
            cost_profile_table(bad[0], "rising", bad[1])


def test_cost_profile_table_with_unit_weights_reads_the_evaluation_s_areas(traces, zoo, monkeypatch):
    """Costs times ones: the lighter evaluation of the replay scores T-Tamer's default and the
    heuristics exactly as :func:`evaluate_zoo` does."""
    import ttamer.workloads.zoo_report as zr

    monkeypatch.setitem(zr.COST_PROFILES, "unit", lambda L: np.ones(L))
    t = cost_profile_table(traces, "unit", SEEDS)  # in this process: the workers would not see "unit"
    gains = gain_table(zoo, traces)
    for name, runs in zoo.items():
        assert t.loc[name, "vs each heuristic (pt)"] == pytest.approx(gains.loc[name, "vs each heuristic, mean (pt)"],
                                                                      abs=0.006)
        mean = {k: np.mean([r["auc"][k] for r in runs]) for k in ("ttamer", "max-prob")}
        assert t.loc[name, "vs max-prob (pt)"] == pytest.approx(100 * (mean["ttamer"] - mean["max-prob"]), abs=0.006)
        assert t.loc[name, "classes chosen"] == " ".join(sorted({r["policy"] for r in runs}))



def test_split_gain_table_against_direct_fits(traces):
    from ttamer.earlyexit.baselines import static_exit
    from ttamer.earlyexit.crossval import heldout_auc
    from ttamer.earlyexit.heuristics import complete_sweep

    tr = traces["a"]
    t = split_gain_table(tr, SEEDS, n_jobs=2)
    assert list(t.index) == [f"split {s}" for s in SEEDS] + ["mean"]
    for s in SEEDS:
        cal, test = tr.split(0.5, s)
        tamer = ThresholdTamer().fit(cal)
        area = {h: heldout_auc(complete_sweep(test, h), test, "label") for h in ("max-prob", "max-prob-sdn",
                                                                                  "entropy", "patience")}
        area["static"] = heldout_auc(static_exit(test), test, "label")
        mine = heldout_auc(tamer.frontier_sweep(test), test, "label")
        norec = heldout_auc(ThresholdTamer(recall=False).fit(cal).frontier_sweep(test), test, "label")
        row = t.loc[f"split {s}"]
        assert row["class chosen"] == tamer.candidate_.key
        assert row["vs max-prob (pt)"] == pytest.approx(100 * (mine - area["max-prob"]), abs=0.006)
        assert row["vs each heuristic (pt)"] == pytest.approx(100 * min(mine - a for a in area.values()), abs=0.006)
        assert row["recall vs no recall (pt)"] == pytest.approx(100 * (mine - norec), abs=0.006)
    numeric = t.drop(columns="class chosen")
    np.testing.assert_allclose(numeric.loc["mean"], numeric.drop(index="mean").mean(), atol=0.006)
    with pytest.raises(TTamerError, match="at least one split seed"):
        split_gain_table(tr, [])
