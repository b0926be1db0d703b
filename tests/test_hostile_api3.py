"""Third pass of hostile inputs to the Python API of early exit, serving and workloads: every
failure one clear TTamerError line naming what is wrong, never a raw exception, a hang or a
silent coercion."""

import signal

import numpy as np
import pytest

from ttamer.core.errors import TraceError, TTamerError
from ttamer.earlyexit.calibration import EarlyExitTamer
from ttamer.earlyexit.cascade import CascadeTamer
from ttamer.earlyexit.evaluation import evaluate_trace, fit_tamers
from ttamer.earlyexit.features import StateSpec
from ttamer.earlyexit.pathwise import PathwiseTamer
from ttamer.earlyexit.skips import SkipTamer
from ttamer.earlyexit.tamer import ThresholdTamer
from ttamer.earlyexit.traces import Trace, synthetic_trace

FIXED_CHAIN = dict(K=4, feature="max_prob", agreement=0, loss="label", smoothing=2.0)
FIXED_PATH = dict(feature="max_prob", loss="label")


def _one_line(exc_info, *needles):
    text = str(exc_info.value)
    assert "\n" not in text
    for needle in needles:
        assert needle in text, text


@pytest.fixture(scope="module")
def trace():
    return synthetic_trace(120, 3, 3)


@pytest.fixture()
def deadline():
    """Turn a hang into a failure (10 s)."""
    def boom(*_):
        raise AssertionError("hung")
    old = signal.signal(signal.SIGALRM, boom)
    signal.alarm(10)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)


# ------------------------------------------------------------------------------ estimators
@pytest.mark.parametrize("make", [lambda: EarlyExitTamer(**FIXED_CHAIN), lambda: PathwiseTamer(**FIXED_PATH)])
def test_refined_sweep_over_lambda_zero_terminates(trace, deadline, make):
    """λ = 0 has logit -inf: bisecting next to it made no progress and looped forever."""
    d = make().fit(trace).decide_sweep(trace, [0.0, 1.0])
    assert d.params[0] == 0.0 and d.params[-1] == 1.0 and len(d.params) > 2


@pytest.mark.parametrize("cls,kw", [(ThresholdTamer, {}), (EarlyExitTamer, FIXED_CHAIN), (PathwiseTamer, FIXED_PATH)])
def test_chain_estimators_refuse_a_tree_trace(trace, cls, kw):
    """A tree was read as a chain: exits consulted in order but paid along the tree's paths."""
    tree = Trace.build(trace.probs, trace.labels, trace.cost, parents=[-1, 0, 0])
    with pytest.raises(TraceError) as e:
        cls(**kw).fit(tree)
    _one_line(e, "parents", "tree", "CascadeTamer")
    fitted = cls(**kw).fit(trace)
    with pytest.raises(TraceError) as e:
        fitted.decide(tree)
    _one_line(e, "parents")
    with pytest.raises(TraceError, match="parents"):
        evaluate_trace(tree, n_boot=0, with_chain=False)


def test_chain_cross_validation_when_exit_zero_costs_everything(trace):
    """Costs [1, 0, 0]: the cross-validation's cost range was [1, 1] (an internal error)."""
    t = Trace.build(trace.probs, trace.labels, [1.0, 0.0, 0.0])
    EarlyExitTamer(K=4, feature="max_prob", agreement=0, smoothing=2.0).fit(t)
    PathwiseTamer(feature="max_prob").fit(t)


@pytest.mark.parametrize("kw,name", [(dict(K=10**24), "K"), (dict(K=np.array([1, 2])), "K"),
                                     (dict(agreement=10**24), "agreement"), (dict(agreement=np.array([1, 2])), "agreement"),
                                     (dict(entropy_bins=10**24), "entropy_bins"),
                                     (dict(feature=np.array([1, 2])), "feature")])
def test_state_spec_bounds_and_types(kw, name):
    with pytest.raises(TTamerError) as e:
        StateSpec(**kw)
    _one_line(e, name)


def test_chain_state_count_is_bounded_before_fitting(trace):
    with pytest.raises(TTamerError) as e:
        EarlyExitTamer(K=1000, entropy_bins=1000, feature="max_prob", agreement=0, loss="label").fit(trace)
    _one_line(e, "MAX_STATES")


@pytest.mark.parametrize("cls,kw,name,value", [
    (ThresholdTamer, {}, "target", np.array([1, 2])),
    (EarlyExitTamer, FIXED_CHAIN, "loss", np.array([1, 2])),
    (EarlyExitTamer, FIXED_CHAIN, "smoothing", 10**400),
    (EarlyExitTamer, FIXED_CHAIN, "smoothing", np.array([1, 2])),
    (EarlyExitTamer, FIXED_CHAIN, "monotone", np.array([1, 2])),
    (EarlyExitTamer, FIXED_CHAIN, "target", np.array([1, 2])),
    (EarlyExitTamer, FIXED_CHAIN, "cv_lams", ["0.5"]),
    (PathwiseTamer, FIXED_PATH, "target", np.array([1, 2])),
    (PathwiseTamer, FIXED_PATH, "cv_lams", [float("nan")]),
    (SkipTamer, {}, "regions", np.array([1, 2])),
    (CascadeTamer, {}, "smoothing", 10**400),
])
def test_estimator_parameters_are_checked_by_name(trace, cls, kw, name, value):
    with pytest.raises(TTamerError) as e:
        cls(**dict(kw, **{name: value})).fit(trace)
    _one_line(e, name)


