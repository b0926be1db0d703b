"""The runs of the zoo's evaluations: one summary per split of each trace, and their checks.

:func:`evaluate_zoo` runs :func:`ttamer.earlyexit.evaluation.evaluate_trace` on each trace and
split (the default estimation, no options per trace) and keeps a small summary per run
(:func:`summarise`), which records the split it is (:data:`PAIR_KEYS`). The tables of
:mod:`ttamer.workloads.zoo_report` read those runs; every one of them checks the runs' values
first (:func:`check_runs`: a :class:`~ttamer.core.errors.TTamerError` names the trace, the run,
the key and the strategy), and a table that pairs runs with traces, with calibration areas or
with other runs checks that they record the same splits of the same traces
(:func:`require_traces`, :func:`require_target`, :func:`require_split_record`).
"""

from __future__ import annotations

import math
import numbers
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from ..core.errors import TTamerError
from ..core.parallel import map_processes
from ..core.validate import (check_bool, check_choice, check_count, check_fraction, check_numbers, check_real,
                             check_seed, short_repr)
from ..earlyexit.base import check_trace
from ..earlyexit.evaluation import HEURISTICS, check_bootstrap, evaluate_trace
from ..earlyexit.metrics import ROUNDING, check_front
from ..earlyexit.results import EvaluationResult, StrategyResult
from ..earlyexit.traces import Trace

#: Most split seeds of one call (each split of each trace is a full evaluation).
MAX_SPLITS = 100
#: What an answer can be judged against (``target`` of :func:`evaluate_zoo`).
TARGETS = ("label", "final")
#: The strategies the tables read of every run.
RUN_STRATEGIES = ("ttamer", "no-recall") + tuple(HEURISTICS)
#: What the tables read of a run (:func:`summarise`): key -> the strategies it must map (none:
#: the key alone). Every run of :func:`evaluate_zoo` holds them.
RUN_NEEDS: dict[str, tuple[str, ...]] = {"policy": (), "frontier": RUN_STRATEGIES, "auc": RUN_STRATEGIES,
                                         "cost_at_full": RUN_STRATEGIES, "slo": (), "full_accuracy": ()}
#: What the tables that read the areas alone need of a run.
AUC_NEEDS: dict[str, tuple[str, ...]] = {"auc": ("ttamer",) + tuple(HEURISTICS)}
#: What the paired bootstrap adds to a run (:func:`evaluate_zoo` with ``n_boot > 0``): key -> the
#: strategies it must map. Every run of a trace holds each of them or none does.
BOOTSTRAP_NEEDS: dict[str, tuple[str, ...]] = {"replicates": RUN_STRATEGIES, "auc_ci": RUN_STRATEGIES,
                                               "cost_ci": RUN_STRATEGIES}
#: The keys of a run that record which split of which trace it is (the split's seed, the target
#: its answers were judged against, the calibration fraction and the trace's
#: :meth:`~ttamer.earlyexit.traces.Trace.fingerprint`). :func:`evaluate_zoo` records them (and
#: :func:`~ttamer.workloads.zoo_report.calibration_areas`, in the ``meta`` of each split's :class:`~ttamer.workloads.zoo_report.SplitAreas`); the tables
#: that pair runs with traces, with calibration areas or with other runs compare them.
PAIR_KEYS = ("seed", "target", "calibration_fraction", "fingerprint")


def check_traces(traces: Any, who: str) -> dict[str, Trace]:
    """``traces``: a non-empty dict of name → :class:`~ttamer.earlyexit.traces.Trace`."""
    if not isinstance(traces, Mapping) or not traces:
        raise TTamerError(f"{who}: traces must be a non-empty dict of name -> Trace, got {short_repr(traces)}")
    for name, tr in traces.items():
        if not isinstance(tr, Trace):
            raise TTamerError(f"{who}: traces[{short_repr(name)}] must be a ttamer Trace, got {type(tr).__name__}")
    return dict(traces)


