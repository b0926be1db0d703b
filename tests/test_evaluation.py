"""Frontiers and metrics (the book's chapter *Early exit on real models*) on hand-made points, and evaluate_trace end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from ttamer.earlyexit.evaluation import (STRATEGIES, accuracy_at, bootstrap_band, cost_at_accuracy, dominates,
                                         evaluate_trace, frontier_auc, strategy_metrics)
from ttamer.earlyexit.metrics import pareto_frontier
from ttamer.earlyexit.traces import synthetic_trace
from ttamer.core.errors import TTamerError


def test_pareto_frontier_hand_made():
    cost = [0.5, 0.2, 0.2, 0.8, 0.6, 1.0]
    acc = [0.7, 0.5, 0.6, 0.65, 0.9, 0.9]
    f = pareto_frontier(cost, acc)
    np.testing.assert_allclose(f, [[0.2, 0.6], [0.5, 0.7], [0.6, 0.9]])


def test_accuracy_at_auc_and_cost_at_accuracy():
    f = np.array([[0.2, 0.6], [0.5, 0.7], [0.6, 0.9]])
    np.testing.assert_allclose(accuracy_at(f, [0.1, 0.2, 0.3, 0.5, 0.99]), [np.nan, 0.6, 0.6, 0.7, 0.9])
    # ∫_0.2^1 = 0.3*0.6 + 0.1*0.7 + 0.4*0.9 = 0.61 over a width of 0.8
    assert frontier_auc(f, 0.2, 1.0) == pytest.approx(0.61 / 0.8)
    # below the first point counts 0: ∫_0^1 = 0.61
    assert frontier_auc(f, 0.0, 1.0) == pytest.approx(0.61)
    assert frontier_auc(f, 0.3, 0.55) == pytest.approx((0.2 * 0.6 + 0.05 * 0.7) / 0.25)
    assert cost_at_accuracy(f, 0.65) == pytest.approx(0.5)
    assert cost_at_accuracy(f, 0.9) == pytest.approx(0.6)
    assert cost_at_accuracy(f, 0.95) is None


def test_strategy_metrics_hand_made():
    f = np.array([[0.2, 0.6], [0.5, 0.79], [0.6, 0.80]])
    m = strategy_metrics(f, full_accuracy=0.8, cost_range=(0.2, 1.0), oracle_saving=0.8)
    assert m["cost_at_full_accuracy"] == pytest.approx(0.6)
    assert m["cost_at_full_accuracy_minus_0.5pt"] == pytest.approx(0.6)
    assert m["cost_at_full_accuracy_minus_1pt"] == pytest.approx(0.5)
    assert m["cost_saved_at_full_accuracy"] == pytest.approx(0.4)
    assert m["oracle_gain_share"] == pytest.approx(0.5)
    assert m["accuracy_at_cost"] == {"0.25": 0.6, "0.5": 0.79, "0.75": 0.8}
    never = strategy_metrics(f, full_accuracy=0.95, cost_range=(0.2, 1.0), oracle_saving=0.8)
    assert never["cost_at_full_accuracy"] is None and never["oracle_gain_share"] is None


def test_bootstrap_band_contains_point_estimate():
    rng = np.random.default_rng(0)
    n = 400
    correct = np.stack([rng.random(n) < 0.6, rng.random(n) < 0.8])
    cost = np.stack([np.full(n, 0.3), np.full(n, 0.9)])
    grid = np.array([0.1, 0.5, 1.0])
    lo, hi = bootstrap_band(correct, cost, grid, n_boot=300, seed=1)
    assert np.isnan(lo[0]) and np.isnan(hi[0])
    assert lo[1] <= correct[0].mean() <= hi[1] and lo[2] <= correct[1].mean() <= hi[2]
    assert 0.02 < hi[1] - lo[1] < 0.15  # about ±1.96·sqrt(.24/400) ≈ ±0.048


@pytest.fixture(scope="module")
def result():
    t = synthetic_trace(800, 5, 3, seed=11)
    return evaluate_trace(t, seed=0, n_boot=50, tamer={"cv_lams": np.linspace(0.5, 0.99, 6)})


def test_evaluate_trace_schema(result):
    json.dumps(result.to_dict(), allow_nan=False)
    assert set(result.strategies) == set(STRATEGIES)
    assert 0 < result.full_model.accuracy <= 1
    assert result.split.n_calibration == 400 and result.split.n_test == 400
    for name, m in result.strategies.items():
        f = np.asarray(m.frontier)
        assert f.ndim == 2 and f.shape[1] == 2
        assert np.all(np.diff(f[:, 0]) >= 0) and np.all(np.diff(f[:, 1]) > 0)
        assert 0 <= m.auc <= 1
        assert m.cost_at_full_accuracy is None or 0 < m.cost_at_full_accuracy <= 1 + 1e-9
        assert len(m.band.lower) == len(m.band.cost)
        assert len(m.auc_ci) == 2 and len(m.auc_minus_ttamer_ci) == 3


def test_evaluate_trace_sanity(result):
    s = result.strategies
    full = result.full_model.accuracy
    # static exits reach the full model at cost 1; the oracle is the best frontier
    assert s["static"].cost_at_full_accuracy == pytest.approx(1.0)
    assert s["oracle"].auc >= max(m.auc for m in s.values()) - 1e-12
    assert s["oracle"].oracle_gain_share == pytest.approx(1.0)
    assert max(a for _, a in s["oracle"].frontier) >= full
    assert dominates(result, "oracle", "static")


def test_hull_frontier_hand_made():
    from ttamer.earlyexit.evaluation import frontier, hull_frontier

    cost = [0.2, 0.3, 0.5, 0.6, 1.0]
    acc = [0.6, 0.62, 0.8, 0.81, 0.9]
    h = hull_frontier(cost, acc)
    np.testing.assert_allclose(h, [[0.2, 0.6], [0.5, 0.8], [1.0, 0.9]])  # (0.3, .62) and (0.6, .81) under the hull
    np.testing.assert_allclose(accuracy_at(h, [0.1, 0.35, 0.75, 2.0], "hull"), [np.nan, 0.7, 0.85, 0.9])
    # ∫_0.2^1 of the envelope = 0.3*(0.6+0.8)/2 + 0.5*(0.8+0.9)/2 = 0.635
    assert frontier_auc(h, 0.2, 1.0, "hull") == pytest.approx(0.635 / 0.8)
    assert cost_at_accuracy(h, 0.7, "hull") == pytest.approx(0.35)
    assert cost_at_accuracy(h, 0.95, "hull") is None
    assert frontier_auc(h, 0.2, 1.0, "hull") >= frontier_auc(frontier(cost, acc), 0.2, 1.0)
    with pytest.raises(ValueError, match="kind"):
        frontier(cost, acc, "nope")


def _markov_trace(n: int, n_exits: int, k: int, seed: int):
    """Examples whose exit states follow a Markov chain and whose correctness depends only on
    the current state -- the model T-Tamer assumes. The max-probability reveals the state."""
    from ttamer.earlyexit.traces import Trace

    rng = np.random.default_rng(seed)
    levels = np.linspace(0.6, 0.95, k)
    P = [0.5 * np.eye(k) + 0.5 * rng.dirichlet(np.ones(k), size=k) for _ in range(n_exits - 1)]
    q = rng.uniform(0.5, 1.0, (n_exits, k))  # P(right | state), not monotone in depth or state
    s = np.empty((n, n_exits), dtype=int)
    s[:, 0] = rng.choice(k, n, p=rng.dirichlet(2 * np.ones(k)))
    for i in range(1, n_exits):
        cdf = np.cumsum(P[i - 1][s[:, i - 1]], axis=1)
        s[:, i] = np.minimum((rng.random(n)[:, None] > cdf).sum(axis=1), k - 1)
    y = rng.integers(0, 2, n)
    right = rng.random((n, n_exits)) < q[np.arange(n_exits)[None, :], s]
    pred = np.where(right, y[:, None], 1 - y[:, None])
    mp = levels[s] + rng.uniform(-0.02, 0.02, (n, n_exits))
    probs = np.stack([np.where(pred == 0, mp, 1 - mp), np.where(pred == 0, 1 - mp, mp)], axis=2)
    return Trace.build(probs, y, np.ones(n_exits), model="markov", dataset=f"markov({seed})")


@pytest.mark.parametrize("seed", [1, 2])
def test_ttamer_wins_on_markov_traces(seed):
    """On data that satisfies T-Tamer's model, its held-out frontier beats every heuristic and
    recall beats no recall (area under the frontier; the hull fills the policies' jumps)."""
    t = _markov_trace(4000, 4, 3, seed)
    r = evaluate_trace(t, seed=0, n_boot=0, frontier_kind="hull", estimation="chain",
                       tamer={"K": 9, "feature": "max_prob", "agreement": 0, "loss": "label"})
    s = r.strategies
    for name in ("no-recall", "max-prob", "max-prob-sdn", "entropy", "patience", "static"):
        assert s["ttamer"].auc > s[name].auc, name
    for name in ("max-prob", "entropy", "static"):
        assert dominates(r, "ttamer", name, tol=0.01), name


def test_markov_violation_small_on_markov_data_large_otherwise():
    from ttamer.earlyexit.evaluation import markov_violation

    rng = np.random.default_rng(0)
    n = 6000
    t = _markov_trace(n, 4, 3, seed=1)
    s = np.searchsorted([0.7, 0.85], t.max_prob)  # recovers the chain's state (levels 0.6, 0.775, 0.95)
    wrong = (~t.correct).astype(float)
    mv = markov_violation(t, s, wrong)
    assert len(mv) == 3 and np.isnan(mv[0]["transition_tv"])
    assert max(r["loss_gap_next"] for r in mv) < 0.03
    assert max(r["transition_tv"] for r in mv[1:]) < 0.03
    # a later state that reveals the earlier exit's error: maximal violation of the recall rule
    s2 = rng.integers(0, 3, (n, 3))
    w2 = np.zeros((n, 3))
    w2[:, 0] = s2[:, 1] == 0
    assert markov_violation(t, s2, w2)[0]["loss_gap_next"] > 0.3


def test_ablation_table():
    import pandas as pd

    from ttamer.earlyexit.evaluation import HEURISTICS, ablation

    t = synthetic_trace(600, 4, 3, seed=2)
    cfgs = [{"name": "index", "estimation": "chain",
             "tamer": {"K": 4, "feature": "max_prob", "agreement": 1, "loss": "label", "answer": "index"}},
            {"name": "pairwise hull", "tamer": {"K": 4, "feature": "max_prob", "agreement": 1, "loss": "label"},
             "frontier_kind": "hull", "calibration_fraction": 0.4}]
    rows = ablation(t, cfgs, seed=0, n_boot=20)
    df = pd.DataFrame(rows)
    assert list(df["name"]) == ["index", "pairwise hull"]
    for h in HEURISTICS:
        assert {f"auc_gap[{h}]", f"auc_gap_lo[{h}]", f"auc_gap_hi[{h}]", f"dominates[{h}]"} <= set(df.columns)
        assert np.all(df[f"auc_gap_lo[{h}]"] <= df[f"auc_gap[{h}]"] + 0.05)
    assert list(df["frontier_kind"]) == ["pareto", "hull"] and df["calibration_fraction"][1] == 0.4
    assert list(df["estimation"]) == ["chain", "thresholds"]
    with pytest.raises(ValueError, match="unknown keys"):
        ablation(t, [{"name": "x", "bogus": 1}])


def test_markov_diagnostics_null_is_markov():
    from ttamer.earlyexit.features import StateSpec
    from ttamer.earlyexit.evaluation import markov_diagnostics, markov_resample, markov_violation

    t = synthetic_trace(3000, 4, 3, seed=5)
    rows = markov_diagnostics(t, StateSpec(K=4, agreement=1), loss="final")
    assert [r["exit"] for r in rows] == [1, 2, 3]
    assert all(r["null_loss_gap_next"] >= 0 for r in rows)
    # a Markov resample of a strongly non-Markov sample has a small violation
    rng = np.random.default_rng(0)
    s = rng.integers(0, 3, (4000, 3))
    w = np.zeros((4000, 3))
    w[:, 0] = s[:, 1] == 0
    s2, w2 = markov_resample(s, w, seed=1)
    assert s2.shape == s.shape and set(np.unique(s2)) <= {0, 1, 2}
    assert markov_violation(t, s, w)[0]["loss_gap_next"] > 0.3
    assert markov_violation(t, s2, w2)[0]["loss_gap_next"] < 0.05


def test_evaluate_trace_rejects_a_single_exit():
    from ttamer.core.errors import TraceError

    with pytest.raises(TraceError, match="at least 2 exits"):
        evaluate_trace(synthetic_trace(200, 1, 3, seed=3), n_boot=0)


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 10**6), P=st.integers(1, 40), n=st.integers(1, 60), nested=st.booleans())
def test_weighted_sums_equal_the_dense_product(seed, P, n, nested):
    """Sparse differences along the sweep (nested rules) or the direct product: the same sums."""
    from ttamer.earlyexit.evaluation import bootstrap_weights, weighted_sums

    rng = np.random.default_rng(seed)
    if nested:
        values = (rng.random(n)[None, :] >= np.sort(rng.random(P))[:, None]).astype(np.float32)
    else:
        values = rng.random((P, n))
    counts = bootstrap_weights(n, 7, seed)
    np.testing.assert_allclose(weighted_sums(counts, values), counts.astype(float) @ values.T.astype(float),
                               rtol=1e-12, atol=1e-9)


