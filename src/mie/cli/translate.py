"""``mie translate RUN_DIR [TEXT|-] [--beam N]``: translate with a finished seq2seq run.

TEXT is one sentence; ``-`` (or nothing) reads one sentence per line from standard input. One
translation is printed per line, in order::

    mie translate runs/translate_en_de "cannot open file"
    printf 'Save as\\nQuit\\n' | mie translate runs/translate_en_de - --beam 1
"""

from __future__ import annotations

import argparse
from pathlib import Path

from mie.errors import ConfigError
from mie.models.budget import MAX_BEAM


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``mie translate``."""
    parser.add_argument("run_dir", help="a finished seq2seq run directory (mie train with recipe: seq2seq)")
    parser.add_argument("text", nargs="?", default="-", help="the text to translate; - or nothing reads lines "
                        "from standard input")
    parser.add_argument("--beam", type=int, default=None, help="beam size (1 = greedy; default: the run's decode.beam)")
    parser.add_argument("--checkpoint", default="best", choices=["best", "last"], help="which weights to use")


def _read_texts(text: str) -> list[str]:
    """The sentences to translate: ``text``, or the lines of stdin (binary, non-UTF-8 and overlong refused)."""
    from mie.text_input import MAX_LINE_CHARS, STDIN, read_input_lines

    if text != STDIN:
        if len(text) > MAX_LINE_CHARS:
            raise ConfigError(f"is {len(text):,} characters; the limit is {MAX_LINE_CHARS:,}", where="TEXT",
                              fix="translate shorter sentences")
        return [text]
    return [line for _, line in read_input_lines(STDIN, max_line_chars=MAX_LINE_CHARS, keep_blank=True)]


def run(args: argparse.Namespace) -> int:
    """Load the run, read the input, print one translation per line."""
    from mie.cli.args import model_device
    from mie.cli.waiting import waiting
    from mie.io.run_kind import check_run_kind

    if args.beam is not None and args.beam < 1:
        raise ConfigError("must be at least 1", where="--beam")
    if args.beam is not None and args.beam > MAX_BEAM:
        raise ConfigError(f"{args.beam:,} beams is more than {MAX_BEAM}", where="--beam",
                          fix=f"use at most {MAX_BEAM} (4 to 8 is usual)")
    texts = _read_texts(args.text)  # before the model loads: bad input costs nothing
    run_dir = Path(args.run_dir)
    check_run_kind(run_dir, "seq2seq")  # "runs/demo is a clip run (image-text), not a translation run"
    from mie.recipes.seq2seq import load_seq2seq_run, translate_texts

    with waiting(f"translating {len(texts):,} line(s) with {run_dir}"):
        model, tokenizer, config = load_seq2seq_run(run_dir, args.checkpoint, device=model_device(args))
        outputs = translate_texts(model, tokenizer, texts, config, beam=args.beam or config.decode.beam)
    for text in outputs:
        print(text)
    return 0
