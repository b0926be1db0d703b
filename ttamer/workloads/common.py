"""Pieces shared by the early-exit workloads (the book's chapter *Early exit on real models*).

* the trace cache (``~/.cache/ttamer/traces`` or ``$TTAMER_CACHE``), keyed by workload,
  profile, seed, device and sizes;
* seeds, devices and thread counts;
* :class:`BlockProbe`, which measures the wall-clock time and the multiply-accumulates (MACs)
  of every block of a network, so that ``cost[i]`` of a trace is the cost of reaching exit
  ``i`` from exit ``i-1`` (exit 0 from the input), the head of exit ``i`` included;
* :func:`train_linear_heads`, the exit heads of a frozen backbone (multinomial logistic
  regression on the exit's features), trained on examples that the trace does not contain;
* :func:`with_cost_unit`, which swaps the measured time for an alternative cost unit
  (``"layers"``: one per block, ``"mmacs"``: millions of MACs per example).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np

from ..core.errors import TraceError, TTamerError
from ..core.parallel import available_threads
from ..core.validate import check_int, check_seed, describe_value, escape_text, magnitude, short_repr
from ..earlyexit.traces import Trace
from ..serving.adapters import quiet, resolve_device

#: Environment variable overriding the cache folder of the traces.
CACHE_ENV = "TTAMER_CACHE"
#: Cost units a workload trace carries, the measured time (the ``cost`` array) and the
#: alternatives stored in ``meta["alt_costs"]``.
TIME_UNIT = "ms/example"
#: The alternative cost units, measured with the time and stored in ``meta["alt_costs"]``.
ALT_UNITS = ("layers", "mmacs")


# --------------------------------------------------------------------------- cache
def cache_dir(cache: str | os.PathLike | None = None) -> Path:
    """The folder holding cached traces: ``cache`` if given, else ``$TTAMER_CACHE``, else
    ``~/.cache/ttamer/traces``. Created if missing.

    Raises
    ------
    TTamerError
        If ``cache`` is not a path (a string or ``os.PathLike``, not empty), or the folder
        cannot be created or is not a folder; the message names ``$TTAMER_CACHE`` when the
        path came from it.
    """
    source, hint = "cache folder", ""
    if cache is not None:
        from ..core.safeio import check_path

        check_path(cache, "cache folder (cache)")
    if cache is None:
        if os.environ.get(CACHE_ENV):
            cache, source = os.environ[CACHE_ENV], f"trace cache ${CACHE_ENV}"
        else:
            cache, source = Path.home() / ".cache" / "ttamer" / "traces", "trace cache"
        hint = f"; set {CACHE_ENV} to a writable folder"
    path = Path(cache).expanduser()
    shown = escape_text(repr(str(path)), 300)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise TTamerError(f"{source} {shown} is not a folder (a file of that name exists){hint}") from None
    except OSError as exc:
        raise TTamerError(f"{source} {shown} cannot be created: {exc.strerror or exc}{hint}") from None
    return path


#: Most files of a run's input folders compared with an existing output file
#: (:func:`check_output`: a hard link to one of them is refused); beyond them the folder's other
#: files are not compared, so the check stays bounded in time.
MAX_INPUT_FILES = 100_000


def hub_caches() -> list[tuple[str, Path]]:
    """The Hugging Face caches a run may read, as ``(description, folder)``: the hub's
    (``$HF_HUB_CACHE``, else ``$HF_HOME/hub``; ``$HF_HOME`` defaults to
    ``$XDG_CACHE_HOME/huggingface``, i.e. ``~/.cache/huggingface``), ``datasets``'
    (``$HF_DATASETS_CACHE``, else ``$HF_HOME/datasets``; it holds the CSV cache too) and
    ``$TRANSFORMERS_CACHE`` where set; found without importing the libraries."""
    env = os.environ.get
    home = Path(env("HF_HOME") or os.path.join(env("XDG_CACHE_HOME") or "~/.cache", "huggingface")).expanduser()
    out = [("the Hugging Face hub cache", Path(env("HF_HUB_CACHE") or env("HUGGINGFACE_HUB_CACHE") or home / "hub")),
           ("the Hugging Face datasets cache", Path(env("HF_DATASETS_CACHE") or home / "datasets"))]
    if env("TRANSFORMERS_CACHE"):
        out.append(("the transformers cache $TRANSFORMERS_CACHE", Path(env("TRANSFORMERS_CACHE"))))
    return [(desc, path.expanduser()) for desc, path in out]


def package_folder(import_name: str) -> Path | None:
    """The folder of an installed package, found with ``importlib.util.find_spec`` (not
    imported); ``None`` where it is not installed (the run itself then says so)."""
    import importlib.util

    try:
        spec = importlib.util.find_spec(import_name)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def _file_id(path: Any) -> tuple[int, int] | None:
    """``(device, inode)`` of ``path`` (links followed), or ``None`` where it cannot be read."""
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return None
    return st.st_dev, st.st_ino


def _linked_file(folder: Path, target_id: tuple[int, int]) -> Path | None:
    """A file under ``folder`` that is the file ``target_id`` (a hard link, a link to it, the
    same file through a bind mount), among its first :data:`MAX_INPUT_FILES`; else ``None``."""
    seen = 0
    for root, _dirs, files in os.walk(folder):
        for name in files:
            seen += 1
            if seen > MAX_INPUT_FILES:
                return None
            path = Path(root) / name
            if _file_id(path) == target_id:
                return path
    return None


def check_output(path: Any, what: str, inputs: Sequence[tuple[str, Any]] = (), shipped: Sequence[Any] = (),
                 own: Any = None) -> Path:
    """``path`` as the file a run may write: writable (:func:`~ttamer.core.safeio.check_target`)
    and none of the run's own inputs, checked before any work.

    A target is compared with the inputs by its resolved path (``os.path.realpath``: links in
    its folders followed) and, where it exists, by device and inode, so that a hard link or a
    bind mount of an input is refused too; a target in an input folder, or in a folder of
    shipped files other than the run's ``own`` file, is refused.

    Parameters
    ----------
    path : str or pathlib.Path
        The file to write.
    what : str
        Its name in a message (e.g. ``"--out"``).
    inputs : sequence of (str, str or pathlib.Path)
        What the run reads: ``(description, file or folder)``; a folder stands for every
        file in it (the first :data:`MAX_INPUT_FILES` of them compared by inode).
    shipped : sequence of str or pathlib.Path
        Folders of files shipped with the package (the zoo's), where only ``own`` is written.
    own : str or pathlib.Path, optional
        The run's own shipped file (e.g. a zoo trace's, regenerated).

    Returns
    -------
    Path
        ``path``.

    Raises
    ------
    TTamerError
        Naming ``what``, the input and what is allowed, for a target that is an input of the
        run, lies in an input folder, or lies in a folder of shipped files and is not ``own``.
    """
    from ..core.safeio import check_target, show_path

    target = check_target(path, what)
    shown = show_path(target)
    real = Path(os.path.realpath(target))
    target_id = _file_id(target)
    around = {fid for fid in map(_file_id, real.parents) if fid is not None}

    def same(file: Any) -> bool:
        return (target_id is not None and _file_id(file) == target_id) or real == Path(os.path.realpath(file))

    def where(folder: Any) -> str | None:
        """How the target belongs to ``folder``: in it, or a link to one of its files."""
        fid = _file_id(folder)
        if fid is None:
            return None
        if fid in around:
            return "it lies in"
        linked = None if target_id is None else _linked_file(Path(folder), target_id)
        return None if linked is None else f"it is the file {show_path(linked)} (a hard link or bind mount) of"

    if own is not None and same(own):
        return target
    for desc, source in inputs:
        if os.path.isdir(source):
            how = where(source)
            if how is not None:
                raise TTamerError(f"cannot write {what} {shown}: {how} {desc} {show_path(source)}, which this run "
                                  f"reads; write the trace elsewhere")
        elif same(source):
            raise TTamerError(f"cannot write {what} {shown}: it is {desc} {show_path(source)}, which this run "
                              f"reads; write the trace elsewhere")
    for folder in shipped:
        how = where(folder)
        if how is not None:
            allowed = (f"only this trace's own file {show_path(own)} is written there" if own is not None else
                       "only a shipped trace's own build writes there (a zoo trace: seed 0 or a held-out seed, at "
                       "its own size; the skip chain: seed 0)")
            raise TTamerError(f"cannot write {what} {shown}: {how} the package's folder of shipped traces "
                              f"{show_path(folder)}; {allowed}; write elsewhere")
    return target


#: The version of the workloads' recipes, part of every cache key. It is raised when a recipe
#: changes what a trace holds (version 2 sorts the text encoder's batches by token count), so
#: that a trace cached by an older recipe is never read as this one's.
RECIPE = 2


def trace_key(workload: str, profile: str, seed: int, device: str, sizes: Mapping[str, Any]) -> str:
    """File name of a cached trace: readable, and distinct for every recipe (:data:`RECIPE`),
    workload, profile, seed, device and size setting (sizes sorted by name)."""
    parts = [f"r{RECIPE}", workload, profile, f"seed{int(seed)}", device]
    parts += [f"{k}{v}" for k, v in sorted(sizes.items())]
    return re.sub(r"[^A-Za-z0-9_.=-]+", "_", "-".join(parts)) + ".npz"


# --------------------------------------------------------------------------- runtime
def profile_settings(workload: str, profiles: Mapping[str, dict[str, Any]], size_keys: Sequence[str],
                     profile: str, sizes: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``profiles[profile]`` with the given sizes (``None`` = the profile's default);
    a clear error for an unknown profile or size name."""
    if profile not in profiles:
        raise TTamerError(f"unknown {workload} profile {profile!r}; choose from {sorted(profiles)}")
    unknown = set(sizes) - set(size_keys)
    if unknown:
        raise TTamerError(f"unknown {workload} size parameter(s) {sorted(unknown)}; known: {list(size_keys)}")
    cfg = dict(profiles[profile])
    cfg.update({k: v for k, v in sizes.items() if v is not None})
    return cfg


