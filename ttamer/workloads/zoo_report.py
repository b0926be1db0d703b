"""T-Tamer against the heuristics on every trace of the zoo, over several splits.

:func:`~ttamer.workloads.zoo_runs.evaluate_zoo` (of :mod:`ttamer.workloads.zoo_runs`, and
importable from here) runs :func:`ttamer.earlyexit.evaluation.evaluate_trace` on each trace and
split (the default estimation, no options per trace) and keeps a small summary per run;
:func:`gain_table`, :func:`heuristic_choice_table` (with :func:`calibration_areas` and
:func:`split_half_correlation`), :func:`never_worse_table` (with :func:`interval_widths`), :func:`slo_table` (with :func:`slo_dominated`)
and :func:`protocol_table` turn those summaries into the tables of the book's chapter *Across
workloads*; :func:`class_table` fits each policy class of T-Tamer's menu alone, and
:func:`subset_size_table` compares two rules on subsets of growing size, and
:func:`cost_profile_table` replays the traces with uneven exit costs (:func:`recosted`). The AUC
gains carry a 95 % interval from a paired bootstrap over test examples, averaged over splits:
replicate ``b`` of every split resamples that split's test examples, the same resample for
every strategy, and the interval is that of the mean over splits of (T-Tamer − heuristic).

Every table checks the values of the runs it reads (a :class:`~ttamer.core.errors.TTamerError`
names the trace, the run, the key and the strategy), and a table that pairs runs with traces,
with calibration areas or with other runs checks that they record the same splits of the same
traces (:data:`~ttamer.workloads.zoo_runs.PAIR_KEYS`).
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from ..core.errors import TTamerError
from ..core.validate import MIN_SPLIT_EXAMPLES, check_count, check_fraction, check_real, check_seed, short_repr
from ..earlyexit.base import check_trace
from ..core.parallel import map_processes
from ..earlyexit.metrics import cost_at_accuracy
from ..earlyexit.evaluation import HEURISTICS, never_worse_split
from ..earlyexit.heuristics import HEURISTIC_RULES
from ..earlyexit.traces import Trace
from .zoo_runs import (AUC_NEEDS, PAIR_KEYS, check_fraction_on, check_runs, check_seeds, check_share,
                       check_split_record, check_strategies, check_traces, evaluate_zoo, require_split_record,
                       require_target, require_traces, summarise)
from .report import tidy_table

#: The module's public names (:func:`~ttamer.workloads.zoo_runs.evaluate_zoo` and :func:`~ttamer.workloads.zoo_runs.summarise` come from
#: :mod:`ttamer.workloads.zoo_runs`).
__all__ = ["COST_PROFILES", "MAX_SUBSET_REPEATS", "MAX_SUBSET_SHARES", "OVERTHINK_MARGIN", "SplitAreas",
           "calibration_areas", "class_table", "cost_at_level_table", "cost_profile_table", "evaluate_zoo",
           "gain_table", "heldout_table", "heuristic_choice_table", "interval_widths", "never_worse_table",
           "overthinks", "protocol_table", "recosted", "resolution_table", "slo_dominated", "slo_table",
           "split_gain_table", "split_half_correlation", "subset_size_table", "summarise"]

#: A trace "overthinks" when some earlier exit beats the last by more than this (accuracy).
OVERTHINK_MARGIN = 0.01
#: Most random subsets per share of :func:`subset_size_table` (each is fitted and swept).
MAX_SUBSET_REPEATS = 10_000
#: Most shares of the examples of one :func:`subset_size_table` (each is ``repeats`` fits and sweeps).
MAX_SUBSET_SHARES = 100

def _best_heuristic(run: dict[str, Any], heuristics: Iterable[str] = HEURISTICS) -> str:
    return max(heuristics, key=lambda h: run["auc"][h])


def _interval(runs: list[dict[str, Any]], a: str, b: str | None) -> tuple[float, float]:
    """95 % interval of the mean over splits of AUC(a) − AUC(b) (``b`` None: each split's best
    heuristic), from the splits' paired bootstrap replicates."""
    if not all("replicates" in r for r in runs):
        return np.nan, np.nan
    diffs = [r["replicates"][a] - r["replicates"][b or _best_heuristic(r)] for r in runs]
    mean = np.mean(np.stack(diffs), axis=0)
    return float(np.quantile(mean, 0.025)), float(np.quantile(mean, 0.975))


def overthinks(trace: Trace) -> bool:
    """Whether some exit before the last is more accurate than the last by more than
    :data:`OVERTHINK_MARGIN`."""
    acc = trace.accuracy()
    return bool(acc[:-1].max() > acc[-1] + OVERTHINK_MARGIN)


def gain_table(zoo: dict[str, list[dict[str, Any]]], traces: dict[str, Trace]):
    """One row per trace: its shape, whether it overthinks, the policy class chosen most often,
    T-Tamer's AUC gain (pt) over the best heuristic of each split (mean, 95 % interval, worst
    split), the number of splits where its frontier area and its cost at the full model's
    accuracy are at least as good as every heuristic's, the cost gain at the full model's
    accuracy (pt of the full cost, mean over the splits where both reach it) and the AUC gain of
    recall over no recall (pt). "vs each heuristic, mean" is the smallest, over the heuristics, of
    T-Tamer's mean area over the splits minus that heuristic's (a heuristic judged on its own, not
    the best one of each split). "best accuracy − full" is the highest test accuracy on
    T-Tamer's frontier minus the full model's (mean over splits; "max-prob's" the same for the
    max-probability threshold): above zero where stopping early, or answering with an earlier
    exit, beats running every exit."""
    import pandas as pd

    zoo, traces = check_runs(zoo, "gain_table", traces), check_traces(traces, "gain_table")
    require_traces(zoo, traces, "gain_table")
    rows = {}
    for name, runs in zoo.items():
        tr = traces[name]
        gains = np.array([r["auc"]["ttamer"] - r["auc"][_best_heuristic(r)] for r in runs])
        lo, hi = _interval(runs, "ttamer", None)
        cost_ok = [r["cost_at_full"]["ttamer"] <= min(r["cost_at_full"][h] for h in HEURISTICS) + 1e-9 for r in runs]
        auc_ok = [r["auc"]["ttamer"] >= max(r["auc"][h] for h in HEURISTICS) - 1e-12 for r in runs]
        both = [(r["cost_at_full"]["ttamer"], min(r["cost_at_full"][h] for h in HEURISTICS)) for r in runs]
        cgain = [h - t for t, h in both if np.isfinite(t) and np.isfinite(h)]
        policies = [r["policy"] for r in runs]

        def mean_auc(k: str) -> float:
            return float(np.mean([r["auc"][k] for r in runs]))

        def peak(run: dict[str, Any], k: str) -> float:
            return float(np.max(run["frontier"][k][:, 1]))

        rows[name] = {
            "kind": tr.meta.get("kind", ""), "exits": tr.n_exits, "classes": tr.n_classes,
            "overthinks": overthinks(tr),
            "policy (most chosen)": max(set(policies), key=policies.count),
            "AUC gain (pt)": 100 * gains.mean(), "95% low": 100 * lo, "95% high": 100 * hi,
            "worst split (pt)": 100 * gains.min(),
            "AUC ≥ all (splits)": f"{sum(auc_ok)}/{len(runs)}", "cost@full ≤ all (splits)": f"{sum(cost_ok)}/{len(runs)}",
            "cost@full gain (pt)": 100 * float(np.mean(cgain)) if cgain else np.nan,
            "vs each heuristic, mean (pt)": 100 * min(mean_auc("ttamer") - mean_auc(h) for h in HEURISTICS),
            "recall − no recall (pt)": 100 * float(np.mean([r["auc"]["ttamer"] - r["auc"]["no-recall"] for r in runs])),
            "best accuracy − full (pt)": 100 * float(np.mean([peak(r, "ttamer") - r["full_accuracy"] for r in runs])),
            "max-prob's (pt)": 100 * float(np.mean([peak(r, "max-prob") - r["full_accuracy"] for r in runs])),
        }
    return tidy_table(pd.DataFrame.from_dict(rows, orient="index"), 2)


