"""Benchmarks of the ttamer solvers and early-exit strategies (the book's chapter *Performance*).

Run ``python -m ttamer.benchmarks [--quick | --smoke] [--json PATH] [--device cpu|cuda] [--only serving]``.
Every ratio is measured in one run, on one machine, with ``time.perf_counter`` (best of ``k``
repeats); ``--device cuda`` runs the serving section on the GPU (and counts its host--device
synchronisations per exit), ``--only serving`` runs that section alone. Sections:

* ``compare``   -- the index solver against the ``(i, s, X)`` chain DP, the exhaustive solver,
  the LP (cvxpy) and QuantEcon's ``DiscreteDP`` backward induction on the same
  chain-with-recall instances (values must agree);
* ``scaling``   -- the index solver against the number of nodes, the states per node and the
  tree shape (chain, balanced binary, star, random recursive tree), with fitted log-log
  exponents; the chain DP against skip density;
* ``targets``   -- the performance targets of the book's chapter *Performance*, each measured;
* ``throughput``-- example-exits per second of every early-exit strategy on synthetic traces;
* ``memory``    -- peak memory (``tracemalloc``) of the index solver;
* ``serving``   -- the serving runtime on a multi-exit MLP (the book's chapter *Measured: a
  served early-exit policy*): the runtime forced to the last exit against the plain network,
  one query at a time and batched, the decision overhead per example per exit, and measured
  against simulated cost in the mode served (one query at a time the batch-1 cost profile;
  batched, each exit's time on the rows still running in its batch; every strategy batched also
  with its batches kept whole until their last row stops).

Two regimes of random instances (``ttamer.theory.synthetic.random_instance``): ``typical`` (its
defaults: deeper exits better, ``depth_decay=0.8``, ``cost_scale=0.1``), where the surrogates
stay small, and ``dense`` (``depth_decay=1``, ``cost_scale=0.01``), where a chain's surrogate
keeps ``Θ(n K)`` atoms -- the worst case of the bound ``O(Σ_v K_parent K_v N)``.

The functions are importable (the book's Performance notebook calls them); nothing here is an
algorithm of the package, only instances, timers and the QuantEcon model. The module sits in the
top layer of the package, beside the command line.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
import tracemalloc
import warnings
from collections.abc import Mapping
from typing import Any, Callable

import numpy as np
import scipy.sparse as sp

from .core.errors import TTamerError
from .core.instance import Instance
from .core.safeio import atomic_write, check_target
from .core.validate import check_choice, check_count, check_numbers, check_seed, short_repr
from .solvers.exhaustive import MAX_STATES, state_space_bound
from .solvers.index import compute_indices
from .solvers.solve import solve
from .theory.synthetic import correlated_transition, random_instance

LAM = 0.7
#: The two regimes of random instances, as keyword arguments of
#: :func:`~ttamer.theory.synthetic.random_instance` (module docstring).
REGIMES = {"typical": {}, "dense": {"depth_decay": 1.0, "cost_scale": 0.01}}
#: The tree shapes of :func:`shaped` (:func:`shape_parents`).
SHAPES = ("chain", "balanced", "star", "random")
#: The devices the serving section runs on (``--device``), checked before torch is imported.
DEVICES = ("cpu", "cuda")
#: Most numbers (examples x exits x classes) of a :func:`synthetic_trace`, checked before any
#: allocation: its probabilities take 4 bytes per number (1 GiB at this limit).
MAX_TRACE_CELLS = 2**28
#: Most classes of a :func:`synthetic_trace` (it draws a ``classes x classes`` identity).
MAX_TRACE_CLASSES = 1000

#: The sizes of each profile -- ``smoke`` (the test suite), ``quick`` (CI, the book) and ``full``.
PROFILES: dict[str, dict[str, Any]] = {
    "smoke": dict(repeats=1, compare=[(3, 2), (5, 3)], exhaustive_max=5, lp_max=(5, 3),
                  nodes=[8, 16, 32], nodes_k=4, states=[2, 4, 8], states_n=8, shape_n=200, shape_k=4,
                  skip_n=8, skip_k=3, skip_probs=[0.0, 0.5, 1.0], trace=(2000, 4, 5), sweep=10,
                  target_chain=(40, 8), target_forest=1000, memory_n=(40, 8), serving=(40, 128, 1),
                  evaluate=[500, 1000], evaluate_shape=(6, 5)),
    "quick": dict(repeats=5, compare=[(4, 3), (6, 3), (10, 4), (20, 8)], exhaustive_max=6, lp_max=(20, 8),
                  nodes=[25, 50, 100, 200], nodes_k=16, states=[2, 4, 8, 16, 32], states_n=50,
                  shape_n=2000, shape_k=8, skip_n=20, skip_k=4, skip_probs=[0.0, 0.1, 0.3, 0.6, 1.0],
                  trace=(20000, 6, 10), sweep=50, target_chain=(400, 32), target_forest=10_000,
                  memory_n=(200, 32), serving=(200, 768, 3), evaluate=[1000, 4000],
                  evaluate_shape=(12, 10)),
    "full": dict(repeats=5, compare=[(4, 3), (6, 3), (8, 3), (10, 4), (20, 8), (30, 8), (20, 16)],
                 exhaustive_max=8, lp_max=(30, 16),
                 nodes=[25, 50, 100, 200, 400, 800], nodes_k=16, states=[2, 4, 8, 16, 32, 64], states_n=100,
                 shape_n=10_000, shape_k=8, skip_n=40, skip_k=6, skip_probs=[0.0, 0.05, 0.1, 0.3, 0.6, 1.0],
                 trace=(200_000, 8, 10), sweep=100, target_chain=(400, 32), target_forest=10_000,
                 memory_n=(400, 32), serving=(400, 768, 5),
                 evaluate=[1000, 10_000, 100_000, 1_000_000], evaluate_shape=(12, 10)),
}


# ---------------------------------------------------------------------------------------------
# Timing
# ---------------------------------------------------------------------------------------------
def best_of(fn: Callable[[], Any], repeats: int = 3, budget: float = 30.0, min_round: float = 0.02
            ) -> tuple[float, Any]:
    """``(best seconds per call over repeats, last result)``. Each repeat is a round that calls
    ``fn`` until it has taken ``min_round`` seconds (once for anything slower), as ``timeit``
    does, so that a call of microseconds is not timed alone; repeating stops once the total time
    exceeds ``budget`` seconds (one call always happens)."""
    best, out, spent = math.inf, None, 0.0
    for _ in range(max(1, repeats)):
        calls, t0 = 0, time.perf_counter()
        while True:
            out = fn()
            calls += 1
            dt = time.perf_counter() - t0
            if dt >= min_round or spent + dt > budget:
                break
        best, spent = min(best, dt / calls), spent + dt
        if spent > budget:
            break
    return best, out


def fit_exponent(x: Any, t: Any) -> float:
    """Slope of ``log t`` against ``log x`` by least squares (the fitted power ``t ∝ x^b``).

    Raises
    ------
    TTamerError
        ``x`` (sizes) or ``t`` (times) is not a 1-D array of finite positive numbers, their
        lengths differ, or ``x`` holds fewer than two distinct sizes.
    """
    x = _positive(x, "x (sizes)")
    t = _positive(t, "t (times)")
    if len(x) != len(t):
        raise TTamerError(f"fit_exponent: x (sizes) and t (times) must have the same length, got {len(x)} and {len(t)}")
    if len(np.unique(x)) < 2:
        raise TTamerError(f"fit_exponent needs at least two distinct sizes x to fit a slope, got "
                          f"{short_repr(x.tolist())}")
    lx, lt = np.log(x), np.log(t)
    return float(np.polyfit(lx, lt, 1)[0])


def _positive(values: Any, name: str) -> np.ndarray:
    """``values`` as a 1-D float array of finite numbers ``> 0``, else a :class:`~ttamer.core.errors.TTamerError`."""
    arr = check_numbers(values, name, low=0.0)
    if (arr <= 0).any():
        i = int(np.argmax(arr <= 0))
        raise TTamerError(f"{name}[{i}] must be > 0 (the fit is in log-log), got {arr[i]:g}")
    return arr


def peak_memory(fn: Callable[[], Any]) -> float:
    """Peak traced allocation (MiB) while ``fn`` runs (NumPy reports to ``tracemalloc``)."""
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1] / 2**20
    finally:
        tracemalloc.stop()


# ---------------------------------------------------------------------------------------------
# Instances
# ---------------------------------------------------------------------------------------------
def chain(n: int, k: int, regime: str = "typical", seed: int = 0) -> Instance:
    """A random chain of ``n`` exits with ``k`` states each (see :data:`REGIMES`)."""
    check_choice("regime", regime, tuple(REGIMES))
    return random_instance(seed, "chain", n=n, k=k, **REGIMES[regime])


def shape_parents(shape: str, n: int, rng: np.random.Generator) -> list[int | None]:
    """Parents of a chain, a balanced binary tree, a star (one root, ``n − 1`` leaves) or a
    random recursive tree (parent uniform among earlier nodes)."""
    check_choice("shape", shape, SHAPES)
    n = check_count(n, "n (nodes)")
    if shape == "chain":
        return [None] + list(range(n - 1))
    if shape == "balanced":
        return [None] + [(v - 1) // 2 for v in range(1, n)]
    if shape == "star":
        return [None] + [0] * (n - 1)
    return [None] + [int(rng.integers(0, v)) for v in range(1, n)]  # random


def shaped(shape: str, n: int, k: int, seed: int = 0, correlation: float = 0.5, depth_decay: float = 0.8,
           cost_scale: float = 0.1) -> Instance:
    """A random tree of the given shape, drawn like ``random_instance`` (losses decreasing
    with depth, correlated transitions, costs ``cost_scale · U(0.5, 1.5)``).

    Raises
    ------
    TTamerError
        ``shape`` is not one of :data:`SHAPES`, or ``n`` (nodes) or ``k`` (states per node)
        is not an integer ``>= 1``.
    """
    check_choice("shape", shape, SHAPES)
    n, k = check_count(n, "n (nodes)"), check_count(k, "k (states per node)")
    rng = np.random.default_rng(seed)
    parents = shape_parents(shape, n, rng)
    depth = np.zeros(n, dtype=int)
    for v, p in enumerate(parents):
        depth[v] = 0 if p is None else depth[p] + 1
    losses = [np.sort(rng.random(k))[::-1] * depth_decay ** depth[v] for v in range(n)]
    mats = [rng.dirichlet(np.ones(k)) if p is None else correlated_transition(rng, k, k, correlation)
            for p in parents]
    costs = cost_scale * rng.uniform(0.5, 1.5, size=n)
    return Instance.tree(parents, losses, mats, costs, name=f"random {shape}")


# ---------------------------------------------------------------------------------------------
# QuantEcon: the chain-with-recall MDP over (i, s, X), solved by backward induction
# ---------------------------------------------------------------------------------------------
def quantecon_chain_mdp(inst: Instance, lam: float):
    """``DiscreteDP`` (state-action-pair form, sparse ``Q``) of a chain with recall, and the
    index of its start state.

    States: ``(i, s, m)`` = exit ``i`` consulted last, it revealed ``s``, the best scaled loss
    so far is the level ``L_m`` (levels: the sorted distinct ``λ ℓ_v(s)`` and ``λ y``); then
    the start and an absorbing terminal state. Actions: *stop* (reward ``−L_m``, to the
    terminal) and *continue* to exit ``i + 1`` (reward ``−κ c_{i+1}``; to
    ``(i+1, t, min(m, lev(t)))`` with probability ``P_{i+1}[s, t]``). Rewards are negated
    trade-offs because ``DiscreteDP`` maximises.
    """
    from quantecon.markov import DiscreteDP

    if not inst.is_chain or inst.skips:
        raise ValueError("the QuantEcon model is built for chains without skips")
    kappa = 1.0 - lam
    scaled = [lam * np.asarray(l) for l in inst.losses]
    extra = [] if inst.fallback is None else [lam * inst.fallback]
    levels = np.unique(np.concatenate(scaled + [np.array(extra)]))
    M = len(levels)
    lev = [np.searchsorted(levels, l) for l in scaled]
    ks = inst.n_states
    offset = np.concatenate([[0], np.cumsum(ks * M)])
    start, terminal = int(offset[-1]), int(offset[-1]) + 1
    n_states = terminal + 1
    rows, cols, probs, reward, s_idx, a_idx = [], [], [], [], [], []
    n_sa = 0

    def add(states: np.ndarray, action: int, r: np.ndarray, nxt: np.ndarray, p: np.ndarray) -> None:
        """Pairs ``(states[j], action)`` with reward ``r[j]`` and transitions ``nxt[j, :]``
        with probabilities ``p[j, :]``."""
        nonlocal n_sa
        sa = n_sa + np.arange(len(states))
        s_idx.append(states), a_idx.append(np.full(len(states), action)), reward.append(r)
        rows.append(np.repeat(sa, nxt.shape[1])), cols.append(nxt.ravel()), probs.append(p.ravel())
        n_sa += len(states)

    def successors(i: int, m: np.ndarray) -> np.ndarray:
        """States ``(i, t, min(m, lev_i(t)))`` for every ``t``: shape ``(len(m), K_i)``."""
        t = np.arange(ks[i])
        return offset[i] + t[None, :] * M + np.minimum(m[:, None], lev[i][None, :])

    for i in range(inst.n):
        s, m = np.divmod(np.arange(ks[i] * M), M)  # state (i, s, m) = offset_i + s M + m
        here = offset[i] + s * M + m
        add(here, 0, -levels[m], np.full((len(here), 1), terminal), np.ones((len(here), 1)))
        if i + 1 < inst.n:
            P = inst.transitions[i + 1]
            add(here, 1, np.full(len(here), -kappa * inst.costs[i + 1]), successors(i + 1, m), P[s])
    if inst.fallback is not None:  # stopping at once answers with the fallback
        m0 = int(np.searchsorted(levels, extra[0]))
        add(np.array([start]), 0, -levels[[m0]], np.array([[terminal]]), np.ones((1, 1)))
    else:  # X = +inf: the first loss is always the best so far, as with m0 = the top level
        m0 = M - 1
    add(np.array([start]), 1, np.array([-kappa * inst.costs[0]]), successors(0, np.array([m0])),
        inst.transitions[0])
    add(np.array([terminal]), 0, np.zeros(1), np.array([[terminal]]), np.ones((1, 1)))
    Q = sp.csr_matrix((np.concatenate(probs), (np.concatenate(rows), np.concatenate(cols))),
                      shape=(n_sa, n_states))
    with warnings.catch_warnings():  # beta = 1 disables the infinite-horizon methods: intended
        warnings.simplefilter("ignore", UserWarning)
        ddp = DiscreteDP(np.concatenate(reward), Q, 1.0, np.concatenate(s_idx), np.concatenate(a_idx))
    return ddp, start


def solve_quantecon(inst: Instance, lam: float) -> float:
    """The optimal recall value by QuantEcon backward induction (``n + 1`` periods)."""
    from quantecon.markov import backward_induction

    ddp, start = quantecon_chain_mdp(inst, lam)
    vs, _ = backward_induction(ddp, inst.n + 1)
    return float(-vs[0, start])


# ---------------------------------------------------------------------------------------------
# Sections
# ---------------------------------------------------------------------------------------------
def compare_solvers(sizes: list[tuple[int, int]], repeats: int = 3, exhaustive_max: int = 6,
                    lp_max: tuple[int, int] = (20, 8), regime: str = "typical", lam: float = LAM) -> list[dict]:
    """Index (compiled on a chain) vs the index solver's NumPy steps vs chain DP vs exhaustive vs
    LP vs QuantEcon on chains with recall: seconds per solve, ratios to the index solver, and the
    largest value disagreement."""
    solve(chain(3, 2), lam, method="lp")  # import and warm cvxpy and numba (QuantEcon)
    solve_quantecon(chain(3, 2), lam)            # once, outside the timings
    rows = []
    for n, k in sizes:
        inst = chain(n, k, regime)
        row: dict[str, Any] = {"n": n, "K": k}
        t, sol = best_of(lambda: solve(inst, lam, method="index"), repeats)
        row["index_s"], values = t, {"index": sol.value}
        t, res = best_of(lambda: compute_indices(inst, lam, compiled=False), repeats)
        row["index_numpy_s"], values["index_numpy"] = t, res.value
        t, sol = best_of(lambda: solve(inst, lam, method="dp"), repeats)
        row["dp_s"], values["dp"] = t, sol.value
        if n <= exhaustive_max and state_space_bound(inst, True) <= MAX_STATES:
            t, sol = best_of(lambda: solve(inst, lam, method="exhaustive"), 1)
            row["exhaustive_s"], values["exhaustive"] = t, sol.value
        if n <= lp_max[0] and k <= lp_max[1]:
            t, sol = best_of(lambda: solve(inst, lam, method="lp"), min(repeats, 2))
            row["lp_s"], values["lp"] = t, sol.value
        t, v = best_of(lambda: solve_quantecon(inst, lam), min(repeats, 2))
        row["quantecon_s"], values["quantecon"] = t, v
        for name in ("index_numpy", "dp", "exhaustive", "lp", "quantecon"):
            if f"{name}_s" in row:
                row[f"{name}/index"] = row[f"{name}_s"] / row["index_s"]
        row["max_value_gap"] = max(abs(v - values["index"]) for v in values.values())
        row["value"] = values["index"]
        rows.append(row)
    return rows


def _chain_rows(sizes: list[tuple[int, int]], repeats: int, regimes) -> list[dict]:
    """Index solver on chains of ``n`` exits with ``k`` states each, for every ``(n, k)``, in each regime."""
    rows = []
    for regime in regimes:
        for n, k in sizes:
            inst = chain(n, k, regime)
            t, res = best_of(lambda: compute_indices(inst, LAM), repeats)
            rows.append({"regime": regime, "n": n, "K": k, "seconds": t, "max_atoms": int(res.atoms.max()),
                         "mean_atoms": float(res.atoms.mean())})
    return rows


def scale_nodes(ns: list[int], k: int, repeats: int = 3, regimes=("typical", "dense")) -> list[dict]:
    """Index solver on chains of ``n`` exits, ``k`` states each, in each regime."""
    return _chain_rows([(n, k) for n in ns], repeats, regimes)


def scale_states(ks: list[int], n: int, repeats: int = 3, regimes=("typical", "dense")) -> list[dict]:
    """Index solver on chains of ``n`` exits against the states per exit ``K``."""
    return _chain_rows([(n, k) for k in ks], repeats, regimes)


def scale_shapes(n: int, k: int, repeats: int = 3, sizes: int = 3) -> list[dict]:
    """Index solver on trees of each shape, ``n/4^j`` to ``n`` nodes (``k`` states each)."""
    rows = []
    for shape in SHAPES:
        for j in range(sizes - 1, -1, -1):
            m = max(4, n // 4**j)
            inst = shaped(shape, m, k)
            t, res = best_of(lambda: compute_indices(inst, LAM), repeats)
            rows.append({"shape": shape, "n": m, "K": k, "seconds": t, "per_node_us": 1e6 * t / m,
                         "max_atoms": int(res.atoms.max())})
    return rows


def scale_skips(n: int, k: int, probs: list[float], repeats: int = 3) -> list[dict]:
    """The chain DP (``method="dp"``, recall and no recall) against the skip density."""
    rows = []
    for p in probs:
        inst = random_instance(1, "skips", n=n, k=k, skip_prob=p)
        t_rec, _ = best_of(lambda: solve(inst, LAM, recall=True, method="dp"), repeats)
        t_norec, _ = best_of(lambda: solve(inst, LAM, recall=False, method="dp"), repeats)
        rows.append({"skip_prob": p, "n": n, "K": k, "skips": len(inst.skips),
                     "recall_dp_s": t_rec, "norecall_dp_s": t_norec})
    return rows


def one_pass_floor(inst: Instance, repeats: int = 5) -> float:
    """Seconds for one matrix-vector product per transition matrix (the least any exact
    method that reads every transition must spend)."""
    x = [np.ones(P.shape[1]) for P in inst.transitions]

    def run() -> None:
        for P, v in zip(inst.transitions, x):
            P @ v
    return best_of(run, repeats)[0]


def targets(p: dict[str, Any], compare_rows: list[dict] | None = None, throughput_rows: list[dict] | None = None,
            repeats: int = 3) -> list[dict]:
    """Reference points for the solvers' speed, each measured (``within`` says whether the
    measurement is within its ``reference``; informative, nothing is asserted). The dense chain
    is a reference only: there the surrogates hold ``Θ(n²K²)`` numbers against the one-pass
    floor's ``Θ(nK²)``, so its ratio to the floor grows like ``nK`` and is expected to exceed
    the reference. Rows already measured by :func:`compare_solvers` /
    :func:`strategy_throughput` are reused. ``p`` is a profile of :data:`PROFILES` (its
    ``target_chain`` and ``target_forest`` are used)."""
    _check_profile_sizes(p, ("target_chain", "target_forest"), "targets")
    out = []
    row = next((r for r in compare_rows or [] if (r["n"], r["K"]) == (20, 8) and "lp_s" in r), None)
    if row is None:
        row = compare_solvers([(20, 8)], repeats, exhaustive_max=0, lp_max=(20, 8))[0]
    out.append({"target": "index >= 1000x faster than the LP, 20-exit x 8-state chain",
                "measured": row["lp/index"], "unit": "x", "reference": 1000.0, "within": row["lp/index"] >= 1000.0})
    n, k = p["target_chain"]
    for regime in ("typical", "dense"):
        inst = chain(n, k, regime)
        t, _ = best_of(lambda: compute_indices(inst, LAM), repeats if regime == "typical" else 1)
        floor = one_pass_floor(inst)
        what = (f"{n}-exit x {k}-state chain (typical) within 50x of a one-pass floor" if regime == "typical" else
                f"{n}-exit x {k}-state chain (dense) vs a one-pass floor: expected above 50x (ratio grows like nK)")
        out.append({"target": what, "measured": t / floor, "unit": "x floor", "reference": 50.0,
                    "within": t / floor <= 50.0, "seconds": t, "floor_s": floor})
    m = p["target_forest"]
    big = {f"random forest of {m} nodes (1% roots)": random_instance(2, "forest", n=m, k=8, roots=max(1, m // 100)),
           f"random tree of {m} nodes": shaped("random", m, 8), f"balanced tree of {m} nodes": shaped("balanced", m, 8)}
    for label, inst in big.items():
        t, _ = best_of(lambda: compute_indices(inst, LAM), repeats)
        out.append({"target": f"{label} x 8 states in seconds", "measured": t, "unit": "s", "reference": 10.0,
                    "within": t <= 10.0})
    if throughput_rows:
        rate = {r["strategy"]: r["example_exits_per_s"] for r in throughput_rows}
        slowest = min((v, k) for k, v in rate.items() if not k.startswith("ttamer"))
        rollout = rate["ttamer (policy rollout only)"]
        out.append({"target": f"strategy evaluation >= 10 million example-exits/s (slowest baseline: {slowest[1]})",
                    "measured": slowest[0], "unit": "1/s", "reference": 1e7, "within": slowest[0] >= 1e7})
        out.append({"target": "strategy evaluation >= 10 million example-exits/s (T-Tamer policy rollout)",
                    "measured": rollout, "unit": "1/s", "reference": 1e7, "within": rollout >= 1e7})
    return out


def _check_profile_sizes(p: Any, keys: tuple[str, ...], where: str) -> None:
    """Raise :class:`~ttamer.core.errors.TTamerError` unless ``p`` is a mapping holding ``keys`` (a profile)."""
    if not isinstance(p, Mapping):
        raise TTamerError(f"{where}: p must be a profile of sizes (a dict such as PROFILES['quick']), got "
                          f"{short_repr(p)}")
    missing = [k for k in keys if k not in p]
    if missing:
        raise TTamerError(f"{where}: the profile p lacks {missing}; a profile of PROFILES holds them "
                          f"(e.g. PROFILES['quick'])")


# ---------------------------------------------------------------------------------------------
# Early-exit strategies: throughput on synthetic traces
# ---------------------------------------------------------------------------------------------
def synthetic_trace(n: int, exits: int, classes: int, seed: int = 0):
    """A trace whose exits grow more confident and more accurate with depth (Dirichlet
    softmax outputs around the label), costs ``1`` per exit.

    At most :data:`MAX_TRACE_CELLS` numbers ``n · exits · classes`` and
    :data:`MAX_TRACE_CLASSES` classes, checked before anything is allocated.

    Raises
    ------
    TTamerError
        ``n``, ``exits`` (``>= 1``) or ``classes`` (``>= 2``) is not such an integer, the
        trace would exceed those limits, or ``seed`` is not a seed.
    """
    from .earlyexit.traces import Trace

    n, exits = check_count(n, "n (examples)"), check_count(exits, "exits")
    classes = check_count(classes, "classes", minimum=2, maximum=MAX_TRACE_CLASSES)
    cells = n * exits * classes
    if cells > MAX_TRACE_CELLS:
        raise TTamerError(f"synthetic_trace: n x exits x classes = {cells:,} numbers, above MAX_TRACE_CELLS = "
                          f"{MAX_TRACE_CELLS:,}; ask for fewer examples, exits or classes")
    rng = np.random.default_rng(check_seed(seed))
    labels = rng.integers(0, classes, size=n)
    probs = np.empty((n, exits, classes), dtype=np.float32)
    for i in range(exits):
        strength = 0.5 + 3.0 * i / max(exits - 1, 1)
        logits = rng.normal(size=(n, classes)) + strength * np.eye(classes)[labels] * rng.random((n, 1)) * 2
        e = np.exp(logits - logits.max(axis=1, keepdims=True))
        probs[:, i] = e / e.sum(axis=1, keepdims=True)
    meta = {"model": "synthetic", "dataset": "synthetic", "cost_unit": "exit", "seed": seed,
            "exit_names": [f"exit{i}" for i in range(exits)]}
    return Trace.build(probs, labels, np.ones(exits), meta)


def strategy_throughput(n: int, exits: int, classes: int, sweep: int = 50, repeats: int = 3) -> list[dict]:
    """Example-exits per second of every strategy: a sweep of ``P`` parameter values over
    ``N`` examples and ``L`` exits counts ``P · N · L`` example-exits."""
    from .earlyexit import baselines
    from .earlyexit.calibration import EarlyExitTamer
    from .earlyexit.chain import run_policy

    trace = synthetic_trace(n, exits, classes)
    cal, test = trace.split(0.5, seed=0)
    N, L = test.n_examples, test.n_exits
    thr = np.linspace(0.0, 1.0, sweep)
    runs: dict[str, Callable[[], Any]] = {
        "max-prob": lambda: baselines.max_prob_threshold(test, thr),
        "max-prob-sdn": lambda: baselines.max_prob_threshold(test, thr, fallback="confident"),
        "entropy": lambda: baselines.entropy_threshold(test, np.linspace(0, np.log(classes), sweep)),
        "patience": lambda: baselines.patience(test, list(range(L))),
        "static": lambda: baselines.static_exit(test, list(range(L))),
        "full": lambda: baselines.full_model(test),
        "oracle": lambda: baselines.oracle(test),
    }
    tamer = EarlyExitTamer(lam=0.9, K=8, feature="max_prob", loss="label").fit(cal)
    lams = np.linspace(0.05, 0.999, max(2, sweep // 5))
    states = tamer.states(test)
    runs["ttamer (policy rollout only)"] = lambda: run_policy(tamer.solution_, states, test)
    runs["ttamer (encode states + rollout)"] = lambda: tamer.decide(test)
    runs["ttamer (solve + run a λ sweep)"] = lambda: tamer.decide_sweep(test, lams, refine=False)
    from .earlyexit.pathwise import PathwiseTamer

    pw = PathwiseTamer(lam=0.9, feature="max_prob").fit(cal)
    x = pw.model_.features.transform(test)
    runs["ttamer path-wise (rule only)"] = lambda: pw.model_.decide(pw.rule_, test, x, pw.model_.answers(test))
    runs["ttamer path-wise (fit + run a λ sweep)"] = lambda: pw.decide_sweep(test, lams, refine=False)
    rows = []
    for name, fn in runs.items():
        t, dec = best_of(fn, repeats)
        P = dec.answer.shape[0] if dec.answer.ndim == 2 else 1
        rows.append({"strategy": name, "params": P, "examples": N, "exits": L, "seconds": t,
                     "example_exits_per_s": P * N * L / t})
    return rows


def evaluate_scaling(ns: list[int], exits: int, classes: int) -> list[dict]:
    """``ttamer evaluate`` with its defaults (:func:`ttamer.earlyexit.evaluation.evaluate_trace`: the
    threshold estimation, the paper's chain, 200 bootstrap replicates) on synthetic traces of
    ``n`` examples, once each, and the default fit (:class:`~ttamer.earlyexit.tamer.ThresholdTamer`)
    on the calibration half alone: seconds and example-exits per second."""
    from .earlyexit.tamer import ThresholdTamer
    from .earlyexit.evaluation import evaluate_trace

    rows = []
    for n in ns:
        trace = synthetic_trace(n, exits, classes)
        cal, _ = trace.split(0.5, seed=0)
        t_fit, _ = best_of(lambda: ThresholdTamer().fit(cal), 1)
        t_eval, _ = best_of(lambda: evaluate_trace(trace), 1)
        rows.append({"examples": n, "exits": exits, "classes": classes, "seconds": t_eval,
                     "evaluate_example_exits_per_s": n * exits / t_eval, "fit_seconds": t_fit,
                     "fit_example_exits_per_s": cal.n_examples * exits / t_fit})
    return rows


def evaluate_targets(rows: list[dict]) -> list[dict]:
    """The targets on fitting and evaluating large traces, from :func:`evaluate_scaling`."""
    out = []
    for r in rows:
        if r["examples"] in (100_000, 1_000_000):
            goal = 60.0 if r["examples"] == 100_000 else 600.0
            out.append({"target": f"evaluate {r['examples']:.0e} x {r['exits']} x {r['classes']}",
                        "measured": r["seconds"], "unit": "s", "reference": f"<= {goal:g}",
                        "within": bool(r["seconds"] <= goal)})
    big = max(rows, key=lambda r: r["examples"])
    out.append({"target": f"default fit ({big['examples'] // 2} calibration examples)",
                "measured": big["fit_example_exits_per_s"], "unit": "example-exits/s", "reference": ">= 1e5",
                "within": bool(big["fit_example_exits_per_s"] >= 1e5)})
    return out


def memory(n: int, k: int, forest: int) -> list[dict]:
    """Peak traced memory of the index solver (MiB) on a dense chain and a random tree, both
    through the NumPy steps (``compiled=False``): ``tracemalloc`` sees NumPy's buffers but not
    those of compiled code, which holds the same matrices, one node at a time on a chain."""
    cases = {f"dense chain {n}x{k}": chain(n, k, "dense"), f"random tree {forest}x8": shaped("random", forest, 8)}
    return [{"instance": label, "peak_MiB": peak_memory(lambda: compute_indices(inst, LAM, compiled=False))}
            for label, inst in cases.items()]


# ---------------------------------------------------------------------------------------------
# The serving runtime
# ---------------------------------------------------------------------------------------------
def _mlp_exits(width: int, exits: int = 6, classes: int = 10, seed: int = 0, device: str = "cpu"):
    """A residual MLP (blocks ``x + W2 relu(W1 x)``, hidden ``4·width``) with a linear exit
    head after every block, as a :class:`ttamer.serving.adapters.MultiExitModel` on ``device``."""
    import torch

    from .serving import MultiExitModel

    torch.manual_seed(seed)

    class Block(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.up, self.down = torch.nn.Linear(width, 4 * width), torch.nn.Linear(4 * width, width)

        def forward(self, h):
            return h + 0.3 * self.down(torch.relu(self.up(h)))

    blocks = [Block().eval().to(device) for _ in range(exits)]
    heads = [torch.nn.Linear(width, classes).eval().to(device) for _ in range(exits)]
    for i, hd in enumerate(heads):  # deeper heads more confident
        hd.weight.data *= 0.5 + i
    return MultiExitModel.from_modules(blocks, heads)


#: Rounds of batched serving on CUDA, in multiples of ``repeats`` (:func:`serving_overhead`).
#: The host's speed drifts by tens of percent within seconds there, and a round is cheap.
GPU_BATCHED_ROUNDS = 5


def serving_overhead(n: int, width: int, repeats: int = 3, batch_size: int = 32, device: str = "cpu") -> list[dict]:
    """The serving runtime on a multi-exit MLP (``_mlp_exits``): per run, cost relative to the plain network
    (interleaved per query / batch, medians over ``repeats`` rounds), decision overhead in µs
    per example per exit (in batches on CUDA, where a round takes milliseconds,
    :data:`GPU_BATCHED_ROUNDS` times the rounds, after a warm-up round over every input that
    meets every row count a compacted batch runs) and, for served strategies, the simulated
    cost in the same mode
    (``ttamer.serving.latency.served_cost``: one query at a time the batch-1 cost profile -- a
    fitted rule's own (``ThresholdTamer``, the binned chain policy of ``EarlyExitTamer``, the
    path-wise rule of ``PathwiseTamer``), its state advanced at every exit; in batches each
    exit's time on the rows still running, each stop's gathering, and such a rule's state
    beyond the max-probability's, timed in place by ``EarlyExitServer.state_cost``). The
    simulation prices the exits the runtime runs, as a fraction of the runtime forced to the
    last exit; ``gap`` compares it with the measured time as the same fraction, and the
    runtime's own cost over the plain network is its row "runtime forced to the last exit" (a
    strategy's cost relative to the plain network is the product of the two). Batched, every
    strategy is also served with its batches kept whole until their last row stops
    (``compact=False``), and priced so. On ``device="cuda"`` each served strategy's row also
    counts the host--device synchronisations per exit step (``syncs_per_exit``, :func:`count_synchronisations`): the
    runtime's design allows one, the decision's copy of the exit's probabilities to the host.
    On CUDA, one query at a time, the plain network, the forced runtime and the
    max-probability rule are also served with ``cuda_graphs=True`` (each exit, and the plain
    network, replayed as one CUDA graph: :mod:`ttamer.serving.graphs`); ``same_decisions`` is
    the share of queries where such a run stopped at the exit and answered with the exit of
    its eager run."""
    check_choice("device", device, DEVICES)
    import torch

    from .earlyexit.baselines import max_prob_threshold
    from .earlyexit.calibration import EarlyExitTamer
    from .earlyexit.pathwise import PathwiseTamer
    from .earlyexit.tamer import ThresholdTamer
    from .serving import EarlyExitServer, MaxProbRule, compare_latency, max_prob_rule, served_cost, threshold_rule

    torch.set_num_threads(1)
    model = _mlp_exits(width, device=device)
    L = model.n_exits
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3 * n, width)).astype(np.float32)
    with torch.inference_mode():
        h = torch.as_tensor(x, device=device)
        for b in model.blocks:
            h = b(h, None)
        deep = model.heads[-1](h, None).argmax(1).cpu().numpy()
    y = np.where(rng.random(len(x)) < 0.7, deep, rng.integers(0, 10, len(x)))
    forced = EarlyExitServer(model, max_prob_rule(L, np.inf), device=device)
    grid = sorted({1, batch_size, *(2 ** k for k in range(batch_size.bit_length()) if 2 ** k < batch_size)})
    trace = forced.run_all(x, y, batch_size=batch_size, meta={"model": f"mlp{width}", "dataset": "synthetic"},
                           profile_examples=min(n, 100), profile_rows=grid)
    cal, test = trace.subset(np.arange(2 * n)), trace.subset(np.arange(2 * n, 3 * n))
    xt = x[2 * n:]
    strategies = {}
    for policy in ("per_exit:max_prob:last", "per_exit:posterior:posterior"):
        tamer = ThresholdTamer(lam=0.9, policy=policy, n_lams=41).fit(cal)
        strategies[f"ThresholdTamer λ=0.9 ({policy})"] = (EarlyExitServer.from_tamer(model, tamer, device),
                                                           tamer.decide(test))
    # the binned chain policy (the paper's estimation) and the path-wise rule, their states kept from exit to exit
    chain = EarlyExitTamer(lam=0.9, K=6, feature="max_prob", agreement=1, loss="label")
    path = PathwiseTamer(lam=0.9, feature="max_prob", loss="label")
    for name, tamer in (("EarlyExitTamer λ=0.9 (binned chain)", chain), ("PathwiseTamer λ=0.9", path)):
        tamer.fit(cal)
        strategies[name] = (EarlyExitServer.from_tamer(model, tamer, device), tamer.decide(test))
    tau = float(np.quantile(test.max_prob[:, 0], 0.5))
    strategies[f"max-prob τ={tau:.3f}"] = (EarlyExitServer(model, max_prob_rule(L, tau), device=device),
                                           max_prob_threshold(test, [tau])[0])
    # one query at a time, a rule whose state costs more than the max-probability's is priced with its own
    # per-exit profile (its state advanced at every exit) against the max-probability rule's, taking turns
    keys = [k for k, (srv, _) in strategies.items() if not isinstance(srv.rule, MaxProbRule)]
    profs = forced.cost_profile(x[: min(n, 100)], 1, warmup=3, rule=[None] + [strategies[k][0].rule for k in keys])
    own = {k: profs[j + 1] for j, k in enumerate(keys)}
    # in batches, such a rule's state is priced by its excess over the max-probability rule's per call and exit,
    # timed in place (after each exit's block and head) on the calibration inputs
    states = forced.state_cost(x[: 2 * n], [None] + [strategies[k][0].rule for k in keys], batch_size)
    extra = {k: states[j + 1] - states[0] for j, k in enumerate(keys)}
    rollout = EarlyExitServer(model, *threshold_rule(L, np.inf), device=device, compile=False)
    runs = {"plain network": forced.run_full, "runtime forced to the last exit": forced.serve,
            "runtime forced to the last exit (policy rollout)": rollout.serve,
            **{k: srv.serve for k, (srv, _) in strategies.items()}}
    # batched, each strategy also with its batches kept whole until their last row stops (compact=False)
    whole = {f"{k} (batch kept whole)": (EarlyExitServer(model, srv.rule, device=device, compact=False), sim)
             for k, (srv, sim) in strategies.items()}
    extra |= {f"{k} (batch kept whole)": v for k, v in extra.items()}
    graphed = {}  # on CUDA, one query at a time: each exit (and the plain network) replayed as one CUDA graph
    if device == "cuda":
        g_forced = EarlyExitServer(model, max_prob_rule(L, np.inf), device=device, cuda_graphs=True)
        graphed = {"plain network (CUDA graph)": g_forced.run_full,
                   "runtime forced to the last exit (CUDA graphs)": g_forced.serve,
                   f"max-prob τ={tau:.3f} (CUDA graphs)": EarlyExitServer(model, max_prob_rule(L, tau), device=device,
                                                                         cuda_graphs=True).serve}
    rows = []
    for mode, bs in (("batch1", 1), ("batched", batch_size)):
        if bs > 1:
            for k in graphed:
                runs.pop(k)
            runs.update({k: srv.serve for k, (srv, _) in whole.items()})
            strategies.update(whole)
        else:
            runs.update(graphed)
        gpu_batches = device == "cuda" and bs > 1  # a round takes milliseconds: warm every row count, more rounds
        compare_latency(runs, xt if gpu_batches else xt[: 3 * bs], batch_size=bs, repeats=1)  # warm-up
        out = compare_latency(runs, xt, batch_size=bs, repeats=GPU_BATCHED_ROUNDS * repeats if gpu_batches else repeats)
        base = out["plain network"]["ms_per_example"]
        full = out["runtime forced to the last exit"]["ms_per_example"]
        for k, v in out.items():
            res = v["result"]
            row = {"mode": mode, "run": k, "ms_per_example": v["ms_per_example"],
                   "measured_cost": v["ms_per_example"] / base,
                   "decision_us_per_exit": res.decision_us_per_exit if k != "plain network" else None}
            if k == "runtime forced to the last exit" and bs == 1:  # the median query (the machine's other
                # tenants preempt a query now and then, which the mean over queries carries)
                row["decision_us_per_exit_median"] = float(np.median(
                    [forced.serve(xt[j : j + 1], 1).decision_us_per_exit for j in range(len(xt))]))
            if k in strategies:
                mine = own.get(k) if bs == 1 else None
                row["simulated_cost"] = served_cost(test, strategies[k][1].last, bs, mine,
                                                    None if mine is None else profs[0], compact=k not in whole,
                                                    state_ms=extra.get(k) if bs > 1 else None)
                # the simulation prices the runtime's exits: a fraction of the runtime forced to the last exit
                row["measured_vs_runtime"] = v["ms_per_example"] / full
                row["gap"] = row["measured_vs_runtime"] - row["simulated_cost"]
                if device == "cuda":
                    row["syncs_per_exit"] = count_synchronisations(strategies[k][0], xt[: 8 * bs], bs)
            eager = out.get(k.replace(" (CUDA graphs)", ""))
            if k.endswith("(CUDA graphs)") and eager is not None:  # replays must decide as the eager runs
                row["same_decisions"] = float(np.mean((res.last == eager["result"].last)
                                                      & (res.answer == eager["result"].answer)))
            rows.append(row)
    return rows


def count_synchronisations(server: Any, inputs: Any, batch_size: int) -> float:
    """Implicit host--device synchronisations (``torch.cuda.set_sync_debug_mode``) per exit
    step of ``server.serve(inputs, batch_size)`` on CUDA: their count over the exits each batch
    ran (a batch's step counts once, whatever its rows), after one unwatched run on the same
    inputs: a query that stops early leaves later exits unrun, and the first call of an exit
    may allocate, which a warm-up on one batch would leave to the counted run. The notice torch
    gives on first setting the mode is not counted."""
    import torch

    server.serve(inputs, batch_size)  # warm-up: the first call of each exit (and row count) may allocate
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            res = server.serve(inputs, batch_size)
        finally:
            torch.cuda.set_sync_debug_mode("default")
    # torch's own notice on first setting the mode ("Synchronization debug mode is a prototype ...") is no sync
    syncs = sum("synchroniz" in str(w.message) and "debug mode" not in str(w.message) for w in caught)
    steps = sum(int(res.last[s : s + batch_size].max()) + 1 for s in range(0, len(res.last), batch_size))
    return syncs / steps


def serving_targets(rows: list[dict], device: str = "cpu") -> list[dict]:
    """The serving targets, each measured (informative; nothing is asserted)."""
    get = {(r["mode"], r["run"]): r for r in rows}
    out = []
    for mode, goal in (("batch1", 1.03), ("batched", None)):
        r = get[(mode, "runtime forced to the last exit")]
        out.append({"target": f"runtime forced to the last exit vs the plain network ({mode})",
                    "measured": r["measured_cost"], "unit": "x", "reference": goal,
                    "within": None if goal is None else r["measured_cost"] <= goal})
    graphs = get.get(("batch1", "runtime forced to the last exit (CUDA graphs)"))
    if graphs is not None:
        plain = get[("batch1", "plain network (CUDA graph)")]["measured_cost"]
        out.append({"target": "runtime forced to the last exit vs the plain network, both as CUDA graphs (batch1)",
                    "measured": graphs["measured_cost"] / plain, "unit": "x", "reference": None, "within": None})
        same = min(r["same_decisions"] for r in rows if "same_decisions" in r)
        out.append({"target": "CUDA-graph replays decide as the eager runtime (batch1, least share of queries)",
                    "measured": same, "unit": "share", "reference": 1.0, "within": same == 1.0})
    r = get[("batch1", "runtime forced to the last exit")]
    for how, key in (("mean", "decision_us_per_exit"), ("median query", "decision_us_per_exit_median")):
        if r.get(key) is not None:
            out.append({"target": f"decision overhead per example per exit (batch 1, {device}, {how})",
                        "measured": r[key], "unit": "µs", "reference": 20.0, "within": r[key] <= 20.0})
    for mode, goal in (("batch1", 0.03), ("batched", 0.02)):
        gaps = [abs(r["gap"]) for r in rows if r["mode"] == mode and "gap" in r and "kept whole" not in r["run"]]
        out.append({"target": f"|measured − simulated cost| of every served strategy ({mode})", "measured": max(gaps),
                    "unit": "of full", "reference": goal, "within": max(gaps) <= goal})
    return out


# ---------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------
def fitted(rows: list[dict], x: str, group: str, floor: float = 1e-4) -> dict[str, float]:
    """Fitted exponent of ``seconds`` against ``x`` for each value of ``group``, on the points
    above ``floor`` seconds (below it the fixed cost of a call dominates: the compiled chain
    pass alone costs a few tens of microseconds), or on the two largest ``x`` where fewer
    points pass; NaN for a group of fewer than 2 points."""
    out = {}
    for g in dict.fromkeys(r[group] for r in rows):
        pts = sorted((r[x], r["seconds"]) for r in rows if r[group] == g)
        above = [p for p in pts if p[1] > floor]
        pts = above if len(above) >= 2 else pts[-2:]
        out[g] = fit_exponent(*zip(*pts)) if len(pts) >= 2 else float("nan")
    return out


def run_all(profile: str = "quick", device: str = "cpu", only: str | None = None) -> dict[str, Any]:
    """Every section at the sizes of ``profile`` (``smoke``, ``quick`` or ``full``); the
    serving runtime on ``device`` (one of :data:`DEVICES`); ``only="serving"`` runs that
    section alone (``None``: every section).

    Raises
    ------
    TTamerError
        ``profile``, ``device`` or ``only`` is not one of the values above (checked before
        anything runs).
    """
    check_choice("profile", profile, tuple(PROFILES))
    check_choice("device", device, DEVICES)
    if only is not None:
        check_choice("only", only, ("serving",), note=" or None (every section)")
    p = PROFILES[profile]
    r = p["repeats"]
    res: dict[str, Any] = {"profile": profile, "lam": LAM, "numpy": np.__version__,
                           "threads": os.environ.get("OMP_NUM_THREADS", "unset"), "device": device}
    if only == "serving":
        res["serving"] = serving_overhead(*p["serving"][:2], repeats=p["serving"][2], device=device)
        res["targets"] = serving_targets(res["serving"], device)
        return res
    res["compare"] = compare_solvers(p["compare"], r, p["exhaustive_max"], p["lp_max"])
    res["nodes"] = scale_nodes(p["nodes"], p["nodes_k"], r)
    res["nodes_exponent"] = fitted(res["nodes"], "n", "regime")
    res["states"] = scale_states(p["states"], p["states_n"], r)
    res["states_exponent"] = fitted(res["states"], "K", "regime")
    res["shapes"] = scale_shapes(p["shape_n"], p["shape_k"], r)
    res["shapes_exponent"] = fitted(res["shapes"], "n", "shape")
    res["skips"] = scale_skips(p["skip_n"], p["skip_k"], p["skip_probs"], r)
    res["throughput"] = strategy_throughput(*p["trace"], sweep=p["sweep"], repeats=r)
    res["targets"] = targets(p, res["compare"], res["throughput"], r)
    res["memory"] = memory(*p["memory_n"], p["target_forest"])
    res["serving"] = serving_overhead(*p["serving"][:2], repeats=p["serving"][2], device=device)
    res["targets"] += serving_targets(res["serving"], device)
    res["evaluate"] = evaluate_scaling(p["evaluate"], *p["evaluate_shape"])
    res["evaluate_exponent"] = fitted(res["evaluate"], "examples", "exits")
    res["targets"] += evaluate_targets(res["evaluate"])
    return res


def table(rows: list[dict], cols: list[str] | None = None) -> str:
    """A plain-text table (floats in 4 significant digits)."""
    cols = cols or list(dict.fromkeys(c for r in rows for c in r))

    def fmt(v: Any) -> str:
        if isinstance(v, (float, np.floating)):
            return f"{v:.4g}"
        return "-" if v is None else str(v)
    cells = [[fmt(r.get(c)) for c in cols] for r in rows]
    width = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
    lines = ["  ".join(c.rjust(w) for c, w in zip(cols, width))]
    lines += ["  ".join(v.rjust(w) for v, w in zip(row, width)) for row in cells]
    return "\n".join(lines)


def report(res: dict[str, Any]) -> str:
    """The results as text (only the serving section where the run had only that one)."""
    serving = [
        f"\n## Serving runtime on {res['device']}: cost relative to the plain network, decision overhead, "
        "measured vs simulated", table(res["serving"])]
    if "compare" not in res:
        return "\n".join([f"ttamer benchmarks -- profile {res['profile']}, serving only", *serving,
                          "\n## Targets", table(res["targets"], ["target", "measured", "unit", "reference", "within"])])
    cmp_cols = ["n", "K", "index_s", "dp_s", "exhaustive_s", "lp_s", "quantecon_s", "dp/index",
                "exhaustive/index", "lp/index", "quantecon/index", "max_value_gap"]
    parts = [
        f"ttamer benchmarks -- profile {res['profile']}, λ = {res['lam']}, numpy {res['numpy']}, "
        f"OMP_NUM_THREADS={res['threads']}",
        "\n## Solvers on chains with recall (seconds, best of k; ratios to the index solver)",
        table(res["compare"], cmp_cols),
        "\n## Index solver vs number of nodes (chains)", table(res["nodes"]),
        f"fitted exponents (seconds ~ n^b): {_fmt_exp(res['nodes_exponent'])}",
        "\n## Index solver vs states per node (chains)", table(res["states"]),
        f"fitted exponents (seconds ~ K^b): {_fmt_exp(res['states_exponent'])}",
        "\n## Index solver vs tree shape", table(res["shapes"]),
        f"fitted exponents (seconds ~ n^b): {_fmt_exp(res['shapes_exponent'])}",
        "\n## Chain DP vs skip density", table(res["skips"]),
        "\n## Early-exit strategies: throughput on a synthetic trace", table(res["throughput"]),
        "\n## Targets", table(res["targets"], ["target", "measured", "unit", "reference", "within"]),
        "\n## Peak memory of the index solver (tracemalloc)", table(res["memory"]),
        *serving,
        "\n## ttamer evaluate with its defaults vs trace size (synthetic traces)", table(res["evaluate"]),
        f"fitted exponents (seconds ~ examples^b): {_fmt_exp(res['evaluate_exponent'])}",
    ]
    return "\n".join(parts)


def _fmt_exp(d: dict[str, float]) -> str:
    return ", ".join(f"{k}: {v:.2f}" for k, v in d.items())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    g = ap.add_mutually_exclusive_group()
    g.add_argument("--quick", action="store_true", help="CI-size instances (about a minute)")
    g.add_argument("--smoke", action="store_true", help="tiny instances (the test suite)")
    ap.add_argument("--json", metavar="PATH",
                    help="also write the results as JSON (atomically; the path is checked before the run)")
    ap.add_argument("--device", choices=DEVICES, default="cpu",
                    help="where the serving runtime runs and is timed (default cpu)")
    ap.add_argument("--only", choices=("serving",), help="run one section alone")
    args = ap.parse_args(argv)
    profile = "smoke" if args.smoke else "quick" if args.quick else "full"
    if args.json is not None:  # before anything runs: a bad path must not cost a whole run
        try:
            check_target(args.json, "--json")
        except TTamerError as e:
            ap.error(str(e))
    if args.device == "cuda":
        from .serving.adapters import resolve_device
        try:
            resolve_device("cuda")
        except TTamerError as e:
            ap.error(str(e))
    res = run_all(profile, args.device, args.only)
    print(report(res))
    if args.json is not None:  # atomic: a failed write leaves any old file as it was
        try:
            atomic_write(args.json, json.dumps(res, indent=1, default=float), "--json")
        except TTamerError as e:
            print(f"{ap.prog}: error: {e}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
