"""The CUDA-graph path of the serving runtime, its plumbing checked on the CPU: the graphs'
capture is replaced by an eager stand-in that replays the captured function into the same
static tensors, so the static inputs, the chaining of exits, the per-shape cache and the
decisions are exercised here; the capture itself runs on a GPU (``benchmarks/run.py --device cuda``)."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import ttamer.serving.graphs as graphs  # noqa: E402
from ttamer.core.errors import TTamerError  # noqa: E402
from ttamer.serving import EarlyExitServer, MultiExitModel, max_prob_rule, threshold_rule  # noqa: E402

D, C, L = 8, 3, 4


class _EagerGraph:
    """Stands in for a captured CUDA graph: replaying reruns the function into its first outputs."""

    def __init__(self, fn):
        self.fn, self.out = fn, fn()

    def replay(self):  # a graph's replay involves no autograd
        with torch.no_grad():
            new = self.fn()
        for dst, src in zip(graphs._tensors(self.out), graphs._tensors(new)):
            dst.copy_(src)

    def pool(self):
        return None


@pytest.fixture
def eager_graphs(monkeypatch):
    monkeypatch.setattr(graphs, "_capture", lambda fn, pool: (lambda g: (g, g.out))(_EagerGraph(fn)))
    monkeypatch.setattr(graphs.ExitGraphs, "_warm_up", lambda self: None)


def _model(seed=0):
    g = torch.Generator().manual_seed(seed)
    blocks = [torch.nn.Sequential(torch.nn.Linear(D, D), torch.nn.Tanh()) for _ in range(L)]
    heads = [torch.nn.Linear(D, C) for _ in range(L)]
    for m in blocks + heads:
        for p in m.parameters():
            p.data = torch.randn(p.shape, generator=g) * (0.8 + 0.4 * (m in heads))
    return MultiExitModel.from_modules(blocks, heads)


def _graphed(server):
    server._graphs = graphs.GraphCache(server.model)  # as cuda_graphs=True sets it up on a GPU
    return server


@pytest.mark.parametrize("tau", [0.8, 0.9, 0.97])
def test_graph_replays_decide_as_the_eager_runtime(eager_graphs, tau):
    model = _model()
    x = np.random.default_rng(0).normal(size=(60, D)).astype(np.float32)
    eager = EarlyExitServer(model, max_prob_rule(L, tau))
    graphed = _graphed(EarlyExitServer(model, max_prob_rule(L, tau)))
    a, b = eager.serve(x, 1), graphed.serve(x, 1)
    assert len(np.unique(a.last)) > 1  # queries stop at different exits
    for field in ("last", "answer", "prediction", "states", "consulted"):
        np.testing.assert_array_equal(getattr(b, field), getattr(a, field), err_msg=field)
    np.testing.assert_allclose(np.nan_to_num(b.probs, nan=-1), np.nan_to_num(a.probs, nan=-1), rtol=1e-6, atol=1e-7)
    assert len(graphed._graphs) == 1  # one input shape, captured once
    full_a, full_b = eager.run_full(x, 1), graphed.run_full(x, 1)
    np.testing.assert_array_equal(full_b.prediction, full_a.prediction)
    np.testing.assert_allclose(full_b.probs[:, -1], full_a.probs[:, -1], rtol=1e-6, atol=1e-7)


def test_each_input_shape_gets_its_graphs_and_the_oldest_go(eager_graphs, monkeypatch):
    monkeypatch.setattr(graphs, "MAX_SHAPES", 2)
    cache = graphs.GraphCache(_model())
    for rows in (1, 2, 1, 3):
        g = cache.loaded(torch.randn(rows, D), None)
        assert g.exit_probs(0).shape == (rows, C)
    assert len(cache) == 2
    assert graphs.signature(torch.zeros(1, 5), {"a": torch.zeros(1, 5, dtype=torch.int64)}) != \
        graphs.signature(torch.zeros(1, 6), {"a": torch.zeros(1, 6, dtype=torch.int64)})


def test_a_part_that_cannot_be_captured_is_named(monkeypatch):
    def refuse(fn, pool):
        raise RuntimeError("operation not permitted when stream is capturing")

    monkeypatch.setattr(graphs, "_capture", refuse)
    monkeypatch.setattr(graphs.ExitGraphs, "_warm_up", lambda self: None)
    with pytest.raises(TTamerError, match=r"exit 0 \(exit0\) cannot be captured in a CUDA graph"):
        graphs.ExitGraphs(_model(), torch.randn(1, D), None)


def test_cuda_graphs_needs_cuda_and_a_threshold_rule():
    model = _model()
    with pytest.raises(TTamerError, match="cuda_graphs=True replays CUDA graphs: it needs device='cuda'"):
        EarlyExitServer(model, max_prob_rule(L, 0.9), cuda_graphs=True)
    policy, fn = threshold_rule(L, 0.9)
    with pytest.raises(TTamerError, match="cuda_graphs=True serves a threshold rule exit by exit"):
        EarlyExitServer(model, policy, fn, compile=False, cuda_graphs=True)
    with pytest.raises(TTamerError, match="cuda_graphs must be True or False"):
        EarlyExitServer(model, max_prob_rule(L, 0.9), cuda_graphs="yes")
