"""Traces (the book's *Formats* page): validation names key and index, save/load round trip, atomic save."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from ttamer.core.errors import TraceError
from ttamer.earlyexit.traces import ExitDecisions, Trace, load_trace, save_trace, synthetic_trace


@pytest.fixture
def trace() -> Trace:
    return synthetic_trace(50, 4, 3, seed=0)


def _with(trace: Trace, **kw) -> Trace:
    d = dict(probs=trace.probs.copy(), labels=trace.labels.copy(), cost=trace.cost.copy(), meta=dict(trace.meta))
    d.update(kw)
    return Trace(**d)


def test_synthetic_is_valid_and_exits_improve(trace):
    assert trace.validate() is trace
    big = synthetic_trace(2000, 5, 4, seed=1)
    acc = big.accuracy()
    assert acc[-1] > acc[0] + 0.1
    assert trace.probs.dtype == np.float32 and trace.labels.dtype == np.int64 and trace.cost.dtype == np.float64


def test_probs_row_sum_error_names_example_and_exit(trace):
    p = trace.probs.copy()
    p[17, 3] *= np.float32(0.97)
    with pytest.raises(TraceError, match=r"key 'probs': example 17, exit 3 sums to 0\.97"):
        _with(trace, probs=p).validate()


@pytest.mark.parametrize("value, match", [(np.nan, "not finite"), (-0.1, "outside"), (1.5, "outside")])
def test_probs_entry_errors(trace, value, match):
    p = trace.probs.copy()
    p[4, 2, 1] = value
    with pytest.raises(TraceError, match=rf"key 'probs': example 4, exit 2, class 1 .*{match}"):
        _with(trace, probs=p).validate()


def test_label_out_of_range(trace):
    lab = trace.labels.copy()
    lab[9] = 3
    with pytest.raises(TraceError, match=r"key 'labels': example 9 has label 3"):
        _with(trace, labels=lab).validate()


def test_cost_errors(trace):
    with pytest.raises(TraceError, match=r"key 'cost': exit 2 is -1"):
        _with(trace, cost=np.array([1.0, 1.0, -1.0, 1.0])).validate()
    c = np.ones((50, 4))
    c[11, 1] = np.inf
    with pytest.raises(TraceError, match=r"key 'cost': example 11, exit 1"):
        _with(trace, cost=c).validate()
    with pytest.raises(TraceError, match=r"key 'cost': shape \(3,\)"):
        _with(trace, cost=np.ones(3)).validate()


def test_shape_and_dtype_errors(trace):
    with pytest.raises(TraceError, match=r"key 'probs': dtype float64"):
        _with(trace, probs=trace.probs.astype(np.float64)).validate()
    with pytest.raises(TraceError, match=r"key 'labels': shape \(49,\)"):
        _with(trace, labels=trace.labels[:49]).validate()
    with pytest.raises(TraceError, match=r"key 'labels': dtype int32"):
        _with(trace, labels=trace.labels.astype(np.int32)).validate()


def test_meta_errors(trace):
    bare = _with(trace, meta={}).validate()  # every descriptive field is optional
    assert bare.exit_names == [f"exit{i}" for i in range(trace.n_exits)]
    with pytest.raises(TraceError, match=r"key 'meta': field 'exit_names'"):
        _with(trace, meta=dict(trace.meta, exit_names=["a", "b"])).validate()
    with pytest.raises(TraceError, match=r"key 'meta': not JSON-serialisable"):
        _with(trace, meta=dict(trace.meta, bad=object())).validate()


def test_round_trip(tmp_path, trace):
    path = tmp_path / "t.npz"
    save_trace(path, trace)
    back = load_trace(path)
    np.testing.assert_array_equal(back.probs, trace.probs)
    np.testing.assert_array_equal(back.labels, trace.labels)
    np.testing.assert_array_equal(back.cost, trace.cost)
    assert back.meta == trace.meta
    per_ex = synthetic_trace(30, 3, 2, seed=2, per_example_cost=True)
    save_trace(path, per_ex)
    assert load_trace(path).cost.shape == (30, 3)


def test_failed_save_does_not_clobber(tmp_path, trace, monkeypatch):
    path = tmp_path / "t.npz"
    save_trace(path, trace)
    before = path.read_bytes()

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", boom)
    with pytest.raises(TraceError, match="disk full") as err:
        save_trace(path, synthetic_trace(10, 4, 3, seed=5))
    assert "t.npz" in str(err.value) and "tmp" not in str(err.value).replace(str(tmp_path), "")
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["t.npz"]  # no temporary left behind
    bad = _with(trace, labels=trace.labels + 5)
    with pytest.raises(TraceError):
        save_trace(path, bad)  # invalid traces are never written
    assert path.read_bytes() == before


def test_load_errors(tmp_path, trace):
    with pytest.raises(TraceError, match="does not exist"):
        load_trace(tmp_path / "missing.npz")
    (tmp_path / "junk.npz").write_text("hello")
    with pytest.raises(TraceError, match="not an .npz archive"):
        load_trace(tmp_path / "junk.npz")
    np.savez(tmp_path / "nokey.npz", probs=trace.probs, labels=trace.labels, meta=np.array("{}"))
    with pytest.raises(TraceError, match=r"missing key\(s\) \['cost'\]"):
        load_trace(tmp_path / "nokey.npz")
    np.savez(tmp_path / "dtype.npz", probs=trace.probs.astype(np.float16), labels=trace.labels,
             cost=trace.cost, meta=np.array(json.dumps(trace.meta)))
    with pytest.raises(TraceError, match=r"dtype\.npz.*key 'probs': dtype float16"):
        load_trace(tmp_path / "dtype.npz")
    np.savez(tmp_path / "meta.npz", probs=trace.probs, labels=trace.labels, cost=trace.cost, meta=np.array("{oops"))
    with pytest.raises(TraceError, match=r"key 'meta' is not valid JSON"):
        load_trace(tmp_path / "meta.npz")


def test_derived_arrays_and_subset(trace):
    assert trace.predictions.shape == (50, 4)
    np.testing.assert_allclose(trace.mean_cost, trace.cost)
    np.testing.assert_allclose(trace.cumulative_cost[:, -1], trace.full_cost)
    sub = trace.subset([3, 1, 4])
    np.testing.assert_array_equal(sub.labels, trace.labels[[3, 1, 4]])
    per_ex = synthetic_trace(20, 3, 2, seed=1, per_example_cost=True)
    np.testing.assert_allclose(per_ex.mean_cost, per_ex.cost.mean(axis=0))
    assert per_ex.subset(np.arange(20) < 5).cost.shape == (5, 3)
    cal, test = trace.split(0.3, seed=1, min_each=10)
    assert cal.n_examples == 15 and test.n_examples == 35
    with pytest.raises(TraceError, match="at least 20"):
        trace.split(0.3, seed=1)  # 15 calibration examples < MIN_SPLIT_EXAMPLES
    with pytest.raises(TraceError):
        trace.subset([50])


def test_exit_decisions_cost_and_correct(trace):
    last = np.array([0, 3] * 25)
    d = ExitDecisions.from_last(trace, last, last)
    np.testing.assert_allclose(d.cost, np.where(last == 0, 1.0, 4.0))
    np.testing.assert_array_equal(d.correct(trace), trace.correct[np.arange(50), last])
    np.testing.assert_array_equal(d.consulted(4).sum(axis=1), d.n_consulted)
    assert d.correct(trace, "final")[1]  # answering with the last exit always agrees with it