def heldout_table(zoo: dict[str, list[dict[str, Any]]], traces: dict[str, Trace]):
    """One row per trace, each heuristic judged on its own over the splits: the smallest, over
    the heuristics, of T-Tamer's mean area minus the heuristic's (pt) and the heuristic
    ("below": empty where T-Tamer's is at least every heuristic's); the same for the cost at
    the full model's accuracy (pt of the full cost, the heuristic's minus T-Tamer's, mean over
    the splits where both reach it); SDN's fallback's mean area minus the max-probability
    rule's (pt), whether the trace overthinks, and the policy classes chosen.

    With the runs' bootstrap replicates (:func:`~ttamer.workloads.zoo_runs.evaluate_zoo` with ``n_boot > 0``), "95% low"
    and "95% high" bound the area difference with the heuristic of the first column (the
    paired bootstrap of the gain table's intervals, pt), and "beyond noise" is whether T-Tamer falls
    short of it by more than that noise (the interval lies below zero); without replicates the
    bounds are NaN and "beyond noise" is False."""
    import pandas as pd

    zoo, traces = check_runs(zoo, "heldout_table", traces), check_traces(traces, "heldout_table")
    require_traces(zoo, traces, "heldout_table")
    rows = {}
    for name, runs in zoo.items():
        area = {h: 100 * float(np.mean([r["auc"]["ttamer"] - r["auc"][h] for r in runs])) for h in HEURISTICS}
        cost = {}
        for h in HEURISTICS:
            d = [r["cost_at_full"][h] - r["cost_at_full"]["ttamer"] for r in runs
                 if np.isfinite(r["cost_at_full"][h]) and np.isfinite(r["cost_at_full"]["ttamer"])]
            if d:
                cost[h] = 100 * float(np.mean(d))
        worst = min(area, key=area.get)
        worst_cost = min(cost, key=cost.get) if cost else None
        lo, hi = (100 * x for x in _interval(runs, "ttamer", worst))
        rows[name] = {
            "vs each heuristic, area (pt)": area[worst], "below": worst if area[worst] < -1e-9 else "",
            "95% low": lo, "95% high": hi, "beyond noise": bool(hi < -1e-9),
            "vs each heuristic, cost@full (pt)": cost[worst_cost] if cost else np.nan,
            "dearer than": worst_cost if cost and cost[worst_cost] < -1e-9 else "",
            "SDN − max-prob, area (pt)": area["max-prob"] - area["max-prob-sdn"],
            "overthinks": overthinks(traces[name]),
            "policies": " ".join(sorted({r["policy"] for r in runs})),
        }
    return tidy_table(pd.DataFrame.from_dict(rows, orient="index"), 3)


def _mean_cost_gain(heuristic: list[float], ttamer: list[float]) -> float:
    """A heuristic's mean cost at the full model's accuracy over the splits minus T-Tamer's. A
    split where neither reaches that accuracy is a tie, left out (0 if every split is); one where
    only one does counts its cost as infinite, so the gain is ``±inf``; and where each misses it on
    a split where the other reaches it, ``-inf``: T-Tamer is not never worse on the mean."""
    h, t = np.asarray(heuristic, dtype=float), np.asarray(ttamer, dtype=float)
    if np.isfinite(h).all() and np.isfinite(t).all():
        return float(np.mean(h)) - float(np.mean(t))
    keep = ~(np.isinf(h) & np.isinf(t))
    if not keep.any():
        return 0.0
    mh, mt = float(np.mean(h[keep])), float(np.mean(t[keep]))
    return -np.inf if np.isinf(mh) and np.isinf(mt) else mh - mt


def never_worse_table(zoo: dict[str, list[dict[str, Any]]]):
    """Whether T-Tamer is never worse than any heuristic, trace by trace (the book's chapter
    *Across workloads*): on every split, T-Tamer's frontier area is at least each heuristic's
    or within the paired-bootstrap noise of that split (``evaluate_zoo`` with ``n_boot > 0``;
    without it only the point values count), and so is its cost at the full model's accuracy;
    and over the splits, its mean area is at least each heuristic's and its mean cost at the
    full model's accuracy at most each heuristic's (a split where neither reaches that accuracy
    is a tie, left out of the means; one where only T-Tamer misses it puts it below on the mean).

    Per trace, for the area and for the cost at the full model's accuracy: on how many splits
    T-Tamer passes against every heuristic, the heuristics that beat it beyond the noise on
    some split ("beyond noise"), the smallest mean gain over the heuristics (T-Tamer's mean
    area minus the heuristic's, and the heuristic's mean cost minus T-Tamer's, pt) and the
    heuristic it falls below on the mean ("mean below", empty if none); then whether
    everything holds."""
    import pandas as pd

    zoo = check_runs(zoo, "never_worse_table")
    rows = {}
    for name, runs in zoo.items():
        ok = [[never_worse_split((r["auc"]["ttamer"], r["auc"][h]), r.get("auc_ci", {}).get(h),
                                 (r["cost_at_full"]["ttamer"], r["cost_at_full"][h]), r.get("cost_ci", {}).get(h))
               for h in HEURISTICS] for r in runs]  # [split][heuristic] -> {"area": ..., "cost": ...}
        area = {h: float(np.mean([r["auc"]["ttamer"] - r["auc"][h] for r in runs])) for h in HEURISTICS}
        cost = {h: _mean_cost_gain([r["cost_at_full"][h] for r in runs], [r["cost_at_full"]["ttamer"] for r in runs])
                for h in HEURISTICS}
        row = {}
        for label, key, gains in (("area", "area", area), ("cost@full", "cost", cost)):
            worst = min(gains, key=gains.get)
            row |= {f"{label}: splits ok": f"{sum(all(x[key] for x in split) for split in ok)}/{len(runs)}",
                    f"{label} beyond noise": " ".join(h for k, h in enumerate(HEURISTICS)
                                                      if not all(split[k][key] for split in ok)),
                    f"{label}, mean gain (pt)": 100 * gains[worst],
                    f"{label}, mean below": worst if gains[worst] < -1e-12 else ""}
        row["holds"] = not any(row[c] for c in ("area beyond noise", "cost@full beyond noise", "area, mean below",
                                                "cost@full, mean below"))
        rows[name] = row
    return tidy_table(pd.DataFrame.from_dict(rows, orient="index"), 2)


