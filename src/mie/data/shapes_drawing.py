"""Drawing the shapes dataset: its vocabulary of shapes, colours and sizes, layout and rendering.

An image is laid out (``layout_objects``: no overlaps) and drawn (``draw_image``: a dark textured
background, anti-aliased shapes) from one seeded ``numpy`` generator, so it depends only on that seed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

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
# Object radius as a fraction of the image side; "large" is ~1.7x "small" so sizes are visibly apart.
# At the demo's 48 px a small object is ~12 px across, a large one ~21 px: at 0.09/0.17 (8 and 16 px) a
# ViT given the shape labels directly found the set of shapes in only 62% of images after 400 steps
# (conv stem), against 82% at these sizes (issue 28: the demo could not tell a circle from a square).
RADIUS_FRACTION = {"small": 0.13, "large": 0.22}
SUPERSAMPLE = 2
RESTARTS = 30  # random layouts tried before the quadrant layout

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


def object_radius(size: str, image_size: int) -> float:
    """Radius of the circle an object of ``size`` is drawn inside, in final-image pixels."""
    return RADIUS_FRACTION[size] * image_size


def layout_objects(rng: np.random.Generator, combo: tuple[ObjectKey, ...], image_size: int) -> list[ShapeObject]:
    """Place the objects inside the image with no overlap of their bounding circles (rejection sampling).

    Large objects are placed first (hardest to fit); a stuck layout restarts from scratch, and after
    ``RESTARTS`` stuck layouts (three large objects rarely fit at random) each object gets its own
    quadrant (``_quadrant_layout``), which always fits.
    """
    gap = 0.04 * image_size
    order = sorted(range(len(combo)), key=lambda k: combo[k][2] != "large")
    for _ in range(RESTARTS):
        placed: dict[int, tuple[int, int, float]] = {}
        for k in order:
            r = object_radius(combo[k][2], image_size)
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
    return _quadrant_layout(rng, combo, image_size)


def _quadrant_layout(rng: np.random.Generator, combo: tuple[ObjectKey, ...], image_size: int) -> list[ShapeObject]:
    """Each object in its own random quadrant, its centre jittered as far as its bounding circle stays inside."""
    if len(combo) > 4:
        raise ValueError(f"at most 4 objects fit an image, got {len(combo)}")
    half = image_size / 2
    cells = rng.permutation(4)[: len(combo)]
    objects = []
    for (shape, color, size), cell in zip(combo, cells):
        r = object_radius(size, image_size)
        jitter = max(0, math.floor(half / 2 - r - 1))
        x = int((cell % 2) * half + half / 2 + rng.integers(-jitter, jitter + 1))
        y = int((cell // 2) * half + half / 2 + rng.integers(-jitter, jitter + 1))
        objects.append(ShapeObject(shape, color, size, x, y))
    return objects


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


def draw_image(
    rng: np.random.Generator, objects: list[ShapeObject], background: str, image_size: int
) -> Image.Image:
    """Draw at ``SUPERSAMPLE`` x the size, then average each block of pixels for anti-aliased edges.

    Block averaging (``Image.reduce``) is exact coverage anti-aliasing and ~10x cheaper than a
    LANCZOS downscale, which would also ring around the sharp shape edges.
    """
    texture = _background(rng, background, image_size)
    texture = texture.repeat(SUPERSAMPLE, axis=0).repeat(SUPERSAMPLE, axis=1)
    canvas = Image.fromarray(texture, mode="RGB")
    pen = ImageDraw.Draw(canvas)
    for obj in objects:
        # The centre of final pixel x is at x + 0.5, i.e. SUPERSAMPLE * (x + 0.5) on the canvas.
        cx, cy = SUPERSAMPLE * (obj.x + 0.5), SUPERSAMPLE * (obj.y + 0.5)
        r = SUPERSAMPLE * object_radius(obj.size, image_size)
        fill = COLOR_RGB[obj.color]
        if obj.shape == "circle":
            pen.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fill)
        else:
            pen.polygon(_shape_points(obj.shape, cx, cy, r), fill=fill)
    return canvas.reduce(SUPERSAMPLE)
