"""From traces to a chain instance and T-Tamer on held-out examples (the book's chapter *Early exit on real models*)."""

from __future__ import annotations

import numpy as np
import pytest

from ttamer.earlyexit.calibration import EarlyExitTamer
from ttamer.earlyexit.chain import build_instance
from ttamer.earlyexit.crossval import lam_grid
from ttamer.earlyexit.features import StateEncoder, StateSpec, exit_losses
from ttamer.core.errors import TTamerError
from ttamer.core.policy import IndexPolicy, LastStatePolicy, chain_index_rollouts
from ttamer.earlyexit.traces import synthetic_trace


@pytest.fixture(scope="module")
def traces():
    t = synthetic_trace(900, 5, 3, seed=4, per_example_cost=True)
    return t.split(0.5, seed=0)


def test_state_spec_validation():
    with pytest.raises(TTamerError, match="K"):
        StateSpec(K=0)
    with pytest.raises(TTamerError, match="feature"):
        StateSpec(feature="nope")
    with pytest.raises(TTamerError, match="agreement"):
        StateSpec(agreement=-1)


@pytest.mark.parametrize("spec", [StateSpec(K=4, agreement=0), StateSpec(K=5, agreement=1),
                                  StateSpec(K=3, agreement=2, entropy_bins=2), StateSpec(K=4, feature="margin", agreement=0),
                                  StateSpec(K=6, feature="learned", agreement=1),
                                  StateSpec(K=3, feature="learned", agreement=1, prospect_bins=3)])
def test_encoder_states_in_range(traces, spec):
    cal, test = traces
    enc = StateEncoder.fit(spec, cal)
    for tr in (cal, test):
        s = enc.transform(tr)
        assert s.shape == (tr.n_examples, tr.n_exits) and s.dtype == np.int64
        assert (s >= 0).all() and (s < enc.n_states[None, :]).all()
    base = enc.base_states
    assert (enc.n_states[1:] == base[1:] * (int(spec.agreement) + 1)).all() and enc.n_states[0] == base[0]


def test_quantile_bins_balanced(traces):
    cal, _ = traces
    enc = StateEncoder.fit(StateSpec(K=4, agreement=0), cal)
    s = enc.transform(cal)
    for i in range(cal.n_exits):
        counts = np.bincount(s[:, i], minlength=4)
        assert counts.min() >= 0.2 * cal.n_examples  # about 25 % each


def test_agreement_state(traces):
    cal, _ = traces
    enc = StateEncoder.fit(StateSpec(K=3, agreement=1), cal)
    s = enc.transform(cal)
    agree = cal.predictions[:, 1:] == cal.predictions[:, :-1]
    np.testing.assert_array_equal(s[:, 1:] >= enc.base_states[1:], agree)


def test_build_instance_smoothing_formula():
    # 2 exits, K = 2; state 1 of exit 1 is never seen (empty bin).
    states = np.array([[0, 0], [0, 0], [1, 0], [1, 0]])
    losses = np.array([[1.0, 0.0], [0.0, 0.0], [1.0, 1.0], [1.0, 0.0]])
    a = 2.0
    inst = build_instance(states, losses, [2, 2], np.array([1.0, 2.0]), smoothing=a)
    e0 = losses[:, 0].mean()
    np.testing.assert_allclose(inst.losses[0], [(1 + a * e0) / (2 + a), (2 + a * e0) / (2 + a)])
    e1 = losses[:, 1].mean()
    np.testing.assert_allclose(inst.losses[1], [(1 + a * e1) / (4 + a), e1])  # empty bin -> prior mean
    np.testing.assert_allclose(inst.transitions[0][0], [(2 + a / 2) / (4 + a)] * 2)
    np.testing.assert_allclose(inst.transitions[1], [[1.0, 0.0], [1.0, 0.0]])
    np.testing.assert_allclose(inst.costs, [1.0, 2.0])
    with pytest.raises(TTamerError, match="smoothing"):
        build_instance(states, losses, [2, 2], np.ones(2), smoothing=0.0)


@pytest.mark.parametrize("loss", ["label", "final"])
def test_fitted_instance_is_a_valid_chain(traces, loss):
    cal, _ = traces
    m = EarlyExitTamer(lam=0.9, K=6, feature="max_prob", agreement=1, loss=loss).fit(cal)
    inst = m.instance_
    assert inst.is_chain and inst.n == cal.n_exits and inst.fallback is None
    for P in inst.transitions:
        np.testing.assert_allclose(P.sum(axis=1), 1.0, atol=1e-12)
        assert (P >= 0).all()
    for ell in inst.losses:
        assert ((ell >= 0) & (ell <= 1)).all()
    np.testing.assert_allclose(inst.costs.sum(), 1.0)  # normalised to the full model
    np.testing.assert_allclose(inst.costs, cal.mean_cost / cal.mean_cost.sum())
    if loss == "final":
        np.testing.assert_allclose(inst.losses[-1], 0.0)
    # the loss of a state is the smoothed calibration error rate
    s = m.states(cal)
    err = exit_losses(cal, loss)
    k = s[:, 2] == 0
    a = m.smoothing_
    np.testing.assert_allclose(inst.losses[2][0], (err[k, 2].sum() + a * err[:, 2].mean()) / (k.sum() + a))