def interval_widths(zoo: dict[str, list[dict[str, Any]]], strategy: str = "max-prob") -> dict[str, float]:
    """The median width (pt) of the 95 % paired-bootstrap intervals of ``strategy`` minus
    T-Tamer, over the runs where the two differ (a zero width: the same rule on that split):
    ``"area"`` and ``"cost@full"`` (the cost at the full model's accuracy; infinite widths,
    where on that share of the resamples only one of the two reaches it, count as the widest).
    NaN without the intervals (``evaluate_zoo`` with ``n_boot=0``) or where they never differ."""
    zoo = check_runs(zoo, "interval_widths")
    check_strategies([strategy], zoo, "interval_widths", ("auc", "auc_ci", "cost_ci"))
    out = {}
    for label, key in (("area", "auc_ci"), ("cost@full", "cost_ci")):
        bounds = [(float(r[key][strategy][0]), float(r[key][strategy][2])) for runs in zoo.values() for r in runs
                  if key in r and r[key][strategy] is not None]
        widths = [hi - lo for lo, hi in bounds if hi > lo]  # lo == hi (even both inf): the same rule
        out[label] = 100 * float(np.median(widths)) if widths else np.nan
    return out


def _heuristic_area(trace: Trace, name: str) -> float:
    """Area under the frontier of one-threshold heuristic ``name`` swept completely on
    ``trace`` (every distinct threshold; answers judged against the label)."""
    from ..earlyexit.heuristics import complete_sweep
    from ..earlyexit.crossval import heldout_auc

    return heldout_auc(complete_sweep(trace, name), trace, "label")


def _calibration_areas_one(trace: Trace, seed: int, calibration_fraction: float) -> dict[str, float]:
    """Area of every one-threshold heuristic swept completely on the calibration examples of
    one split (a module-level function: worker processes import it)."""
    cal = trace.split(calibration_fraction, seed)[0]
    return {h: _heuristic_area(cal, h) for h in HEURISTIC_RULES}


class SplitAreas(dict):
    """The areas of :func:`calibration_areas` on one split of one trace: a dict of heuristic
    name → area, that also records which split it is.

    Attributes
    ----------
    meta : dict
        The split's ``seed``, ``calibration_fraction``, the trace's ``fingerprint``
        (:meth:`~ttamer.earlyexit.traces.Trace.fingerprint`) and the ``target`` the areas judge
        answers against (``"label"``): the keys :data:`~ttamer.workloads.zoo_runs.PAIR_KEYS` of a run of
        :func:`~ttamer.workloads.zoo_runs.evaluate_zoo`, which :func:`heuristic_choice_table` and
        :func:`split_half_correlation` compare. A dict of the same areas compares equal.
    """

    def __init__(self, areas: Mapping[str, float], meta: Mapping[str, Any]) -> None:
        super().__init__(areas)
        self.meta = dict(meta)


def calibration_areas(traces: dict[str, Trace], seeds: Sequence[int], calibration_fraction: float = 0.5,
                      n_jobs: int = 1) -> dict[str, list[SplitAreas]]:
    """Per trace and split (in ``seeds`` order), the area of every one-threshold heuristic of
    :data:`~ttamer.earlyexit.heuristics.HEURISTIC_RULES` swept completely on the calibration
    examples of that split: what an engineer who picks a heuristic on those examples sees. Each
    split's areas (:class:`SplitAreas`, read as ``areas[trace][split][heuristic]``) record the
    split they come from.

    Raises
    ------
    TTamerError
        Before any work: for ``traces`` or ``seeds`` that are not a non-empty dict of traces and
        distinct split seeds, or a ``calibration_fraction`` that leaves fewer than
        :data:`~ttamer.core.validate.MIN_SPLIT_EXAMPLES` examples on a side of some trace (the
        error names it).
    """
    traces, seeds = check_traces(traces, "calibration_areas"), check_seeds(seeds, "calibration_areas")
    calibration_fraction = check_fraction_on(traces, calibration_fraction, "calibration_areas")
    runs = [(name, s) for name in traces for s in seeds]
    areas = map_processes(_calibration_areas_one, [(traces[name], s, calibration_fraction) for name, s in runs],
                          n_jobs, False, "traces x splits")
    prints = {name: tr.fingerprint() for name, tr in traces.items()}
    return {name: [SplitAreas(a, {"seed": s, "target": "label", "calibration_fraction": calibration_fraction,
                                  "fingerprint": prints[name]})
                   for s, a in zip(seeds, areas[k * len(seeds):(k + 1) * len(seeds)])]
            for k, name in enumerate(traces)}


def _check_pair(run: dict[str, Any], areas: Any, where: str, required: bool) -> None:
    """Run ``run`` and calibration areas ``areas`` record the same split of the same trace, the
    run judged against the label (as the areas); with ``required`` False, a run and areas that
    record neither are taken as paired (made by hand)."""
    meta = getattr(areas, "meta", None)
    has_run, has_areas = all(k in run for k in PAIR_KEYS), meta is not None
    if not required and not has_run and not has_areas:
        return
    if not has_run:
        missing = next(k for k in PAIR_KEYS if k not in run)
        raise TTamerError(f"{where}: the run has no {missing!r}, so which split of which trace it is cannot be "
                          f"checked against the calibration areas; pass the runs of evaluate_zoo, which record "
                          f"{list(PAIR_KEYS)}")
    if not isinstance(meta, Mapping) or any(k not in meta for k in PAIR_KEYS):
        raise TTamerError(f"{where}: the calibration areas do not record their split ({list(PAIR_KEYS)} in their "
                          f"meta); pass calibration_areas' own result")
    check_split_record(meta, f"{where}: the calibration areas' meta")
    if run["target"] != "label":
        raise TTamerError(f"{where}: the run judges answers against target {run['target']!r}, the calibration "
                          f"areas against the label; pass the runs of evaluate_zoo(..., target='label')")
    for key in ("fingerprint", "seed", "calibration_fraction"):
        if run[key] != meta[key]:
            what = "of another trace" if key == "fingerprint" else f"{key} {run[key]!r}, the areas' {meta[key]!r}"
            raise TTamerError(f"{where}: the run and the calibration areas are not of the same split ({what}); "
                              f"evaluate_zoo and calibration_areas must see the same traces, seeds and calibration "
                              f"fraction")


