"""Image workload: a multi-exit CNN trained from scratch (the book's chapter *Early exit on real models*).

One code path, two profiles (:data:`PROFILES`):

* ``"offline"`` — a small 4-block CNN (an exit after every block) on Fashion-MNIST, read from
  Debian's ``dataset-fashion-mnist`` (``/usr/share/datasets/fashion-mnist/*.gz``, idx format)
  and wrapped with ``datasets.Dataset.from_dict``; trained on the train split, traced on the
  test split (10k images).
* ``"full"`` — a CIFAR-style ResNet-18 with an exit after each of its 4 stages (or VGG-11 with
  an exit after each of its 5 pooling stages, ``arch="vgg11"``), on CIFAR-10 loaded by hub name
  (``uoft-cs/cifar10``); meant for a GPU. The blocks are written here in plain torch
  (torchvision is not a dependency).

Every exit head is global average pooling to ``pool × pool`` → linear. The network and its
heads are trained jointly on ``Σ_i w_i · CE(exit_i)`` (Adam, cosine learning rate). ``cost[i]``
is the measured wall-clock time per example of block ``i`` with its head, the median over test
batches after warm-up; ``meta["alt_costs"]`` holds ``layers`` (blocks) and ``mmacs``.
"""

from __future__ import annotations

import gzip
import math
import os
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..core.errors import TTamerError
from ..earlyexit.traces import Trace
from .common import (BlockProbe, CostRecorder, WorkloadResult, check_size, check_timed_batches,
                     check_workload_seed, environment_meta, finish_meta, profile_settings, quiet_libraries,
                     require_columns, sample_indices, start_run)

#: Folder of Debian's Fashion-MNIST.
FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                         "Sneaker", "Bag", "Ankle boot"]
CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
                   "truck"]

#: The profile table.
PROFILES: dict[str, dict[str, Any]] = {
    "offline": {
        "source": "fashion_mnist", "dataset": "Fashion-MNIST (Debian dataset-fashion-mnist)",
        "image_column": "image", "label_column": "label", "label_names": FASHION_MNIST_CLASSES,
        "train_split": "train", "test_split": "test", "arch": "small_cnn", "augment": False,
        "n_train": 15000, "n_test": 10000, "epochs": 2, "batch_size": 128, "width": 12,
        "lr": 3e-3, "weight_decay": 0.0, "threads": 2, "train_size": 60000, "test_size": 10000,
    },
    "full": {
        "source": "hub", "dataset": "uoft-cs/cifar10",
        "image_column": "img", "label_column": "label", "label_names": CIFAR10_CLASSES,
        "train_split": "train", "test_split": "test", "arch": "resnet18", "augment": True,
        "n_train": 50000, "n_test": 10000, "epochs": 30, "batch_size": 256, "width": 64,
        "lr": 2e-3, "weight_decay": 5e-4, "threads": None, "train_size": 50000, "test_size": 10000,
    },
}
#: The size parameters a caller may override (they key the cache).
SIZE_KEYS = ("n_train", "n_test", "epochs", "batch_size", "width")
#: Largest ``width``, the channels of the first block (the last has ``8 × width``); the
#: network's weights and activations grow with its square and are allocated before any training.
MAX_WIDTH = 256
#: Largest ``epochs`` (the run's time grows with it).
MAX_EPOCHS = 1000
#: Largest ``batch_size`` (the activations held for a training step grow with it).
MAX_BATCH_SIZE = 4096


def profile_config(profile: str, **sizes: Any) -> dict[str, Any]:
    """The profile's settings with the given sizes (``None`` = the profile's default)."""
    cfg = profile_settings("vision", PROFILES, SIZE_KEYS, profile, sizes)
    return cfg


def sizes_of(cfg: dict[str, Any]) -> dict[str, Any]:
    return {k: cfg[k] for k in SIZE_KEYS}