def check_fraction_on(traces: Mapping[str, Trace], fraction: Any, who: str) -> float:
    """``fraction`` as a float, after checking, before any work, that it splits every trace of
    ``traces`` into two sides of at least ``MIN_SPLIT_EXAMPLES`` examples (the error names the
    trace)."""
    fraction = check_fraction(fraction, f"{who}: calibration_fraction")
    for name, tr in traces.items():
        check_fraction(fraction, f"{who}: traces[{short_repr(name)}]: calibration_fraction", n=tr.n_examples)
    return fraction


def check_seeds(seeds: Any, who: str) -> list[int]:
    """``seeds``: a non-empty sequence of distinct split seeds (repeating one would count its
    split twice)."""
    if isinstance(seeds, (str, bytes)) or not isinstance(seeds, (Sequence, np.ndarray)):
        raise TTamerError(f"{who}: seeds must be a sequence of split seeds, e.g. [0, 1, 2], got {short_repr(seeds)}")
    if len(seeds) > MAX_SPLITS:
        raise TTamerError(f"{who}: {len(seeds):,} split seeds; at most {MAX_SPLITS} (MAX_SPLITS) are allowed")
    got = [check_seed(s, "split seed") for s in seeds]
    if not got:
        raise TTamerError(f"{who}: needs at least one split seed")
    repeated = sorted({s for s in got if got.count(s) > 1})
    if repeated:
        raise TTamerError(f"{who}: the split seeds must differ; repeated: {repeated}")
    return got


# ---------------------------------------------------------------------------- a run's values
def check_share(value: Any, name: str) -> None:
    """A finite real in [0, 1] (up to ``ROUNDING``): an area, an accuracy, a share of the cost."""
    v = check_real(value, name)
    if not -ROUNDING <= v <= 1.0 + ROUNDING:
        raise TTamerError(f"{name} must be in [0, 1], got {v:g}")


