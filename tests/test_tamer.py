"""ThresholdTamer: the estimator contract, the policy class holding the heuristics, the
cross-validated choice, and the service-level protocol."""

from statistics import NormalDist

import numpy as np
import pytest

from ttamer.earlyexit import baselines
from ttamer.earlyexit import heuristics
import ttamer.earlyexit.slo as slo_mod
from ttamer.earlyexit.slo import CONFIDENCE, TARGETS, out_of_fold_accuracy, slo_block
from ttamer.earlyexit.states import StateModel, ensemble_answers, running_argmax
import ttamer.earlyexit.tamer as tamer_mod
from ttamer.earlyexit.metrics import pareto_frontier
from ttamer.earlyexit.states import exit_wrong
from ttamer.earlyexit.crossval import heldout_auc
from ttamer.earlyexit.tamer import CANDIDATES, PolicyCandidate, ThresholdTamer, one_se_choice
from ttamer.core.errors import TTamerError, TraceError
from ttamer.earlyexit.traces import Trace, synthetic_trace


@pytest.fixture(scope="module")
def split():
    return synthetic_trace(1600, 5, 4, seed=3).split(0.5, seed=0)


@pytest.fixture(scope="module")
def fitted(split):
    return ThresholdTamer(lam=0.9).fit(split[0])


def test_init_stores_parameters_only_and_clone_works(fitted):
    sk = pytest.importorskip("sklearn.base")
    t = ThresholdTamer(lam=0.3, recall=False, policy="common:max_prob:last", cv_folds=4)
    assert t.get_params()["cv_folds"] == 4 and not hasattr(t, "candidate_")
    c = sk.clone(fitted)
    assert c.get_params() == fitted.get_params() and not hasattr(c, "candidate_")
    assert ThresholdTamer(lam="nonsense").lam == "nonsense"  # validated in fit, not in __init__


@pytest.mark.parametrize("kwargs, words", [
    ({"lam": 1.5}, "lam"), ({"lam": "0.5"}, "lam"), ({"recall": "no"}, "recall"), ({"cv_folds": 1}, "cv_folds"),
    ({"cv_folds": "x"}, "cv_folds"), ({"policy": "bogus"}, "policy"), ({"policy": "common:nope:last"}, "state"),
    ({"target": "truth"}, "target"), ({"seed": -1}, "seed"), ({"policy": 3}, "policy"),
])
def test_fit_rejects_bad_parameters(split, kwargs, words):
    with pytest.raises(TTamerError, match=words):
        ThresholdTamer(**kwargs).fit(split[0])


def test_fit_and_decide_reject_bad_traces(fitted, split):
    with pytest.raises(TTamerError, match="Trace"):
        ThresholdTamer().fit(None)
    with pytest.raises(TTamerError, match="not fitted"):
        ThresholdTamer().decide(split[1])
    other = synthetic_trace(100, 5, 6, seed=1)
    with pytest.raises(TraceError, match="classes"):
        fitted.decide(other)
    with pytest.raises(TraceError, match="exit"):
        ThresholdTamer().fit(synthetic_trace(100, 1, 3))
    with pytest.raises(TTamerError, match="recall=False"):
        ThresholdTamer(recall=False, policy="per_exit:posterior:posterior").fit(split[0])


