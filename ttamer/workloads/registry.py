"""The workloads by name, and the trace cache in front of them.

:func:`get_trace` is what notebooks call: it returns the cached trace of a workload, profile,
seed, device and sizes, generating (and caching) it if absent. The cache file is written to a
temporary file and renamed (:func:`ttamer.earlyexit.traces.save_trace`), so a failed run never
overwrites a good trace. Each cached file records its key (workload, profile, seed, device,
sizes) in ``meta["cache_key"]``; a cached file that cannot be read, or whose key does not
match the request, is regenerated (with a warning naming the file), never served.
"""

from __future__ import annotations

import importlib
import json
import os
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Callable

from ..core.errors import TraceError, TTamerError
from ..earlyexit.traces import Trace, load_trace, save_trace
from ..core.validate import check_choice, escape_text, short_repr
from .common import WorkloadResult, cache_dir, check_workload_seed, trace_key

#: workload name -> (module, generator function)
WORKLOADS: dict[str, tuple[str, str]] = {
    "nlp": ("ttamer.workloads.nlp", "generate_nlp_trace"),
    "vision": ("ttamer.workloads.vision", "generate_vision_trace"),
}
#: The devices a workload runs on (:func:`~ttamer.serving.adapters.resolve_device`), as named in a cache key.
DEVICES = ("cpu", "cuda")
#: The fields of a cache key (:func:`cache_key`).
KEY_FIELDS = ("workload", "profile", "seed", "device", "sizes")


def _module(workload: str):
    if workload not in WORKLOADS:
        raise TTamerError(f"unknown workload {workload!r}; choose from {sorted(WORKLOADS)}")
    return importlib.import_module(WORKLOADS[workload][0])


def resolved_sizes(workload: str, profile: str, **sizes: Any) -> dict[str, Any]:
    """The sizes a run uses: the profile's defaults overridden by ``sizes`` (None = default)."""
    mod = _module(workload)
    return mod.sizes_of(mod.profile_config(profile, **sizes))


def check_run(workload: str, profile: str = "offline", *, seed: Any = 0,
              label: Callable[[str], str] | None = None, **sizes: Any) -> None:
    """Check a run's seed and sizes before anything is loaded or built (the workload's
    ``check_sizes``: nothing beyond the data or a sensible size, nothing clamped).

    Parameters
    ----------
    workload, profile : str
        As in :func:`generate`.
    seed : int, default 0
        Checked by :func:`~ttamer.workloads.common.check_workload_seed`.
    label : callable, optional
        The name of a setting in a message (e.g. ``"seed"`` -> ``"--seed"``); default: the name.
    **sizes
        The sizes (``None`` = the profile's default).
    """
    name = label or (lambda key: key)
    check_workload_seed(seed, name("seed"))
    mod = _module(workload)
    mod.check_sizes(mod.profile_config(profile, **sizes), name)


def _check_seed_device(seed: Any, device: Any) -> int:
    """``seed`` (:func:`~ttamer.workloads.common.check_workload_seed`), after checking that
    ``device`` is one of :data:`DEVICES`: both name a cached trace."""
    check_choice("device", device, DEVICES)
    return check_workload_seed(seed)


def trace_path(workload: str, profile: str = "offline", *, seed: int = 0, device: str = "cpu",
               cache: str | os.PathLike | None = None, **sizes: Any) -> Path:
    """Where the cached trace of these settings lives (it may not exist yet).

    Raises
    ------
    TTamerError
        For a ``seed`` that is not an integer in ``0..MAX_SEED``, a ``device`` not in
        :data:`DEVICES`, or an unknown workload, profile or size.
    """
    seed = _check_seed_device(seed, device)
    return cache_dir(cache) / trace_key(workload, profile, seed, device,
                                        resolved_sizes(workload, profile, **sizes))


def check_run_output(workload: str, path: Any, what: str, profile: str = "offline", *, seed: int = 0,
                     device: str = "cpu", cache: str | os.PathLike | None = None, **sizes: Any) -> Path:
    """``path`` as the file a run (as in :func:`generate`) may write its trace to, checked before
    any work: writable (:func:`~ttamer.core.safeio.check_target`), none of the files or folders
    the run reads (the workload's ``run_inputs``: its data set, the encoder's package, the
    caches) and not in the package's folders of shipped traces
    (:func:`~ttamer.workloads.zoo.shipped_folders`); links, hard links and bind mounts are
    resolved (:func:`~ttamer.workloads.common.check_output`).

    Raises
    ------
    TTamerError
        Naming ``what`` and the input or folder, or, as :func:`trace_path`, for a bad
        ``seed``, ``device``, workload, profile or size.
    """
    from .common import check_output
    from .zoo import shipped_folders

    seed = _check_seed_device(seed, device)
    mod = _module(workload)
    inputs = mod.run_inputs(mod.profile_config(profile, **sizes), profile=profile, seed=seed, device=device,
                            cache=cache)
    return check_output(path, what, inputs, shipped_folders())


