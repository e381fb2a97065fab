"""Tokenizer statistics over a corpus: vocab facts, compression and coverage.

Coverage has two parts, both over the pre-tokenized words of the given texts: ``word_coverage`` is the
fraction of word occurrences encoded as one single token, and ``byte_coverage`` is the fraction of word
bytes that land in tokens longer than one byte (1 - the single-byte fallback rate). ``mie tokenizer
stats`` (``mie.cli.tokenizer``) prints them.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from mie.tokenization.tokenizer import BPETokenizer


def corpus_stats(tokenizer: BPETokenizer, texts: Iterable[str], top: int = 10) -> dict[str, Any]:
    """Vocab facts, plus compression and coverage over ``texts`` (see the module docstring).

    Example: ``corpus_stats(BPETokenizer.load("tok.json"), read_texts(["corpus.txt"]))["bytes_per_token"]``.
    """
    model = tokenizer.model
    byte_ids = model.byte_ids
    n_bytes = n_tokens = n_words = one_token_words = word_bytes = fallback_bytes = 0
    for text in texts:
        n_bytes += len(text.encode("utf-8"))
        for word in tokenizer.pre_tokenizer(tokenizer.normalizer(text)):
            ids = model.encode_word(word)
            n_tokens += len(ids)
            n_words += 1
            one_token_words += len(ids) == 1
            word_bytes += len(word.encode("utf-8"))
            fallback_bytes += sum(1 for i in ids if i in byte_ids)
    specials = set(model.special_tokens.values())
    lengths = sorted(
        ((len(model.token_bytes(i)), i) for i in model.vocab.values() if i not in specials), key=lambda x: (-x[0], x[1])
    )
    result: dict[str, Any] = {
        "vocab_size": tokenizer.vocab_size,
        "merges": len(model.merges),
        "special_tokens": list(model.special_tokens),
        "longest_tokens": [model.token_bytes(i).decode("utf-8", errors="replace") for _, i in lengths[:top]],
    }
    if n_bytes:
        result.update(
            bytes=n_bytes,
            tokens=n_tokens,
            bytes_per_token=n_bytes / max(n_tokens, 1),
            word_coverage=one_token_words / max(n_words, 1),
            byte_coverage=1 - fallback_bytes / max(word_bytes, 1),
        )
    return result
