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
and captioned from its own per-index seed in a pool of spawn-safe workers.

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
import shutil
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image, ImageDraw

if TYPE_CHECKING:
    from mie.data.config import SyntheticConfig

GENERATOR_VERSION = 1
SPLITS = ("train", "val", "test", "test_heldout")
SHAPES = ("circle", "square", "triangle", "star", "hexagon", "cross", "diamond")
# Saturated, well separated colours; every one is far brighter than any background (max ~95).
COLOR_RGB: dict[str, tuple[int, int, int]] = {
    "red": (225, 35, 35),
    "green": (40, 190, 60),
    "blue": (60, 110, 250),
    "yellow": (245, 225, 40),
    "purple": (165, 70, 225),
    "orange": (250, 140, 25),
    "pink": (250, 140, 200),
    "cyan": (40, 220, 230),
    "white": (245, 245, 245),
}
COLORS = tuple(COLOR_RGB)
SIZES = ("small", "large")
BACKGROUNDS = ("plain", "stripes", "dots", "noise", "gradient", "checker")
BACKGROUND_PHRASES = {
    "plain": "a plain dark background",
    "stripes": "a striped background",
    "dots": "a dotted background",
    "noise": "a noisy background",
    "gradient": "a gradient background",
    "checker": "a checkered background",
}
HELDOUT_FRACTION = 0.1
# Object radius as a fraction of the image side; "large" is ~1.9x "small" so sizes are visibly apart.
RADIUS_FRACTION = {"small": 0.09, "large": 0.17}
NUM_OBJECTS_WEIGHTS = (0.2, 0.4, 0.4)  # P(1), P(2), P(3) before uniqueness pushes some up
SUPERSAMPLE = 2
COUNT_WORDS = {1: "one", 2: "two", 3: "three"}
RELATION_WORDS = {
    "left": ("left of", "to the left of", "on the left of"),
    "right": ("right of", "to the right of", "on the right of"),
    "above": ("above", "over"),
    "below": ("below", "under", "beneath"),
}
_MANIFEST = "captions.jsonl"
_METADATA = "dataset.json"

ObjectKey = tuple[str, str, str]  # (shape, color, size)


@dataclass(frozen=True)
class ShapeObject:
    """One drawn object: what it is and where its centre lies, in pixels of the final image."""

    shape: str
    color: str
    size: str
    x: int
    y: int

    def to_json(self) -> dict[str, Any]:
        """The ``attributes.objects`` entry written to the manifest."""
        return {"shape": self.shape, "color": self.color, "size": self.size, "x": self.x, "y": self.y}


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


def attribute_prompts(attribute: str) -> tuple[list[str], list[str]]:
    """Class names and prompt templates for zero-shot classification of ``shape``/``color``/``size``.

    Format each template with a class name (``template.format(name)``) and average the text
    embeddings over templates. Captions never name a shape without its colour (nor a colour without
    a shape), so, as CLIP's prompt ensembles do, each class is described in the captions' own words
    and averaged over the other attribute: "the red {}", "the blue {}", ... Templates avoid an
    article before a colour ("a orange ...").
    """
    if attribute == "shape":
        return list(SHAPES), [f"the {color} {{}}" for color in COLORS] + ["a {}", "one {}"]
    if attribute == "color":
        return list(COLORS), [f"the {{}} {shape}" for shape in SHAPES] + ["one {} shape", "{} shapes"]
    if attribute == "size":
        return list(SIZES), [f"the {{}} {shape}" for shape in SHAPES] + ["one {} shape"]
    raise ValueError(f"unknown attribute {attribute!r} for zero-shot prompts; expected shape, color or size")


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
    ``dataset.json`` (version, seed, sizes; written last so its presence means "complete").
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
    _clear_previous(out)
    for split, count in sizes.items():
        if count:
            (out / "images" / split).mkdir(parents=True, exist_ok=True)

    tasks = _plan(sizes, seed)
    records = _render_all(str(out), image_size, seed, tasks, workers)
    with open(out / _MANIFEST, "w", encoding="utf-8") as f:
        for record in records:
            f.write(json.dumps(record) + "\n")
    (out / _METADATA).write_text(json.dumps(metadata, indent=2) + "\n", encoding="utf-8")
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
    """Return ``out_dir``, generating the dataset only when it is absent or was made with other parameters."""
    out = Path(out_dir)
    sizes = {
        "train": cfg.num_train,
        "val": cfg.num_val,
        "test": cfg.num_test,
        "test_heldout": cfg.num_heldout,
    }
    wanted = _metadata(sizes, cfg.image_size, cfg.seed)
    meta_path = out / _METADATA
    if meta_path.is_file() and (out / _MANIFEST).is_file():
        try:
            found = json.loads(meta_path.read_text(encoding="utf-8"))
        except json.JSONDecodeError:
            found = None
        if found == wanted:
            return out
    return generate_from_config(cfg, out, workers=workers)


