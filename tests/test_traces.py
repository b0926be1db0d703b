"""Traces (the book's *Formats* page): validation names key and index, save/load round trip, atomic save;
one model of a chain and a tree of exits (``parents``); one decisions record."""

from __future__ import annotations

import json
import os
import re

import numpy as np
import pytest

from ttamer.core.errors import TraceError, TTamerError
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
    with pytest.raises(TraceError, match=r"key 'meta': meta\['bad'\] is not JSON-serialisable"):
        _with(trace, meta=dict(trace.meta, bad=object())).validate()


@pytest.mark.parametrize("meta, match", [
    ({1: "a"}, r"meta has key 1 \(int\); keys must be strings"),
    ({"a": {"b": [0, {2.5: 3}]}}, r"meta\['a'\]\['b'\]\[1\] has key 2\.5 \(float\)"),
    ({"x": (1, {None: 2})}, r"meta\['x'\]\[1\] has key None"),
    ({10**5000: 1}, r"meta has key <an integer of more than 40 digits> \(int\)"),
    ({"x": 10**5000}, r"meta\['x'\] is an integer too large: more than 308 digits"),
    ({"x": -10**308}, r"meta\['x'\] is an integer too large"),
    ({"x": [float("nan")]}, r"meta\['x'\]\[0\] is nan; numbers must be finite"),
    ({"x": np.int64(3)}, r"meta\['x'\] is not JSON-serialisable \(a value of type int64"),
    # inside a list of plain numbers (the entries read without naming them until one fails)
    ({"x": [0, 1, 10**308]}, r"meta\['x'\]\[2\] is an integer too large"),
    ({"x": [0.5, np.float64("inf")]}, r"meta\['x'\]\[1\] is inf; numbers must be finite"),
    ({"x": ["a", True, None, np.int32(1)]}, r"meta\['x'\]\[3\] is not JSON-serialisable"),
])
def test_meta_that_would_not_read_back_is_refused_naming_its_path(trace, meta, match):
    with pytest.raises(TraceError, match=rf"^key 'meta': {match}") as err:
        _with(trace, meta=meta).validate()
    assert "HugeNumber" not in str(err.value) and "Exceeds the limit" not in str(err.value)


def test_meta_refers_to_itself_or_nests_too_deeply(trace):
    loop: dict = {"a": []}
    loop["a"].append(loop)
    with pytest.raises(TraceError, match=r"meta\['a'\]\[0\] contains itself"):
        _with(trace, meta=loop).validate()
    deep: dict = {}
    inner = deep
    for _ in range(5000):
        inner["a"] = inner = {}
    with pytest.raises(TraceError, match=r"key 'meta': meta is nested too deeply"):
        _with(trace, meta=deep).validate()


def test_meta_round_trips_exactly(tmp_path, trace):
    meta = dict(trace.meta, nested={"a": [1, 2.5, None, True, "x", {"b": 10**307}],
                                         "edge": [10**308 - 1, -(10**308 - 1), -0.0, False]})
    save_trace(tmp_path / "m.npz", _with(trace, meta=meta))
    assert load_trace(tmp_path / "m.npz").meta == meta


def test_huge_integer_in_a_meta_file_names_the_field(tmp_path, trace):
    text = json.dumps(trace.meta)[:-1] + ', "x": ' + "9" * 5000 + "}"
    np.savez(tmp_path / "huge.npz", probs=trace.probs, labels=trace.labels, cost=trace.cost, meta=np.array(text))
    with pytest.raises(TraceError, match=r"huge\.npz': key 'meta': meta\['x'\] is an integer too large: "
                                         r"more than 308 digits$"):
        load_trace(tmp_path / "huge.npz")


@pytest.mark.parametrize("make", [
    lambda a: np.ma.masked_invalid(a),
    lambda a: np.ma.masked_array(a, mask=np.zeros(a.shape, bool)),
    lambda a: a.view(type("Sub", (np.ndarray,), {})),
    lambda a: a.view(np.recarray),
])
@pytest.mark.parametrize("key", ["probs", "labels", "cost"])
def test_ndarray_subclasses_are_refused(trace, make, key):
    arr = make(getattr(trace, key).copy())
    with pytest.raises(TraceError, match=rf"key '{key}': expected a plain NumPy array .* got \w+"):
        _with(trace, **{key: arr}).validate()