@pytest.mark.parametrize("cls", ["ThresholdTamer", "EarlyExitTamer", "PathwiseTamer"])
def test_every_estimator_checks_its_traces(cls):
    """fit: a Trace of 2 to MAX_EXITS exits; every method reading a trace after fit: a Trace of
    the exits and classes fitted on (a rule fitted on 3 classes is not silently run on 2)."""
    from ttamer.earlyexit.base import MAX_EXITS, MIN_FIT_EXAMPLES
    from ttamer.earlyexit.calibration import EarlyExitTamer
    from ttamer.earlyexit.pathwise import PathwiseTamer

    est = {"ThresholdTamer": ThresholdTamer, "EarlyExitTamer": EarlyExitTamer, "PathwiseTamer": PathwiseTamer}[cls]
    with pytest.raises(TTamerError, match=f"{cls}.fit expects a ttamer Trace .*got NoneType"):
        est().fit(None)
    with pytest.raises(TraceError, match=f"handles at most {MAX_EXITS}"):
        est().fit(synthetic_trace(40, MAX_EXITS + 1, 2, seed=1))
    with pytest.raises(TraceError, match=f"the trace has 1 example; {cls}.fit needs at least {MIN_FIT_EXAMPLES}"):
        est().fit(synthetic_trace(400, 4, 3, seed=1).subset([0]))
    model = est().fit(synthetic_trace(400, 4, 3, seed=1))
    for method in ("decide", "decide_sweep"):
        with pytest.raises(TTamerError, match=f"{cls} expects a ttamer Trace .*got NoneType"):
            getattr(model, method)(None)
        for other in (synthetic_trace(100, 5, 3, seed=2), synthetic_trace(100, 4, 2, seed=2)):
            with pytest.raises(TraceError, match=f"{cls} was fitted on 4 exits and 3 classes"):
                getattr(model, method)(other)


def test_set_params_names_unknown(fitted):
    with pytest.raises(TTamerError, match="no parameter 'lamb'"):
        ThresholdTamer().set_params(lamb=0.5)


def test_decide_is_the_rule_at_lam(fitted, split):
    test = split[1]
    d = fitted.decide(test)
    x, answers = fitted.state_model_.transform(test)
    for n in range(0, test.n_examples, 37):  # a per-example walk of the thresholds
        stop = next((i for i in range(test.n_exits - 1) if x[n, i] >= fitted.taus_[i]), test.n_exits - 1)
        assert d.last[n] == stop and d.answer[n] == answers[n, stop]
    assert fitted.set_lam(0.2).decide(test).cost.mean() <= d.cost.mean() + 1e-12


def test_sweep_ends_at_the_full_model_and_costs_follow_budgets(fitted, split):
    cal, test = split
    dec = fitted.decide_sweep(test)
    assert np.all(dec.last[-1] == test.n_exits - 1) and np.all(dec.answer[-1] == test.n_exits - 1)
    in_sample = fitted.decide_sweep(cal)
    costs = in_sample.cost[:-1].mean(axis=1) / cal.full_cost.mean()
    assert np.allclose(costs, fitted.sweep_cost_)  # params are the calibration budgets
    assert np.all(np.diff(fitted.sweep_cost_) > 0) and np.all(np.diff(fitted.sweep_loss_) < 0)


@pytest.mark.parametrize("name, policy", [("max-prob", "common:max_prob:last"),
                                          ("max-prob-sdn", "common:max_prob:confident"),
                                          ("entropy", "common:neg_entropy:last"),
                                          ("patience", "common:patience:last")])
def test_heuristics_are_members_of_the_policy_class(split, name, policy):
    """A one-threshold T-Tamer on the heuristic's state is swept exactly like the heuristic,
    and the complete sweep agrees with the classic implementation at the same thresholds."""
    cal, test = split
    h = heuristics.complete_sweep(test, name)
    t = ThresholdTamer(policy=policy).fit(cal).frontier_sweep(test)
    assert np.array_equal(h.last, t.last[:-1]) and np.array_equal(h.answer, t.answer[:-1])
    classic = {"max-prob": lambda th: baselines.max_prob_threshold(test, th),
               "max-prob-sdn": lambda th: baselines.max_prob_threshold(test, th, fallback="confident"),
               "entropy": lambda th: baselines.entropy_threshold(test, -th),
               "patience": lambda th: baselines.patience(test, np.minimum(th, test.n_exits).astype(int))}[name]
    finite = np.isfinite(h.params)
    ref = classic(h.params[finite])
    assert np.array_equal(ref.last, h.last[finite]) and np.array_equal(ref.answer, h.answer[finite])


def test_complete_sweep_is_at_least_any_fixed_grid(split):
    test = split[1]
    grid = baselines.max_prob_threshold(test, baselines.default_thresholds(test.max_prob, 50))
    full = heuristics.complete_sweep(test, "max-prob")
    assert heldout_auc(full, test, "label") >= heldout_auc(grid, test, "label") - 1e-12


