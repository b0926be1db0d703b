"""The command line: ``ttamer solve`` (and ``python -m ttamer``)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from test_instance import EXAMPLE, edited

from ttamer import Instance, solve
from ttamer.cli import main


@pytest.fixture
def example(tmp_path):
    path = tmp_path / "three.json"
    path.write_text(json.dumps(EXAMPLE))
    return path


@pytest.mark.parametrize("recall", [True, False])
def test_solve_json_prints_the_value(example, capsys, recall):
    argv = ["solve", str(example), "--lam", "0.9", "--json"] + ([] if recall else ["--no-recall"])
    assert main(argv) == 0
    out = json.loads(capsys.readouterr().out)
    expected = solve(Instance.from_dict(EXAMPLE), 0.9, recall=recall).value
    assert out["value"] == pytest.approx(expected, abs=1e-12)
    assert out["recall"] is recall and out["method"] == "dp"


def test_solve_methods_agree(example, capsys):
    values = []
    for method in ("auto", "exhaustive"):
        assert main(["solve", str(example), "--lam", "0.7", "--method", method, "--json"]) == 0
        values.append(json.loads(capsys.readouterr().out)["value"])
    assert values[0] == pytest.approx(values[1], abs=1e-12)


def test_solve_text_shows_value_and_policy(example, capsys):
    assert main(["solve", str(example), "--lam", "0.95"]) == 0
    out = capsys.readouterr().out
    assert "optimal expected trade-off" in out and "exit1" in out and "stop" in out


def test_solve_text_cuts_a_long_policy_short(tmp_path, capsys):
    """A large instance's policy is cut to its first lines on the terminal; --json keeps it whole."""
    from ttamer.cli.main import POLICY_LINE_CHARS, POLICY_LINES

    n = 3 * POLICY_LINES
    nodes = [{"name": "root", "parent": None, "cost": 1.0, "losses": [0.1 * s for s in range(1, 9)],
              "initial": [0.125] * 8}]
    nodes += [{"name": f"leaf{i}", "parent": "root", "cost": 0.1, "losses": [0.5], "transition": [[1.0]] * 8}
              for i in range(n)]
    path = tmp_path / "star.json"
    path.write_text(json.dumps({"name": "star", "nodes": nodes}))
    assert main(["solve", str(path), "--lam", "0.5"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 + POLICY_LINES + 2 and max(map(len, lines)) <= POLICY_LINE_CHARS
    assert lines[-2] == f"... {n + 2 - POLICY_LINES:,} more lines" and "--json" in lines[-1]
    assert main(["solve", str(path), "--lam", "0.5", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert len(out["policy"].splitlines()) == n + 2 and len(out["indices"]) == n + 1


@pytest.mark.parametrize("data, culprit", [
    (edited(node1_transition=[[0.6, 0.3, 0.2], [0.1, 0.2, 0.7]]), "'exit2', field 'transition'"),
    (edited(node2_parent="ghost"), "unknown node 'ghost'"),
    (edited(nodes=[]), "empty"),
])
def test_bad_input_gives_one_clear_message(tmp_path, capsys, data, culprit):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    assert main(["solve", str(path), "--lam", "0.5"]) == 2
    err = capsys.readouterr().err
    assert culprit in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_bad_lambda_and_missing_file(example, tmp_path, capsys):
    assert main(["solve", str(example), "--lam", "2"]) == 2
    assert "lam must be in [0, 1]" in capsys.readouterr().err
    assert main(["solve", str(tmp_path / "nope.json"), "--lam", "0.5"]) == 2
    assert "nope.json" in capsys.readouterr().err


def test_no_recall_index_is_refused(example, capsys):
    flat = dict(EXAMPLE)
    flat.pop("skips")
    example.write_text(json.dumps(flat))
    assert main(["solve", str(example), "--lam", "0.5", "--no-recall", "--method", "index"]) == 2
    assert "index" in capsys.readouterr().err


def test_python_dash_m_entry_point(example):
    run = subprocess.run([sys.executable, "-m", "ttamer", "solve", str(example), "--lam", "0.5", "--json"],
                         capture_output=True, text=True, check=False)
    assert run.returncode == 0, run.stderr
    assert "value" in json.loads(run.stdout)
    bad = subprocess.run([sys.executable, "-m", "ttamer", "solve", str(example), "--lam", "x"],
                         capture_output=True, text=True, check=False)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr


def test_closed_standard_output_is_an_error(example):
    """With standard output closed the result cannot be printed: exit 2, not a silent 0."""
    cmd = f"'{sys.executable}' -m ttamer solve '{example}' --lam 0.5 >&-"
    out = subprocess.run(["sh", "-c", cmd], capture_output=False, stderr=subprocess.PIPE, text=True, timeout=120)
    assert out.returncode == 2 and "standard output is closed" in out.stderr


def test_lp_failure_on_huge_numbers_says_to_rescale(tmp_path, capsys):
    path = tmp_path / "huge.json"
    path.write_text(json.dumps(edited(node0_cost=1e308, node1_cost=5e307)))  # a valid instance the LP cannot solve
    assert main(["solve", str(path), "--lam", "0.5", "--method", "lp"]) == 2
    assert "rescale them to about 1" in capsys.readouterr().err
    path.write_text(json.dumps(edited(node0_cost=1.7e308, node1_cost=1.7e308)))  # costs summing past float64
    assert main(["solve", str(path), "--lam", "0.5", "--method", "lp"]) == 2
    assert "field 'cost': the costs of the edges sum to more than the largest float64" in capsys.readouterr().err


def test_evaluate_names_the_slo_confidence_option(tmp_path, capsys):
    from ttamer.earlyexit.traces import save_trace, synthetic_trace

    path = tmp_path / "t.npz"
    save_trace(path, synthetic_trace(100, 3, 3))
    assert main(["evaluate", str(path), "--slo-confidence", "1.0"]) == 2
    assert "--slo-confidence must be in [0.5, 1)" in capsys.readouterr().err


def test_evaluate_names_the_file_of_a_one_exit_trace(tmp_path, capsys):
    from ttamer.earlyexit.traces import save_trace, synthetic_trace

    path = tmp_path / "one_exit.npz"
    save_trace(path, synthetic_trace(100, 1, 3))
    assert main(["evaluate", str(path)]) == 2
    err = capsys.readouterr().err
    assert "one_exit.npz" in err and "at least 2 exits" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("method, data, expected", [
    ("dp", {"nodes": [{"name": "r", "parent": None, "cost": 1.0, "losses": [0.5, 0.1], "initial": [0.5, 0.5]}]
            + [{"name": f"c{i}", "parent": "r", "cost": 1.0, "losses": [0.5, 0.1],
                "transition": [[0.5, 0.5], [0.5, 0.5]]} for i in range(40)]},
     "an unnamed instance is a branching tree (41 nodes); use method='index'"),
    ("lp", {"nodes": [{"name": f"r{i}", "parent": None, "cost": 1.0, "losses": [0.5, 0.1],
                       "initial": [0.5, 0.5]} for i in range(3000)]},
     "above max_states=50,000"),
    ("index", EXAMPLE, "is a chain with 1 skip; use method='dp'"),
])
def test_solve_errors_name_the_file_and_the_method_to_use(tmp_path, capsys, method, data, expected):
    path = tmp_path / "culprit.json"
    path.write_text(json.dumps(data))
    assert main(["solve", str(path), "--lam", "0.5", "--method", method]) == 2
    err = capsys.readouterr().err
    assert f"error: '{path}': " in err and expected in err and "''" not in err
    assert len(err.strip().splitlines()) == 1
