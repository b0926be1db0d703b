"""T-Tamer with skips on a chain of separate models (the book's chapter *Skipping models in a cascade*).

The backward induction's claimed calibration value is the rule's realised in-sample trade-off;
with a saturated state (one example per bin) it equals a brute-force search over every
per-state action table; the skip rule is never worse in-sample than its sequential
restriction; the estimator follows the scikit-learn contract and names the field or model at
fault on bad input. The shipped Fashion-MNIST chain loads with its provenance, and (``slow``)
regenerating it reproduces the file.
"""

from __future__ import annotations

import importlib.util
import itertools

import numpy as np
import pytest

from ttamer.earlyexit.traces import ExitDecisions, Trace
from ttamer.earlyexit import skips as S
from ttamer.core.errors import TTamerError
from ttamer.workloads import skipchain

from rebuilt import assert_rebuilt

LAMS = np.array([0.3, 0.6, 0.8, 0.9, 0.95, 0.99])


def random_chain(n_examples: int = 300, n_models: int = 3, seed: int = 0, costs=(1.0, 5.0, 30.0)) -> Trace:
    """Random softmax outputs, later models more often right (labels drawn to agree more)."""
    rng = np.random.default_rng(seed)
    C = 4
    y = rng.integers(0, C, n_examples)
    logits = rng.normal(size=(n_examples, n_models, C)) * 1.5
    logits[np.arange(n_examples), :, y] += np.linspace(0.5, 2.5, n_models)[None, :]
    p = np.exp(logits)
    p /= p.sum(axis=2, keepdims=True)
    names = [f"m{v}" for v in range(n_models)]
    return Trace.build(p, y, np.asarray(costs[:n_models], dtype=float),
                       {"model": "random chain", "dataset": "random", "exit_names": names})


@pytest.fixture(scope="module")
def shipped() -> Trace:
    return skipchain.load_skip_chain()


# --------------------------------------------------------------------------- claimed = realised
@pytest.mark.parametrize("regions", S.REGIONS)
@pytest.mark.parametrize("feature", S.FEATURES)
@pytest.mark.parametrize("answer", S.ANSWERS)
@pytest.mark.parametrize("skips", [True, False])
def test_claimed_value_is_in_sample_tradeoff(regions, feature, answer, skips):
    ct = random_chain(seed=1)
    tm = S.SkipTamer(regions=regions, K=5, feature=feature, answer=answer, skips=skips, lams=LAMS).fit(ct)
    d = tm.decide_sweep(ct)
    np.testing.assert_allclose(S.tradeoff(d, ct, tm.lams_, tm.scale_), tm.value_, atol=1e-12)
    one = tm.decide(ct)
    r = int(np.flatnonzero(tm.lams_ == tm.lam)[0])
    np.testing.assert_array_equal(one.answer, d.answer[r])
    np.testing.assert_allclose(one.cost, d.cost[r])


def test_claimed_value_on_shipped_chain(shipped):
    cal, _ = shipped.split(0.5, seed=3)
    tm = S.SkipTamer(K=8).fit(cal)
    np.testing.assert_allclose(S.tradeoff(tm.decide_sweep(cal), cal, tm.lams_, tm.scale_), tm.value_, atol=1e-12)


def test_route_cost_is_sum_of_consulted_costs():
    ct = random_chain(seed=2)
    d = S.SkipTamer(K=4, lams=LAMS).fit(ct).decide_sweep(ct)
    np.testing.assert_allclose(d.cost, (d.consulted * ct.cost_matrix[None]).sum(axis=2))
    assert d.consulted[np.arange(d.answer.shape[0])[:, None], np.arange(ct.n_examples)[None, :], d.answer].all()
    assert isinstance(d, ExitDecisions)
    np.testing.assert_array_equal(d.last, [[np.flatnonzero(c).max() for c in row] for row in d.consulted])


# --------------------------------------------------------------------------- brute force
def _simulate(mp, ok, cost, lam, start, table, feature, answer):
    """Independent per-example simulation of one rule (plain Python)."""
    total = 0.0
    N, n = mp.shape
    for e in range(N):
        consulted, paid = [start], cost[e, start]
        while True:
            h = sum(1 << v for v in consulted)
            x = mp[e, consulted[-1]] if feature == "max_prob" else max(mp[e, v] for v in consulted)
            a = table[(h, x)]
            if a == S.STOP:
                if answer == "last":
                    who = consulted[-1]
                else:
                    who = max(consulted[::-1], key=lambda v: mp[e, v])
                total += lam * (not ok[e, who]) + (1 - lam) * paid
                break
            consulted.append(a)
            paid += cost[e, a]
    return total / N


