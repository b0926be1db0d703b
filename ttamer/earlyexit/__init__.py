"""Early-exit stopping rules estimated on calibration paths of a trace.

* :mod:`ttamer.earlyexit.base` -- the estimator contract (scikit-learn semantics);
* :mod:`ttamer.earlyexit.states` -- what a stopping rule sees at each exit, which exit answers;
* :mod:`ttamer.earlyexit.thresholds` -- threshold stopping rules, fitted exactly;
* :mod:`ttamer.earlyexit.tamer` -- T-Tamer on a chain of exits with threshold rules;
* :mod:`ttamer.earlyexit.heuristics` -- the threshold heuristics, swept completely;
* :mod:`ttamer.earlyexit.slo` -- meeting an accuracy target, chosen on calibration examples;
* :mod:`ttamer.earlyexit.metrics` -- accuracy-cost frontiers and their summaries.
"""
