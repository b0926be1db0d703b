"""Hostile inputs to the serving runtime (round 11): a custom rule's answers, the classes a
cascade's models give, the rows ``prepare`` returns, labels of a served run, errors of a user's
model parts, bounded timing rounds and clear messages for malformed rules and arguments."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from ttamer.core.errors import TraceError, TTamerError  # noqa: E402
from ttamer.earlyexit.cascade import CascadeTamer  # noqa: E402
from ttamer.earlyexit.traces import Trace  # noqa: E402
from ttamer.serving import (CascadeServer, EarlyExitServer, ForcedRule, MultiExitModel,  # noqa: E402
                            cascade_state_fn, compare_latency, concat_results, max_prob_rule, state_cost, threshold_rule)
from ttamer.serving.rules import begin_run  # noqa: E402
from ttamer.serving.runtime import MAX_REPEATS  # noqa: E402

torch.set_num_threads(1)
D, C, L = 6, 3, 3


def _model(prepare=None, head=None):
    g = torch.Generator().manual_seed(0)
    blocks = [torch.nn.Linear(D, D) for _ in range(L)]
    heads = [torch.nn.Linear(D, C) for _ in range(L)]
    for m in blocks + heads:
        for p in m.parameters():
            p.data = torch.randn(p.shape, generator=g) * 0.5
    if prepare is None and head is None:
        return MultiExitModel.from_modules(blocks, heads)
    prep = prepare or (lambda i, d: (torch.as_tensor(np.asarray(i, np.float32)), None))
    return MultiExitModel([lambda h, c, b=b: b(h) for b in blocks],
                          [head or (lambda h, c, hd=hd: hd(h)) for hd in heads], prep)


X = np.random.default_rng(0).normal(size=(8, D)).astype(np.float32)


class _Rule:
    """A user's rule: stops every row at exit 0 (``x = 1 >= 0.5``) and answers ``a``."""

    n_exits = L
    thresholds = np.array([0.5, 0.5, -np.inf])

    def __init__(self, a):
        self.a = a

    def step(self, i, probs):
        a = self.a(len(probs)) if callable(self.a) else np.full(len(probs), self.a)
        return np.ones(len(probs)), a

    def stops(self, i, x):
        return x >= self.thresholds[i]


# --------------------------------------------------------------------------- A2: a rule's answers
@pytest.mark.parametrize("a", [-1, 2, 7])
@pytest.mark.parametrize("bs", [1, 4])
def test_rule_answer_outside_consulted_exits_refused(a, bs):
    with pytest.raises(TTamerError, match=f"the rule .*returned exit {a} for row 0, which consulted exits \\[0\\]"):
        EarlyExitServer(_model(), _Rule(a)).serve(X, bs)
    for good in (0, lambda n: [0] * n):  # valid answers (an array, a list of ints) served as before
        res = EarlyExitServer(_model(), _Rule(good)).serve(X, bs)
        assert (res.answer == 0).all() and (res.last == 0).all()
        np.testing.assert_array_equal(res.prediction, res.probs[:, 0].argmax(1))


@pytest.mark.parametrize("bad", [lambda n: np.full(n, 0.0), lambda n: 0, lambda n: np.zeros(n + 1, dtype=int),
                                 lambda n: np.zeros(n, dtype=bool)])
@pytest.mark.parametrize("bs", [1, 4])
def test_rule_answer_not_integer_per_row_refused(bad, bs):
    with pytest.raises(TTamerError, match="must give one integer exit per row after exit 0"):
        EarlyExitServer(_model(), _Rule(bad)).serve(X, bs)


