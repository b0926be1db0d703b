"""Early exit: from measured models to decisions (the book's chapter *Early exit on real models*).

Traces and their baselines:

* :mod:`ttamer.earlyexit.traces` -- a trace: every exit's output and cost on real examples,
  the exits of one network (a chain) or separate models in a tree; the decisions of a
  strategy on it (:class:`~ttamer.earlyexit.traces.ExitDecisions`, the one record of
  evaluation and serving);
* :mod:`ttamer.earlyexit.baselines` -- the confidence, entropy, patience, static and oracle
  strategies.

The estimators (:mod:`ttamer.earlyexit.base`: the contract, scikit-learn semantics, and the one
option vocabulary they share):

* :mod:`ttamer.earlyexit.tamer` -- T-Tamer on a chain of exits with threshold rules (the
  default), built on :mod:`ttamer.earlyexit.states` (what a rule sees at each exit, which exit
  answers) and :mod:`ttamer.earlyexit.thresholds` (threshold rules, fitted exactly);
* :mod:`ttamer.earlyexit.calibration` -- the paper's estimation, a binned Markov chain, built
  on :mod:`ttamer.earlyexit.features` (states), :mod:`ttamer.earlyexit.logistic` (Newton
  logistic regression), :mod:`ttamer.earlyexit.isotonic` (monotone losses),
  :mod:`ttamer.earlyexit.chain` (the chain instance and its policy run on a trace),
  :mod:`ttamer.earlyexit.pairwise` (the pairwise answer rule) and
  :mod:`ttamer.earlyexit.crossval` (λ grids, sweeps, cross-validation);
* :mod:`ttamer.earlyexit.pathwise` -- the path-wise regression of the continuation value;
* :mod:`ttamer.earlyexit.online` -- the states' features computed exit by exit, from what the
  earlier exits left (what a served rule keeps);
* :mod:`ttamer.earlyexit.cascade` -- a tree of separate models; :mod:`ttamer.earlyexit.skips`
  -- a chain whose policy may skip models.

Evaluation:

* :mod:`ttamer.earlyexit.heuristics` -- the threshold heuristics, swept completely;
* :mod:`ttamer.earlyexit.metrics` -- accuracy-cost frontiers and their summaries;
* :mod:`ttamer.earlyexit.slo` -- meeting an accuracy target, chosen on calibration examples;
* :mod:`ttamer.earlyexit.evaluation` -- every strategy on a trace's held-out examples, whose
  result is an :class:`~ttamer.earlyexit.results.EvaluationResult`
  (:mod:`ttamer.earlyexit.results`).

Early exit imports the core and the solvers, never the theory.
"""
