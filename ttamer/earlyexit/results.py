"""What :func:`~ttamer.earlyexit.evaluation.evaluate_trace` returns: :class:`EvaluationResult`.

The result of an evaluation is a tree of small dataclasses -- the trace and its split, the
full model, one :class:`StrategyResult` per strategy (its frontier, sweep points, bootstrap
band and the metrics of the book's chapter *Early exit on real models*,
:doc:`/early_exit`) -- and :meth:`EvaluationResult.to_dict` turns it into the JSON object that
``ttamer evaluate --json`` prints (the page *The command line* documents its schema). Costs are
fractions of the full model's mean cost throughout.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

def _none_for_nan(values: Any) -> list[float | None]:
    return [None if np.isnan(x) else float(x) for x in np.asarray(values, dtype=float)]


@dataclass
class TraceSummary:
    """The trace evaluated.

    Attributes
    ----------
    model, dataset, split, cost_unit : str or None
        Its descriptive ``meta`` fields (defaults where the trace has none; see the page
        *Formats*).
    exit_names : list of str
        The exits, in order.
    n_examples, n_exits, n_classes : int
        Its size.
    """

    model: str | None
    dataset: str | None
    split: str | None
    cost_unit: str | None
    exit_names: list[str]
    n_examples: int
    n_exits: int
    n_classes: int

    def to_dict(self) -> dict[str, Any]:
        """The ``"trace"`` object of the JSON report."""
        return {"model": self.model, "dataset": self.dataset, "split": self.split, "cost_unit": self.cost_unit,
                "exit_names": list(self.exit_names), "n_examples": self.n_examples, "n_exits": self.n_exits,
                "n_classes": self.n_classes}


@dataclass
class SplitSummary:
    """The calibration / test split.

    Attributes
    ----------
    seed : int
        Seed of the split.
    calibration_fraction : float
        Share of the examples used for fitting.
    n_calibration, n_test : int
        Examples on each side.
    """

    seed: int
    calibration_fraction: float
    n_calibration: int
    n_test: int

    def to_dict(self) -> dict[str, Any]:
        """The ``"split"`` object of the JSON report."""
        return {"seed": self.seed, "calibration_fraction": self.calibration_fraction,
                "n_calibration": self.n_calibration, "n_test": self.n_test}


@dataclass
class FullModelSummary:
    """The full model (every exit run, the last one answers) on the test examples.

    Attributes
    ----------
    accuracy : float
        Its accuracy (against the evaluation's target).
    cost : float
        Its cost as a fraction of itself: 1.
    mean_cost : float
        Its mean cost per example, in the trace's cost unit.
    exit_accuracy : numpy.ndarray
        ``[L]`` accuracy of each exit alone.
    exit_cost : numpy.ndarray
        ``[L]`` mean cumulative cost up to each exit, as a fraction of the full model's.
    """

    accuracy: float
    cost: float
    mean_cost: float
    exit_accuracy: np.ndarray
    exit_cost: np.ndarray

    def to_dict(self) -> dict[str, Any]:
        """The ``"full_model"`` object of the JSON report."""
        return {"accuracy": self.accuracy, "cost": self.cost, "mean_cost": self.mean_cost,
                "exit_accuracy": np.asarray(self.exit_accuracy).tolist(),
                "exit_cost": np.asarray(self.exit_cost).tolist()}


@dataclass
class Band:
    """A pointwise 95 % bootstrap band of a frontier ``acc(c)`` on a cost grid.

    Attributes
    ----------
    cost : numpy.ndarray
        ``[G]`` the cost grid.
    lower, upper : numpy.ndarray
        ``[G]`` the 2.5 % and 97.5 % quantiles of ``acc(c)`` (NaN where the frontier is
        undefined).
    """

    cost: np.ndarray
    lower: np.ndarray
    upper: np.ndarray

    def to_dict(self) -> dict[str, Any]:
        """The ``"band"`` object of a strategy in the JSON report (``null`` for NaN)."""
        return {"cost": np.asarray(self.cost).tolist(), "lower": _none_for_nan(self.lower),
                "upper": _none_for_nan(self.upper)}


@dataclass
class StrategyResult:
    r"""One strategy's sweep on the test examples and its metrics (:mod:`ttamer.earlyexit.evaluation`).

    Attributes
    ----------
    auc : float
        Normalised area under the frontier over the evaluation's cost range,
        :math:`\frac{1}{c_{hi} - c_{lo}} \int_{c_{lo}}^{c_{hi}} \mathrm{acc}(c)\, dc`.
    cost_at_full_accuracy : float or None
        Least cost of a frontier point at least as accurate as the full model (``None``: never).
    cost_at_full_accuracy_minus_half_pt, cost_at_full_accuracy_minus_1pt : float or None
        The same, 0.5 and 1 accuracy point below the full model.
    cost_saved_at_full_accuracy : float or None
        One minus ``cost_at_full_accuracy``.
    accuracy_at_cost : dict
        ``acc(c)`` at 25, 50 and 75 % of the full cost, keyed ``"0.25"``, ``"0.5"``, ``"0.75"``.
    oracle_gain_share : float or None
        Cost saved at the full model's accuracy as a share of the oracle's.
    frontier : numpy.ndarray
        ``[F, 2]`` the frontier's points ``(cost, accuracy)``, by increasing cost.
    points : numpy.ndarray
        ``[P, 3]`` the sweep's points ``(parameter, cost, accuracy)``; the parameter (a
        threshold, ``λ``, an exit) is NaN where it is not finite.
    band : Band, optional
        The bootstrap band of the frontier (without bootstrap: ``None``).
    auc_ci : tuple of float, optional
        95 % bootstrap interval of ``auc``.
    auc_minus_ttamer_ci : tuple of float, optional
        2.5, 50 and 97.5 % quantiles of this strategy's AUC minus T-Tamer's over the same
        resamples (paired).
    cost_at_full_minus_ttamer_ci : tuple of float, optional
        2.5, 50 and 97.5 % quantiles of this strategy's cost at the full model's accuracy minus
        T-Tamer's over the same resamples (paired; the full model's accuracy is read on each);
        ``±inf`` (``None`` in JSON) where only one of the two reaches it on that share of them.
    auc_replicates : numpy.ndarray, optional
        The bootstrap AUC replicates (``keep_replicates=True``).
    cost_at_full_replicates : numpy.ndarray, optional
        The bootstrap replicates of the cost at the full model's accuracy (``keep_replicates=True``;
        ``inf``, ``None`` in JSON, where a resample's frontier never reaches it).
    """

    auc: float
    cost_at_full_accuracy: float | None
    cost_at_full_accuracy_minus_half_pt: float | None
    cost_at_full_accuracy_minus_1pt: float | None
    cost_saved_at_full_accuracy: float | None
    accuracy_at_cost: dict[str, float | None]
    oracle_gain_share: float | None
    frontier: np.ndarray
    points: np.ndarray
    band: Band | None = None
    auc_ci: tuple[float, float] | None = None
    auc_minus_ttamer_ci: tuple[float, float, float] | None = None
    cost_at_full_minus_ttamer_ci: tuple[float, float, float] | None = None
    auc_replicates: np.ndarray | None = None
    cost_at_full_replicates: np.ndarray | None = None

    @classmethod
    def from_metrics(cls, metrics: dict[str, Any], frontier: np.ndarray, points: np.ndarray) -> "StrategyResult":
        """From the scalar metrics of :func:`~ttamer.earlyexit.evaluation.strategy_metrics`."""
        return cls(auc=metrics["auc"], cost_at_full_accuracy=metrics["cost_at_full_accuracy"],
                   cost_at_full_accuracy_minus_half_pt=metrics["cost_at_full_accuracy_minus_0.5pt"],
                   cost_at_full_accuracy_minus_1pt=metrics["cost_at_full_accuracy_minus_1pt"],
                   cost_saved_at_full_accuracy=metrics["cost_saved_at_full_accuracy"],
                   accuracy_at_cost=dict(metrics["accuracy_at_cost"]),
                   oracle_gain_share=metrics["oracle_gain_share"],
                   frontier=np.asarray(frontier, dtype=float), points=np.asarray(points, dtype=float))

    def to_dict(self) -> dict[str, Any]:
        """The strategy's object in the JSON report."""
        out: dict[str, Any] = {
            "auc": self.auc, "cost_at_full_accuracy": self.cost_at_full_accuracy,
            "cost_at_full_accuracy_minus_0.5pt": self.cost_at_full_accuracy_minus_half_pt,
            "cost_at_full_accuracy_minus_1pt": self.cost_at_full_accuracy_minus_1pt,
            "cost_saved_at_full_accuracy": self.cost_saved_at_full_accuracy,
            "accuracy_at_cost": dict(self.accuracy_at_cost), "oracle_gain_share": self.oracle_gain_share,
            "frontier": np.asarray(self.frontier).tolist(),
            "points": [[float(a) if np.isfinite(a) else None, float(b), float(c)] for a, b, c in self.points],
        }
        if self.band is not None:
            out["band"] = self.band.to_dict()
        if self.auc_ci is not None:
            out["auc_ci"] = [float(x) for x in self.auc_ci]
        if self.auc_minus_ttamer_ci is not None:
            out["auc_minus_ttamer_ci"] = [float(x) for x in self.auc_minus_ttamer_ci]
        if self.cost_at_full_minus_ttamer_ci is not None:
            out["cost_at_full_minus_ttamer_ci"] = [float(x) if np.isfinite(x) else None
                                                   for x in self.cost_at_full_minus_ttamer_ci]
        if self.auc_replicates is not None:
            out["auc_replicates"] = np.asarray(self.auc_replicates).tolist()
        if self.cost_at_full_replicates is not None:
            out["cost_at_full_replicates"] = [float(x) if np.isfinite(x) else None for x in self.cost_at_full_replicates]
        return out


