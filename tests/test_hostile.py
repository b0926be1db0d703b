"""Hostile, huge and interrupted input: a clean one-line TTamerError (exit status 2 from the
command line) or a valid result -- never a traceback, a hang, unbounded memory, a silent
coercion or a lost file.

Hypothesis mutates valid instance JSON and trace files (types flipped, keys dropped or
duplicated, huge numbers, NaN, strings, truncated or flipped bytes); the other tests are the
measured cases one by one.
"""

from __future__ import annotations

import copy
import io
import json
import os
import signal
import stat
import struct
import subprocess
import sys
import time
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from strategies import EXAMPLE_INSTANCE

from ttamer import Instance, solve
from ttamer.solvers.chain_recall import MAX_DP_CELLS
from ttamer.cli import main
from ttamer.core.errors import InstanceError, SolverError, TraceError, TTamerError
from ttamer.core.instance import load_instance, save_instance
from ttamer.solvers.lp import MAX_CHAIN_STATES
from ttamer.core.safeio import TMP_TAG, atomic_write, sweep_stale_temp_files
from ttamer.core.simulate import simulate
from ttamer.earlyexit.traces import Trace, load_trace, save_trace, synthetic_trace
from ttamer.core.validate import MIN_SPLIT_EXAMPLES, check_fraction, check_lam, check_seed, escape_text
from ttamer.workloads import common, registry

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}

BASE = EXAMPLE_INSTANCE


def one_line(exc: BaseException) -> str:
    msg = str(exc)
    assert msg and "\n" not in msg and len(msg) < 1000, msg
    assert "Traceback" not in msg
    return msg


def cli(capsys, *argv: str) -> tuple[int, str, str]:
    """Run ``ttamer ARGV`` in-process; a failure must be one line on stderr with status 2."""
    rc = main(list(argv))
    out, err = capsys.readouterr()
    if rc != 0:
        assert rc == 2, err
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("ttamer ") and ": error: " in lines[0], err
        assert len(lines[0]) < 1000, len(lines[0])
    return rc, out, err


def run_py(code: str, timeout: float = 60, env: dict | None = None, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout,
                          env=env or ENV, cwd=str(ROOT), **kw)


def write(tmp_path: Path, data, name: str = "inst.json") -> Path:
    path = tmp_path / name
    if isinstance(data, bytes):
        path.write_bytes(data)
    elif isinstance(data, str):
        path.write_text(data, encoding="utf-8")
    else:
        path.write_text(json.dumps(data), encoding="utf-8")
    return path


def chain(n: int, k: int = 2, seed: int = 0, name: str = "") -> Instance:
    rng = np.random.default_rng(seed)
    losses = rng.random((n, k))
    mats = rng.random((n - 1, k, k)) + 0.1
    mats /= mats.sum(axis=2, keepdims=True)
    return Instance.chain(list(losses), np.full(k, 1 / k), list(mats), np.full(n, 0.1), name=name)


def star_json(n: int) -> dict:
    nodes = [{"name": "r", "parent": None, "cost": 1.0, "losses": [0.5, 0.1], "initial": [0.5, 0.5]}]
    nodes += [{"name": f"c{i}", "parent": "r", "cost": 1.0, "losses": [0.3, 0.2],
               "transition": [[0.5, 0.5], [0.5, 0.5]]} for i in range(n - 1)]
    return {"name": "star", "nodes": nodes}


