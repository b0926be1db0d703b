"""Command line: ``ttamer solve``, ``ttamer evaluate``, ``ttamer traces`` (``python -m ttamer``).

Bad input exits with status 2 and one clear line naming the culprit, never a traceback.
Anything printed that comes from a file (names, meta) has its control characters escaped, and
the output works on any terminal encoding (non-ASCII characters are backslash-escaped where
the encoding lacks them).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, NoReturn, Sequence

from ..core.errors import TTamerError
from .common import emit, error_line, number, print_error, safe_streams, silence_stdout, stdout_error


#: ``ttamer solve`` prints at most this many lines of the policy, each cut to this many characters.
POLICY_LINES, POLICY_LINE_CHARS = 60, 200


def _add_solve(sub: argparse._SubParsersAction) -> None:
    from ..solvers.solve import METHODS

    p = sub.add_parser("solve", help="solve an instance file (JSON) for one λ")
    p.add_argument("path", help="instance file (JSON)")
    p.add_argument("--lam", type=number, required=True, help="trade-off weight λ in [0, 1]")
    p.add_argument("--no-recall", action="store_true", help="answer with the last model consulted")
    p.add_argument("--method", choices=METHODS, default="auto")
    p.add_argument("--json", action="store_true", help="print a JSON object")
    p.set_defaults(run=_run_solve)


def _run_solve(args: argparse.Namespace) -> int:
    from ..core.errors import SolverError
    from ..core.instance import load_instance
    from ..core.safeio import show_path
    from ..core.validate import escape_lines, escape_text
    from ..solvers.solve import solve

    inst = load_instance(args.path)
    try:
        sol = solve(inst, args.lam, recall=not args.no_recall, method=args.method)
    except SolverError as exc:  # name the file: the instance inside may have no name
        raise SolverError(f"{show_path(args.path)}: {exc}") from None
    if args.json:
        out = {"instance": inst.name, "value": sol.value, "lam": sol.lam, "recall": sol.recall,
               "method": sol.method, "policy": sol.policy.describe()}
        if sol.sigma is not None:
            out["indices"] = {inst.nodes[v].name: s.tolist() for v, s in enumerate(sol.sigma)}
        emit(json.dumps(out, indent=2))  # ASCII: json escapes control and non-ASCII characters
    else:
        kind = "recall" if sol.recall else "no recall"
        emit(f"{escape_text(inst.name or args.path)}: λ={sol.lam:g}, {kind}, method={sol.method}")
        emit(f"optimal expected trade-off: {sol.value:.10g}")
        # a policy of a large instance is long: the terminal gets its head, --json all of it
        text = sol.policy.describe()
        emit(escape_lines(text, POLICY_LINE_CHARS, POLICY_LINES))
        lines = text.split("\n")
        if len(lines) > POLICY_LINES or max(map(len, lines)) > POLICY_LINE_CHARS:
            emit("(cut short: --json prints the whole policy)")
    return 0


class OneLineParser(argparse.ArgumentParser):
    """An ``argparse.ArgumentParser`` whose usage errors are one line on stderr (``PROG: error:
    MESSAGE (see PROG --help)``, exit status 2), like every other error of ``ttamer``; its
    subcommand parsers are of this class too. Options are never abbreviated (``--cal`` is not
    ``--calibration-fraction``): a typo is an error, not another option."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        """Exit with status 2 after writing ``message`` as one line (whitespace runs collapsed)."""
        from ..core.validate import escape_text

        self.exit(2, f"{escape_text(self.prog)}: error: {escape_text(' '.join(message.split()), 2000)} "
                     f"(see {escape_text(self.prog)} --help)\n")

    def print_help(self, file: Any = None) -> None:
        """Print the help on standard output (or ``file``); where standard output is closed or
        cannot be written (a full disk), exit with status 2 and one error line, as the
        subcommands do; where the reader stopped reading (``| head``), quietly with 141."""
        if file is not None:
            super().print_help(file)
            return
        if sys.stdout is None:
            self._fail("standard output is closed; nothing could be printed")
        try:
            sys.stdout.write(self.format_help())
            sys.stdout.flush()
        except BrokenPipeError:
            silence_stdout()
            sys.exit(141)
        except OSError as exc:
            self._fail(str(stdout_error(exc)))

    def _fail(self, message: str) -> NoReturn:
        from ..core.validate import escape_text

        print_error(f"{escape_text(self.prog)}: error: {message}")
        sys.exit(2)


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="ttamer", description="T-Tamer: provably taming trade-offs in ML serving")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_solve(sub)
    for module in _subcommands():
        module.add_parser(sub)
    return parser


def _subcommands() -> list:
    from . import evaluate, traces

    return [evaluate, traces]


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``ttamer ARGS`` (``argv``, default the command line's) and return its exit status:
    0, 2 with one error line on stderr, 130 when interrupted -- at any point, even while the
    modules of the subcommands load (this module and ``ttamer`` itself import no numerical
    library), so that no traceback ever reaches the user. With standard error closed nothing
    is written there (and no progress bars are drawn); the exit status tells the outcome."""
    try:
        return _main(argv)
    except KeyboardInterrupt:
        print_error("ttamer: interrupted")
        return 130


