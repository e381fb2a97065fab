"""Tokenizer features pretrained models need: the SmolLM pre-tokenizer, special tokens written in text,
vocabularies missing some bytes, and CLIP's curly-quote clean-up."""

from __future__ import annotations

import pytest
import regex
from hypothesis import given, settings
from hypothesis import strategies as st

from mie.tokenization import BPETokenizer, RegexPreTokenizer
from mie.tokenization.bpe import BPEModel, bytes_to_unicode
from mie.tokenization.formats import clip_normalizer
from mie.tokenization.normalizers import StraightenQuotes, normalizer_from_dict
from mie.tokenization.pre_tokenizers import GPT2_PATTERN

_GPT2 = regex.compile(GPT2_PATTERN)
_DIGIT = regex.compile(r"(\p{N})")


def smollm_reference(text: str) -> list[str]:
    """HF's two stages: ``Digits(individual_digits=True)`` then the GPT-2 ``ByteLevel`` regex per piece."""
    return [word for piece in _DIGIT.split(text) if piece for word in _GPT2.findall(piece)]


@pytest.mark.parametrize("text", [
    "a  1", "x 12345 y", "  7\n\n8 ", "version 3.14, 2024-05-01", "tab\t9\t", "١٢٣ arabic digits ½ ⅓",
    "it's 4'o clock", "a   \n  1", "", "1", " 1", "end 1  ",
])
def test_smollm_pre_tokenizer_matches_digits_then_gpt2(text):
    words = RegexPreTokenizer.named("smollm")(text)
    assert words == smollm_reference(text)
    assert "".join(words) == text


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from(list(" \t\n\r0123456789abcXYZ'.-_é½١😀")), max_size=30))
def test_smollm_pre_tokenizer_property(text):
    assert RegexPreTokenizer.named("smollm")(text) == smollm_reference(text)


@pytest.fixture()
def tiny_model() -> BPEModel:
    chars = list(bytes_to_unicode().values())
    vocab = {c: i for i, c in enumerate(chars)}
    for token in ("<|im_start|>", "<|im_end|>"):
        vocab[token] = len(vocab)
    return BPEModel(vocab, [], special_tokens=["<|im_start|>", "<|im_end|>"])


def test_split_special_tokens(tiny_model):
    plain = BPETokenizer(tiny_model, None, None, "<|im_start|>", "<|im_end|>", None, 64)
    split = BPETokenizer(tiny_model, None, None, "<|im_start|>", "<|im_end|>", None, 64, split_special_tokens=True)
    text = "<|im_start|>user\nhi<|im_end|>"
    assert split.encode(text)[0] == split.bos_id and split.encode(text)[-1] == split.eos_id
    assert len(split.encode(text)) == 2 + len("user\nhi")
    assert len(plain.encode(text)) == len(text)  # the default is unchanged: specials are just characters
    assert split.decode(split.encode(text), skip_special_tokens=False) == text
    assert "split_special_tokens" not in plain.to_dict()
    again = BPETokenizer.from_json(split.to_json())
    assert again.split_special_tokens and again.encode(text) == split.encode(text)


def test_drop_missing_bytes():
    chars = bytes_to_unicode()
    vocab = {c: i for i, c in enumerate(c for b, c in chars.items() if b != 0x04)}
    vocab["ab"] = len(vocab)
    vocab["<s>"] = len(vocab)
    with pytest.raises(ValueError, match="missing from the vocabulary"):
        BPEModel(vocab, [("a", "b")], special_tokens=["<s>"])
    model = BPEModel(vocab, [("a", "b")], special_tokens=["<s>"], drop_missing_bytes=True)
    assert model.encode_word("a\x04b") == (vocab["ab"],)  # dropped before merging, as HF does
    tok = BPETokenizer(model, None, None, "<s>", "<s>", None, 16)
    assert BPETokenizer.from_json(tok.to_json()).encode("ab\x04") == [vocab["ab"]]  # the JSON keeps the option


def test_clip_normalizer_straightens_curly_quotes():
    assert StraightenQuotes()("it’s ‘a’ “b” ʼc„") == "it's 'a' \"b\" 'c\""
    assert clip_normalizer()("  It’s “Quoted” &amp; ok ") == "it's \"quoted\" & ok"
    assert normalizer_from_dict(clip_normalizer().to_dict()) == clip_normalizer()