# =============================================================================================
# bad instance files through `ttamer solve`
# =============================================================================================
NINES = "9" * 400
BAD_FILES = {
    "binary garbage": bytes(range(256)) * 8,
    "utf-16": json.dumps(BASE).encode("utf-16"),
    "latin-1": json.dumps({**BASE, "name": "caf\u00e9"}, ensure_ascii=False).encode("latin-1"),
    "empty": b"",
    "truncated": json.dumps(BASE)[:-7].encode(),
    "cost 400 digits": json.dumps(BASE).replace('"cost": 1.0', f'"cost": {NINES}', 1).encode(),
    "loss 400 digits": json.dumps(BASE).replace("[0.6, 0.05]", f"[{NINES}, 0.05]", 1).encode(),
    "5000 digits": json.dumps(BASE).replace('"cost": 1.0', '"cost": ' + "7" * 5000, 1).encode(),
    "float overflow": json.dumps(BASE).replace('"cost": 1.0', '"cost": 1e400', 1).encode(),
    "NaN": json.dumps(BASE).replace('"cost": 1.0', '"cost": NaN', 1).encode(),
    "Infinity": json.dumps(BASE).replace('"cost": 1.0', '"cost": Infinity', 1).encode(),
    "nested 200000": b"[" * 200_000 + b"]" * 200_000,
    "nested object": b'{"a":' * 100_000 + b"1" + b"}" * 100_000,
    "top-level list": b"[1, 2, 3]",
    "duplicate top key": json.dumps(BASE)[:-1].encode() + b', "name": "again"}',
    "duplicate node key": json.dumps(BASE).replace('"cost": 1.0', '"cost": 1.0, "cost": 2.0', 1).encode(),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_bad_instance_file_is_one_clean_error(tmp_path, capsys, case):
    path = write(tmp_path, BAD_FILES[case])
    rc, _out, err = cli(capsys, "solve", str(path), "--lam", "0.5")
    assert rc == 2
    assert "inst.json" in err  # names the file
    with pytest.raises(InstanceError):
        load_instance(path)


@pytest.mark.parametrize("case, needle", [
    ("cost 400 digits", "out of range"), ("loss 400 digits", "out of range"), ("5000 digits", "5000 digits"),
    ("utf-16", "UTF-16"), ("latin-1", "UTF-8"), ("nested 200000", "nested too deeply"),
    ("duplicate node key", "duplicate key 'cost'"), ("NaN", "NaN"),
])
def test_bad_instance_messages_say_what_is_wrong(tmp_path, case, needle):
    with pytest.raises(InstanceError, match=needle) as err:
        load_instance(write(tmp_path, BAD_FILES[case]))
    one_line(err.value)


SILENT = {
    "losses as strings": ("node0_losses", ["0.3", "0.1"]),
    "losses as booleans": ("node0_losses", [True, False]),
    "losses mixed bool": ("node0_losses", [True, 0.5]),
    "initial as strings": ("node0_initial", ["0.5", "0.5"]),
    "initial as booleans": ("node0_initial", [True, False]),
    "transition with a string": ("node1_transition", [["0.6", 0.3, 0.1], [0.1, 0.2, 0.7]]),
    "cost as a string": ("node0_cost", "1.0"),
    "cost as a boolean": ("node0_cost", True),
    "skips false": ("skips", False),
    "skips 0": ("skips", 0),
    "skips empty string": ("skips", ""),
    "skips null": ("skips", None),
    "name list": ("name", [1, 2]),
    "name null": ("name", None),
    "name number": ("name", 3),
    "fallback string": ("fallback", "0.5"),
    "fallback boolean": ("fallback", False),
    "parent number": ("node1_parent", 0),
    "ragged transition": ("node1_transition", [[0.6, 0.4], [0.1, 0.2, 0.7]]),
}


def edited(key: str, value):
    data = copy.deepcopy(BASE)
    if key.startswith("node") and key != "nodes":
        idx, field = key[4:].split("_", 1)
        data["nodes"][int(idx)][field] = value
    else:
        data[key] = value
    return data


@pytest.mark.parametrize("case", sorted(SILENT))
def test_no_silent_coercion_in_instances(tmp_path, capsys, case):
    data = edited(*SILENT[case])
    with pytest.raises(InstanceError) as err:
        Instance.from_dict(data)
    one_line(err.value)
    rc, _, _ = cli(capsys, "solve", str(write(tmp_path, data)), "--lam", "0.5")
    assert rc == 2


def test_surrogate_and_control_characters_in_names_are_escaped(tmp_path, capsys):
    data = copy.deepcopy(BASE)
    data["name"] = "\ud800 evil\x1b[2J\u202e\x00"
    data["nodes"][2]["name"] = "exit\x1b]0;pwned\x07"
    data["nodes"][2] = {**data["nodes"][2]}
    data["skips"][0]["to"] = data["nodes"][2]["name"]
    path = write(tmp_path, data)
    rc, out, _ = cli(capsys, "solve", str(path), "--lam", "0.5")
    assert rc == 0
    for bad in ("\x1b", "\u202e", "\x00", "\x07", "\ud800"):
        assert bad not in out
    assert "\\ud800" in out and "\\x1b" in out
    rc, out, _ = cli(capsys, "solve", str(path), "--lam", "0.5", "--json")
    assert rc == 0 and json.loads(out)["instance"] == data["name"]


@pytest.mark.parametrize("lam", ["nan", "inf", "-0.1", "1.5", "1e400"])
def test_bad_lambda_on_the_command_line(tmp_path, capsys, lam):
    rc, _, err = cli(capsys, "solve", str(write(tmp_path, BASE)), "--lam", lam)
    assert rc == 2 and "lam" in err


def test_unexpected_exceptions_still_give_one_line(tmp_path, capsys, monkeypatch):
    solve_module = sys.modules["ttamer.solvers.solve"]

    def broken(*_a, **_k):
        raise IndexError("index 7 is out of bounds")

    monkeypatch.setattr(solve_module, "solve", broken)
    rc, _, err = cli(capsys, "solve", str(write(tmp_path, BASE)), "--lam", "0.5")
    assert rc == 2 and "IndexError" in err and "please report" in err


def test_api_misuse_of_the_instance_constructor():
    with pytest.raises(InstanceError, match="node #0"):
        Instance([1, 2])
    with pytest.raises(InstanceError, match="sequence"):
        Instance.chain(7, [0.5, 0.5], [], [1.0])


def test_missing_file_and_folder(tmp_path, capsys):
    assert cli(capsys, "solve", str(tmp_path / "nope.json"), "--lam", "0.5")[0] == 2
    rc, _, err = cli(capsys, "solve", str(tmp_path), "--lam", "0.5")
    assert rc == 2 and "folder" in err


def test_size_cap_on_instance_files(tmp_path):
    path = write(tmp_path, BASE)
    with pytest.raises(InstanceError, match="above the limit"):
        load_instance(path, max_bytes=100)


@pytest.mark.skipif(not hasattr(os, "mkfifo") or not os.path.exists("/dev/zero"), reason="POSIX only")
def test_fifo_and_dev_zero_are_refused_without_hanging(tmp_path):
    fifo = tmp_path / "pipe.json"
    os.mkfifo(fifo)
    code = ("import sys; from ttamer.cli import main; "
            "sys.exit(main(['solve', sys.argv[1], '--lam', '0.5']))")
    for target, needle in ((fifo, "FIFO"), ("/dev/zero", "device")):
        res = subprocess.run([sys.executable, "-c", code, str(target)], capture_output=True, text=True,
                             timeout=60, env=ENV, cwd=str(ROOT))
        assert res.returncode == 2, res.stderr
        assert needle in res.stderr and "Traceback" not in res.stderr
        assert len(res.stderr.strip().splitlines()) == 1
    with pytest.raises(TraceError, match="not a regular file"):
        load_trace(fifo)


def test_ascii_terminal_does_not_crash_a_valid_solve(tmp_path):
    path = write(tmp_path, {**BASE, "name": "caf\u00e9 \u03bb"})
    res = subprocess.run([sys.executable, "-m", "ttamer", "solve", str(path), "--lam", "0.5"],
                         capture_output=True, timeout=60, cwd=str(ROOT),
                         env={**ENV, "PYTHONIOENCODING": "ascii", "LC_ALL": "C"})
    assert res.returncode == 0, res.stderr
    out = res.stdout.decode("ascii")
    assert "\\u03bb" in out and "optimal expected trade-off" in out


# =============================================================================================
# sizes: refusals are computed before the work and are short
# =============================================================================================
@pytest.mark.parametrize("flags", [["--method", "exhaustive"], ["--no-recall"]])
def test_huge_star_refused_with_a_short_message(tmp_path, capsys, flags):
    path = write(tmp_path, star_json(10_000))
    rc, _, err = cli(capsys, "solve", str(path), "--lam", "0.5", *flags)
    assert rc == 2 and "more than 10^" in err and len(err) < 600


def test_huge_chain_exhaustive_refused_quickly():
    inst = chain(100_000)
    for recall in (True, False):
        t0 = time.perf_counter()
        with pytest.raises(SolverError, match=r"more than 10\^") as err:
            solve(inst, 0.5, recall=recall, method="exhaustive")
        assert time.perf_counter() - t0 < 30 and len(one_line(err.value)) < 600


def test_message_stays_short_at_5000_nodes():
    inst = chain(5000)
    with pytest.raises(SolverError) as err:
        solve(inst, 0.5, method="exhaustive")
    assert len(one_line(err.value)) < 600
    from ttamer.solvers.lp import exhaustive_mdp

    with pytest.raises(SolverError) as err:
        exhaustive_mdp(chain(40, 3), max_states=100)
    assert len(one_line(err.value)) < 600


def test_lp_and_dp_refuse_big_chains_before_working():
    inst = chain(1000)
    t0 = time.perf_counter()
    with pytest.raises(SolverError, match="MAX_CHAIN_STATES"):
        solve(inst, 0.5, method="lp")
    big = chain(5000)
    with pytest.raises(SolverError, match="MAX_DP_CELLS"):
        solve(big, 0.5, method="dp")
    assert time.perf_counter() - t0 < 10
    assert MAX_CHAIN_STATES < 2_000_000 and MAX_DP_CELLS <= 50_000_000
    from ttamer.solvers.chain_recall import solve_chain_recall

    value, _ = solve_chain_recall(chain(30), 0.5, max_cells=10**6)  # the override raises the limit
    assert np.isfinite(value)
    with pytest.raises(SolverError, match="max_cells=10"):
        solve_chain_recall(chain(30), 0.5, max_cells=10)


def test_lp_chain_matches_dp_after_the_sparse_rewrite():
    inst = chain(12, 3, seed=4)
    lp = solve(inst, 0.7, method="lp")
    dp = solve(inst, 0.7, method="dp")
    assert lp.value == pytest.approx(dp.value, abs=1e-7)


def test_simulation_runs_in_bounded_chunks():
    inst = chain(8, 2, seed=1)
    pol = solve(inst, 0.6).policy
    whole = simulate(pol, 3000, seed=2)
    chunked = simulate(pol, 3000, seed=2, max_cells=8 * 100)
    assert "states" in whole.samples and "states" not in chunked.samples
    assert len(chunked.samples["tradeoff"]) == 3000
    assert abs(whole.tradeoff - chunked.tradeoff) < 5 * (whole.tradeoff_se + chunked.tradeoff_se) + 1e-12
    big = chain(5000)
    pol = solve(big, 0.9, recall=False).policy
    res = simulate(pol, 500, seed=0, max_cells=200_000)  # chunks of 40 rollouts
    assert res.n == 500 and np.isfinite(res.tradeoff) and "states" not in res.samples


# =============================================================================================
# arguments of the Python API
# =============================================================================================
@pytest.fixture(scope="module")
def small():
    return Instance.from_dict(BASE)


@pytest.mark.parametrize("lam", ["0.5", True, False, None, 10**400, -(10**400), float("nan"),
                                 float("inf"), -0.01, 1.01, [0.5], np.bool_(True), 1 + 0j])
def test_lambda_is_checked_the_same_way_everywhere(small, lam):
    with pytest.raises(TTamerError, match="lam") as err:
        solve(small, lam)
    one_line(err.value)
    pol = solve(small, 0.5).policy
    with pytest.raises(TTamerError, match="lam"):
        check_lam(lam)
    from ttamer.solvers.lp import solve_lp

    with pytest.raises(TTamerError, match="lam"):
        solve_lp(small, lam)
    assert pol.lam == 0.5


@pytest.mark.parametrize("recall", ["no", 0, 1, None, "False"])
def test_recall_must_be_a_bool(small, recall):
    with pytest.raises(TTamerError, match="recall"):
        solve(small, 0.5, recall=recall)


@pytest.mark.parametrize("n, seed", [(0, 0), (-5, 0), (1.5, 0), ("10", 0), (True, 0), (10**400, 0),
                                     (10, -1), (10, 1.5), (10, "3"), (10, None), (10, True)])
def test_simulate_arguments(small, n, seed):
    pol = solve(small, 0.5).policy
    with pytest.raises(TTamerError) as err:
        simulate(pol, n, seed=seed)
    one_line(err.value)


def test_simulate_needs_a_policy(small):
    with pytest.raises(TTamerError, match="Policy"):
        simulate(small, 10)
    res = simulate(solve(small, 0.5).policy, 1, seed=np.random.default_rng(0))
    assert res.n == 1 and np.isfinite(res.tradeoff)


@pytest.mark.parametrize("parents, skips, needle", [
    ([None, 0.7, 1], (), "parents\\[1\\]"),
    ([None, True, 1], (), "parents\\[1\\]"),
    ([None, "0", 1], (), "unknown node"),
    ([None, 0, 7], (), "out of range"),
    ([None, 0, 1], [(0, 9, 1.0)], "out of range"),
    ([None, 0, 1], [(0.0, 2, 1.0)], "skip #0"),
    ([None, 0, 1], [(0, 2)], "skip #0"),
])
def test_tree_builder_checks_positions(parents, skips, needle):
    mats = [[0.5, 0.5], [[0.5, 0.5], [0.5, 0.5]], [[0.5, 0.5], [0.5, 0.5]]]
    with pytest.raises(InstanceError, match=needle) as err:
        Instance.tree(parents, [[0.1, 0.2]] * 3, mats, [1.0] * 3, skips=skips)
    one_line(err.value)


def test_tree_builder_odd_containers():
    with pytest.raises(InstanceError):
        Instance.tree(5, [[0.1]], [[1.0]], [1.0])
    with pytest.raises(InstanceError):
        Instance.tree([None], [[0.1]], [[1.0]], [1.0], names=[3])
    with pytest.raises(InstanceError):
        Instance.tree([None], [[0.1]], [[1.0]], [1.0], name=["x"])


@pytest.fixture(scope="module")
def trace():
    return synthetic_trace(60, 3, 3, seed=0)


@pytest.mark.parametrize("idx", [[1.7], [1.0], ["1"], [None], [], [[1, 2]], [2**64], np.array([0.5])])
def test_subset_takes_integer_indices_only(trace, idx):
    with pytest.raises(TraceError) as err:
        trace.subset(idx)
    one_line(err.value)


@pytest.mark.parametrize("fraction, seed", [(0.999999, 0), (0.000001, 0), (0.0, 0), (1.0, 0), (float("nan"), 0),
                                            ("0.5", 0), (True, 0), (0.5, -1), (0.5, 1.5), (0.5, "0")])
def test_split_arguments(trace, fraction, seed):
    with pytest.raises(TraceError) as err:
        trace.split(fraction, seed)
    one_line(err.value)


def test_split_minimum_each_side(trace):
    cal, test = trace.split(0.5, 3)
    assert cal.n_examples == test.n_examples == 30
    with pytest.raises(TraceError, match=str(MIN_SPLIT_EXAMPLES)):
        trace.split(0.3, 0)  # 18 calibration examples
    assert trace.split(0.3, 0, min_each=5)[0].n_examples == 18


def test_evaluate_trace_rejects_negative_seed(trace):
    from ttamer.earlyexit.evaluation import evaluate_trace

    with pytest.raises(TTamerError, match="seed"):
        evaluate_trace(trace, seed=-1, n_boot=0)


@pytest.mark.parametrize("labels", [[2**63], [2**64 - 1], [-1], [1.5], ["1"], [True], [float("inf")]])
def test_build_labels_are_never_wrapped_or_coerced(labels):
    probs = np.full((1, 2, 3), 1 / 3)
    with pytest.raises(TraceError, match="labels") as err:
        Trace.build(probs, labels, [1.0, 1.0])
    assert "-9223372036854775808" not in one_line(err.value)


@pytest.mark.parametrize("probs, cost", [
    ([[[0.5, 0.5]], [[0.5]]], [1.0]),                      # ragged
    ([[["0.5", "0.5"]]], [1.0]),                            # strings
    ([[[True, False]]], [1.0]),                             # booleans
    ([[[0.5, 0.5]]], ["1"]),                                # cost as string
    ([[[0.5, 0.5]]], [[1.0], [2.0, 3.0]]),                  # ragged cost
    ([[[0.5, 0.5]]], [10**400]),                            # huge cost
])
def test_build_refuses_ragged_and_non_numbers(probs, cost):
    with pytest.raises(TraceError) as err:
        Trace.build(probs, [0], cost)
    one_line(err.value)


@pytest.mark.parametrize("path", [None, 3, b"x.npz", ["a"], "bad\x00name"])
def test_load_trace_path_types(path):
    with pytest.raises(TraceError) as err:
        load_trace(path)
    one_line(err.value)


def test_validators_are_shared(trace):
    assert check_seed(np.int64(3)) == 3 and check_fraction(0.25) == 0.25
    with pytest.raises(TTamerError, match="at least"):
        check_fraction(0.999999, n=1000)
    assert escape_text("a\x1b[0m\u202eb\ud800") == "a\\x1b[0m\\u202eb\\ud800"


# =============================================================================================
# trace files: headers checked before allocation
# =============================================================================================
def npy_header(shape, dtype="<f4") -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": dtype, "fortran_order": False, "shape": shape})
    return buf.getvalue()


def npz(members: dict[str, bytes], compression=zipfile.ZIP_STORED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def arrays_of(tr: Trace) -> dict[str, bytes]:
    out = {}
    for key, arr in (("probs", tr.probs), ("labels", tr.labels), ("cost", tr.cost),
                     ("meta", np.array(json.dumps(tr.meta)))):
        buf = io.BytesIO()
        np.save(buf, arr)
        out[f"{key}.npy"] = buf.getvalue()
    return out


def test_npz_header_declaring_huge_shape_is_refused(tmp_path, trace):
    members = arrays_of(trace)
    members["probs.npy"] = npy_header((10**12, 4, 3)) + b"\0" * 2000
    path = write(tmp_path, npz(members), "bomb.npz")
    assert path.stat().st_size < 10_000
    with pytest.raises(TraceError, match="declares shape") as err:
        load_trace(path)
    one_line(err.value)
    members["probs.npy"] = npy_header((60, 3, 3)) + b"\0" * 100  # declares more than it holds
    with pytest.raises(TraceError, match="holds only"):
        load_trace(write(tmp_path, npz(members), "short.npz"))


def raw_npy(header: str, version: tuple[int, int] = (1, 0)) -> bytes:
    """A ``.npy`` member with ``header`` as its header text, as it is (no check)."""
    text = header.encode("latin-1")
    length = struct.pack("<H" if version == (1, 0) else "<I", len(text))
    return b"\x93NUMPY" + bytes(version) + length + text + bytes(64)


@pytest.mark.parametrize("header, detail", [
    ("{garbage}     \n]", "it is not a Python dictionary literal"),        # tokenize.TokenError
    ("{'a':", "it is not a Python dictionary literal"),                    # tokenize.TokenError
    ("-" * 5000 + "1", "it is not a Python dictionary literal"),           # RecursionError
    ("{'descr': '<,4', 'fortran_order': False, 'shape': (3,), }", "it is not a Python dictionary literal"),
    ("{garbage}", "it is not a Python dictionary literal"),                # ValueError
    ("{'descr': '<f4', 'shape': (3,)}", "correct keys"),
], ids=["token-error", "unclosed", "deep", "syntax", "name", "keys"])
def test_npy_header_that_cannot_be_parsed_names_the_member(tmp_path, trace, header, detail):
    members = {**arrays_of(trace), "probs.npy": raw_npy(header)}
    with pytest.raises(TraceError, match=rf"^'[^']*bad\.npz': member 'probs\.npy' has no valid \.npy header "
                                         rf"\(.*{detail}") as err:
        load_trace(write(tmp_path, npz(members), "bad.npz"))
    one_line(err.value)


def test_npy_format_version_is_checked(tmp_path, trace):
    head = "{'descr': '<i8', 'fortran_order': False, 'shape': (60,), }"
    members = {**arrays_of(trace), "labels.npy": raw_npy(head, (9, 9))}
    with pytest.raises(TraceError, match=r"member 'labels\.npy' is in \.npy format version 9\.9; versions 1\.0, "
                                         r"2\.0 and 3\.0 are read"):
        load_trace(write(tmp_path, npz(members), "v9.npz"))


@pytest.mark.parametrize("shape, match", [
    ((-1, 3, 3), r"declares shape \(-1, 3, 3\) of float32: dimension 0 is -1, not a size"),
    ((60, True, 3), r"declares shape \(60, True, 3\) of float32: dimension 1 is True, not a size"),
    ((0, 10**12, 10**12), r"declares shape \(0, 1000000000000, 1000000000000\) of float32 \(no data, but its "
                          r"other dimensions span more than 10\^24 bytes\), above the limit"),
])
def test_npz_header_shapes_name_the_member_and_the_fault(tmp_path, trace, shape, match):
    members = {**arrays_of(trace), "probs.npy": npy_header(shape) + bytes(60 * 9 * 4)}
    with pytest.raises(TraceError, match=rf"shape\.npz': member 'probs\.npy' {match}") as err:
        load_trace(write(tmp_path, npz(members), "shape.npz"))
    assert "numpy" not in one_line(err.value) and "arr.size" not in str(err.value)


@pytest.mark.parametrize("compression", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED])
def test_npz_member_holding_more_than_its_header_declares_is_refused(tmp_path, trace, compression):
    members = arrays_of(trace)
    members["cost.npy"] += bytes(16)
    with pytest.raises(TraceError, match=r"member 'cost\.npy' holds 16 bytes after its data \(shape \(3,\) of "
                                         r"float64, 24 bytes\): the file is corrupt"):
        load_trace(write(tmp_path, npz(members, compression), "long.npz"))
    members = arrays_of(trace)
    members["cost.npy"] = members["cost.npy"][:-8]
    with pytest.raises(TraceError, match=r"member 'cost\.npy' declares shape \(3,\) of float64 \(24 bytes\) but "
                                         r"holds only 16 bytes of data"):
        load_trace(write(tmp_path, npz(members, compression), "short.npz"))


@pytest.mark.parametrize("max_bytes", ["x", -1, 0, 1.5, True, None, 2.0**40])
def test_load_trace_max_bytes_is_an_integer(tmp_path, trace, max_bytes):
    path = tmp_path / "t.npz"
    save_trace(path, trace)
    with pytest.raises(TraceError, match=r"^load_trace: max_bytes must be") as err:
        load_trace(path, max_bytes=max_bytes)
    one_line(err.value)
    assert load_trace(path, max_bytes=np.int64(2**30)).n_examples == trace.n_examples


@pytest.mark.parametrize("compressed", ["yes", 1, 0, None, "False"])
def test_save_trace_compressed_is_a_flag(tmp_path, trace, compressed):
    with pytest.raises(TraceError, match=r"^save_trace: compressed must be True or False"):
        save_trace(tmp_path / "t.npz", trace, compressed=compressed)
    assert not (tmp_path / "t.npz").exists()


@pytest.mark.parametrize("node, match", [
    (None, r"^model index \(of 3 models, or a name\) must be an integer, got None$"),
    (1.7, r"must be an integer, got 1\.7"), (1.0, r"must be an integer, got 1\.0"),
    (True, r"must be an integer, got True"), (np.bool_(False), r"must be an integer"),
    (-1, r"^model index \(of 3 models, or a name\) must be >= 0, got -1$"), (3, r"must be <= 2, got 3"),
    pytest.param(10**100, r"must be <= 2, got <an integer with 101 digits>$", id="huge"),
])
def test_exit_positions_are_never_coerced_or_wrapped(trace, node, match):
    for call in (trace.node_id, trace.path) + ((trace.reference,) if node is not None else ()):
        with pytest.raises(TTamerError, match=match) as err:
            call(node)
        one_line(err.value)
    assert trace.node_id(np.int64(2)) == 2 and trace.path("exit1") == [0, 1]


@pytest.mark.parametrize("idx, position, value", [([-1, -2], 0, -1), ([0, 5, -60], 2, -60), ([3, 60], 1, 60),
                                                  (np.array([1, 2**63], np.uint64), 1, 2**63)])
def test_subset_refuses_negative_and_out_of_range_indices(trace, idx, position, value):
    with pytest.raises(TraceError, match=rf"^subset: index {value} at position {position} is outside 0\.\.59 "
                                         rf"\(60 examples; a negative index is not counted from the end\)$"):
        trace.subset(idx)


def test_subset_takes_a_boolean_mask(trace):
    mask = np.arange(60) % 3 == 0
    assert trace.subset(mask).n_examples == 20
    assert trace.subset(list(mask)).n_examples == 20
    with pytest.raises(TraceError, match=r"mask has shape \(59,\)"):
        trace.subset(mask[1:])


def test_deflate_bomb_is_refused_from_the_zip_header(tmp_path, trace):
    members = arrays_of(trace)
    members["probs.npy"] = npy_header((4 * 2**20, 3, 1)) + bytes(12 * 2**20 * 4)
    path = write(tmp_path, npz(members, zipfile.ZIP_DEFLATED), "deflate.npz")
    assert path.stat().st_size < 200_000
    with pytest.raises(TraceError, match="MAX_TRACE_BYTES") as err:
        load_trace(path, max_bytes=10 * 2**20)
    one_line(err.value)


def test_cache_serves_only_its_own_valid_entry(tmp_path, monkeypatch):
    calls = []
    real = synthetic_trace(40, 3, 2, seed=1)

    def fake_generate(workload, profile, **kw):
        calls.append(kw)
        return common.WorkloadResult(Trace.build(real.probs, real.labels, real.cost, dict(real.meta)),
                                     "a", np.arange(2), "b", np.arange(5))

    monkeypatch.setattr(registry, "generate", fake_generate)
    path = registry.trace_path("vision", seed=3, cache=tmp_path, n_train=10)
    # a valid but foreign trace (synthetic) at the key path is not served
    save_trace(path, synthetic_trace(30, 3, 2, seed=9))
    with pytest.warns(UserWarning, match="regenerating"):
        tr = registry.get_trace("vision", seed=3, cache=tmp_path, n_train=10)
    assert len(calls) == 1 and tr.meta["cache_key"]["seed"] == 3
    assert registry.get_trace("vision", seed=3, cache=tmp_path, n_train=10).n_examples == 40
    assert len(calls) == 1  # served from the cache now
    # a corrupt entry is regenerated
    path.write_bytes(path.read_bytes()[:100])
    with pytest.warns(UserWarning, match="cannot be read"):
        registry.get_trace("vision", seed=3, cache=tmp_path, n_train=10)
    assert len(calls) == 2 and load_trace(path).n_examples == 40
    # a bomb in the cache is refused without allocating, then regenerated
    path.write_bytes(npz({**arrays_of(real), "probs.npy": npy_header((10**12, 4, 3)) + b"\0" * 100}))
    with pytest.warns(UserWarning):
        registry.get_trace("vision", seed=3, cache=tmp_path, n_train=10)
    assert len(calls) == 3
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        registry.get_trace("vision", seed=3, cache=tmp_path, n_train=10)


def test_trace_meta_is_escaped_on_the_terminal(tmp_path, capsys):
    tr = synthetic_trace(120, 3, 3, seed=1)
    tr.meta.update(model="\x1b[31mred\x1b[0m\u202e", dataset="nul\x00 here", cost_unit="\x07")
    path = tmp_path / "evil.npz"
    save_trace(path, tr)
    rc, out, _ = cli(capsys, "evaluate", str(path), "--bootstrap", "0")
    assert rc == 0
    for bad in ("\x1b", "\u202e", "\x00", "\x07"):
        assert bad not in out
    assert "\\x1b[31mred" in out
    assert "\x1b" not in repr(load_trace(path)).replace("\\x1b", "")


@pytest.mark.parametrize("argv, needle", [
    (["--seed", "-5"], "--seed"), (["--calibration-fraction", "0.999999"], "at least"),
    (["--calibration-fraction", "nan"], "finite"), (["--bootstrap", "-1"], "--bootstrap"),
])
def test_evaluate_arguments(tmp_path, capsys, trace, argv, needle):
    path = tmp_path / "t.npz"
    save_trace(path, trace)
    rc, _, err = cli(capsys, "evaluate", str(path), *argv)
    assert rc == 2 and needle in err


# =============================================================================================
# writes that lose nothing
# =============================================================================================
def temps(folder: Path) -> list[str]:
    return [p.name for p in folder.iterdir() if TMP_TAG in p.name]


SLOW_SAVE = """
import signal, sys, time, numpy as np
# Python's own Ctrl-C handler, even when started from a shell that ignores SIGINT in background jobs
signal.signal(signal.SIGINT, signal.default_int_handler)
from ttamer.earlyexit.traces import save_trace, synthetic_trace
real = np.savez
def slow(fh, **arrays):
    fh.write(b"x" * 100000); fh.flush()
    open(sys.argv[2], "w").close()   # tell the parent we are writing
    for _ in range(6000):  # short sleeps: a signal that another thread (a BLAS worker) took is
        time.sleep(0.01)   # handled at the next one, as while writing, not after one long sleep
np.savez = slow
save_trace(sys.argv[1], synthetic_trace(50, 3, 3, seed=7))
"""


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM, signal.SIGINT])
def test_killed_save_keeps_the_old_file(tmp_path, trace, sig):
    path = tmp_path / "t.npz"
    save_trace(path, trace)
    before = path.read_bytes()
    flag = tmp_path / "writing.flag"
    proc = subprocess.Popen([sys.executable, "-c", SLOW_SAVE, str(path), str(flag)], env=ENV, cwd=str(ROOT),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 60
        while not flag.exists() and time.time() < deadline and proc.poll() is None:
            time.sleep(0.05)
        assert flag.exists(), proc.stderr.read() if proc.poll() is not None else "child never wrote"
        assert len(temps(tmp_path)) == 1
        proc.send_signal(sig)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode != 0
    err = proc.stderr.read()
    if sig == signal.SIGINT:  # a plain script interrupted: Python's own KeyboardInterrupt
        assert err.rstrip().endswith(b"KeyboardInterrupt")
    else:
        assert proc.returncode == -sig and b"Traceback" not in err
    assert path.read_bytes() == before
    if sig == signal.SIGKILL:
        assert len(temps(tmp_path)) == 1  # nobody could clean up ...
        save_trace(tmp_path / "other.npz", trace)
    assert temps(tmp_path) == []  # ... until the next save in the folder sweeps it
    assert np.array_equal(load_trace(path).probs, trace.probs)


def test_signal_with_the_programs_own_handler(tmp_path):
    target = tmp_path / "f.bin"
    target.write_bytes(b"old")
    seen = []
    old = signal.signal(signal.SIGTERM, lambda signum, _frame: seen.append(signum))
    try:
        def writer(fh):
            fh.write(b"new, half written")
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(1)

        with pytest.raises(TTamerError, match="interrupted by signal"):
            atomic_write(target, writer)
        assert signal.getsignal(signal.SIGTERM) is not None and seen == [signal.SIGTERM]
    finally:
        signal.signal(signal.SIGTERM, old)
    assert target.read_bytes() == b"old" and temps(tmp_path) == []
    atomic_write(target, "new")
    assert target.read_text() == "new"


def test_temp_files_of_live_writers_are_kept(tmp_path):
    from ttamer.core.safeio import temp_path

    mine = temp_path(tmp_path / "x.npz")
    mine.write_bytes(b"in progress")
    dead = temp_path(tmp_path / "y.npz", pid=999999999)
    dead.write_bytes(b"left by kill -9")
    lookalike = tmp_path / f".z.npz.{TMP_TAG}-999999999-abcd1234"  # a user's file: not made by ttamer
    lookalike.write_bytes(b"user data")
    other = tmp_path / ".hidden"
    other.write_bytes(b"not ours")
    assert sweep_stale_temp_files(tmp_path) == [dead]
    assert mine.exists() and other.exists() and lookalike.exists()


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_permissions_follow_the_umask(tmp_path, trace, small, umask, mode):
    old = os.umask(umask)
    try:
        save_trace(tmp_path / "t.npz", trace)
        save_instance(small, tmp_path / "i.json")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "t.npz").stat().st_mode) == mode
    assert stat.S_IMODE((tmp_path / "i.json").stat().st_mode) == mode


