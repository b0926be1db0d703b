"""``ttamer traces {nlp,vision,zoo}``: generate an early-exit trace on a real model.

Runs a workload (``--profile offline``: local weights and data on a CPU in minutes;
``full``: BERT-base / ResNet-18 by hub name, for a GPU) and writes one trace file (see :mod:`ttamer.earlyexit.traces`)
to ``--out``, or into the trace cache (``$TTAMER_CACHE`` or ``~/.cache/ttamer/traces``) when
``--out`` is not given. The file is written to a temporary name and renamed, so a failed run
never overwrites a good trace. Prints the per-exit accuracy and cost, and the file written.

Everything is checked before the run starts: the seed (an integer in ``[0, 2**63 - 1]``), the
sizes (never beyond the data or the workload's limits, never clamped) and ``--out``, which must
be a new file in an existing folder or an existing writable regular file (not a folder,
link, device or read-only file), and none of the run's inputs -- its data set, the encoder's
package, the caches it reads -- nor a file in the package's folders of shipped traces (other
than, for ``zoo``, the trace's own file), also through links, hard links and bind mounts.

``ttamer traces zoo NAME --out PATH`` regenerates one trace of the shipped zoo
(:mod:`ttamer.workloads.zoo`; ``--out`` defaults to ``NAME.npz`` in the current folder, with
``-sSEED`` and ``-nN`` for another seed or size, never
the shipped file; ``--n-trace N`` draws N trace examples instead of the entry's); ``--all``
rebuilds every file in ``ttamer/data/zoo`` (seed 0 only); ``--list`` prints the zoo.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
from typing import Iterator

from ..core.errors import TTamerError
from ..core.validate import escape_text
from .common import emit, error_line, integer, print_error, show_progress

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
                              description="Generate an early-exit trace on a real model (nlp, vision), or "
                                          "regenerate one of the shipped zoo (zoo).")
    sub = p.add_subparsers(dest="workload", required=True)
    for workload, sizes in _SIZES.items():
        w = sub.add_parser(workload, help=f"the {workload} workload")
        w.add_argument("--profile", choices=("offline", "full"), default="offline",
                       help="offline: local weights/data on a CPU (default); full: hub models, for a GPU")
        w.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
        w.add_argument("--out", default=None, help="trace file to write: a new file in an existing folder or "
                                                   "a writable regular file, none of the run's inputs (default: "
                                                   "the trace cache, $TTAMER_CACHE or ~/.cache/ttamer/traces)")
        w.add_argument("--seed", type=integer, default=0, help="seed, 0 to 2**63 - 1 (default 0)")
        w.add_argument("--no-progress", action="store_true",
                       help="no progress bars (none from transformers or datasets either)")
        w.add_argument("--json", action="store_true", help="print a JSON summary")
        for flag, dest, text in sizes:
            w.add_argument(flag, dest=dest, type=integer, default=None, help=f"{text} (default: the profile's)")
        w.set_defaults(run=run)
    z = sub.add_parser("zoo", help="regenerate a trace of the shipped zoo from packaged weights and data",
                       description="Regenerate a trace of the zoo (ttamer/data/zoo) from the weights and "
                                   "data that ship inside installed packages (CPU, one thread).")
    z.add_argument("name", nargs="?", default=None, help="zoo trace name (see --list)")
    z.add_argument("--out", default=None, help="trace file to write (default: NAME.npz in the current folder, "
                                               "NAME-sS-nN.npz with another --seed or --n-trace; the shipped "
                                               "file only if named here)")
    z.add_argument("--all", action="store_true", help="rebuild every zoo file into ttamer/data/zoo (seed 0)")
    z.add_argument("--list", action="store_true", help="list the zoo's traces and exit (as JSON with --json)")
    z.add_argument("--seed", type=integer, default=0, help="seed, 0 to 2**63 - 1 (0 = the shipped files)")
    z.add_argument("--n-trace", dest="n_trace", type=integer, default=None,
                   help="trace examples to draw (default: the zoo entry's; the model is built as for the zoo)")
    z.add_argument("--no-progress", action="store_true",
                   help="no progress bars (none from transformers or datasets either)")
    z.add_argument("--json", action="store_true", help="print a JSON summary")
    z.set_defaults(run=run_zoo)
    return p


def _list_zoo(args: argparse.Namespace) -> int:
    """``ttamer traces zoo --list``: the zoo's traces, as text or (``--json``) a JSON list; any
    option that would build a trace is refused, not ignored."""
    from ..workloads import zoo

    given = [flag for flag, on in (("NAME", args.name is not None), ("--all", args.all), ("--out", args.out is not None),
                                   ("--n-trace", args.n_trace is not None), ("--seed", args.seed != 0)) if on]
    if given:
        raise TTamerError(f"--list only lists the zoo; it takes no {', '.join(given)}")
    rows = zoo.zoo_table()
    if args.json:
        emit(json.dumps(rows, indent=2))
        return 0
    for row in rows:
        emit(f"{row['name']:<32} {row['modality']:<6} {row['kind']:<12} "
             f"{'shipped' if row['shipped'] else 'MISSING':<8} {row['description']}")
    return 0


def run_zoo(args: argparse.Namespace) -> int:
    """Run ``ttamer traces zoo``; bad input → message on stderr, exit status 2."""
    from ..workloads import zoo
    from ..workloads.common import check_workload_seed

    summaries = []
    try:
        if args.list:
            return _list_zoo(args)
        if args.all == (args.name is not None):
            raise TTamerError("give a zoo trace NAME or --all (not both); known: " + ", ".join(zoo.zoo_names()))
        if args.all and args.out is not None:
            raise TTamerError("--out goes with one NAME; --all writes into ttamer/data/zoo")
        seed = check_workload_seed(args.seed, "--seed")
        if args.all and args.n_trace is not None:
            raise TTamerError("--all rewrites the shipped files at their own sizes, so it takes no --n-trace; "
                              "give one NAME with --n-trace N --out PATH")
        if args.all and seed != 0:
            raise TTamerError(f"--all rewrites the shipped files, which are seed 0, so it takes no --seed "
                              f"(got {seed}); rebuild one trace with another seed as NAME --seed {seed} --out PATH")
        names = zoo.zoo_names() if args.all else [zoo.zoo_entry(args.name).name]
        for name in names:
            out, what = (zoo.zoo_entry(name).path, "shipped file") if args.all else (args.out, "--out")
            tr, path = zoo.write_zoo_trace(name, out, seed=seed, progress=show_progress(not args.no_progress),
                                           what=what, n_trace=args.n_trace)
            summaries.append({"name": name, "path": str(path), "trace": repr(tr),
                              "exit_names": tr.exit_names, "exit_accuracy": tr.accuracy().tolist(),
                              "cost": tr.mean_cost.tolist(), "cost_unit": tr.meta.get("cost_unit", "unit"),
                              "seconds": tr.meta.get("generation_seconds_total")})
            if not args.json:
                emit(escape_text(repr(tr)))
                for n, acc, c in zip(tr.exit_names, tr.accuracy(), tr.mean_cost):
                    emit(f"  {escape_text(n, 40):>10}: accuracy {100 * acc:5.1f}%   cost {c:.4g} "
                         f"{escape_text(tr.meta.get('cost_unit', 'unit'), 40)}")
                emit(f"wrote {escape_text(str(path))} ({summaries[-1]['seconds']} s)")
    except BrokenPipeError:
        raise
    except (TTamerError, OSError) as exc:
        print_error(error_line("traces zoo", exc))
        return 2
    if args.json:
        emit(json.dumps(summaries if args.all else summaries[0], indent=2))
    return 0


#: Added to an error of a workload that could not reach the Hugging Face Hub.
HUB_HINT = ("; the full profiles download their models and data from the Hugging Face Hub: check the network, "
            "or set HF_HUB_OFFLINE=1 to read only what the local cache holds")


@contextlib.contextmanager
def hub_retries_quiet() -> Iterator[None]:
    """``huggingface_hub``'s log below errors (its warning per retry of an unreachable Hub)
    silenced while a workload runs, so that the command prints one error line; the level is
    restored afterwards."""
    try:
        from huggingface_hub.utils import logging as hub_logging  # configures the library's logger
    except ImportError:  # pragma: no cover - installed with transformers and datasets
        yield
        return
    level = hub_logging.get_verbosity()
    hub_logging.set_verbosity(logging.ERROR)
    try:
        yield
    finally:
        hub_logging.set_verbosity(level)


def run(args: argparse.Namespace) -> int:
    """Run ``ttamer traces``; bad input → message on stderr, exit status 2."""
    from ..earlyexit.traces import save_trace
    from ..workloads import CACHE_ENV, generate, trace_path
    from ..workloads.registry import check_run, check_run_output

    flags = {dest: flag for flag, dest, _ in _SIZES[args.workload]}
    flags["seed"] = "--seed"
    try:
        sizes = {dest: getattr(args, dest) for _, dest, _ in _SIZES[args.workload]}
        for name, value in sizes.items():
            if value is not None and value < 1:
                raise TTamerError(f"--{name.replace('_', '-')} must be >= 1, got {value}")
        label = lambda key: flags.get(key, key)  # noqa: E731
        # everything that can be refused is refused here, before the (long) run
        check_run(args.workload, args.profile, seed=args.seed, label=label, **sizes)
        if args.out is not None:
            target, what = args.out, "--out"
        else:
            target = trace_path(args.workload, args.profile, seed=args.seed, device=args.device, **sizes)
            what = f"trace file in the trace cache (${CACHE_ENV})"
        # never one of the run's inputs (its data, the encoder, the caches) nor a shipped trace
        out = check_run_output(args.workload, target, what, args.profile, seed=args.seed, device=args.device,
                               **sizes)
        with hub_retries_quiet():
            result = generate(args.workload, args.profile, seed=args.seed, device=args.device,
                              progress=show_progress(not args.no_progress), label=label, **sizes)
        save_trace(out, result.trace)
    except BrokenPipeError:
        raise
    except (TTamerError, OSError) as exc:
        hint = HUB_HINT if isinstance(exc, ConnectionError) else ""
        print_error(error_line("traces", f"{exc}{hint}"))
        return 2
    tr = result.trace
    summary = {"path": str(out), "trace": repr(tr), "exit_names": tr.exit_names,
               "exit_accuracy": tr.accuracy().tolist(), "cost": tr.mean_cost.tolist(),
               "cost_unit": tr.meta.get("cost_unit", "unit"), "alt_costs": tr.meta.get("alt_costs"),
               "seconds": result.seconds}
    if args.json:
        emit(json.dumps(summary, indent=2))
    else:
        emit(escape_text(repr(tr)))
        unit = escape_text(summary["cost_unit"], 40)
        for name, acc, c in zip(tr.exit_names, summary["exit_accuracy"], summary["cost"]):
            emit(f"  {escape_text(name, 40):>10}: accuracy {100 * acc:5.1f}%   cost {c:.4g} {unit}")
        emit("  seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in result.seconds.items()))
        emit(f"wrote {escape_text(str(out))}")
    return 0