@pytest.mark.parametrize("sequential", [False, True])
@pytest.mark.parametrize("answer", S.ANSWERS)
def test_saturated_induction_equals_brute_force(sequential, answer):
    ct = random_chain(n_examples=3, seed=4)
    mp, ok = ct.max_prob, ct.correct
    cost = ct.cost_matrix / ct.cost_matrix[:, -1].mean()
    n = ct.n_exits
    cells = [(h, x) for h in S.masks(n) for x in sorted(set(S.set_feature(mp, h, "best").tolist()))]
    for lam in (0.5, 0.9, 0.97):
        start, actions, edges, values = S.backward_skip_rule(mp, ok, cost, np.array([lam]), K=64, feature="best",
                                                             answer=answer, sequential=sequential, regions="bins")
        for h in S.masks(n):  # saturated: every example alone in its bin
            b = S.region_of(S.set_feature(mp, h, "best"), edges[h])[0]
            assert len(set(b.tolist())) == len(b)
        options = [S.moves(h, n, sequential) for h, _ in cells]
        starts = [0] if sequential else list(range(n))
        best = np.inf
        for s in starts:
            for acts in itertools.product(*options):
                best = min(best, _simulate(mp, ok, cost, lam, s, dict(zip(cells, acts)), "best", answer))
        assert values.mean() == pytest.approx(best, abs=1e-12)


@pytest.mark.parametrize("seed", range(6))
def test_threshold_regions_equal_brute_force_over_cuts(seed):
    rng = np.random.default_rng(seed)
    N, A, P = 7, 3, 2
    x = np.round(rng.random(N), 1)  # ties: cuts only between distinct values
    Q = rng.normal(size=(A, P, N))
    taus = S.threshold_regions(x, Q)
    got = np.take_along_axis(Q, S.region_of(x, taus)[None], axis=0)[0].sum(axis=1)
    cuts = np.r_[-np.inf, np.unique(x)[1:], np.inf]
    for p in range(P):
        best = min(Q[np.searchsorted(np.array(t), x, side="right"), p, np.arange(N)].sum()
                   for t in itertools.combinations_with_replacement(cuts, A - 1))
        assert got[p] == pytest.approx(best, abs=1e-12)
    assert np.all(taus[:, 1:] >= taus[:, :-1])


# --------------------------------------------------------------------------- skips help in-sample
@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("regions, K", [("bins", 1), ("bins", 3), ("bins", 8), ("thresholds", 8)])
def test_skips_never_worse_in_sample(seed, regions, K):
    ct = random_chain(n_examples=400, seed=10 + seed, costs=(1.0, 12.0, 30.0))
    with_skips = S.SkipTamer(regions=regions, K=K, lams=LAMS).fit(ct)
    without = S.SkipTamer(regions=regions, K=K, lams=LAMS, skips=False).fit(ct)
    assert np.all(with_skips.value_ <= without.value_ + 1e-12)
    assert np.all(without.uses_skips_ == 0)
    realised = S.tradeoff(with_skips.decide_sweep(ct), ct, with_skips.lams_, with_skips.scale_)
    assert np.all(realised <= S.tradeoff(without.decide_sweep(ct), ct, without.lams_, without.scale_) + 1e-12)


def test_sequential_rule_never_skips():
    ct = random_chain(seed=5)
    d = S.SkipTamer(K=4, lams=LAMS, skips=False).fit(ct).decide_sweep(ct)
    c = d.consulted
    # consulted models form a prefix 0..k
    assert np.all(c[..., 0]) and np.all(c[..., 1:] <= c[..., :-1])