def test_nan_hidden_by_a_mask_is_never_saved(tmp_path, trace):
    p = trace.probs.copy()
    p[0, 0, 0] = np.nan
    path = tmp_path / "t.npz"
    save_trace(path, trace)
    with pytest.raises(TraceError, match=r"key 'probs': expected a plain NumPy array .* got MaskedArray"):
        save_trace(path, _with(trace, probs=np.ma.masked_invalid(p)))
    assert load_trace(path).meta == trace.meta
    with pytest.raises(TraceError, match=r"key 'probs': got a masked array; pass a plain NumPy array"):
        Trace.build(np.ma.masked_invalid(p), trace.labels, trace.cost)
    with pytest.raises(TraceError, match=r"key 'cost': got a masked array"):
        Trace.build(trace.probs, trace.labels, np.ma.masked_array(trace.cost))


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
    assert d.consulted is None  # a chain without skips: derived from last
    np.testing.assert_array_equal(d.consulted_mask(4).sum(axis=1), d.n_consulted)
    assert d.correct(trace, "final")[1]  # answering with the last exit always agrees with it


# --------------------------------------------------------------------------- the forest of exits
TREE = [None, "exit0", "exit0", "exit1"]  # exit0 -> {exit1 -> exit3, exit2}


def test_chain_is_the_default_tree(trace):
    np.testing.assert_array_equal(trace.parents, [-1, 0, 1, 2])
    assert trace.is_chain and "parents" not in trace.meta
    assert [trace.path(v) for v in range(4)] == [[0], [0, 1], [0, 1, 2], [0, 1, 2, 3]]
    np.testing.assert_allclose(trace.path_cost(), trace.cumulative_cost.mean(axis=0))
    per_ex = synthetic_trace(30, 4, 3, seed=2, per_example_cost=True)
    cm = per_ex.cost_matrix
    np.testing.assert_allclose(per_ex.cumulative_cost, [[cm[n, per_ex.path(v)].sum() for v in range(4)]
                                                        for n in range(30)])
    np.testing.assert_allclose(per_ex.path_cost(), per_ex.cumulative_cost.mean(axis=0))
    assert trace.reference() == 3 and trace.node_id("exit2") == 2


def test_tree_paths_costs_and_round_trip(tmp_path):
    base = synthetic_trace(40, 4, 3, seed=3, per_example_cost=True)
    tree = Trace.build(base.probs, base.labels, base.cost, base.meta, parents=[None, 0, "exit0", 1])
    assert tree.meta["parents"] == TREE and not tree.is_chain
    np.testing.assert_array_equal(tree.parents, [-1, 0, 0, 1])
    assert tree.path(3) == [0, 1, 3] and tree.path(2) == [0, 2]
    cm = tree.cost_matrix
    np.testing.assert_allclose(tree.cumulative_cost[:, 3], cm[:, [0, 1, 3]].sum(axis=1))
    np.testing.assert_allclose(tree.cumulative_cost[:, 2], cm[:, 0] + cm[:, 2])
    np.testing.assert_allclose(tree.path_cost(), tree.cumulative_cost.mean(axis=0))
    assert "exit3<-exit1" in repr(tree)
    save_trace(tmp_path / "tree.npz", tree)
    back = load_trace(tmp_path / "tree.npz")
    assert back.meta["parents"] == TREE
    np.testing.assert_array_equal(back.parents, tree.parents)
    cal, test = back.split(0.5, seed=0, min_each=10)
    np.testing.assert_array_equal(cal.parents, tree.parents)
    np.testing.assert_array_equal(test.subset([0, 2]).parents, tree.parents)
    # parents passed through meta are normalised to names too
    again = Trace.build(base.probs, base.labels, base.cost, {**base.meta, "parents": [-1, 0, 0, 1]})
    assert again.meta["parents"] == TREE


