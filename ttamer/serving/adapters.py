"""What the serving runtime needs from torch models: multi-exit models and their adapters.

:class:`MultiExitModel` is a ``prepare`` step, a list of blocks and one exit head per block;
:func:`transformer_exits` exposes a Hugging Face encoder and per-layer heads that way. The small
helpers select rows of (nested) tensors, count and slice inputs, resolve a device, time
variants taking turns (:func:`medians_in_turns`) and silence the progress output of model
loading. torch and transformers are imported only when used. See
the book's chapter *Serving* (:doc:`/serving`).
"""

from __future__ import annotations

import contextlib
import gc
import sys
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np

from ..core.errors import TTamerError
from ..core.validate import check_int, escape_text


# --------------------------------------------------------------------------- small torch helpers
def _torch():
    import torch

    return torch


def take(x: Any, idx: "torch.Tensor") -> Any:  # noqa: F821
    """Rows ``idx`` of a tensor, or of every tensor in a tuple / list / dict (``None`` stays)."""
    torch = _torch()
    if x is None:
        return None
    if torch.is_tensor(x):
        return x.index_select(0, idx.to(x.device))
    if isinstance(x, (tuple, list)):
        return type(x)(take(e, idx) for e in x)
    if isinstance(x, dict):
        return {k: take(v, idx) for k, v in x.items()}
    raise TTamerError(f"cannot select rows of a {type(x).__name__}; hidden states and contexts must be "
                      "tensors or tuples / lists / dicts of tensors")


def to_device(x: "torch.Tensor", device: Any) -> "torch.Tensor":  # noqa: F821
    """``x`` on ``device``; a host tensor bound for CUDA is copied from pinned memory without
    blocking the host (a copy from pageable memory would be a host--device synchronisation)."""
    if _torch().device(device).type == "cuda" and x.device.type == "cpu":
        return x.pin_memory().to(device, non_blocking=True)
    return x.to(device)


def rows_on(idx: np.ndarray, device: Any) -> "torch.Tensor":  # noqa: F821
    """Row indices (a host array) as an int64 tensor on ``device`` (:func:`to_device`)."""
    return to_device(_torch().from_numpy(np.ascontiguousarray(idx, dtype=np.int64)), device)


@contextlib.contextmanager
def no_collection() -> Iterator[None]:
    """Inside: Python's cyclic garbage collector collected once, then off (as ``timeit`` times),
    so that a collection of a large process (a notebook's) never lands inside one timed call;
    after: on again if it was."""
    was = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def medians_in_turns(n_batches: int, n_variants: int, measure: Callable[[int, int], Any], repeats: int,
                     warmup: int) -> np.ndarray:
    """Timings of ``n_variants`` ways of running the same batches, taken so that a slow spell of
    a shared machine hits them alike: on batch ``b`` the variants take turns (their order
    rotated by ``b``), ``repeats`` times, and each keeps the median of its ``measure(b, j)``;
    then the mean over the batches after the first ``warmup`` (all of them if there are no
    more). A warm-up batch whose timings are dropped runs each variant once. The garbage
    collector is off meanwhile (:func:`no_collection`). Shape ``[n_variants, ...]``, as
    ``measure`` returns."""
    with no_collection():
        per = [_batch_medians(b, n_variants, measure, 1 if b < warmup < n_batches else int(repeats))
               for b in range(n_batches)]
    timed = per[warmup:] if len(per) > warmup else per
    return np.mean(np.stack(timed), axis=0)


def _batch_medians(b: int, n_variants: int, measure: Callable[[int, int], Any], repeats: int) -> np.ndarray:
    """Each variant's median over ``repeats`` turns on batch ``b`` (order rotated by ``b``)."""
    runs: list[list[Any]] = [[] for _ in range(n_variants)]
    for _ in range(repeats):
        for j in np.roll(np.arange(n_variants), b):
            runs[j].append(measure(b, int(j)))
    return np.median(np.asarray(runs), axis=1)


def _n_rows(x: Any) -> int:
    torch = _torch()
    if torch.is_tensor(x):
        return int(x.shape[0])
    if isinstance(x, (tuple, list)) and x:
        return _n_rows(x[0])
    if isinstance(x, dict) and x:
        return _n_rows(next(iter(x.values())))
    raise TTamerError(f"cannot count the rows of a {type(x).__name__}")