def test_one_se_choice_prefers_simpler():
    scores = np.array([[0.80, 0.81, 0.79], [0.801, 0.805, 0.795], [0.85, 0.86, 0.84]])
    assert one_se_choice(scores) == 2  # clearly better: the rich one
    assert one_se_choice(scores[:2]) == 0  # a gain within its fold-to-fold noise: the simple one
    assert one_se_choice(np.array([[0.80, 0.81, 0.79], [0.802, 0.812, 0.792]])) == 1  # small but steady
    assert one_se_choice(np.array([[0.5, 0.5], [0.5, 0.5]])) == 0


def test_one_se_choice_takes_the_better_of_equally_simple_classes():
    # rows 1 and 2 within one standard error of the best (row 2); row 0 is not
    scores = np.array([[0.70, 0.71, 0.69], [0.801, 0.815, 0.79], [0.805, 0.81, 0.80]])
    assert one_se_choice(scores) == 1  # every row its own level: the first within the error
    assert one_se_choice(scores, levels=[0, 1, 1]) == 2  # rows 1 and 2 equally simple: the better
    assert one_se_choice(scores, levels=[0, 1, 2]) == 1
    assert one_se_choice(np.array([[0.5, 0.5], [0.5, 0.5]]), levels=[0, 0]) == 0  # a tie: the first
    assert [c.level for c in CANDIDATES] == [0, 1, 1, 2]  # recall answers fit nothing of their own
    assert PolicyCandidate.parse("offset:max_prob:ensemble_at_end").level == \
        PolicyCandidate.parse("offset:max_prob:last").level


def test_cv_records_and_chooses_the_max_prob_rule_on_its_own_kind_of_data():
    """A trace whose exits differ only in noise: no richer class pays, so the simplest is kept."""
    rng = np.random.default_rng(0)
    n, L, C = 1200, 4, 3
    y = rng.integers(0, C, n)
    logits = rng.normal(size=(n, L, C)) + 1.5 * np.eye(C)[y][:, None, :]
    p = np.exp(logits) / np.exp(logits).sum(axis=2, keepdims=True)
    tr = Trace.build(p, y, np.ones(L))
    t = ThresholdTamer().fit(tr)
    assert [c["policy"] for c in t.cv_scores_] == [c.key for c in CANDIDATES]
    best = max(t.cv_scores_, key=lambda c: c["auc"])
    chosen = next(c for c in t.cv_scores_ if c["policy"] == t.candidate_.key)
    assert best["auc"] - chosen["auc"] <= chosen["se"] + 1e-12
    assert t.candidates().index(t.candidate_) <= t.candidates().index(PolicyCandidate.parse(best["policy"]))


@pytest.mark.parametrize("margin, confirmed", [(1.5, True), (4.0, False), (-1.0, False)])
def test_a_richer_class_chosen_by_a_small_margin_is_confirmed_on_fresh_folds(monkeypatch, margin, confirmed):
    """The folds' choice of a class richer than the simplest, ahead of it by fewer than
    CV_CONFIRM_Z standard errors, triggers fresh repeats up to MAX_CV_REPEATS; a clear winner,
    or the simplest class itself, does not."""
    noise = np.array([0.0, 0.01, -0.01, 0.005, -0.005])  # paired differences: SE = std / sqrt(5)
    se = noise.std(ddof=1) / np.sqrt(5)
    calls = []

    def fake_repeats(self, trace, cands, repeats):
        calls.append(list(repeats))
        scores = np.full((len(cands), 5 * len(repeats)), 0.8)
        scores[1] += np.tile(margin * se + noise, len(repeats))
        return scores

    monkeypatch.setattr(ThresholdTamer, "_cv_repeats", fake_repeats)
    tr = synthetic_trace(3000, 3, 3, seed=4)  # above CV_REPEAT_EXAMPLES: one repeat to begin with
    t = ThresholdTamer().fit(tr)
    assert calls[0] == [0]
    assert (calls[1:] == [[1, 2, 3]]) == confirmed and len(calls) == 1 + confirmed
    assert t.cv_fold_scores_.shape[1] == 5 * (tamer_mod.MAX_CV_REPEATS if confirmed else 1)
    assert t.candidate_ == (CANDIDATES[1] if margin > 1 else CANDIDATES[0])


