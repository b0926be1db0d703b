"""Hostile input, round 11: the command line and the workloads.

* ``ttamer traces ... --out`` (and the Python writers) never overwrite one of the run's own
  inputs (its data set, the cached model) nor a shipped trace other than the run's own file,
  also through hard links and linked folders -- tested on temporary copies only;
* with standard error closed the commands run, draw no progress bar and touch nothing there;
* standard output that is closed or cannot be written is reported as such, after a missing
  input;
* the cascade and skip-chain workloads, the vision models and the idx reader refuse what they
  would have coerced or crashed on, before any work.

No model is trained: workloads and builders are replaced by fakes that record their calls.
"""

from __future__ import annotations

import errno
import gzip
import io
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from ttamer.cli import main
from ttamer.core.errors import TTamerError
from ttamer.earlyexit.traces import save_trace, synthetic_trace
from ttamer.workloads import cascade, common, nlp, skipchain, vision, zoo
from test_traces_cli_safety import fake_builders, refused  # the traces CLI's fakes and one-error-line check

VISION = ["traces", "vision", "--n-train", "64", "--n-test", "64", "--epochs", "1", "--batch-size", "16",
          "--no-progress"]
NLP = ["traces", "nlp", "--n-head", "40", "--n-trace", "40", "--batch-size", "8", "--max-length", "16",
       "--no-progress"]
FMNIST_FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz",
                "t10k-labels-idx1-ubyte.gz")


@pytest.fixture
def calls(monkeypatch, tmp_path):
    """The workloads and the zoo's builder replaced by fakes recording their calls."""
    made: list[tuple] = []
    fake_builders(monkeypatch, tmp_path, lambda workload, kw: made.append((workload, kw.get("progress"))),
                  lambda name, seed, progress, n_trace: made.append((name, seed, progress)))
    return made


@pytest.fixture
def fmnist(monkeypatch, tmp_path):
    """A stand-in for Debian's Fashion-MNIST folder."""
    folder = tmp_path / "fashion-mnist"
    folder.mkdir()
    for name in FMNIST_FILES:
        (folder / name).write_bytes(b"data of " + name.encode())
    monkeypatch.setattr(vision, "FASHION_MNIST_DIR", folder)
    return folder


@pytest.fixture
def shipped(monkeypatch, tmp_path):
    """Stand-ins for the package's folders of shipped traces (zoo, held-out, skip chain)."""
    data = tmp_path / "pkg" / "data"
    (data / "zoo" / "heldout").mkdir(parents=True)
    (data / "cascades").mkdir()
    monkeypatch.setattr(zoo, "ZOO_DIR", data / "zoo")
    monkeypatch.setattr(zoo, "HELDOUT_DIR", data / "zoo" / "heldout")
    monkeypatch.setattr(zoo, "CASCADES_DIR", data / "cascades")
    monkeypatch.setattr(skipchain, "SKIP_CHAIN_PATH", data / "cascades" / "chain.npz")
    for path in (data / "zoo" / "digits-cnn.npz", data / "zoo" / "digits-mlp12.npz",
                 data / "zoo" / "heldout" / "digits-cnn-s2.npz", data / "cascades" / "chain.npz"):
        path.write_bytes(b"shipped " + path.name.encode())
    return data


# --------------------------------------------------------------------------- --out vs the run's inputs
def test_vision_out_onto_its_own_data_file_is_refused_before_any_work(capsys, calls, fmnist, tmp_path):
    target = fmnist / "t10k-labels-idx1-ubyte.gz"
    refused(capsys, VISION + ["--out", str(target)], "--out", "Fashion-MNIST folder", "which this run reads")
    assert calls == [] and target.read_bytes() == b"data of t10k-labels-idx1-ubyte.gz"
    assert main(VISION + ["--out", str(tmp_path / "ok.npz")]) == 0  # elsewhere: written as before
    assert (tmp_path / "ok.npz").exists() and calls == [("vision", False)]