@pytest.mark.parametrize("parents, match", [
    ([None, "exit2", "exit1", "exit0"], "field 'parents': exit 'exit1' is on a cycle"),
    ([None, "exit0", "nope", "exit0"], "field 'parents', exit 'exit2': unknown parent 'nope'"),
    ([None, "exit0", "exit0"], "field 'parents' has 3 entries for 4 exits"),
    ([None, "exit0", 7, "exit0"], "field 'parents', exit 'exit2': bad parent 7"),
    ([None, True, "exit0", "exit0"], "field 'parents', exit 'exit1': bad parent True"),
])
def test_bad_parents_name_the_field(trace, parents, match):
    with pytest.raises(TraceError, match=match):
        Trace.build(trace.probs, trace.labels, trace.cost, trace.meta, parents=parents)
    if all(p is None or isinstance(p, str) for p in parents):  # names: the on-disk form
        with pytest.raises(TraceError, match=match):
            _with(trace, meta={**trace.meta, "parents": parents}).validate()


def test_bad_parents_in_a_file_name_the_file(tmp_path, trace):
    path = tmp_path / "t.npz"
    meta = json.dumps({**trace.meta, "parents": "exit0"})
    np.savez(path, probs=trace.probs, labels=trace.labels, cost=trace.cost, meta=np.array(meta))
    with pytest.raises(TraceError, match=r"t\.npz.*field 'parents' must be a list"):
        load_trace(path)


def test_exit_decisions_with_consulted(trace):
    tree = Trace.build(trace.probs, trace.labels, trace.cost, trace.meta, parents=TREE)
    consulted = np.zeros((2, 50, 4), dtype=bool)
    consulted[:, :, [0, 2]] = True
    consulted[1, :10, 1] = True
    answer = np.where(consulted[..., 1], 1, 2)
    last = np.full((2, 50), 2)
    cost = (consulted * tree.cost_matrix).sum(axis=2)
    d = ExitDecisions(answer, last, cost, np.array([0.5, 0.9]), "tree", consulted)
    np.testing.assert_array_equal(d.n_consulted, consulted.sum(axis=2))
    assert d.consulted_mask(4) is consulted
    one = d[1]
    np.testing.assert_array_equal(one.consulted, consulted[1])
    assert one.params.tolist() == [0.9] and one.name == "tree"
    rows = np.arange(50)
    np.testing.assert_array_equal(d.correct(tree)[1], tree.predictions[rows, answer[1]] == tree.labels)
    c, a = d.points(tree, scale=2.0)
    np.testing.assert_allclose(c, cost.mean(axis=1) / 2.0)
    np.testing.assert_allclose(a, d.correct(tree).mean(axis=1))
    s = ExitDecisions.stack([d[0], d[1]], [0.5, 0.9], "again")
    np.testing.assert_array_equal(s.consulted, consulted)
    np.testing.assert_array_equal(s.last, last)


def _small(cost, meta=None) -> dict:
    """Arrays of a valid 3-example, 2-exit, 2-class trace with ``cost`` (kwargs of ``Trace``)."""
    probs = np.array([[[0.9, 0.1], [0.8, 0.2]], [[0.3, 0.7], [0.1, 0.9]], [[0.5, 0.5], [0.6, 0.4]]],
                     dtype=np.float32)
    return dict(probs=probs, labels=np.array([0, 1, 0]), cost=np.asarray(cost, dtype=np.float64),
                meta={} if meta is None else meta)


def _savez(path, members) -> None:
    """An archive holding ``members`` (name -> array), written member by member as given."""
    import io
    import warnings
    import zipfile

    with zipfile.ZipFile(path, "w") as zf, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns of a duplicate name: wanted here
        for name, arr in members:
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.asanyarray(arr), allow_pickle=False)
            zf.writestr(name, buf.getvalue())