def test_recall_false_keeps_only_no_recall_classes(split):
    t = ThresholdTamer(recall=False).fit(split[0])
    assert not t.candidate_.recall and all(not PolicyCandidate.parse(c["policy"]).recall for c in t.cv_scores_)
    assert t.name == "no-recall"


def test_small_calibration_uses_fewer_folds_or_the_simplest_class():
    tr = synthetic_trace(70, 3, 3, seed=2)
    t = ThresholdTamer().fit(tr)
    assert t.cv_folds_ == 3 and len(t.cv_scores_) == len(CANDIDATES)
    t = ThresholdTamer().fit(tr.subset(np.arange(30)))
    assert t.cv_folds_ == 1 and t.cv_scores_ == [] and t.candidate_ == CANDIDATES[0]


def test_states_and_answers():
    tr = synthetic_trace(300, 4, 5, seed=4)
    a = running_argmax(tr.max_prob)
    for n in range(0, 300, 29):
        for i in range(4):
            assert a[n, i] == int(np.argmax(tr.max_prob[n, : i + 1]))
    x, ans = ensemble_answers(tr)
    for n in range(0, 300, 31):
        for i in range(4):
            ens = tr.probs[n, : i + 1].astype(float).mean(axis=0)
            scores = [ens[tr.predictions[n, j]] for j in range(i + 1)]
            assert ans[n, i] == int(np.argmax(scores)) and np.isclose(x[n, i], max(scores))
    with pytest.raises(TTamerError, match="ensemble"):
        StateModel.fit(tr, "ensemble", "last")
    _, ans_end = StateModel.fit(tr, "max_prob", "ensemble_at_end").transform(tr)
    assert np.array_equal(ans_end[:, :-1], np.broadcast_to(np.arange(3), (300, 3)))
    assert np.array_equal(ans_end[:, -1], ensemble_answers(tr)[1][:, -1])
    sm = StateModel.fit(tr, "max_prob", "posterior_at_end")
    _, ans_post = sm.transform(tr)
    _, post = StateModel.fit(tr, "posterior", "posterior").transform(tr)
    assert np.array_equal(ans_post[:, :-1], np.broadcast_to(np.arange(3), (300, 3)))
    assert np.array_equal(ans_post[:, -1], post[:, -1])


def test_slo_block(fitted, split):
    cal, test = split
    block = slo_block(cal, test, {"ttamer": fitted})
    assert set(block) == set(TARGETS)
    full_cal = cal.predictions[:, -1] == cal.labels
    full_acc = (test.predictions[:, -1] == test.labels).mean()
    z = NormalDist().inv_cdf(CONFIDENCE)
    for name, b in block.items():
        assert np.isclose(b["test_target"], full_acc - TARGETS[name]) and b["confidence"] == CONFIDENCE
        for s, r in b["strategies"].items():
            assert 0 < r["cost"] <= 1 + 1e-9 and r["met"] == (r["accuracy"] >= b["test_target"] - 1e-12)
        # independently: the cheapest max-prob threshold whose paired lower bound clears the drop
        taus = np.r_[np.unique(cal.probs[:, :-1].max(axis=2))[::-1], np.inf]
        best_cost, best_tau = np.inf, None
        for tau in taus:
            stop = np.argmax(np.c_[cal.probs[:, :-1].max(axis=2) >= tau, np.ones(len(cal.labels), bool)], axis=1)
            if tau == np.inf:
                stop[:] = cal.n_exits - 1
            d = (cal.predictions[np.arange(len(stop)), stop] == cal.labels).astype(float) - full_cal
            s = np.r_[d, 1.0, -1.0].std(ddof=1)  # two pseudo-examples, one disagreement each way
            bound = d.mean() - z * s * np.sqrt(1 / len(d) + 1 / test.n_examples)
            cost = cal.cumulative_cost[np.arange(len(stop)), stop].mean()
            if (tau == np.inf or bound >= -TARGETS[name] - 1e-12) and cost < best_cost - 1e-12:
                best_cost, best_tau = cost, tau
        d = heuristics.sweep(test, "max-prob", [best_tau])[0]
        assert np.isclose(b["strategies"]["max-prob"]["cost"], d.cost.mean() / test.full_cost.mean())
    assert out_of_fold_accuracy(fitted, fitted.sweep_cost_) is None or fitted.candidate_.thresholds != "common"