def _softmax_np(logits: "torch.Tensor", rows: int | None = None, node: int = 0,  # noqa: F821
                n_classes: int | None = None) -> np.ndarray:
    """float32 softmax on the CPU -- exactly what the workloads store in traces -- of exit
    ``node``'s logits, checked (a few attribute reads) to be a floating-point tensor ``[rows, C]``
    with ``C >= 2``, ``C = n_classes`` where given (the exits before it)."""
    check_logits(logits, rows, node, n_classes)
    return _torch().softmax(logits.float(), dim=-1).cpu().numpy()


def check_logits(logits: Any, rows: int | None = None, node: int = 0, n_classes: int | None = None) -> None:
    """Raise :func:`head_error` unless exit ``node``'s ``logits`` are a floating-point tensor
    ``[rows, C]`` with ``C >= 2``, ``C = n_classes`` where given (attribute reads only: no
    host--device synchronisation, so a CUDA graph's capture may call it)."""
    torch = _torch()
    if not torch.is_tensor(logits) or logits.ndim != 2 or logits.shape[1] < 2 or not logits.is_floating_point() or \
            (rows is not None and logits.shape[0] != rows) or (n_classes is not None and logits.shape[1] != n_classes):
        raise head_error(logits, rows, node, n_classes)


def head_error(logits: Any, rows: int | None, node: int, n_classes: int | None) -> TTamerError:
    """The error for exit ``node``'s head returning other than floating-point logits ``[rows, C]``
    (``C >= 2``, ``n_classes`` where given: the exits before it, or at the first exit the classes
    of the trace a served estimator was fitted on)."""
    got = (f"a tensor of shape {tuple(logits.shape)}, dtype {logits.dtype}" if _torch().is_tensor(logits)
           else f"a {type(logits).__name__}")
    want = f"[{'B' if rows is None else rows}, {'C' if n_classes is None else n_classes}]"
    return TTamerError(f"exit {node}'s head (or model {node}) must return a floating-point torch tensor of logits "
                       f"{want}, one row per input and C >= 2 classes, the same C at every exit (and as in the "
                       f"trace a served estimator was fitted on); got {got}")


def check_finite_probs(probs: np.ndarray, consulted: np.ndarray) -> None:
    """Raise a :class:`~ttamer.core.errors.TTamerError` naming the exit unless the softmax
    ``probs [N, L, C]`` of every consulted ``(example, exit)`` (``consulted [N, L]``) is finite:
    a head gave NaN or infinite logits. One vectorised pass, after the run (not in its timed steps)."""
    bad = consulted & ~np.isfinite(probs).all(axis=2)
    if bad.any():
        n, v = (int(i) for i in np.argwhere(bad)[0])
        raise TTamerError(f"exit {v}'s head (or model {v}) returned NaN or infinite logits (input {n}); "
                          f"the model must give finite logits")



def resolve_device(device: Any) -> "torch.device":  # noqa: F821
    """``"cpu"``, ``"cuda"`` (or a ``torch.device``); a clear error if CUDA is absent."""
    import torch

    try:
        dev = torch.device(device) if not isinstance(device, torch.device) else device
    except (RuntimeError, TypeError):
        raise TTamerError(f"device must be 'cpu' or 'cuda', got {device!r}") from None
    if dev.type not in ("cpu", "cuda"):
        raise TTamerError(f"device must be 'cpu' or 'cuda', got {device!r}")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise TTamerError("device 'cuda' requested but torch.cuda.is_available() is False")
    return dev


def input_length(inputs: Any) -> int:
    """The number of examples in ``inputs`` (a sequence, array or tensor); an error if none.

    Raises
    ------
    TTamerError
        If ``inputs`` has no length, is a bare string (one text goes in a list), a dict or a set
        (not sliced into batches) or is empty.
    """
    if isinstance(inputs, (str, bytes)):
        raise TTamerError(f"inputs must be a sequence, array or tensor of examples, got a {type(inputs).__name__} "
                          "(pass one text as a list of one)")
    if isinstance(inputs, (Mapping, set, frozenset)):
        raise TTamerError(f"inputs must be a sequence, array or tensor of examples (sliced into batches), got a "
                          f"{type(inputs).__name__}")
    try:
        n = len(inputs)
    except TypeError:
        raise TTamerError(f"inputs must be a sequence, array or tensor of examples, got {type(inputs).__name__}") from None
    if n == 0:
        raise TTamerError("no inputs to serve")
    return n


