"""Tables, plots and verdicts of an early-exit evaluation, for the workload chapters.

Everything here reads the :class:`~ttamer.earlyexit.results.EvaluationResult` of
:func:`ttamer.earlyexit.evaluation.evaluate_trace`
(frontiers as fractions of the full model's cost, metrics of the book's chapter *Early exit on real models*) and only formats it:

* :func:`metric_table` — one row per strategy: AUC, cost at the full model's accuracy (and
  0.5 / 1 point below), accuracy at 25 / 50 / 75 % of the full cost, oracle-gain share;
* :func:`dominance_table` — T-Tamer against every other strategy: does its frontier reach at
  least the other's accuracy at every cost (:func:`ttamer.earlyexit.evaluation.dominates`), the AUC
  difference, and the cost at the full model's accuracy of both;
* :func:`verdict` — the same as one sentence, for the notebook text;
* :func:`plot_frontiers` — staircase frontiers with their bootstrap bands.

The workload chapters (text and images) run the same study on their trace; each step is one
function here, so that a chapter holds its parameters, the calls, the figures and the prose:
:func:`load_workload_trace`, :func:`exit_table`, :func:`held_out_check`, :func:`describe_fit`,
:func:`plot_main_frontiers`, :func:`split_table`, :func:`recall_study`, :func:`state_ablation`,
:func:`recall_answer_study`, :func:`calibration_size_table`, :func:`estimation_ablation`,
:func:`markov_table`, :func:`cost_unit_study` and :func:`chapter_summary`.
"""

from __future__ import annotations

from functools import partial
from typing import Any, Sequence

import numpy as np

from ..core.errors import TTamerError
from ..core.parallel import map_processes
from ..earlyexit.features import STATE_OPTIONS, StateSpec
from ..earlyexit.results import EvaluationResult, StrategyResult

#: Strategies that are real (implementable) competitors of T-Tamer, its own estimations other
#: than the default included; the oracle is a bound.
COMPETITORS = ("no-recall", "ttamer-chain", "max-prob", "max-prob-sdn", "entropy", "patience", "static")

#: AUCs (fractions) that differ by less than this (0.005 percentage points) count as equal.
AUC_TIE = 5e-5


def _pct(x: float | None) -> float:
    return np.nan if x is None else 100.0 * float(x)


def _signed(x: float, decimals: int = 2) -> str:
    """``x`` with its sign and ``decimals`` decimals, ``+0.00`` rather than ``-0.00``."""
    return f"{round(float(x), decimals) + 0.0:+.{decimals}f}"


def tidy_table(df, decimals: int = 2):
    """``df`` rounded to ``decimals``, its float columns without negative zeros."""
    out = df.round(decimals)
    cols = out.select_dtypes("float").columns
    if len(cols):
        out[cols] = out[cols] + 0.0
    return out


def metric_table(result: EvaluationResult):
    """A ``pandas.DataFrame`` of the scalar metrics, strategies as rows, values in percent
    (costs as % of the full model's mean cost, accuracies in %)."""
    import pandas as pd

    rows = {}
    for name, m in result.strategies.items():
        acc = m.accuracy_at_cost
        rows[name] = {
            "AUC (%)": _pct(m.auc),
            "cost @ full acc (%)": _pct(m.cost_at_full_accuracy),
            "cost @ full −0.5pt (%)": _pct(m.cost_at_full_accuracy_minus_half_pt),
            "cost @ full −1pt (%)": _pct(m.cost_at_full_accuracy_minus_1pt),
            "acc @ 25% cost": _pct(acc["0.25"]), "acc @ 50% cost": _pct(acc["0.5"]),
            "acc @ 75% cost": _pct(acc["0.75"]),
            "oracle-gain share (%)": _pct(m.oracle_gain_share),
        }
    return tidy_table(pd.DataFrame.from_dict(rows, orient="index"))


def dominance_table(result: EvaluationResult, a: str = "ttamer", others: Sequence[str] = COMPETITORS,
                    tol: float = 0.0):
    """T-Tamer (``a``) against each strategy of ``others`` present in ``result`` (``a`` itself
    left out): ``a nowhere below`` (its frontier at least as accurate, within ``tol``, at every
    cost of the common range where the other is defined), ``AUC gain (pt)``, and both costs at
    the full model's accuracy (% of the full cost)."""
    import pandas as pd

    from ..earlyexit.evaluation import dominates

    S = result.strategies
    rows = {}
    for b in others:
        if b not in S or b == a:
            continue
        rows[b] = {f"{a} nowhere below": dominates(result, a, b, tol=tol),
                   "AUC gain (pt)": 100.0 * (S[a].auc - S[b].auc),
                   f"cost @ full acc, {a} (%)": _pct(S[a].cost_at_full_accuracy),
                   "cost @ full acc, other (%)": _pct(S[b].cost_at_full_accuracy)}
    return tidy_table(pd.DataFrame.from_dict(rows, orient="index"))