@pytest.mark.parametrize("cost, match", [
    ([1e308, 1e308], r"full model's cost \(the sum over the exits\) overflows"),
    ([[1.0, 1.0], [1e308, 1e308], [1.0, 1.0]], r"full model's cost \(the sum over the exits\) on example 1 overflows"),
    ([6e307, 6e307], r"summed over the 3 examples overflows"),
    ([[1e308, 0.0], [1e308, 0.0], [0.0, 0.0]], r"summed over the 3 examples overflows"),
    ([5e-324, 5e-324], r"mean cost is 9\.88131e-324, below the smallest normal"),
    ([0.0, 5e-324], r"mean cost is 4\.94066e-324, below the smallest normal"),
    ([0.0, 0.0], r"every cost is 0"),
    ([[0.0, 0.0], [0.0, 0.0], [0.0, 1e-300]], r"example 0's full cost \(the sum over its exits\) is 0; "
                                                r"with per-example costs every example's must be > 0"),
])
def test_extreme_costs_are_refused_when_validated_and_loaded(tmp_path, cost, match):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no RuntimeWarning on the way
        with pytest.raises(TraceError, match=rf"key 'cost': .*{match}") as err:
            Trace(**_small(cost)).validate()
        if "overflow" in match or "below" in match:
            assert "rescale the costs" in str(err.value)
        d = _small(cost)
        np.savez(tmp_path / "c.npz", probs=d["probs"], labels=d["labels"], cost=d["cost"], meta=np.array("{}"))
        with pytest.raises(TraceError, match=rf"c\.npz.*key 'cost': .*{match}"):
            load_trace(tmp_path / "c.npz")
    # large or tiny costs that can be summed and normalised are kept as they are
    for ok in ([1e300, 1e300], [0.0, 1e-300], [[0.0, 1e-300], [1e-300, 0.0], [0.0, 1e-300]]):
        Trace(**_small(ok)).validate()


@pytest.mark.parametrize("key, value", [("model", 5), ("model", ["a"]), ("dataset", {"a": 1}),
                                        ("cost_unit", None), ("exit_names", "exit0 exit1"),
                                        ("exit_names", ["a", 3])])
def test_meta_fields_are_optional_but_typed(tmp_path, key, value):
    Trace(**_small([1.0, 1.0], {})).validate()  # every field optional
    tr = Trace(**_small([1.0, 1.0], {"model": "m", "dataset": "d", "cost_unit": "ms", "exit_names": ["a", "b"]}))
    assert tr.validate() is tr
    with pytest.raises(TraceError, match=rf"key 'meta': field '{key}' must be a"):
        Trace(**_small([1.0, 1.0], {key: value})).validate()
    d = _small([1.0, 1.0])
    np.savez(tmp_path / "m.npz", probs=d["probs"], labels=d["labels"], cost=d["cost"],
             meta=np.array(json.dumps({key: value})))
    with pytest.raises(TraceError, match=rf"m\.npz.*key 'meta': field '{key}'"):
        load_trace(tmp_path / "m.npz")


@pytest.mark.parametrize("parents", [[-7, 0], [-1, 0], [None, 0], [0, None]])
def test_parents_on_disk_are_names_or_null(tmp_path, parents):
    d = _small([1.0, 1.0])
    bad = [p for p in parents if p is not None][0]
    with pytest.raises(TraceError, match=rf"field 'parents', exit 'exit\d': bad parent {bad}"):
        Trace(**_small([1.0, 1.0], {"parents": parents})).validate()
    np.savez(tmp_path / "p.npz", probs=d["probs"], labels=d["labels"], cost=d["cost"],
             meta=np.array(json.dumps({"parents": parents})))
    with pytest.raises(TraceError, match=r"p\.npz.*field 'parents'.*bad parent"):
        load_trace(tmp_path / "p.npz")


