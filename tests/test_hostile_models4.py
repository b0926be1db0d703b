"""Fourth pass of hostile inputs: a user's own torch model brought to the serving runtime
(``MultiExitModel``, ``transformer_exits``, ``from_tamer``, ``run_all``). Every misuse is one
clear TTamerError line naming the part, argument or array at fault -- never a raw exception,
never a silent coercion -- and it is caught before the model runs where it can be."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from ttamer.core.errors import TTamerError  # noqa: E402
from ttamer.earlyexit.calibration import EarlyExitTamer  # noqa: E402
from ttamer.earlyexit.pathwise import PathwiseTamer  # noqa: E402
from ttamer.earlyexit.tamer import ThresholdTamer  # noqa: E402
from ttamer.earlyexit.traces import synthetic_trace  # noqa: E402
from ttamer.serving import EarlyExitServer, MultiExitModel, max_prob_rule, transformer_exits  # noqa: E402

torch.set_num_threads(1)
D, C, L = 8, 3, 3


def _one_line(exc_info, *needles):
    text = str(exc_info.value)
    assert "\n" not in text
    for needle in needles:
        assert needle in text, text


def _modules(dropout: bool = False):
    torch.manual_seed(0)
    blocks = [torch.nn.Sequential(torch.nn.Linear(D, D), torch.nn.Tanh(),
                                  *([torch.nn.Dropout(0.5)] if dropout else [])) for _ in range(L)]
    return blocks, [torch.nn.Linear(D, C) for _ in range(L)]


X = np.random.default_rng(0).normal(size=(10, D)).astype(np.float32)
Y = np.random.default_rng(1).integers(0, C, 10)


@pytest.mark.parametrize("blocks, heads, names, needle", [
    (None, "ok", None, "blocks must be a list"),
    ("ok", torch.nn.Linear(D, C), None, "heads must be a list"),
    ([1, 2, 3], "ok", None, "blocks[0] must be callable"),
    ("ok", "ok", "abc", "names must be a list of strings"),
    ("ok", "ok", [1, 2, 3], "names[0] must be a non-empty string"),
    ("ok", "ok", ["a", "a", "b"], "names has duplicates"),
])
def test_model_parts_are_checked_when_the_model_is_built(blocks, heads, names, needle):
    """Non-callable blocks, a single module for a list, names that are not strings: refused
    when the model is wrapped (were a raw TypeError at serve time or a bad trace later)."""
    b, h = _modules()
    with pytest.raises(TTamerError) as e:
        MultiExitModel.from_modules(b if blocks == "ok" else blocks, h if heads == "ok" else heads, names)
    _one_line(e, needle)
    with pytest.raises(TTamerError) as e:
        MultiExitModel([lambda x, c: x] * L, [lambda x, c: x] * L, None)
    _one_line(e, "prepare must be callable")


@pytest.mark.parametrize("dtype", [torch.int64, torch.bool, torch.complex64])
def test_heads_returning_logits_that_are_not_floats_are_named(dtype):
    """Integer, boolean or complex logits were silently cast to float (complex with a warning)."""
    b, h = _modules()
    heads = [lambda z, m=m: m(z).to(dtype) for m in h]
    srv = EarlyExitServer(MultiExitModel.from_modules(b, heads), max_prob_rule(L, 0.5))
    for bs in (1, 4):
        with pytest.raises(TTamerError) as e:
            srv.serve(X, bs)
        _one_line(e, "exit 0's head", "floating-point", str(dtype))


def test_models_in_training_mode_with_dropout_or_batch_norm_are_refused():
    """Dropout made served decisions random; batch norm failed on one row with a raw ValueError."""
    b, h = _modules(dropout=True)
    srv = EarlyExitServer(MultiExitModel.from_modules(b, h), max_prob_rule(L, 0.5))
    for call in (lambda: srv.serve(X, 4), lambda: srv.serve(X, 1), lambda: srv.run_all(X, Y, 4),
                 lambda: srv.run_full(X, 4), lambda: srv.cost_profile(X, 1)):
        with pytest.raises(TTamerError) as e:
            call()
        _one_line(e, "block 0 (Sequential) holds a Dropout in training mode", ".eval()")
    bn = [torch.nn.Sequential(torch.nn.Linear(D, D), torch.nn.BatchNorm1d(D)) for _ in range(L)]
    with pytest.raises(TTamerError) as e:
        EarlyExitServer(MultiExitModel.from_modules(bn, h), max_prob_rule(L, 0.5)).serve(X, 1)
    _one_line(e, "BatchNorm1d in training mode")
    for m in b:
        m.eval()
    assert len(srv.serve(X, 4).answer) == 10  # in evaluation mode it serves
    b2, h2 = _modules()  # fresh modules without dropout are in training mode too: nothing to refuse
    assert len(EarlyExitServer(MultiExitModel.from_modules(b2, h2), max_prob_rule(L, 0.5)).serve(X, 4).answer) == 10


def test_run_all_checks_the_labels_before_running_the_model():
    """Labels of another length were reported only after every input had run through the model."""
    calls = []
    b, h = _modules()
    model = MultiExitModel.from_modules([lambda z, m=m: calls.append(1) or m(z) for m in b], h)
    srv = EarlyExitServer(model, max_prob_rule(L, 0.5))
    for labels, needle in ((Y[:5], "5 labels for 10 inputs"), (-Y - 1, "has label -")):
        with pytest.raises(TTamerError) as e:
            srv.run_all(X, labels, 4)
        _one_line(e, "'labels'", needle)
        assert "np.int64" not in str(e.value)
    assert not calls


@pytest.mark.parametrize("cls", [ThresholdTamer, EarlyExitTamer, PathwiseTamer])
def test_from_tamer_checks_fit_exits_and_classes(cls):
    """An unfitted EarlyExitTamer was a raw AttributeError; a tamer fitted on other classes was
    served silently (EarlyExitTamer, PathwiseTamer) or failed naming an internal step."""
    b, h = _modules()
    model = MultiExitModel.from_modules(b, h)
    make = (lambda: cls(lam=0.5)) if cls is EarlyExitTamer else cls
    with pytest.raises(TTamerError) as e:
        EarlyExitServer.from_tamer(model, make())
    _one_line(e, "not fitted")
    with pytest.raises(TTamerError) as e:
        EarlyExitServer.from_tamer(model, make().fit(synthetic_trace(300, L + 1, C, seed=1)))
    _one_line(e, f"{cls.__name__} was fitted on a trace of {L + 1} exits but the model has {L}")
    srv = EarlyExitServer.from_tamer(model, make().fit(synthetic_trace(300, L, C + 2, seed=1)))
    for bs in (1, 4):
        with pytest.raises(TTamerError) as e:
            srv.serve(X, bs)
        _one_line(e, "exit 0's head", f"[{bs}, {C + 2}]", "fitted on", f"({bs}, {C})")
    srv = EarlyExitServer.from_tamer(model, make().fit(synthetic_trace(300, L, C, seed=1)))
    assert len(srv.serve(X, 4).answer) == 10


# ----------------------------------------------------------------------- transformer_exits
@pytest.fixture(scope="module")
def bert(tmp_path_factory):
    transformers = pytest.importorskip("transformers")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + "a good bad film the is was not very".split()
    path = tmp_path_factory.mktemp("tok") / "vocab.txt"
    path.write_text("\n".join(vocab) + "\n")
    tok = transformers.BertTokenizerFast(vocab_file=str(path))
    cfg = transformers.BertConfig(vocab_size=len(vocab), hidden_size=16, num_hidden_layers=3, num_attention_heads=2,
                                  intermediate_size=32, max_position_embeddings=32)
    torch.manual_seed(0)
    enc = transformers.BertModel(cfg).eval()
    return tok, enc, [torch.nn.Linear(16, 2) for _ in range(3)], transformers, cfg


TEXTS = ["a good film", "bad film", "the film was not very good", "a"]


@pytest.mark.parametrize("kw, needle", [
    (dict(max_length=0), "max_length must be >= 1"), (dict(max_length=2.5), "max_length must be an integer"),
    (dict(max_length="8"), "max_length must be an integer"), (dict(max_length=True), "max_length must be an integer"),
    (dict(max_length=64), "max_length must be <= 32, the encoder's config.max_position_embeddings"),
    (dict(layers=2.7), "layers must be an integer"), (dict(layers="2"), "layers must be an integer"),
    (dict(layers=4), "layers must be <= 3"), (dict(heads=None), "heads must be a list"),
    (dict(heads=[1, 2, 3]), "heads[0] must be callable"), (dict(tokenizer=None), "tokenizer must be callable"),
])
def test_transformer_exits_arguments_are_checked_not_converted(bert, kw, needle):
    """max_length and layers went through int() (0, -3, 2.5, "8" accepted); a max_length beyond the
    position embeddings failed on the first long text; bad heads or tokenizer were raw TypeErrors."""
    tok, enc, heads, _, _ = bert
    args = dict(tokenizer=tok, encoder=enc, heads=heads, max_length=32)
    args.update(kw)
    with pytest.raises(TTamerError) as e:
        transformer_exits(**args)
    _one_line(e, needle)


def test_transformer_exits_inputs_tokenizer_and_training_mode(bert):
    """Inputs that are not texts were served as str() of themselves; a tokenizer returning the
    wrong thing was a raw AttributeError; an encoder in training mode served random decisions;
    a model with a head on top named no way out."""
    tok, enc, heads, transformers, cfg = bert
    srv = EarlyExitServer(transformer_exits(tok, enc, heads, max_length=32), max_prob_rule(3, 0.9))
    assert len(srv.serve(TEXTS, 2).answer) == 4 and len(srv.serve(np.array(TEXTS), 1).answer) == 4
    for inputs, got in (([1, 2], "got int"), (torch.zeros((3, 4), dtype=torch.long), "got Tensor"),
                        (TEXTS + [None], "got NoneType"), ([b"a good"], "got bytes")):
        with pytest.raises(TTamerError) as e:
            srv.serve(inputs, 2)
        _one_line(e, "must be texts (str)", got)
    bad_tok = EarlyExitServer(transformer_exits(lambda *a, **k: {"x": 1}, enc, heads, max_length=32),
                              max_prob_rule(3, 0.9))
    with pytest.raises(TTamerError) as e:
        bad_tok.serve(TEXTS, 2)
    _one_line(e, "tokenizer must return tensors 'input_ids' and 'attention_mask'")
    training = EarlyExitServer(transformer_exits(tok, transformers.BertModel(cfg), heads, max_length=32),
                               max_prob_rule(3, 0.9))
    with pytest.raises(TTamerError) as e:
        training.serve(TEXTS, 2)
    _one_line(e, "the encoder (BertModel) holds a Dropout in training mode", ".eval()")
    enc.encoder.layer[1].train()  # one part in training mode is enough
    with pytest.raises(TTamerError) as e:
        srv.serve(TEXTS, 2)
    _one_line(e, "the encoder (BertModel) holds a Dropout in training mode")
    enc.eval()
    with pytest.raises(TTamerError) as e:
        transformer_exits(tok, transformers.BertForSequenceClassification(cfg).eval(), heads, max_length=32)
    _one_line(e, "BertForSequenceClassification", "model.base_model")


class _Pair(torch.nn.Module):
    """A block returning a tuple (hidden state, attention), as some library layers do."""

    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(D, D)

    def forward(self, h):
        return self.lin(h), None


@pytest.mark.parametrize("part, needle", [
    ("tuple block", "exit 1's head (exit1), on block 1's output, failed on the first batch, given a tuple of 2"),
    ("narrow head", "exit 2's head (exit2), on block 2's output, failed on the first batch, given Tensor of shape"),
    ("bad block", "block 1 (exit1) failed on the first batch, given Tensor of shape"),
])
@pytest.mark.parametrize("batch_size", [1, 4])
def test_the_part_of_a_model_that_fails_is_named(part, needle, batch_size):
    blocks, heads = _modules()
    if part == "tuple block":
        blocks[1] = _Pair()
    elif part == "narrow head":
        heads[2] = torch.nn.Linear(D + 1, C)
    else:
        blocks[1] = torch.nn.Linear(D + 2, D)
    server = EarlyExitServer(MultiExitModel.from_modules(blocks, heads), max_prob_rule(L, np.inf))
    for run in (server.serve, server.run_full):
        with pytest.raises(TTamerError) as err:
            run(torch.from_numpy(X), batch_size)
        _one_line(err, needle)
    with pytest.raises(TTamerError) as err:
        server.run_all(torch.from_numpy(X), Y, batch_size=batch_size)
    _one_line(err, needle)