def _check_paired(zoo: Any, cal: Any, name: str, needs: Mapping[str, tuple[str, ...]], required: bool = True
                  ) -> tuple[dict[str, list[dict[str, Any]]], dict[str, list[dict[str, float]]]]:
    """``(zoo, cal)``: runs (:func:`~ttamer.workloads.zoo_runs.check_runs` with ``needs``) and :func:`calibration_areas`
    of the same traces and splits, every split's areas holding every heuristic's, each a finite
    area in [0, 1]; each run and its split's areas recording the same split of the same trace
    (the run judged against the label); with ``required`` False, runs and areas that record
    neither are taken as paired."""
    zoo = check_runs(zoo, name, needs=needs)
    if not isinstance(cal, Mapping) or list(zoo) != list(cal) or \
            any(not isinstance(cal[t], list) or len(zoo[t]) != len(cal[t]) for t in zoo):
        raise TTamerError(f"{name}: the runs and the calibration areas must hold the same traces and splits "
                          f"(evaluate_zoo and calibration_areas with the same seeds)")
    for trace, areas in cal.items():
        for k, a in enumerate(areas):
            where = f"{name}: calibration areas {k} of trace {short_repr(trace)}"
            if not isinstance(a, Mapping) or any(h not in a for h in HEURISTIC_RULES):
                raise TTamerError(f"{where} must map each of {list(HEURISTIC_RULES)} to its area (calibration_areas')")
            for h in HEURISTIC_RULES:
                check_share(a[h], f"{where}: cal[{short_repr(trace)}][{k}][{h!r}]")
            _check_pair(zoo[trace][k], a, f"{name}: run {k} of trace {short_repr(trace)}", required)
    return zoo, dict(cal)


def heuristic_choice_table(zoo: dict[str, list[dict[str, Any]]], cal: dict[str, list[dict[str, float]]]):
    """T-Tamer's default against the plain rule "take the one-threshold heuristic with the best
    calibration area".

    Per trace, for both rules: the smallest over the heuristics (static exits included) of the
    rule's mean test area minus that heuristic's, over the splits, in pt; then the heuristics
    the plain rule picked. ``zoo`` holds the :func:`~ttamer.workloads.zoo_runs.evaluate_zoo` runs (target ``"label"``)
    and ``cal`` the :func:`calibration_areas` of the same traces and splits; neither rule sees
    the test examples when choosing.

    Raises
    ------
    TTamerError
        For runs or areas that are not :func:`~ttamer.workloads.zoo_runs.evaluate_zoo`'s and :func:`calibration_areas`'
        (every value checked), or that do not record the same split of the same trace, run by
        run (:data:`~ttamer.workloads.zoo_runs.PAIR_KEYS`), or runs judged against another target than the label.
    """
    import pandas as pd

    zoo, cal = _check_paired(zoo, cal, "heuristic_choice_table", AUC_NEEDS)
    h = list(HEURISTICS)
    rows = {}
    for name, runs in zoo.items():
        picks = [max(HEURISTIC_RULES, key=areas.get) for areas in cal[name]]
        mean = {k: float(np.mean([r["auc"][k] for r in runs])) for k in h + ["ttamer"]}
        chosen = float(np.mean([r["auc"][p] for r, p in zip(runs, picks)]))
        rows[name] = {"T-Tamer's default (pt)": 100 * min(mean["ttamer"] - mean[k] for k in h),
                      "best heuristic on calibration (pt)": 100 * min(chosen - mean[k] for k in h),
                      "heuristics picked (splits)": " ".join(sorted(set(picks)))}
    return tidy_table(pd.DataFrame.from_dict(rows, orient="index"), 2)


def split_half_correlation(zoo: dict[str, list[dict[str, Any]]], cal: dict[str, list[dict[str, float]]],
                           reference: str = "max-prob") -> float:
    r"""Correlation, pooled over the traces, between a heuristic's area advantage over
    ``reference`` on the calibration examples of a split and on its test examples.

    For each trace and heuristic :math:`h`, the differences :math:`d^{\mathrm{cal}}_s` and
    :math:`d^{\mathrm{test}}_s` over the splits :math:`s` are centred on their means over the
    splits (what is common to the trace is removed; pairs that never differ are left out), and
    the Pearson correlation of all centred pairs is returned. Where a metric is a mean over
    examples and the halves are equal, :math:`d^{\mathrm{cal}}_s + d^{\mathrm{test}}_s` is
    twice the whole trace's difference for every split, so the correlation is :math:`-1`.

    ``zoo`` holds :func:`~ttamer.workloads.zoo_runs.evaluate_zoo` runs (target ``"label"``) and ``cal`` the
    :func:`calibration_areas` of the same traces and splits, each run and its split's areas
    recording the same split of the same trace (:data:`~ttamer.workloads.zoo_runs.PAIR_KEYS`; runs and areas made by hand
    that record neither, such as ``{"auc": {...}}``, are taken as paired), every area a finite
    number in [0, 1]; a :class:`~ttamer.core.errors.TTamerError` otherwise."""
    zoo, cal = _check_paired(zoo, cal, "split_half_correlation", {"auc": tuple(HEURISTIC_RULES)}, required=False)
    if not isinstance(reference, str) or reference not in HEURISTIC_RULES:
        raise TTamerError(f"split_half_correlation: reference must be one of {list(HEURISTIC_RULES)}, "
                          f"got {short_repr(reference)}")
    xs, ys = [], []
    for name, runs in zoo.items():
        for h in HEURISTIC_RULES:
            if h == reference:
                continue
            d_cal = np.array([a[h] - a[reference] for a in cal[name]])
            d_test = np.array([r["auc"][h] - r["auc"][reference] for r in runs])
            if np.ptp(d_cal) > 1e-12 or np.ptp(d_test) > 1e-12:
                xs.append(d_cal - d_cal.mean())
                ys.append(d_test - d_test.mean())
    x, y = (np.concatenate(v) if v else np.zeros(1) for v in (xs, ys))
    if np.ptp(x) <= 1e-12 or np.ptp(y) <= 1e-12:
        raise TTamerError("split_half_correlation: needs splits on which some heuristic's advantage over "
                          f"{reference!r} varies, on the calibration and on the test examples")
    return float(np.corrcoef(x, y)[0, 1])


