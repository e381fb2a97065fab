"""``mie tokenizer train|encode|decode|stats``: train, apply and inspect BPE tokenizers.

This module parses and prints; the statistics ``stats`` reports (and their definitions) come from
``mie.tokenization.stats``.
"""

from __future__ import annotations

import argparse
import json
import sys

from mie.errors import TokenizerError
from mie.tokenization.base import SPECIAL_TOKENS
from mie.tokenization.normalizers import build_normalizer
from mie.tokenization.pre_tokenizers import PATTERNS
from mie.tokenization.stats import corpus_stats
from mie.tokenization.tokenizer import BPETokenizer, read_texts


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``train``, ``encode``, ``decode`` and ``stats`` sub-subcommands."""
    sub = parser.add_subparsers(dest="tokenizer_command", metavar="ACTION", required=True)

    train = sub.add_parser("train", help="train a byte-level BPE tokenizer on text files")
    train.add_argument("files", nargs="+", help="UTF-8 text files (each file is one text)")
    train.add_argument("-o", "--output", required=True, help="where to write the tokenizer JSON")
    train.add_argument("--vocab-size", type=int, default=8192, help="total ids, specials and bytes included")
    train.add_argument("--min-frequency", type=int, default=2, help="stop when the best pair is rarer")
    train.add_argument("--pattern", choices=sorted(PATTERNS), default="gpt2", help="pre-tokenizer regex")
    train.add_argument("--lowercase", action="store_true", help="lowercase text first")
    train.add_argument("--clean-whitespace", action="store_true", help="collapse whitespace runs, strip")
    train.add_argument("--no-nfc", action="store_true", help="skip NFC normalization")
    train.add_argument("--special-tokens", nargs="+", default=list(SPECIAL_TOKENS), help="special tokens")
    train.add_argument("--context-length", type=int, default=77, help="default row length when batching")
    train.add_argument("--progress", action="store_true", help="print training progress to stderr")

    encode = sub.add_parser("encode", help="print the token ids of a text")
    encode.add_argument("-t", "--tokenizer", required=True, help="tokenizer JSON")
    source = encode.add_mutually_exclusive_group(required=True)
    source.add_argument("text", nargs="?", help="the text to encode")
    source.add_argument("--file", help="encode this file's text instead")
    encode.add_argument("--tokens", action="store_true", help="print tokens (decoded pieces) as JSON too")

    decode = sub.add_parser("decode", help="print the text of token ids")
    decode.add_argument("-t", "--tokenizer", required=True, help="tokenizer JSON")
    decode.add_argument("ids", nargs="*", type=int, help="ids (read whitespace-separated from stdin if none)")
    decode.add_argument("--keep-special", action="store_true", help="keep special tokens in the text")

    stats = sub.add_parser("stats", help="vocab size, bytes per token, coverage, longest tokens")
    stats.add_argument("-t", "--tokenizer", required=True, help="tokenizer JSON")
    stats.add_argument("files", nargs="*", help="text files to measure compression and coverage on")
    stats.add_argument("--top", type=int, default=10, help="how many longest tokens to list")
    stats.add_argument("--json", action="store_true", help="print one JSON object")


def run(args: argparse.Namespace) -> int:
    """Dispatch to the chosen action."""
    actions = {"train": _train, "encode": _encode, "decode": _decode, "stats": _stats}
    return actions[args.tokenizer_command](args)


def _train(args: argparse.Namespace) -> int:
    from mie.io.ownership import prepare_output_file

    prepare_output_file(args.output, "--output")  # before training: no system folder, no silent folders
    normalizer = build_normalizer(not args.no_nfc, args.lowercase, args.clean_whitespace)
    tokenizer = BPETokenizer.train_from_files(
        args.files,
        vocab_size=args.vocab_size,
        min_frequency=args.min_frequency,
        special_tokens=args.special_tokens,
        normalizer=normalizer,
        pre_tokenizer=args.pattern,
        context_length=args.context_length,
        show_progress=args.progress,
    )
    path = tokenizer.save(args.output)
    print(f"wrote {path} (vocab {tokenizer.vocab_size}, {len(tokenizer.model.merges)} merges)")
    return 0


def _encode(args: argparse.Namespace) -> int:
    tokenizer = BPETokenizer.load(args.tokenizer)
    text = next(read_texts([args.file])) if args.file else args.text
    ids = tokenizer.encode(text)
    if args.tokens:
        pieces = [tokenizer.model.token_bytes(i).decode("utf-8", errors="replace") for i in ids]
        print(json.dumps({"ids": ids, "tokens": pieces}, ensure_ascii=False))
    else:
        print(" ".join(map(str, ids)))
    return 0


def _decode(args: argparse.Namespace) -> int:
    ids = args.ids
    if not ids:
        from mie.text_input import STDIN, read_text_input

        words = read_text_input(STDIN).split()  # binary, non-UTF-8 and oversized stdin refused like a file
        bad = next((w for w in words if not (w.isascii() and w.isdigit() and len(w) <= 18)), None)
        if bad is not None:
            raise TokenizerError(f"stdin must hold whitespace-separated integer ids; {bad[:30]!r} is not one",
                                 fix="pass ids such as `0 17 42`")
        ids = [int(w) for w in words]
    tokenizer = BPETokenizer.load(args.tokenizer)
    sys.stdout.write(tokenizer.decode(ids, skip_special_tokens=not args.keep_special) + "\n")
    return 0


def _stats(args: argparse.Namespace) -> int:
    tokenizer = BPETokenizer.load(args.tokenizer)
    result = corpus_stats(tokenizer, read_texts(args.files), args.top)
    if args.json:
        print(json.dumps(result, ensure_ascii=False))
        return 0
    print(f"vocab size      {result['vocab_size']} ({result['merges']} merges)")
    print(f"special tokens  {' '.join(result['special_tokens'])}")
    if "bytes" in result:
        print(f"files           {len(args.files)}: {result['bytes']} bytes -> {result['tokens']} tokens")
        print(f"bytes/token     {result['bytes_per_token']:.3f}")
        print(f"word coverage   {result['word_coverage']:.1%} of words are one token")
        print(f"byte coverage   {result['byte_coverage']:.1%} of bytes are in multi-byte tokens")
    print("longest tokens  " + "  ".join(repr(t) for t in result["longest_tokens"]))
    return 0
