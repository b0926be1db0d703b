"""The contract every early-exit estimator of ttamer follows (scikit-learn semantics).

* ``__init__`` stores its arguments as attributes of the same names and does nothing else,
  so :meth:`BaseTamer.get_params` / :meth:`BaseTamer.set_params` (and
  ``sklearn.base.clone``) work;
* ``fit(calibration_trace)`` validates the parameters and the trace, learns, and returns
  ``self``; what it learns is stored in attributes whose names end in ``_``;
* ``decide(trace)`` runs the fitted rule at ``lam`` on new examples and
  ``decide_sweep(trace)`` at every ``λ`` of a sweep, both returning
  :class:`~ttamer.earlyexit.traces.ExitDecisions`;
* ``name`` says what the strategy is, ``describe()`` what was fitted.
"""

from __future__ import annotations

import inspect
from typing import Any

from ..core.errors import TTamerError


class BaseTamer:
    """Parameter handling and the fitted check shared by the early-exit estimators."""

    #: Attribute whose presence marks a fitted estimator.
    _fitted_attr = "candidate_"

    @classmethod
    def _param_names(cls) -> list[str]:
        sig = inspect.signature(cls.__init__)
        return [p.name for p in sig.parameters.values() if p.name != "self" and p.kind == p.POSITIONAL_OR_KEYWORD]

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """The constructor's parameters and their current values."""
        return {name: getattr(self, name) for name in self._param_names()}

    def set_params(self, **params: Any) -> "BaseTamer":
        """Set constructor parameters by name (validated at the next ``fit``)."""
        known = self._param_names()
        for name, value in params.items():
            if name not in known:
                raise TTamerError(f"{type(self).__name__} has no parameter {name!r}; parameters: {known}")
            setattr(self, name, value)
        return self

    def check_fitted(self) -> None:
        """Raise :class:`~ttamer.core.errors.TTamerError` unless ``fit`` has run."""
        if not hasattr(self, self._fitted_attr):
            raise TTamerError(f"{type(self).__name__} is not fitted; call fit(calibration_trace) first")

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"
