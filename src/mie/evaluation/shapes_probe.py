"""Does an image-text model see shape, or only colour? Text queries against a labelled image split.

For data whose images list their objects' attributes (the embedded shapes dataset), three families of
text queries are ranked against every image and scored by precision@k, each with its chance level:

- colour-shape queries, one per ``(colour, shape)`` pair ("a red circle"): an image is relevant when
  one of its objects has both (63 queries for 9 colours x 7 shapes);
- shape-only queries ("a circle"): relevant when any object has that shape;
- colour-only queries ("a red shape"): relevant when any object has that colour.

A model that retrieves by colour alone scores well on colour-only queries and at chance on the other
two. ``chance`` is the expected precision of a random ranking (the fraction of relevant images, averaged
over queries); ``ideal`` the best reachable (a query with fewer than ``k`` relevant images cannot fill
its top ``k``). Queries with no relevant image in the split are left out (``num_queries`` counts the
others). ``example`` reports one query's hits in its top ``k`` ("a red circle": 6 of 8)::

    probe = shapes_probe(encode_text, image_embeds, objects, COLORS, SHAPES)
    probe["color_shape"]["precision"], probe["color_shape"]["chance"], probe["example"]["hits"]
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F

ObjectList = Sequence[dict[str, Any]]  # one image's objects: {"color": ..., "shape": ..., ...}


def _article(phrase: str) -> str:
    """``phrase`` with "a" or "an" in front (as the shapes captions write it)."""
    return ("an " if phrase[0] in "aeiou" else "a ") + phrase


def probe_queries(colors: Sequence[str], shapes: Sequence[str]) -> dict[str, list[tuple[str, set[tuple[str, str]]]]]:
    """Per family, ``(query text, the (colour, shape) pairs an image needs one of)``.

    Shape-only queries accept the shape in any colour, colour-only queries the colour on any shape.
    """
    return {
        "color_shape": [(_article(f"{c} {s}"), {(c, s)}) for c in colors for s in shapes],
        "shape": [(_article(s), {(c, s) for c in colors}) for s in shapes],
        "color": [(_article(f"{c} shape"), {(c, s) for s in shapes}) for c in colors],
    }


def relevance(objects: Sequence[ObjectList], wanted: Sequence[set[tuple[str, str]]]) -> torch.Tensor:
    """``[Q, N]`` bool: does image ``n`` hold an object whose ``(color, shape)`` is in ``wanted[q]``."""
    pairs = [{(o.get("color"), o.get("shape")) for o in image} for image in objects]
    return torch.tensor([[bool(want & have) for have in pairs] for want in wanted], dtype=torch.bool)


def precision_at_k(scores: torch.Tensor, relevant: torch.Tensor, k: int = 8) -> dict[str, Any]:
    """Mean precision@``k`` of ranking each row of ``scores [Q, N]`` (higher first) against ``relevant [Q, N]``.

    Rows with no relevant column are dropped. Returns ``precision``, ``chance`` (mean fraction relevant),
    ``ideal`` (mean of min(relevant, k) / k), ``num_queries`` and ``per_query`` (None for a dropped row).
    Ties go to the lower column index.
    """
    if scores.shape != relevant.shape:
        raise ValueError(f"scores {tuple(scores.shape)} and relevant {tuple(relevant.shape)} differ in shape")
    k = min(k, scores.shape[1])
    top = torch.sort(scores.float(), dim=1, descending=True, stable=True).indices[:, :k]
    hits = relevant.gather(1, top).float().sum(dim=1)  # [Q]
    counts = relevant.float().sum(dim=1)
    keep = counts > 0
    per_query = [float(h) / k if ok else None for h, ok in zip(hits.tolist(), keep.tolist())]
    if not keep.any():
        return {"precision": None, "chance": None, "ideal": None, "num_queries": 0, "k": k, "per_query": per_query}
    return {
        "precision": float(hits[keep].mean() / k),
        "chance": float((counts[keep] / scores.shape[1]).mean()),
        "ideal": float((counts[keep].clamp(max=k) / k).mean()),
        "num_queries": int(keep.sum()),
        "k": k,
        "per_query": per_query,
    }


def shapes_probe(encode_text: Callable[[list[str]], torch.Tensor], image_embeds: torch.Tensor,
                 objects: Sequence[ObjectList], colors: Sequence[str], shapes: Sequence[str], k: int = 8,
                 example: str = "a red circle") -> dict[str, Any]:
    """Precision@``k`` of colour-shape, shape-only and colour-only text queries over ``image_embeds [N, D]``.

    ``encode_text`` maps a list of strings to ``[B, D]`` embeddings; ``objects[n]`` lists image ``n``'s
    objects. ``example`` must be one of the colour-shape queries; its hits in the top ``k`` are reported.
    """
    if len(objects) != image_embeds.shape[0]:
        raise ValueError(f"{len(objects)} object lists for {image_embeds.shape[0]} images; they must match")
    images = F.normalize(image_embeds.float(), dim=-1)
    out: dict[str, Any] = {}
    for family, queries in probe_queries(colors, shapes).items():
        texts = [text for text, _ in queries]
        scores = F.normalize(encode_text(texts).float(), dim=-1) @ images.T
        result = precision_at_k(scores, relevance(objects, [want for _, want in queries]), k)
        result["queries"] = texts
        out[family] = result
        if example in texts:
            row = texts.index(example)
            out["example"] = {"query": example, "hits": round((result["per_query"][row] or 0.0) * result["k"]),
                              "k": result["k"]}
    return out


def format_probe_table(probes: dict[str, dict[str, Any]]) -> list[str]:
    """Markdown rows: per split, precision@k of each query family (%) with its chance level, and the example."""
    k = next(iter(probes.values()))["color_shape"]["k"] if probes else 8
    lines = [f"| split | colour-shape P@{k} | chance | shape-only P@{k} | chance | colour-only P@{k} | chance | example |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]

    def pct(value: float | None) -> str:
        return "-" if value is None else f"{100 * value:.1f}"

    for split, probe in probes.items():
        cells = [f"{pct(probe[f]['precision'])} | {pct(probe[f]['chance'])}" for f in ("color_shape", "shape", "color")]
        ex = probe.get("example")
        shown = f"\"{ex['query']}\": {ex['hits']} of {ex['k']}" if ex else "-"
        lines.append(f"| {split} | " + " | ".join(cells) + f" | {shown} |")
    return lines