def describe_inputs(inputs: Any) -> str:
    """``inputs`` in a few words for a message: an array's or tensor's shape and dtype, else
    its type and length."""
    shape, dtype = getattr(inputs, "shape", None), getattr(inputs, "dtype", None)
    if shape is not None and dtype is not None:
        return f"{type(inputs).__name__} of shape {tuple(shape)}, dtype {dtype}"
    first = type(inputs[0]).__name__ if isinstance(inputs, (list, tuple)) and inputs else "?"
    return f"{type(inputs).__name__} of {len(inputs)} {first}"


def check_inputs(inputs: Any) -> int:
    """The number of examples in ``inputs`` (:func:`input_length`), floating-point arrays and
    tensors checked to be finite (one vectorised pass; texts and other inputs pass as they are).

    Raises
    ------
    TTamerError
        As :func:`input_length`, or if a float array or tensor holds NaN or infinity.
    """
    n = input_length(inputs)
    if isinstance(inputs, np.ndarray) and inputs.dtype.kind in "fc":
        finite = bool(np.isfinite(inputs).all())
    elif _is_float_tensor(inputs):
        finite = bool(_torch().isfinite(inputs).all())
    else:
        return n
    if not finite:
        raise TTamerError(f"inputs hold NaN or infinite values ({describe_inputs(inputs)}); "
                          "the model needs finite inputs")
    return n


def _is_float_tensor(x: Any) -> bool:
    torch = sys.modules.get("torch")  # a tensor means torch is imported already
    return torch is not None and torch.is_tensor(x) and (x.is_floating_point() or x.is_complex())


def input_error(inputs: Any, exc: BaseException) -> TTamerError:
    """The error for a model that failed on the first batch of ``inputs``: their shape and
    dtype and the model's own message (e.g. torch's on mismatched shapes or dtypes)."""
    text = " ".join(str(exc).split())[:300]
    return TTamerError(f"the model failed on the first batch of inputs ({describe_inputs(inputs)}): {text}; "
                       "check the inputs' shape and dtype against what the model takes")


def part_error(part: str, given: Any, exc: BaseException) -> TTamerError:
    """The error for ``part`` of a model (its ``prepare``, a block or an exit head) failing on
    ``given``, the value it was called with: what it got, described in a few words, and its own
    message (e.g. torch's on a shape or dtype it does not take)."""
    if getattr(given, "shape", None) is not None and getattr(given, "dtype", None) is not None:
        got = describe_inputs(given)
    elif isinstance(given, (list, tuple)):
        got = f"a {type(given).__name__} of {len(given)}"
    else:
        got = f"a {type(given).__name__}"
    text = escape_text(" ".join(str(exc).split()), 300)
    return TTamerError(f"{part} failed on the first batch, given {got}: {type(exc).__name__}: {text}")


def input_slice(inputs: Any, a: int, b: int) -> Any:
    """Examples ``a`` to ``b - 1`` of ``inputs``."""
    return inputs[a:b]



# --------------------------------------------------------------------------- models
def _parts(values: Any, name: str, what: str) -> list:
    """``values`` (a list, tuple, ``ModuleList``, ``Sequential`` or other iterable of callables)
    as a list, or a :class:`~ttamer.core.errors.TTamerError` naming ``name`` and the first entry
    that is not callable."""
    torch = sys.modules.get("torch")
    one_module = torch is not None and isinstance(values, torch.nn.Module) and \
        not isinstance(values, (torch.nn.ModuleList, torch.nn.Sequential))
    if values is None or isinstance(values, (str, bytes, Mapping)) or one_module:
        raise TTamerError(f"MultiExitModel: {name} must be a list of {what}, one per exit, got "
                          f"{type(values).__name__}")
    try:
        out = list(values)
    except TypeError:
        raise TTamerError(f"MultiExitModel: {name} must be a list of {what}, one per exit, got "
                          f"{type(values).__name__}") from None
    for i, f in enumerate(out):
        if not callable(f):
            raise TTamerError(f"MultiExitModel: {name}[{i}] must be callable ({what}), got {type(f).__name__}")
    return out