#: What the input file of a subcommand is called in its messages.
_INPUT_KIND = {"solve": "instance file", "evaluate": "trace file"}


def _unreadable_input(args: argparse.Namespace) -> str | None:
    """Why the subcommand's input file cannot be read (it is missing, unreadable, a folder or not
    a regular file), or ``None``: checked without reading it, so that this error, not the
    closed standard output, is reported where both hold."""
    import os
    import stat

    from ..core.safeio import show_path

    kind, path = _INPUT_KIND.get(args.command), getattr(args, "path", None)
    if kind is None or not isinstance(path, str):
        return None
    try:
        st = os.stat(path)
    except OSError as exc:
        return f"cannot read {kind} {show_path(path)}: {exc.strerror or exc}"
    except ValueError:  # a NUL character in the name
        return f"cannot read {kind} {show_path(path)}: the name contains a NUL character"
    if stat.S_ISDIR(st.st_mode):
        return f"{kind} {show_path(path)} is a folder, not a file"
    if not os.access(path, os.R_OK):
        return f"cannot read {kind} {show_path(path)}: Permission denied"
    return None


def _main(argv: Sequence[str] | None) -> int:
    safe_streams()
    parser = build_parser()
    args = parser.parse_args(argv)
    if sys.stdout is None:  # started with standard output closed: the result would be lost
        problem = _unreadable_input(args) or "standard output is closed; nothing could be printed"
        print_error(error_line(args.command, problem))
        return 2
    try:
        status = int(args.run(args) or 0)
        try:
            sys.stdout.flush()  # a write buffered until now fails here, not silently at exit
        except BrokenPipeError:
            raise
        except OSError as exc:
            raise stdout_error(exc) from None
        return status
    except TTamerError as exc:
        print_error(error_line(args.command, exc))
        return 2
    except BrokenPipeError:  # the reader stopped reading (e.g. `| head`): stop quietly, as Unix tools do
        silence_stdout()
        return 141
    except OSError as exc:
        print_error(error_line(args.command, exc))
        return 2
    except KeyboardInterrupt:
        print_error(f"ttamer {args.command}: interrupted")
        return 130
    except MemoryError:
        hint = "; evaluate a sample of its examples with --max-examples N" if args.command == "evaluate" else ""
        print_error(error_line(args.command, f"out of memory: the input is too large for the memory this process may "
                                             f"use{hint}"))
        return 2
    except RecursionError:
        print_error(error_line(args.command, "out of resources (RecursionError): the input is too deeply nested"))
        return 2
    except Exception as exc:  # noqa: BLE001 - last resort: one line, never a traceback
        print_error(error_line(args.command, f"unexpected {type(exc).__name__}: {exc} "
                                             f"(please report this as a bug)"))
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
