"""Hostile inputs to the runtime rules (the serving loop's per-exit decisions): softmax rows
that are no softmax rows, exits out of turn, and arguments of the wrong type, size or value.
Each gets a :class:`~ttamer.core.errors.TTamerError` naming the argument, never a raw Python or
numpy error, a silent coercion or a numpy warning."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from ttamer import ThresholdTamer
from ttamer.core.errors import TTamerError
from ttamer.earlyexit.calibration import EarlyExitTamer
from ttamer.earlyexit.pathwise import PathwiseTamer
from ttamer.earlyexit.traces import synthetic_trace
from ttamer.serving.rules import (ChainPolicyRule, ForcedRule, StateFnRule, begin_run, max_prob_rule, pathwise_rule,
                                  threshold_rule)

L, C = 4, 3
THRESHOLD_POLICIES = ["common:max_prob:last", "common:posterior:posterior", "common:ensemble:ensemble",
                      "common:learned:confident", "common:patience:last", "common:neg_entropy:last"]


@pytest.fixture(scope="module")
def data():
    cal, test = synthetic_trace(300, L, C, seed=0), synthetic_trace(50, L, C, seed=1)
    return cal, test.probs


def _chain(cal, feature):
    et = EarlyExitTamer(lam=0.9, feature=feature, K=4).fit(cal)
    rule = ChainPolicyRule.compile(et.solution_.policy, et.encoder_, et.answer_table_ if et.solution_.recall else None)
    assert rule is not None
    return rule


@pytest.fixture(scope="module")
def rules(data):
    """Every kind of rule evaluated exit by exit, by name; ``True`` where the rule knows the
    classes each exit must give (fitted on a trace)."""
    cal, _ = data
    out = {f"threshold {p}": (ThresholdTamer(policy=p, n_lams=11).fit(cal).runtime_rule(), True)
           for p in THRESHOLD_POLICIES}
    for feature, answer in (("max_prob", "last"), ("max_prob", "posterior"), ("learned", "posterior")):
        tamer = PathwiseTamer(feature=feature, answer=answer, lam=0.9).fit(cal)
        out[f"pathwise {feature} {answer}"] = (pathwise_rule(tamer), True)
    for feature in ("max_prob", "learned"):
        out[f"chain {feature}"] = (_chain(cal, feature), True)
    out["max_prob_rule"] = (max_prob_rule(L, 0.6), False)
    out["state_fn"] = (StateFnRule(L, threshold_rule(L, 0.6)[1]), False)
    return out


NAMES = [f"threshold {p}" for p in THRESHOLD_POLICIES] + [
    "pathwise max_prob last", "pathwise max_prob posterior", "pathwise learned posterior", "chain max_prob",
    "chain learned", "max_prob_rule", "state_fn"]


def _raises(f, *needles):
    """``f()`` raises a one-line TTamerError holding every needle."""
    with pytest.raises(TTamerError) as e:
        f()
    text = str(e.value)
    assert "\n" not in text
    for needle in needles:
        assert needle in text, text
    return text


def _one(run):
    """The one-query call of a run, as the runtime picks it: ``decide_one``, else ``advance_one``,
    else ``advance``."""
    if hasattr(run, "decide_one"):
        return lambda i, p: run.decide_one(i, p, 0.5)
    return getattr(run, "advance_one", run.advance)


def _bad_rows(P, rows):
    p = P[:rows, 0]
    return {"not summing to 1": (p * 3, "sums to 3"),
            "nan": (np.full((rows, C), np.nan, np.float32), "NaN or infinite"),
            "inf": (np.tile(np.array([[np.inf, 0, 0]], np.float32), (rows, 1)), "NaN or infinite"),
            "negative": (np.tile(np.array([[-0.5, 1.0, 0.5]], np.float32), (rows, 1)), "negative value, -0.5"),
            "int": (np.tile(np.array([[1, 0, 0]]), (rows, 1)), "dtype int64"),
            "bool": (np.tile(np.array([[True, False, False]]), (rows, 1)), "dtype bool"),
            "list": (p.tolist(), "got list"),
            "1-D": (p[0], "got an array of shape [3]")}


# ------------------------------------------------------------------ 1. rows that are no softmax rows
@pytest.mark.parametrize("name", NAMES)
def test_the_runtime_begins_its_runs_without_the_row_check_and_decides_alike(rules, data, name):
    """The serving runtime's rows are a softmax by construction, checked once after the run:
    its runs (``check_rows=False``) skip the per-exit check and decide as the checked ones."""
    rule, _ = rules[name]
    _, P = data
    for rows in (2, 1):
        checked, trusted = begin_run(rule, rows), begin_run(rule, rows, check_rows=False)
        assert checked.check_rows and not trusted.check_rows
        call, call_trusted = (checked.advance, trusted.advance) if rows > 1 else (_one(checked), _one(trusted))
        for i in range(L):
            np.testing.assert_equal(call(i, P[:rows, i]), call_trusted(i, P[:rows, i]))
    if name != "state_fn":  # a stateless step(i, probs) checks its own argument
        begin_run(rule, 2, check_rows=False).advance(0, 3 * P[:2, 0])  # taken as given: the caller vouches


@pytest.mark.parametrize("name", NAMES)
def test_rows_that_are_no_softmax_rows_are_refused(rules, data, name):
    rule, _ = rules[name]
    _, P = data
    for rows in (2, 1):
        run = begin_run(rule, rows)
        call = run.advance if rows > 1 else _one(run)
        for what, (bad, needle) in _bad_rows(P, rows).items():
            text = _raises(lambda: call(0, bad), "(0)", "p ", needle)
            assert "exit 0" in text, (what, text)
        fresh = begin_run(rule, rows)  # the rows refused left the run as it was: exit 0 comes next
        fresh_call = fresh.advance if rows > 1 else _one(fresh)
        for i in range(L):
            np.testing.assert_equal(call(i, P[:rows, i]), fresh_call(i, P[:rows, i]))


@pytest.mark.parametrize("name", NAMES)
def test_rows_of_another_class_count_are_refused(rules, data, name):
    """A fitted rule refuses rows of other than its classes from the first exit; any rule
    refuses an exit whose classes differ from the first exit's."""
    rule, fitted = rules[name]
    _, P = data
    four = np.full((2, C + 1), 0.25, np.float32)
    for rows in (2, 1):
        run = begin_run(rule, rows)
        call = run.advance if rows > 1 else _one(run)
        if fitted:
            _raises(lambda: call(0, four[:rows]), f"p must be [{rows}, {C}]", "exit 0")
            _raises(lambda: call(0, P[:rows, 0, :2] / P[:rows, 0, :2].sum(1, keepdims=True)), f"[{rows}, {C}]")
        else:
            call(0, P[:rows, 0])
            _raises(lambda: call(1, four[:rows]), f"p must be [{rows}, {C}]", "exit 1")


