"""What a solver returns: :class:`SolveResult`, the same shape for every method of :func:`~ttamer.solvers.solve.solve`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .policy import Policy


@dataclass
class SolveResult:
    r"""The optimal expected trade-off of an instance and a policy achieving it.

    Every method of :func:`~ttamer.solvers.solve.solve` returns this one shape: the fields
    ``value`` to ``recall`` always, and the method-specific fields below set by the methods
    that produce them (``None`` otherwise).

    Attributes
    ----------
    value : float
        The least expected trade-off :math:`V^\star_\lambda = \min_\pi \mathbb{E}[\lambda X_\pi
        + (1 - \lambda)\, \mathrm{cost}_\pi]` over the strategies allowed (see the book's
        chapter :doc:`/model`); for ``method="dp"`` without recall on a branching forest, the
        value of the best descend-only strategy (``exact`` is then ``False``).
    policy : Policy
        A policy achieving ``value``.
    method : {"index", "dp", "exhaustive", "lp"}
        The solver that produced the result (``"auto"`` resolved).
    lam : float
        The weight :math:`\lambda` of the loss solved for.
    recall : bool
        Whether the strategy may answer with any model it consulted.
    exact : bool, default True
        Whether ``value`` is the optimum over all strategies allowed; ``False`` only for the
        no-recall ``"dp"`` on a branching forest (an upper bound).
    sigma : list of numpy.ndarray, optional
        ``method="index"``: the dynamic index :math:`\sigma_v(s)` of every node ``v`` and state
        ``s`` (the book's chapter :doc:`/recall`).
    levels : int, optional
        ``method="dp"`` with recall: the number of levels of the ``(i, s, X)`` programme.
    n_states : int, optional
        ``method="exhaustive"``: the information states the policy acts on;
        ``method="lp"``: the states of the LP's Markov decision process.
    lp : ttamer.solvers.lp.LPValues, optional
        ``method="lp"``: the LP's solution -- its values ``V`` on every state, the solver, its
        status and time, and the Markov decision process ``mdp`` (its ``space``, ``n_rows`` and
        build time); :func:`ttamer.solvers.lp.action_values` reads the Q-values off it.
    """

    value: float
    policy: Policy
    method: str
    lam: float
    recall: bool
    exact: bool = True
    sigma: list[np.ndarray] | None = None
    levels: int | None = None
    n_states: int | None = None
    lp: Any = None

    def __post_init__(self) -> None:
        self.value = float(self.value) + 0.0  # -0.0 is 0.0 (else printed as "-0")
