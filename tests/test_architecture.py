"""The package's import graph has no cycle and no upward edge, and the estimator contract holds where it is promised.

The layers, bottom to top (a module imports only from its own layer or those below):
``core`` < ``solvers`` < {``theory``, ``earlyexit``} < ``serving`` < ``workloads`` <
{``cli``, ``plots``, ``benchmarks``}. ``theory`` and ``earlyexit`` are siblings: neither imports the other.
"""

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1] / "ttamer"


def _modules() -> dict[str, pathlib.Path]:
    out = {}
    for f in ROOT.rglob("*.py"):
        parts = f.relative_to(ROOT.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = f
    return out


def _imports(name: str, path: pathlib.Path, mods: dict[str, pathlib.Path]) -> set[str]:
    """Every ttamer module ``name`` imports, at top level or inside a function."""
    pkg = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    deps: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = pkg.split(".")[: len(pkg.split(".")) - node.level + 1] if node.level else []
            mod = ".".join(base + ([node.module] if node.module else [])) if node.level else (node.module or "")
            for alias in node.names:
                sub = f"{mod}.{alias.name}"
                deps.add(sub if sub in mods else mod)
        elif isinstance(node, ast.Import):
            deps.update(alias.name for alias in node.names)
    # a module's own package (its __init__) is not a dependency edge
    return {d for d in deps if d in mods and d != name and not name.startswith(d + ".")}


#: Layer of each top-level part of the package (``ttamer.<part>...``); higher imports lower.
LAYERS = {"core": 0, "solvers": 1, "theory": 2, "earlyexit": 2, "serving": 3, "workloads": 4, "cli": 5, "plots": 5, "benchmarks": 5}
#: Parts of one layer that must not import each other.
SIBLINGS = {frozenset({"theory", "earlyexit"})}
#: The package itself (it re-exports the public API) and ``python -m ttamer`` sit above every layer.
TOP = {"ttamer", "ttamer.__main__"}


def _part(module: str) -> str:
    return module.split(".")[1]


def _layer_violations(graph: dict[str, set[str]]) -> list[str]:
    """Every edge that goes up a layer, or between two sibling parts, as ``"a -> b"``."""
    bad = []
    for a in sorted(graph):
        if a in TOP:
            continue
        for b in sorted(graph[a]):
            if b in TOP:
                bad.append(f"{a} -> {b} (the package's __init__)")
                continue
            pa, pb = _part(a), _part(b)
            if LAYERS[pb] > LAYERS[pa]:
                bad.append(f"{a} -> {b} (up from {pa} to {pb})")
            elif pa != pb and frozenset({pa, pb}) in SIBLINGS:
                bad.append(f"{a} -> {b} (between siblings {pa} and {pb})")
    return bad


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (iterative Tarjan)."""
    index, low, on, stack, out, counter = {}, {}, set(), [], [], [0]

    def visit(root: str) -> None:
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter[0]
        counter[0] += 1
        stack.append(root)
        on.add(root)
        while work:
            v, it = work[-1]
            w = next(it, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = counter[0]
                    counter[0] += 1
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(sorted(graph[w]))))
                elif w in on:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_no_import_cycles():
    mods = _modules()
    graph = {m: _imports(m, p, mods) for m, p in mods.items()}
    assert "ttamer.earlyexit.tamer" in graph and "ttamer.earlyexit.thresholds" in graph["ttamer.earlyexit.tamer"]
    assert _cycles(graph) == []


def test_every_module_is_in_a_layer():
    unplaced = sorted(m for m in _modules() if m not in TOP and _part(m) not in LAYERS)
    assert not unplaced, f"modules outside the layers of {sorted(LAYERS)}: {unplaced}"


def test_no_upward_or_sibling_imports():
    """Top-level and function-level imports alike: a layer imports only from those below it."""
    mods = _modules()
    graph = {m: _imports(m, p, mods) for m, p in mods.items()}
    assert "ttamer.core.instance" in graph["ttamer.solvers.solve"]  # the walk sees real edges
    assert _layer_violations(graph) == []


def test_layer_checker_finds_violations():
    graph = {"ttamer.core.policy": {"ttamer.solvers.solve"}, "ttamer.theory.frontier": {"ttamer.earlyexit.traces"},
             "ttamer.serving.runtime": {"ttamer.workloads.nlp", "ttamer.core.policy"},
             "ttamer.earlyexit.traces": {"ttamer.core.errors"}, "ttamer.cli.main": {"ttamer"}}
    assert _layer_violations(graph) == [
        "ttamer.cli.main -> ttamer (the package's __init__)",
        "ttamer.core.policy -> ttamer.solvers.solve (up from core to solvers)",
        "ttamer.serving.runtime -> ttamer.workloads.nlp (up from serving to workloads)",
        "ttamer.theory.frontier -> ttamer.earlyexit.traces (between siblings theory and earlyexit)",
    ]


def test_cycle_finder_finds_cycles():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_threshold_tamer_follows_the_contract():
    sk = pytest.importorskip("sklearn.base")
    from ttamer.earlyexit.tamer import ThresholdTamer
    from ttamer.earlyexit.traces import synthetic_trace

    t = ThresholdTamer(lam=0.7, cv_folds=3)
    c = sk.clone(t)
    assert c.get_params() == t.get_params() and c is not t
    fitted = t.fit(synthetic_trace(300, 3, 3, seed=0))
    assert all(name.endswith("_") for name in vars(fitted) if name not in t.get_params() and not name.startswith("_"))


@pytest.mark.parametrize("name", ["ThresholdTamer", "PathwiseTamer", "EarlyExitTamer", "CascadeTamer", "SkipTamer"])
def test_every_estimator_can_be_cloned(name):
    """__init__ stores parameters only, so scikit-learn's clone rebuilds an equal estimator."""
    sk = pytest.importorskip("sklearn.base")
    import ttamer
    from ttamer.earlyexit.base import BaseTamer
    from ttamer.earlyexit.skips import SkipTamer

    cls = SkipTamer if name == "SkipTamer" else getattr(ttamer, name)
    assert issubclass(cls, BaseTamer)
    est = cls(lam=0.3)
    twin = sk.clone(est)
    assert twin is not est and twin.get_params() == est.get_params()
    assert cls(lam="not a number").lam == "not a number"  # nothing validated before fit
