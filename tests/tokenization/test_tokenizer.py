"""BPETokenizer pipeline: round trips, normalizers, pre-tokenizers, post-processing, JSON identity."""

from __future__ import annotations

import unicodedata

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mie.errors import TokenizerError
from mie.tokenization import BPETokenizer, PostProcessor, RegexPreTokenizer, build_normalizer
from mie.tokenization.base import BaseTokenizer
from mie.tokenization.normalizers import (
    NFC,
    HtmlUnescape,
    Lowercase,
    Normalizer,
    NormalizerSequence,
    WhitespaceClean,
    normalizer_from_dict,
)
from mie.tokenization.pre_tokenizers import CL100K_PATTERN, GPT2_PATTERN

TRICKY = st.one_of(
    st.text(max_size=60),  # any Unicode scalar except surrogates (hypothesis' default)
    st.text(alphabet=st.sampled_from(list(" \t\n\r\x0b\x0c\x00\x1b\u00a0\u2028 ab😀👍🏽é\u0301")), max_size=40),
)


@settings(max_examples=100, deadline=None)
@given(TRICKY)
def test_round_trip_exact_without_normalizer(trained_raw, text):
    assert trained_raw.decode(trained_raw.encode(text)) == text


@settings(max_examples=100, deadline=None)
@given(TRICKY)
def test_round_trip_gives_nfc_text(trained, text):
    ids = trained.encode(text)
    assert all(0 <= i < trained.vocab_size for i in ids)
    assert trained.decode(ids) == unicodedata.normalize("NFC", text)


@settings(max_examples=50, deadline=None)
@given(st.text(max_size=80))
def test_gpt2_and_cl100k_pre_tokenizers_cover_every_character(text):
    for name in ("gpt2", "cl100k"):
        assert "".join(RegexPreTokenizer.named(name)(text)) == text


def test_pre_tokenizer_splits():
    gpt2 = RegexPreTokenizer.named("gpt2")
    assert gpt2("Hello world's  42!") == ["Hello", " world", "'s", " ", " 42", "!"]
    cl100k = RegexPreTokenizer.named("cl100k")
    assert cl100k("12345 HE'S") == ["123", "45", " HE", "'S"]  # digits in threes, case-insensitive 's
    clip = RegexPreTokenizer.named("clip")
    assert clip("a photo of 2 cats<|endoftext|>") == ["a", "photo", "of", "2", "cats", "<|endoftext|>"]
    assert gpt2.style == "gpt2" and RegexPreTokenizer("clip").style == "clip"
    with pytest.raises(TokenizerError, match="unknown pre-tokenizer style"):
        RegexPreTokenizer(r"\w+")
    assert RegexPreTokenizer.from_dict(cl100k.to_dict()) == cl100k
    assert cl100k.pattern == CL100K_PATTERN and gpt2.pattern == GPT2_PATTERN
    with pytest.raises(ValueError, match="unknown pre-tokenizer style 'bert'"):
        RegexPreTokenizer.named("bert")
    with pytest.raises(ValueError, match="pre_tokenizer must be"):
        RegexPreTokenizer.from_dict({"type": "split"})


def test_normalizers():
    assert NFC()("e\u0301") == "\u00e9"
    assert Lowercase()("ÀB") == "àb"
    assert WhitespaceClean()("  a \t\n b\u00a0 c  ") == "a b c"
    assert HtmlUnescape()(" &amp;amp; &lt;b&gt; ") == "& <b>"
    seq = build_normalizer(nfc=True, lowercase=True, clean_whitespace=True)
    assert seq("  CAFE\u0301   Bar ") == "café bar"
    assert normalizer_from_dict(seq.to_dict()) == seq
    assert build_normalizer(nfc=False) == Normalizer() and build_normalizer() == NFC()
    assert isinstance(normalizer_from_dict(NormalizerSequence([HtmlUnescape()]).to_dict()), NormalizerSequence)
    with pytest.raises(ValueError, match="unknown normalizer type 'bert'"):
        normalizer_from_dict({"type": "bert"})


def test_contract_and_framing(trained):
    assert isinstance(trained, BaseTokenizer)
    assert (trained.pad_id, trained.bos_id, trained.eos_id) == (0, 2, 3)  # <pad> <unk> <bos> <eos>
    ids = trained.encode("the quick fox")
    out = trained(["the quick fox", "x"], context_length=len(ids) + 4)
    assert out.dtype == torch.long and out.shape == (2, len(ids) + 4)
    assert out[0].tolist() == [2, *ids, 3, 0, 0]
    # Truncation keeps EOS last, as the BaseTokenizer contract says.
    short = trained("the quick fox", context_length=4)
    assert short[0].tolist() == [2, ids[0], ids[1], 3]
    assert torch.equal(short, BaseTokenizer.__call__(trained, "the quick fox", 4))
    ids_t, mask = trained.encode_with_mask(["the quick fox", ""], context_length=6)
    assert mask.tolist() == [[1] * 6, [1, 1, 0, 0, 0, 0]]
    assert ids_t[1].tolist() == [2, 3, 0, 0, 0, 0]
    assert trained("x").shape == (1, 77)  # default context length
    assert trained.encode_batch(["a", "the"]) == [trained.encode("a"), trained.encode("the")]