def _train_mode_kinds() -> tuple:
    """Modules that behave otherwise in training mode (random, or normalised by the batch)."""
    nn = _torch().nn
    return (nn.modules.dropout._DropoutNd, nn.modules.batchnorm._BatchNorm)


def module_parts(blocks: Sequence[Any], heads: Sequence[Any], blocks_name: str = "block {}") -> list[tuple[str, Any]]:
    """``(part, module)`` for the ``blocks`` and ``heads`` that are torch modules (none before
    torch is loaded): what :func:`check_eval` walks. ``blocks_name`` names block ``i``."""
    torch = sys.modules.get("torch")
    if torch is None:
        return []
    return [(blocks_name.format(i), m) for i, m in enumerate(blocks) if isinstance(m, torch.nn.Module)] + \
        [(f"exit {i}'s head", m) for i, m in enumerate(heads) if isinstance(m, torch.nn.Module)]


def check_eval(model: "MultiExitModel") -> None:
    """Raise a :class:`~ttamer.core.errors.TTamerError` naming the part if a torch module of
    ``model`` (its ``modules``) is in training mode and holds a dropout or batch-norm layer:
    its outputs -- and so the exits taken -- would change from run to run (dropout) or with
    the batch (batch norm). Once per call of the runtime, before its clock starts."""
    torch = sys.modules.get("torch")
    if torch is None or not model.modules:
        return
    kinds = _train_mode_kinds()
    for part, module in model.modules:  # every submodule: one may be in training mode on its own
        for sub in module.modules():
            if sub.training and isinstance(sub, kinds) and getattr(sub, "p", 1.0) != 0:
                raise TTamerError(f"{part} ({type(module).__name__}) holds a {type(sub).__name__} in training "
                                  f"mode: its outputs, and so the exits taken, would vary from run "
                                  f"to run; call .eval() on the model before serving or recording it")


@dataclass
class MultiExitModel:
    """A network with an exit after every block.

    ``prepare(inputs, device) -> (h, ctx)`` turns a list / array / tensor of ``B`` raw inputs
    into the first hidden state and a per-row context (e.g. an attention mask; ``None`` if
    unused); ``blocks[i](h, ctx) -> h`` and ``heads[i](h, ctx) -> logits [B, C]``. Tensors
    carry the batch on dimension 0. ``names``: one non-empty, distinct string per exit
    (default ``exit0, exit1, …``). ``modules``: ``(part, torch module)`` pairs that the
    runtime checks to be in evaluation mode (:func:`check_eval`); blocks and heads that are
    torch modules themselves are added.

    Raises
    ------
    TTamerError
        If ``blocks`` or ``heads`` is not a non-empty list of callables, one head per block,
        ``prepare`` is not callable, or ``names`` are not one distinct non-empty string per exit.
    """

    blocks: Sequence[Callable]
    heads: Sequence[Callable]
    prepare: Callable[[Any, Any], tuple[Any, Any]]
    names: list[str] = field(default_factory=list)
    modules: list[tuple[str, Any]] = field(default_factory=list, repr=False)

    def __post_init__(self) -> None:
        self.blocks = _parts(self.blocks, "blocks", "callables (h, ctx) -> h")
        self.heads = _parts(self.heads, "heads", "callables (h, ctx) -> logits")
        if len(self.blocks) == 0:
            raise TTamerError("MultiExitModel needs at least one block")
        if len(self.blocks) != len(self.heads):
            raise TTamerError(f"MultiExitModel: {len(self.blocks)} blocks but {len(self.heads)} exit heads "
                              "(one head per block)")
        if not callable(self.prepare):
            raise TTamerError(f"MultiExitModel: prepare must be callable (inputs, device) -> (h, ctx), got a "
                              f"{type(self.prepare).__name__}")
        if self.names is None:
            self.names = []
        if not isinstance(self.names, (list, tuple, np.ndarray)):
            raise TTamerError(f"MultiExitModel: names must be a list of strings, one per exit, got "
                              f"{escape_text(repr(self.names), 60)}")
        self.names = list(self.names)
        if not self.names:
            self.names = [f"exit{i}" for i in range(len(self.blocks))]
        if len(self.names) != len(self.blocks):
            raise TTamerError(f"MultiExitModel: {len(self.names)} names for {len(self.blocks)} exits")
        for i, name in enumerate(self.names):
            if not isinstance(name, str) or not name:
                raise TTamerError(f"MultiExitModel: names[{i}] must be a non-empty string, got "
                                  f"{escape_text(repr(name), 60)}")
        if len(set(self.names)) != len(self.names):
            raise TTamerError(f"MultiExitModel: names has duplicates: {escape_text(repr(self.names), 120)}")
        self.modules = list(self.modules) + module_parts(self.blocks, self.heads)

    @property
    def n_exits(self) -> int:
        return len(self.blocks)

    @classmethod
    def from_modules(cls, blocks: Sequence[Callable], heads: Sequence[Callable],
                     names: Sequence[str] | None = None) -> "MultiExitModel":
        """Blocks and heads that take the hidden state only (e.g. a CNN: ``model.blocks``,
        ``model.heads``); inputs are a float tensor (or array) ``[B, ...]``.

        Raises
        ------
        TTamerError
            As the class: ``blocks`` or ``heads`` not lists of callables of one length, bad ``names``.
        """
        torch = _torch()
        blocks = _parts(blocks, "blocks", "modules h -> h")
        heads = _parts(heads, "heads", "modules h -> logits")

        def prepare(inputs: Any, device: Any) -> tuple[Any, None]:
            x = inputs if torch.is_tensor(inputs) else torch.as_tensor(numeric_array(inputs))
            return to_device(x, device), None

        wrap = lambda f: (lambda h, _ctx: f(h))  # noqa: E731
        return cls([wrap(b) for b in blocks], [wrap(h) for h in heads], prepare, [] if names is None else names,
                   module_parts(blocks, heads))


