"""``ttamer traces {nlp,vision}``: generate an early-exit trace on a real model.

Runs a workload (``--profile offline``: local weights and data on a CPU in minutes;
``full``: BERT-base / ResNet-18 by hub name, for a GPU) and writes one trace file (SPEC §5.1)
to ``--out``, or into the trace cache (``$TTAMER_CACHE`` or ``~/.cache/ttamer/traces``) when
``--out`` is not given. The file is written to a temporary name and renamed, so a failed run
never overwrites a good trace. Prints the per-exit accuracy and cost, and the file written.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .errors import TTamerError

_SIZES = {
    "nlp": [("--n-head", "n_head", "examples that train the exit heads"),
            ("--n-trace", "n_trace", "examples in the trace"),
            ("--max-length", "max_length", "tokens per text (truncation)"),
            ("--batch-size", "batch_size", "batch size")],
    "vision": [("--n-train", "n_train", "training images (network and heads)"),
               ("--n-test", "n_test", "test images in the trace"),
               ("--epochs", "epochs", "training epochs"),
               ("--batch-size", "batch_size", "batch size"),
               ("--width", "width", "channels of the first block")],
}


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register the ``traces`` subcommand (with sub-subcommands ``nlp`` and ``vision``)."""
    p = subparsers.add_parser("traces", help="generate an early-exit trace (.npz) on a real model",
                              description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="workload", required=True)
    for workload, sizes in _SIZES.items():
        w = sub.add_parser(workload, help=f"the {workload} workload")
        w.add_argument("--profile", choices=("offline", "full"), default="offline",
                       help="offline: local weights/data on a CPU (default); full: hub models, for a GPU")
        w.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
        w.add_argument("--out", default=None, help="trace file to write (default: the trace cache)")
        w.add_argument("--seed", type=int, default=0)
        w.add_argument("--no-progress", action="store_true", help="no progress bars")
        w.add_argument("--json", action="store_true", help="print a JSON summary")
        for flag, dest, text in sizes:
            w.add_argument(flag, dest=dest, type=int, default=None, help=f"{text} (default: the profile's)")
        w.set_defaults(run=run)
    return p


def run(args: argparse.Namespace) -> int:
    """Run ``ttamer traces``; bad input → message on stderr, exit status 2."""
    from .traces import save_trace
    from .workloads import generate, trace_path

    try:
        sizes = {dest: getattr(args, dest) for _, dest, _ in _SIZES[args.workload]}
        for name, value in sizes.items():
            if value is not None and value < 1:
                raise TTamerError(f"--{name.replace('_', '-')} must be >= 1, got {value}")
        out = Path(args.out) if args.out else trace_path(args.workload, args.profile, seed=args.seed,
                                                          device=args.device, **sizes)
        if out.parent and not out.parent.exists():
            raise TTamerError(f"--out: folder {str(out.parent)!r} does not exist")
        result = generate(args.workload, args.profile, seed=args.seed, device=args.device,
                          progress=not args.no_progress, **sizes)
        save_trace(out, result.trace)
    except (TTamerError, OSError) as exc:
        print(f"ttamer traces: error: {exc}", file=sys.stderr)
        return 2
    tr = result.trace
    summary = {"path": str(out), "trace": repr(tr), "exit_names": tr.exit_names,
               "exit_accuracy": tr.accuracy().tolist(), "cost": tr.mean_cost.tolist(),
               "cost_unit": tr.meta["cost_unit"], "alt_costs": tr.meta.get("alt_costs"),
               "seconds": result.seconds}
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(repr(tr))
        for name, acc, c in zip(tr.exit_names, summary["exit_accuracy"], summary["cost"]):
            print(f"  {name:>10}: accuracy {100 * acc:5.1f}%   cost {c:.4g} {summary['cost_unit']}")
        print("  seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in result.seconds.items()))
        print(f"wrote {out}")
    return 0