# --------------------------------------------------------------------------- A3: cascade classes
def _cascade(n_classes_model0=C):
    rng = np.random.default_rng(3)
    g = torch.Generator().manual_seed(2)
    W = [torch.randn(D, C, generator=g) * s for s in (0.3, 0.8, 1.5)]
    models = [lambda xb, dev, w=w: torch.as_tensor(np.asarray(xb, np.float32)) @ w for w in W]
    x = rng.normal(size=(200, D)).astype(np.float32)
    with torch.inference_mode():
        probs = np.stack([torch.softmax(m(x, "cpu"), -1).numpy() for m in models], 1)
    y = probs[:, 2].argmax(1)
    ct = Trace.build(probs, y, [0.1, 0.4, 1.0], {"model": "lin", "dataset": "syn"}, parents=[None, 0, 0])
    tamer = CascadeTamer(lam=0.9, K=3).fit(ct)
    if n_classes_model0 != C:
        W5 = torch.randn(D, n_classes_model0, generator=g)
        models[0] = lambda xb, dev: torch.as_tensor(np.asarray(xb, np.float32)) @ W5
    return models, tamer, x


def test_cascade_classes_checked_against_tamer():
    models, tamer, x = _cascade(5)
    server = CascadeServer(models, tamer.solution_.policy, cascade_state_fn(tamer))
    for bs in (1, 4):
        with pytest.raises(TTamerError, match="model 0 .*5 classes, but the CascadeTamer was fitted on a trace of 3"):
            server.serve(x[:8], bs)


# --------------------------------------------------------------------------- A4: prepare's rows
@pytest.mark.parametrize("prep", [lambda i, d: (torch.cat([torch.as_tensor(i)] * 2), None),
                                  lambda i, d: (torch.as_tensor(i)[:1], None),
                                  lambda i, d: (torch.zeros(0, D), None)])
def test_policy_path_prepare_rows_checked(prep):
    pol, fn = threshold_rule(L, 2.0)
    server = EarlyExitServer(_model(prepare=prep), pol, fn, compile=False)
    with pytest.raises(TTamerError, match="prepare returned hidden states of \\d+ rows for a batch of 4 inputs"):
        server.serve(X, 4)


# --------------------------------------------------------------------------- A10: accuracy labels
def test_accuracy_refuses_labels_outside_classes():
    res = EarlyExitServer(_model(), max_prob_rule(L, 0.5)).serve(X, 4)
    with pytest.raises(TraceError, match="example 0 has label 99, outside 0..2 \\(C = 3 classes\\)"):
        res.accuracy(np.full(8, 99))
    assert res.accuracy(res.prediction) == 1.0


# --------------------------------------------------------------------------- B2: errors of model parts
def test_cascade_tuple_inputs_served_like_a_list():
    models, tamer, x = _cascade()
    server = CascadeServer(models, tamer.solution_.policy, cascade_state_fn(tamer))
    a, b = server.serve(tuple(x[:8]), 4), server.serve(list(x[:8]), 4)
    np.testing.assert_array_equal(a.answer, b.answer)
    np.testing.assert_array_equal(a.prediction, b.prediction)


def test_head_raising_keyerror_is_named():
    model = _model(head=lambda h, c: {}["logits"])
    for bs in (1, 4):
        with pytest.raises(TTamerError, match="exit 0's head .*KeyError: 'logits'"):
            EarlyExitServer(model, max_prob_rule(L, 0.5)).serve(X, bs)
    for exc in (KeyboardInterrupt, MemoryError):  # never wrapped

        def head(h, c, exc=exc):
            raise exc()
        with pytest.raises(exc):
            EarlyExitServer(_model(head=head), max_prob_rule(L, 0.5)).serve(X, 4)


def test_cascade_model_raising_keyerror_is_named():
    models, tamer, x = _cascade()
    models[0] = lambda xb, dev: {}["logits"]
    server = CascadeServer(models, tamer.solution_.policy, cascade_state_fn(tamer))
    with pytest.raises(TTamerError, match="model 0 failed on the first batch.*KeyError"):
        server.serve(x[:8], 4)