def test_save_instance_is_atomic_and_names_the_target(tmp_path, small, monkeypatch):
    path = tmp_path / "i.json"
    save_instance(small, path)
    before = path.read_bytes()

    def fail(_fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", fail)
    with pytest.raises(InstanceError, match="No space left") as err:
        save_instance(Instance.from_dict({**BASE, "name": "other"}), path)
    assert "i.json" in str(err.value) and TMP_TAG not in str(err.value)
    assert path.read_bytes() == before and temps(tmp_path) == []
    with pytest.raises(TraceError, match="t.npz"):
        save_trace(tmp_path / "t.npz", synthetic_trace(30, 2, 2))
    assert temps(tmp_path) == [] and not (tmp_path / "t.npz").exists()
    monkeypatch.undo()
    with pytest.raises(InstanceError, match="does not exist"):
        save_instance(small, tmp_path / "missing" / "i.json")
    with pytest.raises(TTamerError, match="folder"):
        atomic_write(tmp_path, b"x")


def test_instance_round_trip_through_the_safe_writer(tmp_path, small):
    path = tmp_path / "i.json"
    save_instance(small, path)
    again = load_instance(path)
    assert solve(again, 0.5).value == pytest.approx(solve(small, 0.5).value)


# =============================================================================================
# hypothesis: mutated instance files and trace files
# =============================================================================================
NUMERIC_PATHS = [("nodes", 0, "cost"), ("nodes", 1, "cost"), ("nodes", 0, "losses", 0), ("nodes", 1, "losses", 2),
                 ("nodes", 0, "initial", 1), ("nodes", 1, "transition", 0, 1), ("nodes", 2, "transition", 2, 0),
                 ("skips", 0, "cost"), ("nodes", 0, "losses"), ("nodes", 1, "transition")]
STRING_PATHS = [("nodes", 0, "name"), ("nodes", 1, "parent"), ("skips", 0, "from"), ("skips", 0, "to"), ("name",)]
RAW_BAD = {"HUGE": "9" * 400, "GIANT": "1" * 5000, "OVER": "1e999", "NAN": "NaN", "NINF": "-Infinity"}
BAD_VALUES = st.sampled_from(["0.3", "", True, False, None, {}, {"a": 1}, -1.0, -(10**6), "RAW:HUGE",
                              "RAW:GIANT", "RAW:OVER", "RAW:NAN", "RAW:NINF", [[[0.5]]]])
BAD_NAMES = st.sampled_from([1, 0.5, True, [], {}, ["exit1"]])


def set_at(data, path, value):
    for key in path[:-1]:
        data = data[key]
    data[path[-1]] = value


def dumps(data) -> str:
    text = json.dumps(data)
    for tag, raw in RAW_BAD.items():
        text = text.replace(f'"RAW:{tag}"', raw)
    return text


@st.composite
def mutated_instance(draw):
    """(text of a mutated BASE, True if it must be refused / None if either outcome is fine)."""
    data = copy.deepcopy(BASE)
    kind = draw(st.sampled_from(["number", "name", "drop", "duplicate", "unknown", "truncate", "byte", "none"]))
    expect = True
    if kind == "number":
        set_at(data, draw(st.sampled_from(NUMERIC_PATHS)), draw(BAD_VALUES))
    elif kind == "name":
        set_at(data, draw(st.sampled_from(STRING_PATHS)), draw(BAD_NAMES))
    elif kind == "drop":
        node = draw(st.integers(0, 2))
        field = draw(st.sampled_from(sorted(data["nodes"][node])))
        del data["nodes"][node][field]
        expect = None if (node, field) == (0, "parent") else True
    elif kind == "unknown":
        data["nodes"][draw(st.integers(0, 2))][draw(st.sampled_from(["costs", "Losses", "prior"]))] = 1.0
    text = dumps(data)
    if kind == "duplicate":
        key = draw(st.sampled_from(['"cost": ', '"name": ', '"losses": ', '"parent": ']))
        at = text.index(key)
        text = text[:at] + key + '1.0, ' + text[at:]
    elif kind == "truncate":
        text = text[: draw(st.integers(0, len(text) - 2))]
    elif kind == "byte":
        pos = draw(st.integers(0, len(text) - 1))
        char = draw(st.sampled_from(["\x00", "\ufeff", "'", "}", "]", ",", "\\", "\x1b", "\u202e", "9"]))
        text = text[:pos] + char + text[pos + 1:]
        expect = None
    elif kind == "none":
        expect = False
    return text, expect


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    return tmp_path_factory.mktemp("hostile")


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=mutated_instance(), encoding=st.sampled_from(["utf-8", "utf-8", "utf-8-sig", "utf-16", "latin-1"]))
def test_mutated_instance_files(scratch, case, encoding):
    text, expect = case
    try:
        raw = text.encode(encoding)
    except UnicodeEncodeError:
        raw = text.encode("utf-8")
        encoding = "utf-8"
    if encoding == "utf-16" or (encoding == "latin-1" and raw != text.encode("utf-8")):
        expect = True  # only UTF-8 is read
    path = scratch / "mutant.json"
    path.write_bytes(raw)
    try:
        inst = load_instance(path)
    except InstanceError as exc:
        assert expect is not False, f"valid instance refused: {exc}"
        assert "mutant.json" in one_line(exc)
        return
    assert expect is not True, f"accepted a hostile instance: {text[:300]!r}"
    for recall in (True, False):
        assert np.isfinite(solve(inst, 0.5, recall=recall).value)
    assert json.loads(json.dumps(inst.to_dict())) == inst.to_dict()


