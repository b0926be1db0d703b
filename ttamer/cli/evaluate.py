"""``ttamer evaluate TRACES.npz``: every early-exit strategy on the held-out examples of a trace.

Splits the trace (``--seed``, ``--calibration-fraction``), fits T-Tamer on the calibration
part and reports the frontiers and metrics of :func:`ttamer.earlyexit.evaluation.evaluate_trace`:
with ``--json`` a JSON object ``{"full_model": {...}, "strategies": {NAME: {"auc",
"cost_at_full_accuracy", "frontier", ...}}, ...}``, otherwise a table. With ``--max-examples``
a seeded sample of the trace is evaluated (the JSON's ``"sample"``: ``examples``, ``of``,
``seed``); a trace too large for the free memory is refused before any work
(:func:`ttamer.earlyexit.evaluation.check_evaluation_memory`).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from ..core.errors import TTamerError
from ..core.validate import (MIN_SPLIT_EXAMPLES, check_count, check_fraction, check_seed, escape_lines,
                             escape_text)
from ..earlyexit.results import EvaluationResult
from ..earlyexit.tamer import CV_MAX_EXAMPLES, MIN_FOLD_EXAMPLES
from .common import emit, error_line, integer, number, print_error, show_progress


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register the ``evaluate`` subcommand."""
    p = subparsers.add_parser("evaluate", help="evaluate T-Tamer and the early-exit heuristics on a trace (.npz)",
                              description=__doc__.split("\n\n")[0])
    p.add_argument("path", metavar="TRACES.npz", help="trace file (.npz)")
    p.add_argument("--seed", type=integer, default=0, help="seed of the calibration/test split (default 0)")
    p.add_argument("--calibration-fraction", type=number, default=0.5,
                   help="share of the examples used to fit T-Tamer (default 0.5)")
    p.add_argument("--target", choices=("label", "final"), default="label",
                   help="judge answers against the true label or the full model's prediction")
    p.add_argument("--frontier", choices=("pareto", "hull"), default="pareto",
                   help="staircase of the sweep points, or their concave envelope (randomised mixtures)")
    p.add_argument("--estimation", choices=("thresholds", "regression", "chain"), default="thresholds",
                   help="T-Tamer's estimation: threshold rules on calibration paths chosen by cross-validation "
                        "(default), a regression of the continuation value, or the paper's binned Markov chain")
    p.add_argument("--bootstrap", type=integer, default=200, help="bootstrap replicates for the bands (0: none)")
    p.add_argument("--slo-confidence", type=number, default=0.9,
                   help="confidence with which each strategy's service-level operating point must meet its "
                        "target on the calibration examples (default 0.9; 0.5: the cheapest point that reaches it)")
    p.add_argument("--cv-max-examples", type=integer, default=None, metavar="N",
                   help="T-Tamer's cross-validation reads at most N calibration examples (a seeded sample; the "
                        "chosen rule is then fitted on all of them); threshold estimation only (default "
                        f"{CV_MAX_EXAMPLES})")
    p.add_argument("--max-examples", type=integer, default=None, metavar="N",
                   help="evaluate a seeded sample (--seed) of at most N of the trace's examples (default: all; "
                        "for traces too large for this machine's memory, which are refused before any work)")
    p.add_argument("--json", action="store_true", help="print a JSON object")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="progress bars on stderr (default: when stderr is a terminal; never when it is closed)")
    p.set_defaults(run=run)
    return p


def _threshold_options(args: argparse.Namespace) -> dict[str, Any] | None:
    """Options of the threshold estimation from the command line (``--cv-max-examples``)."""
    if args.cv_max_examples is None:
        return None
    if args.estimation != "thresholds":
        raise TTamerError("--cv-max-examples applies to the threshold estimation (--estimation thresholds)")
    return {"cv_max_examples": check_count(args.cv_max_examples, "--cv-max-examples", minimum=2 * MIN_FOLD_EXAMPLES)}


def _fmt(x: Any, pct: bool = False) -> str:
    if x is None:
        return "—"
    return f"{100 * x:.1f}%" if pct else f"{x:.4f}"


