"""Hostile inputs found by a seventh fuzzing round: small files that would have cost minutes
and gigabytes before a word was said -- a trace with a huge ``meta``, an archive that lists
millions of members, dense instance JSON -- the pairwise tables' work on many examples, and
errors that did not name their file or printed a line per retry of an unreachable Hub. Each
test fails on the code before the fix."""
from __future__ import annotations

import io
import json
import struct
import zipfile

import numpy as np
import pytest

import ttamer.earlyexit.traces as traces_mod
from ttamer.core.errors import TraceError
from ttamer.earlyexit import pairwise
from ttamer.earlyexit.pairwise import PairwiseAnswer
from ttamer.earlyexit.traces import (MAX_META_CHARS, MAX_ZIP_DIRECTORY_BYTES, Trace, _zip_directory_bytes,
                                     load_trace, save_trace, synthetic_trace)


@pytest.fixture(scope="module")
def small():
    return synthetic_trace(60, 3, 4, seed=0)


def _with_meta_text(path, trace: Trace, text: str) -> None:
    np.savez_compressed(path, probs=trace.probs, labels=trace.labels, cost=trace.cost, meta=np.array(text))


def test_a_huge_meta_is_refused_from_the_header_before_it_is_read(tmp_path, small, monkeypatch):
    path = tmp_path / "bomb.npz"
    _with_meta_text(path, small, '{"x": [' + "[]," * (MAX_META_CHARS // 3) + "[]]}")
    assert path.stat().st_size < 100_000  # a small file
    read = []
    monkeypatch.setattr(traces_mod, "loads_strict", lambda *a, **k: read.append(1))
    with pytest.raises(TraceError, match=r"bomb.npz.*key 'meta'.*MAX_META_CHARS"):
        load_trace(path)
    assert not read  # refused before the JSON was parsed


def test_the_meta_limit_holds_at_the_limit_for_files_and_for_traces_built_in_python(tmp_path, small, monkeypatch):
    monkeypatch.setattr(traces_mod, "MAX_META_CHARS", 200)
    at = {"model": "m", "note": "a" * (200 - len(json.dumps({"model": "m", "note": ""})))}
    assert len(json.dumps(at)) == 200
    ok = Trace(small.probs, small.labels, small.cost, at).validate()
    save_trace(tmp_path / "ok.npz", ok)
    assert load_trace(tmp_path / "ok.npz").meta == at
    over = dict(at, note=at["note"] + "a")
    with pytest.raises(TraceError, match="key 'meta': 201 characters of JSON.*MAX_META_CHARS"):
        Trace(small.probs, small.labels, small.cost, over).validate()
    _with_meta_text(tmp_path / "over.npz", small, json.dumps(over))
    with pytest.raises(TraceError, match=r"over.npz.*201 characters"):
        load_trace(tmp_path / "over.npz")


def test_a_subset_copies_the_fields_it_reads_and_shares_the_rest(small):
    meta = {"model": "m", "exit_names": ["a", "b", "c"], "versions": {"numpy": "x"}}
    tr = Trace(small.probs, small.labels, small.cost, meta).validate()
    sub = tr.subset(np.arange(10))
    sub.meta["model"] = "changed"
    sub.meta["exit_names"][0] = "z"
    assert tr.meta["model"] == "m" and tr.meta["exit_names"] == ["a", "b", "c"]
    assert sub.meta["versions"] == meta["versions"]


def _many_members(n: int) -> bytes:
    """A zip whose central directory lists ``n`` empty members."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for i in range(n):
            z.writestr(f"m{i}", b"")
    return buf.getvalue()


def test_an_archive_listing_many_members_is_refused_before_it_is_opened(tmp_path, monkeypatch):
    path = tmp_path / "many.npz"
    path.write_bytes(_many_members(3000))
    opened = []
    monkeypatch.setattr(traces_mod.zipfile, "ZipFile", lambda *a, **k: opened.append(1))
    with pytest.raises(TraceError, match=r"many.npz.*list of members takes [\d,]+ bytes.*MAX_ZIP_DIRECTORY_BYTES"):
        load_trace(path)
    assert not opened


def test_the_directory_size_is_read_from_the_zip64_record_and_past_a_comment(tmp_path, small):
    big = _many_members(70_000)  # over 65,535 members: zipfile writes the zip64 end record
    assert big.rfind(b"PK\x06\x06") > 0
    listed = _zip_directory_bytes(io.BytesIO(big), len(big))
    assert listed > MAX_ZIP_DIRECTORY_BYTES
    declared = struct.unpack("<4s4H2LH", big[-22:])[5]
    assert declared == 0xFFFFFFFF or declared == listed  # the plain record defers to the zip64 one
    path = tmp_path / "t.npz"
    save_trace(path, small)
    with zipfile.ZipFile(path, "a") as z:
        z.comment = b"x" * 300
    with open(path, "rb") as fh:
        assert 0 < _zip_directory_bytes(fh, path.stat().st_size) < 1000
    assert load_trace(path).n_examples == small.n_examples
    with zipfile.ZipFile(path, "a") as z:  # an end record in the comment: zipfile reads that one
        z.comment = b"PK\x05\x06" + b"x" * 300
    with pytest.raises(TraceError, match="t.npz"):
        load_trace(path)


def test_the_pairwise_tables_count_at_most_their_cap_of_examples(monkeypatch):
    rng = np.random.default_rng(0)
    n, L, K = 400, 4, 3
    states = rng.integers(0, K, size=(n, L))
    wrong = (rng.random((n, L)) < 0.3).astype(float)
    losses = [np.full(K, 0.3)] * L
    whole = PairwiseAnswer.fit(states, wrong, losses, [K] * L, 2.0)
    monkeypatch.setattr(pairwise, "PAIRWISE_MAX_EXAMPLES", 100)
    capped = PairwiseAnswer.fit(states, wrong, losses, [K] * L, 2.0)
    keep = np.unique(np.linspace(0, n - 1, 100).round().astype(int))
    monkeypatch.setattr(pairwise, "PAIRWISE_MAX_EXAMPLES", 10_000)
    direct = PairwiseAnswer.fit(states[keep], wrong[keep], losses, [K] * L, 2.0)
    for key in whole.tables:
        np.testing.assert_array_equal(capped.tables[key], direct.tables[key])
    assert capped.kept == direct.kept
    assert any(not np.array_equal(whole.tables[k], capped.tables[k]) for k in whole.tables)


def test_an_instance_file_is_refused_before_parsing_where_its_objects_would_not_fit(tmp_path, monkeypatch):
    from ttamer.core import parallel, safeio
    from ttamer.core.errors import InstanceError
    from ttamer.core.instance import load_instance

    path = tmp_path / "dense.json"
    path.write_text('{"meta": [' + "[]," * 10_000 + "[]]}")
    size = path.stat().st_size
    parsed = []
    monkeypatch.setattr(parallel, "available_memory", lambda: safeio.JSON_MEMORY_FACTOR * size - 1)
    monkeypatch.setattr("ttamer.core.instance.loads_strict", lambda *a, **k: parsed.append(1))
    with pytest.raises(InstanceError, match=rf"dense.json' has {size:,} bytes of JSON.*more than the"):
        load_instance(path)
    assert not parsed
    monkeypatch.setattr(parallel, "available_memory", lambda: safeio.JSON_MEMORY_FACTOR * size)
    with pytest.raises(InstanceError, match="dense.json"):  # parsed now, and refused for its content
        load_instance(path)
    assert parsed


def test_the_evaluate_command_names_the_file_in_every_error_of_the_evaluation(tmp_path, capsys):
    from ttamer.cli.main import main

    path = tmp_path / "few.npz"
    save_trace(path, synthetic_trace(40, 3, 3, seed=0))
    assert main(["evaluate", str(path), "--estimation", "chain", "--bootstrap", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("ttamer evaluate: error: trace file ") and "few.npz" in err and "too few" in err
    assert "\n" not in err


def test_an_unreachable_hub_gives_one_error_line_with_a_hint(tmp_path, capfd, monkeypatch):
    """The hub's warning per retry is silenced while the workload runs, and restored after."""
    import logging

    import ttamer.workloads
    from huggingface_hub.utils import logging as hub_logging
    from ttamer.cli.main import main

    def unreachable(*args, **kwargs):
        logging.getLogger("huggingface_hub.utils._http").warning("Retrying in 1s [Retry 1/5].")
        raise ConnectionError("Couldn't reach 'stanfordnlp/imdb' on the Hub (LocalEntryNotFoundError)")

    monkeypatch.setattr(ttamer.workloads, "generate", unreachable)
    before = hub_logging.get_verbosity()
    assert main(["traces", "nlp", "--profile", "full", "--out", str(tmp_path / "x.npz")]) == 2
    err = capfd.readouterr().err
    assert err.count("\n") == 1 and "Retrying" not in err
    assert err.startswith("ttamer traces: error: Couldn't reach") and "HF_HUB_OFFLINE=1" in err
    assert hub_logging.get_verbosity() == before
    assert not (tmp_path / "x.npz").exists()
