"""Instances of the Markovian Pandora's box on a forest of models (the book's chapter *The model*).

An instance is a rooted forest of nodes (models). Node ``v`` has

* ``parent(v)`` -- the node that must be consulted before ``v`` (``None`` for a root);
* ``c_v >= 0`` -- the cost of the edge into ``v``;
* ``ℓ_v(s) >= 0`` for ``s`` in ``Σ_v = {0..K_v-1}`` -- the loss of answering with ``v``;
* ``μ_v`` (roots) -- the distribution of the root's state, or
* ``P_v[s, t]`` (others) -- P(state of ``v`` is ``t`` | state of ``parent(v)`` is ``s``).

An optional fallback ``y`` is the loss of answering without consulting any model. On a
single chain, *skip* edges ``i -> j`` (``j`` at least two exits further down) consult ``j``
directly at their own cost; the state of ``j`` given ``i`` then follows the product of the
transition matrices in between and the exits skipped over can no longer be consulted.

Everything is validated when an :class:`Instance` is built, whatever the source (JSON, dict,
NumPy builders), and each error names the node and the field at fault. Nothing is silently
renormalised.
"""

from __future__ import annotations

import json
import math
import numbers
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from .errors import InstanceError, TTamerError
from .safeio import (MAX_JSON_BYTES, HugeNumber, atomic_write, check_parse_memory, decode_text, loads_strict, read_file,
                     show_path)
from .validate import escape_text, short_repr

#: Tolerance on ``Σ_t P[s, t] = 1`` and ``Σ_s μ(s) = 1``.
ROW_SUM_TOL = 1e-9

_TOP_FIELDS = {"name", "fallback", "nodes", "skips", "meta"}
_NODE_FIELDS = {"name", "parent", "cost", "losses", "initial", "transition", "meta"}
_SKIP_FIELDS = {"from", "to", "cost"}


@dataclass(frozen=True, eq=False)
class Node:
    """One model of the instance. ``initial`` for roots, ``transition`` for the others."""

    name: str
    parent: str | None
    cost: float
    losses: np.ndarray
    initial: np.ndarray | None = None
    transition: np.ndarray | None = None


@dataclass(frozen=True)
class Skip:
    """A skip edge ``source -> target`` down a chain, with its own cost."""

    source: str
    target: str
    cost: float


def _where(node: str, field: str) -> str:
    return f"node {short_repr(node)}, field {field!r}"


def _keys(keys: Iterable[Any]) -> str:
    """The keys of a JSON object for a message: sorted by their reprs (any key types), each cut
    short, at most five of them."""
    shown = sorted(short_repr(k, 40) for k in keys)
    more = f" and {len(shown) - 5:,} more" if len(shown) > 5 else ""
    return f"[{', '.join(shown[:5])}]{more}"


def _refuse_masked(value: Any, where: str) -> None:
    """An :class:`~ttamer.core.errors.InstanceError` for a masked array, whose mask would be lost."""
    if isinstance(value, np.ma.MaskedArray):
        raise InstanceError(f"{where}: got a masked array; pass a plain NumPy array (a mask is not converted)")


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


def _short(value: Any) -> str:
    if isinstance(value, (list, tuple, Mapping)):
        return f"a {type(value).__name__} of {len(value)} item(s)" if len(repr(value)) > 60 else escape_text(repr(value))
    return escape_text(repr(value), 60)


def _finite_nonneg_scalar(value: Any, where: str) -> float:
    if isinstance(value, HugeNumber):
        raise InstanceError(f"{where}: out of range ({value!r})")
    if not _is_number(value):
        raise InstanceError(f"{where}: expected a number, got {_short(value)}")
    try:
        value = float(value)
    except (OverflowError, ValueError):
        raise InstanceError(f"{where}: out of range (too large for a float)") from None
    if not math.isfinite(value):
        raise InstanceError(f"{where}: must be finite, got {value}")
    if value < 0:
        raise InstanceError(f"{where}: must be >= 0, got {value}")
    return value


