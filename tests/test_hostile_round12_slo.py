"""Hostile inputs to the service-level protocol (ttamer.earlyexit.slo): menus whose last rule is
not the full model or whose disagreements are impossible, rule functions that return something
other than the decisions asked for, menus applied to another model's trace, and narrow NumPy
floats as levels."""

from dataclasses import replace

import numpy as np
import pytest

import ttamer.earlyexit.slo as slo
from ttamer.core.errors import TraceError, TTamerError
from ttamer.earlyexit.traces import ExitDecisions, synthetic_trace


@pytest.fixture(scope="module")
def split():
    return synthetic_trace(120, 3, 3, 0).split(0.5, 0)


@pytest.fixture(scope="module")
def hp(split):
    return slo.heuristic_points(split[0], "max-prob")


def _points(n=400, **arrays):
    base = dict(cost=np.array([0.5, 1.0]), in_sample=np.array([0.8, 0.8]), accuracy=np.array([0.8, 0.8]),
                disagreement=np.array([0.1, 0.0]))
    base.update(arrays)
    return slo.OperatingPoints(n=n, apply=lambda trace, ps: None, **base)


# ------------------------------------------------------------------ the last rule is the full model
def test_a_last_rule_that_is_not_the_full_model_does_not_meet_the_target_by_decree(hp):
    fake = replace(hp, cost=np.r_[hp.cost[:-1], 0.05], in_sample=np.r_[hp.in_sample[:-1], 0.0],
                   accuracy=np.r_[hp.accuracy[:-1], 0.0], disagreement=np.r_[hp.disagreement[:-1], 1.0])
    with pytest.raises(TTamerError, match=r"points.cost\[-1\] must be 1 \(the last rule is the full model"):
        slo.meets_target(fake, 0.8, 0.0, 0.9, 60)


@pytest.mark.parametrize("arrays, match", [
    (dict(cost=np.ones(1), in_sample=np.full(1, 0.8), accuracy=np.full(1, 0.8), disagreement=np.zeros(1)),
     r"points.cost has 1 value: .* at least 2 rules"),
    (dict(disagreement=np.array([0.1, 0.2])), r"points.disagreement\[-1\] must be 0 .* got 0.2"),
    (dict(accuracy=np.array([0.8, 0.7])), r"points.accuracy\[-1\] must equal points.in_sample\[-1\]"),
    (dict(disagreement=np.array([0.0, 0.0]), in_sample=np.array([0.5, 0.8])),
     r"points.disagreement\[0\] = 0.0 is impossible: .* in \[0.3, 0.7\]"),
    (dict(disagreement=np.array([0.5, 0.0]), in_sample=np.array([0.1, 0.1]), accuracy=np.array([0.1, 0.1])),
     r"points.disagreement\[0\] = 0.5 is impossible: .* in \[0, 0.2\]"),
])
def test_check_points_refuses_impossible_menus(arrays, match):
    with pytest.raises(TTamerError, match=match):
        slo.check_points(_points(**arrays), "points")


def test_meets_target_refuses_a_full_accuracy_other_than_the_full_model_s():
    with pytest.raises(TTamerError, match=r"full_accuracy 0.9 is not the accuracy of the last point of points, "
                                          r"the full model, on its 400 calibration examples \(0.8\)"):
        slo.meets_target(_points(), 0.9, 0.0, 0.9, 100)


# ------------------------------------------------------------------ what apply returns
@pytest.mark.parametrize("returned, match", [("garbage", "got 'garbage'"), (None, "got None")])
def test_united_refuses_an_apply_that_returns_no_decisions(split, hp, returned, match):
    menu = slo.united(replace(hp, apply=lambda tr, ps: returned), slo.static_points(split[0]))
    with pytest.raises(TTamerError, match="a.apply must return ExitDecisions, " + match):
        menu.apply(split[1], [0])


def test_united_refuses_decisions_of_fewer_rules_than_asked(split, hp):
    menu = slo.united(hp, replace(slo.static_points(split[0]), apply=lambda tr, ps: hp.apply(tr, [0])))
    with pytest.raises(TTamerError, match=r"b.apply returned decisions whose answer is an array of shape \[1, 60\].*"
                                          r"shape \[2, 60\], one row per rule asked for"):
        menu.apply(split[1], [0, len(hp.cost)])


def test_united_refuses_decisions_at_exits_the_trace_does_not_have(split, hp):
    def apply(tr, ps):
        k = np.full((len(ps), tr.n_examples), 7)
        return ExitDecisions(k, k, np.ones(k.shape))

    with pytest.raises(TTamerError, match=r"a.apply returned decisions whose answer holds exits outside 0..2"):
        slo.united(replace(hp, apply=apply), slo.static_points(split[0])).apply(split[1], [0])


def test_a_menu_checks_what_its_rules_return(split, monkeypatch):
    monkeypatch.setattr(slo, "sweep", lambda tr, name, taus: None)
    with pytest.raises(TTamerError, match="the menu's rules must return ExitDecisions, got None"):
        slo.heuristic_points(split[0], "max-prob").apply(split[1], [0])


def test_slo_block_checks_what_a_menu_returns(split, monkeypatch):
    real = slo.static_points
    monkeypatch.setattr(slo, "static_points", lambda cal, target="label": replace(real(cal, target),
                                                                                 apply=lambda tr, ps: "garbage"))
    with pytest.raises(TTamerError, match="the menu of 'static' must return ExitDecisions, got 'garbage'"):
        slo.slo_block(*split, {}, heuristics=("max-prob",))


# ------------------------------------------------------------------ menus of another model
@pytest.mark.parametrize("other, shape", [(synthetic_trace(60, 4, 3, 1), "4 exits and 3 classes"),
                                          (synthetic_trace(60, 3, 5, 1), "3 exits and 5 classes")])
@pytest.mark.parametrize("kind", ["heuristic", "static"])
def test_a_menu_refuses_a_trace_of_another_model(split, other, shape, kind):
    menu = slo.heuristic_points(split[0], "entropy") if kind == "heuristic" else slo.static_points(split[0])
    with pytest.raises(TraceError, match=f"OperatingPoints.apply: the trace has {shape}, the menu was built on a "
                                         "calibration trace of 3 exits and 3 classes"):
        menu.apply(other, [0, 1])