TRACE_BASE = synthetic_trace(25, 3, 3, seed=11)


def _npy(arr) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr)
    return buf.getvalue()


@st.composite
def mutated_trace(draw):
    members = arrays_of(TRACE_BASE)
    kind = draw(st.sampled_from(["array", "meta", "drop", "truncate", "flip", "extra", "none"]))
    expect = True
    if kind == "array":
        key, arr = draw(st.sampled_from([
            ("probs", TRACE_BASE.probs.astype(np.float64)), ("probs", TRACE_BASE.probs[:, :, :2]),
            ("probs", np.where(TRACE_BASE.probs > 0.5, np.float32("nan"), TRACE_BASE.probs)),
            ("probs", -TRACE_BASE.probs), ("probs", TRACE_BASE.probs.astype(str)),
            ("probs", TRACE_BASE.probs[:, :, 0]), ("labels", TRACE_BASE.labels.astype(np.float64)),
            ("labels", TRACE_BASE.labels + 7), ("labels", TRACE_BASE.labels.astype(np.uint64) + 2**63),
            ("labels", TRACE_BASE.labels[:-1]), ("labels", (TRACE_BASE.labels > 0)),
            ("cost", -TRACE_BASE.cost), ("cost", TRACE_BASE.cost * np.inf), ("cost", TRACE_BASE.cost[:2]),
            ("cost", TRACE_BASE.cost.astype(np.float32)), ("cost", np.array(["1", "2", "3"])),
        ]))
        members[f"{key}.npy"] = _npy(arr)
    elif kind == "meta":
        text = draw(st.sampled_from([
            "{", "[1, 2]", '{"model": "m", "model": "n"}', '"just a string"', "NaN",
            json.dumps({**TRACE_BASE.meta, "exit_names": ["a", "a", "b"]}),
            json.dumps({**TRACE_BASE.meta, "exit_names": [1, 2, 3]}),
            json.dumps(TRACE_BASE.meta)[:-1] + ', "seed": ' + "9" * 5000 + "}",
        ]))
        members["meta.npy"] = _npy(np.array(text))
        if draw(st.booleans()):
            members["meta.npy"] = _npy(np.arange(3))
    elif kind == "drop":
        del members[draw(st.sampled_from(sorted(members)))]
    elif kind == "extra":
        members["junk.npy"] = _npy(np.arange(5))
    elif kind == "none":
        expect = False
    raw = npz(members, draw(st.sampled_from([zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED])))
    if kind == "truncate":
        raw = raw[: draw(st.integers(0, len(raw) - 1))]
    elif kind == "flip":
        pos = draw(st.integers(0, len(raw) - 1))
        raw = raw[:pos] + bytes([raw[pos] ^ draw(st.integers(1, 255))]) + raw[pos + 1:]
        expect = None
    return raw, expect


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=mutated_trace())
def test_mutated_trace_files(scratch, case):
    raw, expect = case
    path = scratch / "mutant.npz"
    path.write_bytes(raw)
    try:
        tr = load_trace(path)
    except TraceError as exc:
        assert expect is not False, f"valid trace refused: {exc}"
        assert "mutant.npz" in one_line(exc)
        return
    assert expect is not True, "accepted a hostile trace"
    assert tr.probs.dtype == np.float32 and tr.labels.dtype == np.int64 and (tr.labels >= 0).all()