def _leaves_are_numbers(value: Any, ndim: int, where: str, index: tuple = ()) -> None:
    """Check a nested list/tuple holds only numbers (no strings, booleans, None) at depth ``ndim``."""
    if isinstance(value, np.ndarray):
        _refuse_masked(value, where)
        if value.dtype.kind not in "fiu":
            raise InstanceError(f"{where}: expected numbers, got an array of dtype {value.dtype}")
        return
    if ndim == 0:
        if isinstance(value, HugeNumber):
            raise InstanceError(f"{where}: entry {index} is out of range ({value!r})")
        if not _is_number(value):
            raise InstanceError(f"{where}: entry {index} must be a number, got {_short(value)}")
        return
    if not isinstance(value, (list, tuple)):
        raise InstanceError(f"{where}: expected a {ndim + len(index)}-D array of numbers, "
                            f"got {_short(value)}" + (f" at entry {index}" if index else ""))
    for k, item in enumerate(value):
        _leaves_are_numbers(item, ndim - 1, where, index + (k,))


def _float_array(value: Any, ndim: int, where: str) -> np.ndarray:
    if isinstance(value, (str, bytes, Mapping)) or value is None:
        raise InstanceError(f"{where}: expected a {ndim}-D array of numbers, got {_short(value)}")
    _leaves_are_numbers(value, ndim, where)
    try:
        with np.errstate(over="ignore"):
            arr = np.array(value, dtype=float)
    except OverflowError:
        raise InstanceError(f"{where}: an entry is out of range (too large for a float)") from None
    except (TypeError, ValueError) as exc:
        raise InstanceError(f"{where}: expected a {ndim}-D array of numbers ({escape_text(str(exc), 100)})") from None
    if arr.ndim != ndim:
        raise InstanceError(f"{where}: expected a {ndim}-D array, got shape {arr.shape}")
    if arr.size == 0:
        raise InstanceError(f"{where}: is empty")
    bad = np.argwhere(~np.isfinite(arr))
    if len(bad):
        raise InstanceError(f"{where}: entry {tuple(int(i) for i in bad[0])} is not finite")
    bad = np.argwhere(arr < 0)
    if len(bad):
        idx = tuple(int(i) for i in bad[0])
        raise InstanceError(f"{where}: entry {idx} is negative ({arr[idx]})")
    return arr


def _check_rows_sum_to_one(arr: np.ndarray, where: str) -> None:
    sums = arr.sum(axis=-1)
    bad = np.flatnonzero(np.abs(np.atleast_1d(sums) - 1.0) > ROW_SUM_TOL)
    if len(bad):
        if arr.ndim == 1:
            raise InstanceError(f"{where}: sums to {float(sums)!r}, not 1 (tolerance {ROW_SUM_TOL})")
        raise InstanceError(
            f"{where}: row {int(bad[0])} sums to {float(sums[bad[0]])!r}, not 1 "
            f"(tolerance {ROW_SUM_TOL})"
        )


