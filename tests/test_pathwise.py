"""Path-wise (Longstaff–Schwartz) estimation of the early-exit chain recursion."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from strategies import lams
from ttamer.earlyexit.features import exit_losses
from ttamer.core.errors import TraceError, TTamerError
from ttamer.earlyexit.pathwise import (PathFeatures, PathwiseTamer, StoppingRule, fit_loss_models,
                                       fit_stopping_rule)
from ttamer.earlyexit.traces import synthetic_trace

#: Decisions whose stop and continuation values are closer than this are treated as ties
#: (numerically undecidable); instances with such ties are skipped.
TIE = 1e-11


def _sigmoid(z: float) -> float:
    z = min(max(z, -30.0), 30.0)  # the model's clip of the logit (part of ℓ_i's definition)
    return 1.0 / (1.0 + math.exp(-z))


def _reference_backward_induction(x, loss, costs, lam, loss_coef):
    """Exact empirical backward induction with one state per distinct value of ``x[:, i]``,
    written with explicit loops: returns (stops [N, L], G_0 [N], continuation values
    {(i, v): value}, smallest |stop − continuation| met)."""
    n, L = x.shape
    kappa = 1.0 - lam
    G = [lam * loss[k, L - 1] for k in range(n)]
    stops = np.ones((n, L), dtype=bool)
    conts = {}
    margin = math.inf
    for i in range(L - 2, -1, -1):
        new_G = list(G)
        for v in sorted(set(x[:, i].tolist())):
            members = [k for k in range(n) if x[k, i] == v]
            cont = sum(kappa * costs[i + 1] + G[k] for k in members) / len(members)
            stop_value = lam * _sigmoid(loss_coef[i, 0] + loss_coef[i, 1] * v)
            conts[(i, v)] = cont
            margin = min(margin, abs(stop_value - cont))
            stop = stop_value <= cont
            for k in members:
                stops[k, i] = stop
                new_G[k] = lam * loss[k, i] if stop else kappa * costs[i + 1] + G[k]
        G = new_G
    return stops, np.array(G), conts, margin


def _realised(rule: StoppingRule, x, loss, costs):
    """Per example: λ·loss at the exit stopped at + κ·(costs of exits 1..last)."""
    last = rule.last(x)
    paid = np.cumsum(costs)[last] - costs[0]
    return rule.lam * loss[np.arange(len(x)), last] + (1.0 - rule.lam) * paid


# ------------------------------------------------------------------ saturated regression
@st.composite
def saturated_data(draw):
    """Random calibration data whose feature takes at most ``degree+1`` values per exit."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    degree = draw(st.sampled_from([2, 3]))
    L = draw(st.integers(2, 5))
    n = draw(st.integers(4, 60))
    n_values = draw(st.integers(1, degree + 1))
    x = np.empty((n, L))
    for i in range(L):
        values = rng.permutation(np.array([-1.7, -0.6, 0.0, 0.45, 1.3, 2.1]))[:n_values]
        values = values + rng.uniform(-0.1, 0.1, n_values)
        x[:, i] = values[rng.integers(0, n_values, n)]
    p_wrong = rng.uniform(0.1, 0.9, L)
    loss = (rng.random((n, L)) < p_wrong).astype(np.float64)
    costs = rng.uniform(0.05, 1.0, L)
    return x, loss, costs, degree


@given(data=saturated_data(), lam=lams)
def test_saturated_regression_is_exact_backward_induction(data, lam):
    x, loss, costs, degree = data
    rule = fit_stopping_rule(x, loss, costs, lam, degree=degree)
    assert rule.loss_coef.shape == (x.shape[1] - 1, 2) and rule.cont_coef.shape == (x.shape[1] - 1, degree + 1)
    stops, _, conts, margin = _reference_backward_induction(x, loss, costs, lam, rule.loss_coef)
    assume(margin > TIE)
    for (i, v), cont in conts.items():  # the fitted polynomial interpolates the group means
        assert rule.continue_value(i, np.array([v]))[0] == pytest.approx(cont, abs=1e-8)
    np.testing.assert_array_equal(rule.stops(x), stops)
    np.testing.assert_array_equal(rule.last(x), stops.argmax(axis=1))


