"""Smoke tests of the figures in ttamer.plots (matplotlib Agg backend)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

import ttamer  # noqa: E402
from ttamer.plots import plot_frontier, plot_policy, policy_annotations, tree_layout  # noqa: E402

CHAIN = ttamer.Instance.chain(
    [[0.6, 0.05], [0.7, 0.2, 0.01], [0.4, 0.02]], [0.5, 0.5],
    [[[0.6, 0.3, 0.1], [0.1, 0.2, 0.7]], [[0.8, 0.2], [0.3, 0.7], [0.0, 1.0]]], [1.0, 1.0, 1.0],
    names=["exit1", "exit2", "exit3"], skips=[("exit1", "exit3", 1.7)], name="three exits",
)
TREE = ttamer.Instance.tree(
    [None, 0, 0, None], [[0.5, 0.1], [0.3, 0.2], [0.4, 0.0], [0.2, 0.3]],
    [[0.5, 0.5], [[0.5, 0.5], [0.2, 0.8]], [[0.5, 0.5], [0.2, 0.8]], [0.3, 0.7]], [1, 1, 2, 0.5],
)


def test_tree_layout_parents_centred_and_layers_by_depth():
    x, y = tree_layout(TREE)
    assert y.tolist() == [-1, -2, -2, -1]
    assert x[0] == pytest.approx((x[1] + x[2]) / 2)
    assert len(set(x[[1, 2, 3]])) == 3


@pytest.mark.parametrize("recall", [True, False])
def test_plot_policy_table_policies_on_chain_with_skip(recall):
    sol = ttamer.solve(CHAIN, 0.95, recall=recall)
    ax = plot_policy(sol)
    texts = [t.get_text() for t in ax.texts]
    assert any("skip" in t for t in texts)
    assert any(t.startswith("exit1\nK=2") for t in texts)
    notes, _ = policy_annotations(sol.policy)
    for v in range(CHAIN.n):  # one decision drawn per state
        assert notes[v].count("s=") == CHAIN.n_states[v]
    # the decisions drawn after the first exit are the optimal ones: the exhaustive solver (a
    # different algorithm) takes the same action after exit1 revealed each of its states
    ex = ttamer.solve(CHAIN, 0.95, recall=recall, method="exhaustive").policy
    for s, line in enumerate(notes[0].split("\n")):
        states = np.full((1, CHAIN.n), -1, dtype=np.int64)
        states[0, 0] = s
        act = int(ex.decide(states, np.array([0]))[0])
        assert line == f"s={s}→{'stop' if act < 0 else CHAIN.names[act]}"
    plt.close(ax.figure)


def test_plot_policy_index_policy_shows_sigma():
    sol = ttamer.solve(TREE, 0.9, recall=True, method="index")
    notes, start = policy_annotations(sol.policy)
    assert all(notes[v].startswith("σ=") for v in range(TREE.n))
    ax = plot_policy(sol)
    assert "E[θ]" in ax.get_title()
    plt.close(ax.figure)


def test_plot_frontier_bands_and_errors():
    pts = {"a": np.array([[2.0, 0.9], [1.0, 0.8]])}
    ax = plot_frontier(pts, bands={"a": np.array([[0.85, 0.95], [0.75, 0.85]])})
    line = ax.get_lines()[0]
    assert line.get_xdata().tolist() == [1.0, 2.0]  # sorted by cost
    plt.close(ax.figure)
    with pytest.raises(ttamer.TTamerError, match="unknown strategies"):
        plot_frontier(pts, bands={"b": np.zeros((2, 2))})
    with pytest.raises(ttamer.TTamerError, match="strategy 'a'"):
        plot_frontier({"a": np.zeros((3, 3))})
