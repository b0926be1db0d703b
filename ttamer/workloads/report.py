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
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from ..earlyexit.features import StateSpec
from ..earlyexit.results import EvaluationResult, StrategyResult

#: Strategies that are real (implementable) competitors of T-Tamer; the oracle is a bound.
COMPETITORS = ("no-recall", "max-prob", "max-prob-sdn", "entropy", "patience", "static")


def _pct(x: float | None) -> float:
    return np.nan if x is None else 100.0 * float(x)


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
    return pd.DataFrame.from_dict(rows, orient="index").round(2)


def dominance_table(result: EvaluationResult, a: str = "ttamer", others: Sequence[str] = COMPETITORS,
                    tol: float = 0.0):
    """T-Tamer (``a``) against each strategy of ``others``: ``dominates`` (frontier at least as
    accurate, within ``tol``, at every cost of the common range where the other is defined),
    ``AUC gain (pt)``, and both costs at the full model's accuracy (% of the full cost)."""
    import pandas as pd

    from ..earlyexit.evaluation import dominates

    S = result.strategies
    rows = {}
    for b in others:
        if b not in S:
            continue
        rows[b] = {"dominated by " + a: dominates(result, a, b, tol=tol),
                   "AUC gain (pt)": 100.0 * (S[a].auc - S[b].auc),
                   f"cost @ full acc, {a} (%)": _pct(S[a].cost_at_full_accuracy),
                   "cost @ full acc, other (%)": _pct(S[b].cost_at_full_accuracy)}
    return pd.DataFrame.from_dict(rows, orient="index").round(2)


def _cheaper_or_equal(ca: float | None, cb: float | None) -> bool:
    if cb is None:
        return True
    return ca is not None and ca <= cb + 1e-12


def verdict(result: EvaluationResult, a: str = "ttamer", others: Sequence[str] = COMPETITORS,
            tol: float = 0.0) -> str:
    """One sentence, computed: whether ``a`` has the larger AUC than every other strategy,
    the lower-or-equal cost at the full model's accuracy, and a dominating frontier."""
    S = result.strategies
    others = [b for b in others if b in S]
    auc_lose = [b for b in others if S[a].auc < S[b].auc]
    cost_lose = [b for b in others if not _cheaper_or_equal(S[a].cost_at_full_accuracy,
                                                             S[b].cost_at_full_accuracy)]
    from ..earlyexit.evaluation import dominates

    not_dom = [b for b in others if not dominates(result, a, b, tol=tol)]
    c = S[a].cost_at_full_accuracy
    reach = ("never reaches the full model's accuracy" if c is None
             else f"reaches the full model's accuracy at {100 * c:.1f}% of its cost")
    parts = [f"{a} {reach}"]
    parts.append("has the largest AUC of all real strategies" if not auc_lose
                 else f"has a smaller AUC than {', '.join(auc_lose)}")
    parts.append("is at least as cheap at the full model's accuracy as every other" if not cost_lose
                 else f"is more expensive at the full model's accuracy than {', '.join(cost_lose)}")
    parts.append(f"and its frontier dominates all {len(others)} competitors" if not not_dom
                 else f"and its frontier does not dominate {', '.join(not_dom)} everywhere")
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
    out = pd.DataFrame.from_dict(rows, orient="index").round(2)
    out.index.name = "λ"
    return out


def _beats_every(S: dict[str, StrategyResult], heuristics: Sequence[str]) -> tuple[bool, bool]:
    """(larger AUC than every heuristic, cheaper-or-equal at the full model's accuracy than every one)."""
    auc = all(S["ttamer"].auc > S[h].auc for h in heuristics)
    cost = all(_cheaper_or_equal(S["ttamer"].cost_at_full_accuracy, S[h].cost_at_full_accuracy)
               for h in heuristics)
    return auc, cost


def split_table(trace, seeds: Sequence[int], first: EvaluationResult | None = None, **kwargs):
    """T-Tamer against the heuristics on several calibration/test splits: one row per split
    seed (``first``: an already computed result for ``seeds[0]``; ``kwargs`` go to
    :func:`~ttamer.earlyexit.evaluation.evaluate_trace`, without bootstrap). Columns: the AUCs (%) of
    T-Tamer, its chain estimation and max-prob, the best heuristic by AUC and T-Tamer's gain
    over it (pt), the costs at the full model's accuracy (% of full) of T-Tamer and of the
    cheapest heuristic, and three verdicts: larger AUC than every heuristic, cheaper or equal
    at the full model's accuracy than every heuristic, frontier dominating every competitor
    pointwise (:func:`dominance_table`)."""
    import pandas as pd

    from ..earlyexit.evaluation import HEURISTICS, evaluate_trace

    rows = []
    for k, s in enumerate(seeds):
        r = first if (k == 0 and first is not None) else evaluate_trace(trace, seed=s, n_boot=0, **kwargs)
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
                     "frontier dominates all": bool(all(dominance_table(r)["dominated by ttamer"]))})
    return pd.DataFrame(rows).set_index("split seed")