def test_saturated_regression_hand_example():
    # 2 exits, exit 0's feature takes 2 values; λ = 0.5, κ = 0.5, c_1 = 0.4.
    x = np.array([[0.0, 0.0], [0.0, 0.0], [1.0, 0.0], [1.0, 0.0]])
    loss = np.array([[1.0, 0.0], [1.0, 1.0], [0.0, 1.0], [1.0, 1.0]])
    costs = np.array([1.0, 0.4])
    # Loss model forced to ℓ_0(x) = σ(0) = 1/2 everywhere: stop value 0.25.
    rule = fit_stopping_rule(x, loss, costs, 0.5, degree=1, loss_coef=np.zeros((1, 2)))
    # Continuation: x=0 -> 0.2 + mean(0, 0.5) = 0.45 (stop); x=1 -> 0.2 + 0.5 = 0.7 (stop).
    np.testing.assert_allclose(rule.continue_value(0, np.array([0.0, 1.0])), [0.45, 0.7])
    assert rule.stops(x)[:, 0].all()
    rule = fit_stopping_rule(x, loss, costs, 0.9, degree=1, loss_coef=np.array([[3.0, 0.0]]))
    # stop value 0.9·σ(3) = 0.857; continuation 0.1·0.4 + 0.9·{0.5, 1} = {0.49, 0.94}.
    np.testing.assert_array_equal(rule.stops(x)[:, 0], [False, False, True, True])
    np.testing.assert_array_equal(rule.last(x), [1, 1, 0, 0])


# ------------------------------------------------------------------ general (continuous) features
def _reference_ls(x, loss, costs, lam, degree, loss_coef):
    """Longstaff–Schwartz written independently (np.vander + normal equations)."""
    n, L = x.shape
    kappa = 1.0 - lam
    G = lam * loss[:, L - 1]
    stops = np.ones((n, L), dtype=bool)
    margin = np.inf
    for i in range(L - 2, -1, -1):
        target = kappa * costs[i + 1] + G
        V = np.vander(x[:, i], degree + 1, increasing=True)
        beta = np.linalg.solve(V.T @ V, V.T @ target)
        cont = V @ beta
        stop_value = lam / (1.0 + np.exp(-np.clip(loss_coef[i, 0] + loss_coef[i, 1] * x[:, i], -30, 30)))
        margin = min(margin, np.abs(stop_value - cont).min())
        stops[:, i] = stop_value <= cont
        G = np.where(stops[:, i], lam * loss[:, i], target)
    return stops, G, margin


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("lam", [0.3, 0.8, 0.97])
def test_continuous_features_match_reference_and_in_sample_identity(seed, lam):
    rng = np.random.default_rng(seed)
    n, L = 400, 4
    z = np.cumsum(rng.standard_normal((n, L)), axis=1) / np.sqrt(np.arange(1, L + 1))
    loss = (rng.random((n, L)) < 1.0 / (1.0 + np.exp(2.0 * z + 0.5 * np.arange(L)))).astype(np.float64)
    costs = rng.uniform(0.1, 0.5, L)
    degree = 2 + seed % 2
    rule = fit_stopping_rule(z, loss, costs, lam, degree=degree)
    np.testing.assert_allclose(rule.loss_coef, fit_loss_models(z, loss))
    stops, G0, margin = _reference_ls(z, loss, costs, lam, degree, rule.loss_coef)
    assert margin > 1e-9
    np.testing.assert_array_equal(rule.stops(z), stops)
    # In sample the realised trade-off of the returned rule is exactly the G_0 of the recursion.
    np.testing.assert_allclose(_realised(rule, z, loss, costs), G0, atol=1e-12)
    # ... and a precomputed loss model gives the same rule.
    again = fit_stopping_rule(z, loss, costs, lam, degree=degree, loss_coef=rule.loss_coef)
    np.testing.assert_allclose(again.cont_coef, rule.cont_coef)