# --------------------------------------------------------------------------- baselines and the exact DP
def test_baselines_on_shipped_chain(shipped):
    cal, te = shipped.split(0.5, seed=0)
    routes = S.fixed_routes(te)
    assert len(routes) == 2 ** shipped.n_exits - 1
    assert routes["linear→cnn"].cost.mean() == pytest.approx(te.cost_matrix[:, [0, 2]].sum(axis=1).mean())
    th = S.sequential_threshold(te)
    assert th.consulted is None  # no skips: the models consulted are 0..last
    np.testing.assert_allclose(th.cost, (th.consulted_mask(3) * te.cost_matrix[None]).sum(axis=2))
    cost, acc = th.points(te)
    assert acc.max() >= te.correct[:, -1].mean() - 1e-12  # the sweep includes "never stop early"
    assert cost.max() <= te.cost_matrix.sum(axis=1).mean() + 1e-12
    best = S.best_route(routes, te, 1.0)["best fixed route"]
    assert "linear" in best.routes and best.is_sweep
    lams = np.array([0.5, 0.9, 0.99])
    ex = S.exact_skip_decisions(cal, te, lams, K=6)
    assert ex.answer.shape == (3, te.n_examples)
    np.testing.assert_allclose(ex.cost, (ex.consulted * te.cost_matrix[None]).sum(axis=2))
    seq = S.exact_skip_decisions(cal, te, lams, K=6, skips=False)
    assert np.all(seq.consulted[..., 0])


def test_exact_instance_has_every_skip(shipped):
    inst, edges, scale = S.skip_chain_instance(shipped, K=4)
    n = shipped.n_exits + 1
    assert len(inst.skips) == sum(max(0, n - i - 2) for i in range(n))
    assert scale == pytest.approx(shipped.mean_cost[-1])
    assert [len(e) for e in edges] == [3] * shipped.n_exits


def test_bootstrap_metrics_paired(shipped):
    _, te = shipped.split(0.5, seed=0)
    decs = {"threshold": S.sequential_threshold(te), **S.best_route(S.fixed_routes(te), te, 1.0)}
    scale = te.mean_cost[-1]
    out = S.bootstrap_metrics(decs, te, scale, lo=0.05, n_boot=20, gaps=(0.0, 0.01))
    assert out["threshold"]["auc"].shape == (21,) and out["threshold"]["cost_at_ref"].shape == (2, 21)
    assert np.isfinite(out["threshold"]["cost_at_ref"][0, 0])
    assert out["threshold"]["cost_at_ref"][1, 0] <= out["threshold"]["cost_at_ref"][0, 0]
    np.testing.assert_allclose(out["best fixed route"]["cost_at_ref"][0], 1.0)  # only the cnn reaches the cnn


# --------------------------------------------------------------------------- contract
def test_contract_params_and_clone():
    tm = S.SkipTamer(lam=0.9, K=3, feature="best")
    assert tm.get_params() == {"lam": 0.9, "regions": "thresholds", "K": 3, "feature": "best", "answer": "last",
                               "skips": True, "lams": None, "scale": None}
    assert tm.set_params(K=5) is tm and tm.K == 5
    with pytest.raises(TTamerError, match="no parameter 'Kk'"):
        tm.set_params(Kk=1)
    with pytest.raises(TTamerError, match="not fitted"):
        tm.decide(random_chain())
    if importlib.util.find_spec("sklearn") is not None:
        from sklearn.base import clone

        c = clone(tm)
        assert c.get_params() == tm.get_params() and c is not tm
    tm.fit(random_chain())
    learned = {k for k in vars(tm) if k not in tm.get_params()}
    assert learned and all(k.endswith("_") for k in learned)
    assert "start ->" in tm.describe()


# --------------------------------------------------------------------------- errors
@pytest.mark.parametrize("params, match", [
    ({"K": 0}, "K must be a positive integer"),
    ({"regions": "trees"}, "regions must be one of"),
    ({"K": True}, "K must be a positive integer"),
    ({"feature": "entropy"}, "feature must be one of"),
    ({"answer": "vote"}, "answer must be one of"),
    ({"lam": 1.5}, "lam"),
    ({"skips": "yes"}, "skips must be True or False"),
    ({"lams": []}, "lams must be a non-empty"),
    ({"lams": [0.5, 2.0]}, r"lams\[1\]"),
    ({"scale": -1.0}, "scale"),
])
def test_bad_params_named(params, match):
    with pytest.raises(TTamerError, match=match):
        S.SkipTamer(**params).fit(random_chain())


