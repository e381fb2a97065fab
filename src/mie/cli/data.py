"""``mie data inspect PATH``: what a dataset folder holds, what is broken in it, and a look at it;
``mie data shards PATH OUT``: the same dataset as WebDataset tar shards;
``mie data translation-pairs --from gettext --target de OUT``: an English -> German parallel corpus
from this machine's gettext catalogs (train/valid/test by package).

The format is detected from the files (or given with ``--format``); for each split it prints the
number of images and captions, caption-length statistics (words) and the broken files; with
``--out`` it also writes a contact sheet of a few samples with their captions (nothing is written
without it)::

    mie data inspect data/flickr30k --out flickr.png

The work is done by the library (``mie.data.inspection``, ``mie.data.shards``); this module parses
and prints. It imports the library only when a command runs, so ``mie data --help`` stays fast.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from mie.cli.args import check_seed, seed


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``inspect`` and ``shards`` sub-subcommands."""
    sub = parser.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    inspect = sub.add_parser("inspect", help="detect a dataset's format; print counts, splits, caption "
                             "lengths and broken files (writes nothing unless --out)")
    inspect.add_argument("path", help="dataset folder, manifest, table or shard pattern")
    inspect.add_argument("--format", dest="data_format", default=None,
                         choices=["jsonl", "csv", "flickr", "coco", "webdataset"], help="skip detection")
    inspect.add_argument("--check", type=int, default=1000,
                         help="decode at most this many images per split to find broken ones (0 = all)")
    inspect.add_argument("--out", default=None, metavar="PNG",
                         help="also write a contact sheet of a few samples to this PNG (default: write nothing)")
    inspect.add_argument("--samples", type=int, default=12, help="samples on the --out contact sheet")
    shards = sub.add_parser("shards", help="convert a dataset's splits to WebDataset tar shards")
    shards.add_argument("path", help="dataset folder, manifest or table")
    shards.add_argument("out_dir", help="folder to write <split>/<split>-NNNNN.tar into")
    shards.add_argument("--format", dest="data_format", default=None,
                        choices=["jsonl", "csv", "flickr", "coco"], help="skip detection")
    shards.add_argument("--samples-per-shard", type=int, default=1000, help="samples per tar file")
    pairs = sub.add_parser("translation-pairs", help="build an English -> TARGET parallel corpus from the gettext "
                           "catalogs in /usr/share/locale (train/valid/test split by package)")
    pairs.add_argument("out_dir", help="folder to write train|valid|test.en / .TARGET and manifest.json into")
    pairs.add_argument("--from", dest="source", default="gettext", choices=["gettext"], help="where the pairs come from")
    pairs.add_argument("--target", required=True, help="target language code, e.g. de, fr, pt_BR")
    pairs.add_argument("--min-words", type=int, default=1, help="drop pairs with a side shorter (2 drops one-word entries)")
    pairs.add_argument("--max-words", type=int, default=40, help="drop pairs with a side longer")
    pairs.add_argument("--exclude", default="iso", help="comma-separated package groups to leave out ('' = none)")
    pairs.add_argument("--locale-dir", default="/usr/share/locale", help="where the <lang>/LC_MESSAGES/*.mo files are")
    pairs.add_argument("--seed", type=seed, default=0, help="seed of the package split (0 to 2**63-1)")


def run(args: argparse.Namespace) -> int:
    """Run the chosen action: ``inspect`` or ``shards``."""
    if args.data_command == "translation-pairs":
        return _translation_pairs(args)
    return _shards(args) if args.data_command == "shards" else _inspect(args)


def _translation_pairs(args: argparse.Namespace) -> int:
    from mie.data.gettext_pairs import build_gettext_pairs
    from mie.errors import ConfigError
    from mie.io.ownership import prepare_output_folder

    check_seed(args.seed)
    if args.min_words < 1 or args.max_words < args.min_words:
        raise ConfigError(f"need 1 <= --min-words <= --max-words, got {args.min_words} and {args.max_words}")
    exclude = tuple(name.strip().lower() for name in args.exclude.split(",") if name.strip())
    prepare_output_folder(args.out_dir, "OUT_DIR")
    corpus = build_gettext_pairs(args.out_dir, args.target, locale_dir=args.locale_dir, min_words=args.min_words,
                                 max_words=args.max_words, seed=args.seed, exclude=exclude)
    for split, count in corpus.pairs.items():
        print(f"{split}: {count} pairs from {len(corpus.packages[split])} packages")
    print(f"{corpus.raw_messages} messages read; dropped: "
          + (", ".join(f"{reason} {n}" for reason, n in corpus.dropped.items()) or "none"))
    print(f"files: {corpus.out_dir}/{{train,valid,test}}.{{en,{corpus.target}}} and manifest.json")
    return 0


def _shards(args: argparse.Namespace) -> int:
    from mie.data.shards import to_shards
    from mie.io.ownership import prepare_output_folder

    prepare_output_folder(args.out_dir, "OUT_DIR")  # no system folder; missing parents only inside the current dir
    for split, info in to_shards(args.path, args.out_dir, args.data_format, args.samples_per_shard).items():
        skipped = f", skipped {info['skipped']}" if info["skipped"] else ""
        print(f"{split}: {info['samples']} samples in {len(info['shards'])} shards{skipped}")
    print(f"train on them with: --set data.format=webdataset --set data.path={args.out_dir} --set max_steps=N")
    return 0


def _inspect(args: argparse.Namespace) -> int:
    from mie.data.inspection import format_report, inspect_dataset
    from mie.evaluation.plots import contact_sheet
    from mie.io.ownership import prepare_output_file

    if args.out:  # checked (and its folder made) before the dataset is read
        prepare_output_file(args.out, "--out")
    preview_size = max(0, args.samples) if args.out else 0  # the sheet is written only when asked for
    fmt, reports, preview = inspect_dataset(args.path, args.data_format, check=args.check, preview_size=preview_size)
    print(format_report(args.path, fmt, reports))
    if preview:
        out = contact_sheet([image for image, _ in preview], [caption for _, caption in preview], args.out,
                            title=f"{Path(args.path).name} ({fmt})")
        print(f"contact sheet: {out}")
    elif not args.out:
        print("add --out sheet.png to see a contact sheet of samples")
    return 0