def test_bootstrap_in_chunks_is_the_bootstrap_of_one_draw(monkeypatch):
    """The replicates drawn and resampled chunk by chunk (bounded memory) are those of one draw
    of all of them: every band, interval and replicate is the same to the last bit."""
    from ttamer.earlyexit import evaluation

    trace = synthetic_trace(n=300, n_exits=4, n_classes=3, seed=5)
    kw = dict(n_boot=23, with_chain=False, keep_replicates=True)
    whole = evaluation.evaluate_trace(trace, **kw).to_dict()
    monkeypatch.setattr(evaluation, "BOOTSTRAP_CHUNK_CELLS", 150 * 5)  # 5 replicates per chunk
    chunked = evaluation.evaluate_trace(trace, **kw).to_dict()
    for d in (whole, chunked):
        d.pop("timing", None)
    assert json.dumps(chunked, sort_keys=True) == json.dumps(whole, sort_keys=True)


def test_bootstrap_size_is_bounded_before_work(monkeypatch, capsys, tmp_path):
    from ttamer.cli import main
    from ttamer.earlyexit import evaluation
    from ttamer.earlyexit.traces import save_trace

    trace = synthetic_trace(n=200, n_exits=3, n_classes=3, seed=1)
    monkeypatch.setattr(evaluation, "MAX_BOOTSTRAP_DRAWS", 100 * 50)
    monkeypatch.setattr(evaluation, "fit_tamers", lambda *a, **k: pytest.fail("fitted before the check"))
    with pytest.raises(evaluation.TTamerError, match=r"n_boot 51 replicates of 100 test examples .* at most 50"):
        evaluation.evaluate_trace(trace, n_boot=51)
    path = tmp_path / "t.npz"
    save_trace(path, trace)
    assert main(["evaluate", str(path), "--bootstrap", "51"]) == 2
    assert "--bootstrap 51 replicates" in capsys.readouterr().err