@pytest.mark.parametrize("cls", [EarlyExitTamer, PathwiseTamer])
def test_repr_never_raises(cls):
    assert "'x'" in repr(cls(lam="x"))


@pytest.mark.parametrize("make", [lambda: EarlyExitTamer(**FIXED_CHAIN), lambda: PathwiseTamer(**FIXED_PATH)])
@pytest.mark.parametrize("kw,name", [(dict(lams=["0.5"]), "lams"), (dict(lams=[[0.1, 0.2]]), "lams"),
                                     (dict(lams=[]), "lams"), (dict(refine="yes"), "refine"),
                                     (dict(max_gap=-1.0), "max_gap"), (dict(max_points=1.5), "max_points")])
def test_decide_sweep_options(trace, make, kw, name):
    fitted = make().fit(trace)
    with pytest.raises(TTamerError) as e:
        fitted.decide_sweep(trace, **kw)
    _one_line(e, name)


def test_threshold_tamer_budget_index_and_rules(trace):
    t = ThresholdTamer().fit(trace)
    for index in (-1, 1.5, "0", None, len(t.sweep_cost_) + 1):
        with pytest.raises(TTamerError) as e:
            t.decide_budget(trace, index)
        _one_line(e, "index")
    assert (t.decide_budget(trace, len(t.sweep_cost_)).last == 2).all()
    for taus in ("ab", [[0.5, "a"]], [[0.5, [1]]], [[True, False]], np.zeros((0, 2)), np.zeros((10**6, 2))):
        with pytest.raises(TTamerError) as e:
            t.decide_rules(trace, taus)
        _one_line(e, "taus")
    assert t.decide_rules(trace, [[np.inf, -np.inf]]).answer.shape == (1, trace.n_examples)


@pytest.mark.parametrize("make", [lambda: SkipTamer(), lambda: CascadeTamer()])
def test_tree_and_skip_estimators_refuse_another_number_of_classes(trace, make):
    fitted = make().fit(trace)
    other = synthetic_trace(50, 3, 5)
    with pytest.raises(TTamerError) as e:
        fitted.decide_sweep(other)
    _one_line(e, "classes")


def test_cascade_sweep_size_is_bounded():
    t = synthetic_trace(12_000, 2, 2)
    with pytest.raises(TTamerError) as e:
        CascadeTamer().fit(t).decide_sweep(t, np.linspace(0, 1, 2000))
    _one_line(e, "MAX_SWEEP_CELLS")


# ------------------------------------------------------------------------------ evaluation
@pytest.mark.parametrize("kw,name", [
    (dict(band_points=0), "band_points"), (dict(band_points=2.5), "band_points"), (dict(band_points=10**12), "band_points"),
    (dict(cost_range=(1.0, 0.5)), "cost_range"), (dict(cost_range=(0.1,)), "cost_range"),
    (dict(cost_range=("0.1", 1)), "cost_range"), (dict(cost_range=(0.1, 0.5, 1)), "cost_range"),
    (dict(lams=["0.5"]), "lams"), (dict(lams=[0.1, [0.2]]), "lams"), (dict(lams=[True, False]), "lams"),
    (dict(tamer={"K": 0}), "K"), (dict(tamer={"smoothing": float("nan")}), "smoothing"),
])
def test_evaluate_trace_options_checked_before_any_work(trace, monkeypatch, kw, name):
    def no_fit(*a, **k):
        raise AssertionError("fitted before the options were checked")
    monkeypatch.setattr(ThresholdTamer, "fit", no_fit)
    with pytest.raises(TTamerError) as e:
        evaluate_trace(trace, n_boot=0, with_chain=False, estimation="thresholds", **kw)
    _one_line(e, name)


def test_bad_chain_options_are_an_error_not_a_skipped_chain(trace):
    """With with_chain=True an invalid option was swallowed into info["chain"]["skipped"]."""
    with pytest.raises(TTamerError, match="smoothing"):
        fit_tamers(trace, tamer={"smoothing": -1.0}, with_chain=True)


# ------------------------------------------------------------------------------ serving
torch = pytest.importorskip("torch")
D, C, L = 6, 3, 3


def _model(bad=None, at=1):
    from ttamer.serving.adapters import MultiExitModel

    lin = torch.nn.Linear(D, C).double()
    heads = [lambda h, ctx: lin(h)] * L
    if bad is not None:
        heads = list(heads)
        heads[at] = bad
    return MultiExitModel([lambda h, ctx: h] * L, heads,
                          lambda x, d: (torch.as_tensor(np.asarray(x), dtype=torch.float64), None))