def slo_table(zoo: dict[str, list[dict[str, Any]]], strategies: Sequence[str] = ("ttamer", "no-recall")
              + tuple(HEURISTICS), where: Callable[[dict[str, Any]], bool] | None = None):
    """Per accuracy target and strategy, over every trace and split of the zoo (or the runs
    for which ``where(run)`` holds): the share of runs in which the target held on the test
    examples and the mean test cost (% of the full model), each strategy having chosen its
    operating point on calibration examples only (:func:`~ttamer.earlyexit.slo.slo_block`).

    Raises
    ------
    TTamerError
        For runs that are not :func:`~ttamer.workloads.zoo_runs.evaluate_zoo`'s (every value checked), ``strategies`` that
        are not distinct names of strategies of every run, a ``where`` that is not ``None`` or
        a callable returning ``True`` or ``False`` for each run, or no run selected.
    """
    import pandas as pd

    zoo = check_runs(zoo, "slo_table")
    strategies = check_strategies(strategies, zoo, "slo_table")
    if where is not None and not callable(where):
        raise TTamerError(f"slo_table: where must be None or a function of a run returning True or False, "
                          f"got {short_repr(where)}")
    runs = [r for rs in zoo.values() for r in rs if where is None or _selected(where, r)]
    if not runs:
        raise TTamerError("slo_table: no run of the zoo is selected")
    targets = _check_slo(runs, strategies)
    rows = {}
    for s in strategies:
        row = {}
        for t in targets:
            picked = [r["slo"][t]["strategies"][s] for r in runs]
            row[(t, "met (%)")] = 100 * np.mean([x["met"] for x in picked])
            row[(t, "cost (%)")] = 100 * np.mean([x["cost"] for x in picked])
        rows[s] = row
    df = pd.DataFrame.from_dict(rows, orient="index")
    df.columns = pd.MultiIndex.from_tuples(df.columns)
    return tidy_table(df, 1)


def _selected(where: Callable[[dict[str, Any]], Any], run: dict[str, Any]) -> bool:
    """``where(run)``, which must be ``True`` or ``False`` (not any object taken for true)."""
    got = where(run)
    if not isinstance(got, (bool, np.bool_)):
        raise TTamerError(f"slo_table: where must return True or False for each run, got {short_repr(got)}")
    return bool(got)


def _check_slo(runs: list[dict[str, Any]], strategies: list[str]) -> list[str]:
    """The targets of the first run's ``"slo"``, after checking that every run's is a
    :func:`~ttamer.earlyexit.slo.slo_block` of those targets, each scoring ``strategies``."""
    first = runs[0]["slo"]
    targets = list(first) if isinstance(first, Mapping) else []
    for r in runs:
        slo = r["slo"]
        if not (targets and isinstance(slo, Mapping) and list(slo) == targets and all(
                isinstance(slo[t], Mapping) and isinstance(slo[t].get("strategies"), Mapping)
                and all(s in slo[t]["strategies"] for s in strategies) for t in targets)):
            raise TTamerError(f"slo_table: every run's 'slo' must be slo_block's, of the same targets "
                              f"{short_repr(targets, 120)}, each scoring {strategies}")
    return targets


def slo_dominated(slo, strategy: str = "ttamer", others: Sequence[str] = HEURISTICS) -> dict[str, list[str]]:
    """Per target of an :func:`slo_table`: the strategies of ``others`` that ``strategy`` meets
    the target at least as often as, at a mean cost no higher.

    Raises
    ------
    TTamerError
        For an ``slo`` that is not an :func:`slo_table` (two-level columns, rows of distinct
        names, finite numbers in every ``"met (%)"`` and ``"cost (%)"`` column), or a
        ``strategy`` or ``others`` (a sequence of names) that are not its rows.
    """
    import pandas as pd

    if not isinstance(slo, pd.DataFrame) or slo.columns.nlevels != 2 or not all(
            (t, c) in slo.columns for t in slo.columns.get_level_values(0) for c in ("met (%)", "cost (%)")):
        raise TTamerError(f"slo_dominated: slo must be an slo_table, got {type(slo).__name__}")
    for axis, labels in (("rows", slo.index), ("columns", slo.columns)):
        if not labels.is_unique:
            raise TTamerError(f"slo_dominated: the {axis} of the slo_table must differ; repeated: "
                              f"{short_repr(list(labels[labels.duplicated()].unique()), 120)}")
    for t in slo.columns.get_level_values(0).unique():
        for c in ("met (%)", "cost (%)"):
            col = slo[(t, c)]
            values = col.to_numpy(dtype=float) if pd.api.types.is_numeric_dtype(col) and \
                not pd.api.types.is_bool_dtype(col) else None
            if values is None or not np.isfinite(values).all():
                raise TTamerError(f"slo_dominated: column {short_repr((t, c))} of the slo_table must hold finite "
                                  f"numbers, got {short_repr(col.tolist(), 120)}")
    if isinstance(others, (str, bytes)) or not isinstance(others, (Sequence, np.ndarray)):
        raise TTamerError(f"slo_dominated: others must be a sequence of strategy names, got {short_repr(others)}")
    rows = list(slo.index)
    missing = [s for s in (strategy, *others) if s not in rows]
    if missing:
        raise TTamerError(f"slo_dominated: {short_repr(missing, 120)} are not rows of the slo_table, whose rows "
                          f"are {short_repr(rows, 200)}")
    out = {}
    for t in slo.columns.get_level_values(0).unique():
        met, cost = slo[(t, "met (%)")], slo[(t, "cost (%)")]
        out[t] = [h for h in others if met[strategy] >= met[h] and cost[strategy] <= cost[h]]
    return out


def protocol_table(zoo_label: dict[str, list[dict[str, Any]]], zoo_final: dict[str, list[dict[str, Any]]]):
    """Mean AUC gain (pt) of T-Tamer over the best heuristic of each split, with accuracy
    judged against the true label and against the full model's prediction (the paper's
    protocol): ``zoo_label`` and ``zoo_final`` are the :func:`~ttamer.workloads.zoo_runs.evaluate_zoo` runs with target
    ``"label"`` and ``"final"`` of the same traces, at the same calibration fraction (each may
    hold its own number of splits).

    Raises
    ------
    TTamerError
        For runs that are not :func:`~ttamer.workloads.zoo_runs.evaluate_zoo`'s (every value checked, each run recording
        its split, :data:`~ttamer.workloads.zoo_runs.PAIR_KEYS`), zoos of other targets (or swapped), a trace in one zoo
        only, or a trace whose runs come from another trace or calibration fraction in the other.
    """
    import pandas as pd

    zoo_label = check_runs(zoo_label, "protocol_table: zoo_label", needs=AUC_NEEDS)
    zoo_final = check_runs(zoo_final, "protocol_table: zoo_final", needs=AUC_NEEDS)
    for arg, zoo, target in (("zoo_label", zoo_label, "label"), ("zoo_final", zoo_final, "final")):
        require_split_record(zoo, "protocol_table", arg)
        require_target(zoo, target, "protocol_table", arg)
    only = {arg: [t for t in a if t not in b] for arg, a, b in (("zoo_label", zoo_label, zoo_final),
                                                               ("zoo_final", zoo_final, zoo_label))}
    if any(only.values()):
        raise TTamerError(f"protocol_table: the two zoos must hold the same traces; only in zoo_label: "
                          f"{short_repr(only['zoo_label'], 120)}, only in zoo_final: "
                          f"{short_repr(only['zoo_final'], 120)}")
    for name in zoo_label:
        for key in ("fingerprint", "calibration_fraction"):
            a, b = zoo_label[name][0][key], zoo_final[name][0][key]
            if a != b:
                what = "another trace" if key == "fingerprint" else f"calibration fraction {a!r} and {b!r}"
                raise TTamerError(f"protocol_table: the runs of trace {short_repr(name)} in zoo_label and zoo_final "
                                  f"come from {what}; evaluate both zoos on the same traces and calibration fraction")

    def mean_gain(runs: list[dict[str, Any]]) -> float:
        return 100 * float(np.mean([r["auc"]["ttamer"] - r["auc"][_best_heuristic(r)] for r in runs]))

    return tidy_table(pd.DataFrame({"gain vs label (pt)": {k: mean_gain(v) for k, v in zoo_label.items()},
                               "gain vs full model (pt)": {k: mean_gain(v) for k, v in zoo_final.items()}}), 2)


