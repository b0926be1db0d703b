"""Internal helpers of the early-exit estimators refuse malformed arguments with a message
naming them (they used to index past arrays or return silently wrong values)."""

import numpy as np
import pytest

from ttamer.core.errors import TTamerError
from ttamer.earlyexit.baselines import agreement_run_length
from ttamer.earlyexit.features import agreement_run
from ttamer.earlyexit.isotonic import monotone_losses
from ttamer.earlyexit.states import running_argmax


@pytest.mark.parametrize("layout", [(1, 2, 2), (1, 2, 3.0), (0, 6, 1), [1, 6, 1], (1, 6)])
def test_monotone_losses_refuses_a_layout_that_is_not_the_losses(layout):
    with pytest.raises(TTamerError, match="monotone_losses: layout must be"):
        monotone_losses(np.ones(6), np.ones(6), layout, True)


def test_monotone_losses_refuses_weights_of_another_length():
    with pytest.raises(TTamerError, match="weight a 1-D float array"):
        monotone_losses(np.ones(6), np.ones(5), (1, 6, 1), True)


def test_monotone_losses_pools_adjacent_violators():
    got = monotone_losses(np.array([0.1, 0.5, 0.3, 0.2]), np.ones(4), (1, 4, 1), True)
    assert np.allclose(got, [0.3, 0.3, 0.3, 0.2])


@pytest.mark.parametrize("values", [np.ones(3), np.ones((2, 0)), np.array([["a", "b"]]), [[1.0, 2.0]]])
def test_running_argmax_refuses_what_is_not_a_matrix_of_numbers(values):
    with pytest.raises(TTamerError, match=r"running_argmax: values must be an array \[N, L\]"):
        running_argmax(values)


def test_running_argmax_refuses_nan():
    # a nan compares false with everything: the running best would silently stop moving
    with pytest.raises(TTamerError, match="must not hold nan"):
        running_argmax(np.array([[1.0, np.nan, 3.0]]))


def test_running_argmax_keeps_the_first_largest():
    assert running_argmax(np.array([[1.0, 3.0, 3.0, 4.0]])).tolist() == [[0, 1, 1, 3]]


@pytest.mark.parametrize("cap", [-1, 1.5, "2", None])
def test_agreement_run_refuses_a_cap_that_is_not_a_count(cap):
    with pytest.raises(TTamerError, match="agreement_run: cap"):
        agreement_run(np.zeros((2, 3), dtype=np.int64), cap)


@pytest.mark.parametrize("pred", [np.zeros((2, 3)), np.zeros(3, dtype=np.int64), [[0, 1]]])
def test_agreement_run_length_refuses_what_is_not_integer_predictions(pred):
    with pytest.raises(TTamerError, match=r"pred must be an integer array \[N, L\]"):
        agreement_run_length(pred)


def test_state_encoder_layout_refuses_an_exit_it_does_not_have():
    from ttamer.earlyexit.features import StateEncoder, StateSpec
    from ttamer.earlyexit.traces import synthetic_trace
    tr = synthetic_trace(200, 3, 4, seed=0)
    enc = StateEncoder.fit(StateSpec(K=3, agreement=1), tr)
    assert enc.layout(2)[0] == 2
    for i in (3, -1, 1.5):
        with pytest.raises(TTamerError, match="StateEncoder.layout: exit"):
            enc.layout(i)