class Instance:
    r"""A validated instance: a forest of nodes plus optional skips and fallback.

    Node :math:`v` has a parent (none for a root), an edge cost :math:`c_v \ge 0`, losses
    :math:`\ell_v(s) \ge 0` for its states :math:`s \in \Sigma_v = \{0, \dots, K_v - 1\}`, and
    the law of its state: :math:`\mu_v` for a root, the row-stochastic
    :math:`K_{\mathrm{parent}(v)} \times K_v` matrix

    .. math::

       P_v[s, t] = \Pr\big(S_v = t \mid S_{\mathrm{parent}(v)} = s\big)

    otherwise (the book's chapter :doc:`/model`). Everything is validated here, whatever the
    source (JSON, dict, the :meth:`chain` and :meth:`tree` builders), and each error names the
    node and the field at fault.

    Parameters
    ----------
    nodes : sequence of Node
        The nodes (:class:`~ttamer.core.instance.Node`), at least one; their positions ``0..n-1``
        follow this order.
    fallback : float, optional
        The loss :math:`y \ge 0` of answering without consulting any model; ``None`` (the
        default) means at least one model must be consulted.
    skips : sequence of Skip, default ()
        Skip edges down a single chain (:class:`~ttamer.core.instance.Skip`).
    name : str, default ""
        A label for the instance.

    Raises
    ------
    InstanceError
        A node or a field is invalid; the message names it.

    Notes
    -----
    Nodes are addressed by position (``0..n-1``, in the order given) or by name. Arrays
    describing the forest: ``parent`` (``-1`` for roots), ``n_states`` (``K_v``),
    ``costs`` (``c_v``); lists ``losses[v]`` (``ℓ_v``) and ``transitions[v]`` (``μ_v`` as a
    ``1 x K_v`` matrix for roots, ``P_v`` otherwise), ``children[v]`` and ``roots``.
    """

    def __init__(
        self,
        nodes: Sequence[Node],
        fallback: float | None = None,
        skips: Sequence[Skip] = (),
        name: str = "",
    ) -> None:
        if isinstance(nodes, (str, bytes, Mapping)) or not hasattr(nodes, "__iter__"):
            raise InstanceError(f"nodes must be a sequence of ttamer.core.instance.Node, got {type(nodes).__name__}")
        nodes = tuple(nodes)
        if not nodes:
            raise InstanceError("the instance is empty: it needs at least one node")
        for i, node in enumerate(nodes):
            if not isinstance(node, Node):
                raise InstanceError(f"node #{i}: expected a ttamer.core.instance.Node, got {type(node).__name__}")
        if not isinstance(skips, (list, tuple)) or not all(isinstance(s, Skip) for s in skips):
            raise InstanceError("skips must be a sequence of ttamer.core.instance.Skip")
        if not isinstance(name, str):
            raise InstanceError(f"field 'name': the instance name must be a string, got {_short(name)}")
        self.name = name
        self.nodes = nodes
        self.fallback = None if fallback is None else _finite_nonneg_scalar(fallback, "field 'fallback'")
        self._index_names()
        self._validate_nodes()
        self.order = self._topological_order()
        self.skips = tuple(skips)
        self._validate_skips()
        self._check_cost_sum()
        self.costs.setflags(write=False)
        self.parent.setflags(write=False)
        self.n_states.setflags(write=False)

    # ------------------------------------------------------------------ validation
    def _index_names(self) -> None:
        self.index: dict[str, int] = {}
        normal: dict[str, str] = {}  # NFC form -> the name first given in it
        for i, node in enumerate(self.nodes):
            if not isinstance(node.name, str) or not node.name.strip():
                raise InstanceError(f"node #{i}, field 'name': must be a string with a character other than "
                                    f"spaces, got {_short(node.name)}")
            if node.name in self.index:
                raise InstanceError(f"{_where(node.name, 'name')}: duplicate name")
            same = normal.setdefault(unicodedata.normalize("NFC", node.name), node.name)
            if same != node.name:
                raise InstanceError(f"{_where(node.name, 'name')}: reads the same as node {short_repr(same)} (the two "
                                    "differ only in how their accents are encoded); give the nodes distinct names")
            self.index[node.name] = i

    def _validate_nodes(self) -> None:
        n = len(self.nodes)
        self.parent = np.full(n, -1, dtype=np.int64)
        for i, node in enumerate(self.nodes):
            if node.parent is not None:
                if node.parent not in self.index:
                    raise InstanceError(f"{_where(node.name, 'parent')}: unknown node {short_repr(node.parent)}")
                if node.parent == node.name:
                    raise InstanceError(f"{_where(node.name, 'parent')}: a node cannot be its own parent (cycle)")
                self.parent[i] = self.index[node.parent]
        self.losses = [_float_array(nd.losses, 1, _where(nd.name, "losses")) for nd in self.nodes]
        self.n_states = np.array([len(l) for l in self.losses], dtype=np.int64)
        self.costs = np.array(
            [_finite_nonneg_scalar(nd.cost, _where(nd.name, "cost")) for nd in self.nodes], dtype=float
        )
        self.transitions: list[np.ndarray] = []
        for i, node in enumerate(self.nodes):
            self.transitions.append(self._node_matrix(i, node))
        for arr in self.losses + self.transitions:
            arr.setflags(write=False)

    def _node_matrix(self, i: int, node: Node) -> np.ndarray:
        k = self.n_states[i]
        if self.parent[i] < 0:
            if node.transition is not None:
                raise InstanceError(f"{_where(node.name, 'transition')}: a root takes 'initial', not 'transition'")
            if node.initial is None:
                raise InstanceError(f"{_where(node.name, 'initial')}: missing (a root needs its state distribution)")
            mu = _float_array(node.initial, 1, _where(node.name, "initial"))
            if len(mu) != k:
                raise InstanceError(
                    f"{_where(node.name, 'initial')}: has {len(mu)} entries but 'losses' has {k} states"
                )
            _check_rows_sum_to_one(mu, _where(node.name, "initial"))
            return mu[None, :]
        if node.initial is not None:
            raise InstanceError(f"{_where(node.name, 'initial')}: only roots take 'initial'; this node has a parent")
        if node.transition is None:
            raise InstanceError(f"{_where(node.name, 'transition')}: missing (a non-root needs its transition matrix)")
        P = _float_array(node.transition, 2, _where(node.name, "transition"))
        kp = self.n_states[self.parent[i]]
        if P.shape != (kp, k):
            raise InstanceError(
                f"{_where(node.name, 'transition')}: shape {P.shape}, expected {(int(kp), int(k))} "
                f"(K of parent {short_repr(node.parent)} x K of this node)"
            )
        _check_rows_sum_to_one(P, _where(node.name, "transition"))
        return P

    def _topological_order(self) -> np.ndarray:
        n = len(self.nodes)
        kids: list[list[int]] = [[] for _ in range(n)]
        for j, p in enumerate(self.parent.tolist()):
            if p >= 0:
                kids[p].append(j)
        self.children: tuple[tuple[int, ...], ...] = tuple(tuple(k) for k in kids)
        self.roots = tuple(int(i) for i in np.flatnonzero(self.parent < 0))
        order: list[int] = []
        stack = list(reversed(self.roots))
        while stack:
            v = stack.pop()
            order.append(v)
            stack.extend(reversed(self.children[v]))
        if len(order) < n:
            on_cycle = sorted(set(range(n)) - set(order))[0]
            raise InstanceError(
                f"{_where(self.nodes[on_cycle].name, 'parent')}: the parent links form a cycle"
            )
        return np.array(order, dtype=np.int64)

    def _validate_skips(self) -> None:
        seen: set[tuple[int, int]] = set()
        for k, skip in enumerate(self.skips):
            where = f"skip #{k} ({short_repr(skip.source)} -> {short_repr(skip.target)})"
            for field, nm in (("from", skip.source), ("to", skip.target)):
                if nm not in self.index:
                    raise InstanceError(f"{where}, field {field!r}: unknown node {short_repr(nm)}")
            _finite_nonneg_scalar(skip.cost, f"{where}, field 'cost'")
            if not self.is_chain:
                raise InstanceError(
                    f"{where}: skips are allowed only on a single chain (the transitive closure "
                    f"of a line), but this instance has {len(self.roots)} root(s) and branching nodes"
                )
            pos = self.chain_position
            i, j = pos[self.index[skip.source]], pos[self.index[skip.target]]
            if j - i < 2:
                raise InstanceError(
                    f"{where}: not down the chain -- 'to' must be at least two exits after 'from'"
                )
            if (i, j) in seen:
                raise InstanceError(f"{where}: duplicate skip")
            seen.add((i, j))

    def _check_cost_sum(self) -> None:
        """The costs of all edges (nodes and skips) must sum to a finite float64: that sum bounds
        what any strategy pays, which the evaluators add up."""
        with np.errstate(over="ignore"):
            total = float(self.costs.sum()) + float(np.sum([s.cost for s in self.skips], dtype=float))
        if not math.isfinite(total):
            raise InstanceError("field 'cost': the costs of the edges sum to more than the largest float64 (a "
                                "strategy that consults every node pays that sum); rescale the costs, e.g. "
                                "express them in another unit")

    # ------------------------------------------------------------------ structure
    @property
    def n(self) -> int:
        """Number of nodes."""
        return len(self.nodes)

    @property
    def names(self) -> list[str]:
        return [nd.name for nd in self.nodes]

    @property
    def label(self) -> str:
        """The instance as error messages name it, ``instance 'NAME'`` (the name cut to 60
        characters, control characters escaped by ``repr``), or ``an unnamed instance`` when
        its name is empty (a file without a ``"name"`` field; the command line adds the file's
        path to the message)."""
        return f"instance {self.name[:60]!r}" if self.name else "an unnamed instance"

    @property
    def is_chain(self) -> bool:
        """True when the forest is a single line root -> ... -> leaf."""
        return len(self.roots) == 1 and all(len(c) <= 1 for c in self.children)

    @property
    def chain_position(self) -> np.ndarray:
        """Position of each node along the chain (only for chains)."""
        pos = np.empty(self.n, dtype=np.int64)
        pos[self.order] = np.arange(self.n)
        return pos

    def node_id(self, node: int | str) -> int:
        """Position of a node given by name or position."""
        if isinstance(node, str):
            if node not in self.index:
                more = f" and {self.n - 5:,} more" if self.n > 5 else ""
                raise InstanceError(f"unknown node {short_repr(node)}; nodes are "
                                    f"{', '.join(short_repr(x) for x in self.names[:5])}{more}")
            return self.index[node]
        return int(node)

    def edges(self) -> list[tuple[int, int, float, np.ndarray]]:
        """Every edge ``(source, target, cost, P)`` a strategy may take; source ``-1`` is the start.

        Parent edges carry ``P_v`` (``μ_v`` as a ``1 x K`` matrix from the start); a skip
        ``i -> j`` carries the product of the transition matrices down the chain.
        """
        out = [(int(self.parent[v]), v, float(self.costs[v]), self.transitions[v]) for v in range(self.n)]
        for skip in self.skips:
            i, j = self.index[skip.source], self.index[skip.target]
            out.append((i, j, float(skip.cost), self.path_matrix(i, j)))
        return out

    def out_edges(self) -> dict[int, list[tuple[int, float, np.ndarray]]]:
        """The edges of :meth:`edges` grouped by source: ``source -> [(target, cost, P)]``."""
        out: dict[int, list[tuple[int, float, np.ndarray]]] = {}
        for src, dst, cost, P in self.edges():
            out.setdefault(src, []).append((dst, cost, P))
        return out

    def path_matrix(self, i: int, j: int) -> np.ndarray:
        """``P(S_j = t | S_i = s)`` for ``j`` a descendant of ``i``: the product down the path."""
        path = []
        v = j
        while v != i:
            if v < 0:
                raise InstanceError(f"node {short_repr(self.nodes[j].name)} is not below "
                                    f"{short_repr(self.nodes[i].name)}")
            path.append(v)
            v = int(self.parent[v])
        M = np.eye(self.n_states[i])
        for v in reversed(path):
            M = M @ self.transitions[v]
        return M

    def scaled_losses(self, lam: float) -> list[np.ndarray]:
        """``λ ℓ_v`` for every node."""
        return [lam * l for l in self.losses]

    # ------------------------------------------------------------------ builders
    @classmethod
    def chain(
        cls,
        losses: Sequence[Sequence[float]],
        initial: Sequence[float],
        transitions: Sequence[Sequence[Sequence[float]]],
        costs: Sequence[float],
        names: Sequence[str] | None = None,
        fallback: float | None = None,
        skips: Iterable[tuple[Any, Any, float]] = (),
        name: str = "",
    ) -> "Instance":
        r"""A chain ``exit_0 -> exit_1 -> ... -> exit_{L-1}`` from arrays.

        The law of the states along the chain is

        .. math::

           \Pr(S_0 = s_0, \dots, S_{L-1} = s_{L-1})
           = \mu(s_0) \prod_{k=1}^{L-1} P_k[s_{k-1}, s_k].

        Parameters
        ----------
        losses : sequence of sequence of float
            ``losses[k][s]`` is :math:`\ell_k(s)`, for the ``L`` exits.
        initial : sequence of float
            :math:`\mu`, the distribution of the state of exit 0.
        transitions : sequence of array_like
            ``L - 1`` row-stochastic matrices; ``transitions[k]`` is :math:`P_{k+1}`, the
            matrix into exit ``k + 1``.
        costs : sequence of float
            ``costs[k]`` is :math:`c_k`, the cost of reaching exit ``k`` from exit ``k - 1``
            (exit 0 from the start).
        names : sequence of str, optional
            Node names; ``v0, v1, ...`` by default.
        fallback : float, optional
            The loss :math:`y` of answering without consulting any exit.
        skips : iterable of tuple, default ()
            Skip edges ``(from, to, cost)``, with their ends given by name or position.
        name : str, default ""
            A label for the instance.

        Returns
        -------
        Instance
            The validated chain.

        Raises
        ------
        InstanceError
            An argument, a node or a skip is invalid (``losses`` empty, ``skips`` not an
            iterable of triples, a masked array, ...); the message names it.
        """
        for label, seq in (("losses", losses), ("transitions", transitions)):
            _refuse_masked(seq, repr(label))
            if not hasattr(seq, "__len__") or isinstance(seq, (str, bytes, Mapping)):
                raise InstanceError(f"{label!r} must be a sequence, got {_short(seq)}")
        n = len(losses)
        if n == 0:
            raise InstanceError("a chain needs at least one node, but 'losses' is empty")
        if len(transitions) != n - 1:
            raise InstanceError(f"a chain of {n} nodes needs {n - 1} transition matrices, got {len(transitions)}")
        parents = [None] + list(range(n - 1))
        mats = [initial] + list(transitions)
        return cls.tree(parents, losses, mats, costs, names=names, fallback=fallback, skips=skips, name=name)

    @classmethod
    def tree(
        cls,
        parents: Sequence[int | None],
        losses: Sequence[Sequence[float]],
        matrices: Sequence[Any],
        costs: Sequence[float],
        names: Sequence[str] | None = None,
        fallback: float | None = None,
        skips: Iterable[tuple[Any, Any, float]] = (),
        name: str = "",
    ) -> "Instance":
        r"""A forest from arrays, node ``v`` at position ``v``.

        The states are Markovian along the forest: the joint law is

        .. math::

           \Pr(S = s) = \prod_{v \text{ root}} \mu_v(s_v)
           \prod_{v \text{ not a root}} P_v\big[s_{\mathrm{parent}(v)}, s_v\big].

        Parameters
        ----------
        parents : sequence of int, str or None
            ``parents[v]`` is the position (or name) of the parent of ``v``; ``None`` or
            ``-1`` for a root.
        losses : sequence of sequence of float
            ``losses[v][s]`` is :math:`\ell_v(s)`.
        matrices : sequence of array_like
            ``matrices[v]`` is :math:`\mu_v` (a vector) for a root and :math:`P_v` (a
            :math:`K_{\mathrm{parent}(v)} \times K_v` row-stochastic matrix) otherwise.
        costs : sequence of float
            ``costs[v]`` is :math:`c_v`, the cost of the edge into ``v``.
        names : sequence of str, optional
            Node names; ``v0, v1, ...`` by default.
        fallback : float, optional
            The loss :math:`y` of answering without consulting any model.
        skips : iterable of tuple, default ()
            Skip edges ``(from, to, cost)`` (single chains only), with their ends given by
            name or position.
        name : str, default ""
            A label for the instance.

        Returns
        -------
        Instance
            The validated forest.

        Raises
        ------
        InstanceError
            An argument, a node or a skip is invalid (``skips`` not an iterable of triples,
            a masked array, ...); the message names it.
        """
        for label, seq in (("losses", losses), ("parents", parents), ("matrices", matrices), ("costs", costs)):
            _refuse_masked(seq, repr(label))
            if not hasattr(seq, "__len__") or isinstance(seq, (str, bytes, Mapping)):
                raise InstanceError(f"{label!r} must be a sequence with one entry per node, got {_short(seq)}")
        n = len(losses)
        for label, seq in (("parents", parents), ("matrices", matrices), ("costs", costs)):
            if len(seq) != n:
                raise InstanceError(f"{label!r} has {len(seq)} entries for {n} nodes")
        if names is None:
            names = [f"v{i}" for i in range(n)]
        else:
            if not hasattr(names, "__len__") or isinstance(names, (str, bytes)) or len(names) != n:
                raise InstanceError(f"'names' must list {n} strings, got {_short(names)}")
            bad = [x for x in names if not isinstance(x, str)]
            if bad:
                raise InstanceError(f"'names': every name must be a string, got {_short(bad[0])}")
            names = list(names)

        def position(x: Any, label: str) -> int:
            if isinstance(x, numbers.Integral) and not isinstance(x, (bool, np.bool_)):
                if not -1 <= int(x) < n:
                    raise InstanceError(f"{label}: node position {int(x)} out of range for {n} nodes")
                return int(x)
            raise InstanceError(f"{label}: expected a node position (integer) or name, got {_short(x)}")

        nodes = []
        for v in range(n):
            p = parents[v]
            if p is None or isinstance(p, str):
                is_root, pname = p is None, p
            else:
                pos = position(p, f"parents[{v}]")
                is_root, pname = pos < 0, (None if pos < 0 else names[pos])
            nodes.append(
                Node(
                    name=names[v],
                    parent=pname,
                    cost=costs[v],
                    losses=losses[v],
                    initial=matrices[v] if is_root else None,
                    transition=None if is_root else matrices[v],
                )
            )
        if not hasattr(skips, "__iter__") or isinstance(skips, (str, bytes, Mapping)):
            raise InstanceError(f"'skips' must be an iterable of (from, to, cost) triples, got {_short(skips)}")
        sk = []
        for k, skip in enumerate(skips):
            if not isinstance(skip, (tuple, list)) or len(skip) != 3:
                raise InstanceError(f"skip #{k}: expected (from, to, cost), got {_short(skip)}")
            a, b, c = skip
            ends = []
            for label, x in (("from", a), ("to", b)):
                if isinstance(x, str):
                    ends.append(x)
                    continue
                pos = position(x, f"skip #{k}, field {label!r}")
                if pos < 0:
                    raise InstanceError(f"skip #{k}, field {label!r}: node position {pos} out of range")
                ends.append(names[pos])
            sk.append(Skip(ends[0], ends[1], c))
        return cls(nodes, fallback=fallback, skips=sk, name=name)

    # ------------------------------------------------------------------ (de)serialisation
    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Instance":
        """Build from the JSON interchange format (the book's chapter *The model*) (already parsed)."""
        if not isinstance(data, Mapping):
            raise InstanceError(f"the instance must be a JSON object, got {type(data).__name__}")
        unknown = set(data) - _TOP_FIELDS
        if unknown:
            raise InstanceError(f"unknown top-level field(s) {_keys(unknown)}; allowed: {sorted(_TOP_FIELDS)}")
        raw_nodes = data.get("nodes")
        if raw_nodes is None or (isinstance(raw_nodes, list) and not raw_nodes):
            raise InstanceError("the instance is empty: field 'nodes' must list at least one node")
        if not isinstance(raw_nodes, list):
            raise InstanceError(f"field 'nodes': expected a list, got {type(raw_nodes).__name__}")
        nodes = [_node_from_dict(i, raw) for i, raw in enumerate(raw_nodes)]
        raw_skips = data.get("skips", [])
        if not isinstance(raw_skips, list):
            raise InstanceError(f"field 'skips': expected a list, got {_short(raw_skips)}")
        skips = [_skip_from_dict(k, raw) for k, raw in enumerate(raw_skips)]
        name = data.get("name", "")
        if not isinstance(name, str):
            raise InstanceError(f"field 'name': the instance name must be a string, got {_short(name)}")
        return cls(nodes, fallback=data.get("fallback"), skips=skips, name=name)

    def to_dict(self) -> dict[str, Any]:
        """The JSON interchange format (the book's chapter *The model*)."""
        nodes = []
        for v, nd in enumerate(self.nodes):
            d: dict[str, Any] = {"name": nd.name, "parent": nd.parent, "cost": float(self.costs[v]),
                                 "losses": self.losses[v].tolist()}
            if self.parent[v] < 0:
                d["initial"] = self.transitions[v][0].tolist()
            else:
                d["transition"] = self.transitions[v].tolist()
            nodes.append(d)
        out: dict[str, Any] = {"name": self.name, "fallback": self.fallback, "nodes": nodes}
        if self.skips:
            out["skips"] = [{"from": s.source, "to": s.target, "cost": float(s.cost)} for s in self.skips]
        return out

    def save(self, path: str | Path) -> None:
        """Write the instance as JSON, atomically (the old file survives any failure)."""
        text = json.dumps(self.to_dict(), indent=2) + "\n"
        atomic_write(path, text, "instance file", InstanceError)

    def __repr__(self) -> str:
        shape = "chain" if self.is_chain else f"forest with {len(self.roots)} root(s)"
        return (f"Instance({self.name!r}: {self.n} nodes, {shape}, K={self.n_states.tolist()}, "
                f"{len(self.skips)} skips, fallback={self.fallback})")


