"""map_processes: the same results, in order, in this process or in workers."""

import functools
import operator

import pytest

from ttamer.core.errors import TTamerError
from ttamer.core.parallel import map_processes


def test_same_results_in_order():
    args = [(k, 3) for k in range(7)]
    assert map_processes(operator.pow, args) == [k**3 for k in range(7)]
    assert map_processes(operator.pow, args, n_jobs=2) == [k**3 for k in range(7)]
    assert map_processes(functools.partial(operator.add, 10), [(1,), (2,)], n_jobs=2) == [11, 12]
    assert map_processes(operator.add, [], n_jobs=2) == []


def test_bad_n_jobs_is_named():
    with pytest.raises(TTamerError, match="n_jobs"):
        map_processes(operator.add, [(1, 2)], n_jobs=0)


def _exit_hard(code):
    import os

    os._exit(code)


def test_a_worker_that_dies_is_named_not_a_broken_pool():
    """A worker that ends without a result (killed for memory, or a script without the main
    guard, whose workers fail to start) gives a TTamerError that says what to do."""
    with pytest.raises(TTamerError, match=r"squares: a worker process ended .*__main__.*n_jobs=1"):
        map_processes(_exit_hard, [(3,), (4,)], n_jobs=2, desc="squares")


def _threads_seen():
    import os

    return os.environ.get("OMP_NUM_THREADS")


def test_workers_are_single_threaded_and_the_parent_is_restored(monkeypatch):
    from ttamer.core.parallel import single_threaded_children

    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    monkeypatch.delenv("MKL_NUM_THREADS", raising=False)
    assert map_processes(_threads_seen, [(), ()], n_jobs=2) == ["1", "1"]
    with single_threaded_children():
        import os
        assert os.environ["OMP_NUM_THREADS"] == "1" and os.environ["MKL_NUM_THREADS"] == "1"
    import os
    assert os.environ["OMP_NUM_THREADS"] == "2" and "MKL_NUM_THREADS" not in os.environ


def _package_threads():
    from ttamer.core.parallel import available_threads

    return available_threads()


def test_available_threads(monkeypatch):
    """``TTAMER_NUM_THREADS`` sets the package's own thread pools; the workers of
    ``map_processes`` get 1 (they already fill the cores); a bad value is named."""
    from ttamer.core.parallel import available_threads

    monkeypatch.setenv("TTAMER_NUM_THREADS", "3")
    assert available_threads() == 3
    assert map_processes(_package_threads, [(), ()], n_jobs=2) == [1, 1]
    for bad in ("two", "0"):
        monkeypatch.setenv("TTAMER_NUM_THREADS", bad)
        with pytest.raises(TTamerError, match="TTAMER_NUM_THREADS"):
            available_threads()
    monkeypatch.delenv("TTAMER_NUM_THREADS")
    assert available_threads() >= 1


def test_cross_validation_threads_change_nothing(monkeypatch):
    """T-Tamer's cross-validation folds run on a thread pool; its size does not move a result."""
    import numpy as np

    from ttamer.earlyexit.tamer import ThresholdTamer
    from ttamer.earlyexit.traces import synthetic_trace

    trace = synthetic_trace(600, 4, 3, seed=5)
    fits = []
    for threads in ("1", "3"):
        monkeypatch.setenv("TTAMER_NUM_THREADS", threads)
        fits.append(ThresholdTamer(seed=2).fit(trace))
    a, b = fits
    assert np.array_equal(a.cv_fold_scores_, b.cv_fold_scores_) and np.array_equal(a.sweep_taus_, b.sweep_taus_)
    for key, curves in a.cv_curves_.items():
        for x, y in zip(curves, b.cv_curves_[key]):
            assert np.array_equal(x["budget"], y["budget"]) and np.array_equal(x["accuracy"], y["accuracy"])


def test_available_memory_reads_the_system(tmp_path):
    """``available_memory``: a positive byte count on Linux (None elsewhere); a cgroup file
    saying ``max`` sets no limit."""
    from ttamer.core.parallel import _read_int, available_memory

    free = available_memory()
    assert free is None or (isinstance(free, int) and free > 0)
    (tmp_path / "max").write_text("max\n")
    (tmp_path / "n").write_text("123456\n")
    assert _read_int(str(tmp_path / "max")) is None and _read_int(str(tmp_path / "n")) == 123456
    assert _read_int(str(tmp_path / "missing")) is None


def test_cgroup_headroom_counts_reclaimable_cache(tmp_path, monkeypatch):
    """Under a control-group limit the headroom is limit − usage + inactive page cache (the
    cache the kernel reclaims first); a limit of ``max`` or an unlimited v1 value sets none."""
    import ttamer.core.parallel as parallel

    v2, v1 = tmp_path / "v2", tmp_path / "v1"
    v2.mkdir()
    v1.mkdir()
    (v2 / "memory.max").write_text("1000000\n")
    (v2 / "memory.current").write_text("600000\n")
    (v2 / "memory.stat").write_text("anon 500000\ninactive_file 100000\nactive_file 7\n")
    (v1 / "memory.limit_in_bytes").write_text("9223372036854771712\n")
    (v1 / "memory.usage_in_bytes").write_text("5\n")
    files = (("v2", str(v2), "memory.max", "memory.current", "inactive_file"),
             ("v1", str(v1), "memory.limit_in_bytes", "memory.usage_in_bytes", "total_inactive_file"))
    monkeypatch.setattr(parallel, "CGROUP_FILES", files)
    monkeypatch.setattr(parallel, "_own_cgroups", lambda: {"v2": "/", "v1": "/nowhere"})
    assert parallel._cgroup_headroom() == 1000000 - 600000 + 100000
    assert parallel.available_memory() <= 500000
    (v2 / "memory.max").write_text("max\n")
    assert parallel._cgroup_headroom() is None


def test_own_cgroups_reads_v1_and_v2_lines(tmp_path, monkeypatch):
    """``/proc/self/cgroup``: the v2 line has no controllers; a v1 line may list memory among
    others."""
    import builtins

    import ttamer.core.parallel as parallel

    fake = tmp_path / "cgroup"
    fake.write_text("5:cpu,memory:/box/a\n3:pids:/box\n0::/unified/b\n")
    real_open = builtins.open
    monkeypatch.setattr(builtins, "open", lambda p, *a, **k: real_open(fake if p == "/proc/self/cgroup" else p,
                                                                       *a, **k))
    assert parallel._own_cgroups() == {"v1": "/box/a", "v2": "/unified/b"}