def numeric_array(inputs: Any) -> np.ndarray:
    """``inputs`` as a NumPy array of numbers (bool, int, float) that torch can share, or a
    :class:`~ttamer.core.errors.TTamerError` naming what they hold (e.g. strings). An array
    torch cannot share -- read-only (e.g. ``np.load(..., mmap_mode="r")``), in the other byte
    order, or with negative strides -- is copied, with the same values and dtype."""
    try:
        x = np.asarray(inputs)
    except ValueError:  # ragged
        raise TTamerError("inputs must be numbers (an array or tensor [B, ...]), got rows of different "
                          "lengths") from None
    if x.dtype.kind not in "biuf":
        raise TTamerError(f"inputs must be numbers (an array or tensor [B, ...]), got an array of dtype {x.dtype}")
    if not (x.flags.writeable and x.dtype.isnative and all(s >= 0 for s in x.strides)):
        x = np.array(x, dtype=x.dtype.newbyteorder("="))
    return x


def transformer_exits(tokenizer: Any, encoder: Any, heads: Sequence[Any], max_length: int = 64,
                      names: Sequence[str] | None = None, layers: int | None = None) -> MultiExitModel:
    """A BERT-family encoder with an exit after each of its first ``layers`` layers (default
    all): block 0 = embeddings + layer 1, block ``i`` = layer ``i+1``; exit ``i`` = the
    hidden state mean-pooled over the tokens (attention mask) through ``heads[i]``
    (the convention of :mod:`ttamer.workloads.nlp`). ``prepare`` tokenises (padding to the
    longest text of the batch, truncation at ``max_length``); inputs are texts (``str``).

    Raises
    ------
    TTamerError
        If ``tokenizer`` is not callable, ``encoder`` has no BERT-like ``.embeddings`` and
        ``.encoder.layer``, ``layers`` is not an integer in ``1..`` its layers, ``heads`` is not
        one callable per layer, ``max_length`` is not an integer in ``1..`` the encoder's
        ``config.max_position_embeddings``; when serving, if an input is not a text or the
        tokenizer returns other than tensors ``input_ids`` and ``attention_mask``.
    """
    torch = _torch()
    if not callable(tokenizer):
        raise TTamerError(f"tokenizer must be callable (a Hugging Face tokenizer), got {type(tokenizer).__name__}")
    emb = getattr(encoder, "embeddings", None)
    all_layers = getattr(getattr(encoder, "encoder", None), "layer", None)
    if emb is None or all_layers is None:
        base = getattr(encoder, "base_model", None)
        hint = "; pass its encoder, model.base_model" if base is not None and base is not encoder and \
            getattr(base, "embeddings", None) is not None else ""
        raise TTamerError(f"model {type(encoder).__name__}: expected BERT-like .embeddings and .encoder.layer{hint}")
    L = len(all_layers) if layers is None else check_int(layers, "layers", minimum=1, maximum=len(all_layers))
    heads = _parts(heads, "heads", "modules (pooled hidden state) -> logits")
    if len(heads) != L:
        raise TTamerError(f"{len(heads)} exit heads for {L} layers (one head per layer)")
    max_length = check_int(max_length, "max_length", minimum=1)
    positions = getattr(getattr(encoder, "config", None), "max_position_embeddings", None)
    if isinstance(positions, int) and 0 < positions < max_length:
        raise TTamerError(f"max_length must be <= {positions}, the encoder's config.max_position_embeddings "
                          f"(longer inputs have no position embedding), got {max_length}")

    def prepare(texts: Any, device: Any) -> tuple[Any, dict]:
        texts = list(texts) if not isinstance(texts, str) else [texts]
        for t in texts:
            if not isinstance(t, str):
                raise TTamerError(f"inputs of a transformer_exits model must be texts (str), got {type(t).__name__}")
        b = tokenizer(texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
        if not isinstance(b, Mapping) or not all(torch.is_tensor(b.get(k)) for k in ("input_ids", "attention_mask")):
            raise TTamerError(f"the tokenizer must return tensors 'input_ids' and 'attention_mask' (a Hugging Face "
                              f"tokenizer called with return_tensors='pt'), got a {type(b).__name__}")
        b = {k: to_device(v, device) for k, v in b.items()}
        mask = b["attention_mask"]
        m = mask.unsqueeze(-1).to(torch.float32)
        # the exits' mean-pooling weights [B, 1, T], computed once per batch: a head is then one
        # batched product and its linear layer
        ctx = {"input_ids": b["input_ids"], "pool": (m / m.sum(1, keepdim=True).clamp_min(1.0)).transpose(1, 2),
               "additive": (1.0 - mask[:, None, None, :].to(torch.float32)) * torch.finfo(torch.float32).min}
        if "token_type_ids" in b:
            ctx["token_type_ids"] = b["token_type_ids"]
        return b["input_ids"], ctx

    def layer_block(i: int) -> Callable:
        layer = all_layers[i]

        def block(h: Any, ctx: dict) -> Any:
            if i == 0:
                h = emb(input_ids=ctx["input_ids"], token_type_ids=ctx.get("token_type_ids"))
            out = layer(h, attention_mask=ctx["additive"].to(h.dtype))
            return out[0] if isinstance(out, tuple) else out
        return block

    def exit_head(i: int) -> Callable:
        def head(h: Any, ctx: dict) -> Any:
            w = ctx["pool"]  # [B, 1, T]
            return heads[i](torch.bmm(w if w.dtype == h.dtype else w.to(h.dtype), h)[:, 0])
        return head

    names = names if names is not None else [f"layer{i + 1}" for i in range(L)]
    return MultiExitModel([layer_block(i) for i in range(L)], [exit_head(i) for i in range(L)], prepare, names,
                          module_parts([encoder], heads, blocks_name="the encoder"))


# --------------------------------------------------------------------------- quiet model loading
@contextlib.contextmanager
def quiet(progress: bool):
    """Without ``progress``: no weight-loading progress bars from ``transformers`` and no
    warning from ``tqdm.auto`` about missing notebook widgets."""
    if progress:
        yield
        return
    with warnings.catch_warnings():  # around the import too: importing transformers imports tqdm.auto
        warnings.filterwarnings("ignore", message="IProgress not found")
        try:
            from transformers.utils import logging as hf_logging
        except ImportError:  # pragma: no cover - transformers is optional
            hf_logging = None
        was = hf_logging.is_progress_bar_enabled() if hf_logging else False
        if hf_logging:
            hf_logging.disable_progress_bar()
        try:
            yield
        finally:
            if hf_logging and was:
                hf_logging.enable_progress_bar()