def check_sizes(cfg: dict[str, Any], label: Callable[[str], str] | None = None) -> None:
    """Refuse, before anything is loaded or built, sizes beyond what exists or is sensible.

    ``n_train`` and ``n_test`` must not exceed the images of the profile's train and test
    splits (``train_size``, ``test_size``; never clamped), ``width``, ``epochs`` and
    ``batch_size`` not :data:`MAX_WIDTH`, :data:`MAX_EPOCHS` and :data:`MAX_BATCH_SIZE`, and the
    ``n_test`` trace images must make enough batches to time the cost.

    Parameters
    ----------
    cfg : dict
        The settings of :func:`profile_config`.
    label : callable, optional
        The name of a size in the message (e.g. ``"n_test"`` -> ``"--n-test"``); default: the key.
    """
    name = label or (lambda key: key)
    for key, split, size in (("n_train", "train_split", "train_size"), ("n_test", "test_split", "test_size")):
        check_size(cfg[key], name(key), cfg[size], f"the {cfg[split]} split has {cfg[size]:,} images")
    check_size(cfg["width"], name("width"), MAX_WIDTH, "MAX_WIDTH: the last block has 8 x width channels")
    check_size(cfg["epochs"], name("epochs"), MAX_EPOCHS, "MAX_EPOCHS")
    check_size(cfg["batch_size"], name("batch_size"), MAX_BATCH_SIZE, "MAX_BATCH_SIZE")
    check_timed_batches(int(cfg["n_test"]), int(cfg["batch_size"]), name("n_test"), name("batch_size"))


def run_inputs(cfg: dict[str, Any], **_: Any) -> list[tuple[str, Path]]:
    """What a run of settings ``cfg`` reads, as ``(description, file or folder)``: Debian's
    Fashion-MNIST folder (offline) or the Hugging Face caches (full); an output must be none of
    them (:func:`~ttamer.workloads.registry.check_run_output`)."""
    from .common import hub_caches

    if cfg["source"] == "fashion_mnist":
        return [("Debian's Fashion-MNIST folder", FASHION_MNIST_DIR)]
    return hub_caches()


# --------------------------------------------------------------------------- data
#: Largest idx file read (:func:`read_idx`), in bytes, decompressed (Fashion-MNIST's train
#: images take 47 MB); checked while reading, so that a corrupt or hostile file never fills memory.
MAX_IDX_BYTES = 2**30
#: Most dimensions of an idx file (:func:`read_idx`; MNIST's have 1 or 3).
MAX_IDX_DIMS = 8


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """A (gzipped) idx file — the MNIST format: magic ``0x0000 08 <ndim>``, big-endian int32
    dimensions, then unsigned bytes — as a uint8 array.

    Raises
    ------
    TTamerError
        Naming the file: missing, unreadable, not gzip data (or corrupt) where it ends in
        ``.gz``, larger than :data:`MAX_IDX_BYTES`, a bad magic, more than :data:`MAX_IDX_DIMS`
        dimensions, or dimensions that do not match its data.
    """
    from ..core.safeio import read_file, show_path

    path = Path(path)
    shown = show_path(path)
    if not path.exists():
        raise TTamerError(f"idx file {str(path)!r} does not exist (install Debian's dataset-fashion-mnist)")
    raw = read_file(path, "idx file", MAX_IDX_BYTES)
    if path.suffix == ".gz":
        raw = _gunzip(raw, shown)
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise TTamerError(f"idx file {str(path)!r}: bad magic {raw[:4]!r} (expected 00 00 08 <ndim>)")
    ndim = raw[3]
    if not 1 <= ndim <= MAX_IDX_DIMS:
        raise TTamerError(f"idx file {shown}: {ndim} dimensions; an idx file here has 1 to {MAX_IDX_DIMS} "
                          f"(MAX_IDX_DIMS)")
    if len(raw) < 4 + 4 * ndim:
        raise TTamerError(f"idx file {shown}: {len(raw)} bytes, too short for the header of {ndim} dimensions")
    dims = tuple(int(d) for d in np.frombuffer(raw, dtype=">i4", count=ndim, offset=4))
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if min(dims) < 0 or data.size != math.prod(dims):
        raise TTamerError(f"idx file {str(path)!r}: {data.size} bytes of data for dimensions {dims}")
    return data.reshape(dims)


