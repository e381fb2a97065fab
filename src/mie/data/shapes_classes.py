"""Shape classification images from the embedded shapes generator: one object per image, class = its shape.

The captioned shapes dataset (``mie.data.synthetic``) keeps every image's attribute combination unique,
so it holds only ~120 single-object images: too few to train a classifier. Here the generator's own
layout and drawing code (``mie.data.shapes_drawing``) renders as many single-object images as asked,
each from its own seed, and the label is the ``shape`` of the object it drew (its manifest metadata).
Colour, size, position and background vary. As in the captioned data, the generator's held-out
colour–shape pairs (``heldout_pairs(seed)``) never occur in ``train``/``val``/``test``; the
``test_heldout`` split holds only them (a red star seen only as "red" things and "star"s of other colours)::

    images, labels = render_shape_classes("train", 6000, image_size=32, seed=0)  # uint8 [N, 32, 32, 3]
"""

from __future__ import annotations

import numpy as np

from mie.data.shapes_drawing import BACKGROUNDS, COLORS, SHAPES, SIZES, draw_image, layout_objects
from mie.data.synthetic import heldout_pairs

SHAPE_CLASS_SPLITS = ("train", "val", "test", "test_heldout")


def shape_pairs(split: str, seed: int) -> list[tuple[str, str]]:
    """The ``(color, shape)`` pairs images of ``split`` are drawn from (held-out pairs only in ``test_heldout``)."""
    if split not in SHAPE_CLASS_SPLITS:
        raise ValueError(f"unknown shapes split {split!r}; choose one of {', '.join(SHAPE_CLASS_SPLITS)}")
    held = set(heldout_pairs(seed))
    pairs = [(c, s) for c in COLORS for s in SHAPES]
    return sorted(held) if split == "test_heldout" else [p for p in pairs if p not in held]


def render_shape_classes(split: str, count: int, image_size: int = 32, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``(images uint8 [count, S, S, 3], labels int64 [count])``; label ``k`` is ``SHAPES[k]``.

    Image ``i`` of ``split`` depends only on ``(seed, split, i)``; the splits never share a seed.
    """
    if image_size < 16:
        raise ValueError(f"image_size must be >= 16 to draw recognisable shapes, got {image_size}")
    pairs = shape_pairs(split, seed)
    images = np.empty((count, image_size, image_size, 3), dtype=np.uint8)
    labels = np.empty(count, dtype=np.int64)
    split_index = SHAPE_CLASS_SPLITS.index(split)
    for i in range(count):
        rng = np.random.default_rng([seed, 7919, split_index, i])
        color, shape = pairs[int(rng.integers(len(pairs)))]
        size = SIZES[int(rng.integers(len(SIZES)))]
        objects = layout_objects(rng, ((shape, color, size),), image_size)
        background = BACKGROUNDS[int(rng.integers(len(BACKGROUNDS)))]
        images[i] = np.asarray(draw_image(rng, objects, background, image_size))
        labels[i] = SHAPES.index(objects[0].shape)  # the class read back from what was drawn
    return images, labels
