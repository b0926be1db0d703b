"""``ttamer traces`` on hostile input: seeds, sizes, ``--out``, the temp-file sweep, the zoo's
default output, ``--no-progress`` and ``$TTAMER_CACHE``.

No model is trained: every run that would get past the checks has its workload replaced by a
fake that returns a synthetic trace, and every refusal is asserted to happen before the workload
is called.
"""

from __future__ import annotations

import hashlib
import os
import stat
import time

import numpy as np
import pytest

import ttamer.workloads as workloads
from ttamer.cli import main
from ttamer.core import safeio
from ttamer.core.errors import TraceError, TTamerError
from ttamer.earlyexit.traces import load_trace, save_trace, synthetic_trace
from ttamer.workloads import common, registry, zoo
from ttamer.workloads.common import WorkloadResult

VISION = ["traces", "vision", "--n-train", "64", "--n-test", "64", "--epochs", "1", "--batch-size", "16",
          "--no-progress"]
NLP = ["traces", "nlp", "--n-head", "40", "--n-trace", "40", "--batch-size", "8", "--max-length", "16",
       "--no-progress"]
DEAD_PID = 999_999_999  # above any pid_max: no such process


def fake_builders(monkeypatch, tmp_path, on_generate, on_build, timings=None) -> None:
    """Replace the workloads and the zoo's builder by fakes that report each call to
    ``on_generate(workload, kw)`` / ``on_build(name, seed, progress, n_trace)``, with the trace
    cache and the working folder under ``tmp_path``."""
    trace = synthetic_trace(40, 3, 3, seed=1)

    def fake_generate(workload, profile="offline", **kw):
        on_generate(workload, kw)
        return WorkloadResult(trace, "a", np.arange(2), "b", np.arange(40), dict(timings or {}))

    def fake_build(name, seed=0, progress=True, n_trace=None):
        on_build(name, seed, progress, n_trace)
        return synthetic_trace(30, 2, 2, seed=2)

    monkeypatch.setattr(workloads, "generate", fake_generate)
    monkeypatch.setattr(zoo, "build_zoo_trace", fake_build)
    monkeypatch.setenv(common.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def calls(monkeypatch, tmp_path):
    """Replace the workloads (and the zoo's builder) by fakes that record their calls."""
    made: list[tuple] = []
    fake_builders(monkeypatch, tmp_path, lambda workload, kw: made.append((workload, kw)),
                  lambda name, seed, progress, n_trace: made.append((name, seed) if n_trace is None
                                                                    else (name, seed, n_trace)),
                  {"load": 0.0})
    return made


def refused(capsys, argv, *needles):
    rc = main(argv)
    err = capsys.readouterr().err
    assert rc == 2, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err and "unexpected" not in err, err
    for needle in needles:
        assert needle in err, err
    return err


# --------------------------------------------------------------------------- seeds
@pytest.mark.parametrize("argv", [VISION + ["--seed", str(2**64), "--out", "a.npz"],
                                  VISION + ["--seed", str(2**63), "--out", "a.npz"],
                                  NLP + ["--seed", "-1", "--out", "a.npz"],
                                  ["traces", "zoo", "digits-cnn", "--seed", "-1", "--out", "z.npz"],
                                  ["traces", "zoo", "digits-cnn", "--seed", str(2**64), "--out", "z.npz"]])
def test_bad_seeds_name_the_option_before_any_work(capsys, calls, argv):
    refused(capsys, argv, "--seed")
    assert calls == [] and not os.path.exists("a.npz") and not os.path.exists("z.npz")


def test_workload_seed_bounds():
    assert common.check_workload_seed(common.MAX_SEED) == 2**63 - 1
    with pytest.raises(TTamerError, match="seed must be <= 9223372036854775807"):
        common.check_workload_seed(2**63)
    with pytest.raises(TTamerError, match="seed must be >= 0"):
        common.check_workload_seed(-1)
    with pytest.raises(TTamerError, match="integer"):
        common.check_workload_seed(1.5)
    with pytest.raises(TTamerError, match="seed must be >= 0"):
        zoo.write_zoo_trace("digits-cnn", "never.npz", seed=-3)


# --------------------------------------------------------------------------- sizes
@pytest.mark.parametrize("argv, needles", [
    (VISION + ["--width", "1000000"], ["--width", "256"]),
    (VISION + ["--n-test", "1000000000000"], ["--n-test", "10,000"]),
    (VISION + ["--n-train", "1000000000000"], ["--n-train", "60,000"]),
    (VISION + ["--epochs", "10000000"], ["--epochs", "1,000"]),
    (VISION + ["--batch-size", "1000000000000"], ["--batch-size", "4,096"]),
    (VISION + ["--batch-size", "32"], ["--batch-size", "31", "warm-up"]),
    (NLP + ["--max-length", "1000000000"], ["--max-length", "512"]),
    (NLP + ["--max-length", "512", "--batch-size", "1000"], ["--batch-size", "256"]),
    (NLP + ["--n-trace", "2"], ["--n-trace"]),
])
def test_sizes_beyond_the_data_or_the_limits_are_refused(capsys, calls, argv, needles):
    refused(capsys, argv + ["--out", "a.npz"], *needles)
    assert calls == [] and not os.path.exists("a.npz")


def test_sizes_are_checked_by_the_library_too():
    from ttamer.workloads import nlp, vision

    with pytest.raises(TTamerError, match="width must be <= 256"):
        vision.generate_vision_trace("offline", width=10**6, progress=False)
    with pytest.raises(TTamerError, match="n_test must be <= 10,000"):
        vision.generate_vision_trace("offline", n_test=10**12, progress=False)
    with pytest.raises(TTamerError, match="max_length must be <= 512"):
        nlp.generate_nlp_trace("offline", max_length=10**9, progress=False)
    vision.check_sizes(vision.profile_config("offline"))  # the defaults pass
    vision.check_sizes(vision.profile_config("full"))
    nlp.check_sizes(nlp.profile_config("offline"))
    nlp.check_sizes(nlp.profile_config("full"))
    assert np.array_equal(common.sample_indices(5, 5, 0), np.arange(5))
    with pytest.raises(TTamerError, match=r"n_test must be <= 5 \(the images\), got 6"):
        common.sample_indices(5, 6, 0, "n_test", "images")


# --------------------------------------------------------------------------- --out
@pytest.fixture
def targets(tmp_path):
    (tmp_path / "adir").mkdir()
    ro = tmp_path / "ro.npz"
    ro.write_bytes(b"read-only")
    ro.chmod(0o444)
    (tmp_path / "link.npz").symlink_to(ro)
    (tmp_path / "dangling.npz").symlink_to(tmp_path / "nowhere.npz")
    if hasattr(os, "mkfifo"):
        os.mkfifo(tmp_path / "fifo")
    return tmp_path


@pytest.mark.parametrize("out, needle", [
    ("", "empty"), ("adir", "folder"), ("adir/", "folder"), (".", "folder"), ("new/", "not a file name"),
    ("ro.npz", "read-only"), ("link.npz", "symbolic link"), ("dangling.npz", "symbolic link"),
    ("fifo", "FIFO"), ("/dev/null", "device"), ("nodir/a.npz", "does not exist"),
])
def test_out_that_must_not_be_replaced_is_refused_before_the_run(capsys, calls, targets, out, needle):
    if out == "fifo" and not (targets / "fifo").exists():
        pytest.skip("no mkfifo")
    if out == "/dev/null" and not os.path.exists("/dev/null"):
        pytest.skip("no /dev/null")
    before = {p.name: (os.lstat(p).st_mode, os.lstat(p).st_mtime_ns) for p in targets.iterdir()}
    for argv in (VISION, ["traces", "zoo", "digits-cnn", "--no-progress"]):
        refused(capsys, argv + ["--out", out], "--out", needle)
    assert calls == []
    assert {p.name: (os.lstat(p).st_mode, os.lstat(p).st_mtime_ns) for p in targets.iterdir()} == before
    assert (targets / "ro.npz").read_bytes() == b"read-only"
    if out == "/dev/null":
        assert stat.S_ISCHR(os.stat("/dev/null").st_mode)


def test_out_new_file_or_writable_regular_file_is_written(capsys, calls, tmp_path):
    assert main(VISION + ["--out", "new.npz"]) == 0
    assert load_trace(tmp_path / "new.npz").probs.shape == (40, 3, 3)
    (tmp_path / "old.npz").write_bytes(b"old")
    assert main(VISION + ["--out", "old.npz", "--json"]) == 0
    assert load_trace(tmp_path / "old.npz").probs.shape[0] == 40 and len(calls) == 2


def test_atomic_write_refuses_links_devices_and_read_only_files(targets):
    with pytest.raises(TraceError, match="symbolic link"):
        save_trace(targets / "link.npz", synthetic_trace(30, 2, 2))
    with pytest.raises(TTamerError, match="read-only"):
        safeio.atomic_write(targets / "ro.npz", b"x")
    if os.path.exists("/dev/null"):
        with pytest.raises(TTamerError, match="device"):
            safeio.atomic_write("/dev/null", b"x")
    assert (targets / "link.npz").is_symlink() and (targets / "ro.npz").read_bytes() == b"read-only"


# --------------------------------------------------------------------------- the temp-file sweep
def test_sweep_leaves_files_that_merely_look_like_temp_files(tmp_path, calls):
    bait = tmp_path / f".mydata.{safeio.TMP_TAG}-999999-deadbeef"
    bait.write_bytes(b"user data")
    forged = tmp_path / f".x.npz.{safeio.TMP_TAG}-{DEAD_PID}-deadbeef-0123456789abcdef"
    forged.write_bytes(b"user data, wrong check digits")
    assert main(VISION + ["--out", "v.npz"]) == 0
    assert bait.read_bytes() == b"user data" and forged.exists()


def test_sweep_removes_only_provable_leftovers(tmp_path):
    dead = safeio.temp_path(tmp_path / "y.npz", pid=DEAD_PID)
    dead.write_bytes(b"left by kill -9")
    live = safeio.temp_path(tmp_path / "x.npz")  # this process: alive
    live.write_bytes(b"in progress")
    link = safeio.temp_path(tmp_path / "z.npz", pid=DEAD_PID)
    link.symlink_to(live)
    assert dead.name.startswith(".y.npz.") and safeio.TMP_TAG in dead.name
    assert safeio.sweep_stale_temp_files(tmp_path) == [dead]
    assert live.exists() and link.is_symlink()


def test_sweep_waits_for_age_where_the_writer_cannot_be_proven_gone(tmp_path, monkeypatch):
    monkeypatch.setattr(safeio, "_WRITER_ID", ("host:test", False))
    dead = safeio.temp_path(tmp_path / "y.npz", pid=DEAD_PID)
    dead.write_bytes(b"left by kill -9")
    assert safeio.sweep_stale_temp_files(tmp_path) == []
    old = time.time() - safeio.STALE_TMP_SECONDS - 60
    os.utime(dead, (old, old))
    assert safeio.sweep_stale_temp_files(tmp_path) == [dead]


def test_atomic_write_still_cleans_up_after_itself(tmp_path):
    safeio.atomic_write(tmp_path / "f.txt", "text")
    assert [p.name for p in tmp_path.iterdir()] == ["f.txt"]


# --------------------------------------------------------------------------- the zoo's output
def _digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_mode


def test_zoo_name_without_out_writes_into_the_current_folder(capsys, calls, tmp_path):
    shipped = zoo.zoo_entry("digits-cnn").path
    before = _digest(shipped)
    assert main(["traces", "zoo", "digits-cnn", "--seed", "5", "--no-progress", "--json"]) == 0
    assert (tmp_path / "digits-cnn-s5.npz").exists() and calls == [("digits-cnn", 5)]
    assert _digest(shipped) == before


def test_zoo_default_never_lands_in_the_package(capsys, calls, monkeypatch):
    shipped = zoo.zoo_entry("digits-cnn").path
    before = _digest(shipped)
    monkeypatch.setattr(zoo, "save_trace", lambda *a, **k: pytest.fail("wrote into the package"))
    monkeypatch.chdir(zoo.ZOO_DIR)
    refused(capsys, ["traces", "zoo", "digits-cnn", "--seed", "5", "--no-progress"], "folder of shipped files")
    refused(capsys, ["traces", "zoo", "--all", "--seed", "5", "--no-progress"], "--all", "seed 0")
    assert calls == [] and _digest(shipped) == before


def test_zoo_help_documents_the_default(capsys):
    with pytest.raises(SystemExit):
        main(["traces", "zoo", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "NAME.npz in the current folder" in out


# --------------------------------------------------------------------------- --no-progress
def test_quiet_libraries_silences_and_restores_the_progress_bars():
    ds_logging = pytest.importorskip("datasets.utils.logging")
    hub_utils = pytest.importorskip("huggingface_hub.utils")
    tf_logging = pytest.importorskip("transformers.utils.logging")
    before = (ds_logging.is_progress_bar_enabled(), hub_utils.are_progress_bars_disabled(),
              tf_logging.is_progress_bar_enabled())
    with common.quiet_libraries(False):
        assert not ds_logging.is_progress_bar_enabled()
        assert hub_utils.are_progress_bars_disabled()
        assert not tf_logging.is_progress_bar_enabled()
    assert (ds_logging.is_progress_bar_enabled(), hub_utils.are_progress_bars_disabled(),
            tf_logging.is_progress_bar_enabled()) == before
    with common.quiet_libraries(True):
        assert ds_logging.is_progress_bar_enabled() == before[0]


def test_quiet_libraries_filters_the_widgets_warning_of_its_own_imports(monkeypatch):
    """Importing transformers or datasets imports tqdm.auto, which in a notebook without
    widgets warns "IProgress not found": the imports run inside the filter (a stand-in import
    that warns so; before the fix the warning reached the notebook's output)."""
    import builtins
    import warnings

    real = builtins.__import__

    def noisy(name, *args, **kwargs):
        if name.split(".")[0] in ("transformers", "datasets", "huggingface_hub"):
            warnings.warn("IProgress not found. Please update jupyter and ipywidgets.")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", noisy)
    with warnings.catch_warnings(record=True) as got:
        warnings.simplefilter("always")
        with common.quiet_libraries(False):
            pass
        with common.quiet_libraries(True):
            __import__("datasets")  # with progress, nothing is filtered
    assert [str(w.message)[:19] for w in got] == ["IProgress not found"]


@pytest.mark.parametrize("workload", ["nlp", "vision"])
def test_workloads_run_quietly_without_progress(monkeypatch, workload):
    ds_logging = pytest.importorskip("datasets.utils.logging")
    mod = registry._module(workload)
    seen = []

    def fake(*args, **kw):
        seen.append(ds_logging.is_progress_bar_enabled())
        return "result"

    monkeypatch.setattr(mod, "_generate", fake)
    small = dict(n_trace=40, batch_size=8) if workload == "nlp" else dict(n_test=64, batch_size=16)
    assert registry.generate(workload, "offline", progress=False, **small) == "result"
    assert seen == [False]


# --------------------------------------------------------------------------- $TTAMER_CACHE
@pytest.mark.parametrize("kind", ["file", "below a file"])
def test_a_bad_cache_folder_names_the_variable(capsys, calls, monkeypatch, tmp_path, kind):
    blocker = tmp_path / "afile"
    blocker.write_bytes(b"not a folder")
    monkeypatch.setenv(common.CACHE_ENV, str(blocker if kind == "file" else blocker / "sub"))
    refused(capsys, VISION, "TTAMER_CACHE", "afile")
    with pytest.raises(TTamerError, match="TTAMER_CACHE"):
        common.cache_dir()
    assert calls == [] and blocker.read_bytes() == b"not a folder"


@pytest.mark.parametrize("extra, needles", [
    (["--n-head", "1", "--n-trace", "3", "--batch-size", "1"], ["--n-head must be >= 20", "MIN_HEAD_EXAMPLES"]),
    (["--n-trace", "10000000000"], ["--n-head + --n-trace must be <= 13,905", "10,000,000,000"]),
    (["--profile", "full", "--n-head", "30000"], ["--n-head must be <= 25,000"]),
])
def test_nlp_example_counts_are_refused_before_loading(capsys, calls, monkeypatch, extra, needles):
    from ttamer.workloads import nlp

    monkeypatch.setattr(nlp, "load_split", lambda *a, **k: pytest.fail("read the data"))
    refused(capsys, NLP + extra + ["--out", "a.npz"], *needles)
    assert calls == [] and not os.path.exists("a.npz")


def test_the_workload_names_sizes_by_their_flags(capsys, calls):
    """What only the data can refuse (sentences once read) is named by flag too: the run gets the labels."""
    assert main(NLP + ["--out", "a.npz"]) == 0
    (workload, kw), = calls
    assert workload == "nlp" and kw["label"]("n_head") == "--n-head" and kw["label"]("n_trace") == "--n-trace"
