"""``mie explain RUN --embeddings``: a split's image and caption embeddings in 2-D (PCA, or t-SNE with
``--projection tsne``), coloured by a manifest attribute, or their image-caption similarity matrix
(``--similarity N``). Kept apart from :mod:`mie.cli.explain` so that each file stays short."""

from __future__ import annotations

import argparse
from typing import Any

from mie.errors import ConfigError


def embeddings_view(args: argparse.Namespace, run: Any) -> dict[str, Any]:
    """PCA or t-SNE scatter (or, with ``--similarity N``, the image-caption cosine matrix) of a split of the clip
    ``run`` (a :class:`mie.api.Run`): printed, drawn to ``--out`` and returned for ``--format json``."""
    from mie.recipes.clip.evaluate import embed_eval_set, load_eval_set

    name = args.split or (run.config.data.test_splits[0] if run.config.data.test_splits else "test")
    evalset = load_eval_set(run.config, name)
    image_embeds, text_embeds, owner = embed_eval_set(run.model, run.tokenizer, evalset, run.device)
    labels = [_attribute(attrs, args.color_by) for attrs in evalset.attributes]
    if all(label == "unknown" for label in labels):
        raise ConfigError(f"no image of split {name} has the attribute {args.color_by!r}", where="--color-by",
                          fix="name a manifest attribute: shape, color, size or background (shapes data)")
    count = len(labels)
    kinds = ["image"] * count + ["caption"] * len(owner)
    point_labels = labels + [labels[int(i)] for i in owner]
    matrix = None
    if args.similarity:
        from mie.explain import similarity_matrix

        n = min(args.similarity, count)
        first = [int((owner == i).nonzero()[0]) for i in range(n)]  # each image's first caption
        matrix = similarity_matrix(image_embeds[:n], text_embeds[first])
        texts, _ = evalset.flat_captions
        if args.out:
            from mie.explain.draw import save_matrix

            save_matrix(matrix, args.out, f"{name}: cosine similarity, first {n} images x their first captions",
                        [str(i) for i in evalset.image_ids[:n]], [texts[j][:40] for j in first], "caption", "image")
    if matrix is None:
        points, share, perplexity, how = _project(args, image_embeds, text_embeds)
        if args.out:
            from mie.explain.draw import save_scatter

            save_scatter(points, point_labels, args.out,
                         f"{name}: {how[0]} of image and caption embeddings by {args.color_by} ({how[1]})", kinds)
        if args.output_format == "text":
            print(f"{name}: {count} images and {len(owner)} captions, {how[0]} ({how[1]}); coloured by "
                  f"{args.color_by}: " + ", ".join(f"{v} {point_labels[:count].count(v)}" for v in sorted(set(labels)))
                  + (f" -> {args.out}" if args.out else ""))
    else:
        diagonal = float(matrix.diagonal().mean())
        if args.output_format == "text":
            print(f"similarity of the first {len(matrix)} images and their captions: mean matched {diagonal:+.3f}, "
                  f"mean unmatched {float((matrix.sum() - matrix.diagonal().sum()) / max(1, matrix.numel() - len(matrix))):+.3f}"
                  + (f" -> {args.out}" if args.out else ""))
        return {"run": args.run_dir, "split": name, "similarity": [[round(v, 5) for v in row] for row in matrix.tolist()],
                "image_ids": list(evalset.image_ids[:len(matrix)]), "out": args.out}
    return {"run": args.run_dir, "split": name, "color_by": args.color_by, "projection": args.projection,
            "explained_variance": share, "perplexity": perplexity,
            "points": [{"kind": k, "label": lab, "x": round(p[0], 5), "y": round(p[1], 5)}
                       for k, lab, p in zip(kinds, point_labels, points.tolist(), strict=True)], "out": args.out}


def _project(args: argparse.Namespace, image_embeds: Any, text_embeds: Any) -> tuple[Any, Any, Any, tuple[str, str]]:
    """The 2-D points of images then captions by ``--projection``, PCA's variance shares (else ``None``), the
    t-SNE perplexity (else ``None``) and the plot's name and detail."""
    import torch

    embeds = torch.cat([image_embeds, text_embeds])
    if args.projection == "pca":
        from mie.explain import pca_2d

        points, share = pca_2d(embeds)
        return points, share, None, ("PCA", f"axes {100 * share[0]:.1f}% and {100 * share[1]:.1f}% of variance")
    from mie.explain.tsne import tsne_2d

    # Unasked, the usual 30 shrinks to what a small split allows; an explicit value is checked as given.
    perplexity = args.perplexity if args.perplexity is not None else min(30.0, (len(embeds) - 1) / 3)
    try:
        points = tsne_2d(embeds, perplexity)
    except ValueError as exc:
        raise ConfigError(str(exc), where="--projection tsne",
                          fix="choose --perplexity in the range above" if "perplexity" in str(exc) else None) from None
    return points, None, perplexity, ("t-SNE", f"perplexity {perplexity:g}")


def _attribute(attributes: dict[str, Any] | None, key: str) -> str:
    """An image's value of ``key``: its own (``background``), or its objects' when they agree, else ``mixed``."""
    if not attributes:
        return "unknown"
    if key in attributes and not isinstance(attributes[key], (list, dict)):
        return str(attributes[key])
    values = {str(o[key]) for o in attributes.get("objects", []) if isinstance(o, dict) and key in o}
    return values.pop() if len(values) == 1 else "mixed" if values else "unknown"
