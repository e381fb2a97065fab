"""The embedded "shapes" dataset: seeded image–caption pairs drawn with Pillow, no download needed.

Each RGB image holds 1–3 coloured shapes on a dark, low-contrast textured background and comes with
five different captions that name every object's colour and shape, and often its size, the spatial
relations between objects (always true for the image), the object count and the background.

Splits are ``train`` / ``val`` / ``test`` / ``test_heldout``. Every image's attribute combination (the
sorted tuple of its ``(shape, color, size)`` objects) is unique across all splits, so no test image
repeats a training combination. A seeded set of colour–shape pairs (about 10%) never appears in
train/val/test; every ``test_heldout`` image contains at least one of them, which measures
compositional generalisation ("purple star" seen only as "purple" and "star" separately).

Generation is two-phase so that the output is byte-identical for any number of worker processes:
the combinations are drawn sequentially in the parent (cheap), then each image is laid out, drawn
and captioned from its own per-index seed in a pool of spawn-safe workers. This module plans and
writes the dataset; ``shapes_drawing`` lays out and draws one image, ``shapes_captions`` describes it.
It imports no torch: every spawned worker imports it.

Example::

    from mie.data.synthetic import generate_shapes_dataset
    root = generate_shapes_dataset("data/shapes", num_train=100, num_val=10, num_test=10, num_heldout=10)
"""

from __future__ import annotations

import json
import math
import multiprocessing
import os
import random
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mie.data.registry import check_format_options, max_samples_for, register_dataset_format
from mie.data.shapes_captions import BACKGROUND_PHRASES, attribute_prompts, make_captions
from mie.data.shapes_drawing import (
    BACKGROUNDS,
    COLOR_RGB,
    COLORS,
    SHAPES,
    SIZES,
    ObjectKey,
    draw_image,
    layout_objects,
)
from mie.data.shapes_files import (
    MANIFEST,
    SPLITS,
    claim_folder,
    file_sizes,
    image_path,
    planned_files,
    read_marker,
    write_marker,
)

if TYPE_CHECKING:  # torch stays out of the generation workers, which import this module
    from torch.utils.data import Dataset

    from mie.data.config import DataConfig, SyntheticConfig

# The vocabulary and the prompts are re-exported: they are part of the dataset's public face.
__all__ = [
    "BACKGROUNDS", "BACKGROUND_PHRASES", "COLORS", "COLOR_RGB", "GENERATOR_VERSION", "SHAPES", "SIZES", "SPLITS",
    "attribute_prompts", "build_synthetic", "ensure_shapes_dataset", "generate_from_config",
    "generate_shapes_dataset", "heldout_pairs",
]

GENERATOR_VERSION = 3  # 2: the marker lists every file written (``mie.data.shapes_files``); 3: larger objects
HELDOUT_FRACTION = 0.1
NUM_OBJECTS_WEIGHTS = (0.2, 0.4, 0.4)  # P(1), P(2), P(3) before uniqueness pushes some up


# --------------------------------------------------------------------------- public API


def heldout_pairs(seed: int) -> list[tuple[str, str]]:
    """The ``(color, shape)`` pairs kept out of train/val/test for this seed.

    About ``HELDOUT_FRACTION`` of all pairs, each colour and each shape at most once, so every
    colour and every shape is still seen in training in other pairings.
    """
    rng = np.random.default_rng([seed, 2001])
    count = max(1, round(HELDOUT_FRACTION * len(SHAPES) * len(COLORS)))
    shapes = rng.permutation(len(SHAPES))[:count]
    colors = rng.permutation(len(COLORS))[:count]
    return sorted((COLORS[c], SHAPES[s]) for c, s in zip(colors, shapes))


