"""The workloads by name, and the trace cache in front of them.

:func:`get_trace` is what notebooks call: it returns the cached trace of a workload, profile,
seed, device and sizes, generating (and caching) it if absent. The cache file is written to a
temporary file and renamed (:func:`ttamer.traces.save_trace`), so a failed run never
overwrites a good trace.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import Any

from ..errors import TTamerError
from ..traces import Trace, load_trace, save_trace
from .common import WorkloadResult, cache_dir, trace_key

#: workload name -> (module, generator function)
WORKLOADS: dict[str, tuple[str, str]] = {
    "nlp": ("ttamer.workloads.nlp", "generate_nlp_trace"),
    "vision": ("ttamer.workloads.vision", "generate_vision_trace"),
}


def _module(workload: str):
    if workload not in WORKLOADS:
        raise TTamerError(f"unknown workload {workload!r}; choose from {sorted(WORKLOADS)}")
    return importlib.import_module(WORKLOADS[workload][0])


def resolved_sizes(workload: str, profile: str, **sizes: Any) -> dict[str, Any]:
    """The sizes a run uses: the profile's defaults overridden by ``sizes`` (None = default)."""
    mod = _module(workload)
    return mod.sizes_of(mod.profile_config(profile, **sizes))


def trace_path(workload: str, profile: str = "offline", *, seed: int = 0, device: str = "cpu",
               cache: str | os.PathLike | None = None, **sizes: Any) -> Path:
    """Where the cached trace of these settings lives (it may not exist yet)."""
    return cache_dir(cache) / trace_key(workload, profile, seed, device,
                                        resolved_sizes(workload, profile, **sizes))


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
    path = trace_path(workload, profile, seed=seed, device=device, cache=cache, **sizes)
    if path.exists() and not regenerate:
        return load_trace(path)
    result = generate(workload, profile, seed=seed, device=device, cache=cache,
                      progress=progress, **sizes)
    save_trace(path, result.trace)
    return result.trace