# --------------------------------------------------------------------------- C: bounded repeats
def test_repeats_bounded():
    server = EarlyExitServer(_model(), max_prob_rule(L, 0.5))
    big = MAX_REPEATS + 1
    calls = [lambda: compare_latency({"a": server.serve}, X[:4], repeats=big),
             lambda: compare_latency({"a": server.serve}, X[:4], repeats=10**12),
             lambda: server.cost_profile(X[:4], repeats=big),
             lambda: server.cost_profile(X[:4], warmup=big),
             lambda: server.rows_cost(X[:4], 2, [1, 2], repeats=big),
             lambda: server.state_cost(X[:4], [None], 2, repeats=big),
             lambda: server.gather_cost(X[:4], 2, [1], repeats=big),
             lambda: server.run_all(X[:4], np.zeros(4, int), 2, warmup=big)]
    for call in calls:
        with pytest.raises(TTamerError, match=f"must be <= {MAX_REPEATS} \\(MAX_REPEATS"):
            call()
    tr = server.run_all(X, np.zeros(8, int), 4)
    with pytest.raises(TTamerError, match="repeats must be <= "):
        state_cost([None], tr, 4, repeats=big)
    assert server.cost_profile(X[:4], repeats=1).shape == (L,)  # within the bound, as before


# --------------------------------------------------------------------------- D: clear messages
@pytest.mark.parametrize("models", [None, (m for m in []), 3])
def test_cascade_server_models_named(models):
    _, tamer, _ = _cascade()
    with pytest.raises(TTamerError, match="models must be a non-empty list of callables"):
        CascadeServer(models, tamer.solution_.policy, cascade_state_fn(tamer))


@pytest.mark.parametrize("attr,value,msg", [("thresholds", "abc", "the rule's thresholds must be"),
                                            ("thresholds", [0.5, np.nan, -np.inf], "the rule's thresholds\\[1\\]"),
                                            ("thresholds", [0.5, 0.5], "the rule.s thresholds must hold one number "
                                                                       "per exit \\(3\\)"),
                                            ("n_exits", None, "the rule's n_exits must be an integer"),
                                            ("n_exits", "3", "the rule's n_exits must be an integer"),
                                            ("n_exits", 3.0, "the rule's n_exits must be an integer")])
def test_custom_rule_fields_checked(attr, value, msg):
    rule = _Rule(0)
    setattr(rule, attr, value)
    with pytest.raises(TTamerError, match=f"EarlyExitServer: {msg}"):
        EarlyExitServer(_model(), rule)
    with pytest.raises(TTamerError, match=f"state_cost: {msg}"):
        EarlyExitServer(_model(), max_prob_rule(L, 0.5)).state_cost(X[:4], [rule], 2)


def test_forced_rule_and_history_run_n_exits_not_converted():
    rule = _Rule(0)
    rule.n_exits = "3"
    with pytest.raises(TTamerError, match="ForcedRule: the rule's n_exits must be an integer, got '3'"):
        ForcedRule(rule)
    with pytest.raises(TTamerError, match="the rule's n_exits must be an integer, got '3'"):
        begin_run(rule, 2)


def test_concat_results_generator():
    server = EarlyExitServer(_model(), max_prob_rule(L, 0.5))
    parts = [server.serve(X[:4], 4), server.serve(X[4:], 4)]
    got = concat_results(p for p in parts)
    np.testing.assert_array_equal(got.answer, concat_results(parts).answer)
    assert len(got.answer) == 8
    with pytest.raises(TTamerError, match="concat_results joins a list of ServeResult"):
        concat_results(parts[0])
    with pytest.raises(TTamerError, match="concat_results joins a list of ServeResult"):
        concat_results(None)



@pytest.mark.parametrize("rows", [[1.5], [0], [9], ["1"]])
def test_run_all_says_the_range_of_profile_rows(rows):
    """A profile row count that is not an integer in 1..batch_size is refused with that range
    (the message used to give int64's least value as the bound)."""
    server = EarlyExitServer(_model(), max_prob_rule(L, 0.5))
    with pytest.raises(TTamerError, match=r"profile_rows \(row counts up to batch_size\) must be .*integers in 1\.\.8"):
        server.run_all(X, np.zeros(len(X), dtype=np.int64), batch_size=8, profile_rows=rows)