def generate_shapes_dataset(
    out_dir: str | os.PathLike[str],
    num_train: int = 8000,
    num_val: int = 500,
    num_test: int = 1000,
    num_heldout: int = 500,
    image_size: int = 64,
    seed: int = 0,
    workers: int | None = None,
) -> Path:
    """Generate the shapes dataset into ``out_dir`` and return it.

    Writes ``images/<split>/<id>.png``, ``captions.jsonl`` (one JSON object per image) and
    ``dataset.json`` (version, seed, sizes and the list of files written; ``complete`` once done).
    ``out_dir`` must be missing, empty or an earlier output of this generator, whose listed files
    alone are replaced; anything else is refused with a ``DataError`` and left untouched.
    ``workers=None`` uses up to 8 processes for large runs and none for tiny ones; the output is
    identical for every worker count. Workers are spawned, so a script calling this with workers
    must guard its entry point with ``if __name__ == "__main__":``.
    """
    sizes = {"train": num_train, "val": num_val, "test": num_test, "test_heldout": num_heldout}
    for name, value in sizes.items():
        if not isinstance(value, int) or value < 0:
            raise ValueError(f"num_{name} must be a non-negative int, got {value!r}")
    if image_size < 24:
        raise ValueError(f"image_size must be >= 24 to draw recognisable shapes, got {image_size}")
    out = Path(out_dir)
    metadata = _metadata(sizes, image_size, seed)
    planned = planned_files(sizes)
    claim_folder(out, planned, metadata)
    for split, count in sizes.items():
        if count:
            (out / "images" / split).mkdir(parents=True, exist_ok=True)

    tasks = _plan(sizes, seed)
    records = _render_all(str(out), image_size, seed, tasks, workers)
    with open(out / MANIFEST, "w", encoding="utf-8") as f:
        for record in records:
            f.write(json.dumps(record) + "\n")
    write_marker(out, metadata, file_sizes(out, planned), complete=True)
    return out


def generate_from_config(
    cfg: SyntheticConfig, out_dir: str | os.PathLike[str], workers: int | None = None
) -> Path:
    """``generate_shapes_dataset`` with the sizes and seed of a ``SyntheticConfig``."""
    return generate_shapes_dataset(
        out_dir,
        num_train=cfg.num_train,
        num_val=cfg.num_val,
        num_test=cfg.num_test,
        num_heldout=cfg.num_heldout,
        image_size=cfg.image_size,
        seed=cfg.seed,
        workers=workers,
    )


def ensure_shapes_dataset(
    cfg: SyntheticConfig, out_dir: str | os.PathLike[str], workers: int | None = None
) -> Path:
    """Return ``out_dir``, generating the dataset only when it is absent or was made with other parameters.

    Never regenerates over data it did not write: see ``generate_shapes_dataset``.
    """
    out = Path(out_dir)
    sizes = {
        "train": cfg.num_train,
        "val": cfg.num_val,
        "test": cfg.num_test,
        "test_heldout": cfg.num_heldout,
    }
    wanted = _metadata(sizes, cfg.image_size, cfg.seed)
    found = read_marker(out) if out.is_dir() else None  # a marker that is not ours is refused here
    if found and found.get("complete") is True and (out / MANIFEST).is_file():
        if {key: found.get(key) for key in wanted} == wanted:
            return out
    return generate_from_config(cfg, out, workers=workers)


@register_dataset_format("synthetic")
def build_synthetic(
    config: DataConfig, split: str, transform: Callable | None = None, cache_images: bool = False
) -> Dataset:
    """The ``data.format: synthetic`` builder: the shapes dataset at ``config.path``, generated first if
    absent or made with other parameters (only into an empty folder or over its own earlier output).

    Option: ``workers`` (processes used when generating; default automatic).
    """
    from mie.data.jsonl import JsonlImageText  # here, not above: it imports torch

    options = check_format_options(config, ("workers",))
    root = ensure_shapes_dataset(config.synthetic, config.path, workers=options.get("workers"))
    return JsonlImageText(
        root / MANIFEST,
        split=split,
        transform=transform,
        cache_images=cache_images,
        max_samples=max_samples_for(config, split),
        max_image_pixels=config.max_image_pixels,
    )


# --------------------------------------------------------------------------- phase 1: plan


def _metadata(sizes: dict[str, int], image_size: int, seed: int) -> dict[str, Any]:
    """The parameters that define a generated dataset; equal metadata means equal files."""
    return {
        "version": GENERATOR_VERSION,
        "seed": seed,
        "image_size": image_size,
        **{f"num_{split}": count for split, count in sizes.items()},
        "shapes": list(SHAPES),
        "colors": list(COLORS),
        "heldout_pairs": [list(pair) for pair in heldout_pairs(seed)],
    }


