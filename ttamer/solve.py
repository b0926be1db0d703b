"""One entry point for every solver: :func:`solve`."""

from __future__ import annotations

from .errors import SolverError, TTamerError
from .exhaustive import MAX_STATES, describe_state_space, fits_state_space, solve_exhaustive
from .instance import Instance
from .solution import Solution
from .validate import check_bool, check_count, check_lam  # noqa: F401 (check_lam: public here too)

METHODS = ("auto", "index", "dp", "exhaustive", "lp")


def solve(instance: Instance, lam: float, recall: bool = True, method: str = "auto",
          max_states: int = MAX_STATES) -> Solution:
    """Solve ``instance`` for the trade-off weight ``lam`` (the book's chapter *Solvers*).

    Methods:

    * ``"index"`` -- the dynamic index strategy (recall, forests without skips);
    * ``"dp"`` -- recall on a chain with skips: the ``(i, s, X)`` DP; no recall: the DP over
      ``(last, state)``, exact on chains (skips included), the best descend-only strategy on
      branching forests;
    * ``"exhaustive"`` -- DP over every information state (small instances);
    * ``"lp"`` -- the linear program of the book's chapter *Solvers* (cvxpy);
    * ``"auto"`` -- the exact polynomial method where one exists, else exhaustive when small
      enough, else an error saying why.
    """
    if not isinstance(instance, Instance):
        raise TTamerError(f"instance must be a ttamer.Instance, got {type(instance).__name__}")
    lam = check_lam(lam)
    recall = check_bool(recall, "recall")
    max_states = check_count(max_states, "max_states")
    if not isinstance(method, str) or method not in METHODS:
        raise TTamerError(f"unknown method {method!r:.60}; choose one of {', '.join(METHODS)}")
    if method == "auto":
        method = _auto_method(instance, recall, max_states)
    if method == "index":
        if not recall:
            raise SolverError("the index strategy is the recall solution; for no recall use method='dp' or 'exhaustive'")
        from .index import solve_index

        value, policy, res = solve_index(instance, lam)
        return Solution(value, policy, "index", lam, True, {"sigma": res.sigma})
    if method == "dp":
        return _solve_dp(instance, lam, recall)
    if method == "exhaustive":
        value, policy = solve_exhaustive(instance, lam, recall, max_states=max_states)
        return Solution(value, policy, "exhaustive", lam, recall, {"states": len(policy.actions)})
    from .lp import solve_lp

    return solve_lp(instance, lam, recall)


def _solve_dp(instance: Instance, lam: float, recall: bool) -> Solution:
    if recall:
        from .chain_recall import solve_chain_recall

        value, policy = solve_chain_recall(instance, lam)
        return Solution(value, policy, "dp", lam, True, {"levels": len(policy.levels)})
    from .norecall import solve_norecall_dp

    value, policy = solve_norecall_dp(instance, lam)
    return Solution(value, policy, "dp", lam, False, {"exact": instance.is_chain})


def _auto_method(instance: Instance, recall: bool, max_states: int) -> str:
    if recall:
        return "dp" if instance.skips else "index"
    if instance.is_chain:
        return "dp"
    if fits_state_space(instance, recall, max_states):
        return "exhaustive"
    raise SolverError(
        f"no polynomial exact method for no recall on a branching forest ({instance.n} nodes, "
        f"{len(instance.roots)} roots), and it is too large for the exhaustive solver "
        f"(bound {describe_state_space(instance, recall)} > max_states={max_states:,}); "
        "method='dp' gives the best descend-only strategy (an upper bound)"
    )
