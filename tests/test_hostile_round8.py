"""Hostile inputs found by an eighth fuzzing round, through the Python API: options given as
NumPy small integers (which wrap around, or overflow, in arithmetic), numbers of other types,
unbounded sizes of a synthetic trace, warnings that reached the user, and node names that
look the same. Each test fails on the code before the fix."""
from __future__ import annotations

import json
import warnings
from fractions import Fraction

import numpy as np
import pytest

from ttamer import CascadeTamer, EarlyExitTamer, Instance, evaluate_trace
from ttamer.core.errors import InstanceError, TTamerError
from ttamer.earlyexit.features import StateSpec
from ttamer.earlyexit.traces import SYNTHETIC_MAX_CELLS, Trace, synthetic_trace


@pytest.fixture(scope="module")
def small():
    return synthetic_trace(300, 3, 3, seed=5)


def test_state_counts_in_numpy_small_integers_do_not_wrap_past_the_state_limit(small):
    # 200 x 200 = 40,000 states per exit, which is 64 in uint8 arithmetic
    with pytest.raises(TTamerError, match="40,000 states per exit, above MAX_STATES"):
        EarlyExitTamer(K=np.uint8(200), entropy_bins=np.uint8(200), agreement=False, feature="max_prob",
                       loss="label").fit(small)


def test_a_state_spec_keeps_its_counts_as_python_ints():
    spec = StateSpec(K=np.uint8(7), agreement=np.int8(2), entropy_bins=np.int16(3), prospect_bins=np.uint8(0))
    assert [type(v) for v in (spec.K, spec.agreement, spec.entropy_bins, spec.prospect_bins)] == [int] * 4
    assert spec == StateSpec(K=7, agreement=2, entropy_bins=3, prospect_bins=0)
    assert StateSpec(K=3, agreement=np.bool_(True)).agreement is True


def test_cv_folds_in_a_small_integer_type_fit_as_the_plain_int(small):
    a = EarlyExitTamer(cv_folds=np.int8(2), K=4, agreement=0, feature="max_prob", loss="label").fit(small)
    b = EarlyExitTamer(cv_folds=2, K=4, agreement=0, feature="max_prob", loss="label").fit(small)
    assert a.cv_scores_ == b.cv_scores_
    assert np.array_equal(a.decide(small).last, b.decide(small).last)


def test_a_numpy_degree_is_reported_as_json(small):
    out = evaluate_trace(small, n_boot=0, with_chain=False, estimation="regression",
                         pathwise={"degree": np.int64(2)}).to_dict()
    json.dumps(out)  # a TypeError on an np.int64 before the fix
    assert type(out["ttamer_fit"]["degree"]) is int and out["ttamer_fit"]["degree"] == 2


def test_a_cascade_takes_any_real_smoothing(small):
    a = CascadeTamer(smoothing=Fraction(1, 2)).fit(small)
    b = CascadeTamer(smoothing=0.5).fit(small)
    assert np.array_equal(a.decide(small).last, b.decide(small).last)


@pytest.mark.parametrize("kwargs, match", [
    (dict(n=10**12), "SYNTHETIC_MAX_CELLS"), (dict(n_classes=10**9), "SYNTHETIC_MAX_CELLS"),
    (dict(n_exits=10**6), "n_exits must be <= 1000"), (dict(n=0), "n must be >= 1"),
    (dict(n_classes=1), "n_classes must be >= 2"), (dict(rho=2.0), "rho must be <= 1"),
    (dict(per_example_cost=1), "per_example_cost must be True or False"), (dict(seed=-1), "seed must be >= 0")])
def test_a_synthetic_trace_checks_its_size_before_any_work(kwargs, match):
    with pytest.raises(TTamerError, match=match):
        synthetic_trace(**kwargs)


def test_a_synthetic_trace_at_the_cell_limit_is_allowed_in_principle():
    assert 2_000 * 64 * 512 <= SYNTHETIC_MAX_CELLS  # a paper-scale trace fits
    t = synthetic_trace(np.int64(40), np.uint8(3), np.int8(2), seed=np.uint64(1))
    assert t.probs.shape == (40, 3, 2)


def test_float16_labels_are_read_without_a_warning():
    p = np.full((30, 2, 3), 1 / 3, np.float32)
    labels = (np.arange(30) % 3).astype(np.float16)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert Trace.build(p, labels, np.ones(2)).labels.tolist() == (np.arange(30) % 3).tolist()
        labels[4] = -1
        with pytest.raises(TTamerError, match="example 4 has label -1.0, not a class index"):
            Trace.build(p, labels, np.ones(2))


def test_serving_inputs_torch_cannot_share_are_copied_without_a_warning():
    torch = pytest.importorskip("torch")
    from ttamer.serving import EarlyExitServer, MultiExitModel, max_prob_rule

    torch.manual_seed(0)
    blocks = [torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.Tanh()) for _ in range(3)]
    heads = [torch.nn.Linear(8, 3) for _ in range(3)]
    server = EarlyExitServer(MultiExitModel.from_modules(blocks, heads), max_prob_rule(3, 0.5))
    x = np.random.default_rng(0).normal(size=(40, 8)).astype(np.float32)
    want = server.serve(x, 4).prediction
    frozen = x.copy()
    frozen.flags.writeable = False
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for inputs in (frozen, x.astype(">f4"), x[::-1]):
            got = server.serve(inputs, 4).prediction
            assert np.array_equal(got, want[::-1] if inputs.strides[0] < 0 else want)


def _chain(names):
    return Instance.chain([[0.5], [0.2]], [1.0], [[[1.0]]], [1.0, 1.0], names=names)


def test_node_names_that_read_the_same_are_refused():
    nfc, nfd = "caf\u00e9", "cafe\u0301"
    with pytest.raises(InstanceError, match="reads the same as node 'caf.'.*accents"):
        _chain([nfc, nfd])
    with pytest.raises(InstanceError, match="node #1, field 'name': must be a string with a character other than"):
        _chain(["a", " "])
    assert _chain(["a", nfd]).index == {"a": 0, nfd: 1}
