"""``mie embed`` and ``mie search``: use a finished run's model (``mie.api``).

``mie embed RUN_DIR --split test OUT.safetensors`` writes the image and caption embeddings of a
split (tensors ``image_embeds`` [N, D], ``text_embeds`` [M, D], ``text_image_index`` [M]) with a
JSON sidecar holding the image ids, paths and captions in the same order. ``mie search RUN_DIR
"a red circle"`` prints the best-matching images of the run's test split (or ``--images FOLDER``)
with their cosine scores, and draws them on a contact sheet only when ``--sheet OUT.png`` is given.
Neither writes into the run directory.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from mie.cli.waiting import waiting


def _add_run_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", help="a finished run directory written by `mie train` or `mie demo`")
    parser.add_argument("--checkpoint", choices=("best", "last"), default="best",
                        help="which weights to use (default best)")


def add_embed_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``mie embed``."""
    _add_run_arguments(parser)
    parser.add_argument("out", metavar="OUT.safetensors", help="where to write the embeddings (+ OUT.json)")
    parser.add_argument("--split", metavar="NAME",
                        help="the split to embed (default: the run's first test split; test with --data)")
    parser.add_argument("--data", metavar="PATH", help="embed this dataset instead of the run's own")
    parser.add_argument("--format", dest="data_format", default="auto", metavar="F",
                        help="format of --data (default auto)")


def run_embed(args: argparse.Namespace) -> int:
    """Embed every image and caption of a split and save them with their ids, paths and captions."""
    from mie.api import load_run
    from mie.config import ConfigError
    from mie.io import save_weights
    from mie.io.ownership import prepare_output_file

    out = Path(args.out)
    if out.suffix != ".safetensors":
        raise ConfigError("must end with .safetensors", where=f"OUT {out}", fix=f"e.g. {out.with_suffix('.safetensors')}")
    if args.data is None and args.data_format != "auto":
        raise ConfigError("needs --data", where="--format", fix="pass --data PATH with the dataset to embed")
    prepare_output_file(out, "OUT")  # before any work: no system folder, no missing folder made silently
    with waiting(f"embedding {args.split or 'the test split'} of {args.run_dir}"):
        run = load_run(args.run_dir, args.checkpoint, device=getattr(args, "device", None))
        embedded = run.embed_split(args.split, data=args.data, data_format=args.data_format)
    tensors = {"image_embeds": embedded.image_embeds, "text_embeds": embedded.text_embeds,
               "text_image_index": embedded.text_image_index}
    metadata = {"run_dir": str(run.run_dir), "checkpoint": run.checkpoint.name, "split": embedded.split,
                "data": str(args.data if args.data is not None else run.config.data.path),
                "embed_dim": int(embedded.image_embeds.shape[1]), "image_ids": embedded.image_ids,
                "image_paths": embedded.paths, "captions": embedded.captions}
    save_weights(out, tensors, metadata)
    print(f"{embedded.split}: {len(embedded.image_ids)} images and {len(embedded.captions)} captions, "
          f"{metadata['embed_dim']}-d, from {run.checkpoint.name} -> {out} (+ {out.with_suffix('.json').name})")
    return 0


def add_search_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``mie search``."""
    _add_run_arguments(parser)
    parser.add_argument("query", help='the text to search for, e.g. "a red circle"')
    parser.add_argument("--k", type=int, default=5, help="how many images to list (default 5)")
    parser.add_argument("--images", metavar="FOLDER",
                        help="search the image files under this folder (default: the run's first test split)")
    parser.add_argument("--sheet", metavar="OUT.png", help="also draw the ranked images on a contact sheet")


def run_search(args: argparse.Namespace) -> int:
    """Print the ``k`` best images for a text query, best first, with their cosine scores."""
    from mie.api import load_run
    from mie.io.ownership import prepare_output_file

    _check_query(args.query)
    if args.sheet:  # checked (and its folder made) before the search runs
        prepare_output_file(Path(args.sheet), "--sheet")
    with waiting(f"searching {args.images or 'the test split'} of {args.run_dir}"):
        run = load_run(args.run_dir, args.checkpoint, device=getattr(args, "device", None))
        hits = run.search(args.query, images=args.images, k=args.k)
    width = len(str(len(hits)))
    for rank, hit in enumerate(hits, 1):
        print(f"{rank:>{width}}. {hit.score:+.4f}  {openable(hit.path)}")
    if args.sheet:
        print(f"contact sheet: {_draw_sheet(hits, args.query, Path(args.sheet))}")
    return 0


def openable(path: str | os.PathLike) -> str:
    """``path`` as the user can open it from the current directory: relative when it lies under it,
    else absolute (a run's data paths are relative to where it was trained, not to here)."""
    here, full = Path.cwd(), Path(path).absolute()
    return str(full.relative_to(here)) if full.is_relative_to(here) else str(full)


MAX_QUERY_CHARS = 1_000  # a text encoder reads a few dozen tokens; the web app's limit too


def _check_query(query: str) -> None:
    """Refuse an empty or overlong query before the run loads."""
    from mie.errors import ConfigError

    if not query.strip():
        raise ConfigError("is empty", where="QUERY", fix='give some text, e.g. "a red circle"')
    if len(query) > MAX_QUERY_CHARS:
        raise ConfigError(f"is {len(query):,} characters; the limit is {MAX_QUERY_CHARS:,}", where="QUERY",
                          fix="describe the image in a sentence")


def _draw_sheet(hits: list, query: str, out: Path) -> Path:
    """The ranked images with rank and score under each, titled by the query."""
    from mie.data.transforms import LoadImage
    from mie.errors import DataError
    from mie.evaluation.plots import contact_sheet

    missing = [hit.path for hit in hits if not Path(hit.path).is_file()]
    if missing:
        raise DataError("is no image file, so it cannot be drawn", where=missing[0],
                        fix="search a folder of image files with --images")
    load = LoadImage()
    images = [load(hit.path) for hit in hits]
    captions = [f"{rank}. {hit.score:.3f} {Path(hit.path).name}" for rank, hit in enumerate(hits, 1)]
    return contact_sheet(images, captions, out, ncols=min(5, len(images)), title=f"search: {query}")