def test_slo_naive_rule_and_bad_confidence(fitted, split):
    cal, test = split
    naive = slo_block(cal, test, {"ttamer": fitted}, confidence=0.5)["full"]
    # the naive rule: the cheapest calibration threshold whose calibration accuracy reaches the target
    taus, cost, acc = heuristics.threshold_curve(cal, "max-prob")
    ok = acc >= naive["calibration_target"] - 1e-12
    expect = heuristics.sweep(test, "max-prob", [taus[ok][np.argmin(cost[ok])]])[0]
    assert np.isclose(naive["strategies"]["max-prob"]["cost"], expect.cost.mean() / test.full_cost.mean())
    for bad in (0.3, 1.0, "x", None):
        with pytest.raises(TTamerError, match="SLO confidence"):
            slo_block(cal, test, {"ttamer": fitted}, confidence=bad)
    with pytest.raises(TTamerError, match="unknown heuristic 'nope'"):
        slo_block(cal, test, {"ttamer": fitted}, heuristics=("max-prob", "nope"))


@pytest.mark.parametrize("policy, expected", [("per_exit:posterior:posterior", "per_exit:learned:last"),
                                              ("common:max_prob:ensemble_at_end", "common:max_prob:last"),
                                              ("per_exit:ensemble:ensemble", "per_exit:max_prob:last")])
def test_without_recall_of_a_fixed_policy(split, policy, expected):
    rec = ThresholdTamer(policy=policy).fit(split[0])
    norec = rec.without_recall(split[0])
    assert norec.candidate_.key == expected and not norec.recall


def test_without_recall_reuses_the_cross_validation(fitted, split):
    norec = fitted.without_recall(split[0])
    direct = ThresholdTamer(lam=0.9, recall=False).fit(split[0])
    assert norec.candidate_ == direct.candidate_
    assert [c["policy"] for c in norec.cv_scores_] == [c["policy"] for c in direct.cv_scores_]


@pytest.mark.parametrize("policy", ["offset:max_prob:last", "offset:max_prob:ensemble_at_end"])
def test_offset_class_is_one_threshold_on_the_shifted_state(split, policy):
    """The offset rule at ``λ`` stops where ``x_i − δ_i ≥ τ`` (a per-example walk); its frontier
    sweep is the complete sweep of the shifted state, and with the offsets at zero it would be
    the common class's; its calibration area is at least the common class's."""
    from ttamer.earlyexit.thresholds import curve_area

    cal, test = split
    t = ThresholdTamer(lam=0.9, policy=policy).fit(cal)
    delta = t.offsets_
    assert delta.shape == (test.n_exits,) and delta[-1] == 0.0
    tau = t.taus_ - delta[:-1]
    assert np.allclose(tau, tau[0])  # one threshold on the shifted state
    x, answers = t.state_model_.transform(test)
    d = t.decide(test)
    for n in range(0, test.n_examples, 29):
        stop = next((i for i in range(test.n_exits - 1) if x[n, i] - delta[i] >= tau[0]), test.n_exits - 1)
        assert d.last[n] == stop and d.answer[n] == answers[n, stop]
    sweep = t.frontier_sweep(test)
    shifted = tamer_mod.complete_sweep(test, x - delta, answers, "label", "x")
    assert np.array_equal(sweep.last[:-1], shifted.last) and np.array_equal(sweep.answer[:-1], shifted.answer)
    xc, ac = t.state_model_.transform(cal)
    loss = np.take_along_axis(exit_wrong(cal, "label"), ac, axis=1)
    assert curve_area(xc - delta, loss, cal.cumulative_cost) >= curve_area(xc, loss, cal.cumulative_cost) - 1e-12