# --------------------------------------------------------------------------- phase 1: plan


def _metadata(sizes: dict[str, int], image_size: int, seed: int) -> dict[str, Any]:
    """The parameters that define a generated dataset; equal metadata means equal files."""
    return {
        "generator": "mie.data.synthetic",
        "version": GENERATOR_VERSION,
        "seed": seed,
        "image_size": image_size,
        **{f"num_{split}": count for split, count in sizes.items()},
        "shapes": list(SHAPES),
        "colors": list(COLORS),
        "heldout_pairs": [list(pair) for pair in heldout_pairs(seed)],
    }


def _clear_previous(out: Path) -> None:
    """Remove a previous generation's files, but only when ``dataset.json`` marks the folder as ours."""
    if not (out / _METADATA).is_file():
        return
    (out / _METADATA).unlink()
    if (out / _MANIFEST).is_file():
        (out / _MANIFEST).unlink()
    for split in SPLITS:
        if (out / "images" / split).is_dir():
            shutil.rmtree(out / "images" / split)


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
        objects = _layout(rng, combo, image_size)
        background = BACKGROUNDS[int(rng.integers(len(BACKGROUNDS)))]
        image = _draw(rng, objects, background, image_size)
        image_id = f"{split}_{index:05d}"
        rel_path = f"images/{split}/{image_id}.png"
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


def _radius(size: str, image_size: int) -> float:
    """Radius of the circle an object of ``size`` is drawn inside, in final-image pixels."""
    return RADIUS_FRACTION[size] * image_size


def _layout(rng: np.random.Generator, combo: tuple[ObjectKey, ...], image_size: int) -> list[ShapeObject]:
    """Place the objects inside the image with no overlap of their bounding circles (rejection sampling).

    Large objects are placed first (hardest to fit); a stuck layout restarts from scratch.
    """
    gap = 0.04 * image_size
    order = sorted(range(len(combo)), key=lambda k: combo[k][2] != "large")
    for _ in range(200):
        placed: dict[int, tuple[int, int, float]] = {}
        for k in order:
            r = _radius(combo[k][2], image_size)
            lo, hi = math.ceil(r + 1), math.floor(image_size - 1 - r - 1)
            for _ in range(100):
                x, y = int(rng.integers(lo, hi + 1)), int(rng.integers(lo, hi + 1))
                if all(math.hypot(x - px, y - py) >= r + pr + gap for px, py, pr in placed.values()):
                    placed[k] = (x, y, r)
                    break
            else:
                break
        if len(placed) == len(combo):
            return [ShapeObject(s, c, z, placed[k][0], placed[k][1]) for k, (s, c, z) in enumerate(combo)]
    raise RuntimeError(f"could not lay out {combo} in a {image_size}px image")  # unreachable for <= 3 objects


