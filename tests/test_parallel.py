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