def test_bad_traces_named():
    with pytest.raises(TTamerError, match="expected a Trace"):
        S.SkipTamer().fit("trace.npz")
    ct = random_chain()
    tree = Trace.build(ct.probs, ct.labels, ct.cost, {"model": "tree", "dataset": "random",
                                                      "exit_names": ["m0", "m1", "m2"]}, parents=[None, "m0", "m0"])
    with pytest.raises(TTamerError, match="model 'm2' has parent 'm0'; a chain needs 'm1'"):
        S.SkipTamer().fit(tree)
    one = Trace.build(ct.probs[:, :1], ct.labels, ct.cost[:1], {"model": "one", "dataset": "random",
                                                                 "exit_names": ["m0"]})
    with pytest.raises(TTamerError, match="at least 2 models"):
        S.SkipTamer().fit(one)
    tm = S.SkipTamer(lams=LAMS).fit(ct)
    other = Trace.build(ct.probs, ct.labels, ct.cost, {"model": "x", "dataset": "random",
                                                       "exit_names": ["a", "b", "c"]})
    with pytest.raises(TTamerError, match="differ from the fitted ones"):
        tm.decide(other)
    with pytest.raises(TTamerError, match="not in the fitted sweep"):
        tm.decide_sweep(ct, [0.123])


# --------------------------------------------------------------------------- the shipped chain
def test_shipped_chain_provenance(shipped):
    assert shipped.exit_names == ["linear", "mlp", "cnn"]
    assert shipped.n_examples == 6000 and shipped.n_classes == 10
    m = shipped.meta
    assert m["cost_unit"] == "mmacs" and m["macs"] == [7840, 38112, 231672]
    ratio = shipped.cost / shipped.cost[0]
    assert ratio[1] == pytest.approx(38112 / 7840) and ratio[2] == pytest.approx(231672 / 7840)
    acc = shipped.correct.mean(axis=0)
    assert np.all(np.diff(acc) > 0) and acc[0] > 0.75  # bigger models are more accurate
    assert len(m["data_source"]["head_indices"]) == 30000 and m["data_source"]["head_split"] == "train"
    assert m["data_source"]["trace_split"] == "test"
    assert "write_skip_chain" in m["regenerate"]
    assert skipchain.SKIP_CHAIN_PATH.stat().st_size < 1_000_000


@pytest.mark.slow
def test_regenerating_reproduces_shipped_chain(shipped):
    pytest.importorskip("torch")
    if not (skipchain.vision_dir() / "t10k-images-idx3-ubyte.gz").exists():
        pytest.skip("Debian's dataset-fashion-mnist is not installed")
    assert_rebuilt(skipchain.build_skip_chain(seed=0), shipped, atol=1e-4)


@pytest.mark.parametrize("call, match", [
    (lambda c, t: S.SkipTamer(K=10**9, regions="bins").fit(c), "K must be <= 1000"),
    (lambda c, t: S.SkipTamer(lams=np.linspace(0.01, 0.99, 10**6)).fit(c), "at most 2,000"),
    (lambda c, t: S.SkipTamer(lams=["a"]).fit(c), "lams must be a non-empty"),
    (lambda c, t: S.skip_chain_instance(c, K=10**6), "K must be <= 1000"),
    (lambda c, t: S.skip_chain_instance(c, K=0), "K must be >= 1"),
    (lambda c, t: S.skip_chain_instance(c, K=1.5), "K must be an integer"),
    (lambda c, t: S.skip_chain_instance(c, scale=0.0), "scale must be > 0"),
    (lambda c, t: S.exact_skip_decisions(c, t, []), "lams must be a non-empty"),
    (lambda c, t: S.sequential_threshold(c, t, max_points=0), "max_points must be >= 2"),
    (lambda c, t: S.sequential_threshold(c, t, max_points=1.5), "max_points must be an integer"),
    (lambda c, t: S.sequential_threshold(c, t, max_points=10**9), "max_points must be <= 2000"),
    (lambda c, t: S.tradeoff(S.fixed_routes(t)["m2"], t, 0.5, 0), "scale must be > 0"),
    (lambda c, t: S.tradeoff(S.fixed_routes(t)["m2"], t, [0.5, 0.6], 1.0), "lams has 2 values"),
])
def test_bad_sizes_and_arguments_are_named_before_work(call, match):
    cal, test = random_chain(seed=5).split(0.5, seed=1)
    with pytest.raises(TTamerError, match=match):
        call(cal, test)


def test_decide_sweep_and_describe_refuse_bad_lams():
    cal, test = random_chain(seed=6).split(0.5, seed=1)
    tm = S.SkipTamer(lams=[0.5, 0.9]).fit(cal)
    for bad in ("x", [], [np.nan], [[0.5]]):
        with pytest.raises(TTamerError, match="lams"):
            tm.decide_sweep(test, bad)
    with pytest.raises(TTamerError, match="lam must be in"):
        tm.describe(np.nan)
    assert tm.decide_sweep(test, np.array([0.9])).params.tolist() == [0.9]
