"""The pointing game on the shapes data: does a heat map's peak fall on the object a query names?

The shapes manifest records every object's shape, colour, size and centre (``attributes.objects``). For each
object of a test image, the query is ``"a <colour> <shape>"``; a hit is a peak (in the image's pixels)
within the object's drawn radius plus half a map cell (a coarse map's peak is a cell centre, so an object
in the cell's corner would otherwise be missed). Objects are split into two groups: ``unique`` (no other
object of the image has its colour: colour alone can point at it) and ``shared colour`` (another object
has the same colour and a different shape: only a model that reads shape can point at the right one).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from PIL import Image
from torch import nn

from mie.data.shapes_drawing import object_radius
from mie.explain.image_maps import image_map


@dataclass
class PointingScore:
    """Hits and trials per group (``unique``, ``shared colour``)."""

    hits: dict[str, int] = field(default_factory=lambda: {"unique": 0, "shared colour": 0})
    trials: dict[str, int] = field(default_factory=lambda: {"unique": 0, "shared colour": 0})

    def rate(self, group: str | None = None) -> float | None:
        """Share of hits in ``group`` (None: both); None when there was no trial."""
        groups = [group] if group else list(self.trials)
        trials = sum(self.trials[g] for g in groups)
        return sum(self.hits[g] for g in groups) / trials if trials else None


def is_hit(peak: tuple[int, int], obj: Mapping[str, Any], image_size: int, cell: float) -> bool:
    """Whether ``peak`` ``(x, y)`` lies within ``obj``'s radius plus half a ``cell`` (pixels) of its centre."""
    reach = object_radius(obj["size"], image_size) + cell / 2
    return (peak[0] - obj["x"]) ** 2 + (peak[1] - obj["y"]) ** 2 <= reach ** 2


def pointing_game(model: nn.Module, rows: Iterable[Mapping[str, Any]], load: Callable[[str], Image.Image],
                  preprocess: Callable[[Image.Image], torch.Tensor], tokenize: Callable[[str], torch.Tensor],
                  method: str = "gradcam") -> PointingScore:
    """Play the game over manifest ``rows`` (``image`` path, ``attributes.objects``) with ``method``'s maps;
    ``load`` opens an image path, ``preprocess`` makes the model's ``[3, S, S]`` input, ``tokenize`` the
    ``[1, L]`` ids of a query."""
    score = PointingScore()
    for row in rows:
        objects = row.get("attributes", {}).get("objects", [])
        image = load(row["image"])
        x = preprocess(image)
        width, height = image.size
        for obj in objects:
            same_colour = [o for o in objects if o is not obj and o["color"] == obj["color"]]
            if any(o["shape"] == obj["shape"] for o in same_colour):
                continue  # two objects the query cannot tell apart
            group = "shared colour" if same_colour else "unique"
            heat = image_map(model, x, tokenize(f"a {obj['color']} {obj['shape']}"), method)
            cell = min(width, height) / heat.values.shape[-1]
            score.trials[group] += 1
            score.hits[group] += is_hit(heat.peak_xy(width, height), obj, min(width, height), cell)
    return score