def require_columns(cfg: Mapping[str, Any], split: str, columns: Sequence[str], present: Sequence[str]) -> None:
    """A clear error naming the dataset, split and column when a needed column is missing."""
    for col in columns:
        if col not in present:
            raise TTamerError(f"dataset {cfg['dataset']!r} split {split!r}: no column {col!r} "
                              f"(columns: {list(present)})")




#: Largest seed of a workload run (torch's generators take 64-bit seeds, and the workloads add
#: small offsets to the seed, one per exit head and one for the trace sample).
MAX_SEED = 2**63 - 1


def check_workload_seed(seed: Any, name: str = "seed") -> int:
    """The seed of a workload run: a non-negative integer (:func:`~ttamer.core.validate.check_seed`)
    of at most :data:`MAX_SEED`; a :class:`~ttamer.core.errors.TTamerError` naming ``name`` otherwise.

    Parameters
    ----------
    seed : int
        The seed.
    name : str, default "seed"
        The argument's name in the message (e.g. ``"--seed"``).

    Returns
    -------
    int
        The seed.
    """
    seed = check_seed(seed, name)
    if seed > MAX_SEED:
        raise TTamerError(f"{name} must be <= {MAX_SEED} (2**63 - 1, MAX_SEED: torch's generators take "
                          f"64-bit seeds), got {seed}")
    return seed