@pytest.mark.parametrize("name", NAMES)
def test_step_refuses_probs_that_are_no_softmax_rows(rules, data, name):
    rule, _ = rules[name]
    _, P = data
    bad = P[:2, :2].copy()
    bad[1, 1] *= 5
    _raises(lambda: rule.step(1, bad), "step(1)", "probs[1, 1]", "exit 1", "sums to 5")
    _raises(lambda: rule.step(0, P[:2, :2]), "step(0)", "probs must be [B, 1,")
    _raises(lambda: rule.step(1, P[:2, :2].astype(int)), "probs must be [B, 2,", "dtype int64")


def test_float32_softmax_rows_pass_and_no_numpy_warning_is_raised():
    """float32 and float16 softmax rows of many classes pass (the sum is taken in float64);
    hostile rows (overflowing sums, inf − inf) are refused without a numpy warning."""
    from ttamer.earlyexit.online import check_exit_rows, exit_row

    rng = np.random.default_rng(0)
    for C_, dtype in ((1000, np.float32), (1000, np.float16), (4, np.float32), (10, np.float64)):
        z = rng.normal(size=(64, C_)) * 3
        p = (np.exp(z - z.max(1, keepdims=True)) / np.exp(z - z.max(1, keepdims=True)).sum(1, keepdims=True))
        p = p.astype(dtype)
        check_exit_rows(0, p, 64, C_)
        check_exit_rows(0, p[:1], 1, C_)
        assert len(exit_row(0, p[:1], C_)) == C_
    hostile = [np.array([[3e38, 3e38]], np.float32), np.array([[1e308, 1e308]]), np.array([[np.inf, -np.inf]]),
               np.full((40, 2), 3e38, np.float32), np.tile(np.array([[np.inf, -np.inf]]), (40, 1))]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for p in hostile:
            _raises(lambda: check_exit_rows(2, p, len(p), 2), "advance(2)", "exit 2")
            if len(p) == 1:
                _raises(lambda: exit_row(2, p, 2), "advance_one(2)")