def _background(rng: np.random.Generator, kind: str, side: int) -> np.ndarray:
    """A dark, low-contrast ``[side, side, 3]`` uint8 texture; its brightest value stays below ~95.

    Made at the final image size (textures need no anti-aliasing), then upsampled to the canvas.
    """
    base = rng.integers(22, 50) + rng.integers(-6, 7, size=3)
    delta = float(rng.integers(12, 24))
    yy, xx = np.mgrid[0:side, 0:side].astype(np.float32)
    period = float(rng.integers(8, 17))
    if kind == "plain":
        level = np.zeros((side, side), np.float32)
    elif kind == "stripes":
        direction = int(rng.integers(3))
        coord = (xx, yy, xx + yy)[direction]
        level = ((coord // (period / 2)) % 2) * delta
    elif kind == "dots":
        cell = period
        dy, dx = (yy % cell) - cell / 2, (xx % cell) - cell / 2
        level = (dx * dx + dy * dy <= (cell * 0.22) ** 2) * delta
    elif kind == "noise":
        level = rng.normal(0.0, 7.0, size=(side, side)).astype(np.float32) + delta / 2
    elif kind == "gradient":
        angle = rng.uniform(0, 2 * math.pi)
        proj = (xx * math.cos(angle) + yy * math.sin(angle)) / side
        level = (proj - proj.min()) / max(float(np.ptp(proj)), 1e-6) * (delta + 15)
    elif kind == "checker":
        level = (((xx // period) + (yy // period)) % 2) * delta
    else:
        raise ValueError(f"unknown background {kind!r}; known: {', '.join(BACKGROUNDS)}")
    pixels = base[None, None, :].astype(np.float32) + level[:, :, None]
    return np.clip(pixels, 0, 255).astype(np.uint8)


def _shape_points(shape: str, cx: float, cy: float, r: float) -> list[tuple[float, float]]:
    """Polygon vertices of ``shape`` centred at (cx, cy) with radius ``r`` (circle excluded)."""

    def ring(n: int, radius: float, start: float) -> list[tuple[float, float]]:
        return [
            (
                cx + radius * math.cos(start + 2 * math.pi * k / n),
                cy + radius * math.sin(start + 2 * math.pi * k / n),
            )
            for k in range(n)
        ]

    if shape == "square":
        h = 0.82 * r
        return [(cx - h, cy - h), (cx + h, cy - h), (cx + h, cy + h), (cx - h, cy + h)]
    if shape == "triangle":
        return ring(3, 1.1 * r, -math.pi / 2)
    if shape == "hexagon":
        return ring(6, r, 0.0)
    if shape == "diamond":
        return [(cx, cy - r), (cx + 0.72 * r, cy), (cx, cy + r), (cx - 0.72 * r, cy)]
    if shape == "star":
        outer, inner = ring(5, 1.1 * r, -math.pi / 2), ring(5, 0.45 * r, -math.pi / 2 + math.pi / 5)
        return [p for pair in zip(outer, inner) for p in pair]
    if shape == "cross":
        w = 0.34 * r
        return [
            (cx - w, cy - r), (cx + w, cy - r), (cx + w, cy - w), (cx + r, cy - w),
            (cx + r, cy + w), (cx + w, cy + w), (cx + w, cy + r), (cx - w, cy + r),
            (cx - w, cy + w), (cx - r, cy + w), (cx - r, cy - w), (cx - w, cy - w),
        ]  # fmt: skip
    raise ValueError(f"unknown shape {shape!r}; known: {', '.join(SHAPES)}")


def _draw(
    rng: np.random.Generator, objects: list[ShapeObject], background: str, image_size: int
) -> Image.Image:
    """Draw at ``SUPERSAMPLE`` x the size, then average each block of pixels for anti-aliased edges.

    Block averaging (``Image.reduce``) is exact coverage anti-aliasing and ~10x cheaper than a
    LANCZOS downscale, which would also ring around the sharp shape edges.
    """
    texture = _background(rng, background, image_size)
    texture = texture.repeat(SUPERSAMPLE, axis=0).repeat(SUPERSAMPLE, axis=1)
    canvas = Image.fromarray(texture, mode="RGB")
    draw = ImageDraw.Draw(canvas)
    for obj in objects:
        # The centre of final pixel x is at x + 0.5, i.e. SUPERSAMPLE * (x + 0.5) on the canvas.
        cx, cy = SUPERSAMPLE * (obj.x + 0.5), SUPERSAMPLE * (obj.y + 0.5)
        r = SUPERSAMPLE * _radius(obj.size, image_size)
        fill = COLOR_RGB[obj.color]
        if obj.shape == "circle":
            draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fill)
        else:
            draw.polygon(_shape_points(obj.shape, cx, cy, r), fill=fill)
    return canvas.reduce(SUPERSAMPLE)


# --------------------------------------------------------------------------- captions


def _article(phrase: str) -> str:
    """``phrase`` with "a" or "an" in front."""
    return ("an " if phrase[0] in "aeiou" else "a ") + phrase


def _name(obj: ShapeObject, sized: bool) -> str:
    """ "small red circle" or "red circle"."""
    return f"{obj.size} {obj.color} {obj.shape}" if sized else f"{obj.color} {obj.shape}"


def relation(a: ShapeObject, b: ShapeObject) -> str:
    """Where ``a`` lies relative to ``b``: ``left``/``right`` (x) or ``above``/``below`` (y, down is +).

    The axis with the larger separation is used, so the statement is clearly true in the image
    (non-overlapping objects are at least ~10 px apart on that axis at 64 px).
    """
    dx, dy = a.x - b.x, a.y - b.y
    if abs(dx) >= abs(dy):
        return "left" if dx < 0 else "right"
    return "above" if dy < 0 else "below"


def _position(obj: ShapeObject, image_size: int) -> str:
    """Where one object sits, by thirds of the image: "in the top left", "in the center", ..."""
    third = image_size / 3
    col = "left" if obj.x < third else ("right" if obj.x >= 2 * third else "")
    row = "top" if obj.y < third else ("bottom" if obj.y >= 2 * third else "")
    if not col and not row:
        return "in the center"
    return "in the " + " ".join(w for w in (row, col) if w)


def _join(phrases: list[str]) -> str:
    """ "a, b and c"."""
    return phrases[0] if len(phrases) == 1 else ", ".join(phrases[:-1]) + " and " + phrases[-1]


def make_captions(
    rng: np.random.Generator, objects: list[ShapeObject], background: str, image_size: int, count: int = 5
) -> list[str]:
    """``count`` different captions for one image, each naming every object's colour and shape.

    Templates vary between plain lists, counts, backgrounds, positions and spatial relations;
    sizes are mentioned at random. Relations come from ``relation`` and are therefore true.
    """
    candidates = (_single_captions if len(objects) == 1 else _multi_captions)(
        rng, objects, background, image_size
    )
    unique = list(dict.fromkeys(candidates))
    if len(unique) < count:  # cannot happen with the templates below; guards template edits
        raise RuntimeError(f"only {len(unique)} distinct captions for {objects}")
    picks = rng.choice(len(unique), count, replace=False)
    return [unique[k] for k in picks]


def _sized(rng: np.random.Generator) -> bool:
    """Whether a caption mentions sizes (half the time)."""
    return bool(rng.random() < 0.5)


def _single_captions(
    rng: np.random.Generator, objects: list[ShapeObject], background: str, size: int
) -> list[str]:
    """Candidate captions for an image with one object."""
    (o,) = objects
    bg = BACKGROUND_PHRASES[background]
    where = _position(o, size)
    return [
        _article(_name(o, True)),
        f"{_article(_name(o, _sized(rng)))} on {bg}",
        f"a single {_name(o, True)} {where}",
        f"there is {_article(_name(o, _sized(rng)))} {where}",
        f"one shape: {_article(_name(o, _sized(rng)))}",
        f"a picture showing {_article(_name(o, _sized(rng)))}",
        f"one {_name(o, True)} drawn on {bg}",
        f"an image of {_article(_name(o, False))}",
    ]


def _relation_words(rng: np.random.Generator, a: ShapeObject, b: ShapeObject) -> str:
    """A paraphrase of ``relation(a, b)``: "left of", "to the left of", "under", ..."""
    options = RELATION_WORDS[relation(a, b)]
    return options[int(rng.integers(len(options)))]


def _multi_captions(
    rng: np.random.Generator, objects: list[ShapeObject], background: str, size: int
) -> list[str]:
    """Candidate captions for an image with two or three objects."""
    n = len(objects)
    bg = BACKGROUND_PHRASES[background]
    count = COUNT_WORDS[n]

    def listing(sized: bool, order: list[ShapeObject] | None = None) -> str:
        ordered = order if order is not None else [objects[k] for k in rng.permutation(n)]
        return _join([_article(_name(o, sized)) for o in ordered])

    a, b, *rest = [objects[k] for k in rng.permutation(n)]
    s1, s2, s3 = _sized(rng), _sized(rng), _sized(rng)
    rel1 = f"{_article(_name(a, s1))} {_relation_words(rng, a, b)} {_article(_name(b, s1))}"
    rel2 = f"there is {_article(_name(b, s2))} {_relation_words(rng, b, a)} {_article(_name(a, s2))}"
    rel3 = f"the {_name(a, s3)} is {_relation_words(rng, a, b)} the {_name(b, s3)}"
    if rest:
        (c,) = rest
        rel1 += f", which is {_relation_words(rng, b, c)} {_article(_name(c, s1))}"
        rel2 += f", and {_article(_name(c, s2))} {_relation_words(rng, c, a)} the {_name(a, False)}"
        rel3 += f", and the {_name(c, s3)} is {_relation_words(rng, c, b)} the {_name(b, False)}"
    candidates = [
        listing(True),
        f"{count} shapes: {listing(_sized(rng))}",
        f"{count} shapes on {bg}: {listing(_sized(rng))}",
        f"{listing(_sized(rng))} on {bg}",
        f"an image with {count} shapes, {listing(_sized(rng))}",
        rel1,
        rel2,
        rel3,
    ]
    by_x = sorted(objects, key=lambda o: o.x)
    # "from left to right" is only stated when the order is clear (x centres >= 3 px apart).
    if all(q.x - p.x >= 3 for p, q in zip(by_x, by_x[1:])):
        candidates.append(f"from left to right: {listing(_sized(rng), by_x)}")
    return candidates