def test_a_hard_link_or_a_linked_folder_of_the_data_is_refused(capsys, calls, fmnist, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    os.link(fmnist / "train-labels-idx1-ubyte.gz", elsewhere / "labels.npz")
    refused(capsys, VISION + ["--out", str(elsewhere / "labels.npz")], "hard link", "Fashion-MNIST folder")
    os.symlink(fmnist, tmp_path / "alias")
    refused(capsys, VISION + ["--out", str(tmp_path / "alias" / "new.npz")], "it lies in", "Fashion-MNIST")
    assert calls == [] and not (fmnist / "new.npz").exists()
    assert (fmnist / "train-labels-idx1-ubyte.gz").read_bytes() == b"data of train-labels-idx1-ubyte.gz"


def test_nlp_out_onto_its_cached_model_is_refused(capsys, calls):
    cfg = nlp.profile_config("offline", n_head=40, n_trace=40, max_length=16, batch_size=8)
    model = nlp.model_path("offline", cfg, 0, "cpu")
    model.write_bytes(b"trained model")
    refused(capsys, NLP + ["--out", str(model)], "trained text model")
    assert calls == [] and model.read_bytes() == b"trained model"


def test_vision_out_into_the_shipped_folders_is_refused(capsys, calls, fmnist, shipped):
    refused(capsys, VISION + ["--out", str(shipped / "zoo" / "digits-cnn.npz")], "shipped traces")
    refused(capsys, VISION + ["--out", str(shipped / "cascades" / "new.npz")], "shipped traces")
    assert calls == [] and (shipped / "zoo" / "digits-cnn.npz").read_bytes() == b"shipped digits-cnn.npz"


def test_zoo_out_onto_another_shipped_trace_is_refused(capsys, calls, shipped):
    other = shipped / "zoo" / "digits-cnn.npz"
    refused(capsys, ["traces", "zoo", "digits-mlp12", "--out", str(other)], "shipped traces", "digits-mlp12.npz")
    refused(capsys, ["traces", "zoo", "digits-cnn", "--seed", "5", "--out", str(other)], "shipped traces")
    refused(capsys, ["traces", "zoo", "digits-cnn", "--n-trace", "300", "--out", str(other)], "shipped traces")
    refused(capsys, ["traces", "zoo", "digits-cnn", "--seed", "3", "--out",
                     str(shipped / "zoo" / "heldout" / "digits-cnn-s2.npz")], "digits-cnn-s3.npz")
    with pytest.raises(TTamerError, match="shipped traces"):
        zoo.write_zoo_trace("digits-mlp12", other)
    assert calls == [] and other.read_bytes() == b"shipped digits-cnn.npz"
    # the trace's own file (seed 0, or a held-out seed, at its own size) is rewritten as before
    assert main(["traces", "zoo", "digits-cnn", "--no-progress", "--out", str(other)]) == 0
    heldout = shipped / "zoo" / "heldout" / "digits-cnn-s2.npz"
    assert main(["traces", "zoo", "digits-cnn", "--seed", "2", "--no-progress", "--out", str(heldout)]) == 0
    assert calls == [("digits-cnn", 0, False), ("digits-cnn", 2, False)]
    assert other.read_bytes()[:2] == heldout.read_bytes()[:2] == b"PK"


def test_zoo_writer_refuses_its_data_set(calls, fmnist, monkeypatch, tmp_path):
    with pytest.raises(TTamerError, match="Fashion-MNIST folder"):
        zoo.write_zoo_trace("fmnist-vgg11", fmnist / "train-images-idx3-ubyte.gz")
    sklearn = tmp_path / "sklearn"
    (sklearn / "datasets" / "data").mkdir(parents=True)
    digits = sklearn / "datasets" / "data" / "digits.csv.gz"
    digits.write_bytes(b"digits")
    real = common.package_folder
    monkeypatch.setattr(common, "package_folder", lambda name: sklearn if name == "sklearn" else real(name))
    with pytest.raises(TTamerError, match="scikit-learn's data folder"):
        zoo.write_zoo_trace("digits-cnn", digits)
    assert calls == [] and digits.read_bytes() == b"digits"


def test_write_skip_chain_checks_its_path_before_the_build(fmnist, shipped, monkeypatch, tmp_path):
    monkeypatch.setattr(skipchain, "build_skip_chain", lambda **kw: pytest.fail("built before the check"))
    with pytest.raises(TTamerError, match="Fashion-MNIST folder"):
        skipchain.write_skip_chain(fmnist / "t10k-images-idx3-ubyte.gz")
    with pytest.raises(TTamerError, match="shipped traces"):
        skipchain.write_skip_chain(shipped / "zoo" / "digits-cnn.npz")
    with pytest.raises(TTamerError, match="shipped traces"):
        skipchain.write_skip_chain(seed=1)  # the shipped file is seed 0's
    with pytest.raises(TTamerError, match="does not exist"):
        skipchain.write_skip_chain(tmp_path / "missing" / "chain.npz")
    with pytest.raises(TTamerError, match="seed must be >= 0"):
        skipchain.write_skip_chain(tmp_path / "chain.npz", seed=-1)
    assert (shipped / "cascades" / "chain.npz").read_bytes() == b"shipped chain.npz"


# --------------------------------------------------------------------------- standard error closed
def test_evaluate_with_stderr_closed_runs(tmp_path, capsys, monkeypatch):
    save_trace(tmp_path / "tr.npz", synthetic_trace(120, 3, 3, seed=0))
    monkeypatch.setattr(sys, "stderr", None)
    rc = main(["evaluate", str(tmp_path / "tr.npz"), "--bootstrap", "0", "--json"])
    assert rc == 0 and '"strategies"' in capsys.readouterr().out


def test_traces_with_stderr_closed_draw_no_progress(calls, capsys, monkeypatch):
    monkeypatch.setattr(sys, "stderr", None)
    assert main(["traces", "zoo", "digits-cnn", "--out", "z.npz"]) == 0
    assert main(VISION[:-1] + ["--out", "v.npz"]) == 0
    assert calls == [("digits-cnn", 0, False), ("vision", False)]


def test_a_process_started_with_fd_2_closed_exits_0(tmp_path):
    save_trace(tmp_path / "tr.npz", synthetic_trace(120, 3, 3, seed=0))
    run = subprocess.run([sys.executable, "-m", "ttamer", "evaluate", "tr.npz", "--bootstrap", "0", "--json"],
                         cwd=tmp_path, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL,
                         preexec_fn=lambda: os.close(2), timeout=120)
    assert run.returncode == 0 and b'"strategies"' in run.stdout


# --------------------------------------------------------------------------- standard output
class FullStdout(io.StringIO):
    """Standard output on a full disk: writes fail (``flush_only``: only the flush does)."""

    def __init__(self, flush_only: bool = False) -> None:
        super().__init__()
        self.flush_only = flush_only

    def write(self, text):
        if not self.flush_only:
            raise OSError(errno.ENOSPC, "No space left on device")
        return super().write(text)

    def flush(self):
        if self.flush_only and self.getvalue():
            raise OSError(errno.ENOSPC, "No space left on device")


@pytest.fixture
def instance(tmp_path):
    from test_instance import EXAMPLE

    path = tmp_path / "inst.json"
    path.write_text(json.dumps(EXAMPLE))
    return path


def test_missing_input_is_reported_before_closed_stdout(capsys, monkeypatch, tmp_path):
    monkeypatch.setattr(sys, "stdout", None)
    assert main(["solve", str(tmp_path / "missing.json"), "--lam", "0.5"]) == 2
    err = capsys.readouterr().err
    assert "missing.json" in err and "No such file or directory" in err and len(err.splitlines()) == 1


@pytest.mark.parametrize("flush_only", [False, True])
def test_a_full_stdout_is_named(capsys, monkeypatch, instance, flush_only):
    monkeypatch.setattr(sys, "stdout", FullStdout(flush_only))
    assert main(["solve", str(instance), "--lam", "0.5", "--json"]) == 2
    err = capsys.readouterr().err
    assert err.strip() == "ttamer solve: error: cannot write to standard output: No space left on device"


def test_zoo_list_onto_a_full_stdout_is_named(capsys, monkeypatch):
    monkeypatch.setattr(sys, "stdout", FullStdout())
    assert main(["traces", "zoo", "--list"]) == 2
    assert "traces zoo: error: cannot write to standard output" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["--help"], ["solve", "--help"]])