@dataclass
class EvaluationResult:
    """Every strategy of an early-exit evaluation on one trace and one split (:func:`~ttamer.earlyexit.evaluation.evaluate_trace`).

    Attributes
    ----------
    trace : TraceSummary
        The trace evaluated.
    split : SplitSummary
        The calibration / test split.
    target : {"label", "final"}
        What an answer is judged against.
    frontier_kind : {"pareto", "hull"}
        The kind of frontier of every strategy.
    full_model : FullModelSummary
        The full model on the test examples.
    cost_range : tuple of float
        ``(lo, hi)``, the cost range of the AUC.
    ttamer_fit : dict
        How T-Tamer was fitted: ``"estimation"``, ``"description"`` and the options chosen
        by the estimation (with ``"chain"``: the same for the paper's estimation).
    strategies : dict
        Per strategy name, its :class:`StrategyResult`, in the order of :data:`~ttamer.earlyexit.evaluation.STRATEGIES`.
    slo : dict
        The service-level protocol (:func:`~ttamer.earlyexit.slo.slo_block`).
    seconds : float
        Wall-clock time of the evaluation.
    """

    trace: TraceSummary
    split: SplitSummary
    target: str
    frontier_kind: str
    full_model: FullModelSummary
    cost_range: tuple[float, float]
    ttamer_fit: dict[str, Any]
    strategies: dict[str, StrategyResult]
    slo: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def example_exits_per_second(self) -> float | None:
        """Examples times exits evaluated per second (``None`` if no time was measured)."""
        return self.trace.n_examples * self.trace.n_exits / self.seconds if self.seconds > 0 else None

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready report that ``ttamer evaluate --json`` prints: ``"trace"``,
        ``"split"``, ``"target"``, ``"frontier_kind"``, ``"full_model"``, ``"cost_range"``,
        ``"ttamer_fit"``, ``"strategies"``, ``"slo"`` and ``"timing"``."""
        return {
            "trace": self.trace.to_dict(),
            "split": self.split.to_dict(),
            "target": self.target,
            "frontier_kind": self.frontier_kind,
            "full_model": self.full_model.to_dict(),
            "cost_range": [float(self.cost_range[0]), float(self.cost_range[1])],
            "ttamer_fit": self.ttamer_fit,
            "strategies": {name: s.to_dict() for name, s in self.strategies.items()},
            "slo": self.slo,
            "timing": {"seconds": self.seconds, "example_exits_per_second": self.example_exits_per_second},
        }