def _cheaper_or_equal(ca: float | None, cb: float | None) -> bool:
    if cb is None:
        return True
    return ca is not None and ca <= cb + 1e-12


def verdict(result: EvaluationResult, a: str = "ttamer", others: Sequence[str] = COMPETITORS,
            tol: float = 0.0) -> str:
    """One sentence, computed: how ``a``'s AUC compares with that of every other strategy of
    ``others`` present in ``result`` (AUCs within :data:`AUC_TIE` count as tied), whether its
    cost at the full model's accuracy is lower or equal, and whether its frontier is nowhere
    below theirs (:func:`ttamer.earlyexit.evaluation.dominates`)."""
    from ..earlyexit.evaluation import dominates

    S = result.strategies
    others = [b for b in others if b in S and b != a]
    diff = {b: S[a].auc - S[b].auc for b in others}
    auc_lose = [b for b in others if diff[b] <= -AUC_TIE]
    tied = [b for b in others if abs(diff[b]) < AUC_TIE]
    cost_lose = [b for b in others if not _cheaper_or_equal(S[a].cost_at_full_accuracy,
                                                             S[b].cost_at_full_accuracy)]
    below = [b for b in others if not dominates(result, a, b, tol=tol)]
    c = S[a].cost_at_full_accuracy
    reach = ("never reaches the full model's accuracy" if c is None
             else f"reaches the full model's accuracy at {100 * c:.1f}% of its cost")
    if auc_lose:
        lose = ", ".join(f"{b} (by {-100 * diff[b]:.2f} pt)" for b in auc_lose)
        auc = f"has a smaller AUC than {lose}" + (f" and the same as {', '.join(tied)}" if tied else "")
    elif tied:
        auc = f"has an AUC at least that of every other real strategy (tied with {', '.join(tied)})"
    else:
        auc = "has a larger AUC than every other real strategy"
    parts = [f"{a} {reach}", auc]
    parts.append("is at least as cheap at the full model's accuracy as every other" if not cost_lose
                 else f"is more expensive at the full model's accuracy than {', '.join(cost_lose)}")
    parts.append(f"and its frontier is nowhere below that of any of its {len(others)} competitors" if not below
                 else f"and its frontier is below that of {', '.join(below)} at some costs")
    return ", ".join(parts[:-1]) + " " + parts[-1] + "."


