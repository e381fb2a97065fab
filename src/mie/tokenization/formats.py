"""Other projects' tokenizer files: GPT-2's ``vocab.json`` + ``merges.txt``, CLIP's merges file.

Our own single-file JSON format is read and written by ``mie.tokenization.tokenizer``
(``save_tokenizer`` / ``load_tokenizer``, ``BPETokenizer.save`` / ``BPETokenizer.load``).

* ``from_gpt2_files``: GPT-2 / RoBERTa style files, encoding exactly as GPT-2 does.
* ``from_clip_bpe``: OpenAI CLIP's ``bpe_simple_vocab_16e6.txt.gz`` layout, encoding as CLIP does.
  One difference: CLIP first runs ``ftfy.fix_text`` (mojibake repair); we do not depend on ftfy and apply
  only its NFC and quote-straightening steps, so text that ftfy would repair can tokenize differently.
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

from mie.errors import MieError, TokenizerError
from mie.tokenization.bpe import BPEModel, bytes_to_unicode
from mie.tokenization.normalizers import (
    NFC,
    HtmlUnescape,
    Lowercase,
    NormalizerSequence,
    StraightenQuotes,
    WhitespaceClean,
)
from mie.tokenization.pre_tokenizers import RegexPreTokenizer
from mie.tokenization.schema import UTF8_FIX, in_file, read_tokenizer_json
from mie.tokenization.tokenizer import BPETokenizer

CLIP_START, CLIP_END = "<|startoftext|>", "<|endoftext|>"
CLIP_CONTEXT_LENGTH = 77
# CLIP keeps only the merges that fill a 49,152 vocab: 256 bytes x 2 (plain and with </w>) + 2 specials.
CLIP_MAX_MERGES = 49152 - 256 - 2


def _read_merges(lines: list[str], source: Path) -> list[tuple[str, str]]:
    merges = []
    for lineno, line in enumerate(lines, start=1):
        if not line.strip() or line.startswith("#version"):
            continue
        parts = line.split()
        if len(parts) != 2:
            raise TokenizerError(f"{source} line {lineno}: a merge is two tokens separated by a space, "
                                 f"got {line!r:.60}", fix="check that this is a BPE merges file")
        merges.append((parts[0], parts[1]))
    return merges


def from_gpt2_files(
    vocab_path: str | Path,
    merges_path: str | Path,
    bos_token: str = "<|endoftext|>",
    eos_token: str = "<|endoftext|>",
    pad_token: str | None = None,
    pre_tokenizer: str = "gpt2",
    context_length: int = 1024,
) -> BPETokenizer:
    """A tokenizer from GPT-2 style ``vocab.json`` (token -> id) and ``merges.txt`` (``#version`` header).

    Special tokens are the vocab entries that are neither a byte nor a merge result (GPT-2:
    ``<|endoftext|>``), plus the named bos/eos/pad tokens. No normalizer, as GPT-2.
    """
    vocab_path, merges_path = Path(vocab_path), Path(merges_path)
    for p in (vocab_path, merges_path):
        if not p.is_file():
            raise FileNotFoundError(f"GPT-2 tokenizer file {p} does not exist")
    vocab = read_tokenizer_json(vocab_path)
    if not all(isinstance(v, int) for v in vocab.values()):
        raise TokenizerError("must map token strings to integer ids", where=vocab_path, fix="check that this is a "
                             "GPT-2 style vocab.json")
    try:
        merges_text = merges_path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise TokenizerError(f"not UTF-8 text: undecodable byte at offset {err.start}", where=merges_path,
                             fix=UTF8_FIX) from None
    merges = _read_merges(merges_text.splitlines(), merges_path)
    named = [t for t in (bos_token, eos_token, pad_token) if t is not None]
    learned = set(bytes_to_unicode().values()) | {left + right for left, right in merges}
    specials = [t for t in vocab if t not in learned or t in named]
    missing = [t for t in named if t not in vocab]
    if missing:
        raise TokenizerError(f"{vocab_path} has no entry for special token(s) {missing}",
                             fix="name special tokens the vocabulary holds")
    try:
        model = BPEModel(vocab, merges, special_tokens=specials)
    except MieError as err:
        raise in_file(err, vocab_path) from None
    return BPETokenizer(
        model, None, RegexPreTokenizer.named(pre_tokenizer), bos_token, eos_token, pad_token, context_length
    )


def clip_normalizer() -> NormalizerSequence:
    """CLIP's text clean-up: NFC, HTML unescape twice, straight quotes (ftfy), one space per run, lowercase."""
    return NormalizerSequence([NFC(), HtmlUnescape(), StraightenQuotes(), WhitespaceClean(), Lowercase()])


def from_clip_bpe(
    path: str | Path, context_length: int = CLIP_CONTEXT_LENGTH, max_merges: int = CLIP_MAX_MERGES
) -> BPETokenizer:
    """A tokenizer reproducing OpenAI CLIP's from its gzipped merges file.

    Layout: gzip UTF-8 text, a version header line, then one ``left right`` merge per line where a word's
    last symbol carries ``</w>``. Ids: the 256 byte characters (in :func:`bytes_to_unicode` order), the
    same with ``</w>``, one per merge, then ``<|startoftext|>`` and ``<|endoftext|>``. Padding is id 0 and
    truncation keeps the final ``<|endoftext|>``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"CLIP merges file {path} does not exist (expected bpe_simple_vocab_16e6.txt.gz)")
    try:
        with gzip.open(path, "rt", encoding="utf-8") as fh:
            lines = fh.read().split("\n")
    except (OSError, EOFError, zlib.error) as err:
        raise TokenizerError(f"{path} is not a gzip file: {err}",
                             fix="pass CLIP's bpe_simple_vocab_16e6.txt.gz") from None
    except UnicodeDecodeError as err:
        raise TokenizerError(f"not UTF-8 text once unzipped: undecodable byte at offset {err.start}", where=path,
                             fix=UTF8_FIX) from None
    merges = _read_merges(lines[1 : max_merges + 1], path)  # line 0 is the version header
    chars = list(bytes_to_unicode().values())
    tokens = chars + [c + "</w>" for c in chars] + ["".join(m) for m in merges] + [CLIP_START, CLIP_END]
    vocab: dict[str, int] = {}
    for token in tokens:
        vocab.setdefault(token, len(vocab))
    if len(vocab) != len(tokens):
        raise TokenizerError(f"{path}: merges produce a token twice; not a CLIP merges file",
                             fix="pass CLIP's bpe_simple_vocab_16e6.txt.gz")
    try:
        model = BPEModel(vocab, merges, end_of_word_suffix="</w>", special_tokens=[CLIP_START, CLIP_END])
    except MieError as err:
        raise in_file(err, path) from None
    return BPETokenizer(
        model,
        clip_normalizer(),
        RegexPreTokenizer.named("clip"),
        bos_token=CLIP_START,
        eos_token=CLIP_END,
        pad_token=None,
        context_length=context_length,
    )
