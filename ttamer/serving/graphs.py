"""CUDA graphs of a multi-exit model, one query at a time (the book's chapter *Rerunning the
experiments at paper scale*, section on the serving runtime).

One query at a time on a GPU, a small model is bound by the host: launching a block's and a
head's many small operations takes longer than the GPU takes to run them. :class:`ExitGraphs`
captures, for one shape of input, each exit ``i`` -- block ``i``, its head and the softmax --
in one CUDA graph, and the plain network (every block, the last head) in another; serving then
copies the query into the graphs' static inputs and replays exit after exit, one launch per
exit and the one copy of the exit's probabilities that the decision reads. A graph replays
fixed shapes: :class:`GraphCache` keeps the graphs of each input shape met (up to
:data:`MAX_SHAPES`), so that texts of different token lengths get their own.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from ..core.errors import TTamerError
from .adapters import MultiExitModel, _torch, check_logits

#: The most input shapes whose graphs one server keeps (the oldest are dropped beyond it).
MAX_SHAPES = 256
#: Eager runs of every exit on the static inputs before capture (libraries' lazy set-up).
WARMUP_RUNS = 2


def _tensors(x: Any) -> list:
    """The tensors of a tensor, or of a tuple / list / dict of them, in a fixed order."""
    torch = _torch()
    if x is None:
        return []
    if torch.is_tensor(x):
        return [x]
    if isinstance(x, (tuple, list)):
        return [t for e in x for t in _tensors(e)]
    if isinstance(x, dict):
        return [t for k in sorted(x) for t in _tensors(x[k])]
    raise TTamerError(f"cannot capture a {type(x).__name__} in a CUDA graph; hidden states and contexts must be "
                      "tensors or tuples / lists / dicts of tensors")


def _clone(x: Any) -> Any:
    """A copy of ``x`` (same structure) in fresh tensors: a graph's static inputs."""
    torch = _torch()
    if x is None:
        return None
    if torch.is_tensor(x):
        return x.detach().clone()
    if isinstance(x, (tuple, list)):
        return type(x)(_clone(e) for e in x)
    return {k: _clone(v) for k, v in x.items()}


def signature(h: Any, ctx: Any) -> tuple:
    """The key of an input's graphs: the structure, shapes, dtypes and devices of ``h`` and ``ctx``."""
    def shapes(x: Any) -> tuple:
        return tuple((tuple(t.shape), str(t.dtype), str(t.device)) for t in _tensors(x))

    return shapes(h), shapes(ctx), tuple(sorted(ctx)) if isinstance(ctx, dict) else type(ctx).__name__


def _capture(fn: Callable[[], Any], pool: Any) -> tuple[Any, Any]:
    """Capture ``fn()`` in a CUDA graph sharing memory ``pool``: ``(graph, fn's outputs)``; the
    outputs are the static tensors each replay rewrites."""
    torch = _torch()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph, pool=pool):
        out = fn()
    return graph, out


class ExitGraphs:
    """The per-exit graphs and the plain network's graph of ``model`` for inputs shaped as
    ``(h, ctx)`` (what the model's ``prepare`` returned for one query).

    Raises
    ------
    TTamerError
        If a block or head cannot be captured (it synchronises with the host, e.g. with
        ``.item()``, or branches on the values of tensors), naming the part; if an exit head
        returns other than float logits ``[rows, n_classes]``.
    """

    def __init__(self, model: MultiExitModel, h: Any, ctx: Any, n_classes: int | None = None) -> None:
        torch = _torch()
        self.model = model
        L = model.n_exits
        rows = int(_tensors(h)[0].shape[0]) if _tensors(h) else 1
        with torch.inference_mode(False), torch.no_grad():
            self._h, self._ctx = _clone(h), _clone(ctx)
            self._warm_up()
            self._exits: list[tuple[Any, Any]] = []
            self._keep: list = []  # every graph's outputs stay allocated: no later capture reuses them
            pool, x = None, self._h
            for i in range(L):
                def exit_i(x: Any = x, i: int = i, classes: int | None = n_classes) -> tuple[Any, Any]:
                    out = model.blocks[i](x, self._ctx)
                    logits = model.heads[i](out, self._ctx)
                    check_logits(logits, rows, i, classes)
                    return out, torch.softmax(logits.float(), dim=-1)

                graph, (x, probs) = self._captured(exit_i, pool, f"exit {i} ({model.names[i]})")
                pool = graph.pool()
                n_classes = int(probs.shape[1])
                self._exits.append((graph, probs))
                self._keep.append(x)

            def full() -> Any:
                y = self._h
                for block in model.blocks:
                    y = block(y, self._ctx)
                return torch.softmax(model.heads[L - 1](y, self._ctx).float(), dim=-1)

            self._full, self._full_probs = self._captured(full, pool, "the plain network")

    def _warm_up(self) -> None:
        torch = _torch()
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(WARMUP_RUNS):
                y = self._h
                for i in range(self.model.n_exits):
                    y = self.model.blocks[i](y, self._ctx)
                    self.model.heads[i](y, self._ctx)
        torch.cuda.current_stream().wait_stream(side)

    @staticmethod
    def _captured(fn: Callable[[], Any], pool: Any, part: str) -> tuple[Any, Any]:
        try:
            return _capture(fn, pool)
        except TTamerError:
            raise
        except Exception as exc:  # the user's code: say which part cannot be captured
            raise TTamerError(f"cuda_graphs=True: {part} cannot be captured in a CUDA graph ({type(exc).__name__}: "
                              f"{str(exc).splitlines()[0][:200] if str(exc) else ''}); a captured part must not "
                              "synchronise with the host or branch on tensor values (serve with cuda_graphs=False)"
                              ) from exc

    def load(self, h: Any, ctx: Any) -> None:
        """Copy a query's prepared inputs into the graphs' static inputs."""
        for dst, src in zip(_tensors(self._h) + _tensors(self._ctx), _tensors(h) + _tensors(ctx)):
            dst.copy_(src, non_blocking=True)

    def exit_probs(self, i: int) -> np.ndarray:
        """Replay exit ``i`` (its block on the previous exit's hidden state, its head, the
        softmax) and copy its probabilities ``[rows, C]`` to the host."""
        graph, probs = self._exits[i]
        graph.replay()
        return probs.to("cpu", copy=True).numpy()

    def full_probs(self) -> np.ndarray:
        """Replay the plain network and copy the last exit's probabilities to the host."""
        self._full.replay()
        return self._full_probs.to("cpu", copy=True).numpy()


class GraphCache:
    """The :class:`ExitGraphs` of each input shape a server met, the oldest dropped beyond
    :data:`MAX_SHAPES`."""

    def __init__(self, model: MultiExitModel) -> None:
        self.model = model
        self._graphs: dict[tuple, ExitGraphs] = {}

    def __len__(self) -> int:
        return len(self._graphs)

    def loaded(self, h: Any, ctx: Any, n_classes: int | None = None) -> ExitGraphs:
        """The graphs of ``(h, ctx)``'s shapes (captured on first use), with ``h`` and ``ctx`` copied in."""
        key = signature(h, ctx)
        graphs = self._graphs.get(key)
        if graphs is None:
            if len(self._graphs) >= MAX_SHAPES:
                del self._graphs[next(iter(self._graphs))]
            graphs = self._graphs[key] = ExitGraphs(self.model, h, ctx, n_classes)
        graphs.load(h, ctx)
        return graphs