def generate(workload: str, profile: str = "offline", *, seed: int = 0, device: str = "cpu",
             cache: str | os.PathLike | None = None, progress: bool = True,
             **sizes: Any) -> WorkloadResult:
    """Run a workload (no cache): see :func:`ttamer.workloads.nlp.generate_nlp_trace` and
    :func:`ttamer.workloads.vision.generate_vision_trace`."""
    mod = _module(workload)
    fn = getattr(mod, WORKLOADS[workload][1])
    return fn(profile, seed=seed, device=device, cache=cache, progress=progress, **sizes)


def get_trace(workload: str, profile: str = "offline", *, seed: int = 0, device: str = "cpu",
              cache: str | os.PathLike | None = None, regenerate: bool = False,
              progress: bool = True, **sizes: Any) -> Trace:
    """The trace of a workload from the cache, generated and cached first if absent (or if
    ``regenerate``)."""
    seed = check_workload_seed(seed)
    path = trace_path(workload, profile, seed=seed, device=device, cache=cache, **sizes)
    key = cache_key(workload, profile, seed=seed, device=device, **sizes)
    if path.exists() and not regenerate:
        try:
            trace = load_trace(path)
            problem = provenance_problem(trace.meta, key)
        except TraceError as exc:
            problem = f"it cannot be read ({exc})"
        if problem is None:
            return trace
        warnings.warn(f"cached trace {str(path)!r} is not the {workload!r}/{profile!r} trace asked for: "
                      f"{escape_text(problem, 300)}; regenerating it (or delete the file)", stacklevel=2)
    result = generate(workload, profile, seed=seed, device=device, cache=cache,
                      progress=progress, **sizes)
    trace = result.trace
    trace.meta["cache_key"] = key
    save_trace(path, trace)
    return trace


def cache_key(workload: str, profile: str = "offline", *, seed: int = 0, device: str = "cpu",
              **sizes: Any) -> dict[str, Any]:
    """What a cached trace must record in ``meta["cache_key"]`` to be served for these settings.

    Raises
    ------
    TTamerError
        As :func:`trace_path`.
    """
    seed = _check_seed_device(seed, device)
    resolved = resolved_sizes(workload, profile, **sizes)
    return json.loads(json.dumps({"workload": workload, "profile": profile, "seed": seed,
                                  "device": device, "sizes": resolved}, default=str))


def provenance_problem(meta: dict, key: dict[str, Any]) -> str | None:
    """Why a trace with this ``meta`` is not the cached trace of ``key`` (None if it is).

    Files written before keys were recorded are accepted when their own ``workload``,
    ``profile``, ``seed`` and ``sizes`` fields match.

    Raises
    ------
    TTamerError
        For a ``meta`` that is not a dict, or a ``key`` that is not a dict of the fields
        :data:`KEY_FIELDS` (:func:`cache_key`'s).
    """
    if not isinstance(meta, Mapping):
        raise TTamerError(f"provenance_problem: meta must be a trace's meta (a dict), got {short_repr(meta)}")
    if not isinstance(key, Mapping) or any(f not in key for f in KEY_FIELDS):
        raise TTamerError(f"provenance_problem: key must be a dict of the fields {list(KEY_FIELDS)} (cache_key's), "
                          f"got {short_repr(key)}")
    recorded = meta.get("cache_key")
    if recorded is not None:
        if recorded != key:
            diff = sorted(k for k in set(key) | set(recorded if isinstance(recorded, dict) else {})
                          if not isinstance(recorded, dict) or recorded.get(k) != key.get(k))
            return f"its recorded key differs in {diff}"
        return None
    for field in ("workload", "profile", "seed", "sizes"):
        if field not in meta:
            return f"its meta has no {field!r} (not written by this workload)"
        if json.loads(json.dumps(meta[field], default=str)) != key[field]:
            return f"its meta field {field!r} is {escape_text(repr(meta[field]), 80)}, expected {key[field]!r}"
    return None