def cost_at_level_table(zoo: dict[str, list[dict[str, Any]]], level: float,
                        strategies: Sequence[str] = ("ttamer", "max-prob")):
    """Per trace, the mean over splits of each strategy's least cost (% of the full model) at
    which its frontier reaches accuracy ``level`` (the paper reports latency at 95 %
    agreement with the backbone); ``nan`` where a split never reaches it.

    Raises
    ------
    TTamerError
        For runs that are not :func:`~ttamer.workloads.zoo_runs.evaluate_zoo`'s (every value checked), a ``level`` that is
        not a number in [0, 1], or ``strategies`` that are not distinct names of strategies of
        every run's frontiers.
    """
    import pandas as pd

    level = check_real(level, "cost_at_level_table: level", low=0.0, high=1.0)
    zoo = check_runs(zoo, "cost_at_level_table")
    strategies = check_strategies(strategies, zoo, "cost_at_level_table", ("auc", "frontier"))
    rows = {}
    for name, runs in zoo.items():
        row = {}
        for s in strategies:
            costs = [cost_at_accuracy(r["frontier"][s], level) for r in runs]
            row[f"{s} cost (%)"] = (100 * float(np.mean(costs))) if all(c is not None for c in costs) else np.nan
        rows[name] = row
    return tidy_table(pd.DataFrame.from_dict(rows, orient="index"), 1)


def resolution_table(traces: dict[str, Trace], seeds: Sequence[int], calibration_fraction: float = 0.5):
    """Per trace, what sweep resolution alone is worth: the mean over splits of the area (pt)
    of the max-probability rule swept over every distinct value of the test examples minus
    the area of the *same* rule at the thresholds fitted to its calibration budgets
    (:meth:`~ttamer.earlyexit.tamer.ThresholdTamer.decide_sweep`, a grid of step 0.002 of
    the full cost). Both are one-threshold max-probability rules; only the second chose its
    thresholds without seeing the test examples."""
    import pandas as pd

    from ..earlyexit.crossval import heldout_auc
    from ..earlyexit.tamer import ThresholdTamer

    traces, seeds = check_traces(traces, "resolution_table"), check_seeds(seeds, "resolution_table")
    calibration_fraction = check_fraction_on(traces, calibration_fraction, "resolution_table")
    rows = {}
    for name, tr in traces.items():
        gaps = []
        for s in seeds:
            cal, test = tr.split(calibration_fraction, s)
            rule = ThresholdTamer(policy="common:max_prob:last").fit(cal)
            gaps.append(heldout_auc(rule.frontier_sweep(test), test, "label")
                        - heldout_auc(rule.decide_sweep(test), test, "label"))
        rows[name] = {"resolution effect (pt)": 100 * float(np.mean(gaps))}
    return tidy_table(pd.DataFrame.from_dict(rows, orient="index"), 2)


def _class_gains_one(trace: Trace, seed: int, calibration_fraction: float) -> list[float]:
    """Test-area gains (pt) over the max-probability rule of every policy class of
    :data:`~ttamer.earlyexit.tamer.CANDIDATES` but the first, fixed, on one split (a
    module-level function: worker processes import it)."""
    from ..earlyexit.crossval import heldout_auc
    from ..earlyexit.tamer import CANDIDATES, ThresholdTamer

    cal, test = trace.split(calibration_fraction, seed)
    base = _heuristic_area(test, "max-prob")
    return [100 * (heldout_auc(ThresholdTamer(policy=c.key).fit(cal).frontier_sweep(test), test, "label") - base)
            for c in CANDIDATES[1:]]


def class_table(traces: dict[str, Trace], seeds: Sequence[int], zoo: dict[str, list[dict[str, Any]]],
                calibration_fraction: float = 0.5, n_jobs: int = 1):
    """Each policy class of T-Tamer's menu fixed (no cross-validation), and the default that
    chooses among them, against the max-probability rule: per class, the mean over splits of
    the test-area gain (pt; every class swept at the resolution of the test examples, as in
    :func:`gain_table`), then its mean and extremes over the traces and on how many traces it
    is at least the max-probability rule's. The default's gains are read from ``zoo``, the
    :func:`~ttamer.workloads.zoo_runs.evaluate_zoo` runs (target ``"label"``) on the same ``seeds`` and
    ``calibration_fraction``.

    Raises
    ------
    TTamerError
        Before any work: for ``traces`` or ``seeds`` that are not a non-empty dict of traces and
        distinct split seeds, a ``calibration_fraction`` that leaves fewer than
        :data:`~ttamer.core.validate.MIN_SPLIT_EXAMPLES` examples on a side of some trace, or a
        ``zoo`` that is not the :func:`~ttamer.workloads.zoo_runs.evaluate_zoo` runs (target ``"label"``) of these traces,
        one per seed in this order, at this calibration fraction (its runs record their split,
        :data:`~ttamer.workloads.zoo_runs.PAIR_KEYS`).
    """
    import pandas as pd

    from ..earlyexit.tamer import CANDIDATES

    traces, seeds = check_traces(traces, "class_table"), check_seeds(seeds, "class_table")
    calibration_fraction = check_fraction_on(traces, calibration_fraction, "class_table")
    zoo = check_runs(zoo, "class_table", traces)
    if list(zoo) != list(traces) or any(len(zoo[name]) != len(seeds) for name in traces):
        raise TTamerError("class_table: zoo must hold the evaluate_zoo runs of these traces, one per seed")
    require_traces(zoo, traces, "class_table")
    require_target(zoo, "label", "class_table")
    for name, runs in zoo.items():
        got = [r["seed"] for r in runs]
        if got != seeds or runs[0]["calibration_fraction"] != calibration_fraction:
            raise TTamerError(f"class_table: the runs of trace {short_repr(name)} are of the split seeds {got} at "
                              f"calibration fraction {runs[0]['calibration_fraction']:g}; the table fits the seeds "
                              f"{seeds} at {calibration_fraction:g}: evaluate_zoo must use the same")
    runs = [(name, s) for name in traces for s in seeds]
    gains = map_processes(_class_gains_one, [(traces[name], s, calibration_fraction) for name, s in runs], n_jobs,
                          False, "traces x splits")
    fixed = np.asarray(gains).reshape(len(traces), len(seeds), -1).mean(axis=1)  # runs are traces x seeds
    auto = np.array([np.mean([100 * (r["auc"]["ttamer"] - r["auc"]["max-prob"]) for r in zoo[name]])
                     for name in traces])
    per_trace = np.column_stack([fixed, auto])
    table = pd.DataFrame({"mean gain (pt)": per_trace.mean(axis=0), "worst trace (pt)": per_trace.min(axis=0),
                          "best trace (pt)": per_trace.max(axis=0),
                          "traces at least max-prob": (per_trace >= -1e-9).sum(axis=0),
                          "rule": [c.describe() for c in CANDIDATES[1:]] + ["chosen by cross-validation"]},
                         index=[c.key for c in CANDIDATES[1:]] + ["auto (the default)"])
    return tidy_table(table, 2)


