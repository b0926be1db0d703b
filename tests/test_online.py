"""Served rules that keep their states' features from exit to exit (``ttamer.earlyexit.online``,
``ChainPolicyRule``, ``PathwiseRule``): driven exit by exit as the runtime drives them -- in
batches whose stopped rows leave, and one query at a time -- their states equal the encoder's
on the whole trace to the last bit, and their decisions are the simulation's."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ttamer import solve
from ttamer.core.errors import TTamerError
from ttamer.earlyexit.calibration import EarlyExitTamer
from ttamer.earlyexit.chain import run_policy
from ttamer.earlyexit.features import StateEncoder, StateSpec
from ttamer.earlyexit.online import Q_CLIPPED, EncoderRun, ExitHistory, PosteriorOne
from ttamer.earlyexit.pathwise import PathwiseTamer, StoppingRule
from ttamer.earlyexit.states import StateModel
from ttamer.earlyexit.tamer import RuntimeRule
from ttamer.earlyexit.traces import synthetic_trace
from ttamer.serving.rules import (ChainPolicyRule, ChainRunOne, PathwiseRule, PathwiseRunOne, begin_run,
                                  pathwise_rule)

L, C = 5, 4
SEEDS = (0, 1, 2)


def _traces(seed: int):
    tr = synthetic_trace(1000, L, C, seed=seed)
    return tr.subset(np.arange(600)), tr.subset(np.arange(600, 1000))


def _served(rule, probs: np.ndarray, batch: int) -> tuple[np.ndarray, np.ndarray]:
    """``(last, answer)`` of ``rule`` driven as the runtime drives it: per batch one running
    state, advanced exit by exit on the rows still running (one query: ``decide_one`` where the
    run has it, else ``advance_one``), the
    rows whose ``x ≥ thresholds[i]`` stop and leave (``keep``); every row stops at the last exit."""
    n = len(probs)
    last, answer = np.full(n, -1), np.full(n, -1)
    for start in range(0, n, batch):
        rows = np.arange(start, min(start + batch, n))
        run = begin_run(rule, len(rows))
        decide = getattr(run, "decide_one", None) if len(rows) == 1 else None
        one = getattr(run, "advance_one", None) if len(rows) == 1 and decide is None else None
        for i in range(L):
            if decide is not None:  # as the runtime serves one query where the run decides itself
                done, a = decide(i, probs[rows, i], float(rule.thresholds[i]))
                stop, a = np.array([done or i == L - 1]), np.array([a])
            elif one is not None:
                x, a = one(i, probs[rows, i])
                stop, a = np.array([i == L - 1 or x >= rule.thresholds[i]]), np.array([a])
            else:
                x, a = run.advance(i, probs[rows, i])
                stop = np.ones(len(rows), dtype=bool) if i == L - 1 else rule.stops(i, x)
            last[rows[stop]], answer[rows[stop]] = i, np.asarray(a)[stop]
            if stop.all():
                break
            if stop.any():
                run.keep(~stop)
                rows = rows[~stop]
    return last, answer


def _assert_served_as_simulated(rule, test, sim) -> None:
    for batch in (1, 7, test.n_examples):
        last, answer = _served(rule, test.probs, batch)
        np.testing.assert_array_equal(last, sim.last, err_msg=f"batch {batch}")
        np.testing.assert_array_equal(answer, sim.answer, err_msg=f"batch {batch}")
    assert len(np.unique(sim.last)) > 1  # the rule really stops at several exits


SPECS = [StateSpec(K=4, feature="max_prob", agreement=0), StateSpec(K=3, feature="entropy", agreement=2),
         StateSpec(K=5, feature="margin", agreement=1, entropy_bins=2),
         StateSpec(K=4, feature="learned", agreement=1, prospect_bins=2),
         StateSpec(K=3, feature="posterior", agreement=1)]


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.describe())
def test_encoder_run_states_equal_the_encoders_bit_for_bit(spec, seed):
    """Exit by exit on the rows still running (a random fifth leaving after every exit), the
    states and the node answers equal ``transform`` and ``answers`` on the whole trace."""
    cal, test = _traces(seed)
    enc = StateEncoder.fit(spec, cal)
    states, answers = enc.transform(test), enc.answers(test)
    rng = np.random.default_rng(seed)
    run, rows = EncoderRun(enc, test.n_examples), np.arange(test.n_examples)
    for i in range(L):
        np.testing.assert_array_equal(run.advance(i, test.probs[rows, i]), states[rows, i], err_msg=f"exit {i}")
        np.testing.assert_array_equal(run.answers(np.full(len(rows), i)), answers[rows, i])
        keep = rng.random(len(rows)) < 0.8
        run.keep(keep)
        rows = rows[keep]


CHAIN = [dict(feature="max_prob", agreement=1, answer="pairwise"),
         dict(feature="max_prob", agreement=2, answer="index"),
         dict(feature="max_prob", agreement=1, recall=False),
         dict(feature="entropy", agreement=0, entropy_bins=2, answer="pairwise"),
         dict(feature="learned", agreement=1, prospect_bins=2, answer="pairwise"),
         dict(feature="posterior", agreement=1, answer="pairwise")]


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("options", CHAIN, ids=lambda o: "-".join(f"{k}={v}" for k, v in o.items()))
def test_chain_policy_rule_served_equals_decide(options, seed):
    """A fitted ``EarlyExitTamer``'s policy as a ``ChainPolicyRule`` (its states advanced exit
    by exit, its decision compiled per exit): batched, with rows leaving, and one query at a
    time, the exit stopped at and the exit answered with are ``tamer.decide``'s."""
    cal, test = _traces(seed)
    tamer = EarlyExitTamer(lam=0.9, K=4, smoothing=2.0, loss="label", **options).fit(cal)
    table = tamer.answer_table_ if tamer.solution_.recall else None
    rule = ChainPolicyRule.compile(tamer.solution_.policy, tamer.encoder_, table)
    one = options["feature"] == "max_prob"
    assert isinstance(rule.begin(1), ChainRunOne) == one
    _assert_served_as_simulated(rule, test, tamer.decide(test))


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("recall,method,kind", [(True, "auto", "index"), (False, "auto", "table"),
                                                (True, "dp", "table"), (True, "exhaustive", "decide")])
