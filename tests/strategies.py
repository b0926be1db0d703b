"""Hypothesis strategies for random instances: forests, chains, chains with skips."""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

from ttamer import Instance

#: The three-exit example of the book's chapter *The model*, as an instance file's JSON object.
EXAMPLE_INSTANCE = {
    "name": "three exits",
    "fallback": None,
    "nodes": [
        {"name": "exit1", "parent": None, "cost": 1.0, "losses": [0.60, 0.05], "initial": [0.5, 0.5]},
        {"name": "exit2", "parent": "exit1", "cost": 1.0, "losses": [0.70, 0.20, 0.01],
         "transition": [[0.6, 0.3, 0.1], [0.1, 0.2, 0.7]]},
        {"name": "exit3", "parent": "exit2", "cost": 1.0, "losses": [0.4, 0.02],
         "transition": [[0.8, 0.2], [0.3, 0.7], [0.0, 1.0]]},
    ],
    "skips": [{"from": "exit1", "to": "exit3", "cost": 1.7}],
}


def _stochastic(rng: np.random.Generator, rows: int, k: int, sparse: bool) -> np.ndarray:
    m = rng.dirichlet(np.full(k, 0.7), size=rows)
    if sparse and k > 1:  # exact zeros and deterministic rows exercise ties and empty branches
        m[rng.random((rows, k)) < 0.3] = 0.0
        dead = m.sum(axis=1) == 0
        m[dead, rng.integers(0, k, dead.sum())] = 1.0
        m /= m.sum(axis=1, keepdims=True)
    return m


def build_random(seed: int, n: int, kmax: int, shape: str, fallback: bool, cost_mode: str,
                 loss_mode: str, n_skips: int = 0) -> Instance:
    rng = np.random.default_rng(seed)
    ks = rng.integers(1, kmax + 1, size=n)
    if shape == "chain":
        parents = [None] + list(range(n - 1))
    else:
        parents = [None if (v == 0 or (shape == "forest" and rng.random() < 0.3)) else int(rng.integers(0, v))
                   for v in range(n)]
    if loss_mode == "grid":  # few distinct values: many ties
        losses = [rng.integers(0, 4, size=k) / 4 for k in ks]
    else:
        losses = [rng.random(k) for k in ks]
    sparse = loss_mode == "grid"
    mats = [(_stochastic(rng, 1, ks[v], sparse)[0] if p is None else _stochastic(rng, ks[p], ks[v], sparse))
            for v, p in enumerate(parents)]
    if cost_mode == "zero":
        costs = np.zeros(n)
    elif cost_mode == "grid":
        costs = rng.integers(0, 3, size=n) / 4
    else:
        costs = rng.random(n) * 0.5
    skips = []
    if shape == "chain" and n >= 3:
        pairs = [(i, j) for i in range(n) for j in range(i + 2, n)]
        for idx in rng.permutation(len(pairs))[:n_skips]:
            i, j = pairs[idx]
            skips.append((i, j, float(rng.random() * 0.6)))
    y = float(rng.random()) if fallback else None
    return Instance.tree(parents, losses, mats, costs, fallback=y, skips=skips)


@st.composite
def instances(draw, shapes=("chain", "tree", "forest"), max_nodes: int = 5, kmax: int = 3, skips: bool = False):
    shape = draw(st.sampled_from(shapes))
    n = draw(st.integers(1, max_nodes))
    return build_random(
        seed=draw(st.integers(0, 2**32 - 1)),
        n=n,
        kmax=draw(st.integers(1, kmax)),
        shape=shape,
        fallback=draw(st.booleans()),
        cost_mode=draw(st.sampled_from(["zero", "grid", "uniform"])),
        loss_mode=draw(st.sampled_from(["grid", "uniform"])),
        n_skips=draw(st.integers(0, 3)) if skips else 0,
    )


lams = st.one_of(st.sampled_from([0.0, 1.0, 0.5]), st.floats(0.0, 1.0))
