"""An exit's state: features observable once it has run, binned (the book's chapter *Early exit on real models*).

:class:`StateSpec` says how the state ``s_i`` of exit ``i`` is computed (a confidence feature
in quantile bins, optionally entropy, prospect and agreement axes; see
:mod:`ttamer.earlyexit.calibration` for the definitions); :class:`StateEncoder` is a spec
fitted on calibration examples, which maps a trace to ``[N, L]`` states. :func:`exit_losses`
is the 0/1 loss of every exit, against the label or the final exit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..core.errors import TraceError, TTamerError
from ..core.validate import check_choice, check_int, short_repr
from .base import AUTO, FEATURES as _FEATURE_VOCABULARY, MAX_EXITS, check_trace, vocabulary_subset
from .baselines import agreement_run_length
from .logistic import _logistic_models, _posterior_models, _predict, posterior_answers
from .online import log_odds
from .traces import Trace, target_labels

#: The features of the binned state (a subset of :data:`ttamer.earlyexit.base.FEATURES`).
FEATURES = vocabulary_subset(_FEATURE_VOCABULARY, "max_prob", "entropy", "margin", "learned", "posterior")
LOSSES = ("label", "final")
#: The options of an estimator that make up its binned state (the fields of :class:`StateSpec`).
STATE_OPTIONS = ("K", "feature", "agreement", "entropy_bins", "prospect_bins")
#: Most quantile bins of an axis of the state (``K``, ``entropy_bins``, ``prospect_bins``): a
#: chain or tree instance holds a dense transition matrix between the states of consecutive
#: exits, and more bins than a thousand are empty on any calibration set of realistic size.
MAX_K = 1000
#: Most states per exit of a binned state (``K × entropy bins × prospect bins × (agreement cap
#: + 1)``), checked before fitting: the instance holds ``L − 1`` dense matrices of
#: ``states × states`` float64.
MAX_STATES = 2 * MAX_K


def _is_auto(value: Any) -> bool:
    return isinstance(value, str) and value == AUTO


@dataclass(frozen=True)
class StateSpec:
    """How an exit's state is computed (see the module docstring).

    ``K`` -- bins of ``feature`` (int or ``"auto"``); ``feature`` -- ``"max_prob"``,
    ``"entropy"``, ``"margin"``, ``"learned"``, ``"posterior"`` or ``"auto"`` (cross-validated
    over ``FEATURE_GRID``); ``agreement`` -- cap ``r`` on the run of consecutive
    agreeing predictions (``0``/``False``: off, ``1``/``True``: agrees with previous exit, or
    ``"auto"``); ``entropy_bins`` -- extra entropy bins (``0``: off); ``prospect_bins`` -- extra
    bins of a learned P(the final exit is right) (``0``: off). The estimators take these as flat
    options of the same names (:data:`STATE_OPTIONS`);
    :class:`~ttamer.earlyexit.calibration.EarlyExitTamer` builds its spec from them in ``fit``
    (``spec_``).
    """

    K: int | str = AUTO
    feature: str = "max_prob"
    agreement: int | bool | str = AUTO
    entropy_bins: int = 0
    prospect_bins: int = 0

    def __post_init__(self) -> None:
        # the checked values are kept as Python ints: counts in NumPy's small integer types
        # would wrap around in the products of state counts
        if not _is_auto(self.K):
            object.__setattr__(self, "K", check_int(self.K, "K (a positive integer or 'auto')", minimum=1,
                                                    maximum=MAX_K))
        check_choice("feature", self.feature, FEATURES, auto=True)
        if isinstance(self.agreement, np.bool_):
            object.__setattr__(self, "agreement", bool(self.agreement))
        elif not (_is_auto(self.agreement) or isinstance(self.agreement, bool)):
            object.__setattr__(self, "agreement", check_int(self.agreement, "agreement (a bool, an int >= 0 or "
                                                            "'auto')", minimum=0, maximum=MAX_EXITS))
        for field in ("entropy_bins", "prospect_bins"):
            object.__setattr__(self, field, check_int(getattr(self, field), field, minimum=0, maximum=MAX_K))

    @property
    def is_concrete(self) -> bool:
        return AUTO not in (self.K, self.agreement, self.feature)

    @property
    def agreement_cap(self) -> int:
        return int(self.agreement)

    @property
    def states_per_exit(self) -> int:
        """The most states an exit has under a concrete spec, ``K × entropy bins × prospect bins ×
        (agreement cap + 1)`` (fewer where quantile edges coincide)."""
        return int(self.K) * max(self.entropy_bins, 1) * max(self.prospect_bins, 1) * (self.agreement_cap + 1)

    def describe(self) -> str:
        parts = [f"{self.K} {self.feature} bins"]
        if self.entropy_bins:
            parts.append(f"{self.entropy_bins} entropy bins")
        if self.prospect_bins:
            parts.append(f"{self.prospect_bins} prospect bins")
        if self.agreement != AUTO and int(self.agreement) == 1:
            parts.append("agreement with the previous exit")
        elif self.agreement != AUTO and int(self.agreement) > 1:
            parts.append(f"agreement run (cap {int(self.agreement)})")
        elif self.agreement == AUTO:
            parts.append("agreement auto")
        return " + ".join(parts)


def confidence_feature(trace: Trace, feature: str) -> np.ndarray:
    """``[N, L]`` float64 feature of every exit: max-probability, entropy or top-2 margin."""
    if feature == "max_prob":
        return trace.max_prob
    if feature == "entropy":
        return trace.entropy
    if feature == "margin":
        top2 = np.partition(trace.probs, trace.n_classes - 2, axis=2)[:, :, -2:].astype(np.float64)
        return top2[:, :, 1] - top2[:, :, 0]
    raise TTamerError(f"unknown feature {feature!r}; choose one of {FEATURES}")


def agreement_run(pred: np.ndarray, cap: int) -> np.ndarray:
    """``[N, L]``: number of consecutive exits just before ``i`` predicting what exit ``i``
    predicts (PABEE's patience counter), capped at ``cap`` (0 at exit 0)."""
    cap = check_int(cap, "agreement_run: cap", minimum=0)
    return np.minimum(agreement_run_length(pred), cap)


def _quantile_edges(x: np.ndarray, k: int) -> np.ndarray:
    """Interior edges at the ``1/k..(k−1)/k`` quantiles, duplicates removed."""
    if k <= 1:
        return np.zeros(0)
    e = np.unique(np.quantile(x, np.arange(1, k) / k))
    # an edge equal to the maximum would leave an empty top bin
    return e[e < x.max()] if len(e) else e


def history_features(trace: Trace) -> np.ndarray:
    """``[N, L, F]`` features observable once exit ``i`` has run, for ``feature="learned"``:
    a bias, exit ``i``'s log-odds of max-probability, top-2 margin and normalised entropy,
    the mean log-odds of the earlier exits, the share of earlier exits predicting exit
    ``i``'s class and the run of agreeing predictions just before ``i`` (over ``i``)."""
    n, L = trace.n_examples, trace.n_exits
    lo = log_odds(trace.max_prob)
    pred = trace.predictions
    prev_lo = np.zeros((n, L))
    share = np.zeros((n, L))
    for i in range(1, L):
        prev_lo[:, i] = lo[:, :i].mean(axis=1)
        share[:, i] = (pred[:, :i] == pred[:, i : i + 1]).mean(axis=1)
    run = agreement_run_length(pred) / np.maximum(np.arange(L), 1)[None, :]
    feats = [np.ones((n, L)), lo, confidence_feature(trace, "margin"),
             trace.entropy / np.log(trace.n_classes), prev_lo, share, run]
    return np.stack(feats, axis=2)



def exit_losses(trace: Trace, loss: str) -> np.ndarray:
    """``[N, L]`` float64 0/1: exit ``i`` is wrong (``"label"``) or disagrees with the final
    exit (``"final"``)."""
    if loss not in LOSSES:
        raise TTamerError(f"loss must be one of {LOSSES}, got {loss!r}")
    truth = target_labels(trace, loss)
    return (trace.predictions != truth[:, None]).astype(np.float64)



@dataclass
class StateEncoder:
    """A fitted :class:`StateSpec`: per-exit bin edges of each axis of the state (the
    confidence feature, then optionally entropy and prospect), and the logistic models of
    the learned features. ``transform`` maps a trace to ``[N, L]`` int64 states with
    ``0 ≤ s_i < n_states[i]``; the axes are combined in mixed radix, agreement last."""

    spec: StateSpec
    edges: dict[str, list[np.ndarray]]
    models: dict[str, tuple[np.ndarray, np.ndarray]]
    #: Classes of the trace it was fitted on (``None`` if built by hand).
    n_classes: int | None = None

    @classmethod
    def fit(cls, spec: StateSpec, trace: Trace, loss: str = "label", target: str = "label") -> "StateEncoder":
        """Fit on ``trace``: the learned feature predicts that exit ``i`` is right in the
        sense of ``loss``; the prospect, that the final exit is right against ``target``.

        Raises
        ------
        TTamerError
            For a ``spec`` that is not a concrete :class:`StateSpec` or gives more than
            :data:`MAX_STATES` states per exit (checked before fitting), a ``trace`` that
            :func:`~ttamer.earlyexit.base.check_trace` refuses, or a ``loss`` or ``target``
            not in ``("label", "final")``.
        """
        if not isinstance(spec, StateSpec) or not spec.is_concrete:
            raise TTamerError(f"StateEncoder.fit needs a concrete StateSpec (no 'auto'), got {short_repr(spec, 200)}")
        if spec.states_per_exit > MAX_STATES:
            raise TTamerError(f"StateEncoder.fit: {spec.describe()} give up to {spec.states_per_exit:,} states per "
                              f"exit, above MAX_STATES={MAX_STATES:,}; use fewer bins")
        check_trace(trace, "StateEncoder.fit")
        check_choice("loss", loss, LOSSES)
        check_choice("target", target, LOSSES)
        enc = cls(spec, {}, {}, trace.n_classes)
        if spec.feature == "posterior":
            enc.models["posterior"] = _posterior_models(trace, exit_losses(trace, loss))
        if spec.feature == "learned" or spec.prospect_bins:
            x = history_features(trace)
            if spec.feature == "learned":
                enc.models["feature"] = _logistic_models(x, 1.0 - exit_losses(trace, loss))
            if spec.prospect_bins:
                final_right = (trace.predictions[:, -1] == target_labels(trace, target)).astype(float)
                enc.models["prospect"] = _logistic_models(x, np.repeat(final_right[:, None], trace.n_exits, 1))
        vals = enc.axis_values(trace, x if spec.feature == "learned" or spec.prospect_bins else None)
        enc.edges = {name: [_quantile_edges(v[:, i], k) for i in range(trace.n_exits)]
                     for name, (v, k) in vals.items()}
        return enc

    def axis_values(self, trace: Trace, x: np.ndarray | None = None) -> dict[str, tuple[np.ndarray, int]]:
        """``{axis: ([N, L] values, number of bins)}`` for every axis of the state."""
        spec = self.spec
        if x is None and (spec.feature == "learned" or spec.prospect_bins):
            x = history_features(trace)
        if spec.feature == "posterior":
            f = posterior_answers(trace, self.models["posterior"])[0]
        elif spec.feature == "learned":
            f = _predict(x, *self.models["feature"])
        else:
            f = confidence_feature(trace, spec.feature)
        out = {"feature": (f, int(spec.K))}
        if spec.entropy_bins:
            out["entropy"] = (trace.entropy, int(spec.entropy_bins))
        if spec.prospect_bins:
            out["prospect"] = (_predict(x, *self.models["prospect"]), int(spec.prospect_bins))
        return out

    def feature(self, trace: Trace) -> np.ndarray:
        """``[N, L]`` the binned confidence feature (for ``"learned"``: the fitted P(exit right))."""
        return self.axis_values(trace)["feature"][0]

    def answers(self, trace: Trace) -> np.ndarray:
        """``[N, L]``: the exit whose prediction node ``i`` answers with -- ``i`` itself, or for
        ``feature="posterior"`` the posterior answer ``a_i`` (:func:`~ttamer.earlyexit.logistic.posterior_answers`).

        Raises
        ------
        TTamerError
            As :meth:`transform`: for a ``trace`` unlike the one it was fitted on.
        """
        self.check_like_fitted(trace, "StateEncoder.answers")
        if self.spec.feature == "posterior":
            return posterior_answers(trace, self.models["posterior"])[1]
        return np.broadcast_to(np.arange(trace.n_exits), (trace.n_examples, trace.n_exits)).copy()

    @property
    def n_exits(self) -> int:
        return len(self.edges["feature"])

    @property
    def base_states(self) -> np.ndarray:
        """States from the binned axes alone, per exit."""
        k = np.ones(self.n_exits, dtype=np.int64)
        for e in self.edges.values():
            k *= np.array([len(x) + 1 for x in e])
        return k

    @property
    def n_states(self) -> np.ndarray:
        """``K_i`` per exit (agreement levels multiply exits ``i ≥ 1``)."""
        k = self.base_states.copy()
        k[1:] *= self.spec.agreement_cap + 1
        return k

    def layout(self, i: int) -> tuple[int, int, int]:
        """Exit ``i``'s states as ``(agreement levels, feature bins, other axes)``: state
        ``s = a·(F·R) + f·R + r``."""
        i = check_int(i, "StateEncoder.layout: exit", minimum=0, maximum=self.n_exits - 1)
        f = len(self.edges["feature"][i]) + 1
        a = 1 if i == 0 else self.spec.agreement_cap + 1
        return a, f, int(self.base_states[i]) // f

    @property
    def loss_decreasing(self) -> bool:
        """Whether errors fall as the binned feature grows (not so for entropy)."""
        return self.spec.feature != "entropy"

    def check_like_fitted(self, trace: Trace, who: str) -> None:
        """Refuse a ``trace`` that :func:`~ttamer.earlyexit.base.check_trace` refuses, or
        (:class:`~ttamer.core.errors.TraceError`) one of another number of exits, or of classes
        (where ``n_classes`` is recorded), than the trace it was fitted on: its features
        (the learned and posterior models, the normalised entropy) are read per exit and class.
        O(1) past :func:`~ttamer.earlyexit.base.check_trace`."""
        check_trace(trace, who)
        if trace.n_exits != self.n_exits:
            raise TraceError(f"trace has {trace.n_exits} exits; the encoder was fitted on {self.n_exits}")
        if self.n_classes is not None and trace.n_classes != self.n_classes:
            raise TraceError(f"{who}: the trace has {trace.n_classes} classes; the encoder was fitted on "
                             f"{self.n_classes}")

    def transform(self, trace: Trace) -> np.ndarray:
        """``[N, L]`` int64 states of ``trace``'s examples at every exit.

        Raises
        ------
        TTamerError
            For a ``trace`` that :func:`~ttamer.earlyexit.base.check_trace` refuses, or
            (:class:`~ttamer.core.errors.TraceError`) one of another number of exits or
            classes than the trace it was fitted on (:meth:`check_like_fitted`).
        """
        self.check_like_fitted(trace, "StateEncoder.transform")
        s = np.zeros((trace.n_examples, self.n_exits), dtype=np.int64)
        for name, (v, _) in self.axis_values(trace).items():
            e = self.edges[name]
            b = np.stack([np.searchsorted(e[i], v[:, i], side="right") for i in range(self.n_exits)], 1)
            s = s * np.array([len(x) + 1 for x in e]) + b
        cap = self.spec.agreement_cap
        if cap:
            s = s + self.base_states * agreement_run(trace.predictions, cap)
        return s