@pytest.mark.parametrize("seed", range(4))
def test_extreme_lams(seed):
    rng = np.random.default_rng(seed)
    n, L = 200, 5
    x = rng.standard_normal((n, L))
    loss = (rng.random((n, L)) < 0.4).astype(np.float64)
    loss[:, -1] = 0.0
    costs = rng.uniform(0.05, 1.0, L)
    full = fit_stopping_rule(x, loss, costs, 1.0)  # no cost: the last exit is never wrong
    assert (full.last(x) == L - 1).all()
    assert (full.last(rng.standard_normal((50, L))) == L - 1).all()
    free = fit_stopping_rule(x, loss, costs, 0.0)  # only cost matters: stop at once
    assert (free.last(x) == 0).all()
    assert (free.last(rng.standard_normal((50, L)) * 3) == 0).all()
    assert fit_stopping_rule(x[:, :1], loss[:, :1], costs[:1], 0.5).last(x[:, :1]).tolist() == [0] * n


# ------------------------------------------------------------------ PathwiseTamer end to end
@pytest.fixture(scope="module")
def traces():
    t = synthetic_trace(600, 5, 3, seed=4, per_example_cost=True)
    return t.split(0.5, seed=0)


@pytest.fixture(scope="module")
def fitted(traces):
    cal, _ = traces
    return PathwiseTamer(lam=0.95, feature="max_prob", loss="final").fit(cal)


def _check_decisions(dec, trace, answer_is_last=True):
    L = trace.n_exits
    rows = np.arange(trace.n_examples)
    assert dec.last.shape == (trace.n_examples,)
    assert ((dec.last >= 0) & (dec.last <= L - 1)).all()
    assert (dec.answer <= dec.last).all() and (dec.answer >= 0).all()
    if answer_is_last:
        np.testing.assert_array_equal(dec.answer, dec.last)
    np.testing.assert_allclose(dec.cost, trace.cumulative_cost[rows, dec.last])


def test_decide(traces, fitted):
    cal, test = traces
    assert fitted.candidate_.feature == "max_prob" and fitted.cv_scores_ == []
    assert isinstance(fitted.rule_, StoppingRule) and fitted.rule_.lam == 0.95
    dec = fitted.decide(test)
    _check_decisions(dec, test)
    assert 0 < dec.last.mean() < test.n_exits - 1  # neither trivial extreme at λ = 0.95
    # The decisions are the rule applied to the standardised max-prob log-odds.
    x = fitted.model_.features.transform(test)
    np.testing.assert_array_equal(dec.last, fitted.rule_.last(x))
    raw = np.log(np.clip(test.max_prob, 1e-6, 1 - 1e-6)) - np.log1p(-np.clip(test.max_prob, 1e-6, 1 - 1e-6))
    np.testing.assert_allclose(x, (raw - fitted.model_.features.center) / fitted.model_.features.scale)
    xc = fitted.model_.features.transform(cal)
    np.testing.assert_allclose(xc.mean(axis=0), 0, atol=1e-9)
    np.testing.assert_allclose(xc.std(axis=0), 1, atol=1e-9)
    assert "path-wise" in fitted.describe() and "fitted" in repr(fitted)


def test_decide_sweep(traces, fitted):
    _, test = traces
    L = test.n_exits
    sweep = fitted.decide_sweep(test, lams=[0.2, 0.6, 0.9, 0.99], max_gap=0.05, max_points=30)
    P = len(sweep.params)
    assert 4 <= P <= 30 and sweep.is_sweep
    assert sweep.answer.shape == sweep.last.shape == sweep.cost.shape == (P, test.n_examples)
    assert (np.diff(sweep.params) > 0).all()
    assert {0.2, 0.6, 0.9, 0.99} <= set(np.round(sweep.params, 12).tolist())
    for p in range(P):
        _check_decisions(sweep[p], test)
    # Each sweep point is the rule refitted at its λ.
    p = int(np.flatnonzero(np.isclose(sweep.params, 0.9))[0])
    other = PathwiseTamer(lam=0.9, feature="max_prob", loss="final").fit(traces[0])
    np.testing.assert_array_equal(sweep.last[p], other.decide(test).last)
    # Extremes: λ = 0 stops at exit 0, λ = 1 with loss="final" runs the full model.
    ends = fitted.decide_sweep(test, lams=[0.0, 1.0], refine=False)
    np.testing.assert_allclose(ends.params, [0.0, 1.0])
    assert (ends.last[0] == 0).all() and (ends.last[1] == L - 1).all()
    np.testing.assert_allclose(ends.cost[1], test.full_cost)
    assert (fitted.decide_sweep(test, lams=[1.0]).last == L - 1).all()
    assert len(fitted.decide_sweep(test, lams=np.linspace(0.05, 0.95, 5), max_points=12).params) <= 12