def _gunzip(data: bytes, shown: str) -> bytes:
    """``data`` decompressed (gzip), at most :data:`MAX_IDX_BYTES`; an error naming the file
    ``shown`` for anything that is not gzip data or is corrupt."""
    import io
    import zlib

    try:
        with gzip.GzipFile(fileobj=io.BytesIO(data), mode="rb") as fh:
            out = fh.read(MAX_IDX_BYTES + 1)
    except (OSError, EOFError, zlib.error) as exc:
        raise TTamerError(f"idx file {shown} is not a valid gzip file ({exc}); expected a gzipped idx file "
                          f"(Debian's dataset-fashion-mnist)") from None
    if len(out) > MAX_IDX_BYTES:
        raise TTamerError(f"idx file {shown} decompresses to more than {MAX_IDX_BYTES:,} bytes (MAX_IDX_BYTES)")
    return out


def load_split(cfg: dict[str, Any], split: str):
    """One split as ``(dataset, image_shape)``: a ``datasets.Dataset`` (numpy format) with
    columns ``pixels`` (the image flattened, values 0..255) and ``label``, and the
    ``(H, W, ch)`` shape that unflattens ``pixels``."""
    import datasets

    if cfg["source"] == "fashion_mnist":
        prefix = {"train": "train", "test": "t10k"}.get(split)
        if prefix is None:
            raise TTamerError(f"Fashion-MNIST has splits 'train' and 'test', not {split!r}")
        x = read_idx(FASHION_MNIST_DIR / f"{prefix}-images-idx3-ubyte.gz")[..., None]
        y = read_idx(FASHION_MNIST_DIR / f"{prefix}-labels-idx1-ubyte.gz").astype(np.int64)
        if len(x) != len(y):
            raise TTamerError(f"Fashion-MNIST {split}: {len(x)} images but {len(y)} labels")
    else:
        raw = datasets.load_dataset(cfg["dataset"], split=split)
        require_columns(cfg, split, (cfg["image_column"], cfg["label_column"]), raw.column_names)
        x = np.stack([np.asarray(im.convert("RGB")) for im in raw[cfg["image_column"]]])
        y = np.asarray(raw[cfg["label_column"]], dtype=np.int64)
    ds = datasets.Dataset.from_dict({"pixels": x.reshape(len(x), -1), "label": y})
    return ds.with_format("numpy"), tuple(int(d) for d in x.shape[1:])


def images_of(ds, shape: tuple[int, ...], idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """uint8 images ``[k, H, W, ch]`` and int64 labels of rows ``idx``."""
    rows = ds[idx]
    return (np.asarray(rows["pixels"]).astype(np.uint8).reshape((len(idx),) + shape),
            np.asarray(rows["label"], dtype=np.int64))


def to_tensor(images: np.ndarray, mean: np.ndarray, std: np.ndarray):
    """uint8 ``[N, H, W, ch]`` → normalised float32 ``[N, ch, H, W]``."""
    import torch

    x = torch.as_tensor(np.ascontiguousarray(images)).permute(0, 3, 1, 2).to(torch.float32) / 255.0
    return (x - torch.as_tensor(mean).view(1, -1, 1, 1)) / torch.as_tensor(std).view(1, -1, 1, 1)


# --------------------------------------------------------------------------- models
def _nn():
    from torch import nn
    return nn


def conv_bn(cin: int, cout: int, stride: int = 1):
    nn = _nn()
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout),
                         nn.ReLU(inplace=True))


def exit_head(channels: int, n_classes: int, pool: int):
    """Global average pooling to ``pool × pool`` → flatten → linear."""
    nn = _nn()
    return nn.Sequential(nn.AdaptiveAvgPool2d(pool), nn.Flatten(), nn.Linear(channels * pool * pool, n_classes))


def _basic_block_class():
    nn = _nn()

    class BasicBlock(nn.Module):
        """ResNet basic block: two 3×3 convolutions and an identity (or 1×1) shortcut."""

        def __init__(self, cin: int, cout: int, stride: int) -> None:
            super().__init__()
            self.body = nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout),
                                      nn.ReLU(inplace=True), nn.Conv2d(cout, cout, 3, 1, 1, bias=False),
                                      nn.BatchNorm2d(cout))
            self.short = (nn.Identity() if stride == 1 and cin == cout else
                          nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)))
            self.relu = nn.ReLU(inplace=True)

        def forward(self, x):
            return self.relu(self.body(x) + self.short(x))

    return BasicBlock


