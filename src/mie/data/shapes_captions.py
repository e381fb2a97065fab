"""Captions of the shapes dataset, and the zero-shot prompts written in the captions' own words.

Every caption names each object's colour and shape; sizes, counts, positions, backgrounds and spatial
relations are added by templates, and each of those statements is true for its image.
"""

from __future__ import annotations

import numpy as np

from mie.data.shapes_drawing import COLORS, SHAPES, SIZES, ShapeObject

BACKGROUND_PHRASES = {
    "plain": "a plain dark background",
    "stripes": "a striped background",
    "dots": "a dotted background",
    "noise": "a noisy background",
    "gradient": "a gradient background",
    "checker": "a checkered background",
}
COUNT_WORDS = {1: "one", 2: "two", 3: "three"}
RELATION_WORDS = {
    "left": ("left of", "to the left of", "on the left of"),
    "right": ("right of", "to the right of", "on the right of"),
    "above": ("above", "over"),
    "below": ("below", "under", "beneath"),
}


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