def test_set_lam(traces):
    cal, test = traces
    tamer = PathwiseTamer(lam=0.5, feature="learned", loss="final").fit(cal)
    model = tamer.model_
    tamer.set_lam(1.0)
    assert tamer.lam == 1.0 and tamer.rule_.lam == 1.0 and tamer.model_ is model
    assert (tamer.decide(test).last == test.n_exits - 1).all()
    tamer.set_lam(0.0)
    assert (tamer.decide(test).last == 0).all()


def test_no_recall_answers_with_exit_stopped_at(traces):
    cal, test = traces
    tamer = PathwiseTamer(lam=0.97, recall=False, feature="max_prob", loss="label",
                          answer="posterior").fit(cal)
    assert tamer.candidate_.answer == "last" and tamer.name == "no-recall"
    assert tamer.model_.answer_models is None
    _check_decisions(tamer.decide(test), test, answer_is_last=True)
    sweep = tamer.decide_sweep(test, lams=[0.5, 0.9, 0.99], refine=False)
    np.testing.assert_array_equal(sweep.answer, sweep.last)


def test_posterior_answer(traces):
    cal, test = traces
    tamer = PathwiseTamer(lam=0.97, feature="max_prob", loss="label", answer="posterior").fit(cal)
    assert tamer.candidate_.answer == "posterior" and tamer.name == "ttamer"
    dec = tamer.decide(test)
    _check_decisions(dec, test, answer_is_last=False)
    answers = tamer.model_.answers(test)
    assert answers.shape == (test.n_examples, test.n_exits)
    assert (answers <= np.arange(test.n_exits)).all()
    np.testing.assert_array_equal(dec.answer, answers[np.arange(test.n_examples), dec.last])
    # The rule's losses are those of the posterior answer given at each exit.
    wrong = exit_losses(cal, "label")
    cal_answers = tamer.model_.answers(cal)
    np.testing.assert_array_equal(tamer.model_.loss, np.take_along_axis(wrong, cal_answers, axis=1))


# ------------------------------------------------------------------ errors
def test_unfitted_raises():
    tamer = PathwiseTamer(feature="max_prob")
    t = synthetic_trace(30, 3, 3, seed=1)
    for call in (lambda: tamer.decide(t), lambda: tamer.decide_sweep(t), lambda: tamer.set_lam(0.5),
                 tamer.describe):
        with pytest.raises(TTamerError, match="fit"):
            call()
    assert "fitted" not in repr(tamer)


@pytest.mark.parametrize("kwargs, field", [
    (dict(feature="nope"), "feature"), (dict(feature="margin"), "feature"), (dict(loss="nope"), "loss"),
    (dict(answer="first"), "answer"), (dict(degree=0), "degree"), (dict(degree=7), "degree"),
    (dict(degree=2.5), "degree"), (dict(degree=True), "degree"), (dict(cv_folds=1), "cv_folds"),
])
def test_bad_options_raise(kwargs, field):
    t = PathwiseTamer(**kwargs)  # __init__ stores parameters only; fit validates them
    assert all(getattr(t, k) is v for k, v in kwargs.items())
    with pytest.raises(TTamerError, match=field):
        t.fit(synthetic_trace(90, 3, 3, seed=1))


def test_path_features_bad_feature():
    t = synthetic_trace(30, 3, 3, seed=1)
    with pytest.raises(TTamerError, match="feature"):
        PathFeatures.fit(t, "margin", exit_losses(t, "label"))


def test_wrong_number_of_exits_raises(fitted):
    with pytest.raises(TraceError, match="exits"):
        fitted.decide(synthetic_trace(40, 4, 3, seed=2))
    with pytest.raises(TraceError, match="exits"):
        fitted.decide_sweep(synthetic_trace(40, 6, 3, seed=2), lams=[0.5])