def test_per_exit_frontier_sweep_holds_every_fitted_budget(split, monkeypatch):
    """The per-exit class is swept along the path through its fitted budget rules: every budget
    rule's test point is matched or beaten by the frontier of the sweep (not thinned here)."""
    monkeypatch.setattr(tamer_mod, "MAX_SWEEP_POINTS", 10**7)
    cal, test = split
    t = ThresholdTamer(policy="per_exit:posterior:posterior").fit(cal)
    budgets, sweep = t.decide_sweep(test), t.frontier_sweep(test)
    front = pareto_frontier(sweep.cost.mean(axis=1), sweep.correct(test).mean(axis=1))
    for c, a in zip(budgets.cost.mean(axis=1), budgets.correct(test).mean(axis=1)):
        reach = front[front[:, 0] <= c + 1e-12, 1]
        assert reach.size and reach.max() >= a - 1e-12


def _assert_menu_is_its_rules(menu, cal):
    """Each of 25 operating points of an SLO menu, applied to the calibration examples, has the
    menu's cost, in-sample accuracy and share of examples differing from the full model."""
    P = len(menu.cost)
    assert menu.cost[-1] == pytest.approx(1.0) and menu.disagreement[-1] == 0.0
    ps = np.unique(np.r_[np.linspace(0, P - 1, 25).round().astype(int), P - 1])
    dec = menu.apply(cal, ps)
    full = cal.predictions[:, -1] == cal.labels
    for k, p in enumerate(ps):
        right = dec[k].correct(cal, "label")
        assert dec[k].cost.mean() / cal.full_cost.mean() == pytest.approx(menu.cost[p])
        assert right.mean() == pytest.approx(menu.in_sample[p])
        assert (right != full).mean() == pytest.approx(menu.disagreement[p])


@pytest.mark.parametrize("policy", ["common:max_prob:last", "offset:max_prob:last", "per_exit:posterior:posterior"])
def test_tamer_points_are_its_rules_on_the_calibration_examples(split, policy):
    """T-Tamer's SLO menu is its rules; a one-threshold common rule is judged in-sample."""
    cal = split[0].subset(np.arange(300))
    t = ThresholdTamer(policy=policy).fit(cal)
    menu = slo_mod.tamer_points(t, cal)
    _assert_menu_is_its_rules(menu, cal)
    if policy.startswith("common"):
        assert np.array_equal(menu.accuracy, menu.in_sample)
    with pytest.raises(TTamerError, match="taus must be an array"):
        t.decide_rules(cal, np.zeros(cal.n_exits - 1))


def test_auto_tamer_menu_keeps_the_simplest_rule_of_its_family():
    """Where cross-validation chose a class other than one max-probability threshold, T-Tamer's
    SLO menu is its class's rules followed by that threshold's (judged as the heuristic's menu),
    and its rules run as each menu's own."""
    from ttamer.earlyexit.tamer import SIMPLEST
    from ttamer.workloads.zoo import load_zoo_trace

    cal = load_zoo_trace("fmnist-vgg11").split(0.5, 0)[0]
    t = ThresholdTamer().fit(cal)
    assert t.candidate_ != SIMPLEST  # this trace's CV picks the offset class
    own = slo_mod.tamer_points(ThresholdTamer(policy=t.candidate_.key).fit(cal), cal)
    mp = slo_mod.heuristic_points(cal, "max-prob")
    menu = slo_mod.tamer_points(t, cal)
    P = len(own.cost) - 1
    assert len(menu.cost) == P + len(mp.cost)
    np.testing.assert_array_equal(menu.cost, np.r_[own.cost[:-1], mp.cost])
    np.testing.assert_array_equal(menu.accuracy[P:], mp.accuracy)
    _assert_menu_is_its_rules(menu, cal)
    ps = np.array([0, P - 1, P, len(menu.cost) - 1])
    got = menu.apply(cal, ps)
    for k, (m, q) in enumerate([(own, 0), (own, P - 1), (mp, 0), (mp, len(mp.cost) - 1)]):
        ref = m.apply(cal, np.array([q]))[0]
        np.testing.assert_array_equal(got[k].last, ref.last)
        np.testing.assert_array_equal(got[k].answer, ref.answer)
    with pytest.raises(TTamerError, match="cannot be united"):
        slo_mod.united(menu, slo_mod.heuristic_points(cal.subset(np.arange(100)), "max-prob"))