def build_blocks(arch: str, in_ch: int, width: int) -> tuple[list, list[int], list[str]]:
    """(blocks, output channels of each block, exit names) of a multi-exit backbone.

    * ``small_cnn``: 4 blocks of two conv3×3-BN-ReLU, widths ``w, 2w, 4w, 8w``; the first
      convolution of blocks 1, 2 and 4 has stride 2 (28 → 14 → 7 → 7 → 4).
    * ``resnet18``: CIFAR ResNet-18 — stem + stage 1 (2 basic blocks, ``w``), stages 2–4 (2
      basic blocks each, ``2w, 4w, 8w``, stride 2); an exit after each stage.
    * ``vgg11``: VGG-11 with batch norm; an exit after each of its 5 pooling stages.
    """
    nn = _nn()
    if arch == "small_cnn":
        ch = [width, 2 * width, 4 * width, 8 * width]
        blocks = [nn.Sequential(conv_bn(in_ch, ch[0], 2), conv_bn(ch[0], ch[0])),
                  nn.Sequential(conv_bn(ch[0], ch[1], 2), conv_bn(ch[1], ch[1])),
                  nn.Sequential(conv_bn(ch[1], ch[2]), conv_bn(ch[2], ch[2])),
                  nn.Sequential(conv_bn(ch[2], ch[3], 2), conv_bn(ch[3], ch[3]))]
        return blocks, ch, [f"block{i + 1}" for i in range(4)]
    if arch == "resnet18":
        B = _basic_block_class()
        ch = [width, 2 * width, 4 * width, 8 * width]
        blocks, cin = [], width
        for i, c in enumerate(ch):
            stage = [B(cin, c, 1 if i == 0 else 2), B(c, c, 1)]
            if i == 0:
                stage = [conv_bn(in_ch, width)] + stage
            blocks.append(nn.Sequential(*stage))
            cin = c
        return blocks, ch, [f"stage{i + 1}" for i in range(4)]
    if arch == "vgg11":
        plan = [[width], [2 * width], [4 * width, 4 * width], [8 * width, 8 * width], [8 * width, 8 * width]]
        blocks, ch, cin = [], [], in_ch
        for stage in plan:
            layers = []
            for c in stage:
                layers.append(conv_bn(cin, c))
                cin = c
            blocks.append(nn.Sequential(*layers, nn.MaxPool2d(2)))
            ch.append(cin)
        return blocks, ch, [f"pool{i + 1}" for i in range(5)]
    raise TTamerError(f"unknown architecture {arch!r}; choose from ['small_cnn', 'resnet18', 'vgg11']")



def exit_outputs(blocks: Any, heads: Any, x: Any, probe: "BlockProbe | None" = None) -> list:
    """Run ``blocks`` in turn on ``x`` and return every exit head's output (logits), marking
    each block's end on ``probe`` (cost measurement) when one is given."""
    outs = []
    if probe is not None:
        probe.start()
    for block, head in zip(blocks, heads):
        x = block(x)
        outs.append(head(x))
        if probe is not None:
            probe.mark()
    return outs

#: Most input channels of :func:`build_model` (images have 1 or 3).
MAX_IN_CHANNELS = 64
#: Most classes of :func:`build_model` (every exit head has ``channels × pool² × n_classes`` weights).
MAX_CLASSES = 1000
#: Largest ``pool`` of :func:`build_model`: the side of an exit head's average pooling.
MAX_POOL = 4