def test_decode_specials_and_lookups(trained):
    ids = [trained.bos_id, *trained.encode("fox"), trained.eos_id]
    assert trained.decode(ids) == "fox"
    assert trained.decode(ids, skip_special_tokens=False) == "<bos>fox<eos>"
    assert trained.id_to_token(trained.token_to_id("<eos>")) == "<eos>"
    assert trained.token_to_id("no such token") is None
    with pytest.raises(ValueError, match="id 99999 is not in the vocabulary"):
        trained.id_to_token(99999)
    assert "vocab_size=400" in repr(trained)


def test_post_processor():
    post = PostProcessor(bos_id=None, eos_id=9, pad_id=-1, context_length=3)
    assert post.frame([1, 2, 3, 4]) == [1, 2, 9]
    ids, mask = post.batch([[5]])
    assert ids.tolist() == [[5, 9, -1]] and mask.tolist() == [[1, 1, 0]]
    with pytest.raises(ValueError, match="cannot hold the BOS/EOS tokens — use >= 2"):
        PostProcessor(1, 2).frame([], context_length=1)
    assert PostProcessor.from_dict(post.to_dict()) == post
    with pytest.raises(ValueError, match="unknown post_processor keys"):
        PostProcessor.from_dict({"bos": 1})


def test_json_identity(trained, tmp_path):
    text = "The lazy dog 😀 naïve\n"
    again = BPETokenizer.from_json(trained.to_json())
    assert again.to_json() == trained.to_json()
    assert again.encode(text) == trained.encode(text)
    path = trained.save(tmp_path / "sub" / "tok.json")
    loaded = BPETokenizer.load(path)
    assert loaded.to_dict() == trained.to_dict()
    assert torch.equal(loaded([text], 16), trained([text], 16))


def test_from_dict_errors(trained):
    data = trained.to_dict()
    with pytest.raises(ValueError, match="not a mie.tokenizer document"):
        BPETokenizer.from_dict({**data, "format": "hf"})
    with pytest.raises(ValueError, match="unsupported mie.tokenizer version 9"):
        BPETokenizer.from_dict({**data, "version": 9})
    with pytest.raises(ValueError, match="missing key 'bos_token'"):
        BPETokenizer.from_dict({k: v for k, v in data.items() if k != "bos_token"})
    with pytest.raises(ValueError, match="model type must be 'bpe'"):
        BPETokenizer.from_dict({**data, "model": {**data["model"], "type": "wordpiece"}})
    with pytest.raises(ValueError, match="bos_token '<s>' is not a special token"):
        BPETokenizer(trained.model, bos_token="<s>")


def test_training_options_and_roles():
    tok = BPETokenizer.train(["hello hello world"] * 3, vocab_size=270, special_tokens=["<|endoftext|>"])
    assert tok.bos_id == tok.eos_id == 0 and tok.pad_id == 0 and tok.pad_token is None
    tok3 = BPETokenizer.train(["ab ab"], vocab_size=262, special_tokens=["[P]", "[S]", "[E]"], pre_tokenizer="clip")
    assert (tok3.pad_id, tok3.bos_id, tok3.eos_id) == (0, 1, 2) and tok3.pre_tokenizer.style == "clip"
    with pytest.raises(ValueError, match="at least one special token"):
        BPETokenizer.train(["ab"], vocab_size=300, special_tokens=[])


def test_train_from_files(tmp_path):
    (tmp_path / "a.txt").write_text("low lower lowest " * 5, encoding="utf-8")
    (tmp_path / "b.txt").write_bytes(b"low \xff newer")  # bad UTF-8 is replaced, not fatal
    tok = BPETokenizer.train_from_files([tmp_path / "a.txt", tmp_path / "b.txt"], vocab_size=280)
    assert len(tok.encode(" lowest")) < len(b" lowest")
    with pytest.raises(FileNotFoundError, match="missing.txt does not exist"):
        BPETokenizer.train_from_files([tmp_path / "missing.txt"], vocab_size=280)


def test_package_exports_are_lazy_and_complete():
    import mie.tokenization as package

    for name in package.__all__:
        assert getattr(package, name) is not None
    assert "BPETokenizer" in dir(package)
    with pytest.raises(AttributeError, match="has no attribute 'Nope'"):
        package.Nope  # noqa: B018
