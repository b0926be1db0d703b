"""Threshold heuristics on chains, evaluated exactly with :func:`~ttamer.core.simulate.evaluate_exactly`.

:class:`ThresholdPolicy` is the confidence-threshold early-exit rule (BranchyNet / SDN style)
on a chain: walk down the chain and stop at the first exit ``i`` with ``ℓ_i(s_i) ≤ τ``
(the last exit answers otherwise); without recall it answers with the exit it stopped at.
:func:`best_threshold` finds the best ``τ`` exactly: the value is a step function of ``τ``
whose steps sit at the loss values, so the candidates are the distinct losses.
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np

from ..core.errors import TTamerError
from ..core.instance import Instance, check_instance
from ..core.policy import STOP, Policy
from ..core.simulate import ExactEvaluation, evaluate_exactly
from ..core.validate import short_repr


class ThresholdPolicy(Policy):
    """On a chain: consult exits in order, stop at the first exit with ``ℓ_i(s_i) ≤ τ``.

    ``tau = -inf`` runs to the last exit; ``tau = +inf`` stops at the first. With
    ``recall=True`` the same stopping rule answers with the best exit consulted.
    Skips, if any, are not used.

    Raises
    ------
    TTamerError
        ``instance`` is not a chain, or ``tau`` (the loss threshold, third argument) is not a
        number (``±inf`` allowed, ``nan``, strings and booleans refused).
    """

    def __init__(self, instance: Instance, lam: float, tau: float, recall: bool = False) -> None:
        if not check_instance(instance).is_chain:
            raise TTamerError(f"ThresholdPolicy needs a chain; got {instance!r}")
        super().__init__(instance, lam, recall)
        self.tau = check_tau(tau)
        order = instance.order
        self._next = np.full(instance.n, STOP, dtype=np.int64)
        self._next[order[:-1]] = order[1:]
        self._first = int(order[0])

    def decide(self, states: np.ndarray, last: np.ndarray) -> np.ndarray:
        last = np.asarray(last)
        cur = np.maximum(last, 0)
        loss = self._loss_table[cur, np.maximum(states[np.arange(len(last)), cur], 0)]
        cont = np.where(loss <= self.tau, STOP, self._next[cur])
        return np.where(last < 0, self._first, cont)

    def describe(self) -> str:
        kind = "recall" if self.recall else "no recall"
        return f"threshold rule ({kind}): stop at the first exit with loss <= {self.tau:.4g}, λ={self.lam:g}"


def check_tau(tau: Any) -> float:
    """The loss threshold ``tau`` of :class:`ThresholdPolicy` as a float: any real number or
    ``±inf``; a :class:`~ttamer.core.errors.TTamerError` naming ``tau`` for ``nan``, a
    string, a flag or anything else."""
    if isinstance(tau, (bool, np.bool_)) or not isinstance(tau, numbers.Real):
        raise TTamerError(f"tau (the loss threshold of ThresholdPolicy) must be a number (-inf and inf "
                          f"allowed), got {short_repr(tau)}")
    try:
        out = float(tau)
    except (OverflowError, ValueError):
        raise TTamerError(f"tau (the loss threshold of ThresholdPolicy) is out of range, "
                          f"got {short_repr(tau)}") from None
    if out != out:
        raise TTamerError("tau (the loss threshold of ThresholdPolicy) must be a number, got nan")
    return out


def threshold_candidates(instance: Instance) -> np.ndarray:
    """Every ``τ`` at which the threshold rule can change: ``-inf`` and the distinct losses."""
    check_instance(instance)
    return np.concatenate([[-np.inf], np.unique(np.concatenate(instance.losses))])


def best_threshold(instance: Instance, lam: float, recall: bool = False) -> tuple[float, ExactEvaluation]:
    """The threshold ``τ`` of smallest exact expected trade-off, and that value."""
    best: tuple[float, ExactEvaluation] | None = None
    for tau in threshold_candidates(instance):
        val = evaluate_exactly(ThresholdPolicy(instance, lam, tau, recall))
        if best is None or val.tradeoff < best[1].tradeoff - 1e-15:
            best = (float(tau), val)
    assert best is not None
    return best
