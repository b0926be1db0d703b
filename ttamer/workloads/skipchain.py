"""A chain of three separate image classifiers of very different sizes on Fashion-MNIST (the book's chapter *Skipping models in a cascade*).

The chain ``linear → mlp → cnn`` (a :class:`~ttamer.earlyexit.traces.Trace`, parents
``start, linear, mlp``) holds three *separate* models trained from scratch on the same
head-training images and traced on the same held-out images:

* ``linear`` -- multinomial logistic regression on the 784 normalised pixels
  (``784·10 = 7,840`` multiply-accumulates per image);
* ``mlp`` -- one hidden layer of 48 ReLU units (``784·48 + 48·10 = 38,112`` MACs, about 5×);
* ``cnn`` -- ``conv3×3(1→8) → ReLU → maxpool2 → conv3×3(8→12) → ReLU → maxpool2 → linear``
  (``28²·8·9 + 14²·12·72 + 588·10 = 231,672`` MACs, about 30×).

Consulting model ``j`` runs model ``j`` alone on the image, so its cost ``c_j`` is its own MACs
(no prefix): the cost of a route is the sum of the costs of the models it consults, whatever
it skipped. Costs are deterministic: the MACs of every ``nn.Linear`` / ``nn.Conv2d``
(``out.numel() · fan_in`` per image) counted by forward hooks, in millions (``"mmacs"``).

Data: Debian's ``dataset-fashion-mnist`` (read in place): the head-training images are a seeded
sample of the train split, the trace images a seeded sample of the test split (disjoint by
construction). Training: AdamW, one learning rate per model, a fixed number of epochs, batch
128, one CPU thread with deterministic algorithms, so regeneration reproduces the shipped file's
labels and costs exactly, and its probabilities to float rounding on a CPU whose kernels are
the file's (``meta["hardware"]["kernels"]``, :func:`~ttamer.workloads.common.cpu_kernels`);
another CPU's kernels round differently, and training amplifies it into models of the same
quality (measured: per-model accuracy 0.13 points apart). Build time: about a minute.

Regenerate the shipped file::

    python -c "from ttamer.workloads.skipchain import write_skip_chain; write_skip_chain()"
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..core.errors import TTamerError
from ..earlyexit.traces import Trace, load_trace, save_trace

#: The shipped file.
SKIP_CHAIN_PATH = Path(__file__).resolve().parent.parent / "data" / "cascades" / "fmnist-linear-mlp-cnn.npz"
#: Default sizes and training settings (the shipped file uses these with ``seed=0``).
DEFAULTS: dict[str, Any] = {"n_head": 30000, "n_trace": 6000, "batch_size": 128,
                            "models": {"linear": {"epochs": 5, "lr": 3e-3},
                                       "mlp": {"epochs": 8, "lr": 3e-3, "hidden": 48},
                                       "cnn": {"epochs": 8, "lr": 4e-3, "channels": (8, 12)}}}
NAMES = ("linear", "mlp", "cnn")


def vision_dir() -> Path:
    """Folder of Debian's Fashion-MNIST files."""
    from . import vision

    return vision.FASHION_MNIST_DIR