def _node_from_dict(i: int, raw: Any) -> Node:
    if not isinstance(raw, Mapping):
        raise InstanceError(f"node #{i}: expected a JSON object, got {type(raw).__name__}")
    name = raw.get("name")
    label = name if isinstance(name, str) and name else f"#{i}"
    if not isinstance(name, str) or not name:
        raise InstanceError(f"node {label}, field 'name': must be a non-empty string, got {_short(name)}")
    unknown = set(raw) - _NODE_FIELDS
    if unknown:
        raise InstanceError(f"node {short_repr(name)}: unknown field(s) {_keys(unknown)}; "
                            f"allowed: {sorted(_NODE_FIELDS)}")
    if "parent" not in raw:
        raise InstanceError(f"{_where(name, 'parent')}: missing (the parent's name, or null for a root)")
    for field in ("cost", "losses"):
        if field not in raw:
            raise InstanceError(f"{_where(name, field)}: missing")
    parent = raw["parent"]
    if parent is not None and not isinstance(parent, str):
        raise InstanceError(f"{_where(name, 'parent')}: must be a node name or null, got {_short(parent)}")
    return Node(name, parent, raw["cost"], raw["losses"], raw.get("initial"), raw.get("transition"))


def _skip_from_dict(k: int, raw: Any) -> Skip:
    if not isinstance(raw, Mapping):
        raise InstanceError(f"skip #{k}: expected a JSON object, got {type(raw).__name__}")
    missing = _SKIP_FIELDS - set(raw)
    unknown = set(raw) - _SKIP_FIELDS
    if missing or unknown:
        raise InstanceError(f"skip #{k}: needs exactly the fields {sorted(_SKIP_FIELDS)} "
                            f"(missing {sorted(missing)}, unknown {_keys(unknown)})")
    for field in ("from", "to"):
        if not isinstance(raw[field], str):
            raise InstanceError(f"skip #{k}, field {field!r}: must be a node name, got {_short(raw[field])}")
    return Skip(raw["from"], raw["to"], raw["cost"])


