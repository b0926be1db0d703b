"""From a trace to a chain instance, and its policy run on held-out examples (the book's chapter *Early exit on real models*).

:func:`build_instance` estimates the chain (smoothed losses ``ℓ_i(s)``, transitions ``P_i``,
start distribution ``μ``; the definitions are in :mod:`ttamer.earlyexit.calibration`) from the
states and losses of calibration examples; :func:`run_policy` runs a solved policy on a trace
through :meth:`~ttamer.core.policy.Policy.rollout_known`, and :func:`sweep` does so for many
``λ``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..core.errors import TraceError, TTamerError
from ..core.instance import Instance
from ..core.policy import IndexPolicy, chain_index_rollouts
from ..core.solution import SolveResult
from ..solvers.solve import solve
from .crossval import refined_sweep
from .features import StateEncoder, StateSpec, exit_losses
from .isotonic import monotone_losses
from .pairwise import PairwiseAnswer
from .traces import ExitDecisions, Trace

#: Most example-exit states that :func:`run_policies` rolls out at once (the group of ``λ``
#: values is cut to fit), which bounds its memory to some tens of MB.
ROLLOUT_CELLS = 1_000_000


def build_instance(states: np.ndarray, losses: np.ndarray, n_states: Sequence[int], costs: np.ndarray,
                   smoothing: float, names: Sequence[str] | None = None, name: str = "",
                   layouts: Sequence[tuple[int, int, int]] | None = None, decreasing: bool = True) -> Instance:
    """The chain instance of the book's chapter *Early exit on real models* from calibration ``states [N, L]``, 0/1 ``losses
    [N, L]`` and edge ``costs [L]``, smoothed with strength ``α = smoothing`` (module
    docstring). With ``layouts`` (per exit, see :func:`~ttamer.earlyexit.isotonic.monotone_losses`) the smoothed
    losses are then made monotone in the confidence bin (weights ``n_i(s) + α``). Loops over
    exits only."""
    if not (np.isfinite(smoothing) and smoothing > 0):
        raise TTamerError(f"smoothing must be > 0 (it defines empty bins), got {smoothing!r}")
    n, L = states.shape
    a = float(smoothing)
    K = [int(k) for k in n_states]
    ell, mats = [], []
    for i in range(L):
        cnt = np.bincount(states[:, i], minlength=K[i]).astype(float)
        err = np.bincount(states[:, i], weights=losses[:, i], minlength=K[i])
        li = (err + a * losses[:, i].mean()) / (cnt + a)
        if layouts is not None:
            li = monotone_losses(li, cnt + a, layouts[i], decreasing)
        ell.append(li)
        if i == 0:
            mu = cnt + a / K[0]
            mats.append(mu / mu.sum())
            continue
        pi = cnt / cnt.sum()
        joint = np.bincount(states[:, i - 1] * K[i] + states[:, i], minlength=K[i - 1] * K[i])
        P = joint.reshape(K[i - 1], K[i]).astype(float) + a * pi
        mats.append(P / P.sum(axis=1, keepdims=True))
    return Instance.chain(ell, mats[0], mats[1:], costs, names=names, name=name)



@dataclass
class _Fitted:
    spec: StateSpec
    smoothing: float
    encoder: StateEncoder
    instance: Instance
    answer_table: "PairwiseAnswer | None" = None



def _fit_concrete(trace: Trace, spec: StateSpec, smoothing: float, loss: str, normalize_cost: bool,
                  target: str = "label", monotone: bool = False) -> _Fitted:
    enc = StateEncoder.fit(spec, trace, loss, target)
    costs = trace.mean_cost
    if normalize_cost:
        total = costs.sum()
        if total <= 0:
            raise TraceError("key 'cost': the full model's mean cost is 0; cannot normalise")
        costs = costs / total
    name = f"{trace.meta.get('model', '?')} on {trace.meta.get('dataset', '?')}: {spec.describe()}"
    layouts = [enc.layout(i) for i in range(trace.n_exits)] if monotone else None
    wrong = exit_losses(trace, loss)
    if spec.feature == "posterior":  # node i answers with exit a_i: its loss is a_i's error
        wrong = np.take_along_axis(wrong, enc.answers(trace), axis=1)
    states = enc.transform(trace)
    inst = build_instance(states, wrong, enc.n_states, costs,
                          smoothing, names=trace.exit_names, name=name, layouts=layouts,
                          decreasing=enc.loss_decreasing)
    table = PairwiseAnswer.fit(states, wrong, inst.losses, enc.n_states, float(smoothing))
    return _Fitted(spec, float(smoothing), enc, inst, table)


def run_policy(solution: SolveResult, states: np.ndarray, trace: Trace, name: str = "",
               answers: np.ndarray | None = None, answer_table: PairwiseAnswer | None = None) -> ExitDecisions:
    """Run ``solution.policy`` on the examples of ``trace`` (states ``[N, L]``) through
    :meth:`~ttamer.core.policy.Policy.rollout_known` (:func:`ttamer.core.policy.rollout` with each
    example's states read off ``states``; one vectorised pass on chains). Returns the exit answered with, the last exit consulted and the cost.
    ``answers [N, L]`` (default: node ``i`` answers with exit ``i``) maps the node the policy
    answers with to the exit whose prediction is returned (:meth:`~ttamer.earlyexit.features.StateEncoder.answers`)."""
    ro = solution.policy.rollout_known(states)
    return _decisions(solution, ro.states[None], ro.last[None], trace, name, answers, answer_table)[0]


def run_policies(solutions: Sequence[SolveResult], states: np.ndarray, trace: Trace, name: str = "",
                 answers: np.ndarray | None = None, answer_table: PairwiseAnswer | None = None
                 ) -> list[ExitDecisions]:
    """:func:`run_policy` for the solutions of one instance at several ``λ`` (all with recall
    or all without): where they are index policies on a chain, their rollouts run together
    (:func:`~ttamer.core.policy.chain_index_rollouts`), in groups of at most
    :data:`ROLLOUT_CELLS` states; the same decisions as :func:`run_policy`, to the last bit."""
    policies = [s.policy for s in solutions]
    if not policies or not all(isinstance(p, IndexPolicy) and p.instance is policies[0].instance
                               and p.instance.is_chain for p in policies):
        return [run_policy(s, states, trace, name, answers, answer_table) for s in solutions]
    step = max(1, ROLLOUT_CELLS // max(states.size, 1))
    out = []
    for k in range(0, len(solutions), step):  # a loop over groups of λ, bounding memory
        visited, last = chain_index_rollouts(policies[k : k + step], states)
        out += _decisions(solutions[k], visited, last, trace, name, answers, answer_table)
    return out


def _decisions(solution: SolveResult, visited: np.ndarray, last: np.ndarray, trace: Trace, name: str,
               answers: np.ndarray | None, answer_table: PairwiseAnswer | None) -> list[ExitDecisions]:
    """The decisions of ``P`` rollouts (``visited [P, N, L]``, ``last [P, N]``) of policies
    that answer as ``solution.policy`` does (same instance, same recall)."""
    P, N, L = visited.shape
    flat_states, flat_last = visited.reshape(P * N, L), last.reshape(P * N)
    if answer_table is not None and solution.recall:
        answer = answer_table.answer(flat_states, flat_last)
    else:
        answer = solution.policy.answer(flat_states, flat_last)
    if (answer < 0).any():
        raise TTamerError("the policy answered with the fallback; early-exit instances have none")
    if not np.array_equal(flat_states >= 0, np.arange(trace.n_exits)[None, :] <= flat_last[:, None]):
        raise TTamerError("the policy did not consult a prefix of the exits")  # chain invariant
    answer = answer.reshape(P, N)
    if answers is not None:
        answer = answers[np.arange(N)[None, :], answer]
    dec = ExitDecisions.from_last(trace, answer, last, name=name)
    return [ExitDecisions(dec.answer[p], dec.last[p], dec.cost[p], None, name) for p in range(P)]


def sweep(instance: Instance, recall: bool, states: np.ndarray, trace: Trace, lams: Sequence[float],
          refine: bool = True, max_gap: float = 0.01, max_points: int = 160, name: str = "",
          answers: np.ndarray | None = None, answer_table: PairwiseAnswer | None = None) -> ExitDecisions:
    """Solve ``instance`` for every ``λ`` in ``lams`` and run each policy on ``trace``
    (states ``[N, L]``): :func:`~ttamer.earlyexit.crossval.refined_sweep` of :func:`run_policies`."""
    return refined_sweep(
        lambda some: run_policies([solve(instance, lam, recall=recall) for lam in some], states, trace,
                                  answers=answers, answer_table=answer_table),
        trace, lams, refine, max_gap, max_points, name)