def test_build_takes_positions_with_minus_one_the_only_root_marker():
    d = _small([1.0, 1.0])
    tr = Trace.build(d["probs"], d["labels"], d["cost"], parents=[-1, 0])
    assert tr.meta["parents"] == [None, "exit0"]
    for bad in (-7, -2, 2):
        with pytest.raises(TraceError, match=rf"field 'parents', exit 'exit\d': bad parent {bad}"):
            Trace.build(d["probs"], d["labels"], d["cost"], parents=[bad, 0] if bad < 0 else [None, bad])


def test_ambiguous_archives_are_refused_naming_the_member(tmp_path):
    d = _small([1.0, 1.0])
    good = [("probs.npy", d["probs"]), ("labels.npy", d["labels"]), ("cost.npy", d["cost"]),
            ("meta.npy", np.array("{}"))]
    _savez(tmp_path / "ok.npz", good)
    assert load_trace(tmp_path / "ok.npz").n_exits == 2
    other = np.full_like(d["probs"], 0.5)
    refused = r"is not part of a trace; a trace archive holds exactly one member KEY\.npy per key of " + \
        re.escape(str(["probs", "labels", "cost", "meta"]))
    cases = {
        "shadow": (good + [("probs", other)], r"member 'probs' " + refused),
        "noext": (good[1:] + [("probs", d["probs"])], r"member 'probs' " + refused),
        "dup": (good + [("probs.npy", other)], r"member 'probs\.npy' appears twice"),
        "folder": (good + [("sub/", np.zeros(1))], r"member 'sub/' " + refused),
        "extra": (good + [("extra.npy", np.zeros(3))], r"member 'extra\.npy' " + refused),
        "inside": (good + [("sub/x.npy", np.zeros(3))], r"member 'sub/x\.npy' " + refused),
        "traversal": (good[1:] + [("../../probs.npy", d["probs"])], r"member '\.\./\.\./probs\.npy' " + refused),
    }
    for name, (members, match) in cases.items():
        _savez(tmp_path / f"{name}.npz", members)
        with pytest.raises(TraceError, match=rf"{name}\.npz': {match}"):
            load_trace(tmp_path / f"{name}.npz")


def test_shadow_member_cannot_bypass_the_size_checks(tmp_path, monkeypatch):
    d = _small([1.0, 1.0])
    good = [("probs.npy", d["probs"]), ("labels.npy", d["labels"]), ("cost.npy", d["cost"]),
            ("meta.npy", np.array("{}"))]
    # a shadow member declaring 36 TB is refused by its name, before any header or array is read
    import io
    import zipfile

    head = io.BytesIO()
    np.lib.format.write_array_header_1_0(head, {"descr": "<f4", "fortran_order": False, "shape": (9 * 10**12,)})
    _savez(tmp_path / "bomb.npz", good)
    with zipfile.ZipFile(tmp_path / "bomb.npz", "a") as zf:
        zf.writestr("probs", head.getvalue() + b"\0" * 16)
    with pytest.raises(TraceError, match=r"member 'probs' is not part of a trace"):
        load_trace(tmp_path / "bomb.npz")
    with zipfile.ZipFile(tmp_path / "bomb2.npz", "w") as zf:  # the same header under its key's name
        for name, arr in good[1:]:
            buf = io.BytesIO()
            np.lib.format.write_array(buf, arr)
            zf.writestr(name, buf.getvalue())
        zf.writestr("probs.npy", head.getvalue() + b"\0" * 16)
    with pytest.raises(TraceError, match=r"member 'probs\.npy' declares shape \(9000000000000,\)"):
        load_trace(tmp_path / "bomb2.npz")
    # the arrays read are the very members checked
    read = []
    real = np.lib.format.read_array

    def spy(fh, *a, **k):
        read.append(fh.name)
        return real(fh, *a, **k)

    monkeypatch.setattr(np.lib.format, "read_array", spy)
    _savez(tmp_path / "ok.npz", good)
    load_trace(tmp_path / "ok.npz")
    assert read == ["probs.npy", "labels.npy", "cost.npy", "meta.npy"]