def build_models(hidden: int = 48, channels: tuple[int, int] = (8, 12), n_classes: int = 10) -> list:
    """The three untrained models, inputs ``[B, 1, 28, 28]``, outputs logits ``[B, C]``."""
    from torch import nn

    c1, c2 = channels
    return [nn.Sequential(nn.Flatten(), nn.Linear(784, n_classes)),
            nn.Sequential(nn.Flatten(), nn.Linear(784, hidden), nn.ReLU(), nn.Linear(hidden, n_classes)),
            nn.Sequential(nn.Conv2d(1, c1, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Conv2d(c1, c2, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Flatten(), nn.Linear(c2 * 49, n_classes))]


def count_macs(model, x) -> int:
    """Multiply-accumulates per example of ``model`` on ``x`` (``[B, …]``): ``out.numel() ·
    fan_in / B`` summed over its ``nn.Linear`` and ``nn.Conv2d`` layers."""
    import torch
    from torch import nn

    total = [0]

    def hook(mod, inp, out):
        fan_in = mod.in_features if isinstance(mod, nn.Linear) else \
            (mod.in_channels // mod.groups) * int(np.prod(mod.kernel_size))
        total[0] += out.numel() * fan_in

    hs = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in hs:
            h.remove()
    return total[0] // len(x)


def _train(model, x, y, epochs: int, lr: float, batch_size: int, seed: int) -> list[float]:
    """AdamW (weight decay 1e-4) with a one-cycle learning rate, cross-entropy; mean loss per epoch."""
    import torch

    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    steps = epochs * ((len(x) + batch_size - 1) // batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps)
    losses = []
    model.train()
    for _ in range(epochs):
        perm, tot = torch.randperm(len(x), generator=g), 0.0
        for s in range(0, len(x), batch_size):
            idx = perm[s:s + batch_size]
            loss = torch.nn.functional.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            tot += float(loss.detach()) * len(idx)
        losses.append(round(tot / len(x), 6))
    model.eval()
    return losses


#: The head-training images the chain may use, ``(fewest, most)`` (Fashion-MNIST's train split has 60,000).
N_HEAD_RANGE = (100, 60000)
#: The trace images the chain may use, ``(fewest, most)`` (Fashion-MNIST's test split has 10,000).
N_TRACE_RANGE = (100, 10000)


def check_sizes(n_head: Any = None, n_trace: Any = None) -> tuple[int, int]:
    """``(n_head, n_trace)`` of :func:`build_skip_chain` (``None``: :data:`DEFAULTS`'), each an
    integer within :data:`N_HEAD_RANGE` / :data:`N_TRACE_RANGE` (floats, strings and bools
    refused, never converted); a :class:`~ttamer.core.errors.TTamerError` naming it otherwise."""
    from .common import check_size

    out = []
    for name, value, (lo, hi), split in (("n_head", n_head, N_HEAD_RANGE, "train"),
                                         ("n_trace", n_trace, N_TRACE_RANGE, "test")):
        value = DEFAULTS[name] if value is None else value
        out.append(check_size(value, name, hi, f"the Fashion-MNIST {split} split has {hi:,} images", minimum=lo))
    return out[0], out[1]


def build_skip_chain(seed: int = 0, n_head: int | None = None, n_trace: int | None = None) -> Trace:
    """Train the three models on ``n_head`` Fashion-MNIST train images and trace them on
    ``n_trace`` test images (module docstring). Seed 0 and the default sizes give the shipped file
    (on another CPU's kernels, models of the same quality: module docstring).

    Raises
    ------
    ~ttamer.core.errors.TTamerError
        Before the data are read: for a seed that is not an integer in ``0..MAX_SEED``
        (:func:`~ttamer.workloads.common.check_workload_seed`) or sizes that are not integers in
        range (nothing converted); then if Debian's Fashion-MNIST files are missing or unreadable.
    """
    from . import vision
    from .common import check_workload_seed, cpu_kernels, sample_indices
    from .zoo import debian_version, deterministic_torch, package_version

    seed = check_workload_seed(seed)
    n_head, n_trace = check_sizes(n_head, n_trace)
    d = vision.FASHION_MNIST_DIR
    xs = {s: vision.read_idx(d / f"{p}-images-idx3-ubyte.gz") for s, p in (("train", "train"), ("test", "t10k"))}
    ys = {s: vision.read_idx(d / f"{p}-labels-idx1-ubyte.gz").astype(np.int64) for s, p in (("train", "train"), ("test", "t10k"))}
    hi = sample_indices(len(xs["train"]), n_head, seed)
    ti = sample_indices(len(xs["test"]), n_trace, seed + 1)
    t_start = time.perf_counter()
    seconds: dict[str, float] = {}
    bs = int(DEFAULTS["batch_size"])
    with deterministic_torch(seed):
        import torch

        mean = float(xs["train"][hi].mean() / 255.0)
        std = float(xs["train"][hi].std() / 255.0)

        def tensor(a: np.ndarray):
            return ((torch.as_tensor(a[:, None]).float() / 255.0) - mean) / std

        xh, yh, xt = tensor(xs["train"][hi]), torch.as_tensor(ys["train"][hi]), tensor(xs["test"][ti])
        cfg = DEFAULTS["models"]
        models = build_models(cfg["mlp"]["hidden"], tuple(cfg["cnn"]["channels"]))
        probs, macs, train_losses = [], [], {}
        for k, (name, model) in enumerate(zip(NAMES, models)):
            torch.manual_seed(seed * 100 + k)
            for p in model.parameters():  # re-initialise under the per-model seed
                if p.dim() > 1:
                    torch.nn.init.kaiming_uniform_(p, a=5 ** 0.5)
                else:
                    torch.nn.init.zeros_(p)
            t0 = time.perf_counter()
            train_losses[name] = _train(model, xh, yh, cfg[name]["epochs"], cfg[name]["lr"], bs, seed * 100 + k)
            seconds[f"train_{name}"] = round(time.perf_counter() - t0, 2)
            with torch.no_grad():
                probs.append(torch.cat([torch.softmax(model(xt[s:s + 1000]), dim=-1)
                                        for s in range(0, len(xt), 1000)]).numpy())
            macs.append(count_macs(model, xt[:2]))
    probs_arr = np.stack(probs, axis=1).astype(np.float32)
    mmacs = np.asarray(macs, dtype=float) / 1e6
    meta = {
        "model": "chain of separate models: linear -> mlp(48) -> cnn(8,12), trained from scratch",
        "dataset": "Fashion-MNIST (Debian dataset-fashion-mnist)", "exit_names": list(NAMES),
        "label_names": list(vision.FASHION_MNIST_CLASSES), "seed": int(seed),
        "data_source": {"package": "dataset-fashion-mnist (Debian)", "version": debian_version("dataset-fashion-mnist"),
                        "head_split": "train", "trace_split": "test", "head_indices": hi.tolist(),
                        "trace_indices": ti.tolist()},
        "cost_unit": "mmacs",
        "cost_measure": "millions of multiply-accumulates per image of the model alone (linear and convolution "
                        "layers, counted by forward hooks); a model's cost does not depend on the models before it",
        "macs": [int(m) for m in macs],
        "training": {"n": int(n_head), "batch_size": bs, "optimizer": "AdamW (weight decay 1e-4), one-cycle lr",
                     "settings": {k: {kk: (list(vv) if isinstance(vv, tuple) else vv) for kk, vv in v.items()}
                                  for k, v in cfg.items()},
                     "epoch_losses": train_losses},
        "versions": {"numpy": np.__version__, "torch": package_version("torch")},
        "hardware": {"device": "cpu", "kernels": cpu_kernels()},
        "generation_seconds": {**seconds, "total": round(time.perf_counter() - t_start, 2)},
        "regenerate": "python -c \"from ttamer.workloads.skipchain import write_skip_chain; write_skip_chain()\"",
    }
    return Trace.build(probs_arr, ys["test"][ti], mmacs, meta, parents=[None, "linear", "mlp"])


def write_skip_chain(path: str | os.PathLike | None = None, seed: int = 0) -> tuple[Trace, Path]:
    """Regenerate the chain (:func:`build_skip_chain`) and write it, compressed (default: the
    shipped file, :data:`SKIP_CHAIN_PATH`).

    ``seed`` and ``path`` are checked before the build: ``path`` must be writable
    (:func:`~ttamer.core.safeio.check_target`: a new file in an existing folder or a writable
    regular file), none of the build's inputs (Debian's Fashion-MNIST folder) and, in the
    package's folders of shipped traces, only :data:`SKIP_CHAIN_PATH` for seed 0
    (:func:`~ttamer.workloads.common.check_output`).

    Raises
    ------
    ~ttamer.core.errors.TTamerError
        For a seed or ``path`` refused (naming it), or as :func:`build_skip_chain`.
    """
    from . import vision
    from .common import check_output, check_workload_seed
    from .zoo import shipped_folders

    seed = check_workload_seed(seed)
    if path is None:
        SKIP_CHAIN_PATH.parent.mkdir(parents=True, exist_ok=True)
        path = SKIP_CHAIN_PATH
    path = check_output(path, "skip-chain file", [("Debian's Fashion-MNIST folder", vision.FASHION_MNIST_DIR)],
                        shipped_folders(), SKIP_CHAIN_PATH if seed == 0 else None)
    ct = build_skip_chain(seed=seed)
    save_trace(path, ct, compressed=True)
    os.chmod(path, 0o644)
    return ct, path


def load_skip_chain() -> Trace:
    """The shipped chain ``linear → mlp → cnn`` (no torch needed).

    Raises
    ------
    ~ttamer.core.errors.TTamerError
        If the file is missing (the message says how to regenerate it).
    """
    if not SKIP_CHAIN_PATH.exists():
        raise TTamerError(f"skip-chain trace {str(SKIP_CHAIN_PATH)!r} is missing; regenerate it with "
                          "write_skip_chain() of ttamer.workloads.skipchain")
    return load_trace(SKIP_CHAIN_PATH)