def _reference_recall(policy: IndexPolicy, states: np.ndarray, lam: float, losses) -> tuple[np.ndarray, np.ndarray]:
    """Slow per-example loop: the chain threshold rule of the chapter *Optimality of the index strategy with recall* (continue iff X > σ_{i+1}(s_i))."""
    n, L = states.shape
    answer, last = np.zeros(n, int), np.zeros(n, int)
    for e in range(n):
        i = 0
        x = lam * losses[0][states[e, 0]]
        while i + 1 < L and policy.sigma[i + 1][states[e, i]] < x:
            i += 1
            x = min(x, lam * losses[i][states[e, i]])
        seen = [losses[j][states[e, j]] for j in range(i + 1)]
        answer[e], last[e] = int(np.argmin(seen)), i
    return answer, last


def _reference_norecall(policy: LastStatePolicy, states: np.ndarray) -> np.ndarray:
    n = len(states)
    last = np.zeros(n, int)
    for e in range(n):
        v, nxt = -1, int(policy.start[0])
        while nxt >= 0:
            v = nxt
            nxt = int(policy.table[v][states[e, v], 0])
        last[e] = v
    return last


@pytest.mark.parametrize("lam", [0.3, 0.7, 0.9, 0.97, 0.995])
def test_recall_rollout_matches_reference_loop(traces, lam):
    cal, test = traces
    m = EarlyExitTamer(lam=lam, K=5, feature="max_prob", agreement=1, answer="index").fit(cal)
    assert isinstance(m.solution_.policy, IndexPolicy)
    d = m.decide(test)
    s = m.states(test)
    answer, last = _reference_recall(m.solution_.policy, s, lam, m.instance_.losses)
    np.testing.assert_array_equal(d.last, last)
    np.testing.assert_array_equal(d.answer, answer)
    cum = np.cumsum(test.cost, axis=1)
    np.testing.assert_allclose(d.cost, cum[np.arange(test.n_examples), last])


@pytest.mark.parametrize("lam", [0.7, 0.97])
def test_pairwise_answer_matches_reference_loop(traces, lam):
    """Same stops as the index rule; the answer minimises the re-estimated
    r_v = (e_{v,last}(s_v, s_last) + α ℓ_v(s_v)) / (n_{v,last}(s_v, s_last) + α), ties to the later exit."""
    cal, test = traces
    state = dict(K=4, feature="max_prob", agreement=1)
    idx = EarlyExitTamer(lam=lam, **state, loss="label", answer="index").fit(cal)
    pw = EarlyExitTamer(lam=lam, **state, loss="label").fit(cal)
    assert pw.answer_ == "pairwise" and any(pw.answer_table_.kept.values())
    d_idx, d_pw = idx.decide(test), pw.decide(test)
    np.testing.assert_array_equal(d_idx.last, d_pw.last)
    sc, st = pw.states(cal), pw.states(test)
    wrong = exit_losses(cal, "label")
    ell, a = pw.instance_.losses, pw.smoothing_
    for e in range(0, test.n_examples, 7):
        j = d_pw.last[e]
        r = []
        for v in range(j + 1):
            if v == j or not pw.answer_table_.kept[(v, j)]:
                r.append(ell[v][st[e, v]])
                continue
            m = (sc[:, v] == st[e, v]) & (sc[:, j] == st[e, j])
            r.append((wrong[m, v].sum() + a * ell[v][st[e, v]]) / (m.sum() + a))
        r = np.array(r)
        assert d_pw.answer[e] == np.flatnonzero(r <= r.min() + 1e-12).max()


@pytest.mark.parametrize("lam", [0.5, 0.9, 0.99])
def test_norecall_rollout_matches_reference_loop(traces, lam):
    cal, test = traces
    m = EarlyExitTamer(lam=lam, K=4, feature="max_prob", agreement=0, recall=False).fit(cal)
    assert isinstance(m.solution_.policy, LastStatePolicy)
    d = m.decide(test)
    last = _reference_norecall(m.solution_.policy, m.states(test))
    np.testing.assert_array_equal(d.last, last)
    np.testing.assert_array_equal(d.answer, last)