def build_model(arch: str, in_ch: int, n_classes: int, width: int, pool: int | None = None):
    """A ``MultiExit`` network (an ``nn.Module``): ``forward(x)`` returns the logits of every exit.

    The sizes are checked before torch allocates anything, so that the weights stay bounded:
    ``in_ch`` in ``1..MAX_IN_CHANNELS``, ``n_classes`` in ``2..MAX_CLASSES``, ``width`` in
    ``1..MAX_WIDTH`` and ``pool`` (default 2 for ``small_cnn``, else 1) in ``1..MAX_POOL``; each
    an integer (nothing converted).

    Raises
    ------
    TTamerError
        Naming the size at fault, or for an unknown ``arch``.
    """
    nn = _nn()
    in_ch = check_size(in_ch, "in_ch", MAX_IN_CHANNELS, "MAX_IN_CHANNELS")
    n_classes = check_size(n_classes, "n_classes", MAX_CLASSES, "MAX_CLASSES", minimum=2)
    width = check_size(width, "width", MAX_WIDTH, "MAX_WIDTH: the last block has 8 x width channels")
    pool = (2 if arch == "small_cnn" else 1) if pool is None else check_size(pool, "pool", MAX_POOL, "MAX_POOL")
    blocks, ch, names = build_blocks(arch, in_ch, width)

    class MultiExit(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.blocks = nn.ModuleList(blocks)
            self.heads = nn.ModuleList([exit_head(c, n_classes, pool) for c in ch])
            self.exit_names = names

        def forward(self, x, probe: BlockProbe | None = None):
            return exit_outputs(self.blocks, self.heads, x, probe)

    return MultiExit()


# --------------------------------------------------------------------------- training
def augment(x, generator):
    """Random crop with 4-pixel zero padding and random horizontal flip (per image)."""
    import torch

    N, ch, H, W = x.shape
    dev = x.device
    pad = torch.nn.functional.pad(x, (4, 4, 4, 4))
    dy = torch.randint(0, 9, (N,), generator=generator).to(dev)
    dx = torch.randint(0, 9, (N,), generator=generator).to(dev)
    rows = (dy[:, None] + torch.arange(H, device=dev))[:, None, :, None].expand(N, ch, H, W + 8)
    x = torch.gather(pad, 2, rows)
    cols = (dx[:, None] + torch.arange(W, device=dev))[:, None, None, :].expand(N, ch, H, W)
    x = torch.gather(x, 3, cols)
    flip = (torch.rand(N, generator=generator) < 0.5).to(dev)
    return torch.where(flip[:, None, None, None], x.flip(3), x)


def train(model, x, y, cfg: dict[str, Any], device, seed: int, progress: bool = True) -> list[float]:
    """Joint training: minimise ``Σ_i w_i · CE(exit_i(x), y)`` with ``w_i = 1`` (Adam, cosine
    learning rate, ``epochs`` passes in random order). Returns the mean loss of each epoch."""
    import torch
    from tqdm.auto import tqdm

    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg["lr"], weight_decay=cfg["weight_decay"])
    bs, epochs = int(cfg["batch_size"]), int(cfg["epochs"])
    steps = epochs * ((len(x) + bs - 1) // bs)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg["lr"], total_steps=max(steps, 1),
                                                pct_start=0.15)
    losses = []
    model.train()
    bar = tqdm(total=steps, desc="vision: train", disable=not progress, leave=False)
    for _ in range(epochs):
        perm = torch.randperm(len(x), generator=gen)
        total = 0.0
        for s in range(0, len(x), bs):
            idx = perm[s:s + bs]
            xb, yb = x[idx].to(device), y[idx].to(device)
            if cfg["augment"]:
                xb = augment(xb, gen)
            loss = sum(torch.nn.functional.cross_entropy(o, yb) for o in model(xb))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(idx)
            bar.update()
        losses.append(total / len(x))
    bar.close()
    model.eval()
    return losses


def trace_pass(model, x, cfg: dict[str, Any], device, progress: bool = True
               ) -> tuple[np.ndarray, CostRecorder]:
    """Softmax of every exit ``[N, L, C]`` and the per-block costs, in inference mode."""
    import torch
    from tqdm.auto import tqdm

    probe = BlockProbe(device)
    probe.count_macs(model)
    rec = CostRecorder()
    out = []
    bs = int(cfg["batch_size"])
    try:
        with torch.inference_mode():
            for s in tqdm(range(0, len(x), bs), desc="vision: trace", disable=not progress, leave=False):
                xb = x[s:s + bs].to(device)
                logits = model(xb, probe)
                rec.add(probe, len(xb))
                out.append(torch.stack([torch.softmax(o.float(), -1) for o in logits], 1).cpu())
    finally:
        probe.remove()
    return torch.cat(out).numpy(), rec


