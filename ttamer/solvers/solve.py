"""One entry point for every solver: :func:`solve`."""

from __future__ import annotations

from ..core.errors import SolverError, TTamerError
from .exhaustive import MAX_STATES, describe_state_space, fits_state_space, solve_exhaustive
from ..core.instance import Instance
from ..core.solution import SolveResult
from ..core.validate import check_bool, check_count, check_lam  # noqa: F401 (check_lam: public here too)

METHODS = ("auto", "index", "dp", "exhaustive", "lp")


def solve(instance: Instance, lam: float, recall: bool = True, method: str = "auto",
          max_states: int | None = None, *, space: str = "auto", solver: str | None = None,
          max_chain_states: int | None = None) -> SolveResult:
    r"""Solve ``instance`` for the trade-off weight ``lam``: an optimal policy and its value.

    The value is the least expected trade-off over the strategies allowed (with or without
    recall; the book's chapters :doc:`/recall` and :doc:`/no_recall`),

    .. math::

       V^\star_\lambda \;=\; \min_\pi \; \mathbb{E}\Big[\lambda\, X_\pi
       + (1 - \lambda) \sum_{e \text{ used by } \pi} c_e\Big],

    where :math:`X_\pi` is the loss of the model the strategy answers with.

    Parameters
    ----------
    instance : Instance
        The instance to solve.
    lam : float
        The weight :math:`\lambda \in [0, 1]` of the loss; the cost is weighted by
        :math:`\kappa = 1 - \lambda`.
    recall : bool, default True
        Whether the strategy may answer with any model it consulted (the best one, of least
        loss :math:`\ell_v(s_v)`), or must answer with the last one.
    method : {"auto", "index", "dp", "exhaustive", "lp"}
        The solver:

        * ``"index"`` -- the dynamic index strategy (recall, forests without skips);
        * ``"dp"`` -- recall on a chain with skips: the ``(i, s, X)`` DP; no recall: the DP
          over ``(last, state)``, exact on chains (skips included), the best descend-only
          strategy on branching forests;
        * ``"exhaustive"`` -- DP over every information state (small instances);
        * ``"lp"`` -- the linear program of the book's chapter :doc:`/frontier` (cvxpy);
        * ``"auto"`` -- the exact polynomial method where one exists, else exhaustive when
          small enough, else an error saying why.
    max_states : int, optional
        Largest number of states the exhaustive solver (default
        :data:`ttamer.solvers.exhaustive.MAX_STATES`) or the LP's exhaustive state space
        (default :data:`ttamer.solvers.lp.MAX_STATES`) may build.
    space : {"auto", "chain", "exhaustive"}
        ``method="lp"`` only: the state space of the LP (:func:`ttamer.solvers.lp.build_mdp`).
    solver : str, optional
        ``method="lp"`` only: the cvxpy solver (default
        :func:`ttamer.solvers.lp.default_solver`).
    max_chain_states : int, optional
        ``method="lp"`` only: the largest ``(i, s, X)`` state space built on a chain (default
        :data:`ttamer.solvers.lp.MAX_CHAIN_STATES`).

    Returns
    -------
    SolveResult
        The value :math:`V^\star_\lambda`, a policy achieving it, the method used and what
        that method adds (:class:`~ttamer.core.solution.SolveResult` lists which fields each
        method sets).

    Raises
    ------
    TTamerError
        An argument is invalid.
    SolverError
        The method does not apply to the instance, or the instance is too large for it.
    """
    if not isinstance(instance, Instance):
        raise TTamerError(f"instance must be a ttamer.Instance, got {type(instance).__name__}")
    lam = check_lam(lam)
    recall = check_bool(recall, "recall")
    if not isinstance(method, str) or method not in METHODS:
        raise TTamerError(f"unknown method {method!r:.60}; choose one of {', '.join(METHODS)}")
    if method != "lp" and (space != "auto" or solver is not None or max_chain_states is not None):
        raise TTamerError("space, solver and max_chain_states are options of method='lp'")
    if method == "lp":
        from .lp import MAX_CHAIN_STATES, solve_lp
        from .lp import MAX_STATES as LP_MAX_STATES

        max_states = LP_MAX_STATES if max_states is None else check_count(max_states, "max_states")
        max_chain_states = (MAX_CHAIN_STATES if max_chain_states is None
                            else check_count(max_chain_states, "max_chain_states"))
        return solve_lp(instance, lam, recall, space, solver, max_states, max_chain_states=max_chain_states)
    max_states = MAX_STATES if max_states is None else check_count(max_states, "max_states")
    if method == "auto":
        method = _auto_method(instance, recall, max_states)
    if method == "index":
        if not recall:
            raise SolverError("the index strategy is the recall solution; for no recall use method='dp' or 'exhaustive'")
        from .index import solve_index

        value, policy, res = solve_index(instance, lam)
        return SolveResult(value, policy, "index", lam, True, sigma=res.sigma)
    if method == "dp":
        return _solve_dp(instance, lam, recall)
    value, policy = solve_exhaustive(instance, lam, recall, max_states=max_states)
    return SolveResult(value, policy, "exhaustive", lam, recall, n_states=len(policy.actions))


def _solve_dp(instance: Instance, lam: float, recall: bool) -> SolveResult:
    if recall:
        from .chain_recall import solve_chain_recall

        value, policy = solve_chain_recall(instance, lam)
        return SolveResult(value, policy, "dp", lam, True, levels=len(policy.levels))
    from .norecall import solve_norecall_dp

    value, policy = solve_norecall_dp(instance, lam)
    return SolveResult(value, policy, "dp", lam, False, exact=instance.is_chain)


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