# ------------------------------------------------------------------ 2. exits out of turn
@pytest.mark.parametrize("name", NAMES)
def test_every_run_takes_the_exits_in_turn(rules, data, name):
    rule, _ = rules[name]
    _, P = data
    for rows in (2, 1):
        call = (lambda r: r.advance) if rows > 1 else _one
        _raises(lambda: call(begin_run(rule, rows))(2, P[:rows, 2]), "(2): exit 0 comes next")
        run = begin_run(rule, rows)
        call(run)(0, P[:rows, 0])
        _raises(lambda: call(run)(0, P[:rows, 0]), "exit 1 comes next")
        run = begin_run(rule, rows)
        for i in range(L):
            call(run)(i, P[:rows, i])
        _raises(lambda: call(run)(L, P[:rows, 0]), f"({L})", "every exit")
        _raises(lambda: call(begin_run(rule, rows))(0.0, P[:rows, 0]), "exit must be an integer, got 0.0")
        _raises(lambda: call(begin_run(rule, rows))(False, P[:rows, 0]), "exit must be an integer, got False")
    run = begin_run(rule, 2)
    run.advance(np.int64(0), P[:2, 0])  # NumPy integers are integers
    run.advance(1, P[:2, 1])


# ------------------------------------------------------------------ 3. arguments of the rule API
def test_runtime_rule_arguments_are_checked(rules, data):
    rule, _ = rules["threshold common:ensemble:ensemble"]
    _, P = data
    _raises(lambda: rule.stops(True, np.ones(2)), "stops: exit must be an integer, got True")
    _raises(lambda: rule.stops(0, np.ones((2, 1))), "stops(0): x must be a 1-D numpy array", "shape [2, 1]")
    _raises(lambda: rule.stops(0, [0.5]), "stops(0): x must be")
    _raises(lambda: rule.exits(9, 2), "exits: exit must be <= 3")
    _raises(lambda: rule.exits(0, 10**12), "exits: B (rows) must be <=")
    for mask, needle in ((np.array([True, False]), "shape [2]"), ([True, False, True], "[True, False, True]"),
                         (np.array([1, 0, 1]), "dtype int64")):
        run = rule.begin(3)
        run.advance(0, P[:3, 0])
        _raises(lambda: run.keep(mask), "keep: mask must be a boolean numpy array [3]", needle)


@pytest.mark.parametrize("name", ["pathwise max_prob last", "pathwise learned posterior", "chain max_prob",
                                  "chain learned", "max_prob_rule"])
def test_begin_step_and_stops_arguments_are_checked(rules, data, name):
    rule, _ = rules[name]
    _, P = data
    for n, needle in ((2.7, "must be an integer, got 2.7"), (True, "must be an integer, got True"),
                      (0, "must be >= 1, got 0"), (-1, "must be >= 1, got -1"), (10**13, "must be <=")):
        _raises(lambda: rule.begin(n), "begin: n (rows of the batch)", needle)
    _raises(lambda: rule.step(1.5, P[:2, :2]), "step: exit must be an integer, got 1.5")
    _raises(lambda: rule.step(9, P[:2, :4]), "step: exit must be <= 3")
    _raises(lambda: rule.stops(9, np.ones(2)), "stops: exit must be <= 3")
    _raises(lambda: rule.stops(-1, np.ones(2)), "stops: exit must be >= 0")
    _raises(lambda: rule.begin(2).advance(0, P[:2, 0].tolist()), "advance(0): p must be [2,", "got list")
    _raises(lambda: _one(rule.begin(1))(7, P[:1, 3]), "(7)", "exit 0 comes next")


def test_state_fn_and_forced_rules_check_their_arguments(rules, data):
    _, P = data
    state_fn = threshold_rule(L, 0.6)[1]
    for n, needle in ((0, "n_exits must be >= 1"), ("4", "n_exits must be an integer, got '4'"),
                      (4.9, "n_exits must be an integer, got 4.9"), (10**10, "n_exits must be <= 64")):
        _raises(lambda: StateFnRule(n, state_fn), needle)
    rule = StateFnRule(L, state_fn)
    _raises(lambda: rule.step(-1, P[:2, :1]), "step: exit must be >= 0")
    _raises(lambda: rule.step(0, P[:2, :4]), "step(0): probs must be [B, 1, C]")
    _raises(lambda: rule.stops(0, 5.0), "stops(0): x must be")
    _raises(lambda: ForcedRule(max_prob_rule(L, 0.5)).stops(0, 5.0), "stops(0): x must be a 1-D numpy array")


def test_decide_rules_names_taus_that_are_no_array(data):
    cal, _ = data
    tamer = ThresholdTamer(policy="common:max_prob:last", n_lams=11).fit(cal)
    for taus in (0.5, np.zeros(L - 1)):
        _raises(lambda: tamer.decide_rules(cal, taus), f"taus must be an array [P, {L - 1}]")
    assert tamer.decide_rules(cal, np.zeros((2, L - 1))).last.shape == (2, cal.n_examples)