def test_empty_path_is_reported_as_empty(tmp_path):
    with pytest.raises(TraceError, match=r"trace file is an empty path") as err:
        load_trace("")
    assert "folder" not in str(err.value)
    with pytest.raises(TraceError, match=r"trace file is an empty path"):
        save_trace("", synthetic_trace(10, 2, 2))


def test_sample_is_seeded_sorted_and_apart_from_split():
    """``Trace.sample``: n examples in their order, the same for the same seed, the whole trace
    when it holds at most n, and a stream apart from ``split``'s."""
    t = synthetic_trace(300, 3, 2, seed=1)
    a, b = t.sample(100, seed=4), t.sample(100, seed=4)
    assert a.n_examples == 100 and np.array_equal(a.labels, b.labels) and np.array_equal(a.probs, b.probs)
    assert not np.array_equal(a.probs, t.sample(100, seed=5).probs)
    assert t.sample(300) is t and t.sample(10**6) is t
    rows = {tuple(r) for r in t.probs.reshape(300, -1)}
    assert all(tuple(r) in rows for r in a.probs.reshape(100, -1))
    cal, _ = t.split(100 / 300, seed=4)
    assert not np.array_equal(cal.probs, a.probs)
    with pytest.raises(TTamerError, match="sample size"):
        t.sample(0)
    drawn = t.sample(100, np.random.default_rng(9))
    expected = np.sort(np.random.default_rng(9).choice(300, 100, replace=False))
    assert np.array_equal(drawn.labels, t.labels[expected]) and np.array_equal(drawn.probs, t.probs[expected])


def test_derived_arrays_are_computed_once_read_only_and_follow_replaced_arrays():
    """``predictions``, ``correct``, ``max_prob`` and ``entropy`` are computed once per array,
    returned read-only, recomputed when ``probs`` or ``labels`` is replaced, and not pickled."""
    import pickle

    t = synthetic_trace(50, 3, 4, seed=2)
    for name in ("predictions", "correct", "max_prob", "entropy"):
        first = getattr(t, name)
        assert getattr(t, name) is first and not first.flags.writeable
        with pytest.raises(ValueError):
            first[0, 0] = 0
    p = t.probs[:, :, ::-1].copy()
    old = t.max_prob
    t.probs = p
    assert np.array_equal(t.predictions, p.argmax(axis=2)) and t.max_prob is not old
    t.labels = (t.labels + 1) % 4
    assert np.array_equal(t.correct, t.predictions == t.labels[:, None])
    clone = pickle.loads(pickle.dumps(t))
    assert clone._derived == {} and np.array_equal(clone.entropy, t.entropy)


def test_entropy_in_chunks_equals_the_formula(monkeypatch):
    """The chunked entropy is ``-Σ p log p`` on the whole array, to the last bit, whatever the
    chunk, zeros included."""
    import ttamer.earlyexit.traces as traces_module

    t = synthetic_trace(57, 3, 5, seed=4)
    probs = t.probs.copy()
    probs[0, 0] = [1, 0, 0, 0, 0]
    t = Trace.build(probs, t.labels, t.cost)
    p = t.probs.astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        expected = -np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0).sum(axis=2)
    for cells in (1, 16, 10**9):
        monkeypatch.setattr(traces_module, "ENTROPY_CHUNK_CELLS", cells)
        fresh = Trace(t.probs, t.labels, t.cost, dict(t.meta))
        assert np.array_equal(fresh.entropy, expected)
    assert expected[0, 0] == 0.0


def test_the_trace_format_chapter_states_the_limits_the_code_applies():
    """The limits the book's trace-format chapter states in prose are the package's constants."""
    from pathlib import Path

    from ttamer.core.safeio import MAX_JSON_DIGITS
    from ttamer.earlyexit.base import MAX_EXITS, MIN_FIT_EXAMPLES

    text = " ".join((Path(__file__).resolve().parents[1] / "book" / "formats.md").read_text().split())
    assert f"a trace of 2 to {MAX_EXITS} exits" in text
    assert f"fit on at least {MIN_FIT_EXAMPLES} examples" in text
    assert f"integers at most {MAX_JSON_DIGITS} digits long" in text
