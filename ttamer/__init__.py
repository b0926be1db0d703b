"""ttamer -- provably taming trade-offs in ML serving (T-Tamer, arXiv 2509.22992).

Markovian Pandora's box on a forest of models: which model to consult next, when to stop,
and which model answers. See the book's chapters *The model* and *Recall* and the book.
"""

from .core.errors import InstanceError, SolverError, TraceError, TTamerError
from .core.instance import Instance, Node, Skip, load_instance, save_instance
from .core.policy import Policy, rollout
from .core.simulate import ExactEvaluation, SimulationResult, evaluate_exactly, simulate
from .core.solution import SolveResult
from .solvers.solve import solve
from .earlyexit.traces import Trace, load_trace, save_trace
from .earlyexit.calibration import EarlyExitTamer
from .earlyexit.features import StateSpec
from .earlyexit.pathwise import PathwiseTamer
from .earlyexit.tamer import ThresholdTamer
from .earlyexit.evaluation import evaluate_trace
from .earlyexit.cascade import CascadeTamer

__all__ = [
    "Instance", "Node", "Skip", "load_instance", "save_instance",
    "Policy", "rollout", "SolveResult", "solve", "simulate", "SimulationResult",
    "evaluate_exactly", "ExactEvaluation",
    "TTamerError", "InstanceError", "SolverError", "TraceError",
    "Trace", "load_trace", "save_trace", "EarlyExitTamer", "StateSpec", "PathwiseTamer", "ThresholdTamer", "evaluate_trace", "CascadeTamer",
]

__version__ = "0.1.0"
