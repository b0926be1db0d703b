"""Early-exit workloads on real models and data (SPEC §5.5): each writes one trace (§5.1).

* :mod:`ttamer.workloads.nlp` — a transformer encoder with an exit after every layer
  (offline: all-MiniLM-L6-v2 on rotten-tomatoes sentences; full: BERT-base on IMDB).
* :mod:`ttamer.workloads.vision` — a multi-exit CNN trained from scratch (offline: a small CNN
  on Fashion-MNIST; full: ResNet-18 with exits on CIFAR-10).

:func:`get_trace` returns a cached trace, generating it if absent. torch, transformers and
datasets are imported only when a workload runs.
"""

from .common import (ALT_UNITS, CACHE_ENV, TIME_UNIT, WorkloadResult, cache_dir, trace_key,
                     with_cost_unit)
from .registry import WORKLOADS, generate, get_trace, trace_path

__all__ = ["ALT_UNITS", "CACHE_ENV", "TIME_UNIT", "WORKLOADS", "WorkloadResult", "cache_dir",
           "generate", "get_trace", "trace_key", "trace_path", "with_cost_unit"]