def split_verdict(splits) -> str:
    """One sentence on :func:`split_table`: mean AUC gain and mean costs at full accuracy, and
    on how many splits T-Tamer has the larger area and the lower cost than every heuristic."""
    n = len(splits)
    gain = splits["AUC gain over it (pt)"]
    both = int((splits["larger AUC than every heuristic"] & splits["cheaper at full accuracy"]).sum())
    return (f"Over {n} splits T-Tamer's AUC exceeds the best heuristic's by {gain.mean():+.2f} pt on average "
            f"(from {gain.min():+.2f} to {gain.max():+.2f}); its mean cost at the full model's accuracy is "
            f"{splits['cost @ full, ttamer (%)'].mean():.1f} % of the full cost against "
            f"{splits['cost @ full, cheapest heuristic (%)'].mean():.1f} % for the cheapest heuristic; "
            f"it has both the larger area and the lower-or-equal cost than every heuristic in {both} of {n} "
            f"splits, and a frontier dominating every competitor at every cost in "
            f"{int(splits['frontier dominates all'].sum())} of {n}.")


#: The estimation ablation of the early-exit chapters, with the paper's binned chain, the regression
#: of the continuation value and the threshold rules, each chosen on calibration data only
#: (:func:`estimation_ablation`).
ESTIMATION_CONFIGS = (
    {"name": "chain: 8 max-prob bins, label loss, index answer (the paper's)", "estimation": "chain",
     "tamer": {"state": StateSpec(K=8, agreement=0), "loss": "label", "answer_rule": "index"}},
    {"name": "chain: cross-validated state and loss, pairwise answer", "estimation": "chain"},
    {"name": "regression: max-prob state, label loss", "estimation": "regression",
     "pathwise": {"feature": "max_prob", "loss": "label"}},
    {"name": "regression: cross-validated state, final loss", "estimation": "regression"},
    {"name": "regression: cross-validated state, final loss, posterior answer", "estimation": "regression",
     "pathwise": {"answer_rule": "posterior"}},
    {"name": "thresholds: one max-prob threshold", "thresholds": {"policy": "common:max_prob:last"}},
    {"name": "thresholds: per exit, learned state", "thresholds": {"policy": "per_exit:learned:last"}},
    {"name": "thresholds: per exit, posterior recall", "thresholds": {"policy": "per_exit:posterior:posterior"}},
    {"name": "thresholds: cross-validated policy class (default)"},
)


def estimation_ablation(trace, seed: int = 0, calibration_fraction: float = 0.5, lams=None,
                        configs: Sequence[dict[str, Any]] = ESTIMATION_CONFIGS):
    """:func:`ttamer.earlyexit.evaluation.ablation` over ``configs`` (default :data:`ESTIMATION_CONFIGS`)
    as a ``pandas.DataFrame``: per configuration T-Tamer's AUC and cost at the full model's
    accuracy (%), the best heuristic's AUC, the gain, and whether it has the larger area and
    the lower-or-equal cost than every heuristic."""
    import pandas as pd

    from ..earlyexit.evaluation import HEURISTICS, ablation

    cfgs = [dict(c, calibration_fraction=calibration_fraction, lams=lams) for c in configs]
    rows = ablation(trace, cfgs, seed=seed, n_boot=0)
    out = {}
    for r in rows:
        costs = [r[f"cost_at_full[{h}]"] for h in HEURISTICS]
        out[r["name"]] = {
            "AUC (%)": _pct(r["auc"]), "best heuristic AUC (%)": _pct(r["best_heuristic_auc"]),
            "gain (pt)": 100.0 * (r["auc"] - r["best_heuristic_auc"]),
            "cost @ full (%)": _pct(r["cost_at_full"]),
            "cheapest heuristic @ full (%)": min((_pct(c) for c in costs if c is not None), default=np.nan),
            "larger AUC than every heuristic": all(r[f"auc_gap[{h}]"] > 0 for h in HEURISTICS),
            "cheaper at full accuracy": all(_cheaper_or_equal(r["cost_at_full"], c) for c in costs),
            "chosen": r["description"]}
    return pd.DataFrame.from_dict(out, orient="index").round(2)