def test_every_kind_of_chain_policy_is_served_as_its_rollout(recall, method, kind, seed):
    """The index policy, the DP's table (a level of ``X`` with recall) and any other policy
    (asked on the states seen so far) take the rollout's decisions, answering with the policy's
    own recall rule."""
    cal, test = _traces(seed)
    tamer = EarlyExitTamer(lam=0.7, K=2, feature="max_prob", agreement=1, loss="label").fit(cal)
    solution = solve(tamer.instance_, 0.7, recall=recall, method=method)
    rule = ChainPolicyRule.compile(solution.policy, tamer.encoder_)
    assert rule.steps.kind == kind and isinstance(rule.begin(1), ChainRunOne) == (kind != "decide")
    _assert_served_as_simulated(rule, test, run_policy(solution, tamer.states(test), test))


def _chain_rule(cal):
    tamer = EarlyExitTamer(lam=0.9, K=4, smoothing=2.0, loss="label", feature="max_prob", agreement=1).fit(cal)
    return ChainPolicyRule.compile(tamer.solution_.policy, tamer.encoder_, tamer.answer_table_)


def _pathwise_posterior_rule(cal):
    return pathwise_rule(PathwiseTamer(lam=0.9, feature="max_prob", answer="posterior", loss="label").fit(cal))


@pytest.mark.parametrize("make, run_type", [(_chain_rule, ChainRunOne), (_pathwise_posterior_rule, PathwiseRunOne)])
def test_a_rule_forced_past_its_stops_answers_once_at_the_end(monkeypatch, make, run_type):
    """One query forced to the last exit (``tau = +inf``) runs the answer rule once, at the
    end, and answers as ``advance_one`` there; at ``tau = 0.5`` it stops where ``advance_one``
    says ``1.0``, with its answer."""
    cal, test = _traces(1)
    rule = make(cal)
    assert isinstance(rule.begin(1), run_type)
    calls = []
    answer = run_type._answer
    monkeypatch.setattr(run_type, "_answer", lambda self, i: calls.append(i) or answer(self, i))
    for n in range(40):
        rows = [test.probs[n : n + 1, i] for i in range(L)]
        adv, forced, served = rule.begin(1), rule.begin(1), rule.begin(1)
        stopped = None
        for i in range(L):
            x, a = adv.advance_one(i, rows[i])
            calls.clear()
            done, b = forced.decide_one(i, rows[i], np.inf)
            assert done == (i == L - 1) and len(calls) == (i == L - 1)
            if done:
                assert b == a
            if stopped is None:
                stop, c = served.decide_one(i, rows[i], 0.5)
                assert stop == (x == 1.0) and (c == a if stop else c == i)
                stopped = i if stop else None


def test_chain_policy_rule_refuses_what_is_not_one_exit_after_the_other():
    cal, test = _traces(0)
    tamer = EarlyExitTamer(lam=0.9, K=2, feature="max_prob", agreement=0, loss="label").fit(cal)
    inst = tamer.instance_
    skipped = type(inst).chain(inst.losses, inst.transitions[0][0], inst.transitions[1:], inst.costs,
                               skips=[(0, 2, 0.01)])
    policy = solve(skipped, 0.9, recall=True).policy
    assert ChainPolicyRule.compile(policy, tamer.encoder_) is None
    with pytest.raises(TTamerError, match="one after the other"):
        ChainPolicyRule(policy, tamer.encoder_)


