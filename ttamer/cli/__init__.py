"""The command line, ``ttamer`` (and ``python -m ttamer``): the book's page *The command line*.

* :mod:`ttamer.cli.main` -- the parser, ``ttamer solve`` and the entry point :func:`main`;
* :mod:`ttamer.cli.evaluate` -- ``ttamer evaluate``: a trace's frontiers and metrics;
* :mod:`ttamer.cli.traces` -- ``ttamer traces``: generate, list and check traces;
* :mod:`ttamer.cli.common` -- what the subcommands share (argument checks, one-line errors).
"""

from .main import main

__all__ = ["main"]