def check_size(value: Any, name: str, maximum: int, why: str, minimum: int = 1) -> int:
    """A size setting of a workload: an integer in ``[minimum, maximum]``, never clamped.

    Parameters
    ----------
    value : int
        The setting.
    name : str
        Its name in the message (e.g. ``"--n-test"``).
    maximum : int
        The largest value accepted.
    why : str
        Where ``maximum`` comes from, for the message.
    minimum : int, default 1
        The smallest value accepted.

    Returns
    -------
    int
        ``value``.
    """
    value = check_int(value, name, minimum=minimum)
    if value > maximum:
        raise TTamerError(f"{name} must be <= {maximum:,} ({why}), got {value:,}")
    return value


def check_timed_batches(n: int, batch_size: int, n_name: str, batch_name: str, warmup: int | None = None) -> None:
    """Refuse, before any work, a trace of ``n`` examples that batches of ``batch_size`` cut
    into too few batches for :class:`CostRecorder` to time (it skips ``warmup`` batches).

    Parameters
    ----------
    n, batch_size : int
        The examples of the trace and the batch size.
    n_name, batch_name : str
        Their names in the message (e.g. ``"--n-test"``, ``"--batch-size"``).
    warmup : int, optional
        Batches not timed; default: :class:`CostRecorder`'s.
    """
    warmup = CostRecorder.warmup if warmup is None else warmup
    if n <= warmup:
        raise TTamerError(f"{n_name} must be > {warmup}: the cost is timed on the batches after "
                          f"{warmup} warm-up batches, got {n}")
    if batch_size * warmup >= n:
        raise TTamerError(f"{batch_name} must be <= {(n - 1) // warmup:,} so that the {n:,} trace examples "
                          f"({n_name}) make more than {warmup} batches (the first {warmup} are warm-up, not "
                          f"timed), got {batch_size:,}")