#: The cost profiles of :func:`recosted`: per number of exits ``L``, the weight each exit's
#: measured mean cost is multiplied by -- ``"rising"``, from 1 at the first exit to 4 at the last
#: (stages that grow, as in a cascade of ever larger models); ``"last-5x"``, the last exit five
#: times the others (a small model's exits, then a large one); ``"first-cheap"``, the first
#: exit a tenth of the others (a nearly free first stage).
COST_PROFILES: dict[str, Callable[[int], np.ndarray]] = {
    "rising": lambda L: np.linspace(1.0, 4.0, L),
    "last-5x": lambda L: np.r_[np.ones(L - 1), 5.0],
    "first-cheap": lambda L: np.r_[0.1, np.ones(L - 1)],
}


def _check_profile(profile: Any, who: str) -> None:
    if not isinstance(profile, str) or profile not in COST_PROFILES:
        raise TTamerError(f"{who}: profile must be one of {list(COST_PROFILES)}, got {short_repr(profile)}")


def recosted(trace: Trace, profile: str) -> Trace:
    """``trace`` with its exits' costs replaced: each exit's measured mean cost times its
    weight in :data:`COST_PROFILES` ``[profile]``, rescaled so that the full model costs what it
    did; the predictions are the trace's own. ``meta["cost_measure"]`` says so.

    Raises
    ------
    TTamerError
        For a ``trace`` that :func:`~ttamer.earlyexit.base.check_trace` refuses, or a
        ``profile`` not in :data:`COST_PROFILES`.
    """
    check_trace(trace, "recosted")
    _check_profile(profile, "recosted")
    cost = trace.mean_cost * COST_PROFILES[profile](trace.n_exits)
    cost *= trace.mean_cost.sum() / cost.sum()
    measure = f"measured mean cost reweighted by the profile {profile!r} (a what-if, not a measurement)"
    return Trace.build(trace.probs, trace.labels, cost, dict(trace.meta, cost_measure=measure))


def _default_areas_one(trace: Trace, seed: int, calibration_fraction: float, no_recall: bool = False
                       ) -> tuple[str, dict[str, float]]:
    """On one split of ``trace``: the policy class T-Tamer's default chooses and the test areas
    of T-Tamer, of every heuristic and, with ``no_recall``, of T-Tamer's no-recall twin (a
    module-level function: worker processes import it)."""
    from ..earlyexit.baselines import static_exit
    from ..earlyexit.crossval import heldout_auc
    from ..earlyexit.tamer import ThresholdTamer

    cal, test = trace.split(calibration_fraction, seed)
    tamer = ThresholdTamer().fit(cal)
    areas = {h: _heuristic_area(test, h) for h in HEURISTIC_RULES}
    areas |= {"static": heldout_auc(static_exit(test), test, "label"),
              "ttamer": heldout_auc(tamer.frontier_sweep(test), test, "label")}
    if no_recall:
        areas["no-recall"] = heldout_auc(tamer.without_recall(cal).frontier_sweep(test), test, "label")
    return tamer.candidate_.key, areas


def _recosted_areas_one(trace: Trace, profile: str, seed: int, calibration_fraction: float
                        ) -> tuple[str, dict[str, float]]:
    """:func:`_default_areas_one` on :func:`recosted` ``(trace, profile)``."""
    return _default_areas_one(recosted(trace, profile), seed, calibration_fraction)


def split_gain_table(trace: Trace, seeds: Sequence[int], calibration_fraction: float = 0.5, n_jobs: int = 1):
    """T-Tamer's default against the heuristics on the splits of one trace, one per seed of
    ``seeds``: the policy class chosen, T-Tamer's test area minus the max-probability rule's and minus
    the best heuristic's on that split (static exits included), and minus its no-recall
    twin's (pt); a last row holds the means."""
    import pandas as pd

    if not isinstance(trace, Trace):
        raise TTamerError(f"split_gain_table: trace must be a ttamer Trace, got {type(trace).__name__}")
    seeds = check_seeds(seeds, "split_gain_table")
    calibration_fraction = check_fraction(calibration_fraction, "split_gain_table: calibration_fraction",
                                          n=trace.n_examples)
    got = map_processes(_default_areas_one, [(trace, s, calibration_fraction, True) for s in seeds], n_jobs,
                        False, "splits")
    rows = {f"split {s}": {"class chosen": key,
                           "vs max-prob (pt)": 100 * (a["ttamer"] - a["max-prob"]),
                           "vs each heuristic (pt)": 100 * min(a["ttamer"] - a[h] for h in HEURISTICS),
                           "recall vs no recall (pt)": 100 * (a["ttamer"] - a["no-recall"])}
            for s, (key, a) in zip(seeds, got)}
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.loc["mean"] = {"class chosen": "", **table.drop(columns="class chosen").mean().to_dict()}
    return tidy_table(table, 2)


