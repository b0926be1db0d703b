"""ttamer -- provably taming trade-offs in ML serving (T-Tamer, arXiv 2509.22992).

Markovian Pandora's box on a forest of models: which model to consult next, when to stop,
and which model answers. See the book's chapters *The model* and *Recall* and the book.

The names below are imported from the modules that define them when first used, and so are
the layers (``ttamer.core``, ``ttamer.solvers``, …): ``import ttamer`` and the command line
start without loading numpy, scipy or torch, and an interrupt while ``ttamer`` starts ends as
one line, not a traceback.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

#: Each public name and the module (below ``ttamer``) that defines it.
EXPORTS = {
    "Instance": "core.instance", "Node": "core.instance", "Skip": "core.instance",
    "load_instance": "core.instance", "save_instance": "core.instance",
    "Policy": "core.policy", "rollout": "core.policy", "SolveResult": "core.solution", "solve": "solvers.solve",
    "simulate": "core.simulate", "SimulationResult": "core.simulate", "evaluate_exactly": "core.simulate",
    "ExactEvaluation": "core.simulate",
    "TTamerError": "core.errors", "InstanceError": "core.errors", "SolverError": "core.errors",
    "TraceError": "core.errors",
    "Trace": "earlyexit.traces", "load_trace": "earlyexit.traces", "save_trace": "earlyexit.traces",
    "EarlyExitTamer": "earlyexit.calibration", "StateSpec": "earlyexit.features", "PathwiseTamer": "earlyexit.pathwise",
    "ThresholdTamer": "earlyexit.tamer", "evaluate_trace": "earlyexit.evaluation", "CascadeTamer": "earlyexit.cascade",
}
#: The layers of the package, each a folder (the book's page *The ttamer package*).
LAYERS = ("core", "solvers", "theory", "earlyexit", "serving", "workloads", "cli", "plots", "benchmarks")

__all__ = list(EXPORTS)

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    """A public name (:data:`EXPORTS`) or a layer (:data:`LAYERS`), imported on first use."""
    if name in EXPORTS:
        value = getattr(import_module(f".{EXPORTS[name]}", __name__), name)
        globals()[name] = value  # later uses find it without this function
        return value
    if name in LAYERS:
        return import_module(f".{name}", __name__)
    raise AttributeError(f"module 'ttamer' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__) | set(LAYERS))
