"""Byte-level BPE: ours vs Hugging Face ``tokenizers`` on a ~24 MB corpus of prose and code.

Usage: ``.venv/bin/python benchmarks/tokenizer_bench.py [--mb 24] [--vocab-size 8192]``
(needs the ``bench`` extra: ``pip install tokenizers``).

The corpus is gathered deterministically (sorted paths) from files already on the machine: prose from
``/usr/share/doc`` (READMEs, copyright files, gzipped changelogs) for about a third, then Python sources
from the standard library and the virtual environment's site-packages. Both tokenizers get the same
texts, NFC, the GPT-2 regex, byte-level BPE, the same special tokens and vocab size. Printed: training
time (``tokenizers`` on all cores, its default; ours on one), single-thread encode MB/s
(``TOKENIZERS_PARALLELISM=false``, ``RAYON_NUM_THREADS=1``), bytes/token.
"""

from __future__ import annotations

import argparse
import gzip
import os
import sys
import sysconfig
import time
from pathlib import Path

PROSE_NAMES = ("readme", "copyright", "changelog", "news", "authors", "license")
MAX_FILE_BYTES = 1 << 20


def _read(path: Path) -> str | None:
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError):
        return None
    if len(raw) > MAX_FILE_BYTES or b"\0" in raw[:4096]:
        return None
    return raw.decode("utf-8", errors="replace")


def _collect(paths: list[Path], budget: int, texts: list[str]) -> int:
    used = 0
    for path in paths:
        if used >= budget:
            break
        text = _read(path)
        if text:
            texts.append(text)
            used += len(text.encode("utf-8"))
    return used


def build_corpus(total_mb: float) -> list[str]:
    """Texts of about ``total_mb`` MB: one third prose, the rest Python code; sorted, deterministic."""
    budget = int(total_mb * 1e6)
    prose = sorted(
        p
        for p in Path("/usr/share/doc").rglob("*")
        if p.is_file() and not p.is_symlink() and p.name.lower().startswith(PROSE_NAMES)
    )
    roots = {Path(sysconfig.get_paths()["stdlib"]), Path(sysconfig.get_paths()["purelib"])}
    code = sorted(p for root in sorted(roots) for p in root.rglob("*.py") if p.is_file())
    texts: list[str] = []
    used = _collect(prose, budget // 3, texts)
    _collect(code, budget - used, texts)
    return texts


def bench_ours(texts: list[str], vocab_size: int) -> dict[str, float]:
    from mie.tokenization import BPETokenizer

    start = time.perf_counter()
    tok = BPETokenizer.train(texts, vocab_size=vocab_size, min_frequency=2)
    train_s = time.perf_counter() - start
    start = time.perf_counter()
    n_tokens = sum(len(tok.encode(t)) for t in texts)
    encode_s = time.perf_counter() - start
    return {"train_s": train_s, "encode_s": encode_s, "tokens": n_tokens, "vocab": tok.vocab_size}


def bench_hf(texts: list[str], vocab_size: int) -> dict[str, float]:
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    from mie.tokenization.base import SPECIAL_TOKENS
    from mie.tokenization.pre_tokenizers import GPT2_PATTERN

    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(GPT2_PATTERN), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    start = time.perf_counter()
    tok.train_from_iterator(texts, trainer)  # its default: all cores (it is the reference point)
    train_s = time.perf_counter() - start
    # Single-thread encode from here on: with parallelism off, tokenizers runs serial code paths.
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    os.environ["RAYON_NUM_THREADS"] = "1"
    start = time.perf_counter()
    n_tokens = sum(len(tok.encode(t).ids) for t in texts)
    encode_s = time.perf_counter() - start
    return {"train_s": train_s, "encode_s": encode_s, "tokens": n_tokens, "vocab": tok.get_vocab_size()}


def main() -> int:
    """Build the corpus, run both tokenizers, print a comparison table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=float, default=24.0, help="corpus size in MB (default 24)")
    parser.add_argument("--vocab-size", type=int, default=8192)
    parser.add_argument("--skip-hf", action="store_true", help="only time our tokenizer")
    args = parser.parse_args()
    texts = build_corpus(args.mb)
    n_bytes = sum(len(t.encode("utf-8")) for t in texts)
    print(f"corpus: {len(texts)} texts, {n_bytes / 1e6:.1f} MB, cpus={os.cpu_count()}", flush=True)
    results = {"ours": bench_ours(texts, args.vocab_size)}
    if not args.skip_hf:
        try:
            results["hf"] = bench_hf(texts, args.vocab_size)
        except ImportError:
            print("tokenizers is not installed (pip install tokenizers); showing ours only", file=sys.stderr)
    print(f"{'':6} {'vocab':>6} {'train s':>8} {'encode MB/s':>12} {'bytes/token':>12}")
    for name, r in results.items():
        print(
            f"{name:6} {r['vocab']:>6} {r['train_s']:>8.2f} {n_bytes / 1e6 / r['encode_s']:>12.2f} "
            f"{n_bytes / r['tokens']:>12.3f}"
        )
    if "hf" in results:
        ours, hf = results["ours"], results["hf"]
        print(
            f"ratios ours/hf: train time {ours['train_s'] / hf['train_s']:.2f}x (goal <= 5), "
            f"encode speed {hf['encode_s'] / ours['encode_s']:.2f}x (goal >= 0.5), "
            f"bytes/token {hf['tokens'] / ours['tokens']:.3f} (goal within 0.98-1.02)"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
