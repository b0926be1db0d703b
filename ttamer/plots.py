"""Figures shared by the chapters of the book (matplotlib only, no graphviz).

* :func:`plot_policy` draws an instance as a tree -- a virtual start node on top, the nodes in
  layers by depth, edges labelled by their cost ``c_v`` (skips as dashed arcs), each node
  labelled with its name and ``K_v`` -- annotated with a solved policy: the indices
  ``σ_v(s)`` of an :class:`~ttamer.core.policy.IndexPolicy`, or the continue / stop decision per
  state of a :class:`~ttamer.core.policy.LastStatePolicy`.
* :func:`plot_frontier` draws error-cost frontiers (cost on ``x``, accuracy or loss on ``y``),
  one curve per strategy, with optional bands.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np

from .core.errors import TTamerError
from .core.validate import check_numbers, escape_text, short_repr
from .core.instance import Instance, check_instance
from .core.policy import IndexPolicy, LastStatePolicy, Policy

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.axes import Axes

#: Largest number of per-state entries written out in an annotation before eliding.
MAX_STATES_SHOWN = 6


def check_axes(ax: Any) -> None:
    """Raise :class:`~ttamer.core.errors.TTamerError` unless ``ax`` is ``None`` (a new figure)
    or a matplotlib ``Axes`` to draw on."""
    if ax is None:
        return
    from matplotlib.axes import Axes

    if not isinstance(ax, Axes):
        raise TTamerError(f"ax must be a matplotlib Axes or None (a new figure), got {short_repr(ax)}")


def policy_of(solution: Any) -> Policy:
    """The policy ``solution`` describes: ``solution`` itself if it is a
    :class:`~ttamer.core.policy.Policy`, else its ``policy`` attribute (that of a
    :class:`~ttamer.core.solution.SolveResult`); a :class:`~ttamer.core.errors.TTamerError`
    saying what is needed for anything else (``None``, an instance, a dict)."""
    if isinstance(solution, Policy):
        return solution
    policy = None if isinstance(solution, Mapping) else getattr(solution, "policy", None)
    if not isinstance(policy, Policy):
        hint = " (solve the instance first: ttamer.solve(instance, lam))" if isinstance(solution, Instance) else ""
        raise TTamerError(f"solution must be a solved result (a SolveResult, or anything with a policy attribute "
                          f"holding a ttamer Policy) or a Policy{hint}, got {escape_text(type(solution).__name__, 60)}")
    return policy


# ----------------------------------------------------------------------------- layout
def tree_layout(instance: Instance) -> tuple[np.ndarray, np.ndarray]:
    """Positions ``(x, y)`` of the nodes: ``y = -depth`` (roots at ``-1``; the start node is at
    ``(x_start, 0)``, see :func:`start_position`), leaves spread one unit apart in depth-first
    order and every parent centred over its children."""
    n = check_instance(instance).n
    depth = np.zeros(n, dtype=int)
    for v in instance.order:  # topological: a parent comes before its children
        p = instance.parent[v]
        depth[v] = 0 if p < 0 else depth[p] + 1
    x = np.zeros(n)
    next_leaf = [0.0]

    def place(v: int) -> float:
        kids = instance.children[v]
        if not kids:
            x[v] = next_leaf[0]
            next_leaf[0] += 1.0
        else:
            x[v] = float(np.mean([place(u) for u in kids]))
        return x[v]

    for r in instance.roots:
        place(r)
    return x, -(depth + 1).astype(float)


def start_position(instance: Instance, x: np.ndarray) -> tuple[float, float]:
    """Where the virtual start node is drawn: centred over the roots, one layer above."""
    return float(np.mean(x[list(instance.roots)])), 0.0


# ----------------------------------------------------------------------------- annotations
def _fmt_values(values: Sequence[float], prefix: str = "") -> str:
    vals = [("+∞" if np.isinf(v) else f"{v:.3g}") for v in values]
    if len(vals) > MAX_STATES_SHOWN:
        vals = vals[: MAX_STATES_SHOWN - 1] + ["…", vals[-1]]
    return prefix + "[" + ", ".join(vals) + "]"


def policy_annotations(policy: Policy) -> tuple[dict[int, str], str]:
    """Per-node annotation text and a text for the start node, describing ``policy``.

    * :class:`~ttamer.core.policy.IndexPolicy`: ``σ_v(s)`` for each state ``s`` of ``parent(v)`` (one value for a
      root), written beside ``v``.
    * :class:`~ttamer.core.policy.LastStatePolicy`: for each state ``s`` of ``v``, the node consulted after ``v``
      revealed ``s`` ("stop" to stop). With recall the decision also depends on ``X``; the
      one shown is for ``X = min(λ y, λ ℓ_v(s))``, the case where ``v``'s answer is the best
      so far (exact for the first node consulted), and the note says so.
    * any other policy: no per-node text.
    """
    if not isinstance(policy, Policy):
        raise TTamerError(f"policy must be a ttamer Policy (a solved result's .policy), got "
                          f"{escape_text(type(policy).__name__, 60)}")
    inst = policy.instance
    notes: dict[int, str] = {}
    start = ""
    if isinstance(policy, IndexPolicy):
        for v in range(inst.n):
            notes[v] = _fmt_values(policy.sigma[v], prefix="σ=")
        start = "σ_v[s] for each state s of parent(v);\nconsult the smallest σ while it is < X"
    elif isinstance(policy, LastStatePolicy):
        name = lambda u: "stop" if u < 0 else inst.names[u]  # noqa: E731
        for v in range(inst.n):
            acts = [name(int(a)) for a in _decisions_after(policy, v)]
            if len(acts) > MAX_STATES_SHOWN:
                acts = acts[: MAX_STATES_SHOWN - 1] + ["…", acts[-1]]
            notes[v] = "\n".join(f"s={s}→{a}" if a != "…" else "…" for s, a in enumerate(acts))
        first = policy.decide(np.full((1, inst.n), -1, dtype=np.int64), np.array([-1]))
        start = f"first: {name(int(first[0]))}"
        if policy.recall:
            start += "\n(after v: shown for the case that\nv's answer is the best so far)"
    return notes, start


def _decisions_after(policy: Policy, v: int) -> np.ndarray:
    """``policy.decide`` on the histories where only ``v`` was consulted, one per state of
    ``v``: the next node (``-1`` stop) after ``v`` revealed ``s``, when ``X`` is set by ``v``
    alone. Valid for policies whose decision depends on the last node, its state and ``X``."""
    k = int(policy.instance.n_states[v])
    states = np.full((k, policy.instance.n), -1, dtype=np.int64)
    states[:, v] = np.arange(k)
    return np.asarray(policy.decide(states, np.full(k, v, dtype=np.int64)))


def _title(solution: Any, policy: Policy) -> str:
    kind = "recall" if policy.recall else "no recall"
    parts = [f"λ = {policy.lam:g}", kind]
    method = getattr(solution, "method", None)
    if method:
        parts.append(str(method))
    value = getattr(solution, "value", None)
    if value is not None:
        parts.append(f"E[θ] = {float(value):.4g}")
    head = policy.instance.name or type(policy).__name__
    return f"{head}\n" + ", ".join(parts)


# ----------------------------------------------------------------------------- drawing
def _box_halfwidth_pt(text: str, fontsize: float) -> float:
    """Rough half-width in points of a text box (for placing annotations beside it)."""
    longest = max(len(line) for line in text.split("\n"))
    return 0.3 * fontsize * longest + 0.35 * fontsize + 2.0


def _skip_path(a: tuple[float, float], b: tuple[float, float], bow: float) -> np.ndarray:
    """Points of a quadratic Bézier from ``a`` to ``b`` bowed ``bow`` units to the left,
    trimmed at both ends so that it leaves and enters the node boxes."""
    ctrl = np.array([min(a[0], b[0]) - bow, (a[1] + b[1]) / 2])
    t = np.linspace(0.1, 0.9, 40)[:, None]
    return (1 - t) ** 2 * np.asarray(a) + 2 * (1 - t) * t * ctrl + t**2 * np.asarray(b)


def plot_policy(solution: Any, ax: "Axes | None" = None, show_losses: bool = True) -> "Axes":
    """Draw the instance of ``solution`` as a tree, annotated with its policy.

    ``solution`` is a :class:`~ttamer.core.solution.SolveResult` (anything with a ``policy`` attribute; its
    ``value`` and ``method`` go in the title when present) or a bare
    :class:`~ttamer.core.policy.Policy`. Layers are depths (the virtual start node on top), edges
    carry their cost ``c_v`` and skips ``i -> j`` are dashed arcs with their own cost. Nodes
    are labelled ``name`` and ``K_v`` (and, with ``show_losses``, ``ℓ_v``); the policy is
    written in brown beside each node (see :func:`policy_annotations`). ``ax`` is a matplotlib
    ``Axes`` to draw on, or ``None`` for a new figure. Returns the axes.

    Raises
    ------
    TTamerError
        ``solution`` is neither a solved result nor a policy (``None``, an instance, a dict),
        or ``ax`` is not a matplotlib ``Axes``.
    """
    import matplotlib.pyplot as plt
    from matplotlib.patches import FancyArrowPatch
    from matplotlib.path import Path as MplPath

    policy = policy_of(solution)
    check_axes(ax)
    inst = policy.instance
    x, y = tree_layout(inst)
    sx, sy = start_position(inst, x)
    depth = int(-y.min())
    width = float(x.max() - x.min()) + 1.0
    if ax is None:
        _, ax = plt.subplots(figsize=(2.4 * width + 2.5, 1.35 * (depth + 1) + 1.0))

    fs = 8
    notes, start_note = policy_annotations(policy)
    pos = lambda v: (sx, sy) if v < 0 else (float(x[v]), float(y[v]))  # noqa: E731
    arrow_kw = dict(arrowstyle="-|>", mutation_scale=12, color="0.35", zorder=1)

    for v in range(inst.n):  # parent edges
        a, b = pos(int(inst.parent[v])), pos(v)
        ax.add_patch(FancyArrowPatch(a, b, shrinkA=14, shrinkB=20, **arrow_kw))
        ax.annotate(f"c={inst.costs[v]:g}", ((a[0] + b[0]) / 2, (a[1] + b[1]) / 2), xytext=(-4, 0),
                    textcoords="offset points", ha="right", va="center", fontsize=fs, color="0.25")
    for skip in inst.skips:  # skips: dashed arcs bowed to the left of the chain
        i, j = inst.index[skip.source], inst.index[skip.target]
        bow = 0.35 * abs(y[i] - y[j])
        pts = _skip_path(pos(i), pos(j), bow)
        ax.add_patch(FancyArrowPatch(path=MplPath(pts), linestyle="--", **arrow_kw))
        mid = pts[len(pts) // 2]
        ax.annotate(f"skip c={skip.cost:g}", (mid[0], mid[1]), xytext=(-4, 0), textcoords="offset points",
                    ha="right", va="center", fontsize=fs, color="0.25", style="italic")

    ax.text(sx, sy, "start", ha="center", va="center", fontsize=fs + 1, zorder=3,
            bbox=dict(boxstyle="round,pad=0.35", fc="0.92", ec="0.4"))
    if start_note:
        ax.annotate(start_note, (sx, sy), xytext=(_box_halfwidth_pt("start", fs + 1) + 6, 0),
                    textcoords="offset points", ha="left", va="center", fontsize=fs, color="#7a2e00")
    box = dict(boxstyle="round,pad=0.35", fc="#dbe9f6", ec="#2b5d8a")
    for v in range(inst.n):
        label = f"{inst.names[v]}\nK={int(inst.n_states[v])}"
        if show_losses:
            label += "\n" + _fmt_values(inst.losses[v], prefix="ℓ=")
        ax.text(x[v], y[v], label, ha="center", va="center", fontsize=fs, zorder=3, bbox=box)
        if v in notes:
            ax.annotate(notes[v], (x[v], y[v]), xytext=(_box_halfwidth_pt(label, fs) + 6, 0),
                        textcoords="offset points", ha="left", va="center", fontsize=fs,
                        color="#7a2e00", zorder=3)

    ax.set_xlim(x.min() - 0.8, x.max() + 1.2)
    ax.set_ylim(y.min() - 0.5, 0.5)
    ax.set_axis_off()
    ax.set_title(_title(solution, policy), fontsize=fs + 2)
    return ax


def plot_frontier(
    points_by_strategy: Mapping[str, Any],
    ax: "Axes | None" = None,
    bands: Mapping[str, Any] | None = None,
    xlabel: str = "mean cost per example",
    ylabel: str = "accuracy",
    title: str | None = None,
    markers: bool = True,
) -> "Axes":
    """Error-cost frontiers, one curve per strategy.

    ``points_by_strategy[name]`` is an array ``(m, 2)`` of ``(cost, y)`` points (``y`` an
    accuracy or a loss); each curve is drawn in order of increasing cost. ``bands[name]``,
    optional, is an array ``(m, 2)`` of ``(low, high)`` for the same points, in the same
    order as the points given (for example bootstrap bands), drawn as a shaded area.
    ``ax`` is a matplotlib ``Axes`` to draw on, or ``None`` for a new figure. Returns the axes.

    Raises
    ------
    TTamerError
        ``points_by_strategy`` or ``bands`` is not a mapping (a dict ``{name: array}``), an
        array is not ``(m, 2)`` finite numbers, a band names an unknown strategy or has
        another shape than its points, or ``ax`` is not a matplotlib ``Axes``. Everything is
        checked before a figure is made.
    """
    import matplotlib.pyplot as plt

    curves = _frontier_curves(points_by_strategy, bands)
    check_axes(ax)
    if ax is None:
        _, ax = plt.subplots(figsize=(6.4, 4.4))
    for name, pts, band in curves:
        order = np.argsort(pts[:, 0], kind="stable")
        (line,) = ax.plot(pts[order, 0], pts[order, 1], marker="o" if markers else None,
                          markersize=3, linewidth=1.5, label=name)
        if band is not None:
            ax.fill_between(pts[order, 0], band[order, 0], band[order, 1], color=line.get_color(),
                            alpha=0.2, linewidth=0)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.grid(True, alpha=0.3)
    if curves:
        ax.legend(fontsize=8)
    return ax


def _frontier_curves(points_by_strategy: Any, bands: Any) -> list[tuple[Any, np.ndarray, np.ndarray | None]]:
    """``(name, points, band or None)`` per strategy of :func:`plot_frontier`, all checked."""
    form = "a mapping (dict) from strategy name to an (m, 2) array of (cost, y) points"
    if not isinstance(points_by_strategy, Mapping):
        raise TTamerError(f"points_by_strategy must be {form}, e.g. {{'ttamer': points}}, got "
                          f"{escape_text(type(points_by_strategy).__name__, 60)}")
    if bands is not None and not isinstance(bands, Mapping):
        raise TTamerError(f"bands must be None or a mapping (dict) from strategy name to an (m, 2) array of "
                          f"(low, high), got {escape_text(type(bands).__name__, 60)}")
    bands = {} if bands is None else bands
    unknown = [k for k in bands if k not in points_by_strategy]
    if unknown:
        raise TTamerError(f"bands given for unknown strategies {short_repr(unknown, 200)}")
    curves = []
    for name, pts in points_by_strategy.items():
        shown = escape_text(repr(name), 60)
        pts = check_numbers(pts, f"points of strategy {shown}", ndim=2)
        if pts.shape[1] != 2:
            raise TTamerError(f"points of strategy {shown}: expected shape (m, 2), got {pts.shape}")
        band = None
        if name in bands:
            band = check_numbers(bands[name], f"bands of strategy {shown}", ndim=2)
            if band.shape != pts.shape:
                raise TTamerError(f"bands of strategy {shown}: expected shape {pts.shape}, got {band.shape}")
        curves.append((name, pts, band))
    return curves
