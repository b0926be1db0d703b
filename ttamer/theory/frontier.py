"""The error-cost frontier: λ-sweeps, the exact frontier and the budgeted LP (the book's chapter *The frontier*).

For a strategy ``π`` write ``C(π) = E[cost]`` and ``L(π) = E[loss]``; the trade-off is
``θ_λ(π) = λ L(π) + (1 − λ) C(π)``. Randomised strategies reach every point of the convex
hull of the deterministic ones, and the least loss under a budget,

    L*(B) = min { L(π) : C(π) ≤ B }      (the budgeted LP of :mod:`ttamer.solvers.lp`),

is convex and non-increasing in ``B``. A strategy optimal for ``λ ∈ (0, 1]`` minimises a
positive combination of ``L`` and ``C``, so its point ``(C, L)`` lies on the graph of ``L*``
(a supporting line of slope ``−(1 − λ)/λ`` touches the achievable set there). Between two
adjacent vertices ``a, b`` of that graph (``C_a < B < C_b``) the frontier is the segment, and
``L*(B)`` is the loss of the randomisation that plays ``a`` with probability
``w = (C_b − B)/(C_b − C_a)``.

:func:`exact_frontier` finds every vertex with the recall (or no-recall) solver alone, by the
classic bisection of weights (NISE): for two frontier points ``a, b`` the weight ``λ*`` at
which they tie is solved for; a new point strictly below the tie line is a new vertex,
otherwise ``[a, b]`` is an edge of the frontier.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from ..core.errors import SolverError, TTamerError
from ..core.instance import Instance
from ..core.validate import check_count, check_lam, check_numbers, check_real, short_repr
from ..solvers.lp import BudgetedLP, BudgetResult, build_mdp
from ..core.simulate import evaluate_exactly


@dataclass(frozen=True)
class FrontierPoint:
    """Exact ``E[cost]`` and ``E[loss]`` of the optimal strategy at weight ``lam``."""

    lam: float
    cost: float
    loss: float
    policy: Any = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        check_lam(self.lam)
        check_real(self.cost, "cost (of a frontier point)")
        check_real(self.loss, "loss (of a frontier point)")

    def tradeoff(self, lam: float | None = None) -> float:
        """``θ_λ = λ L + (1 − λ) C`` (at this point's own ``λ`` by default).

        Raises
        ------
        TTamerError
            ``lam`` is not a number in ``[0, 1]``.
        """
        lam = self.lam if lam is None else check_lam(lam)
        return lam * self.loss + (1.0 - lam) * self.cost


def strategy_point(instance: Instance, lam: float, recall: bool = True, method: str = "auto") -> FrontierPoint:
    """Solve at ``lam`` with :func:`~ttamer.solvers.solve.solve` and evaluate the policy exactly
    (:func:`~ttamer.core.simulate.evaluate_exactly`, no simulation)."""
    from ..solvers.solve import solve

    sol = solve(instance, lam, recall=recall, method=method)
    exact = evaluate_exactly(sol.policy)
    loss, cost = exact.loss, exact.cost
    return FrontierPoint(sol.lam, cost, loss, sol.policy)


#: Most ``λ`` values one :func:`index_sweep` solves (each is a solve and an exact evaluation),
#: checked before the first solve.
MAX_SWEEP_LAMS = 2000


def index_sweep(instance: Instance, lams: Sequence[float], recall: bool = True,
                method: str = "auto") -> list[FrontierPoint]:
    """``(cost, loss)`` of the exact strategy for each ``λ`` in ``lams`` (recall: the index
    strategy on forests, the ``(i, s, X)`` DP on chains with skips).

    Raises
    ------
    TTamerError
        ``lams`` is not a non-empty sequence of numbers in ``[0, 1]`` of at most
        :data:`MAX_SWEEP_LAMS` values (checked before any solve).
    """
    if isinstance(lams, (str, bytes, dict)) or not hasattr(lams, "__iter__"):
        raise TTamerError(f"lams must be a sequence of numbers in [0, 1], got {short_repr(lams)}")
    if not isinstance(lams, (list, tuple, np.ndarray)):  # an iterator, a set: one value past the limit is enough
        lams = list(itertools.islice(lams, MAX_SWEEP_LAMS + 1))
    lams = check_numbers(lams, "lams", low=0.0, high=1.0, max_len=MAX_SWEEP_LAMS)
    return [strategy_point(instance, float(lam), recall, method) for lam in lams]


def _check_points(points: Sequence[FrontierPoint]) -> None:
    if not isinstance(points, (list, tuple)) or not all(isinstance(p, FrontierPoint) for p in points):
        raise TTamerError(f"expected a list of FrontierPoint objects, got {short_repr(points)}")


#: Largest ``|cost|`` and ``|loss|`` :func:`lower_envelope` takes (its cross products of
#: differences stay finite).
MAX_ENVELOPE_VALUE = 1e150


def lower_envelope(costs: Sequence[float], losses: Sequence[float], tol: float = 1e-12) -> np.ndarray:
    """Indices of the points on the lower-left convex envelope, by increasing cost.

    Keeps the points that no convex combination of others weakly dominates: loss strictly
    decreasing with cost and slopes strictly increasing (Andrew's monotone chain).

    Raises
    ------
    TTamerError
        ``costs`` or ``losses`` is not a 1-D sequence of finite numbers, their lengths differ,
        or ``tol`` is not a finite number ``>= 0``.
    """
    big = MAX_ENVELOPE_VALUE  # the cross products of the envelope stay finite
    c = check_numbers(costs, "costs", empty=True, low=-big, high=big)
    l = check_numbers(losses, "losses", empty=True, low=-big, high=big)
    if len(c) != len(l):
        raise TTamerError(f"costs and losses must have the same length, got {len(c)} and {len(l)}")
    tol = check_real(tol, "tol", low=0.0)
    order = np.lexsort((l, c))
    hull: list[int] = []
    for i in order:
        if hull and c[i] <= c[hull[-1]] + tol:  # same cost, larger loss: dominated
            continue
        if hull and l[i] >= l[hull[-1]] - tol:  # costs more, no less loss: dominated
            continue
        while len(hull) >= 2:
            a, b = hull[-2], hull[-1]
            cross = (c[b] - c[a]) * (l[i] - l[a]) - (l[b] - l[a]) * (c[i] - c[a])
            if cross <= tol:  # b is on or above the segment a-i
                hull.pop()
            else:
                break
        hull.append(int(i))
    return np.array(hull, dtype=np.int64)


def envelope_loss(points: Sequence[FrontierPoint], budget: float) -> float:
    """Loss of the best randomisation of ``points`` with expected cost ``≤ budget``:
    the lower envelope at ``budget`` (``+∞`` below the cheapest point).

    Raises
    ------
    TTamerError
        ``points`` is empty or holds something other than :class:`FrontierPoint` objects of
        finite cost and loss, or ``budget`` is not a finite number.
    """
    _check_points(points)
    if len(points) == 0:
        raise TTamerError("envelope_loss needs at least one point")
    budget = check_real(budget, "budget")
    c = np.array([p.cost for p in points])
    l = np.array([p.loss for p in points])
    hull = lower_envelope(c, l)
    c, l = c[hull], l[hull]
    if budget < c[0]:
        return float("inf")
    return float(np.interp(budget, c, l))


def randomise(a: FrontierPoint, b: FrontierPoint, budget: float) -> tuple[float, float]:
    """Play ``a`` with probability ``w`` and ``b`` with ``1 − w`` so that the expected cost is
    ``budget``: ``w = (C_b − B)/(C_b − C_a)``. Returns ``(w, w L_a + (1 − w) L_b)``.

    Raises
    ------
    TTamerError
        ``a`` or ``b`` is not a :class:`FrontierPoint`, or ``budget`` is not a finite number.
    SolverError
        ``a`` and ``b`` have the same cost, or ``budget`` is not between their costs.
    """
    _check_points([a, b])
    budget = check_real(budget, "budget")
    if a.cost == b.cost:
        raise SolverError("randomise needs two points of different expected cost")
    w = (b.cost - budget) / (b.cost - a.cost)
    if not -1e-12 <= w <= 1 + 1e-12:
        raise SolverError(f"budget {budget:.6g} is not between the costs {a.cost:.6g} and {b.cost:.6g}")
    w = min(max(w, 0.0), 1.0)
    return w, w * a.loss + (1.0 - w) * b.loss


def tie_weight(a: FrontierPoint, b: FrontierPoint) -> float:
    """The ``λ`` at which ``a`` and ``b`` have the same trade-off:
    ``λ L_a + (1−λ) C_a = λ L_b + (1−λ) C_b``.

    Raises
    ------
    TTamerError
        ``a`` or ``b`` is not a :class:`FrontierPoint`.
    SolverError
        They tie at no ``λ`` in ``[0, 1]``: they coincide, or one is both cheaper and less lossy.
    """
    _check_points([a, b])
    dc, dl = b.cost - a.cost, a.loss - b.loss
    if dc * dl < 0 or dc + dl == 0:
        raise SolverError(f"points (cost {a.cost:.6g}, loss {a.loss:.6g}) and (cost {b.cost:.6g}, loss {b.loss:.6g}) "
                          "tie at no lam in [0, 1]: they coincide or one dominates the other")
    return dc / (dc + dl)


def exact_frontier(instance: Instance, recall: bool = True, method: str = "auto", eps: float = 1e-6,
                   tol: float = 1e-9, max_points: int = 500) -> list[FrontierPoint]:
    """Every vertex of the frontier ``L*``, by increasing cost (module docstring).

    The two ends are solved at ``λ = 1 − eps`` (least loss, then least cost) and ``λ = eps``
    (least cost, then least loss) so that ties at ``λ ∈ {0, 1}`` are broken the right way;
    ``eps < 1/2`` keeps ``1 − eps > eps``, the costly end at the larger weight on the loss.

    Raises
    ------
    TTamerError
        ``eps`` is not a number in ``(0, 1/2)``, ``tol`` not a finite number ``>= 0``, or
        ``max_points`` not an integer ``>= 2`` (the two ends).
    SolverError
        The frontier has more than ``max_points`` vertices, or the solver refuses the instance.
    """
    eps = check_real(eps, "eps", low=0.0, high=0.5, low_open=True, high_open=True)
    tol = check_real(tol, "tol", low=0.0)
    max_points = check_count(max_points, "max_points", minimum=2)
    lo = strategy_point(instance, 1.0 - eps, recall, method)  # least loss: the costly end
    hi = strategy_point(instance, eps, recall, method)  # least cost
    points = {(round(p.cost, 12), round(p.loss, 12)): p for p in (lo, hi)}
    stack = [(hi, lo)]
    while stack:
        a, b = stack.pop()  # a cheaper, b less loss
        if b.cost - a.cost <= tol or a.loss - b.loss <= tol:
            continue
        lam = tie_weight(a, b)
        p = strategy_point(instance, lam, recall, method)
        if p.tradeoff(lam) < a.tradeoff(lam) - tol:
            points[(round(p.cost, 12), round(p.loss, 12))] = p
            if len(points) > max_points:
                raise SolverError(f"exact_frontier: more than {max_points} vertices")
            stack += [(a, p), (p, b)]
    pts = list(points.values())
    hull = lower_envelope([p.cost for p in pts], [p.loss for p in pts])
    return [pts[i] for i in hull]


def lp_frontier(instance: Instance, budgets: Sequence[float], recall: bool = True, space: str = "auto",
                solver: str | None = None) -> list[BudgetResult]:
    """The budgeted LP ``L*(B)`` at each budget (one compiled problem, re-solved per budget).

    Raises
    ------
    TTamerError
        ``budgets`` is not a 1-D sequence of finite numbers.
    SolverError
        A budget is negative or below the least expected cost, or the LP fails.
    """
    budgets = check_numbers(budgets, "budgets", empty=True)
    lp = BudgetedLP(build_mdp(instance, recall, space), solver)
    return [lp.solve(b) for b in budgets]
