"""Instances on which answering without recall is arbitrarily worse than with recall (the book's chapter *No recall*).

Closed-form families (values are optimal expected trade-offs ``θ_λ``; "ratio" is
no-recall / recall):

* :func:`paper_family` -- the paper's Theorem 3.4: two free models, ``λ = 1``; model 1 has
  loss ``1/α²`` surely, model 2 (after model 1 on a chain) loss ``0`` w.p. ``1 − 1/α`` and
  ``1/α`` otherwise. No recall ``1/α²``, recall ``1/α³``, ratio ``α``.
* :func:`chain_family` -- ``n`` free exits on a chain: exit 1 has loss ``α^{-n}`` surely,
  exit ``k ≥ 2`` (independent of the others) loss ``0`` w.p. ``1 − 1/α`` and
  ``α^{-(n−k+1)}`` otherwise. No recall ``α^{-n}``, recall ``α^{-(2n−1)}``, ratio
  ``α^{n−1}``: exponential in the number of exits at fixed ``α``. ``n = 2`` is the paper's.
* :func:`star_family` -- a root with loss ``α^{-n}`` and ``n − 1`` i.i.d. children with loss
  ``0`` w.p. ``1 − 1/α`` and ``1/α`` otherwise; any order, same values as the chain family.
* :func:`costly_family` -- the paper's two models with positive costs
  ``c_1 = c_2 = β λ / ((1 − λ) α³)`` and ``0 < λ < 1``: no recall ``λ(α + β)/α³``, recall
  ``λ min(α + β, 1 + 2β)/α³``, ratio ``max(1, (α + β)/(1 + 2β))`` -- unbounded in ``α`` for
  every fixed ``λ`` and ``β``.
* :func:`floor_family` -- the extremal instance of the loss-floor bound: with zero costs,
  ``λ = 1`` and every positive loss in ``[δ, 1]``, the ratio is at most ``1/δ`` on any
  instance; model 1 loss ``δ`` surely, model 2 loss ``0`` w.p. ``1 − δ`` and ``1`` otherwise
  attains it (no recall ``δ``, recall ``δ²``).

:func:`search_worst_ratio` maximises the ratio with ``scipy.optimize`` over the class of
the loss-floor bound (state 0 of every node has loss 0, the others losses in ``[δ, 1]``, free
initial and transition distributions, zero costs, ``λ = 1``), evaluating every candidate
with the exact solvers, and reports the best instance found against the bound ``1/δ``.
The proofs are in the book chapter *No recall*.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
from scipy import optimize, special

from ..core.errors import TTamerError
from ..core.instance import Instance, check_instance
from ..core.validate import check_bool, check_choice, check_count, check_lam, check_real, check_seed
from ..solvers.exhaustive import state_space_bound
from ..solvers.solve import solve
from .synthetic import random_parents

#: The kinds of instance the worst-ratio search draws (a chain, a tree, a chain with skips).
SEARCH_KINDS = ("chain", "tree", "skips")
#: Largest ``n`` of the chain and star families (10,000 free exits build in about a second).
MAX_FAMILY_NODES = 10_000
#: Largest ``α^{2n−1}`` of a family (``n = 2`` for the paper's and the costly family): its
#: smallest value ``α^{-(2n−1)}`` and its ratio ``α^{n−1}`` stay normal floats.
MAX_FAMILY_SCALE = 1e300


# ------------------------------------------------------------------ validation
def _check_alpha(alpha: float, n: int = 2) -> float:
    """``alpha`` as a float ``> 1`` with ``α^{2n−1} ≤ MAX_FAMILY_SCALE``."""
    a = check_real(alpha, "alpha", low=1.0, low_open=True)
    if (2 * n - 1) * math.log10(a) > math.log10(MAX_FAMILY_SCALE):
        raise TTamerError(f"alpha**(2n-1) must be <= {MAX_FAMILY_SCALE:g} (MAX_FAMILY_SCALE) so that the "
                          f"family's values are normal floats, got alpha={a:g} with n={n}")
    return a


def _check_n(n: int, maximum: int = MAX_FAMILY_NODES) -> int:
    return check_count(n, "n (number of models)", minimum=2, maximum=maximum)


def _check_family(alpha: float, n: int) -> tuple[float, int]:
    """``(α, n)`` of a chain or star family, checked (:func:`_check_alpha`, :func:`_check_n`)."""
    n = _check_n(n)
    return _check_alpha(alpha, n), n


def _values(no_recall: float, recall: float, lam: float, ratio: float) -> dict[str, float]:
    return {"no_recall": no_recall, "recall": recall, "ratio": ratio, "lam": lam}


# ------------------------------------------------------------------ the paper's family
def paper_family(alpha: float) -> Instance:
    """Theorem 3.4 of the paper: two free models on a chain (solve with ``λ = 1``).

    Raises
    ------
    TTamerError
        ``alpha`` is not a number ``> 1`` with ``α³ ≤`` :data:`MAX_FAMILY_SCALE`.
    """
    a = _check_alpha(alpha)
    return Instance.chain(
        losses=[[a**-2], [0.0, 1.0 / a]], initial=[1.0], transitions=[[[1.0 - 1.0 / a, 1.0 / a]]],
        costs=[0.0, 0.0], names=["model1", "model2"], name=f"paper family, alpha={a:g}",
    )


def paper_family_values(alpha: float) -> dict[str, float]:
    """``{"recall": 1/α³, "no_recall": 1/α², "ratio": α, "lam": 1}``.

    Raises
    ------
    TTamerError
        As :func:`paper_family`.
    """
    a = _check_alpha(alpha)
    return _values(a**-2, a**-3, 1.0, a)


# ------------------------------------------------------------------ chain and star families
def _good_bad(a: float, bad: float) -> tuple[list[float], list[float]]:
    """Losses ``[0, bad]`` with probabilities ``[1 − 1/α, 1/α]``."""
    return [0.0, bad], [1.0 - 1.0 / a, 1.0 / a]


def chain_family(alpha: float, n: int) -> Instance:
    """``n`` free exits on a chain; exit ``k ≥ 2`` is bad (loss ``α^{-(n−k+1)}``) w.p. ``1/α``.

    Raises
    ------
    TTamerError
        ``n`` is not an integer in ``[2, MAX_FAMILY_NODES]`` (:data:`MAX_FAMILY_NODES`), or
        ``alpha`` is not a number ``> 1`` with ``α^{2n−1} ≤`` :data:`MAX_FAMILY_SCALE`.
    """
    a, n = _check_family(alpha, n)
    losses: list[list[float]] = [[a**-n]]
    mats: list[Any] = [[1.0]]
    for k in range(2, n + 1):
        loss, row = _good_bad(a, a ** -(n - k + 1))
        losses.append(loss)
        mats.append([row] * len(losses[-2]))  # identical rows: independent of the previous exit
    return Instance.tree([None] + list(range(n - 1)), losses, mats, [0.0] * n,
                         names=[f"exit{k}" for k in range(1, n + 1)], name=f"chain family, alpha={a:g}, n={n}")


def chain_family_values(alpha: float, n: int) -> dict[str, float]:
    """No recall ``α^{-n}``, recall ``α^{-(2n−1)}``, ratio ``α^{n−1}`` (``λ = 1``).

    Raises
    ------
    TTamerError
        As :func:`chain_family`.
    """
    a, n = _check_family(alpha, n)
    return _values(a**-n, a ** -(2 * n - 1), 1.0, a ** (n - 1))


def star_family(alpha: float, n: int) -> Instance:
    """A root with loss ``α^{-n}`` and ``n − 1`` i.i.d. children (loss ``1/α`` w.p. ``1/α``, else 0).

    Raises
    ------
    TTamerError
        As :func:`chain_family`.
    """
    a, n = _check_family(alpha, n)
    loss, row = _good_bad(a, 1.0 / a)
    parents = [None] + [0] * (n - 1)
    return Instance.tree(parents, [[a**-n]] + [loss] * (n - 1), [[1.0]] + [[row]] * (n - 1), [0.0] * n,
                         names=["root"] + [f"child{k}" for k in range(1, n)], name=f"star family, alpha={a:g}, n={n}")


def star_family_values(alpha: float, n: int) -> dict[str, float]:
    """Same values as :func:`chain_family_values` (and the same errors)."""
    return chain_family_values(alpha, n)


# ------------------------------------------------------------------ positive costs
def _check_lam_beta(lam: float, beta: float) -> tuple[float, float]:
    lam = check_real(lam, "lam (costs must matter in the costly family)", low=0.0, high=1.0,
                     low_open=True, high_open=True)
    return lam, check_real(beta, "beta (cost relative to the recall loss scale)", low=0.0)


def costly_family(alpha: float, lam: float, beta: float = 1.0) -> Instance:
    """The paper's two models with ``c_1 = c_2 = β λ / ((1 − λ) α³)`` (``κ c = β λ / α³``).

    Raises
    ------
    TTamerError
        ``alpha`` is invalid (as in :func:`paper_family`), ``lam`` is not a number in
        ``(0, 1)`` or ``beta`` not a finite number ``>= 0``.
    """
    a = _check_alpha(alpha)
    lam, beta = _check_lam_beta(lam, beta)
    c = beta * lam / ((1.0 - lam) * a**3)
    if not math.isfinite(2.0 * c):
        raise TTamerError(f"costly_family(alpha={a!r}, lam={lam!r}, beta={beta!r}): the models' cost β λ / ((1 − λ) "
                          "α³) overflows float64; use a smaller beta or a lam further from 1")
    base = paper_family(a)
    return Instance.chain([base.losses[0], base.losses[1]], base.transitions[0][0], [base.transitions[1]],
                          [c, c], names=base.names, name=f"costly family, alpha={a:g}, lam={lam:g}, beta={beta:g}")


def costly_family_values(alpha: float, lam: float, beta: float = 1.0) -> dict[str, float]:
    """No recall ``λ(α+β)/α³``, recall ``λ min(α+β, 1+2β)/α³``, ratio ``max(1, (α+β)/(1+2β))``.

    Raises
    ------
    TTamerError
        As :func:`costly_family`.
    """
    a = _check_alpha(alpha)
    lam, beta = _check_lam_beta(lam, beta)
    nr = lam * (a + beta) / a**3
    r = lam * min(a + beta, 1.0 + 2.0 * beta) / a**3
    return _values(nr, r, lam, max(1.0, (a + beta) / (1.0 + 2.0 * beta)))


def root_cost_bound(instance: Instance, lam: float) -> float:
    """On a chain without fallback and ``κ c_1 > 0``: ratio ``≤ 1 + λ E[ℓ_1] / (κ c_1)``.

    Raises
    ------
    TTamerError
        ``instance`` is not a chain without fallback, or ``lam`` is not a number in ``[0, 1]``.
    """
    if not isinstance(instance, Instance):
        raise TTamerError(f"instance must be a ttamer Instance, got {type(instance).__name__}")
    lam = check_lam(lam)
    if not instance.is_chain or instance.fallback is not None:
        raise TTamerError("root_cost_bound needs a chain without fallback")
    root = instance.roots[0]
    kc = (1.0 - lam) * float(instance.costs[root])
    if kc <= 0:
        return np.inf
    return 1.0 + lam * float(instance.transitions[root][0] @ instance.losses[root]) / kc


# ------------------------------------------------------------------ the loss-floor bound
#: Smallest loss floor ``δ``, so that the families' values (``δ²`` among them) stay normal floats.
MIN_DELTA = 1e-150


def _check_delta(delta: float) -> float:
    return check_real(delta, "delta (the loss floor)", low=MIN_DELTA, high=1.0, high_open=True)


def floor_family(delta: float) -> Instance:
    """Model 1 loss ``δ`` surely; model 2 loss 0 w.p. ``1 − δ``, 1 otherwise (free, ``λ = 1``).

    Raises
    ------
    TTamerError
        ``delta`` is not a number in ``[MIN_DELTA, 1)``.
    """
    d = _check_delta(delta)
    return Instance.chain([[d], [0.0, 1.0]], [1.0], [[[1.0 - d, d]]], [0.0, 0.0],
                          names=["model1", "model2"], name=f"floor family, delta={d:g}")


def floor_family_values(delta: float) -> dict[str, float]:
    """No recall ``δ``, recall ``δ²``, ratio ``1/δ`` -- the bound :func:`floor_bound`.

    Raises
    ------
    TTamerError
        ``delta`` is not a number in ``[MIN_DELTA, 1)``.
    """
    d = _check_delta(delta)
    return _values(d, d * d, 1.0, 1.0 / d)


def floor_bound(delta: float) -> float:
    """``1/δ``: the largest no-recall/recall ratio with zero costs, ``λ = 1``, positive losses in ``[δ, 1]``.

    Raises
    ------
    TTamerError
        ``delta`` is not a number in ``[MIN_DELTA, 1)``.
    """
    return 1.0 / _check_delta(delta)


# ------------------------------------------------------------------ ratios by the solvers
def gap(instance: Instance, lam: float, method: str = "auto", recall_method: str | None = None) -> dict[str, float]:
    """No-recall and recall optimal values by the exact solvers, and their ratio (``1`` for ``0/0``)."""
    nr = solve(instance, lam, recall=False, method=method).value
    r = solve(instance, lam, recall=True, method=method if recall_method is None else recall_method).value
    return {"no_recall": nr, "recall": r, "ratio": ratio_of(nr, r)}


def values_by_method(instance: Instance, lam: float, lp: bool = True) -> dict[tuple[str, bool], float]:
    """``{(method, recall): optimal value}`` for every exact method that applies: the index
    strategy (forests), the DPs (chains), the exhaustive solver and, if ``lp``, the LP."""
    check_instance(instance)
    lp = check_bool(lp, "lp")
    methods = [("index", True)] if not instance.skips else []
    if instance.is_chain:
        methods += [("dp", True), ("dp", False)]
    methods += [("exhaustive", True), ("exhaustive", False)]
    if lp:
        methods += [("lp", True), ("lp", False)]
    return {(m, r): solve(instance, lam, recall=r, method=m).value for m, r in methods}


def ratio_of(no_recall: float, recall: float) -> float:
    """``no_recall / recall`` with ``0/0 = 1`` (both strategies lose nothing).

    Raises
    ------
    TTamerError
        ``no_recall`` or ``recall`` is not a finite number ``>= 0``.
    """
    no_recall = check_real(no_recall, "no_recall", low=0.0)
    recall = check_real(recall, "recall", low=0.0)
    if recall == 0.0:
        return 1.0 if no_recall == 0.0 else np.inf
    return no_recall / recall


# ------------------------------------------------------------------ the search
@dataclass
class SearchResult:
    """Best instance found by :func:`search_worst_ratio`, its exact values, and the bound."""

    ratio: float
    no_recall: float
    recall: float
    instance: Instance
    bound: float
    kind: str
    evaluations: int
    per_restart: list[float] = field(default_factory=list)


def _softmax(x: np.ndarray) -> np.ndarray:
    z = np.exp(x - x.max(axis=-1, keepdims=True))
    return z / z.sum(axis=-1, keepdims=True)


def floor_class_decoder(kind: str, n: int, k: int, delta: float,
                        rng: np.random.Generator) -> tuple[int, Callable[[np.ndarray], Instance]]:
    """Parametrisation of the search class: ``(dimension, x -> Instance)``.

    Per node: ``k − 1`` losses ``δ + (1 − δ) sigmoid(x)`` (state 0 has loss 0), then logits
    (clipped to ``±LOGIT``) of ``μ_v`` (``k`` values) or ``P_v`` (``k × k``). Zero costs;
    for ``kind="skips"`` every skip of the chain exists at cost 0.

    Raises
    ------
    TTamerError
        The arguments of :func:`search_worst_ratio` out of range (``kind``, ``n``, ``k``), or
        ``delta`` not in ``[MIN_DELTA, 1)``.
    """
    n, k, _, _ = _check_search(kind, n, k, 1, 1)
    delta = _check_delta(delta)
    parents = random_parents(rng, "chain" if kind == "skips" else kind, n, 1)
    sizes = [(k - 1, k if p is None else k * k) for p in parents]
    dim = sum(a + b for a, b in sizes)
    skips = [(i, j, 0.0) for i in range(n) for j in range(i + 2, n)] if kind == "skips" else []

    def decode(x: np.ndarray) -> Instance:
        losses, mats, pos = [], [], 0
        for p, (nl, nm) in zip(parents, sizes):
            u = special.expit(x[pos: pos + nl])
            losses.append(np.concatenate([[0.0], delta + (1.0 - delta) * u]))
            logits = np.clip(x[pos + nl: pos + nl + nm], -LOGIT, LOGIT)
            mats.append(_softmax(logits) if p is None else _softmax(logits.reshape(k, k)))
            pos += nl + nm
        return Instance.tree(parents, losses, mats, [0.0] * n, skips=skips, name=f"search {kind}")

    return dim, decode


#: Logits are clipped to ``±LOGIT`` (smallest probability about ``e^{-2·LOGIT}``).
LOGIT = 12.0
#: Largest ``n`` and ``k`` of :func:`search_worst_ratio`: at most ``n (k − 1 + k²) = 1,090``
#: parameters, so one Nelder--Mead simplex holds about a thousand instances.
MAX_SEARCH_NODES = 10
MAX_SEARCH_STATES = 10
#: Largest ``restarts × maxiter`` of :func:`search_worst_ratio`; each Nelder--Mead iteration
#: solves a few instances exactly (about a minute at ``n = K = 3``).
MAX_SEARCH_ITERATIONS = 20_000
#: Largest work of :func:`search_worst_ratio`, refused before it starts, counted as its
#: evaluations (``restarts × (maxiter + dimension + 1)``, Nelder--Mead's simplex and
#: iterations) times the states each exact no-recall solve may visit (the exhaustive solver's
#: bound on a branching forest; ``n K²`` for the chain DPs). About 5 µs a state on one core,
#: so a few minutes.
MAX_SEARCH_WORK = 50_000_000


def _check_search(kind: str, n: int, k: int, restarts: int, maxiter: int) -> tuple[int, int, int, int]:
    """``(n, k, restarts, maxiter)`` checked against the bounds above."""
    check_choice("kind", kind, SEARCH_KINDS)
    n = _check_n(n, MAX_SEARCH_NODES)
    k = check_count(k, "k (states per node)", minimum=2, maximum=MAX_SEARCH_STATES)
    restarts, maxiter = check_count(restarts, "restarts"), check_count(maxiter, "maxiter")
    if restarts * maxiter > MAX_SEARCH_ITERATIONS:
        raise TTamerError(f"restarts * maxiter must be <= {MAX_SEARCH_ITERATIONS:,} (MAX_SEARCH_ITERATIONS), "
                          f"got {restarts} * {maxiter}")
    return n, k, restarts, maxiter


def _check_search_work(example: Instance, kind: str, evaluations: int) -> None:
    """Refuse a search whose work exceeds :data:`MAX_SEARCH_WORK` (``example``: an instance of
    its class), naming what to lower."""
    per = (example.n * int(example.n_states.max()) ** 2 if example.is_chain
           else state_space_bound(example, recall=False))
    if evaluations * per > MAX_SEARCH_WORK:
        raise TTamerError(f"search_worst_ratio({kind!r}, n={example.n}, k={int(example.n_states.max())}): about "
                          f"{evaluations:,} exact solves of up to {per:,} states each, above MAX_SEARCH_WORK="
                          f"{MAX_SEARCH_WORK:,}; lower n, k, restarts or maxiter")


def search_worst_ratio(kind: str = "chain", n: int = 2, k: int = 2, restarts: int = 4, seed: int = 0,
                       delta: float = 0.1, maxiter: int = 600) -> SearchResult:
    """Nelder--Mead from ``restarts`` random starts, maximising no-recall / recall (exact
    solvers, ``λ = 1``) over the loss-floor class of :func:`floor_class_decoder`.

    Returns the best instance with values recomputed by the exact solvers; the bound
    ``1/δ`` of :func:`floor_bound` holds for every instance of the class.

    Raises
    ------
    TTamerError
        ``kind`` is not in :data:`SEARCH_KINDS`; ``n`` is not an integer in
        ``[2, MAX_SEARCH_NODES]`` or ``k`` in ``[2, MAX_SEARCH_STATES]``; ``restarts`` or
        ``maxiter`` is not a positive integer or their product exceeds
        :data:`MAX_SEARCH_ITERATIONS`, or the search's work exceeds :data:`MAX_SEARCH_WORK`;
        ``seed`` is not a non-negative integer (or a ``numpy.random.Generator``); ``delta`` is
        not a number in ``[MIN_DELTA, 1)``.
    """
    n, k, restarts, maxiter = _check_search(kind, n, k, restarts, maxiter)
    delta = _check_delta(delta)
    rng = np.random.default_rng(check_seed(seed, allow_generator=True))
    dim, decode = floor_class_decoder(kind, n, k, delta, rng)
    _check_search_work(decode(np.zeros(dim)), kind, restarts * (maxiter + dim + 1))
    count = [0]

    def objective(x: np.ndarray) -> float:
        count[0] += 1
        g = gap(decode(x), 1.0)
        return -g["ratio"]

    best_x, best_f, per = None, np.inf, []
    for _ in range(restarts):
        x0 = rng.normal(0.0, 2.0, size=dim)
        res = optimize.minimize(objective, x0, method="Nelder-Mead",
                                options={"maxiter": maxiter, "xatol": 1e-6, "fatol": 1e-9, "adaptive": True})
        per.append(float(-res.fun))
        if res.fun < best_f:
            best_x, best_f = res.x, res.fun
    inst = decode(best_x)
    g = gap(inst, 1.0)
    return SearchResult(g["ratio"], g["no_recall"], g["recall"], inst, floor_bound(delta), kind, count[0], per)
