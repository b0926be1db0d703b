"""Hostile inputs to the policy layer and the instance builders, found by a fuzzing pass:
:func:`ttamer.rollout` given a bad batch, policy or ``reveal``; a custom policy whose
``decide`` breaks its contract; ``rollout_known`` given states that are not states; mixed
key types in ``Instance.from_dict``; masked arrays given to ``Instance.chain``/``tree``; and
error messages quoting a huge node name. Each test fails on the code before the fix."""
from __future__ import annotations

import copy
import warnings

import numpy as np
import pytest

import ttamer
from strategies import EXAMPLE_INSTANCE
from ttamer import Instance, Policy, evaluate_exactly, rollout, simulate
from ttamer.core.errors import InstanceError, SolverError, TTamerError
from ttamer.core.policy import IndexPolicy, chain_index_rollouts


@pytest.fixture(scope="module")
def inst():
    return Instance.from_dict(EXAMPLE_INSTANCE)


@pytest.fixture(scope="module")
def pol(inst):
    return ttamer.solve(inst, 0.5).policy


def zeros(rows, nodes, states_rows, last_rows):
    return np.zeros(len(rows), dtype=np.int64)


class Fixed(Policy):
    """Returns ``out`` for every history (whatever its type)."""

    def __init__(self, instance, out):
        super().__init__(instance, 0.5, True)
        self.out = out

    def decide(self, states, last):
        return self.out(len(last)) if callable(self.out) else np.full(len(last), self.out)


# ------------------------------------------------------------------ rollout's arguments
@pytest.mark.parametrize("batch, match", [(-1, "batch must be >= 0"), (1.5, "batch must be an integer"),
                                          (True, "batch must be an integer"), (10**13, "MAX_ROLLOUT_CELLS")])
def test_rollout_refuses_a_bad_batch_before_allocating(pol, batch, match):
    with pytest.raises(TTamerError, match=match):
        rollout(pol, batch, zeros)


def test_rollout_refuses_what_is_not_a_policy_or_not_a_callable(pol):
    with pytest.raises(TTamerError, match="policy must be a ttamer Policy, got str"):
        rollout("x", 3, zeros)
    with pytest.raises(TTamerError, match="reveal must be callable"):
        rollout(pol, 3, 7)


def test_an_empty_batch_is_still_an_empty_rollout(pol):
    ro = rollout(pol, 0, zeros)
    assert ro.states.shape == (0, 3) and ro.last.shape == (0,)


@pytest.mark.parametrize("states, match", [
    (lambda r: np.full(len(r), 99), r"reveal returned state 99 for node 0 \('exit1'\) in history #0; expected an "
                                    r"integer state in 0\.\.1"),
    (lambda r: np.full(len(r), -5), r"reveal returned state -5 for node 0 \('exit1'\)"),
    (lambda r: np.full(len(r), 0.7), r"reveal must return an integer array of shape \(3,\).*dtype float64"),
    (lambda r: np.zeros(1, dtype=np.int64), r"reveal must return an integer array of shape \(3,\).*shape \[1\], dtype int64"),
    (lambda r: None, r"reveal must return an integer array.*got None"),
])
def test_bad_states_from_reveal_are_refused_naming_the_node(pol, states, match):
    with pytest.raises(TTamerError, match=match):
        rollout(pol, 3, lambda r, n, s, l: states(r))


# ------------------------------------------------------------------ a decide that breaks its contract
@pytest.mark.parametrize("out, match", [
    (3, r"Fixed\.decide returned 3 for history #0; allowed: a node 0\.\.2 not consulted yet, or -1 to stop"),
    (-7, r"Fixed\.decide returned -7"),
    (0, r"Fixed\.decide returned node 0 \('exit1'\) for history #0, which has consulted it already"),
    (0.5, r"Fixed\.decide must return an integer array of shape \(10,\).*dtype float64"),
    (lambda b: None, r"Fixed\.decide must return an integer array.*got None"),
    (lambda b: np.zeros((b, 2), dtype=np.int64), r"Fixed\.decide must return.*shape \[10, 2\], dtype int64"),
])
def test_a_decide_breaking_its_contract_is_named(inst, out, match):
    with pytest.raises(SolverError, match=match):
        simulate(Fixed(inst, out), 10)


def test_exact_evaluation_checks_the_decisions_too(inst):
    with pytest.raises(SolverError, match=r"Fixed\.decide returned 3 for history #0"):
        evaluate_exactly(Fixed(inst, 3))


def test_stopping_before_any_node_without_fallback_is_an_error_not_nan(inst):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(SolverError, match=r"Fixed\.decide stopped \(-1\) before consulting any node, but the "
                                              r"instance has no fallback"):
            simulate(Fixed(inst, -1), 10)
        with pytest.raises(SolverError, match="no fallback"):
            evaluate_exactly(Fixed(inst, -1))
    with_fallback = Instance.from_dict({**EXAMPLE_INSTANCE, "fallback": 0.3})
    assert simulate(Fixed(with_fallback, -1), 10).loss == pytest.approx(0.3)  # allowed: the fallback answers