def test_help_onto_a_full_or_closed_stdout_exits_2(capsys, monkeypatch, argv):
    monkeypatch.setattr(sys, "stdout", FullStdout())
    with pytest.raises(SystemExit) as exc:
        main(argv)
    err = capsys.readouterr().err
    assert exc.value.code == 2 and len(err.splitlines()) == 1 and "cannot write to standard output" in err
    monkeypatch.setattr(sys, "stdout", None)
    with pytest.raises(SystemExit) as exc:
        main(argv)
    err = capsys.readouterr().err
    assert exc.value.code == 2 and err.strip().endswith("standard output is closed; nothing could be printed")


# --------------------------------------------------------------------------- the cascade workload
@pytest.fixture
def no_cascade_run(monkeypatch, tmp_path):
    monkeypatch.setattr(cascade, "generate_cascade", lambda *a, **k: pytest.fail("the cascade was generated"))
    monkeypatch.setenv(common.CACHE_ENV, str(tmp_path / "cache"))


@pytest.mark.parametrize("kw,match", [(dict(seed=0.0), "seed must be an integer"),
                                      (dict(seed=False), "seed must be an integer"),
                                      (dict(seed=1.5), "seed must be an integer"),
                                      (dict(seed=-1), "seed must be >= 0"),
                                      (dict(device="tpu"), "device must be one of"),
                                      (dict(stages="12"), "stages must be a non-empty list"),
                                      (dict(stages=(1.7, 3.2)), r"stages\[0\] must be an integer"),
                                      (dict(stages=(2, True)), r"stages\[1\] must be an integer"),
                                      (dict(batch_size=0), "batch_size must be >= 1"),
                                      (dict(n_head=10**9), "n_head"),
                                      (dict(progress="x"), "progress must be True or False")])
