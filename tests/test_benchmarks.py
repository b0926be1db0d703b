"""Smoke test: the benchmark script (``python benchmarks/run.py``, which runs ``ttamer.benchmarks``) runs end to
end at its smallest size (no timing assertions)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_benchmark_script_runs_in_smoke_mode(tmp_path):
    pytest.importorskip("quantecon")  # the `bench` extra
    out = tmp_path / "bench.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "run.py"), "--smoke", "--json", str(out)],
                          capture_output=True, text=True, env=env, timeout=600, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Solvers on chains with recall" in proc.stdout
    res = json.loads(out.read_text())
    for key in ("compare", "nodes", "states", "shapes", "skips", "targets", "throughput", "memory"):
        assert res[key], key
    # every solver that ran agrees with the index solver (correctness, not speed)
    for row in res["compare"]:
        assert row["max_value_gap"] < 1e-7, row
        assert {"index_s", "dp_s", "quantecon_s"} <= row.keys()
    assert any("lp_s" in row for row in res["compare"]) and any("exhaustive_s" in row for row in res["compare"])
    assert {r["strategy"] for r in res["throughput"]} >= {"max-prob", "entropy", "patience", "oracle"}
    for key in ("nodes_exponent", "states_exponent", "shapes_exponent"):  # a number for every group
        assert all(v == v for v in res[key].values()), (key, res[key])


def test_fitted_exponent_reads_fast_timings():
    """Timings under the floor (a compiled solver on small instances) still give an exponent:
    the two largest sizes; above the floor, only the points above it."""
    from ttamer.benchmarks import fitted

    rows = [{"n": n, "g": "a", "seconds": 2e-5 * n} for n in (1, 2, 4)]  # all under 1e-4 s
    rows += [{"n": n, "g": "b", "seconds": 1e-3 * n**2 if n > 1 else 5e-5} for n in (1, 2, 4)]
    got = fitted(rows, "n", "g")
    assert got["a"] == pytest.approx(1.0)
    assert got["b"] == pytest.approx(2.0)  # the point under the floor is left out
    one = fitted([{"n": 1, "g": "c", "seconds": 1.0}], "n", "g")["c"]
    assert one != one  # NaN: one point has no slope


def test_serving_section_alone_and_a_missing_gpu_is_a_clear_error(capsys):
    """``--only serving`` runs that section alone (every strategy batched also with its batches kept
    whole); ``--device cuda`` without CUDA stops with a usage error, no traceback."""
    torch = pytest.importorskip("torch")
    from ttamer.benchmarks import main

    assert main(["--smoke", "--only", "serving"]) == 0
    out = capsys.readouterr().out
    assert "Serving runtime on cpu" in out and "(batch kept whole)" in out and "Solvers on chains" not in out
    if not torch.cuda.is_available():
        with pytest.raises(SystemExit) as e:
            main(["--smoke", "--only", "serving", "--device", "cuda"])
        assert e.value.code == 2 and "torch.cuda.is_available() is False" in capsys.readouterr().err


def test_serving_targets_compare_graphs_with_the_graphed_plain_network():
    """On CUDA the serving section also serves with ``cuda_graphs=True``: its target row is the
    forced runtime's cost over the plain network's, both replayed as CUDA graphs."""
    from ttamer.benchmarks import serving_targets

    def row(mode, run, cost, **kw):
        return {"mode": mode, "run": run, "measured_cost": cost, **kw}

    rows = [row("batch1", "plain network", 1.0), row("batch1", "runtime forced to the last exit", 1.5,
                                                       decision_us_per_exit=3.0),
            row("batch1", "plain network (CUDA graph)", 0.4),
            row("batch1", "runtime forced to the last exit (CUDA graphs)", 0.6, same_decisions=1.0),
            row("batch1", "max-prob (CUDA graphs)", 0.3, same_decisions=0.99),
            row("batch1", "max-prob", 0.7, gap=0.01), row("batched", "plain network", 1.0),
            row("batched", "runtime forced to the last exit", 1.2), row("batched", "max-prob", 0.8, gap=-0.05)]
    got = {t["target"]: t for t in serving_targets(rows, "cuda")}
    graphs = got["runtime forced to the last exit vs the plain network, both as CUDA graphs (batch1)"]
    assert graphs["measured"] == pytest.approx(1.5) and graphs["within"] is None
    same = got["CUDA-graph replays decide as the eager runtime (batch1, least share of queries)"]
    assert same["measured"] == 0.99 and same["within"] is False
    assert got["runtime forced to the last exit vs the plain network (batch1)"]["measured"] == 1.5
    assert got["|measured − simulated cost| of every served strategy (batched)"]["within"] is False
    without = [t["target"] for t in serving_targets(rows[:2] + rows[5:], "cpu")]
    assert len(without) == len(got) - 2 and not any("CUDA graph" in t for t in without)


def test_synchronisations_are_counted_per_exit_step_without_torchs_notice(monkeypatch):
    """``count_synchronisations`` counts torch's warning per synchronising operation over the
    exit steps of the counted run (after a warm-up run) and not the notice torch gives on first
    setting the debug mode, which also speaks of synchronisation (it read 49 syncs in 48 steps on
    a GPU). Here torch's side is played by stand-ins: the mode's notice and one sync per step."""
    import warnings

    import numpy as np
    import torch

    from ttamer.benchmarks import count_synchronisations

    mode = {"now": "default"}

    def set_mode(m):
        mode["now"] = m
        if m == "warn":
            warnings.warn("Synchronization debug mode is a prototype feature and does not yet detect all "
                          "synchronizing operations")

    class Served:
        def __init__(self, last):
            self.last = last

    class Server:
        runs = 0

        def serve(self, inputs, batch_size):
            Server.runs += 1
            last = np.array([2, 0, 1, 2])[: len(inputs)]
            for s in range(0, len(last), batch_size):
                for _ in range(int(last[s : s + batch_size].max()) + 1):
                    if mode["now"] == "warn":
                        warnings.warn("called a synchronizing CUDA operation")
            return Served(last)

    monkeypatch.setattr(torch.cuda, "set_sync_debug_mode", set_mode)
    assert count_synchronisations(Server(), np.zeros((4, 3)), 1) == 1.0
    assert count_synchronisations(Server(), np.zeros((4, 3)), 2) == 1.0
    assert Server.runs == 4  # each count runs once unwatched first