def _check_cost(value: Any, name: str) -> None:
    """A cost at an accuracy level: a real ``>= 0``, or ``inf`` where it is never reached."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))
    try:
        ok = ok and float(value) >= 0.0  # False for nan
    except (OverflowError, ValueError):
        ok = False
    if not ok:
        raise TTamerError(f"{name} must be a number >= 0, or inf where the level is never reached, "
                          f"got {short_repr(value)}")


def _check_interval(value: Any, name: str, infinite: bool) -> None:
    """``None`` or a (2.5 %, 50 %, 97.5 %) triple of reals, the first at most the last, never
    ``nan`` (``±inf`` only where ``infinite``)."""
    if value is None:
        return
    numbers_ = "numbers (inf where only one side reaches the level)" if infinite else "finite numbers"
    what = f"None or a (2.5 %, 50 %, 97.5 %) triple of {numbers_}, the first at most the last"
    if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, (Sequence, np.ndarray)) or len(value) != 3:
        raise TTamerError(f"{name} must be {what}, got {short_repr(value)}")
    for x in value:
        ok = isinstance(x, numbers.Real) and not isinstance(x, (bool, np.bool_))
        try:
            ok = ok and not math.isnan(float(x)) and (infinite or math.isfinite(float(x)))
        except (OverflowError, ValueError):
            ok = False
        if not ok:
            note = " (a JSON report writes ±inf as null: read it back as ±inf)" if x is None else ""
            raise TTamerError(f"{name} must be {what}, got {short_repr(value)}{note}")
    if float(value[0]) > float(value[2]):
        raise TTamerError(f"{name} must be {what}, got {short_repr(value)}")


def _check_slo_values(slo: Any, name: str) -> None:
    """An :func:`~ttamer.earlyexit.slo.slo_block`: per target a dict whose ``"strategies"`` map
    each strategy to its ``met`` (a bool), ``cost`` and ``accuracy`` (shares in [0, 1])."""
    if not isinstance(slo, Mapping):
        raise TTamerError(f"{name} must be a dict of targets (slo_block's), got {short_repr(slo)}")
    for t, block in slo.items():
        where = f"{name}[{short_repr(t)}]"
        if not isinstance(block, Mapping) or not isinstance(block.get("strategies"), Mapping):
            raise TTamerError(f"{where} must be a dict with a dict 'strategies' (slo_block's), got {short_repr(block)}")
        for s, x in block["strategies"].items():
            at = f"{where}['strategies'][{short_repr(s)}]"
            if not isinstance(x, Mapping) or "met" not in x or "cost" not in x:
                raise TTamerError(f"{at} must be a dict of 'met', 'cost' and 'accuracy' (slo_block's), "
                                  f"got {short_repr(x)}")
            if not isinstance(x["met"], (bool, np.bool_)):
                raise TTamerError(f"{at}['met'] must be True or False, got {short_repr(x['met'])}")
            check_share(x["cost"], f"{at}['cost']")
            if "accuracy" in x:
                check_share(x["accuracy"], f"{at}['accuracy']")


def _check_replicates(value: Mapping[str, Any], name: str) -> int:
    """Each strategy's bootstrap replicates of its area: finite 1-D arrays of one length,
    returned."""
    lengths = {s: len(check_numbers(v, f"{name}[{short_repr(s)}]")) for s, v in value.items()}
    if len(set(lengths.values())) > 1:
        raise TTamerError(f"{name} must hold as many replicates for every strategy, got lengths "
                          f"{short_repr(lengths, 200)}")
    return next(iter(lengths.values()), 0)


def _check_text(value: Any, name: str) -> None:
    if not isinstance(value, str):
        raise TTamerError(f"{name} must be a str, got {short_repr(value)}")


# How the values of a run are checked: per strategy, for the keys that map strategies; whole, for the others.
_STRATEGY_CHECKS: dict[str, Callable[[Any, str], Any]] = {
    "auc": check_share, "cost_at_full": _check_cost,
    "frontier": lambda v, name: check_front(v, name),
    "auc_ci": lambda v, name: _check_interval(v, name, False),
    "cost_ci": lambda v, name: _check_interval(v, name, True),
}
_VALUE_CHECKS: dict[str, Callable[[Any, str], Any]] = {
    "policy": _check_text, "full_accuracy": check_share, "slo": _check_slo_values,
    "seed": check_seed, "target": lambda v, name: check_choice(name, v, TARGETS),
    "calibration_fraction": lambda v, name: check_fraction(v, name), "fingerprint": _check_text,
}


def _check_run(run: Any, needs: Mapping[str, tuple[str, ...]], where: str) -> None:
    """One run: a dict holding what ``needs`` lists (:data:`RUN_NEEDS`) and, where present, the
    bootstrap's keys (:data:`BOOTSTRAP_NEEDS`), every value of a known key well formed (areas and
    accuracies finite shares, costs ``>= 0`` or ``inf``, frontiers :func:`check_front`'s,
    intervals triples, the slo block's entries, the split's record)."""
    if not isinstance(run, Mapping):
        raise TTamerError(f"{where} is {short_repr(run)}, not a dict (evaluate_zoo's runs)")
    required = dict(needs) | {k: v for k, v in BOOTSTRAP_NEEDS.items() if k in run}
    for key, strategies in required.items():
        if key not in run:
            raise TTamerError(f"{where} has no {key!r} (evaluate_zoo's runs)")
        if strategies and not isinstance(run[key], Mapping):
            raise TTamerError(f"{where} must map {key!r} to a dict of the strategies {list(strategies)} "
                              f"(evaluate_zoo's runs), got {short_repr(run[key])}")
        missing = [s for s in strategies if s not in run[key]]
        if missing:
            raise TTamerError(f"{where} must map {key!r} to a dict of the strategies {list(strategies)} "
                              f"(evaluate_zoo's runs); it has no {missing[0]!r}")
    for key, check in _STRATEGY_CHECKS.items():
        if key in run:
            if not isinstance(run[key], Mapping):
                raise TTamerError(f"{where}: {key} must be a dict of strategy -> value, got {short_repr(run[key])}")
            for s, v in run[key].items():
                check(v, f"{where}: {key}[{short_repr(s)}]")
    if "replicates" in run:
        _check_replicates(run["replicates"], f"{where}: replicates")
    for key, check in _VALUE_CHECKS.items():
        if key in run:
            check(run[key], f"{where}: {key}")


def _check_trace_runs(runs: list[dict[str, Any]], where: str) -> None:
    """The runs of one trace agree: each key of :data:`BOOTSTRAP_NEEDS` and :data:`PAIR_KEYS` in
    every run or in none, replicates of one length, one trace, target and calibration fraction,
    distinct split seeds."""
    for key in (*BOOTSTRAP_NEEDS, *PAIR_KEYS):
        have = [key in r for r in runs]
        if any(have) and not all(have):
            raise TTamerError(f"{where}: run {have.index(False)} has no {key!r} while run {have.index(True)} has: "
                              f"every run of a trace holds it or none does (one evaluate_zoo call)")
    if "replicates" in runs[0]:
        lengths = [len(next(iter(r["replicates"].values()))) for r in runs]
        if len(set(lengths)) > 1:
            raise TTamerError(f"{where}: the runs hold {lengths} bootstrap replicates; the intervals pair them, "
                              f"so every run needs as many (one evaluate_zoo call, one n_boot)")
    for key in ("fingerprint", "target", "calibration_fraction"):
        if key in runs[0] and any(r[key] != runs[0][key] for r in runs):
            raise TTamerError(f"{where}: the runs differ in {key!r} ({short_repr([r[key] for r in runs], 200)}); "
                              f"they must be splits of one trace from one evaluate_zoo call")
    if "seed" in runs[0]:
        seeds = [int(r["seed"]) for r in runs]
        if len(set(seeds)) < len(seeds):
            raise TTamerError(f"{where}: the runs repeat a split seed ({seeds}); each split counts once")


def check_runs(zoo: Any, who: str, traces: Mapping[str, Any] | None = None,
                needs: Mapping[str, tuple[str, ...]] = RUN_NEEDS) -> dict[str, list[dict[str, Any]]]:
    """``zoo``: :func:`evaluate_zoo` runs -- a non-empty dict of name → non-empty list of runs
    holding what ``needs`` lists (:data:`RUN_NEEDS`), every value well formed, the runs of a
    trace consistent, one target over the zoo, every name also in ``traces`` where given."""
    if not isinstance(zoo, Mapping) or not zoo:
        raise TTamerError(f"{who}: needs the evaluate_zoo runs of at least one trace, got {short_repr(zoo)}")
    for name, runs in zoo.items():
        if not isinstance(runs, list) or not runs:
            raise TTamerError(f"{who}: the runs of trace {short_repr(name)} must be a non-empty list (evaluate_zoo's)")
        if traces is not None and name not in traces:
            raise TTamerError(f"{who}: trace {short_repr(name)} has runs but is not among the traces given")
        for k, run in enumerate(runs):
            _check_run(run, needs, f"{who}: run {k} of trace {short_repr(name)}")
        _check_trace_runs(runs, f"{who}: trace {short_repr(name)}")
    targets = {runs[0]["target"] for runs in zoo.values() if "target" in runs[0]}
    if len(targets) > 1:
        raise TTamerError(f"{who}: the runs judge answers against different targets {sorted(targets)}; "
                          f"one zoo holds one evaluate_zoo call's runs")
    return dict(zoo)


def check_split_record(record: Mapping[str, Any], where: str) -> None:
    """The values of :data:`PAIR_KEYS` in ``record`` (a run, or the ``meta`` of calibration areas)
    well formed: a seed, a target of :data:`TARGETS`, a calibration fraction, a fingerprint (a
    str); a :class:`~ttamer.core.errors.TTamerError` naming ``where`` and the key otherwise."""
    for key in PAIR_KEYS:
        _VALUE_CHECKS[key](record[key], f"{where}[{key!r}]")


def check_strategies(strategies: Any, zoo: Mapping[str, list[dict[str, Any]]], who: str,
                      keys: tuple[str, ...] = ("auc",)) -> list[str]:
    """``strategies``: distinct names of strategies that every run maps under each of ``keys``
    it holds (a sequence, not one string)."""
    if isinstance(strategies, (str, bytes)) or not isinstance(strategies, (Sequence, np.ndarray)) or not len(strategies):
        raise TTamerError(f"{who}: strategies must be a non-empty sequence of names, e.g. ('ttamer', 'max-prob'), "
                          f"got {short_repr(strategies)}")
    strategies = list(strategies)
    known = next(iter(zoo.values()))[0]["auc"]
    unknown = [s for s in strategies if not isinstance(s, str) or s not in known]
    if unknown:
        raise TTamerError(f"{who}: unknown strategies {short_repr(unknown, 120)}; the runs hold {sorted(known)}")
    repeated = sorted({s for s in strategies if strategies.count(s) > 1})
    if repeated:
        raise TTamerError(f"{who}: strategies must differ; repeated: {repeated}")
    for name, runs in zoo.items():
        for k, run in enumerate(runs):
            for key in keys:
                missing = [s for s in strategies if key in run and s not in run[key]]
                if missing:
                    raise TTamerError(f"{who}: run {k} of trace {short_repr(name)} has no strategy {missing[0]!r} in "
                                      f"{key}; it holds {short_repr(sorted(run[key]), 200)}")
    return strategies


def require_split_record(zoo: Mapping[str, list[dict[str, Any]]], who: str, arg: str = "zoo") -> None:
    """Every run records its split (:data:`PAIR_KEYS`): what a table pairing runs checks."""
    for name, runs in zoo.items():
        for k, run in enumerate(runs):
            missing = [key for key in PAIR_KEYS if key not in run]
            if missing:
                raise TTamerError(f"{who}: run {k} of trace {short_repr(name)} in {arg} has no {missing[0]!r}, so "
                                  f"which split of which trace it is cannot be checked; pass the runs of "
                                  f"evaluate_zoo, which record {list(PAIR_KEYS)}")


def require_target(zoo: Mapping[str, list[dict[str, Any]]], target: str, who: str, arg: str = "zoo") -> None:
    """The runs of ``zoo`` (recording their split) judge answers against ``target``."""
    got = next(iter(zoo.values()))[0]["target"]  # one target per zoo (check_runs)
    if got != target:
        raise TTamerError(f"{who}: {arg} holds runs judged against target {got!r}; it needs those of "
                          f"evaluate_zoo(..., target={target!r})")


def require_traces(zoo: Mapping[str, list[dict[str, Any]]], traces: Mapping[str, Trace], who: str) -> None:
    """The runs of each trace (recording their split) were evaluated on ``traces`` of that name."""
    require_split_record(zoo, who)
    for name, runs in zoo.items():
        if runs[0]["fingerprint"] != traces[name].fingerprint():  # one per trace (check_runs)
            raise TTamerError(f"{who}: the runs of trace {short_repr(name)} were evaluated on another trace than "
                              f"traces[{short_repr(name)}] (their fingerprints differ)")


def _cost(m: StrategyResult) -> float:
    c = m.cost_at_full_accuracy
    return np.inf if c is None else float(c)


def summarise(result: EvaluationResult, fingerprint: str | None = None) -> dict[str, Any]:
    """The numbers of one :func:`~ttamer.earlyexit.evaluation.evaluate_trace` result the tables
    need, with the split it is (``seed``, ``target``, ``calibration_fraction``) and, where given,
    the ``fingerprint`` (:meth:`~ttamer.earlyexit.traces.Trace.fingerprint`) of the trace evaluated:
    the keys :data:`PAIR_KEYS` that the tables pairing runs compare."""
    if fingerprint is not None and not isinstance(fingerprint, str):
        raise TTamerError(f"summarise: fingerprint must be a str (Trace.fingerprint()), got {short_repr(fingerprint)}")
    st = result.strategies
    out = {"policy": result.ttamer_fit.get("policy", result.ttamer_fit["description"]),
           "frontier": {k: np.asarray(m.frontier) for k, m in st.items()},
           "auc": {k: m.auc for k, m in st.items()}, "cost_at_full": {k: _cost(m) for k, m in st.items()},
           "slo": result.slo, "full_accuracy": float(result.full_model.accuracy),
           "seed": result.split.seed, "target": result.target,
           "calibration_fraction": result.split.calibration_fraction}
    if fingerprint is not None:
        out["fingerprint"] = fingerprint
    if st["ttamer"].auc_replicates is not None:
        out["replicates"] = {k: np.asarray(m.auc_replicates) for k, m in st.items()}
    if st["ttamer"].auc_minus_ttamer_ci is not None:  # with the bootstrap: each strategy minus T-Tamer, paired
        out["auc_ci"] = {k: m.auc_minus_ttamer_ci for k, m in st.items()}
        out["cost_ci"] = {k: m.cost_at_full_minus_ttamer_ci for k, m in st.items()}
    return out


def _evaluate_one(trace: Trace, seed: int, target: str, n_boot: int, calibration_fraction: float,
                  fingerprint: str) -> dict[str, Any]:
    """:func:`summarise` of one split of one trace (a module-level function: worker processes
    import it)."""
    r = evaluate_trace(trace, seed=seed, calibration_fraction=calibration_fraction, target=target,
                       n_boot=n_boot, with_chain=False, keep_replicates=n_boot > 0)
    return summarise(r, fingerprint)


def evaluate_zoo(traces: dict[str, Trace], seeds: Sequence[int], target: str = "label", n_boot: int = 100,
                 calibration_fraction: float = 0.5, progress: bool = False,
                 n_jobs: int = 1) -> dict[str, list[dict[str, Any]]]:
    """Per trace name, one :func:`summarise` per split seed (T-Tamer with its defaults; the
    paper's chain estimation is left out for speed). ``n_jobs > 1`` runs the (trace, split)
    evaluations in that many worker processes; every run is seeded, so the result is the same.
    Each run records its split and trace (:data:`PAIR_KEYS`).

    Raises
    ------
    TTamerError
        Before any evaluation: for ``traces`` or ``seeds`` that are not a non-empty dict of
        traces and distinct split seeds (at most :data:`MAX_SPLITS`), a trace that is not a chain
        of 2 to :data:`~ttamer.earlyexit.base.MAX_EXITS` exits, a ``target`` not in
        :data:`TARGETS`, a ``calibration_fraction`` that leaves fewer than
        :data:`~ttamer.core.validate.MIN_SPLIT_EXAMPLES` examples on a side of some trace (the
        error names it), an ``n_boot`` that
        :func:`~ttamer.earlyexit.evaluation.check_bootstrap` refuses on some trace, a
        ``progress`` that is not a bool or an ``n_jobs`` that is not a count of processes.
    """
    traces, seeds = check_traces(traces, "evaluate_zoo"), check_seeds(seeds, "evaluate_zoo")
    check_bool(progress, "evaluate_zoo: progress")
    check_choice("evaluate_zoo: target", target, TARGETS)
    n_boot = check_count(n_boot, "evaluate_zoo: n_boot", minimum=0)
    calibration_fraction = check_fraction_on(traces, calibration_fraction, "evaluate_zoo")
    for name, tr in traces.items():
        check_trace(tr, f"evaluate_zoo: traces[{short_repr(name)}]", chain=True)
        n_test = tr.n_examples - round(calibration_fraction * tr.n_examples)
        check_bootstrap(n_boot, n_test, f"evaluate_zoo: traces[{short_repr(name)}]: n_boot")
    prints = {name: tr.fingerprint() for name, tr in traces.items()}
    runs = [(name, s) for name in traces for s in seeds]
    args = [(traces[name], s, target, n_boot, calibration_fraction, prints[name]) for name, s in runs]
    results = map_processes(_evaluate_one, args, n_jobs, progress, "traces x splits")
    out: dict[str, list[dict[str, Any]]] = {}
    for (name, _), res in zip(runs, results):
        out.setdefault(name, []).append(res)
    return out