def test_cascade_settings_are_checked_before_any_work(no_cascade_run, kw, match):
    with pytest.raises(TTamerError, match=match):
        cascade.get_cascade_trace(**kw)
    if "progress" not in kw:
        with pytest.raises(TTamerError, match=match):
            cascade.cascade_trace_path(**kw)


def test_cascade_stages_are_integers_and_valid_ones_keep_their_cache_file(no_cascade_run):
    name = cascade.cascade_trace_path().name
    assert name == "r2-cascade-offline-seed0-cpu-batch_size64-max_length64-n_head4000-n_trace3000-stages2x4.npz"
    assert cascade.cascade_trace_path(stages=[2, 4], seed=np.int64(0)).name == name
    with pytest.raises(TTamerError, match=r"stages\[0\] must be an integer, got '2'"):
        cascade.cascade_trace_path(stages=["2", "4"])


# --------------------------------------------------------------------------- the skip chain
@pytest.mark.parametrize("kw,match", [(dict(seed=-1), "seed must be >= 0"), (dict(seed=1.5), "seed must be an integer"),
                                      (dict(seed="x"), "seed must be an integer"),
                                      (dict(n_head=150.9), "n_head must be an integer"),
                                      (dict(n_head="abc"), "n_head must be an integer"),
                                      (dict(n_trace=True), "n_trace must be an integer"),
                                      (dict(n_trace=10001), "n_trace must be <= 10,000")])
def test_skip_chain_settings_are_checked_before_the_data_are_read(monkeypatch, kw, match):
    monkeypatch.setattr(vision, "read_idx", lambda path: pytest.fail("the data were read"))
    with pytest.raises(TTamerError, match=match):
        skipchain.build_skip_chain(**kw)


# --------------------------------------------------------------------------- vision models and data
@pytest.mark.parametrize("args,match", [(("small_cnn", 1, 10, 257), "width must be <= 256"),
                                        (("small_cnn", 1, 10, 0), "width must be >= 1"),
                                        (("small_cnn", 0, 10, 4), "in_ch must be >= 1"),
                                        (("small_cnn", 1.5, 10, 4), "in_ch must be an integer"),
                                        (("small_cnn", 1, 10, 4, 0), "pool must be >= 1"),
                                        (("small_cnn", 1, 5000, 4), "n_classes must be <= 1,000")])
def test_build_model_sizes_are_bounded_before_torch_allocates(args, match):
    pytest.importorskip("torch")
    with pytest.raises(TTamerError, match=match):
        vision.build_model(*args)


def test_read_idx_names_the_file_of_a_corrupt_or_odd_file(tmp_path):
    (tmp_path / "zip.gz").write_bytes(b"PK\x03\x04 not gzip")
    with pytest.raises(TTamerError, match=r"idx file '.*zip\.gz' is not a valid gzip file"):
        vision.read_idx(tmp_path / "zip.gz")
    (tmp_path / "cut.gz").write_bytes(gzip.compress(bytes([0, 0, 8, 1, 0, 0, 0, 9]) + bytes(9))[:-12])
    with pytest.raises(TTamerError, match=r"cut\.gz' is not a valid gzip file"):
        vision.read_idx(tmp_path / "cut.gz")
    (tmp_path / "ndim.gz").write_bytes(gzip.compress(bytes([0, 0, 8, 250]) + bytes(1000)))
    with pytest.raises(TTamerError, match=r"ndim\.gz': 250 dimensions"):
        vision.read_idx(tmp_path / "ndim.gz")


# --------------------------------------------------------------------------- shared helpers
def test_common_helpers_name_their_bad_arguments():
    with pytest.raises(TTamerError, match="with_cost_unit: trace must be a Trace"):
        common.with_cost_unit(None, "ms")
    with pytest.raises(TTamerError, match="with_cost_unit: unit must be a string"):
        common.with_cost_unit(synthetic_trace(10, 2, 2), None)
    with pytest.raises(TTamerError, match=r"cache folder \(cache\) must be a file path"):
        common.cache_dir(3)
    with pytest.raises(TTamerError, match="sample size must be an integer"):
        common.sample_indices(10, 2.5, 0)
    with pytest.raises(TTamerError, match="seed must be >= 0"):
        common.sample_indices(10, 2, -1)
    with pytest.raises(TTamerError, match="n_head must be an integer"):
        common.split_indices(10, 2.5, 3, 0)