def plot_frontiers(result: EvaluationResult, ax=None, strategies: Sequence[str] | None = None,
                   bands: bool = True, title: str | None = None):
    """Staircase accuracy–cost frontiers (cost as a fraction of the full model) with their
    bootstrap bands, and the full model as a star. Returns the axes."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(7.5, 5))
    S = result.strategies
    names = list(S) if strategies is None else [s for s in strategies if s in S]
    lo, hi = result.cost_range
    for name in names:
        m = S[name]
        f = np.asarray(m.frontier, dtype=float)
        x = np.append(f[:, 0], max(hi, f[-1, 0]))
        y = np.append(f[:, 1], f[-1, 1])
        style = {"linewidth": 2.4, "zorder": 5} if name == "ttamer" else {"linewidth": 1.3}
        if name == "oracle":
            style.update(linestyle=":", color="black")
        (line,) = ax.step(x, 100 * y, where="post", label=name, **style)
        band = m.band
        if bands and band is not None and name != "oracle":
            lower, upper = np.asarray(band.lower, dtype=float), np.asarray(band.upper, dtype=float)
            ax.fill_between(band.cost, 100 * lower, 100 * upper, step="post", alpha=0.15,
                            color=line.get_color(), linewidth=0)
    fm = result.full_model
    ax.plot([1.0], [100 * fm.accuracy], marker="*", markersize=14, color="black", linestyle="none",
            label="full model", zorder=6)
    ax.set_xlim(lo - 0.02, hi + 0.02)
    ax.set_xlabel("mean cost per example (fraction of the full model)")
    ax.set_ylabel("accuracy (%)" if result.target == "label"
                  else "agreement with the full model (%)")
    if title:
        ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    return ax


def recall_answers(tamer, test, lams: Sequence[float]):
    """How T-Tamer's recall answers fare on ``test``: for each ``λ`` of ``lams``, the share of
    examples it answered with an exit *earlier* than the last one it consulted, the accuracy
    of those answers, and the accuracy the last consulted exit would have had on the same
    examples. Recall pays off exactly when the third column beats the fourth.

    ``tamer`` is a fitted :class:`~ttamer.earlyexit.calibration.EarlyExitTamer` with ``recall=True``.
    Returns a ``pandas.DataFrame`` indexed by ``λ`` (rows with no such example are dropped).
    """
    import pandas as pd

    d = tamer.decide_sweep(test, lams, refine=False)
    correct = test.correct
    rows_idx = np.arange(test.n_examples)
    rows = {}
    for p, lam in enumerate(np.atleast_1d(d.params)):
        answer, last = np.atleast_2d(d.answer)[p], np.atleast_2d(d.last)[p]
        early = answer < last
        if not early.any():
            continue
        rows[f"{float(lam):.6g}"] = {
            "answered with an earlier exit (%)": 100.0 * early.mean(),
            "accuracy of those answers (%)": 100.0 * correct[rows_idx, answer][early].mean(),
            "accuracy of the last consulted exit on them (%)": 100.0 * correct[rows_idx, last][early].mean(),
            "mean cost (% of full)": 100.0 * np.atleast_2d(d.cost)[p].mean() / test.full_cost.mean(),
        }
    out = tidy_table(pd.DataFrame.from_dict(rows, orient="index"))
    out.index.name = "λ"
    return out


def _beats_every(S: dict[str, StrategyResult], heuristics: Sequence[str]) -> tuple[bool, bool]:
    """(larger AUC than every heuristic, by at least :data:`AUC_TIE`; cheaper-or-equal at the full
    model's accuracy than every one)."""
    auc = all(S["ttamer"].auc - S[h].auc >= AUC_TIE for h in heuristics)
    cost = all(_cheaper_or_equal(S["ttamer"].cost_at_full_accuracy, S[h].cost_at_full_accuracy)
               for h in heuristics)
    return auc, cost


def split_table(trace, seeds: Sequence[int], first: EvaluationResult | None = None, n_jobs: int = 1, **kwargs):
    """T-Tamer against the heuristics on several calibration/test splits: one row per split
    seed (``first``: an already computed result for ``seeds[0]``; ``kwargs`` go to
    :func:`~ttamer.earlyexit.evaluation.evaluate_trace`, without bootstrap). Columns: the AUCs (%) of
    T-Tamer, its chain estimation and max-prob, the best heuristic by AUC and T-Tamer's gain
    over it (pt), the costs at the full model's accuracy (% of full) of T-Tamer and of the
    cheapest heuristic, and three verdicts: larger AUC than every heuristic (by at least
    :data:`AUC_TIE`), cheaper or equal at the full model's accuracy than every heuristic, frontier
    nowhere below that of any competitor (:func:`dominance_table`). ``n_jobs`` worker processes evaluate the splits
    (:func:`~ttamer.core.parallel.map_processes`; the same numbers)."""
    import pandas as pd

    from ..earlyexit.evaluation import HEURISTICS, evaluate_trace

    todo = [s for k, s in enumerate(seeds) if not (k == 0 and first is not None)]
    done = dict(zip(todo, map_processes(partial(evaluate_trace, trace, n_boot=0, **kwargs), [(s,) for s in todo],
                                        n_jobs)))
    rows = []
    for k, s in enumerate(seeds):
        r = first if (k == 0 and first is not None) else done[s]
        S = r.strategies
        best = max(HEURISTICS, key=lambda h: S[h].auc)
        costs = {h: S[h].cost_at_full_accuracy for h in HEURISTICS if S[h].cost_at_full_accuracy is not None}
        cheapest = min(costs, key=costs.get) if costs else None
        auc_ok, cost_ok = _beats_every(S, HEURISTICS)
        rows.append({"split seed": s, "AUC ttamer (%)": _pct(S["ttamer"].auc),
                     "AUC ttamer-chain (%)": _pct(S["ttamer-chain"].auc) if "ttamer-chain" in S else np.nan,
                     "AUC max-prob (%)": _pct(S["max-prob"].auc), "best heuristic": best,
                     "AUC gain over it (pt)": 100.0 * (S["ttamer"].auc - S[best].auc),
                     "cost @ full, ttamer (%)": _pct(S["ttamer"].cost_at_full_accuracy),
                     "cost @ full, cheapest heuristic (%)": _pct(costs[cheapest]) if cheapest else np.nan,
                     "cheapest heuristic": cheapest,
                     "larger AUC than every heuristic": auc_ok, "cheaper at full accuracy": cost_ok,
                     "frontier nowhere below all": bool(all(dominance_table(r)["ttamer nowhere below"]))})
    return pd.DataFrame(rows).set_index("split seed")


def split_verdict(splits) -> str:
    """One sentence on :func:`split_table`: mean AUC gain and mean costs at full accuracy, and
    on how many splits T-Tamer has a larger area than every heuristic and a lower-or-equal cost."""
    n = len(splits)
    gain = splits["AUC gain over it (pt)"]
    both = int((splits["larger AUC than every heuristic"] & splits["cheaper at full accuracy"]).sum())
    return (f"Over {n} splits T-Tamer's AUC minus the best heuristic's is {_signed(gain.mean())} pt on average "
            f"(from {_signed(gain.min())} to {_signed(gain.max())}); its mean cost at the full model's accuracy is "
            f"{splits['cost @ full, ttamer (%)'].mean():.1f} % of the full cost against "
            f"{splits['cost @ full, cheapest heuristic (%)'].mean():.1f} % for the cheapest heuristic; "
            f"it has both a larger area than every heuristic and a cost at the full model's accuracy no higher "
            f"than theirs in {both} of {n} splits, and a frontier nowhere below that of any competitor in "
            f"{int(splits['frontier nowhere below all'].sum())} of {n}.")


#: The estimation ablation of the early-exit chapters, with the paper's binned chain, the regression
#: of the continuation value and the threshold rules, each chosen on calibration data only
#: (:func:`estimation_ablation`).
ESTIMATION_CONFIGS = (
    {"name": "chain: 8 max-prob bins, label loss, index answer (the paper's)", "estimation": "chain",
     "tamer": {"K": 8, "feature": "max_prob", "agreement": 0, "loss": "label", "answer": "index"}},
    {"name": "chain: cross-validated state and loss, pairwise answer", "estimation": "chain"},
    {"name": "regression: max-prob state, label loss", "estimation": "regression",
     "pathwise": {"feature": "max_prob", "loss": "label"}},
    {"name": "regression: cross-validated state, final loss", "estimation": "regression"},
    {"name": "regression: cross-validated state, final loss, posterior answer", "estimation": "regression",
     "pathwise": {"answer": "posterior"}},
    {"name": "thresholds: one max-prob threshold", "thresholds": {"policy": "common:max_prob:last"}},
    {"name": "thresholds: per exit, learned state", "thresholds": {"policy": "per_exit:learned:last"}},
    {"name": "thresholds: per exit, posterior recall", "thresholds": {"policy": "per_exit:posterior:posterior"}},
    {"name": "thresholds: cross-validated policy class (default)"},
)


def estimation_ablation(trace, seed: int = 0, calibration_fraction: float = 0.5, lams=None,
                        configs: Sequence[dict[str, Any]] = ESTIMATION_CONFIGS, n_jobs: int = 1):
    """:func:`ttamer.earlyexit.evaluation.ablation` over ``configs`` (default :data:`ESTIMATION_CONFIGS`)
    as a ``pandas.DataFrame``: per configuration T-Tamer's AUC and cost at the full model's
    accuracy (%), the best heuristic's AUC, the gain, and whether it has the larger area and
    the lower-or-equal cost than every heuristic (``n_jobs`` worker processes)."""
    import pandas as pd

    from ..earlyexit.evaluation import HEURISTICS, ablation

    cfgs = [dict(c, calibration_fraction=calibration_fraction, lams=lams) for c in configs]
    rows = ablation(trace, cfgs, seed=seed, n_boot=0, n_jobs=n_jobs)
    out = {}
    for r in rows:
        costs = [r[f"cost_at_full[{h}]"] for h in HEURISTICS]
        out[r["name"]] = {
            "AUC (%)": _pct(r["auc"]), "best heuristic AUC (%)": _pct(r["best_heuristic_auc"]),
            "gain (pt)": 100.0 * (r["auc"] - r["best_heuristic_auc"]),
            "cost @ full (%)": _pct(r["cost_at_full"]),
            "cheapest heuristic @ full (%)": min((_pct(c) for c in costs if c is not None), default=np.nan),
            "larger AUC than every heuristic": all(r[f"auc_gap[{h}]"] >= AUC_TIE for h in HEURISTICS),
            "cheaper at full accuracy": all(_cheaper_or_equal(r["cost_at_full"], c) for c in costs),
            "chosen": r["description"]}
    return tidy_table(pd.DataFrame.from_dict(out, orient="index"))


# --------------------------------------------------------------------------- the workload chapters, step by step
#: The strategies the workload chapters draw, in order.
CHAPTER_STRATEGIES = ("ttamer", "ttamer-chain", "no-recall", "max-prob", "max-prob-sdn", "entropy", "patience",
                      "static", "oracle")


def load_workload_trace(workload: str, profile: str = "offline", *, seed: int = 0, device: str = "cpu",
                        sizes: dict[str, Any] | None = None) -> tuple[Any, str]:
    """The trace of a workload, read from the trace cache or generated now
    (:func:`~ttamer.workloads.registry.get_trace`), and what a chapter prints about it.

    Parameters
    ----------
    workload : {"nlp", "vision"}
        The workload.
    profile : str, default "offline"
        Its profile.
    seed : int, default 0
        Seed of the workload.
    device : str, default "cpu"
        Where a generation runs.
    sizes : dict, optional
        Overrides of the profile's sizes.

    Returns
    -------
    trace : Trace
        The trace.
    text : str
        The trace, whether it was cached, the time taken, the generation phases, the
        hardware and (text workload) the fine-tuning of the backbone.
    """
    import time

    from .registry import get_trace, trace_path

    sizes = dict(sizes or {})
    t0 = time.perf_counter()
    cached = trace_path(workload, profile, seed=seed, device=device, **sizes).exists()
    trace = get_trace(workload, profile, seed=seed, device=device, progress=False, **sizes)
    meta = trace.meta
    lines = [str(trace), f"trace {'read from the trace cache' if cached else 'generated now'} "
                         f"({time.perf_counter() - t0:.1f} s in this run)"]
    if "generation_seconds" in meta:
        lines.append(f"generation phases (s): {meta['generation_seconds']}")
    lines.append(f"hardware: {meta['hardware']}")
    if workload == "nlp":
        ft = meta.get("finetune")
        lines.append("backbone used as loaded (no fine-tuning)" if not ft else
                     f"backbone fine-tuned on {ft['n']} head sentences: {ft['epochs']} epoch(s), {ft['steps']} steps, "
                     f"{ft['settings']}; mean training loss per epoch {np.round(ft['epoch_loss'], 3).tolist()}")
    return trace, "\n".join(lines)


def exit_table(trace):
    """Per exit of a workload's trace: accuracy (%), measured cost, cumulative cost (% of the
    full model) and the alternative costs (layers, MMACs), as a ``pandas.DataFrame``. A cost in
    ``ms/...`` below 0.1 everywhere is shown in ``µs/...``, so that two decimals still read."""
    import pandas as pd

    meta = trace.meta
    unit, cost = meta["cost_unit"], np.asarray(trace.mean_cost, dtype=float)
    if unit.startswith("ms/") and cost.max() < 0.1:
        unit, cost = "µs/" + unit[3:], 1000.0 * cost
    return pd.DataFrame({
        "accuracy (%)": 100 * trace.accuracy(),
        f"cost ({unit})": cost,
        "cumulative cost (% of full)": 100 * np.cumsum(trace.mean_cost) / trace.mean_cost.sum(),
        "layers": meta["alt_costs"]["layers"],
        "MMACs": meta["alt_costs"]["mmacs"],
    }, index=trace.exit_names)


def held_out_check(trace) -> str:
    """Check that a workload's network never saw the trace's examples (an error if it did)
    and say on what it was trained."""
    meta = trace.meta
    if "training" in meta:  # the vision workload: the network is trained on another split
        if meta["head_examples"]["split"] == meta["trace_examples"]["split"]:
            raise TTamerError("network trained on trace examples")
        tr_meta = meta["training"]
        return (f"trained on {tr_meta['n']} images of split {tr_meta['split']!r} for {tr_meta['epochs']} epochs "
                f"(loss per epoch {np.round(tr_meta['epoch_losses'], 3).tolist()}); "
                f"trace: {trace.n_examples} images of split {meta['trace_examples']['split']!r}")
    head_idx = set(meta["head_examples"]["indices"]) if "indices" in meta["head_examples"] else set()
    trace_idx = set(meta["trace_examples"].get("indices", []))
    same_split = meta["head_examples"]["split"] == meta["trace_examples"]["split"]
    if same_split and head_idx & trace_idx:
        raise TTamerError("exit heads were trained on trace examples")
    return (f"encoder fine-tuning and heads: {meta['heads']['n']} sentences of split {meta['head_examples']['split']!r}, "
            f"trace: {trace.n_examples} other sentences of split {meta['trace_examples']['split']!r}; "
            f"overlap: {len(head_idx & trace_idx) if same_split else 0}")


def chain_choice(result: EvaluationResult) -> dict[str, Any]:
    """The options of the paper's chain estimation that the cross-validation of ``result``
    chose (``"ttamer-chain"``): its state ``K``, ``feature``, ``agreement``, ``entropy_bins``,
    and ``loss`` and ``smoothing`` (options of
    :class:`~ttamer.earlyexit.calibration.EarlyExitTamer`), to fix them in later runs."""
    chain_fit = result.ttamer_fit["chain"]
    return {key: chain_fit[key] for key in ("K", "feature", "agreement", "entropy_bins", "loss", "smoothing")}


def describe_fit(result: EvaluationResult) -> str:
    """What was fitted (T-Tamer and its chain estimation) and the full model, in words."""
    fit, chain_fit = result.ttamer_fit, result.ttamer_fit["chain"]
    return "\n".join([
        f"ttamer: {fit['description']}",
        f"ttamer-chain: {chain_fit['description']}; states per exit {chain_fit['n_states']}",
        f"full model: accuracy {100 * result.full_model.accuracy:.2f} % on "
        f"{result.split.n_test} test examples ({result.split.n_calibration} calibrate)"])


def plot_main_frontiers(result: EvaluationResult, strategies: Sequence[str] = CHAPTER_STRATEGIES,
                        zoom: Sequence[str] = ("ttamer", "ttamer-chain", "max-prob", "entropy", "patience")):
    """Two panels: every strategy of ``strategies``, and a zoom on the strongest ones
    (:func:`plot_frontiers`). Returns the figure."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(13, 4.8))
    plot_frontiers(result, ax=axes[0], strategies=strategies, title="all strategies")
    plot_frontiers(result, ax=axes[1], strategies=zoom, title="zoom: the strongest strategies")
    S = result.strategies
    lo = min(min(np.asarray(S[s].frontier)[:, 1]) for s in ["ttamer", "max-prob"])
    axes[1].set_ylim(100 * lo - 1, 100 * max(S["ttamer"].frontier[-1][1], result.full_model.accuracy) + 1)
    fig.tight_layout()
    return fig


def recall_study(trace, result: EvaluationResult, chosen: dict[str, Any], *, seed: int = 0,
                 calibration_fraction: float = 0.5, lams=None):
    """Recall against no recall: whether the threshold estimation's ``ttamer`` and
    ``no-recall`` coincide in ``result``, and the chain estimation (options ``chosen``,
    :func:`chain_choice`) with and without recall on the same split.

    Returns
    -------
    chain_result : EvaluationResult
        The evaluation with ``estimation="chain"`` (no bootstrap).
    text : str
        The two findings, in words.
    """
    from ..earlyexit.evaluation import evaluate_trace

    S = result.strategies
    same = bool(np.array_equal(S["ttamer"].frontier, S["no-recall"].frontier))
    chain_result = evaluate_trace(trace, seed=seed, calibration_fraction=calibration_fraction, lams=lams,
                                  n_boot=0, estimation="chain", tamer=chosen)
    C = chain_result.strategies
    rec_gain = 100 * (C["ttamer"].auc - C["no-recall"].auc)
    text = (f"threshold estimation: ttamer and no-recall frontiers identical: {same}\n"
            f"chain estimation: AUC with recall {100 * C['ttamer'].auc:.2f} %, without {100 * C['no-recall'].auc:.2f} % "
            f"(recall {'helps' if rec_gain > 0 else 'does not help'}: {_signed(rec_gain)} pt on this split)")
    return chain_result, text


def state_ablation(trace, result: EvaluationResult, state_grid: Sequence[tuple[int, int, int]], *, seed: int = 0,
                   calibration_fraction: float = 0.5, lams=None, n_jobs: int = 1):
    """The chain estimation with each fixed state ``(K, agreement, entropy bins)`` of
    ``state_grid`` and both losses, against the cross-validated chain of ``result``
    (``n_jobs`` worker processes).

    Returns
    -------
    table : pandas.DataFrame
        One row per state: states per exit, T-Tamer's and no recall's AUC (%) per loss, and
        max-prob's AUC.
    text : str
        The best fixed state against max-prob and the cross-validated chain.
    """
    import pandas as pd

    from ..earlyexit.evaluation import evaluate_trace

    runs = [({"K": K, "feature": "max_prob", "agreement": ag, "entropy_bins": ent}, loss) for K, ag, ent in state_grid
            for loss in ("label", "final")]
    fit = partial(evaluate_trace, trace, seed, calibration_fraction, lams, n_boot=0, estimation="chain")
    results = iter(map_processes(_chain_with_state, [(fit, state, loss) for state, loss in runs], n_jobs))
    rows = []
    for K, ag, ent in state_grid:
        row = {"K": K, "agreement": ag, "entropy bins": ent}
        for loss in ("label", "final"):
            r = next(results)
            S = r.strategies
            row["states per exit (max)"] = max(r.ttamer_fit["n_states"])
            row[f"AUC ttamer, loss={loss} (%)"] = 100 * S["ttamer"].auc
            row[f"AUC no-recall, loss={loss} (%)"] = 100 * S["no-recall"].auc
        row["AUC max-prob (%)"] = 100 * S["max-prob"].auc
        rows.append(row)
    table = pd.DataFrame(rows)
    auc_cols = [c for c in table if c.startswith("AUC ttamer")]
    best_auc = table[auc_cols].max().max()
    best_row = table.loc[table[auc_cols].max(axis=1).idxmax()]
    text = (f"best fixed state: K={int(best_row['K'])}, agreement={int(best_row['agreement'])}, "
            f"entropy bins={int(best_row['entropy bins'])} "
            f"(AUC {best_auc:.2f} % vs max-prob {best_row['AUC max-prob (%)']:.2f} %); "
            f"cross-validated chain above: {result.ttamer_fit['chain']['description']} "
            f"({100 * result.strategies['ttamer-chain'].auc:.2f} %)")
    return table, text


def _chain_with_state(fit, state: dict[str, Any], loss: str) -> EvaluationResult:
    """``fit`` (a partial :func:`~ttamer.earlyexit.evaluation.evaluate_trace`) with the chain's
    state (its options ``K``, ``feature``, ``agreement``, ``entropy_bins``) and loss fixed (a
    module-level function: worker processes import it)."""
    return fit(tamer={**state, "loss": loss})


def recall_answer_study(trace, chosen: dict[str, Any], *, seed: int = 0, calibration_fraction: float = 0.5,
                        lams=None) -> list[tuple[str, Any]]:
    """Where the chain estimation's recall answers go (:func:`recall_answers`), for the state
    ``chosen`` and each loss: a list of ``(text, table)``, ``table`` ``None`` where T-Tamer
    never answered with an earlier exit (``lams``: default a 12-point grid)."""
    from ..earlyexit.calibration import EarlyExitTamer
    from ..earlyexit.crossval import lam_grid

    cal, test = trace.split(calibration_fraction, seed)
    state = {key: chosen[key] for key in STATE_OPTIONS if key in chosen}
    spec = StateSpec(**state)
    out = []
    for loss in ("label", "final"):
        tamer = EarlyExitTamer(**state, loss=loss, smoothing=chosen["smoothing"], recall=True).fit(cal)
        answers = recall_answers(tamer, test, lam_grid(12) if lams is None else lams)
        text = f"state {spec.describe()}, loss={loss}:"
        if len(answers):
            better = answers["accuracy of those answers (%)"] - answers["accuracy of the last consulted exit on them (%)"]
            text += (f"\n  earlier answers beat the last consulted exit at {int((better > 0).sum())} of {len(answers)} "
                     f"λ values (mean difference {_signed(better.mean(), 1)} pt on the examples concerned)")
            out.append((text, answers))
        else:
            out.append((text + "\n  never answered with an earlier exit", None))
    return out


def calibration_size_table(trace, fractions: Sequence[float], *, seed: int = 0, lams=None, n_jobs: int = 1):
    """T-Tamer (and its chain estimation) against max-prob as the calibration share grows:
    one row per fraction of ``fractions`` (a ``pandas.DataFrame``; ``n_jobs`` worker processes)."""
    import pandas as pd

    from ..earlyexit.evaluation import evaluate_trace

    results = map_processes(partial(evaluate_trace, trace, seed, lams=lams, n_boot=0),
                            [(f,) for f in fractions], n_jobs)
    rows = []
    for f, r in zip(fractions, results):
        S = r.strategies
        rows.append({"calibration fraction": f, "calibration examples": r.split.n_calibration,
                     "ttamer's rule": r.ttamer_fit["description"].removeprefix("T-Tamer, path-wise thresholds: "),
                     "AUC ttamer (%)": 100 * S["ttamer"].auc,
                     "AUC ttamer-chain (%)": 100 * S["ttamer-chain"].auc, "AUC max-prob (%)": 100 * S["max-prob"].auc,
                     "gain (pt)": 100 * (S["ttamer"].auc - S["max-prob"].auc)})
    return tidy_table(pd.DataFrame(rows).set_index("calibration fraction"))


def markov_table(trace, *, seed: int = 0, calibration_fraction: float = 0.5):
    """:func:`~ttamer.earlyexit.evaluation.markov_diagnostics` on the calibration part of the
    split, next to its Markov resample.

    Returns
    -------
    table : pandas.DataFrame
        Per exit, the three measures and their null values (rounded to 3 decimals).
    text : str
        How far a later exit's bin moves an earlier exit's error rate, against the null.
    """
    import pandas as pd

    from ..earlyexit.evaluation import markov_diagnostics

    cal, _ = trace.split(calibration_fraction, seed)
    markov = pd.DataFrame(markov_diagnostics(cal)).set_index("exit")
    markov = markov[["loss_gap_next", "null_loss_gap_next", "loss_gap_prev", "null_loss_gap_prev",
                     "transition_tv", "null_transition_tv"]]
    ratio = markov["loss_gap_next"] / markov["null_loss_gap_next"]
    text = (f"a later exit's bin moves an earlier exit's error rate by {ratio.min():.1f}× to {ratio.max():.1f}× "
            f"what a Markov sample of the same size shows (mean {ratio.mean():.1f}×)")
    return tidy_table(markov, 3), text


def cost_unit_study(trace, units: Sequence[str], chosen: dict[str, Any], *, seed: int = 0,
                    calibration_fraction: float = 0.5, lams=None):
    """Every strategy with the trace's cost in each unit of ``units``
    (:func:`~ttamer.workloads.common.with_cost_unit`), T-Tamer's chain options fixed to
    ``chosen``.

    Returns
    -------
    fig : matplotlib.figure.Figure
        One panel of frontiers per unit.
    table : pandas.DataFrame
        Per unit: the exits' costs (% of full), T-Tamer's and max-prob's AUC, and whether
        T-Tamer's frontier is nowhere below that of any competitor.
    """
    import matplotlib.pyplot as plt
    import pandas as pd

    from ..earlyexit.evaluation import evaluate_trace
    from .common import with_cost_unit

    rows, (fig, axes) = [], plt.subplots(1, len(units), figsize=(5.2 * len(units), 4.2))
    for ax, unit in zip(np.atleast_1d(axes), units):
        tr_u = with_cost_unit(trace, unit)
        r = evaluate_trace(tr_u, seed=seed, calibration_fraction=calibration_fraction, lams=lams, n_boot=0,
                           tamer=chosen)
        plot_frontiers(r, ax=ax, strategies=["ttamer", "no-recall", "max-prob", "entropy", "static"], bands=False,
                       title=f"cost in {tr_u.meta['cost_unit']}")
        S = r.strategies
        rows.append({"unit": tr_u.meta["cost_unit"],
                     "exit costs (% of full)": np.round(100 * np.asarray(r.full_model.exit_cost), 1).tolist(),
                     "AUC ttamer (%)": 100 * S["ttamer"].auc, "AUC max-prob (%)": 100 * S["max-prob"].auc,
                     "nowhere below all": all(dominance_table(r)["ttamer nowhere below"])})
    fig.tight_layout()
    return fig, pd.DataFrame(rows).set_index("unit")


def chapter_summary(trace, result: EvaluationResult, splits, kind: str) -> str:
    """The closing lines of a workload chapter, computed: the workload (``kind``, e.g.
    ``"text"``), the main split's :func:`verdict`, :func:`split_verdict` over ``splits``
    (:func:`split_table`, first row the main split), and the paper's estimation against
    max-prob (mean AUCs over the splits, their difference and the difference on the main split)."""
    meta = trace.meta
    chain, mp = splits["AUC ttamer-chain (%)"], splits["AUC max-prob (%)"]
    diff = chain - mp
    return "\n".join([
        f"Workload: {meta['model']} on {meta['dataset']} ({kind}, {trace.n_exits} exits); "
        f"{result.split.n_test} test examples, exits' accuracy "
        f"{', '.join(f'{100 * a:.1f}' for a in result.full_model.exit_accuracy)} %.",
        "Main split: " + verdict(result),
        split_verdict(splits),
        f"With the paper's estimation (ttamer-chain) the mean AUC over the {len(splits)} splits is {chain.mean():.2f} % "
        f"against {mp.mean():.2f} % for max-prob ({_signed(diff.mean())} pt; {_signed(diff.iloc[0])} pt on the main "
        "split)."])
