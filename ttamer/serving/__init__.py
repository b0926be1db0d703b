"""Serving: the fitted policy drives real models (the book's chapter *Serving*).

* :mod:`ttamer.serving.runtime` -- :class:`~ttamer.serving.runtime.EarlyExitServer` and
  :class:`~ttamer.serving.runtime.CascadeServer`, and what a run did
  (:class:`~ttamer.serving.runtime.ServeResult`);
* :mod:`ttamer.serving.rules` -- fitted estimators and heuristics as the rules the runtime
  evaluates;
* :mod:`ttamer.serving.adapters` -- multi-exit torch models and their adapters;
* :mod:`ttamer.serving.latency` -- latency compared fairly, traces priced per serving mode;
* :mod:`ttamer.serving.graphs` -- each exit replayed as one CUDA graph, one query at a time on a
  GPU (``EarlyExitServer(..., cuda_graphs=True)``).

The names below are importable from ``ttamer.serving`` itself. torch is imported only when a
model runs.
"""

from .adapters import MultiExitModel, transformer_exits
from .latency import COST_PROFILES, compare_latency, concat_results, served_cost, state_cost, with_cost_profile
from .rules import (ChainPolicyRule, ForcedRule, MaxProbRule, PathwiseRule, StateFnRule, StopStatePolicy,
                    cascade_state_fn, is_runtime_rule, max_prob_rule, pathwise_rule, stop_state_policy,
                    tamer_answer_fns, tamer_state_fn, threshold_rule)
from .runtime import CascadeServer, EarlyExitServer, ServeResult

__all__ = ["COST_PROFILES", "CascadeServer", "ChainPolicyRule", "EarlyExitServer", "ForcedRule", "MaxProbRule",
           "MultiExitModel", "PathwiseRule", "ServeResult", "StateFnRule", "StopStatePolicy", "cascade_state_fn", "compare_latency",
           "concat_results", "is_runtime_rule", "max_prob_rule", "pathwise_rule", "served_cost", "state_cost", "stop_state_policy",
           "tamer_answer_fns", "tamer_state_fn", "threshold_rule", "transformer_exits",
           "with_cost_profile"]