def test_the_base_class_says_decide_is_missing(inst):
    with pytest.raises(NotImplementedError, match="Policy does not define decide"):
        simulate(Policy(inst, 0.5, True), 10)


# ------------------------------------------------------------------ known states
@pytest.mark.parametrize("states_all, match", [
    (np.full((5, 3), 7), r"states_all\[0, 0\] is 7, not a state of node 0 \('exit1'\): its states are 0\.\.1"),
    (np.full((5, 3), -3), r"states_all\[0, 0\] is -3"),
    (np.full((5, 3), 0.9), r"states_all must be a 2-D integer array.*dtype float64"),
    (np.zeros((5, 2), dtype=np.int64), r"one column per node \(3\).*shape \[5, 2\], dtype int64"),
    ("abc", r"states_all must be a 2-D integer array.*got 'abc'"),
])
def test_rollout_known_checks_its_states(pol, states_all, match):
    with pytest.raises(TTamerError, match=match):
        pol.rollout_known(states_all)


def test_the_vectorised_chain_rollout_checks_its_states_too():
    inst = Instance.chain([[0.6, 0.05], [0.4, 0.02]], [0.5, 0.5], [[[0.8, 0.2], [0.3, 0.7]]], [1.0, 1.0])
    pol = ttamer.solve(inst, 0.5, method="index").policy
    assert isinstance(pol, IndexPolicy)
    bad = np.array([[0, 1], [1, -1]])  # -1 would wrap round to the last state
    with pytest.raises(TTamerError, match=r"states_all\[1, 1\] is -1, not a state of node 1 \('v1'\)"):
        pol.rollout_known(bad)
    with pytest.raises(TTamerError, match=r"states_all\[1, 1\] is -1"):
        chain_index_rollouts([pol], bad)


# ------------------------------------------------------------------ Instance.from_dict, masked arrays, long names
def _edited(edit):
    d = copy.deepcopy(EXAMPLE_INSTANCE)
    edit(d)
    return d


@pytest.mark.parametrize("edit, match", [
    (lambda d: d.update({1: 2, "zz": 3}), r"unknown top-level field\(s\) \['zz', 1\]"),
    (lambda d: d["nodes"][0].update({1: 2, "zz": 3}), r"node 'exit1': unknown field\(s\) \['zz', 1\]"),
    (lambda d: d["skips"][0].update({(1,): 2, "zz": 3}), r"unknown \['zz', \(1,\)\]"),
])
def test_unknown_keys_of_mixed_types_are_reported(edit, match):
    with pytest.raises(InstanceError, match=match):
        Instance.from_dict(_edited(edit))


MASKED = np.ma.array([0.3, 99.0], mask=[0, 1])


@pytest.mark.parametrize("build, match", [
    (lambda: Instance.chain([MASKED], [0.5, 0.5], [], [1.0]), r"node 'v0', field 'losses': got a masked array"),
    (lambda: Instance.chain([[0.3, 0.2]], np.ma.array([0.5, 0.5], mask=[0, 1]), [], [1.0]),
     r"node 'v0', field 'initial': got a masked array"),
    (lambda: Instance.chain([[0.3, 0.2]], [0.5, 0.5], [], np.ma.array([1.0], mask=[1])),
     r"'costs': got a masked array"),
    (lambda: Instance.chain([[0.3, 0.2]] * 2, [0.5, 0.5], np.ma.array([[[1.0, 0.0], [0.0, 1.0]]]), [1.0, 1.0]),
     r"'transitions': got a masked array"),
    (lambda: Instance.tree([None, 0], [[0.3, 0.2]] * 2, [[0.5, 0.5], [np.ma.array([1.0, 0.0]), [0.0, 1.0]]],
                           [1.0, 1.0]), r"node 'v1', field 'transition': got a masked array"),
    (lambda: Instance.tree([None], np.ma.array([[0.3, 0.2]]), [[0.5, 0.5]], [1.0]), r"'losses': got a masked array"),
])
def test_masked_arrays_are_refused_not_unmasked(build, match):
    with pytest.raises(InstanceError, match=match):
        build()


def test_messages_quote_a_huge_node_name_cut_short():
    name = "n" * 100_000
    with pytest.raises(InstanceError, match=r"node 'nnn.*\.\.\., field 'cost': must be >= 0") as err:
        Instance.chain([[0.3, 0.2]], [0.5, 0.5], [], [-1.0], names=[name])
    assert len(str(err.value)) < 200
    d = _edited(lambda d: d["nodes"][0].update({"k" * 100_000: 1}))
    with pytest.raises(InstanceError, match=r"unknown field\(s\) \['kkk") as err:
        Instance.from_dict(d)
    assert len(str(err.value)) < 300
    many = Instance.chain([[0.1]] * 50, [1.0], [[[1.0]]] * 49, [1.0] * 50, names=[f"{i}" + name for i in range(50)])
    with pytest.raises(InstanceError, match=r"unknown node 'x'; nodes are .* and 45 more") as err:
        many.node_id("x")
    assert len(str(err.value)) < 500
