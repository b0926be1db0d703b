"""The solvers: a policy of least expected trade-off for an instance.

* :mod:`ttamer.solvers.solve` -- :func:`~ttamer.solvers.solve.solve`, the one entry point;
* :mod:`ttamer.solvers.index` -- the dynamic index strategy with recall on a forest (the
  book's chapter *Recall*);
* :mod:`ttamer.solvers.chain_recall`, :mod:`ttamer.solvers.norecall` -- the dynamic programmes
  on a chain (the book's chapter *No recall*);
* :mod:`ttamer.solvers.exhaustive` -- the exhaustive ground truth;
* :mod:`ttamer.solvers.lp` -- the LP formulation, its duals and the budgeted frontier;
* :mod:`ttamer.solvers.heuristics` -- threshold heuristics on chains, evaluated exactly.

The solvers import only the core.
"""