PATHWISE = [("max_prob", "last"), ("max_prob", "posterior"), ("learned", "last"), ("learned", "posterior")]


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("feature,answer", PATHWISE)
@pytest.mark.parametrize("lam", [0.8, 0.95])
def test_pathwise_rule_served_equals_decide(feature, answer, lam, seed):
    """A fitted ``PathwiseTamer`` as a ``PathwiseRule`` (its state advanced exit by exit, exit
    ``i``'s rule alone, the posterior answer for the rows that stop): batched, with rows
    leaving, and one query at a time, its decisions are ``tamer.decide``'s."""
    cal, test = _traces(seed)
    tamer = PathwiseTamer(lam=lam, feature=feature, answer=answer, loss="label").fit(cal)
    rule = pathwise_rule(tamer)
    assert isinstance(rule, PathwiseRule)
    assert isinstance(rule.begin(1), PathwiseRunOne) == (feature == "max_prob")
    _assert_served_as_simulated(rule, test, tamer.decide(test))


coef = st.floats(-5, 5, allow_nan=False)


@given(a=coef, b=coef, c=st.lists(coef, min_size=2, max_size=5), lam=st.floats(0, 1),
       x=st.lists(st.floats(-40, 40, allow_nan=False), min_size=1, max_size=20))
def test_stopping_rule_on_one_state_equals_the_vectorised_rule(a, b, c, lam, x):
    """``StoppingRule.stops_one`` on Python floats takes the decision of ``stop_value ≤
    continue_value`` on arrays, for every state."""
    rule = StoppingRule(lam, np.array([[a, b]]), np.array([c]))
    xs = np.array(x)
    vec = rule.stop_value(0, xs) <= rule.continue_value(0, xs)
    assert [rule.stops_one(0, float(v)) for v in xs] == vec.tolist()


@given(a=coef, b=coef, c=st.lists(coef, min_size=2, max_size=5), lam=st.floats(0.01, 1),
       x=st.floats(-40, 40, allow_nan=False), ulps=st.integers(-3, 3))
def test_stopping_rule_near_a_state_decides_as_the_exact_rule(a, b, c, lam, x, ulps):
    """``StoppingRule.stops_near(i, x, dx)`` (on ``math.exp``, with a bound on its rounding)
    is ``None`` or :meth:`stops_one`'s decision at every state within ``dx`` of ``x`` -- also at
    states a few ulps from where the rule changes its mind (found by bisection)."""
    rule = StoppingRule(lam, np.array([[a, b]]), np.array([c]))
    lo, hi = -40.0, 40.0
    if rule.stops_one(0, lo) != rule.stops_one(0, hi):  # a change of mind in between: go near it
        for _ in range(80):
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if rule.stops_one(0, mid) == rule.stops_one(0, lo) else (lo, mid)
        x = float(hi)
    x = float(np.float64(x) + ulps * np.spacing(np.float64(x)))
    dx = 1e-9 * (abs(x) + 1)
    got = rule.stops_near(0, x, dx)
    if got is not None:
        assert all(rule.stops_one(0, v) == got for v in (x - dx, x, x + dx))
    assert rule.stops_near(0, x, 0.0) in (None, rule.stops_one(0, x))


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("scale", [1.0, 1e3])
def test_posterior_one_decides_as_numpy_or_not_at_all(seed, scale):
    """One query's posterior answer on Python floats (``PosteriorOne``): ``exact`` is the
    posterior state and answer of ``StateModel.transform``; ``decide(i, τ)`` is ``None`` or
    the decision ``x_i ≥ τ`` with the answer ``exact`` gives -- for thresholds at ``x_i``
    itself and one ulp either side, and with the models scaled so that logits are clipped at
    ±30 (exact ties, the first exit answering). It decides nearly every random threshold."""
    cal, test = _traces(seed)
    sm = StateModel.fit(cal, "posterior", "posterior")
    xs, ans = sm.transform(test)
    models = [w * scale for w in RuntimeRule(sm, np.zeros(L - 1))._posterior]
    rng = np.random.default_rng(seed)
    decided = drawn = clipped = 0
    for n in range(60):
        one = PosteriorOne(models, C)
        for i in range(L):
            one.add(test.probs[n : n + 1, i])
            x, a = one.exact(i)
            if scale == 1.0:
                assert (x, a) == (xs[n, i], ans[n, i])
            clipped += x == Q_CLIPPED[1]
            for tau in (x, np.nextafter(x, -np.inf), np.nextafter(x, np.inf), -np.inf, np.inf, rng.random()):
                got = one.decide(i, float(tau))
                assert got is None or got == ((True, a) if x >= tau else (False, i)), (n, i, tau)
            got = one.decide(i, float(rng.random()))
            drawn += 1
            decided += got is not None
    assert decided >= 0.95 * drawn
    assert scale == 1.0 or clipped > 0


def test_exit_history_names_what_is_wrong():
    with pytest.raises(TTamerError, match="keeps"):
        ExitHistory(3, L, C, frozenset({"lo", "everything"}))
    with pytest.raises(TTamerError, match="history features need"):
        ExitHistory(3, L, C, frozenset({"history"}))
    with pytest.raises(TTamerError, match=r"p must be \[3, 4\]"):
        ExitHistory(3, L, C, frozenset({"lo"})).add(0, np.full((2, C), 0.25, dtype=np.float32))
