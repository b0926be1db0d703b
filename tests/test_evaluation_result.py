"""evaluate_trace's EvaluationResult: typed attributes, and a to_dict() that is the JSON report
``ttamer evaluate --json`` has always printed.

``tests/data/evaluation_result.json`` is the report, timing left out, that the dict-returning
``evaluate_trace`` gave on the trace below before the result became a dataclass
(``synthetic_trace(300, 3, 3, seed=3)``, ``seed=1``, ``n_boot=10``, ``band_points=5``), with three
changes since: each service-level target's ``confidence`` (the report was made with the naive
rule, confidence 0.5); the full model's point (no λ: ``null``) closing the sweep of
``ttamer-chain``, as it closes every T-Tamer sweep; and the same point closing every
heuristic's sweep too (SDN's fallback, which answers with the most confident exit even at the
end, used to lack it and never reached the full model's accuracy here), with each strategy's
paired interval of its cost at the full model's accuracy (``cost_at_full_minus_ttamer_ci``):
the heuristics' entries were regenerated then.
"""

from __future__ import annotations

import json
import pathlib

import numpy as np
import pytest

from ttamer.cli import main
from ttamer.earlyexit.evaluation import STRATEGIES, evaluate_trace
from ttamer.earlyexit.results import EvaluationResult, StrategyResult
from ttamer.earlyexit.traces import save_trace, synthetic_trace

FIXTURE = pathlib.Path(__file__).parent / "data" / "evaluation_result.json"
#: Parts of the report that depend only on the trace, the split and the heuristics (not on how
#: T-Tamer is fitted): they must equal the stored report to the last digit.
FIT_FREE_STRATEGIES = ("max-prob", "max-prob-sdn", "entropy", "patience", "static", "oracle")


def _schema(x):
    """The shape of a JSON value: keys of objects (recursively), leaf types, and for a list the
    distinct shapes of its items (not its length: how many candidates T-Tamer tries, or how
    many points a sweep has, is not part of the schema)."""
    if isinstance(x, dict):
        return {k: _schema(v) for k, v in x.items()}
    if isinstance(x, list):
        out = []
        for v in map(_schema, x):
            if v not in out:
                out.append(v)
        return out
    return type(x).__name__ if x is not None else "null"


@pytest.fixture(scope="module")
def result():
    return evaluate_trace(synthetic_trace(300, 3, 3, seed=3), seed=1, calibration_fraction=0.5, n_boot=10,
                          band_points=5)


@pytest.fixture(scope="module")
def stored():
    return json.loads(FIXTURE.read_text())


def test_to_dict_has_the_stored_schema(result, stored):
    got = result.to_dict()
    assert list(got) == list(stored) + ["timing"]  # the same keys, in the same order
    assert set(got["timing"]) == {"seconds", "example_exits_per_second"}
    got.pop("timing")
    assert _schema(got) == _schema(stored)
    assert json.dumps(got, allow_nan=False)  # JSON-ready


def test_to_dict_has_the_stored_values(result, stored):
    got = result.to_dict()
    for key in ("trace", "split", "target", "frontier_kind", "full_model"):
        assert got[key] == stored[key], key
    for name in FIT_FREE_STRATEGIES:
        paired = ("auc_minus_ttamer_ci", "cost_at_full_minus_ttamer_ci")  # depend on T-Tamer's fit
        mine = {k: v for k, v in got["strategies"][name].items() if k not in paired}
        theirs = {k: v for k, v in stored["strategies"][name].items() if k not in paired}
        if got["cost_range"] != stored["cost_range"]:  # a refitted T-Tamer may move the AUC's range
            for d in (mine, theirs):
                d.pop("auc"), d.pop("auc_ci"), d.pop("band")
        # bootstrap quantities are sums over resampled examples: equal up to the order of summation
        for key in ("band", "auc_ci"):
            if key in mine:
                np.testing.assert_allclose(_floats(mine.pop(key)), _floats(theirs.pop(key)), rtol=1e-12, atol=1e-14)
        assert mine == theirs, name


def _floats(x):
    """Every number of a nested JSON value, in order (``nan`` for null)."""
    if isinstance(x, dict):
        return [f for v in x.values() for f in _floats(v)]
    if isinstance(x, list):
        return [f for v in x for f in _floats(v)]
    return [np.nan if x is None else float(x)]


def test_attributes_are_the_dict(result):
    d = result.to_dict()
    assert isinstance(result, EvaluationResult) and list(result.strategies) == [s for s in STRATEGIES
                                                                                 if s in d["strategies"]]
    assert result.full_model.accuracy == d["full_model"]["accuracy"] and result.split.n_test == 150
    assert result.cost_range == tuple(d["cost_range"])
    for name, s in result.strategies.items():
        m = d["strategies"][name]
        assert isinstance(s, StrategyResult)
        assert s.auc == m["auc"] and s.cost_at_full_accuracy_minus_half_pt == m["cost_at_full_accuracy_minus_0.5pt"]
        assert np.array_equal(s.frontier, np.asarray(m["frontier"]))
        assert s.points.shape == (len(m["points"]), 3) and s.band.cost.shape == (5,)
        assert len(s.auc_minus_ttamer_ci) == 3 and s.auc_replicates is None


def test_cli_json_is_to_dict(tmp_path, capsys, result):
    path = tmp_path / "trace.npz"
    save_trace(path, synthetic_trace(300, 3, 3, seed=3))
    assert main(["evaluate", str(path), "--seed", "1", "--bootstrap", "10", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    expected = evaluate_trace(synthetic_trace(300, 3, 3, seed=3), seed=1, n_boot=10).to_dict()
    out.pop("timing"), expected.pop("timing")
    assert out == expected