def cost_profile_table(traces: dict[str, Trace], profile: str, seeds: Sequence[int],
                       calibration_fraction: float = 0.5, n_jobs: int = 1):
    """T-Tamer's default against the heuristics on the traces with their exits' costs made
    uneven (:func:`recosted`): per trace, the smallest over the heuristics (static exits
    included) of T-Tamer's mean test area over the splits minus that heuristic's, the same
    against the max-probability rule alone (pt), and the policy classes chosen. A heuristic's
    one threshold treats every exit alike whatever it costs (only its sweep's points move);
    T-Tamer's fitted classes price each exit's cost."""
    import pandas as pd

    traces, seeds = check_traces(traces, "cost_profile_table"), check_seeds(seeds, "cost_profile_table")
    _check_profile(profile, "cost_profile_table")
    calibration_fraction = check_fraction_on(traces, calibration_fraction, "cost_profile_table")
    runs = [(name, s) for name in traces for s in seeds]
    got = map_processes(_recosted_areas_one, [(traces[name], profile, s, calibration_fraction) for name, s in runs],
                        n_jobs, False, "traces x splits")
    rows = {}
    for k, name in enumerate(traces):
        mine = got[k * len(seeds):(k + 1) * len(seeds)]
        mean = {h: float(np.mean([a[h] for _, a in mine])) for h in mine[0][1]}
        rows[name] = {"vs each heuristic (pt)": 100 * min(mean["ttamer"] - mean[h] for h in HEURISTICS),
                      "vs max-prob (pt)": 100 * (mean["ttamer"] - mean["max-prob"]),
                      "classes chosen": " ".join(sorted({p for p, _ in mine}))}
    return tidy_table(pd.DataFrame.from_dict(rows, orient="index"), 2)


def _subset_gaps_one(trace: Trace, policy: str, fractions: Sequence[float], repeats: int,
                     seed: Sequence[int]) -> dict[str, float]:
    """One row of :func:`subset_size_table` (a module-level function: worker processes
    import it): per share of the examples, the mean area gap (pt) over the seeded subsets."""
    from ..earlyexit.crossval import heldout_auc
    from ..earlyexit.tamer import ThresholdTamer

    rule, rng = ThresholdTamer(policy=policy).fit(trace), np.random.default_rng(list(seed))
    row = {}
    for frac in fractions:
        m = _subset_size(frac, trace.n_examples)
        subsets = (trace,) if m == trace.n_examples else (trace.sample(m, rng) for _ in range(repeats))
        gaps = [heldout_auc(rule.frontier_sweep(s), s, "label") - _heuristic_area(s, "max-prob") for s in subsets]
        row[_share_column(frac)] = 100 * float(np.mean(gaps))
    return row


def _subset_size(frac: float, n: int) -> int:
    """Examples of a subset holding share ``frac`` of ``n`` (checked by :func:`_check_shares`)."""
    return min(n, max(MIN_SPLIT_EXAMPLES, round(frac * n)))


def _check_shares(fractions: Any, traces: Mapping[str, Trace]) -> list[float]:
    """``fractions``: a sequence of at most :data:`MAX_SUBSET_SHARES` shares in (0, 1], each giving
    on every trace a subset of at least ``MIN_SPLIT_EXAMPLES`` examples (or the whole trace), no
    two the same size, their columns' labels distinct."""
    if isinstance(fractions, (str, bytes)) or not isinstance(fractions, (Sequence, np.ndarray)):
        raise TTamerError(f"subset_size_table: fractions must be a sequence of shares of the examples, e.g. "
                          f"(0.1, 0.5, 1.0), got {short_repr(fractions)}")
    if len(fractions) > MAX_SUBSET_SHARES:
        raise TTamerError(f"subset_size_table: {len(fractions):,} fractions; at most {MAX_SUBSET_SHARES} "
                          f"(MAX_SUBSET_SHARES) are allowed")
    shares = [check_real(frac, "subset_size_table: fraction", low=0.0, high=1.0, low_open=True) for frac in fractions]
    columns = [_share_column(f) for f in shares]
    if not columns or len(set(columns)) < len(columns):
        raise TTamerError(f"subset_size_table: fractions must be one or more shares that differ (as printed, to 6 "
                          f"digits); got {shares}")
    for name, tr in traces.items():
        n, sizes = tr.n_examples, {}
        for f in shares:
            m = round(f * n)
            if m < min(MIN_SPLIT_EXAMPLES, n):
                raise TTamerError(f"subset_size_table: the share {f:g} of trace {short_repr(name)}'s {n} examples is "
                                  f"{m} examples; a subset holds at least {MIN_SPLIT_EXAMPLES} (MIN_SPLIT_EXAMPLES) "
                                  f"or the whole trace")
            if m in sizes:
                raise TTamerError(f"subset_size_table: the shares {sizes[m]:g} and {f:g} of trace {short_repr(name)}'s "
                                  f"{n} examples are both subsets of {m} examples; use shares that differ by at least "
                                  f"one example on every trace")
            sizes[m] = f
    return shares


def _share_column(frac: float) -> str:
    return f"{100 * frac:g} % of the examples"


def subset_size_table(traces: dict[str, Trace], policy: str = "common:max_prob:confident",
                      fractions: Sequence[float] = (0.1, 0.5, 1.0), repeats: int = 20, seed: int = 0,
                      n_jobs: int = 1):
    """Per trace, the area (pt) of the one-threshold class ``policy`` minus the max-probability
    rule's, both swept completely on the same random subsets of the examples: the mean over
    ``repeats`` subsets holding each share of the examples in ``fractions`` (the whole trace
    once, for a share of 1), drawn with the seed ``[seed, k]`` for the ``k``-th trace, in
    ``n_jobs`` worker processes. A staircase swept on few examples keeps their lucky points,
    and how much depends on the rule; the table shows how that moves the comparison from
    subsets of a cross-validation fold's size to those of a test set's. ``policy`` must need no
    fitting (its state and answer read the exits' outputs alone), so that no subset sees
    another's examples.

    Raises
    ------
    TTamerError
        Before any work: for a ``policy`` of another kind, ``traces`` that are not a non-empty
        dict of traces, ``repeats`` not in ``1..MAX_SUBSET_REPEATS``, or ``fractions`` that are
        not a sequence of at most :data:`MAX_SUBSET_SHARES` shares in (0, 1], distinct as
        printed, each giving every trace a subset of at least
        :data:`~ttamer.core.validate.MIN_SPLIT_EXAMPLES` examples (or the whole trace) and no
        two the same number of examples on a trace (the error names the trace and the share).
    """
    import pandas as pd

    from ..earlyexit.states import fits_models
    from ..earlyexit.tamer import PolicyCandidate

    cand = PolicyCandidate.parse(policy)
    if cand.thresholds != "common":
        raise TTamerError(f"subset_size_table: policy must be a one-threshold class 'common:STATE:ANSWER', "
                          f"got {policy!r}")
    if fits_models(cand.state, cand.answer):
        raise TTamerError(f"subset_size_table: policy {policy!r} fits a model of its state or answer; "
                          f"use one that reads the exits' outputs alone")
    traces = check_traces(traces, "subset_size_table")
    repeats = check_count(repeats, "repeats", minimum=1, maximum=MAX_SUBSET_REPEATS)
    seed = check_seed(seed)
    shares = _check_shares(fractions, traces)
    rows = map_processes(_subset_gaps_one, [(tr, policy, shares, repeats, (seed, k))
                                            for k, tr in enumerate(traces.values())], n_jobs, False, "traces")
    rows = dict(zip(traces, rows))
    return tidy_table(pd.DataFrame.from_dict(rows, orient="index"), 2)