HEADS = {"nan": (lambda h, c: torch.full((h.shape[0], C), float("nan"), dtype=torch.float64), "NaN or infinite"),
         "classes": (lambda h, c: torch.zeros((h.shape[0], C + 2), dtype=torch.float64), "(4, 5)"),
         "rows": (lambda h, c: torch.zeros((h.shape[0] + 1, C), dtype=torch.float64), "(5, 3)"),
         "numpy": (lambda h, c: np.zeros((h.shape[0], C)), "got a ndarray"),
         "one class": (lambda h, c: torch.zeros((h.shape[0], 1), dtype=torch.float64), "(4, 1)")}


@pytest.mark.parametrize("head", list(HEADS))
@pytest.mark.parametrize("compile", [True, False])
def test_heads_returning_other_than_finite_logits_are_named(head, compile):
    from ttamer.serving.rules import threshold_rule
    from ttamer.serving.runtime import EarlyExitServer

    bad, needle = HEADS[head]
    srv = EarlyExitServer(_model(bad), *threshold_rule(L, 0.9), compile=compile)
    x = np.random.default_rng(0).normal(size=(8, D))
    with pytest.raises(TTamerError) as e:
        srv.serve(x, batch_size=4)
    _one_line(e, "exit 1", needle)
    if head != "classes":
        with pytest.raises(TTamerError, match="exit 1"):
            srv.serve(x, batch_size=1)


def test_serving_inputs_and_run_all_options():
    from ttamer.serving.rules import max_prob_rule
    from ttamer.serving.runtime import EarlyExitServer

    srv = EarlyExitServer(_model(), max_prob_rule(L, 0.5))
    x = np.random.default_rng(0).normal(size=(8, D))
    with pytest.raises(TTamerError) as e:
        srv.serve({"a": x})
    _one_line(e, "dict")
    labels = np.zeros(8, dtype=int)
    for kw, name in ((dict(meta="x"), "meta"), (dict(profile_examples=1.5), "profile_examples"),
                     (dict(warmup=-1), "warmup"), (dict(profile_rows=["1"]), "profile_rows"),
                     (dict(profile_rows=[8]), "profile_rows")):
        with pytest.raises(TTamerError) as e:
            srv.run_all(x, labels, batch_size=4, **kw)
        _one_line(e, name)
    with pytest.raises(TTamerError, match="repeats"):
        srv.cost_profile(x, 1, repeats=1.5)


def test_served_cost_and_compare_latency_arguments(trace):
    from ttamer.serving.latency import compare_latency, served_cost, with_cost_profile

    last = np.zeros(trace.n_examples, dtype=np.int64)
    cases = [(dict(last=np.full(trace.n_examples, 1.7)), "last"), (dict(last=["1"] * trace.n_examples), "last"),
             (dict(last=None), "last"), (dict(trace=None), "Trace"), (dict(compact="no", batch_size=4), "compact"),
             (dict(profile=[1, 2, float("nan")]), "profile"), (dict(profile=["1", "2", "3"]), "profile"),
             (dict(profile=[1, 1, 1], reference=[np.nan] * 3), "reference"),
             (dict(profile=[1, 1, 1], reference=[0, 0, 0]), "reference"),
             (dict(batch_size=4, state_ms="x"), "state_ms"),
             (dict(batch_size=4, state_ms=np.zeros((2, 3)), state_rows=[1.5, 4]), "state_rows")]
    for kw, name in cases:
        args = dict(trace=trace, last=last) | kw
        with pytest.raises(TTamerError) as e:
            served_cost(**args)
        _one_line(e, name)
    with pytest.raises(TTamerError, match="mode"):
        with_cost_profile(trace, None)

    def never(x, b):
        raise AssertionError("ran")
    for kw, name in ((dict(repeats=1.5), "repeats"), (dict(repeats=True), "repeats"), (dict(chunk=0), "chunk"),
                     (dict(chunk=1.5), "chunk"), (dict(batch_size=0), "batch_size")):
        with pytest.raises(TTamerError) as e:
            compare_latency({"a": never}, np.zeros((3, 2)), **kw)
        _one_line(e, name)
    for runs in ([never], {"a": 3}):
        with pytest.raises(TTamerError, match="runs"):
            compare_latency(runs, np.zeros((3, 2)))


# ------------------------------------------------------------------------------ workloads, plots
def test_zoo_names_of_any_type():
    from ttamer.workloads.zoo import load_zoo_trace

    for name in (["a"], None, {"a": 1}):
        with pytest.raises(TTamerError) as e:
            load_zoo_trace(name)
        _one_line(e, "unknown zoo trace")


def test_plot_frontier_points_are_numbers():
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    from ttamer.plots import plot_frontier

    for pts in ([[0, 1], [1, "a"]], [[0, 1], [1]], [[np.nan, 1]]):
        with pytest.raises(TTamerError) as e:
            plot_frontier({"a": pts})
        _one_line(e, "points of strategy 'a'")