def test_sweep_matches_single_decisions_and_refines(traces):
    cal, test = traces
    m = EarlyExitTamer(K=4, feature="max_prob", agreement=1).fit(cal)
    lams = lam_grid(8)
    sw = m.decide_sweep(test, lams, refine=False)
    assert sw.answer.shape == (8, test.n_examples)
    one = m.set_lam(lams[5]).decide(test)
    np.testing.assert_array_equal(sw.answer[5], one.answer)
    fine = m.decide_sweep(test, lams, max_gap=0.02)
    assert len(fine) > 8 and np.all(np.diff(fine.params) > 0)
    costs = fine.cost.mean(axis=1) / test.full_cost.mean()
    # mean cost grows with λ (more weight on the loss), up to ties
    assert costs[-1] > costs[0]


@pytest.mark.parametrize("answer", ["index", "pairwise"])
def test_policies_run_together_as_each_alone(traces, monkeypatch, answer):
    """The λ sweep rolls the index policies out together, in groups bounded by ROLLOUT_CELLS:
    every decision equals the policy's own step-by-step rollout (:func:`ttamer.rollout`)."""
    import ttamer
    from ttamer.earlyexit import chain
    from ttamer.solvers.solve import solve

    cal, test = traces
    m = EarlyExitTamer(K=4, feature="max_prob", agreement=1, loss="label", answer=answer).fit(cal)
    s = m.states(test)
    sols = [solve(m.instance_, lam, recall=True) for lam in lam_grid(7)]
    monkeypatch.setattr(chain, "ROLLOUT_CELLS", 3 * s.size)  # groups of 3, 3 and 1 policies
    together = chain.run_policies(sols, s, test, answer_table=m.answer_table_)
    assert len(together) == len(sols)
    for sol, got in zip(sols, together):
        ro = ttamer.rollout(sol.policy, len(s), lambda rows, nodes, _s, _l: s[rows, nodes])
        np.testing.assert_array_equal(got.last, ro.last)
        want = sol.policy.answer(ro.states, ro.last) if m.answer_table_ is None else \
            m.answer_table_.answer(ro.states, ro.last)
        np.testing.assert_array_equal(got.answer, want)
        np.testing.assert_array_equal(got.cost, test.cumulative_cost[np.arange(test.n_examples), ro.last])
    other = solve(EarlyExitTamer(K=3, feature="max_prob").fit(cal).instance_, 0.9, recall=True).policy
    with pytest.raises(TTamerError, match="one chain instance"):
        chain_index_rollouts([sols[0].policy, other], s)


def test_auto_selection_by_cross_validation(traces):
    cal, test = traces
    m = EarlyExitTamer(K="auto", feature="max_prob", agreement="auto", loss="auto", cv_lams=lam_grid(6)).fit(cal)
    assert m.spec_.is_concrete and m.loss_ in ("label", "final") and len(m.cv_scores_) >= 8
    best = max(sc for _, sc in m.cv_scores_)
    chosen = [sc for c, sc in m.cv_scores_ if c.spec == m.spec_ and c.smoothing == m.smoothing_ and c.loss == m.loss_]
    assert chosen == [best]
    assert m.decide(test).answer.shape == (test.n_examples,)
    fixed = EarlyExitTamer(K=4, feature="max_prob", agreement=0, loss="label").fit(cal)
    assert fixed.cv_scores_ == []


def test_unfitted_and_bad_options(traces):
    with pytest.raises(TTamerError, match="not fitted"):
        EarlyExitTamer().decide(traces[1])
    with pytest.raises(TTamerError, match="loss"):  # validated in fit, not in __init__
        EarlyExitTamer(loss="nope").fit(traces[0])
    with pytest.raises(TTamerError, match="smoothing"):
        EarlyExitTamer(smoothing=-1.0).fit(traces[0])


def test_auto_needs_enough_calibration_examples():
    tiny = synthetic_trace(30, 3, 2, seed=0)
    with pytest.raises(TTamerError, match="too few"):
        EarlyExitTamer().fit(tiny)
    m = EarlyExitTamer(K=2, feature="max_prob", agreement=0, loss="label").fit(tiny)
    assert m.decide(tiny).answer.shape == (30,)


def test_isotonic_and_monotone_losses():
    from ttamer.earlyexit.isotonic import isotonic, monotone_losses

    y = np.array([0.5, 0.6, 0.3, 0.35, 0.1])
    w = np.array([1.0, 1.0, 2.0, 2.0, 1.0])
    fit = isotonic(y, w)
    np.testing.assert_allclose(fit, [0.55, 0.55, 0.325, 0.325, 0.1])
    assert np.all(np.diff(fit) <= 0)
    np.testing.assert_allclose((fit * w).sum(), (y * w).sum())  # PAV preserves the weighted mean
    # layout (A=2 agreement levels, F=3 bins, R=1): each agreement slice is fitted separately
    ell = np.array([0.2, 0.3, 0.1, 0.9, 0.5, 0.6])
    out = monotone_losses(ell, np.ones(6), (2, 3, 1), decreasing=True)
    np.testing.assert_allclose(out, [0.25, 0.25, 0.1, 0.9, 0.55, 0.55])
    up = monotone_losses(np.array([0.3, 0.2, 0.4]), np.ones(3), (1, 3, 1), decreasing=False)
    np.testing.assert_allclose(up, [0.25, 0.25, 0.4])