def _plan(sizes: dict[str, int], seed: int) -> list[tuple[str, int, tuple[ObjectKey, ...]]]:
    """Draw every image's attribute combination, unique across all splits, in manifest order.

    Slots of all splits are visited in one seeded random interleaving so that the scarce
    single-object combinations are shared among splits in proportion to their sizes.
    """
    held = set(heldout_pairs(seed))
    all_pairs = [(c, s) for c in COLORS for s in SHAPES]
    seen_pairs = [p for p in all_pairs if p not in held]
    held_list = sorted(held)
    # Python's random() is guaranteed to repeat across Python versions for the same int seed, and
    # its scalar draws are ~20x cheaper than numpy's, which matters for ~40k draws per 10k images.
    rnd = random.Random(seed * 1_000_003 + 1001)
    slots = [(split, i) for split in SPLITS for i in range(sizes[split])]
    order = sorted(range(len(slots)), key=lambda _: rnd.random())
    used: set[tuple[ObjectKey, ...]] = set()
    combos: dict[tuple[str, int], tuple[ObjectKey, ...]] = {}
    for k in order:
        split, i = slots[k]
        combo = _draw_unique_combo(rnd, split == "test_heldout", seen_pairs, held_list, all_pairs, used)
        used.add(combo)
        combos[(split, i)] = combo
    return [(split, i, combos[(split, i)]) for split, i in slots]


def _draw_unique_combo(
    rnd: random.Random,
    heldout: bool,
    seen_pairs: list[tuple[str, str]],
    held_pairs: list[tuple[str, str]],
    all_pairs: list[tuple[str, str]],
    used: set[tuple[ObjectKey, ...]],
) -> tuple[ObjectKey, ...]:
    """One combination not in ``used``; collisions move the image to more objects, where room is plenty.

    Test-heldout combinations start with a held-out pair; the others are drawn from every pair.
    """

    def pick(options: list[Any]) -> Any:
        return options[int(rnd.random() * len(options))]

    u, n = rnd.random() * sum(NUM_OBJECTS_WEIGHTS), 1
    while n < len(NUM_OBJECTS_WEIGHTS) and u >= sum(NUM_OBJECTS_WEIGHTS[:n]):
        n += 1
    while True:
        for _ in range(10):
            if heldout:
                pairs = [pick(held_pairs)] + [pick(all_pairs) for _ in range(n - 1)]
            else:
                pairs = [pick(seen_pairs) for _ in range(n)]
            if len(set(pairs)) < n:  # one (color, shape) pair per image keeps captions unambiguous
                continue
            combo = tuple(sorted((shape, color, pick(SIZES)) for color, shape in pairs))
            if combo not in used:
                return combo
        if n == 3:
            raise ValueError(
                "the shapes dataset ran out of unique attribute combinations; ask for fewer images"
            )
        n += 1


# --------------------------------------------------------------------------- phase 2: render


def _render_all(
    out_dir: str,
    image_size: int,
    seed: int,
    tasks: list[tuple[str, int, tuple[ObjectKey, ...]]],
    workers: int | None,
) -> list[dict[str, Any]]:
    """Render every task, in a spawn-context process pool when that pays off; results keep task order."""
    if workers is None:
        workers = 0 if len(tasks) < 400 else min(8, os.cpu_count() or 1)
    if workers <= 1 or len(tasks) <= 1:
        return _render_chunk(out_dir, image_size, seed, tasks)
    chunk = max(1, min(500, math.ceil(len(tasks) / (workers * 4))))
    chunks = [tasks[i : i + chunk] for i in range(0, len(tasks), chunk)]
    n = len(chunks)
    # spawn: no inherited torch threads or locks, and identical behaviour on Linux, macOS and Windows.
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
        results = pool.map(_render_chunk, [out_dir] * n, [image_size] * n, [seed] * n, chunks)
        return [record for part in results for record in part]


def _render_chunk(
    out_dir: str, image_size: int, seed: int, tasks: Sequence[tuple[str, int, tuple[ObjectKey, ...]]]
) -> list[dict[str, Any]]:
    """Lay out, draw, caption and save each task's image; return its manifest records."""
    records = []
    for split, index, combo in tasks:
        # Per-image seed: the image depends only on (seed, split, index), never on the chunking.
        rng = np.random.default_rng([seed, SPLITS.index(split), index])
        objects = layout_objects(rng, combo, image_size)
        background = BACKGROUNDS[int(rng.integers(len(BACKGROUNDS)))]
        image = draw_image(rng, objects, background, image_size)
        image_id = f"{split}_{index:05d}"
        rel_path = image_path(split, index)
        image.save(os.path.join(out_dir, rel_path), format="PNG")
        records.append(
            {
                "id": image_id,
                "image": rel_path,
                "captions": make_captions(rng, objects, background, image_size),
                "split": split,
                "attributes": {"objects": [o.to_json() for o in objects], "background": background},
            }
        )
    return records