def check_instance(instance: Any, name: str = "instance") -> Instance:
    """``instance`` if it is an :class:`Instance`.

    Raises
    ------
    TTamerError
        Naming ``name``, for anything else (a dict, a path, ``None``...).
    """
    if not isinstance(instance, Instance):
        raise TTamerError(f"{name} must be a ttamer.Instance, got {escape_text(type(instance).__name__, 60)}")
    return instance


def load_instance(path: str | Path, *, max_bytes: int = MAX_JSON_BYTES) -> Instance:
    """Read and validate an instance file (JSON; the book's chapter :doc:`/formats`).

    Parameters
    ----------
    path : str or pathlib.Path
        The file. Only a regular file is read; it must be UTF-8 JSON without duplicate keys.
    max_bytes : int, default ttamer.core.safeio.MAX_JSON_BYTES
        Largest file size read (:data:`ttamer.core.safeio.MAX_JSON_BYTES`).

    Returns
    -------
    Instance
        The validated instance.

    Raises
    ------
    InstanceError
        The file cannot be read, is not valid JSON, does not describe a valid instance, or
        would take more memory to parse than is available
        (:func:`~ttamer.core.safeio.check_parse_memory`); the message names the file (and the
        node and field at fault).
    """
    data = read_file(path, "instance file", max_bytes, InstanceError)
    where = show_path(path)
    check_parse_memory(len(data), f"instance file {where}", InstanceError)
    text = decode_text(data, f"instance file {where}", InstanceError)
    parsed = loads_strict(text, f"instance file {where}", InstanceError)
    try:
        return Instance.from_dict(parsed)
    except InstanceError as exc:
        raise InstanceError(f"{where}: {exc}") from None


def save_instance(instance: Instance, path: str | Path) -> None:
    """Write ``instance`` to ``path`` as JSON (the book's chapter :doc:`/formats`).

    Parameters
    ----------
    instance : Instance
        The instance to write.
    path : str or pathlib.Path
        The file, written atomically (the old file survives any failure).

    Raises
    ------
    TTamerError
        ``instance`` is not an :class:`Instance`; the message says so when the two arguments
        were given the other way round (``save_instance(instance, path)``: the instance first).
    """
    if isinstance(path, Instance) and not isinstance(instance, Instance):
        raise TTamerError(f"save_instance takes the instance first, then the path: save_instance(instance, path); "
                          f"got a {escape_text(type(instance).__name__, 60)} then an Instance")
    check_instance(instance).save(path)
