"""Valid but extreme traces, instances and estimator inputs, and damaged trace archives: each
gives results or an error naming the file, key, member, node or option at fault (never a raw
NumPy, zipfile or KeyError, nor a RuntimeWarning)."""

import struct

import numpy as np
import pytest

from ttamer.core.errors import TraceError
from ttamer.earlyexit.evaluation import evaluate_trace
from ttamer.earlyexit.logistic import _logistic_models
from ttamer.earlyexit.traces import Trace, load_trace, save_trace, synthetic_trace


def test_a_full_model_right_on_no_example_is_evaluated():
    """The levels 0.5 and 1 point below a full model right on no example are below 0: every
    operating point meets them, so the cost there is the cheapest point's."""
    L, C, n = 4, 3, 120
    y = np.arange(n) % C
    probs = np.repeat(np.eye(C, dtype=np.float32)[y][:, None], L, axis=1)
    probs[:, -1] = np.eye(C, dtype=np.float32)[(y + 1) % C]  # the last exit always wrong
    r = evaluate_trace(Trace(probs, y, np.ones(L), {}), n_boot=0, with_chain=False)
    assert r.full_model.accuracy == 0.0
    for m in r.strategies.values():
        assert m.cost_at_full_accuracy_minus_1pt == pytest.approx(m.frontier[0, 0])
        assert m.cost_at_full_accuracy_minus_half_pt == pytest.approx(m.frontier[0, 0])
    assert r.strategies["ttamer"].auc == pytest.approx(1.0)


def test_logistic_models_drop_constant_features():
    """A feature constant over the examples (a uniform softmax's log-odds) drops out of the
    model instead of being blown up by a tiny scale, which made the Newton step singular."""
    x = np.ones((66, 3, 4))
    x[:, :, 1] = -6.906754  # the log-odds of a uniform softmax over 1,000 classes
    x[:, :, 2] = 1.0
    x[:, :, 3] = np.random.default_rng(0).normal(size=(66, 3))
    w, scale = _logistic_models(x, np.zeros((66, 3)))  # every exit wrong on every example
    assert np.isfinite(w).all()
    assert np.isinf(scale[1:3]).all() and np.isfinite(scale[[0, 3]]).all()


def test_an_example_costing_nothing_is_refused_by_name():
    tr = synthetic_trace(40, 3, 3, seed=1)
    cost = np.ones((40, 3))
    cost[7] = 0.0
    with pytest.raises(TraceError, match=r"key 'cost': example 7's full cost \(the sum over its exits\) is 0"):
        Trace(tr.probs, tr.labels, cost, {}).validate()


def test_meta_that_is_not_a_dict_is_named_before_it_is_read():
    tr = synthetic_trace(40, 3, 3, seed=1)
    with pytest.raises(TraceError, match=r"key 'meta': expected a dict \(JSON object\), got NoneType"):
        evaluate_trace(Trace(tr.probs, tr.labels, tr.cost, None), n_boot=0)


@pytest.fixture
def archive(tmp_path):
    path = tmp_path / "t.npz"
    save_trace(path, synthetic_trace(60, 3, 4, seed=2))
    return path


def _rewrite(path, edit):
    data = bytearray(path.read_bytes())
    edit(data)
    path.write_bytes(bytes(data))


def test_damaged_member_data_is_named(archive):
    """A flipped byte in a member's data fails its CRC: the member is named as corrupt."""
    def flip(data):
        start = data.find(b"probs.npy") + 400
        data[start] ^= 0xFF
    _rewrite(archive, flip)
    with pytest.raises(TraceError, match=r"t\.npz': member 'probs\.npy' (is corrupt|cannot be read).*CRC"):
        load_trace(archive)


def test_unknown_compression_method_names_the_member(archive):
    def method_99(data):
        for sig, offset in ((b"PK\x03\x04", 8), (b"PK\x01\x02", 10)):
            at = data.find(sig)
            while at >= 0:
                struct.pack_into("<H", data, at + offset, 99)
                at = data.find(sig, at + 4)
    _rewrite(archive, method_99)
    with pytest.raises(TraceError, match=r"t\.npz': member '\w+\.npy' cannot be read: .*compression method"):
        load_trace(archive)


def test_a_member_of_empty_dtype_is_named(tmp_path):
    path = tmp_path / "v0.npz"
    tr = synthetic_trace(20, 3, 3, seed=3)
    np.savez(path, probs=np.zeros((4, 4), dtype="V0"), labels=tr.labels, cost=tr.cost, meta=np.array("{}"))
    with pytest.raises(TraceError, match=r"v0\.npz': member 'probs\.npy' has the empty dtype"):
        load_trace(path)


def _chain_trace(cost):
    """A two-exit chain (``synthetic_trace``'s outputs) with the given mean costs."""
    tr = synthetic_trace(80, 2, 3, seed=0)
    return Trace(tr.probs, tr.labels, np.asarray(cost, float), {})


@pytest.mark.parametrize("cost, match", [([1e300, 1e-10], r"costs divided by 1e-10 \(the mean cost of the last "
                                                           r"model 'exit1'\) overflow a float64"),
                                         ([1.0, 0.0], r"the last model 'exit1' has mean cost 0")])
def test_skip_estimators_name_a_cost_scale_they_cannot_use(cost, match):
    import warnings

    from ttamer.core.errors import TTamerError
    from ttamer.earlyexit import skips

    cal, test = _chain_trace(cost).split(0.5, 0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no RuntimeWarning on the way
        for call in (lambda: skips.SkipTamer().fit(cal), lambda: skips.skip_chain_instance(cal),
                     lambda: skips.exact_skip_decisions(cal, test, [0.5])):
            with pytest.raises(TTamerError, match=match):
                call()
        scale = float(cal.full_cost.mean())  # what the message suggests: each takes it
        skips.SkipTamer(scale=scale).fit(cal)
        skips.skip_chain_instance(cal, scale=scale)
        assert len(skips.exact_skip_decisions(cal, test, [0.5], scale=scale).answer) == 1


def test_exact_skip_policy_at_lambda_zero_says_to_raise_lambda():
    from ttamer.core.errors import TTamerError
    from ttamer.earlyexit import skips

    cal, test = _chain_trace(np.ones(2)).split(0.5, 0)
    with pytest.raises(TTamerError, match=r"at λ=0: answering without consulting any model is optimal.*use larger λ"):
        skips.exact_skip_decisions(cal, test, [0.0, 0.5])


def test_a_cost_range_whose_width_overflows_is_refused():
    from ttamer.core.errors import TTamerError

    with pytest.raises(TTamerError, match=r"cost_range must be .* hi - lo a finite float64"):
        evaluate_trace(synthetic_trace(40, 3, 3, seed=1), cost_range=(-1e308, 1e308), n_boot=0)


def test_an_instance_whose_costs_sum_past_float64_is_refused():
    """Each cost is finite but a strategy consulting both nodes would pay 2e308: refused by
    name, rather than evaluated to inf (the solvers' values stayed finite, the evaluators' not)."""
    from ttamer import Instance
    from ttamer.core.errors import InstanceError

    with pytest.raises(InstanceError, match=r"field 'cost': the costs of the edges sum to more than the largest"):
        Instance.chain([[1.7e308], [0.0]], [1.0], [[[1.0]]], [1e308, 1e308])
    Instance.chain([[1.7e308], [0.0]], [1.0], [[[1.0]]], [1e308, 1e307])  # a sum that fits is kept as it is