def test_every_sweep_of_evaluate_is_bounded_by_max_sweep_cells(monkeypatch):
    """With MAX_SWEEP_CELLS at 8 decisions per test example, no strategy's sweep (T-Tamer's
    classes, the paper's chain, the heuristics, the oracle) keeps more than a few points more."""
    from ttamer.earlyexit import crossval, evaluation, heuristics, tamer

    trace = synthetic_trace(n=600, n_exits=5, n_classes=3, seed=3)
    free = evaluation.evaluate_trace(trace, n_boot=0)
    n_test = free.split.n_test
    for module in (crossval, heuristics, tamer):
        monkeypatch.setattr(module, "MAX_SWEEP_CELLS", 8 * n_test)
    capped = evaluation.evaluate_trace(trace, n_boot=0)
    for name, m in capped.strategies.items():
        assert len(m.points) <= 8 + 2, name
    assert max(len(m.points) for m in free.strategies.values()) > 10


def test_evaluation_bytes_bounds_the_measured_peak():
    """The memory estimate grows with examples, exits and classes, and stays above the peaks
    measured with ``ttamer evaluate`` (resident set, MB) on synthetic traces."""
    from ttamer.earlyexit.evaluation import evaluation_bytes

    measured = {(1000, 12, 2): 224, (5000, 12, 2): 413, (10_000, 12, 2): 614, (20_000, 12, 2): 946,
                (20_000, 3, 2): 984, (20_000, 12, 10): 1176, (40_000, 12, 2): 1237, (60_000, 12, 2): 1286,
                (100_000, 12, 2): 1475, (100_000, 12, 50): 2436, (100_000, 3, 2): 1414, (200_000, 3, 2): 1811,
                (400_000, 12, 2): 2210, (400_000, 3, 2): 1887, (1_000_000, 12, 2): 3800,
                (2000, 12, 1000): 878, (10_000, 12, 200): 1040}
    for (n, L, K), mb in measured.items():
        assert evaluation_bytes(n, L, K) >= mb * 2**20
    assert evaluation_bytes(2000, 6, 2) < evaluation_bytes(4000, 6, 2) < evaluation_bytes(4000, 7, 2) \
        < evaluation_bytes(4000, 7, 3)