def format_table(result: EvaluationResult) -> str:
    """A readable summary of :func:`~ttamer.earlyexit.evaluation.evaluate_trace`'s result."""
    tr, sp, full = result.trace, result.split, result.full_model
    model, dataset, unit = (escape_text(v) for v in (tr.model, tr.dataset, tr.cost_unit))  # from the file: one line each
    lines = [
        f"{model} on {dataset}: {tr.n_exits} exits, {tr.n_classes} classes; "
        f"{sp.n_calibration} calibration / {sp.n_test} test examples (seed {sp.seed})",
        f"full model: accuracy {100 * full.accuracy:.2f}% ({result.target}), "
        f"mean cost {full.mean_cost:.4g} {unit}",
        f"T-Tamer: {result.ttamer_fit['description']}",
        f"costs are fractions of the full model's, AUC a fraction too (the mean accuracy over cost range "
        f"[{result.cost_range[0]:.3f}, {result.cost_range[1]:.3f}]); {result.frontier_kind} frontiers",
        "",
    ]
    head = ["strategy", "AUC", "cost@full", "cost@-0.5pt", "cost@-1pt", "acc@25%", "acc@50%", "acc@75%",
            "oracle share", "AUC - ttamer (95% paired)", "cost@full - ttamer (95% paired)"]
    rows = [head]
    for name, m in result.strategies.items():
        acc = m.accuracy_at_cost
        d = m.auc_minus_ttamer_ci
        diff = "—" if d is None or name == "ttamer" else f"[{d[0]:+.4f}, {d[2]:+.4f}]"
        c = m.cost_at_full_minus_ttamer_ci
        cdiff = "—" if c is None or name == "ttamer" else f"[{c[0]:+.4f}, {c[2]:+.4f}]"
        rows.append([name, _fmt(m.auc), _fmt(m.cost_at_full_accuracy),
                     _fmt(m.cost_at_full_accuracy_minus_half_pt), _fmt(m.cost_at_full_accuracy_minus_1pt),
                     _fmt(acc["0.25"], True), _fmt(acc["0.5"], True), _fmt(acc["0.75"], True),
                     _fmt(m.oracle_gain_share, True), diff, cdiff])
    widths = [max(len(r[j]) for r in rows) for j in range(len(head))]
    for k, r in enumerate(rows):
        lines.append("  ".join(c.ljust(w) if j == 0 else c.rjust(w) for j, (c, w) in enumerate(zip(r, widths))))
        if k == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines + ["", _never_worse_line(result)])


def _never_worse_line(result: EvaluationResult) -> str:
    """One line: the heuristics T-Tamer falls behind on this split beyond the paired-bootstrap
    noise, in area and in cost at the full model's accuracy (``domination_summary``)."""
    from ..earlyexit.evaluation import domination_summary

    dom = domination_summary(result)
    how = ("at least as good, or behind by less than the 95 % paired-bootstrap noise"
           if result.strategies["ttamer"].auc_minus_ttamer_ci is not None else "point values: no bootstrap")
    parts = []
    for key, what in (("area", "area"), ("cost", "cost at the full model's accuracy")):
        behind = [h for h, d in dom.items() if not d["never_worse"][key]]
        parts.append(f"{what} {'no, behind ' + ', '.join(behind) if behind else 'yes'}")
    return f"T-Tamer never worse than every heuristic on this split ({how}): " + "; ".join(parts)


def run(args: argparse.Namespace) -> int:
    """Run ``ttamer evaluate``; bad input → message on stderr, exit status 2."""
    from ..earlyexit.evaluation import check_bootstrap, evaluate_trace
    from ..earlyexit.slo import check_confidence
    from ..core.errors import TraceError
    from ..core.safeio import show_path
    from ..earlyexit.traces import load_trace

    try:
        seed = check_seed(args.seed, "--seed")
        check_fraction(args.calibration_fraction, "--calibration-fraction")
        check_count(args.bootstrap, "--bootstrap", minimum=0, maximum=1_000_000)
        check_confidence(args.slo_confidence, "--slo-confidence")
        max_examples = (None if args.max_examples is None else
                        check_count(args.max_examples, "--max-examples", minimum=2 * MIN_SPLIT_EXAMPLES))
        thresholds = _threshold_options(args)  # the options' conflicts, before the trace is read
        trace = load_trace(args.path)
        n_file = trace.n_examples
        if max_examples is not None:
            trace = trace.sample(max_examples, seed)
        check_fraction(args.calibration_fraction, "--calibration-fraction", n=trace.n_examples,
                       min_each=MIN_SPLIT_EXAMPLES)
        check_bootstrap(args.bootstrap, trace.n_examples - round(args.calibration_fraction * trace.n_examples),
                        "--bootstrap", kind=args.frontier)
        args.seed = seed
        try:
            result = evaluate_trace(trace, seed=args.seed, calibration_fraction=args.calibration_fraction,
                                    target=args.target, n_boot=args.bootstrap, frontier_kind=args.frontier,
                                    estimation=args.estimation, slo_confidence=args.slo_confidence,
                                    thresholds=thresholds,
                                    progress=show_progress(args.progress))
        except TTamerError as exc:  # what the trace's content cannot give (e.g. one exit): name the file
            kind = TraceError if isinstance(exc, TraceError) else TTamerError
            raise kind(f"trace file {show_path(args.path)}: {exc}") from None
    except (TTamerError, OSError) as exc:
        print_error(error_line("evaluate", exc))
        return 2
    sample = {"examples": trace.n_examples, "of": n_file, "seed": seed}
    if args.json:
        report = result.to_dict() | ({"sample": sample} if trace.n_examples < n_file else {})
        emit(json.dumps(report, indent=1, allow_nan=False))
    else:
        note = (f"a seeded sample (seed {seed}) of {trace.n_examples:,} of the file's {n_file:,} examples\n"
                if trace.n_examples < n_file else "")
        emit(escape_lines(note + format_table(result)))  # model, dataset, exit names come from the file
    return 0


def main(argv: list[str] | None = None) -> int:
    """Stand-alone entry (``python -m ttamer.cli.evaluate``), for tests before registration."""
    from .common import safe_streams

    safe_streams()
    parser = argparse.ArgumentParser(prog="ttamer")
    sub = parser.add_subparsers(dest="command", required=True)
    add_parser(sub)
    args = parser.parse_args(argv)
    return args.run(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