def test_fit_stopping_rule_shape_errors():
    rng = np.random.default_rng(0)
    x, loss, costs = rng.standard_normal((20, 3)), (rng.random((20, 3)) < 0.5) * 1.0, np.ones(3)
    with pytest.raises(TTamerError):
        fit_stopping_rule(x, loss[:, :2], costs, 0.5)
    with pytest.raises(TTamerError):
        fit_stopping_rule(x, loss[:10], costs, 0.5)
    with pytest.raises(TTamerError):
        fit_stopping_rule(x, loss, np.ones(4), 0.5)
    for lam in (-0.1, 1.5):
        with pytest.raises(TTamerError, match="lam"):
            fit_stopping_rule(x, loss, costs, lam)


# ------------------------------------------------------------------ cross-validation
@pytest.mark.parametrize("kwargs, n_cands", [
    (dict(feature="auto", loss="final", answer="last"), 2),
    (dict(feature="max_prob", loss="auto", answer="auto"), 4),
    (dict(feature="auto", loss="label", answer="auto", recall=False), 2),
])
def test_cross_validation_picks_argmax(traces, kwargs, n_cands):
    cal, test = traces
    tamer = PathwiseTamer(lam=0.9, **kwargs).fit(cal)
    cands = tamer.candidates()
    assert len(cands) == n_cands == len(tamer.cv_scores_)
    assert [c for c, _ in tamer.cv_scores_] == cands
    scores = np.array([s for _, s in tamer.cv_scores_])
    assert np.isfinite(scores).all() and ((scores >= 0) & (scores <= 1)).all()
    assert tamer.candidate_ == cands[int(np.argmax(scores))]
    m = tamer.model_
    assert m.features.feature == tamer.candidate_.feature
    assert (m.answer_models is not None) == (tamer.candidate_.answer == "posterior")
    if not tamer.recall:
        assert all(c.answer == "last" for c in cands)
    _check_decisions(tamer.decide(test), test, answer_is_last=tamer.candidate_.answer == "last")


def test_auto_needs_enough_examples():
    small = synthetic_trace(40, 3, 3, seed=3)
    with pytest.raises(TTamerError, match="cross-validation"):
        PathwiseTamer(feature="auto").fit(small)
    PathwiseTamer(feature="max_prob").fit(small)  # explicit options need no cross-validation


@pytest.mark.parametrize("lam", [-0.1, 1.5, float("nan")])
def test_bad_lam_rejected_at_fit(lam):
    with pytest.raises(TTamerError, match="lam"):
        PathwiseTamer(lam=lam).fit(synthetic_trace(90, 3, 3, seed=1))


def test_logistic_models_read_at_most_the_cap(monkeypatch):
    """Above ``LOGISTIC_MAX_EXAMPLES`` examples the posterior and learned-feature models are
    those fitted on the evenly spaced subset, and they still describe the whole trace."""
    from ttamer.earlyexit import logistic
    from ttamer.earlyexit.thresholds import evenly

    trace = synthetic_trace(n=600, n_exits=4, n_classes=3, seed=3)
    wrong = 1.0 - trace.correct.astype(float)
    monkeypatch.setattr(logistic, "LOGISTIC_MAX_EXAMPLES", 150)
    keep = evenly(trace.n_examples, 150)
    capped = logistic._posterior_models(trace, wrong)
    monkeypatch.setattr(logistic, "LOGISTIC_MAX_EXAMPLES", 10_000)
    on_subset = logistic._posterior_models(trace.subset(keep), wrong[keep])
    for (w, s), (w2, s2) in zip(capped, on_subset):
        np.testing.assert_array_equal(w, w2)
        np.testing.assert_array_equal(s, s2)
    full = logistic._posterior_models(trace, wrong)
    q_cap, a_cap = logistic.posterior_answers(trace, capped)
    q_full, a_full = logistic.posterior_answers(trace, full)
    assert np.abs(q_cap - q_full).mean() < 0.05 and (a_cap == a_full).mean() > 0.9