@pytest.mark.parametrize("which", ["max-prob", "max-prob-sdn", "patience", "static"])
def test_heuristic_and_static_points_are_their_rules(split, which):
    """The same for a heuristic's menu (every distinct threshold) and the static exits, judged in-sample."""
    cal = split[0].subset(np.arange(300))
    menu = slo_mod.static_points(cal) if which == "static" else slo_mod.heuristic_points(cal, which)
    _assert_menu_is_its_rules(menu, cal)
    assert np.array_equal(menu.accuracy, menu.in_sample)


def test_per_exit_sweep_holds_at_most_max_sweep_cells_decisions(monkeypatch):
    """The per-exit class's complete sweep keeps at most MAX_SWEEP_CELLS / N rules on N test
    examples (plus the full model), so its decisions stay bounded on large traces."""
    from ttamer.earlyexit.traces import synthetic_trace

    cal, test = synthetic_trace(2000, 6, 3, seed=2).split(0.5, 0)
    t = ThresholdTamer(policy="per_exit:max_prob:last", n_lams=21).fit(cal)
    unbounded = len(t.frontier_sweep(test).answer)
    monkeypatch.setattr(tamer_mod, "MAX_SWEEP_CELLS", 15 * test.n_examples)
    dec = t.frontier_sweep(test)
    assert unbounded > 16 >= len(dec.answer) - 1 >= 2


@pytest.mark.parametrize("args, match", [
    ((0.9, 0.01, 1.5, 100), "SLO confidence must be in \\[0.5, 1\\)"),
    ((0.9, 0.01, 0.0, 100), "SLO confidence must be in \\[0.5, 1\\), got 0.0"),
    ((0.9, np.nan, 0.9, 100), "drop must be finite"),
    ((0.9, 0.01, 0.9, -5), "n_test must be >= 1"),
    ((np.nan, 0.01, 0.9, 100), "full_accuracy must be finite"),
])
def test_meets_target_refuses_bad_arguments(split, args, match):
    pts = slo_mod.static_points(split[0])
    with pytest.raises(TTamerError, match=match):
        slo_mod.meets_target(pts, *args)


def test_slo_refuses_what_is_not_a_menu_or_a_tamer(fitted, split):
    cal, test = split
    with pytest.raises(TTamerError, match="SLO confidence must be a number"):
        slo_mod.check_confidence("0.9")
    with pytest.raises(TTamerError, match="tamer must be a fitted ThresholdTamer, got NoneType"):
        slo_mod.tamer_points(None, cal)
    with pytest.raises(TTamerError, match="b must be OperatingPoints"):
        slo_mod.united(slo_mod.static_points(cal), None)
    for tamers, match in (({"x": None}, "tamer must be a fitted"), ([], "tamers must be a dict")):
        with pytest.raises(TTamerError, match=match):
            slo_block(cal, test, tamers)
    with pytest.raises(TTamerError, match="heuristics must be a tuple"):
        slo_block(cal, test, {"ttamer": fitted}, heuristics="max-prob")


def test_meets_target_does_not_trust_a_point_never_seen_to_differ():
    """A cheaper point that agreed with the full model in correctness on every calibration
    example has a paired standard deviation of zero; it must not qualify at the full model's
    accuracy as if certain to agree on new examples (it did at any confidence). The full model
    itself, the last point, always qualifies; a point clearly better than the full model does."""
    n = 400
    pts = slo_mod.OperatingPoints(cost=np.array([0.3, 0.5, 1.0]), in_sample=np.array([0.8, 0.9, 0.8]),
                                  accuracy=np.array([0.8, 0.9, 0.8]), disagreement=np.array([0.0, 0.1, 0.0]),
                                  n=n, apply=lambda trace, ps: None)
    ok = slo_mod.meets_target(pts, 0.8, 0.0, 0.9, n)
    assert ok.tolist() == [False, True, True]
    assert slo_mod.meets_target(pts, 0.8, 0.0, 0.5, n).tolist() == [True, True, True]  # z = 0: the naive rule
