"""Hostile arguments to the frontier metrics, the bootstrap, ``evaluate_trace``'s seed,
``ablation``'s configurations and ``ttamer evaluate``'s option conflicts: a
:class:`~ttamer.core.errors.TTamerError` that names the argument, no numpy warning."""

from __future__ import annotations

import numpy as np
import pytest

from ttamer.cli import main
from ttamer.core.errors import TTamerError
from ttamer.earlyexit import evaluation, metrics
from ttamer.earlyexit.evaluation import BOOTSTRAP_CHUNK_CELLS, ablation, bootstrap_weights, evaluate_trace
from ttamer.earlyexit.traces import save_trace, synthetic_trace

pytestmark = pytest.mark.filterwarnings("error")


@pytest.fixture(scope="module")
def tr():
    return synthetic_trace(200, 4, 3)


@pytest.mark.parametrize("numpy_seed, seed", [(np.int8(127), 127), (np.uint8(255), 255)])
def test_evaluate_trace_takes_a_numpy_integer_seed_as_its_value(tr, numpy_seed, seed):
    """The bootstrap draws from ``seed + 1`` of the Python integer: no overflow, no wrap to 0."""
    got = evaluate_trace(tr, seed=numpy_seed, n_boot=10, with_chain=False)
    want = evaluate_trace(tr, seed=seed, n_boot=10, with_chain=False)
    assert got.strategies["ttamer"].auc_ci == want.strategies["ttamer"].auc_ci
    assert got.to_dict()["split"]["seed"] == seed


def test_ablation_takes_a_numpy_integer_seed_as_its_value(tr):
    got = ablation(tr, [{"name": "a"}], seed=np.int8(127), n_boot=5)[0]
    want = ablation(tr, [{"name": "a"}], seed=127, n_boot=5)[0]
    assert {k: v for k, v in got.items() if k != "seconds"} == {k: v for k, v in want.items() if k != "seconds"}
    with pytest.raises(TTamerError, match="seed must be >= 0, got -1"):
        ablation(tr, [{"name": "a"}], seed=-1, n_boot=0)


def test_ablation_names_unknown_keys_of_any_type_and_bounds_the_name(tr):
    with pytest.raises(TTamerError, match=r"unknown keys 'zz', 1; a config's keys are name, estimation"):
        ablation(tr, [{1: 2, "zz": 3}], n_boot=0)
    with pytest.raises(TTamerError, match=r"ablation config 'xxx+\.\.\.: unknown keys 'zz'") as err:
        ablation(tr, [{"name": "x" * 10**6, "zz": 3}], n_boot=0)
    assert len(str(err.value)) < 400


@pytest.mark.parametrize("args, match", [
    ((0, 5), r"n \(examples to resample\) must be >= 1, got 0"),
    ((5, -1), "n_boot must be >= 1, got -1"),
    ((5, 0), "n_boot must be >= 1, got 0"),
    ((10**6, 10**6), f"above BOOTSTRAP_CHUNK_CELLS={BOOTSTRAP_CHUNK_CELLS:,}; draw at most 20 replicates"),
    ((5, 2, -1), "seed must be >= 0"),
    ((5.0, 2), "n \\(examples to resample\\) must be an integer"),
])
def test_bootstrap_weights_refuses_bad_sizes_before_drawing(args, match):
    with pytest.raises(TTamerError, match=match):
        bootstrap_weights(*args)


def test_bootstrap_weights_bound_their_counts_and_always_draw_one_replicate(monkeypatch):
    counts = bootstrap_weights(np.int64(5), np.uint8(3), np.random.default_rng(0))
    assert counts.shape == (3, 5) and counts.sum(axis=1).tolist() == [5, 5, 5]
    monkeypatch.setattr(evaluation, "BOOTSTRAP_CHUNK_CELLS", 10)
    assert bootstrap_weights(11, 1).shape == (1, 11)  # one replicate, whatever the examples
    with pytest.raises(TTamerError, match="draw at most 2 replicates at a time"):
        bootstrap_weights(5, 3)


FRONT = np.array([[0.2, 0.5], [0.6, 0.9]])


@pytest.mark.parametrize("call, match", [
    (lambda: metrics.frontier_auc(np.array([[0.2, 5.0]]), 0, 1), r"front\[0\] is \(cost 0.2, accuracy 5\); costs "
                                                                   r"must be >= 0 and accuracies in \[0, 1\]"),
    (lambda: metrics.frontier_auc(np.array([[-0.5, 0.5]]), 0, 1), r"front\[0\] is \(cost -0.5"),
    (lambda: metrics.accuracy_at(np.array([[0.1, 0.5], [0.2, -0.1]]), 0.5), r"front\[1\] is .*accuracy -0.1"),
    (lambda: metrics.cost_at_accuracy(np.array([[0.1, 1.5]]), 0.5), r"front\[0\] is .*accuracy 1.5"),
    (lambda: metrics.frontier_auc(FRONT, -1e308, 1e308), r"need lo < hi with hi - lo a finite float64"),
    (lambda: metrics.frontier_auc(FRONT, 0.5, 0.5), r"need lo < hi"),
    (lambda: metrics.hull_frontier([-1e308, 1e308], [0.5, 0.6]), r"point\[0\] is \(cost -1e\+308, accuracy 0.5\)"),
    (lambda: metrics.pareto_frontier([0.1, 0.2], [0.5, 1.5]), r"point\[1\] is .*accuracies in \[0, 1\]"),
    (lambda: metrics.pareto_indices([0.1, 0.2], [-0.5, 0.5]), r"point\[0\] is"),
])
def test_frontier_metrics_refuse_costs_below_0_and_accuracies_outside_0_1(call, match):
    with pytest.raises(TTamerError, match=match):
        call()


def test_frontier_metrics_keep_points_rounded_past_their_bounds():
    """A mean under resampling weights summing to 1 up to rounding may pass 1 by an ulp, and
    a mean cost summed from differences along a sweep may fall below 0 by one."""
    f = metrics.hull_frontier([-1e-16, 0.5], [0.5, 1.0 + 1e-15])
    assert f[0].tolist() == [-1e-16, 0.5]
    assert metrics.frontier_auc(f, -1.0, 1.0, "hull") == pytest.approx((0.5 * (0.5 + 1.0) / 2 + 0.5) / 2)


def test_frontier_auc_of_a_range_far_from_the_frontier_is_0_without_overflow():
    assert metrics.frontier_auc(np.array([[1.7e308, 0.5]]), -1.7e308, -1e308) == 0.0


def test_evaluate_refuses_option_conflicts_before_reading_the_trace(tmp_path, capsys):
    """An option conflict is the options' fault, not the file's: reported as such, and before
    the trace is read (a missing file is not what the user hears of)."""
    path = tmp_path / "tr.npz"
    save_trace(path, synthetic_trace(200, 4, 3))
    for file in (path, tmp_path / "missing.npz"):
        assert main(["evaluate", str(file), "--estimation", "chain", "--cv-max-examples", "40"]) == 2
        err = capsys.readouterr().err
        assert err.startswith("ttamer evaluate: error: --cv-max-examples applies to the threshold estimation")
        assert "trace file" not in err and err.count("\n") == 1
