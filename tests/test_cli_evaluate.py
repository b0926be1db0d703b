"""``ttamer evaluate``: JSON schema, table, and one clear message on bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ttamer.cli import main
from ttamer.earlyexit.traces import save_trace, synthetic_trace




@pytest.fixture(scope="module")
def trace_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("cli") / "trace.npz"
    save_trace(path, synthetic_trace(500, 4, 3, seed=3))
    return path


def test_json_schema(trace_file, capsys):
    assert main(["evaluate", str(trace_file), "--seed", "1", "--calibration-fraction", "0.4",
                  "--bootstrap", "20", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out) >= {"full_model", "strategies"}
    assert {"ttamer", "no-recall", "max-prob", "entropy", "patience", "static", "oracle"} <= set(out["strategies"])
    assert out["split"]["n_calibration"] == 200
    for m in out["strategies"].values():
        assert isinstance(m["auc"], float)
        assert m["cost_at_full_accuracy"] is None or isinstance(m["cost_at_full_accuracy"], float)
        assert all(len(p) == 2 and all(isinstance(x, float) for x in p) for p in m["frontier"])


def test_table(trace_file, capsys):
    assert main(["evaluate", str(trace_file), "--bootstrap", "0"]) == 0
    out = capsys.readouterr().out
    assert "strategy" in out and "ttamer" in out and "oracle" in out and "full model" in out


def test_bad_inputs(tmp_path, trace_file, capsys):
    assert main(["evaluate", str(tmp_path / "missing.npz")]) == 2
    err = capsys.readouterr().err
    assert "does not exist" in err and "Traceback" not in err and err.count("\n") == 1
    bad = tmp_path / "bad.npz"
    t = synthetic_trace(20, 3, 2, seed=0)
    np.savez(bad, probs=t.probs, labels=t.labels + 7, cost=t.cost, meta=np.array(json.dumps(t.meta)))
    assert main(["evaluate", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "key 'labels': example 0" in err and err.count("\n") == 1
    assert main(["evaluate", str(trace_file), "--calibration-fraction", "1.5"]) == 2
    assert "--calibration-fraction" in capsys.readouterr().err


def test_cv_max_examples(trace_file, capsys):
    """``--cv-max-examples N``: the cross-validation reads a sample of N calibration examples,
    which changes the held-out scores it reports; bad values and other estimations are refused."""
    def cv(*extra):
        assert main(["evaluate", str(trace_file), "--bootstrap", "0", "--json", *extra]) == 0
        return json.loads(capsys.readouterr().out)["ttamer_fit"]["cv"]

    full, sampled = cv(), cv("--cv-max-examples", "100")
    assert [c["policy"] for c in full] == [c["policy"] for c in sampled]
    assert [c["auc"] for c in full] != [c["auc"] for c in sampled]
    assert cv("--cv-max-examples", "250") == full  # all 250 calibration examples: no sample
    for bad, msg in ((["--cv-max-examples", "10"], "--cv-max-examples"),
                     (["--cv-max-examples", "100", "--estimation", "chain"], "threshold estimation")):
        assert main(["evaluate", str(trace_file), *bad]) == 2
        err = capsys.readouterr().err
        assert msg in err and err.count("\n") == 1


def test_max_examples_samples_and_reports(trace_file, capsys):
    """``--max-examples N``: the evaluation reads a seeded sample of N examples, reports it in
    ``"sample"`` and in the table, and equals evaluating that sample's own file."""
    from ttamer.earlyexit.traces import load_trace

    assert main(["evaluate", str(trace_file), "--bootstrap", "0", "--json", "--max-examples", "300",
                 "--seed", "2"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["sample"] == {"examples": 300, "of": 500, "seed": 2}
    assert out["split"]["n_calibration"] + out["split"]["n_test"] == 300
    sample = load_trace(trace_file).sample(300, 2)
    path = trace_file.parent / "sample.npz"
    save_trace(path, sample)
    assert main(["evaluate", str(path), "--bootstrap", "0", "--json", "--seed", "2"]) == 0
    direct = json.loads(capsys.readouterr().out)
    assert "sample" not in direct
    assert direct["strategies"]["ttamer"]["auc"] == out["strategies"]["ttamer"]["auc"]
    assert main(["evaluate", str(trace_file), "--bootstrap", "0", "--max-examples", "300"]) == 0
    assert "a seeded sample (seed 0) of 300 of the file's 500 examples" in capsys.readouterr().out
    assert main(["evaluate", str(trace_file), "--bootstrap", "0", "--json", "--max-examples", "5000"]) == 0
    assert "sample" not in json.loads(capsys.readouterr().out)
    assert main(["evaluate", str(trace_file), "--max-examples", "3"]) == 2
    err = capsys.readouterr().err
    assert "--max-examples" in err and err.count("\n") == 1


def test_refuses_a_trace_too_large_for_free_memory(trace_file, capsys, monkeypatch):
    """A trace whose evaluation is estimated above the free memory is refused before any
    fitting, with the number of examples that would fit; ``--max-examples`` then runs."""
    import ttamer.earlyexit.evaluation as ev

    monkeypatch.setattr(ev, "EVALUATE_FREE_BYTES", 0)
    fits = ev.evaluation_bytes(400, 4, 3)
    monkeypatch.setattr(ev, "available_memory", lambda: fits)
    monkeypatch.setattr(ev, "fit_tamers", lambda *a, **k: pytest.fail("fitted before the memory check"))
    assert main(["evaluate", str(trace_file), "--bootstrap", "0"]) == 2
    err = capsys.readouterr().err
    assert "500 examples x 4 exits x 3 classes" in err and "--max-examples N" in err
    assert "at most 400 of its examples" in err and err.count("\n") == 1
    monkeypatch.undo()
    monkeypatch.setattr(ev, "EVALUATE_FREE_BYTES", 0)
    monkeypatch.setattr(ev, "available_memory", lambda: fits)
    assert main(["evaluate", str(trace_file), "--bootstrap", "0", "--max-examples", "400"]) == 0


def test_memory_error_is_one_line_naming_max_examples(trace_file, capsys, monkeypatch):
    """Running out of memory anyway (an estimate is only an estimate) ends in one line that
    names the way out, never a traceback."""
    import ttamer.earlyexit.evaluation as ev

    def boom(*args, **kwargs):
        raise MemoryError

    monkeypatch.setattr(ev, "evaluate_trace", boom)
    assert main(["evaluate", str(trace_file)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("ttamer evaluate: error: out of memory") and "--max-examples N" in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_meta_from_the_file_stays_on_its_line(tmp_path, capsys):
    """A newline (or escape sequence) in the file's model name cannot forge a line of the table."""
    t = synthetic_trace(200, 3, 2, seed=0)
    t.meta["model"] = "evil\n\x1b[31mforged line"
    path = tmp_path / "ctrl.npz"
    save_trace(path, t)
    assert main(["evaluate", str(path), "--bootstrap", "0"]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert first.startswith("evil\\n\\x1b[31mforged line on ")


def test_a_closed_pipe_ends_quietly(trace_file, capsys, monkeypatch):
    """`ttamer ... | head`: the reader's closing the pipe is not an error."""
    import ttamer.cli.evaluate as ev

    def closed(*args, **kwargs):
        raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr(ev, "format_table", closed)
    assert main(["evaluate", str(trace_file), "--bootstrap", "0"]) == 141
    assert capsys.readouterr().err == ""