def test_monotone_option_gives_monotone_instance(traces):
    cal, test = traces
    m = EarlyExitTamer(K=6, feature="max_prob", agreement=1, loss="label", monotone=True).fit(cal)
    for i, ell in enumerate(m.instance_.losses):
        a, f, r = m.encoder_.layout(i)
        assert np.all(np.diff(ell.reshape(a, f, r), axis=1) <= 1e-12)
    assert "monotone" in m.describe()
    with pytest.raises(TTamerError, match="monotone"):
        EarlyExitTamer(monotone="yes").fit(cal)


@pytest.mark.parametrize("spec", [StateSpec(K=5, agreement=2, entropy_bins=2),
                                  StateSpec(K=4, feature="learned", agreement=1, prospect_bins=3),
                                  StateSpec(K=4, feature="posterior", agreement=1)])
def test_states_are_causal(traces, spec):
    """The state of exit i depends only on exits 0..i (what is observable when it has run)."""
    cal, test = traces
    enc = StateEncoder.fit(spec, cal)
    s = enc.transform(test)
    rng = np.random.default_rng(0)
    for i in range(test.n_exits - 1):
        p = test.probs.copy()
        p[:, i + 1:] = rng.dirichlet(np.ones(test.n_classes), size=(test.n_examples, test.n_exits - i - 1))
        t2 = type(test)(p.astype(np.float32), test.labels, test.cost, test.meta)
        np.testing.assert_array_equal(enc.transform(t2)[:, : i + 1], s[:, : i + 1])
        np.testing.assert_array_equal(enc.answers(t2)[:, : i + 1], enc.answers(test)[:, : i + 1])


def test_posterior_answers_are_consulted_exits(traces):
    cal, test = traces
    m = EarlyExitTamer(lam=0.9, K=4, feature="posterior", agreement=0, loss="label").fit(cal)
    a = m.encoder_.answers(test)
    assert np.all(a <= np.arange(test.n_exits)[None, :]) and np.all(a >= 0)
    d = m.decide(test)
    assert np.all(d.answer <= d.last)


def test_pair_feature_stream_is_pair_features_exit_by_exit():
    """The streamed features (running sum of the softmaxes) are, to the last bit, those of
    pair_features computed afresh at each exit."""
    from ttamer.earlyexit.logistic import pair_feature_stream, pair_features

    tr = synthetic_trace(200, 7, 5, seed=4)
    streamed = list(pair_feature_stream(tr))
    assert len(streamed) == tr.n_exits
    for i, feats in enumerate(streamed):
        assert np.array_equal(feats, pair_features(tr, i))


def test_pair_tables_counted_together_equal_each_pair_alone():
    """The pairwise rule's tables of one exit with every later exit, from one count, equal each
    pair's own table to the last bit (later exits with fewer states leave unread columns)."""
    from ttamer.earlyexit.pairwise import _pair_table, _pair_tables

    rng = np.random.default_rng(3)
    n, kv, ks = 500, 4, [3, 5, 2]
    sv = rng.integers(0, kv, n)
    later = np.stack([rng.integers(0, k, n) for k in ks], axis=1)
    wrong = (rng.random(n) < 0.3).astype(float)
    prior = rng.random(kv)
    together = _pair_tables(sv, later, wrong, prior, kv, max(ks), 2.0)
    for j, k in enumerate(ks):
        np.testing.assert_array_equal(together[j][:, :k], _pair_table(sv, later[:, j], wrong, prior, kv, k, 2.0))


def test_lambda_sweep_holds_at_most_max_sweep_cells_decisions(traces, monkeypatch):
    """On N examples a λ sweep keeps at most MAX_SWEEP_CELLS / N values, the grid thinned
    evenly with its ends, refinement included: the decisions stay bounded on large traces."""
    from ttamer.earlyexit import crossval

    cal, test = traces
    m = EarlyExitTamer(K=4, feature="max_prob", agreement=1).fit(cal)
    lams = lam_grid(12)
    assert len(m.decide_sweep(test, lams)) > 12
    monkeypatch.setattr(crossval, "MAX_SWEEP_CELLS", 5 * test.n_examples)
    for refine in (False, True):
        sw = m.decide_sweep(test, lams, refine=refine)
        assert len(sw) == 5 and sw.params[0] == lams[0] and sw.params[-1] == lams[-1]
