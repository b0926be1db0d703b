"""The early-exit estimators share one option vocabulary (:mod:`ttamer.earlyexit.base`).

Every estimator of :mod:`ttamer.earlyexit` (a subclass of
:class:`~ttamer.earlyexit.base.BaseTamer`) takes only parameters named in
:data:`~ttamer.earlyexit.base.VOCABULARY`, is cloned by scikit-learn, takes its answer rule as
``answer`` from :data:`~ttamer.earlyexit.base.ANSWER_RULES` and rejects, in ``fit``, an answer
rule outside its subset with an error naming ``answer`` and the values it accepts.
"""

import importlib
import inspect
import pkgutil
import re

import pytest

import ttamer.earlyexit
from ttamer.core.errors import TTamerError
from ttamer.earlyexit import cascade, features, pairwise, pathwise, skips, states
from ttamer.earlyexit.base import ANSWER_RULES, FEATURES, VOCABULARY, BaseTamer
from ttamer.earlyexit.traces import synthetic_trace


def _estimators() -> list[type]:
    found = set()
    for info in pkgutil.iter_modules(ttamer.earlyexit.__path__):
        module = importlib.import_module(f"ttamer.earlyexit.{info.name}")
        for _, obj in inspect.getmembers(module, inspect.isclass):
            if issubclass(obj, BaseTamer) and obj is not BaseTamer and obj.__module__ == module.__name__:
                found.add(obj)
    return sorted(found, key=lambda c: c.__name__)


ESTIMATORS = _estimators()


def test_every_estimator_is_found():
    names = {c.__name__ for c in ESTIMATORS}
    assert {"EarlyExitTamer", "PathwiseTamer", "ThresholdTamer", "CascadeTamer", "SkipTamer"} <= names


@pytest.mark.parametrize("cls", ESTIMATORS, ids=lambda c: c.__name__)
def test_parameters_are_in_the_vocabulary(cls):
    params = cls._param_names()
    unknown = [p for p in params if p not in VOCABULARY]
    assert not unknown, f"{cls.__name__}: parameters {unknown} are not in base.VOCABULARY"
    assert "answer_rule" not in params and "state" not in params


@pytest.mark.parametrize("cls", ESTIMATORS, ids=lambda c: c.__name__)
def test_clone_round_trips(cls):
    sk = pytest.importorskip("sklearn.base")
    est = cls()
    c = sk.clone(est)
    assert type(c) is cls and c is not est and c.get_params() == est.get_params()
    est.set_params(lam=0.8)
    assert sk.clone(est).get_params() == est.get_params()


def test_answer_rule_subsets_come_from_the_vocabulary():
    for subset in (states.ANSWERS, pairwise.ANSWER_RULES, pathwise.PATH_ANSWER_RULES, cascade.ANSWERS,
                   skips.ANSWERS):
        assert set(subset) <= set(ANSWER_RULES)
    for subset in (features.FEATURES, pathwise.PATH_FEATURES, cascade.TREE_FEATURES, skips.FEATURES):
        assert set(subset) <= set(FEATURES)
    assert all(isinstance(v, str) and v for v in {**ANSWER_RULES, **FEATURES, **VOCABULARY}.values())


#: Per estimator with an answer rule: its accepted subset and how to ask for a rule.
ANSWER_SUBSETS = {
    "EarlyExitTamer": (pairwise.ANSWER_RULES, lambda cls, a: cls(answer=a)),
    "PathwiseTamer": (pathwise.PATH_ANSWER_RULES, lambda cls, a: cls(answer=a)),
    "SkipTamer": (skips.ANSWERS, lambda cls, a: cls(answer=a)),
    "ThresholdTamer": (states.ANSWERS, lambda cls, a: cls(policy=f"common:max_prob:{a}")),
}


@pytest.mark.parametrize("cls", ESTIMATORS, ids=lambda c: c.__name__)
def test_answer_outside_the_subset_is_rejected_naming_answer(cls):
    if "answer" not in cls._param_names() and cls.__name__ not in ANSWER_SUBSETS:
        pytest.skip(f"{cls.__name__} has no answer rule")
    allowed, make = ANSWER_SUBSETS[cls.__name__]
    trace = synthetic_trace(120, 3, 3, seed=0)
    outside = [a for a in ANSWER_RULES if a not in allowed]
    assert outside
    for rule in outside + ["nope"]:
        with pytest.raises(TTamerError, match=r"answer must be one of .*" + re.escape(repr(allowed[0]))):
            make(cls, rule).fit(trace)