def test_memory_check_lets_small_work_run(monkeypatch):
    """Below ``EVALUATE_FREE_BYTES`` an evaluation runs whatever the free memory; where the
    system does not tell the free memory, nothing is refused."""
    import ttamer.earlyexit.evaluation as ev

    small = synthetic_trace(200, 3, 2, seed=0)
    assert ev.check_evaluation_memory(small, available=1) == ev.evaluation_bytes(200, 3, 2)
    monkeypatch.setattr(ev, "available_memory", lambda: None)
    monkeypatch.setattr(ev, "EVALUATE_FREE_BYTES", 0)
    assert ev.check_evaluation_memory(small) > 0
    with pytest.raises(TTamerError, match="free some memory"):
        ev.check_evaluation_memory(small, available=1)


def test_evaluate_trace_refuses_before_any_work_what_it_cannot_do():
    """Not a trace, too many exits (the work grows with their square), options that are not
    the estimator's, flags that are not flags: one clear error each, before any fitting."""
    from ttamer.core.errors import TraceError, TTamerError
    from ttamer.earlyexit.base import MAX_EXITS

    small = synthetic_trace(200, 3, 2, seed=3)
    with pytest.raises(TTamerError, match="evaluate_trace expects a ttamer Trace .*got NoneType"):
        evaluate_trace(None)
    many = synthetic_trace(40, MAX_EXITS + 1, 2, seed=3)
    with pytest.raises(TraceError, match=f"{MAX_EXITS + 1} exits; evaluate_trace handles at most {MAX_EXITS}"):
        evaluate_trace(many, n_boot=0)
    with pytest.raises(TTamerError, match="thresholds: ThresholdTamer has no option 'junk'.*cv_folds"):
        evaluate_trace(small, n_boot=0, thresholds={"junk": 1})
    with pytest.raises(TTamerError, match="no option 'recall'"):
        evaluate_trace(small, n_boot=0, thresholds={"recall": False})
    with pytest.raises(TTamerError, match="tamer must be a dict of EarlyExitTamer options, got int"):
        evaluate_trace(small, n_boot=0, tamer=3)
    with pytest.raises(TTamerError, match="progress must be True or False"):
        evaluate_trace(small, n_boot=0, progress="yes")