# --------------------------------------------------------------------------- the workload
def generate_vision_trace(profile: str = "offline", *, seed: int = 0, device: str = "cpu",
                          n_train: int | None = None, n_test: int | None = None,
                          epochs: int | None = None, batch_size: int | None = None,
                          width: int | None = None, cache: str | os.PathLike | None = None,
                          progress: bool = True, label: Callable[[str], str] | None = None) -> WorkloadResult:
    """Build the image early-exit trace (the book's chapter *Early exit on real models*); see the module docstring.

    ``n_train`` images of the train split (seeded sample) train the network and its heads;
    ``n_test`` images of the test split form the trace. ``cache`` is unused (the data are
    local files or the hub's own cache); it is accepted for a uniform interface. The seed and
    sizes are checked (:func:`~ttamer.workloads.common.check_workload_seed`, :func:`check_sizes`)
    before anything is loaded or built. ``label``: the name of a size in messages (e.g.
    ``"n_test"`` -> ``"--n-test"``, as in :func:`check_sizes`).

    Raises
    ------
    TTamerError
        If the seed or a size is refused (:func:`check_sizes`), naming it.
    """
    seed = check_workload_seed(seed)
    cfg = profile_config(profile, n_train=n_train, n_test=n_test, epochs=epochs,
                         batch_size=batch_size, width=width)
    check_sizes(cfg, label)
    if cfg["source"] == "fashion_mnist":
        os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    with quiet_libraries(progress):
        return _generate(cfg, profile, seed, device, progress, label or (lambda key: key))


def _generate(cfg: dict[str, Any], profile: str, seed: int, device: Any, progress: bool,
              name: Callable[[str], str] = lambda key: key) -> WorkloadResult:
    """The run of :func:`generate_vision_trace` on checked settings ``cfg``."""
    import torch

    dev = start_run(seed, cfg["threads"], device)
    seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    (train_ds, shape), (test_ds, _) = load_split(cfg, cfg["train_split"]), load_split(cfg, cfg["test_split"])
    tr_idx = sample_indices(len(train_ds), cfg["n_train"], seed, name("n_train"),
                            f"images of the {cfg['train_split']} split")
    te_idx = sample_indices(len(test_ds), cfg["n_test"], seed + 1, name("n_test"),
                            f"images of the {cfg['test_split']} split")
    xtr, ytr = images_of(train_ds, shape, tr_idx)
    pix = xtr.reshape(-1, xtr.shape[-1]) / 255.0
    mean, std = pix.mean(0).astype(np.float32), pix.std(0).astype(np.float32)
    x_train, y_train = to_tensor(xtr, mean, std), torch.as_tensor(ytr)
    xte, y_test = images_of(test_ds, shape, te_idx)
    x_test = to_tensor(xte, mean, std)
    C = len(cfg["label_names"])
    model = build_model(cfg["arch"], x_train.shape[1], C, int(cfg["width"])).to(dev)
    seconds["load"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    losses = train(model, x_train, y_train, cfg, dev, seed, progress)
    seconds["train"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    probs, rec = trace_pass(model, x_test, cfg, dev, progress)
    cost_ms, mmacs, n_timed = rec.summary()
    seconds["trace"] = time.perf_counter() - t0

    meta = {
        "workload": "vision", "profile": profile, "model": f"{cfg['arch']} (width {cfg['width']}) with exits",
        "dataset": cfg["dataset"], "split": cfg["test_split"], "label_names": cfg["label_names"],
        "seed": int(seed), "sizes": sizes_of(cfg), "exit_names": list(model.exit_names),
        "training": {"split": cfg["train_split"], "n": len(tr_idx), "epochs": int(cfg["epochs"]),
                     "loss": "sum of the exits' cross-entropies", "optimizer": "AdamW, one-cycle lr",
                     "lr": cfg["lr"], "augment": bool(cfg["augment"]), "epoch_losses": losses},
        "head_examples": {"split": cfg["train_split"], "n": len(tr_idx)},
        "trace_examples": {"split": cfg["test_split"], "n": len(te_idx)},
        **environment_meta(dev),
    }
    finish_meta(meta, cost_ms, mmacs, n_timed)
    meta["generation_seconds"] = {k: round(v, 2) for k, v in seconds.items()}
    trace = Trace.build(probs, y_test, cost_ms, meta)
    return WorkloadResult(trace, cfg["train_split"], tr_idx, cfg["test_split"], te_idx, seconds)
