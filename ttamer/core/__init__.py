"""The core model: the problem itself and everything that handles it without solving it.

* :mod:`ttamer.core.errors` -- the exceptions;
* :mod:`ttamer.core.validate` -- the argument checks every entry point shares;
* :mod:`ttamer.core.safeio` -- bounded, atomic file I/O;
* :mod:`ttamer.core.instance` -- an instance of the Markovian Pandora's box on a forest of
  models (the book's chapter *The model*);
* :mod:`ttamer.core.policy` -- policies and the one :func:`~ttamer.core.policy.rollout` every
  evaluation shares;
* :mod:`ttamer.core.simulate` -- exact evaluation and Monte-Carlo simulation of a policy;
* :mod:`ttamer.core.solution` -- what a solver returns.

The core imports nothing else from the package.
"""