def set_runtime(seed: int, threads: int | None) -> None:
    """Seed Python's, NumPy's and torch's generators; cap torch's CPU threads at ``threads``."""
    import random

    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if threads is not None:
        torch.set_num_threads(int(threads))


@contextlib.contextmanager
def all_threads() -> Iterator[None]:
    """Inside: torch on every thread this package may use
    (:func:`~ttamer.core.parallel.available_threads`), for untimed passes of a workload whose
    timing runs on fewer; after: the thread count it had."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(available_threads())
    try:
        yield
    finally:
        torch.set_num_threads(before)


@contextlib.contextmanager
def quiet_libraries(progress: bool) -> Iterator[None]:
    """Without ``progress``: no progress bars from ``transformers`` (weight loading),
    ``datasets`` (e.g. "Generating train split") or ``huggingface_hub``, as ``--no-progress``
    promises; each library's setting is restored afterwards.

    Parameters
    ----------
    progress : bool
        True leaves the libraries as they are.
    """
    if progress:
        yield
        return
    restore: list[Callable[[], None]] = []
    with quiet(False):  # around the imports too: importing datasets imports tqdm.auto, which may warn
        try:
            from datasets.utils import logging as ds_logging
        except ImportError:  # pragma: no cover - datasets is optional
            ds_logging = None
        if ds_logging is not None and ds_logging.is_progress_bar_enabled():
            ds_logging.disable_progress_bar()
            restore.append(ds_logging.enable_progress_bar)
        try:
            from huggingface_hub import utils as hub_utils
        except ImportError:  # pragma: no cover - huggingface_hub is optional
            hub_utils = None
        if hub_utils is not None and not hub_utils.are_progress_bars_disabled():
            hub_utils.disable_progress_bars()
            restore.append(hub_utils.enable_progress_bars)
        try:
            yield
        finally:
            for undo in restore:
                undo()


def start_run(seed: int, threads: int | None, device: Any) -> "torch.device":  # noqa: F821
    """The device of a workload run (:func:`~ttamer.serving.adapters.resolve_device`), with the generators seeded and,
    on the CPU, torch capped at ``threads`` threads (:func:`set_runtime`)."""
    dev = resolve_device(device)
    set_runtime(seed, threads if dev.type == "cpu" else None)
    return dev


def environment_meta(device: "torch.device") -> dict:  # noqa: F821
    """Hardware and library versions for a trace's ``meta``."""
    import torch

    hw = {"device": str(device), "machine": platform.machine(), "processor": platform.processor(),
          "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads()}
    if device.type == "cuda":
        hw["gpu"] = torch.cuda.get_device_name(device)
    versions = {"python": platform.python_version(), "numpy": np.__version__, "torch": torch.__version__}
    for mod in ("transformers", "datasets"):
        try:
            versions[mod] = __import__(mod).__version__
        except ImportError:  # pragma: no cover - optional
            pass
    return {"hardware": hw, "versions": versions}


def cpu_kernels() -> dict[str, str]:
    """The CPU and the instruction set of torch's CPU kernels: ``machine``, ``cpu`` (the model
    name), ``flags`` (a digest of the CPU's feature flags, which choose the BLAS library's code
    path) and ``torch_capability``. A trace rebuilt where these equal its file's
    ``meta["hardware"]["kernels"]`` reproduces its probabilities to float rounding."""
    import torch

    try:
        info = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:  # not Linux, or not readable: the model name from platform, no flags
        info = ""
    first = info.split("\n\n")[0]  # the first processor's fields
    field = {k.strip(): v.strip() for k, _, v in (line.partition(":") for line in first.splitlines())}
    flags = " ".join(sorted(field.get("flags", "").split()))
    return {"machine": platform.machine(), "cpu": field.get("model name") or platform.processor(),
            "flags": hashlib.blake2b(flags.encode(), digest_size=8).hexdigest(),
            "torch_capability": str(torch.backends.cpu.get_cpu_capability())}


def split_indices(n: int, n_head: int, n_trace: int, seed: int, names: tuple[str, str] = ("n_head", "n_trace"),
                  what: str = "examples available") -> tuple[np.ndarray, np.ndarray]:
    """Disjoint sorted index sets (head-train, trace) drawn without replacement from ``range(n)``.

    Raises
    ------
    TTamerError
        If either size is not an integer ``>= 1`` or together they exceed ``n``, or ``seed`` is
        not a non-negative integer; ``names`` name the sizes (e.g. ``("--n-head", "--n-trace")``)
        and ``what`` the ``n`` examples in the message.
    """
    a, b = names
    check_seed(seed, "seed")
    n_head, n_trace = check_int(n_head, a), check_int(n_trace, b)
    if n_head < 1 or n_trace < 1:
        raise TTamerError(f"{a} and {b} must be >= 1, got {n_head} and {n_trace}")
    if n_head + n_trace > n:
        raise TTamerError(f"{a} + {b} = {magnitude(n_head + n_trace)} exceeds the {n:,} {what}")
    perm = np.random.default_rng(seed).permutation(n)
    return np.sort(perm[:n_head]), np.sort(perm[n_head:n_head + n_trace])


def sample_indices(n: int, k: int | None, seed: int, name: str = "sample size",
                   what: str = "examples available") -> np.ndarray:
    """``k`` sorted indices of ``range(n)`` drawn without replacement (all if ``k`` is None or
    ``n``); ``k`` that is not an integer in ``1..n`` is an error naming ``name`` and ``what``
    (never clamped), and so is a ``seed`` that is not a non-negative integer."""
    check_seed(seed, "seed")
    if k is None or k == n:
        return np.arange(n)
    k = check_int(k, name)
    if k < 1:
        raise TTamerError(f"{name} must be >= 1, got {k}")
    if k > n:
        raise TTamerError(f"{name} must be <= {n:,} (the {what}), got {k:,}")
    return np.sort(np.random.default_rng(seed).choice(n, size=k, replace=False))


# --------------------------------------------------------------------------- measuring blocks
class BlockProbe:
    """Wall-clock time and MACs of consecutive blocks of one forward pass.

    Call :meth:`start` before the first block and :meth:`mark` right after block ``i`` (and its
    exit head); block ``i`` then took ``t_i - t_{i-1}`` seconds (``t_{-1}`` = start). On CUDA
    every mark synchronises, so the times are the device's. :meth:`count_macs` adds hooks that
    count the MACs of every ``nn.Linear`` / ``nn.Conv2d`` (``out.numel() · fan_in``); other
    MACs (e.g. attention's matrix products) are added with :meth:`add_macs`.
    """

    def __init__(self, device: "torch.device") -> None:  # noqa: F821
        import torch

        self._sync: Callable[[], None] = (
            (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None))
        self._t0 = 0.0
        self._times: list[float] = []
        self._macs_marks: list[int] = []
        self.macs = 0
        self._handles: list = []

    def start(self) -> None:
        """Start a forward pass: reset the marks and the MAC count, read the clock."""
        self._sync()
        self._times, self._macs_marks, self.macs = [], [], 0
        self._t0 = time.perf_counter()

    def mark(self) -> None:
        """Mark the end of the next block: read the clock and the MAC count."""
        self._sync()
        self._times.append(time.perf_counter())
        self._macs_marks.append(self.macs)

    def add_macs(self, n: int) -> None:
        """Add ``n`` MACs that no hook counts (e.g. attention's matrix products)."""
        self.macs += int(n)

    def block_seconds(self) -> np.ndarray:
        """``[L]`` seconds of each block of the last pass."""
        return np.diff(np.asarray([self._t0] + self._times))

    def block_macs(self) -> np.ndarray:
        """``[L]`` MACs of each block of the last pass."""
        return np.diff(np.asarray([0] + self._macs_marks, dtype=np.float64))

    def count_macs(self, module: "torch.nn.Module") -> None:  # noqa: F821
        """Hook every ``nn.Linear`` / ``nn.Conv2d`` of ``module`` to count its MACs."""
        from torch import nn

        def linear(mod, _inp, out):
            self.macs += out.numel() * mod.in_features

        def conv(mod, _inp, out):
            kh, kw = mod.kernel_size
            self.macs += out.numel() * (mod.in_channels // mod.groups) * kh * kw

        for m in module.modules():
            if isinstance(m, nn.Linear):
                self._handles.append(m.register_forward_hook(linear))
            elif isinstance(m, nn.Conv2d):
                self._handles.append(m.register_forward_hook(conv))

    def remove(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []


@dataclass
class CostRecorder:
    """Collects per-example block times and MACs over batches; the first ``warmup`` batches
    are not timed. :meth:`summary` gives the median time per example of every block (ms) and
    the mean MACs per example (millions)."""

    warmup: int = 2
    seconds: list = field(default_factory=list)
    macs: list = field(default_factory=list)
    sizes: list = field(default_factory=list)
    seen: int = 0

    def add(self, probe: BlockProbe, batch_size: int) -> None:
        self.seen += 1
        self.macs.append(probe.block_macs())
        self.sizes.append(batch_size)
        if self.seen > self.warmup:
            self.seconds.append(probe.block_seconds() / batch_size)

    def summary(self) -> tuple[np.ndarray, np.ndarray, int]:
        """``(ms, mmacs, n_timed)``: median ms and mean millions of MACs per example of every
        block, and the number of timed batches."""
        if not self.seconds:
            raise TTamerError(f"no timed batch: {self.seen} batch(es) seen, {self.warmup} warm-up; "
                              "use more trace examples or a smaller batch size")
        ms = 1e3 * np.median(np.stack(self.seconds), axis=0)
        mmacs = np.stack(self.macs).sum(axis=0) / max(sum(self.sizes), 1) / 1e6
        return ms, mmacs, len(self.seconds)


# --------------------------------------------------------------------------- exit heads
def train_linear_heads(features: Sequence[np.ndarray], labels: np.ndarray, n_classes: int, *,
                       weight_decay: float = 3e-2, max_iter: int = 200,
                       seed: int = 0) -> list["torch.nn.Linear"]:  # noqa: F821
    """One multinomial logistic-regression head per exit.

    For exit ``i`` with features ``x`` (standardised with the training mean ``m`` and standard
    deviation ``s``) the head minimises ``mean CE(W z + b, y) + weight_decay · ||W||²``,
    ``z = (x - m)/s``, by L-BFGS; the standardisation is folded into the returned
    ``nn.Linear`` (weight ``W/s``, bias ``b - (W/s) m``), so it applies to raw features.

    Raises
    ------
    TTamerError
        If fewer than 2 examples are given (the spread of a feature needs two) or an exit's
        features are not ``[n, D]`` for the ``n`` labels.
    """
    import torch
    from torch import nn

    y = torch.as_tensor(np.asarray(labels), dtype=torch.long)
    if y.ndim != 1 or len(y) < 2:
        raise TTamerError(f"exit heads need at least 2 training examples (each feature is standardised by its "
                          f"spread over them), got labels of shape {tuple(y.shape)}")
    heads = []
    for i, feats in enumerate(features):
        x = torch.as_tensor(np.asarray(feats), dtype=torch.float32)
        if x.ndim != 2 or x.shape[0] != len(y):
            raise TTamerError(f"features of exit {i}: shape {tuple(x.shape)}, expected ({len(y)}, D)")
        m, s = x.mean(0), x.std(0).clamp_min(1e-6)
        z = (x - m) / s
        torch.manual_seed(seed + i)
        lin = nn.Linear(x.shape[1], n_classes)
        opt = torch.optim.LBFGS(lin.parameters(), max_iter=max_iter, line_search_fn="strong_wolfe")

        def closure():
            opt.zero_grad()
            loss = nn.functional.cross_entropy(lin(z), y) + weight_decay * lin.weight.pow(2).sum()
            loss.backward()
            return loss

        with torch.enable_grad():
            opt.step(closure)
        head = nn.Linear(x.shape[1], n_classes)
        with torch.no_grad():
            head.weight.copy_(lin.weight / s)
            head.bias.copy_(lin.bias - head.weight @ m)
        heads.append(head)
    return heads


# --------------------------------------------------------------------------- traces
def finish_meta(meta: dict, cost_ms: np.ndarray, mmacs: np.ndarray, n_timed: int) -> dict:
    """Add the cost description (unit, alternatives, how it was measured) to ``meta``."""
    L = len(cost_ms)
    meta["cost_unit"] = TIME_UNIT
    meta["cost_measure"] = (f"median over {n_timed} timed batches (after warm-up) of the wall-clock "
                            "time per example of each block with its exit head")
    meta["alt_costs"] = {"layers": [1.0] * L, "mmacs": [float(v) for v in mmacs]}
    return meta


def with_cost_unit(trace: Trace, unit: str) -> Trace:
    """The same trace with its ``cost`` in another unit: ``"time"`` (the measured
    ``ms/example``, unchanged), or one of :data:`ALT_UNITS` from ``meta["alt_costs"]``.

    Raises
    ------
    TTamerError
        For a ``trace`` that is not a :class:`~ttamer.earlyexit.traces.Trace` or a ``unit``
        that is not a string; :class:`~ttamer.core.errors.TraceError` for a unit the trace
        does not carry.
    """
    if not isinstance(trace, Trace):
        raise TTamerError(f"with_cost_unit: trace must be a Trace (ttamer.earlyexit.traces), got {describe_value(trace)}")
    if not isinstance(unit, str):
        raise TTamerError(f"with_cost_unit: unit must be a string ('time' or one of {list(ALT_UNITS)}), "
                          f"got {short_repr(unit)}")
    if unit in ("time", trace.meta.get("cost_unit")):
        return trace
    alts = trace.meta.get("alt_costs") or {}
    if unit not in alts:
        raise TraceError(f"key 'meta': no alternative cost {unit!r} in field 'alt_costs' "
                         f"(available: time, {', '.join(alts) or 'none'})")
    meta = json.loads(json.dumps(trace.meta))
    meta["cost_unit"] = unit
    return Trace(trace.probs, trace.labels, np.asarray(alts[unit], dtype=np.float64), meta).validate()


@dataclass
class WorkloadResult:
    """What a workload run produced: the trace, the examples its exit heads were trained on
    (``head_split`` / ``head_index``) and those in the trace (``trace_split`` /
    ``trace_index``), and the per-exit accuracy and seconds of each phase."""

    trace: Trace
    head_split: str
    head_index: np.ndarray
    trace_split: str
    trace_index: np.ndarray
    seconds: dict = field(default_factory=dict)

    @property
    def exit_accuracy(self) -> np.ndarray:
        return self.trace.accuracy()
