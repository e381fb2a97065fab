"""Image-text retrieval evaluation: embed a dataset, rank, and report Recall@K and median rank.

The evaluation set has ``N`` images and ``M`` captions; ``text_to_image[j]`` is the image that
caption ``j`` describes (COCO/Flickr style: several captions per image). Two directions:

* text -> image (``t2i``): each caption queries the ``N`` images; its rank is the position of its
  one image.
* image -> text (``i2t``): each image queries the ``M`` captions; it counts as correct at ``K`` if
  ANY of its captions is in its top ``K``, so its rank is the rank of its best-scored caption.

Ranks are 1-based. Similarity is the dot product (cosine once embeddings are L2-normalised).
Scores are computed ``chunk_size`` query rows at a time, so memory is ``chunk_size x max(N, M)``
and the full ``N x M`` matrix never exists (5k images x 25k captions would be 500 MB in float32).

Ties (``ties=``):

* ``"optimistic"`` (default): rank = 1 + number of gallery items scored strictly higher than the
  best correct item. A tie is resolved in favour of the correct item.
* ``"pessimistic"``: rank additionally counts every *incorrect* item with exactly the same score.
  Use it to avoid flattering a collapsed model whose embeddings are all identical (it would get
  R@1 = 1.0 under the optimistic rule).

Both rules are deterministic: they depend only on the scores, never on sort order.

Example::

    img = embed_images(model.encode_image, image_batches)
    txt = embed_texts(model.encode_text, token_batches)
    metrics = retrieval_metrics(img, txt, text_to_image)   # {"i2t_R@1": 0.41, ...}
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F

TIE_RULES = ("optimistic", "pessimistic")


# ---- embedding a dataset --------------------------------------------------------------------------


@contextlib.contextmanager
def _eval_mode(encode_fn: Callable[..., Any]) -> Iterator[None]:
    """Switch the module behind a bound method (``model.encode_image``) to eval mode, then restore it.

    Dropout left on during evaluation silently lowers every metric, so we do not rely on the caller.
    """
    module = getattr(encode_fn, "__self__", None)
    if not isinstance(module, torch.nn.Module):
        module = encode_fn if isinstance(encode_fn, torch.nn.Module) else None
    was_training = module.training if module is not None else False
    if module is not None:
        module.eval()
    try:
        yield
    finally:
        if module is not None:
            module.train(was_training)


def _to_device(value: Any, device: torch.device | None) -> Any:
    """Move a tensor to ``device``; other values (strings, ints) pass through."""
    if device is not None and isinstance(value, torch.Tensor):
        return value.to(device, non_blocking=True)
    return value


def _call_on_batch(encode_fn: Callable[..., Any], batch: Any, device: torch.device | None) -> Any:
    """Call ``encode_fn`` on one batch: a Mapping as keyword arguments, a tuple positionally, else as is."""
    if isinstance(batch, Mapping):
        return encode_fn(**{k: _to_device(v, device) for k, v in batch.items()})
    if isinstance(batch, tuple):
        return encode_fn(*(_to_device(v, device) for v in batch))
    return encode_fn(_to_device(batch, device))


def embed_batches(
    encode_fn: Callable[..., Any],
    batches: Iterable[Any],
    *,
    device: str | torch.device | None = None,
    autocast_dtype: torch.dtype | None = None,
    normalize: bool = False,
) -> torch.Tensor:
    """Run ``encode_fn`` over ``batches`` without gradients and stack the outputs as CPU float32 ``[N, D]``.

    Each batch is passed as ``encode_fn(**batch)`` when it is a Mapping (e.g. ``input_ids`` and
    ``attention_mask``), ``encode_fn(*batch)`` when it is a tuple, and ``encode_fn(batch)`` otherwise
    (a tensor, or a list of strings). Tensors are moved to ``device`` first. ``autocast_dtype``
    (e.g. ``torch.bfloat16``) enables mixed precision on ``device``'s type. If ``encode_fn`` is a
    bound method of an ``nn.Module``, the module is put in eval mode for the call and restored after.
    """
    dev = torch.device(device) if device is not None else None
    autocast = (
        torch.autocast(device_type=(dev or torch.device("cpu")).type, dtype=autocast_dtype)
        if autocast_dtype is not None
        else contextlib.nullcontext()
    )
    outputs: list[torch.Tensor] = []
    with _eval_mode(encode_fn), torch.no_grad(), autocast:
        for index, batch in enumerate(batches):
            out = _call_on_batch(encode_fn, batch, dev)
            if not isinstance(out, torch.Tensor) or out.dim() != 2:
                got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
                raise ValueError(f"encode_fn must return a [batch, dim] tensor; batch {index} gave {got}")
            outputs.append(out.detach().float().cpu())
    if not outputs:
        raise ValueError("no batches to embed: the loader is empty")
    embeds = torch.cat(outputs)
    return F.normalize(embeds, dim=-1) if normalize else embeds


def embed_images(encode_fn: Callable[..., Any], image_batches: Iterable[Any], **kwargs: Any) -> torch.Tensor:
    """Embed image batches (``[B, C, H, W]`` tensors) with ``encode_fn``; see :func:`embed_batches`."""
    return embed_batches(encode_fn, image_batches, **kwargs)


def embed_texts(encode_fn: Callable[..., Any], id_batches: Iterable[Any], **kwargs: Any) -> torch.Tensor:
    """Embed token-id batches (``[B, T]`` tensors or dicts with a mask) with ``encode_fn``; see :func:`embed_batches`."""
    return embed_batches(encode_fn, id_batches, **kwargs)


# ---- ranking --------------------------------------------------------------------------------------


def _check_inputs(
    image_embeds: torch.Tensor, text_embeds: torch.Tensor, text_to_image: torch.Tensor | Sequence[int]
) -> torch.Tensor:
    """Validate shapes and the caption -> image map; return the map as a CPU long tensor."""
    if image_embeds.dim() != 2 or text_embeds.dim() != 2:
        raise ValueError(
            f"embeddings must be 2-D [count, dim]; got images {tuple(image_embeds.shape)}, "
            f"texts {tuple(text_embeds.shape)}"
        )
    if image_embeds.shape[1] != text_embeds.shape[1]:
        raise ValueError(
            f"image and text embeddings differ in width: {image_embeds.shape[1]} vs {text_embeds.shape[1]}; "
            "project both into the same joint space"
        )
    n_img, n_txt = image_embeds.shape[0], text_embeds.shape[0]
    if n_img == 0 or n_txt == 0:
        raise ValueError(f"need at least one image and one caption; got {n_img} images, {n_txt} captions")
    t2i = torch.as_tensor(text_to_image).long().cpu().flatten()
    if t2i.numel() != n_txt:
        raise ValueError(f"text_to_image has {t2i.numel()} entries but there are {n_txt} captions")
    if t2i.min() < 0 or t2i.max() >= n_img:
        raise ValueError(
            f"text_to_image values must lie in [0, {n_img - 1}]; found {int(t2i.min())}..{int(t2i.max())}"
        )
    for name, emb in (("image", image_embeds), ("text", text_embeds)):
        if not torch.isfinite(emb).all():
            raise ValueError(f"{name} embeddings contain NaN or inf; check the model output (zero vectors?)")
    return t2i


def _prepare(emb: torch.Tensor, normalize: bool) -> torch.Tensor:
    """CPU float32 copy of ``emb``, L2-normalised when asked (the scores are then cosines)."""
    emb = emb.detach().float().cpu()
    return F.normalize(emb, dim=-1) if normalize else emb


def _chunks(total: int, chunk_size: int | None) -> Iterator[slice]:
    """Row slices of at most ``chunk_size`` (all rows at once when ``None``)."""
    if chunk_size is not None and chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive integer or None; got {chunk_size}")
    step = total if chunk_size is None else chunk_size
    for start in range(0, total, step):
        yield slice(start, min(start + step, total))


def _i2t_chunk_ranks(scores: torch.Tensor, text_to_image: torch.Tensor, first_image: int, ties: str) -> torch.Tensor:
    """Ranks of images ``first_image ..`` given their scores ``[chunk, M]`` against every caption.

    The best caption of each image is found by a scatter over that image's captions instead of a
    ``[chunk, M]`` mask, which keeps the per-chunk work to one comparison pass over ``scores``.
    """
    n_rows = scores.shape[0]
    mine = torch.nonzero((text_to_image >= first_image) & (text_to_image < first_image + n_rows)).flatten()
    rows = text_to_image[mine] - first_image
    own = scores[rows, mine]  # score of every caption of this chunk's images, against its own image
    best = torch.full((n_rows,), float("-inf"), dtype=scores.dtype).scatter_reduce(0, rows, own, "amax")
    rank = 1 + (scores > best.unsqueeze(1)).sum(dim=1)
    if ties == "pessimistic":
        # Tied captions count against the image unless they are its own (any own caption is correct).
        own_ties = torch.zeros(n_rows, dtype=torch.long).index_add_(0, rows, (own == best[rows]).long())
        rank += (scores == best.unsqueeze(1)).sum(dim=1) - own_ties
    return rank


def _t2i_chunk_ranks(scores: torch.Tensor, targets: torch.Tensor, ties: str) -> torch.Tensor:
    """Ranks of captions given their scores ``[chunk, N]`` against every image and their images ``[chunk]``."""
    own = scores.gather(1, targets.unsqueeze(1))
    rank = 1 + (scores > own).sum(dim=1)
    if ties == "pessimistic":
        rank += (scores == own).sum(dim=1) - 1  # every tie but the caption's own image
    return rank


def retrieval_ranks(
    image_embeds: torch.Tensor,
    text_embeds: torch.Tensor,
    text_to_image: torch.Tensor | Sequence[int],
    *,
    chunk_size: int | None = 1024,
    normalize: bool = True,
    ties: str = "optimistic",
) -> dict[str, torch.Tensor]:
    """Per-query 1-based ranks: ``{"i2t": [N] long, "t2i": [M] long}`` (see the module docstring for ties).

    Every image must have at least one caption, otherwise its image->text rank is undefined.
    """
    if ties not in TIE_RULES:
        raise ValueError(f"ties must be one of {TIE_RULES}; got {ties!r}")
    t2i = _check_inputs(image_embeds, text_embeds, text_to_image)
    images, texts = _prepare(image_embeds, normalize), _prepare(text_embeds, normalize)
    n_img, n_txt = images.shape[0], texts.shape[0]
    captions_per_image = torch.bincount(t2i, minlength=n_img)
    if (captions_per_image == 0).any():
        missing = torch.nonzero(captions_per_image == 0).flatten()[:10].tolist()
        raise ValueError(
            f"{int((captions_per_image == 0).sum())} image(s) have no caption (first: {missing}); "
            "drop them before evaluating or add their captions"
        )

    i2t = torch.empty(n_img, dtype=torch.long)
    for rows in _chunks(n_img, chunk_size):
        i2t[rows] = _i2t_chunk_ranks(images[rows] @ texts.T, t2i, rows.start, ties)  # scores [chunk, M]

    t2i_ranks = torch.empty(n_txt, dtype=torch.long)
    for rows in _chunks(n_txt, chunk_size):
        t2i_ranks[rows] = _t2i_chunk_ranks(texts[rows] @ images.T, t2i[rows], ties)  # scores [chunk, N]
    return {"i2t": i2t, "t2i": t2i_ranks}


def median_rank(ranks: torch.Tensor) -> float:
    """Median of 1-based ranks; for an even count, the mean of the two middle values (as NumPy does)."""
    ordered = ranks.double().sort().values
    mid = ordered.numel() // 2
    if ordered.numel() % 2:
        return float(ordered[mid])
    return float((ordered[mid - 1] + ordered[mid]) / 2)


def metrics_from_ranks(ranks: Mapping[str, torch.Tensor], ks: Sequence[int] = (1, 5, 10)) -> dict[str, float]:
    """Recall@K (fraction in [0, 1]), median and mean rank per direction, and their i2t/t2i means."""
    if not ks or any(int(k) < 1 for k in ks):
        raise ValueError(f"ks must be positive integers; got {list(ks)}")
    out: dict[str, float] = {}
    for direction in ("i2t", "t2i"):
        r = ranks[direction]
        for k in ks:
            out[f"{direction}_R@{k}"] = float((r <= k).double().mean())
        out[f"{direction}_median_rank"] = median_rank(r)
        out[f"{direction}_mean_rank"] = float(r.double().mean())
    for k in ks:
        out[f"mean_R@{k}"] = (out[f"i2t_R@{k}"] + out[f"t2i_R@{k}"]) / 2
    out["num_images"] = float(ranks["i2t"].numel())
    out["num_texts"] = float(ranks["t2i"].numel())
    return out


def retrieval_metrics(
    image_embeds: torch.Tensor,
    text_embeds: torch.Tensor,
    text_to_image: torch.Tensor | Sequence[int],
    ks: Sequence[int] = (1, 5, 10),
    chunk_size: int | None = 1024,
    *,
    normalize: bool = True,
    ties: str = "optimistic",
) -> dict[str, float]:
    """Recall@K both ways, median/mean ranks and ``mean_R@K`` for an image-text evaluation set.

    Keys: ``i2t_R@K``, ``t2i_R@K``, ``mean_R@K`` for each K, ``i2t_median_rank``, ``t2i_median_rank``,
    ``i2t_mean_rank``, ``t2i_mean_rank``, ``num_images``, ``num_texts``. Values are plain floats.
    """
    ranks = retrieval_ranks(
        image_embeds, text_embeds, text_to_image, chunk_size=chunk_size, normalize=normalize, ties=ties
    )
    return metrics_from_ranks(ranks, ks)


def retrieval_topk(
    query_embeds: torch.Tensor,
    gallery_embeds: torch.Tensor,
    k: int = 5,
    *,
    chunk_size: int | None = 1024,
    normalize: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-``k`` gallery indices and scores per query, ``([Q, k] long, [Q, k] float)``, best first.

    Used to show what a model retrieves (e.g. captions -> top-5 images in the report grid). Equal
    scores are ordered by gallery index, so the result is deterministic.
    """
    if query_embeds.dim() != 2 or gallery_embeds.dim() != 2 or query_embeds.shape[1] != gallery_embeds.shape[1]:
        raise ValueError(
            f"need [Q, D] queries and [G, D] gallery of the same D; got {tuple(query_embeds.shape)} "
            f"and {tuple(gallery_embeds.shape)}"
        )
    k = min(k, gallery_embeds.shape[0])
    if k < 1:
        raise ValueError(f"k must be >= 1 and the gallery non-empty; got k={k}")
    queries, gallery = _prepare(query_embeds, normalize), _prepare(gallery_embeds, normalize)
    indices, values = [], []
    for rows in _chunks(queries.shape[0], chunk_size):
        scores = queries[rows] @ gallery.T
        # A stable descending sort puts equal scores in index order; topk does not promise that.
        order = torch.sort(scores, dim=1, descending=True, stable=True).indices[:, :k]
        indices.append(order)
        values.append(scores.gather(1, order))
    return torch.cat(indices), torch.cat(values)


def evaluate_retrieval(
    encode_image: Callable[..., Any],
    encode_text: Callable[..., Any],
    image_batches: Iterable[Any],
    text_batches: Iterable[Any],
    text_to_image: torch.Tensor | Sequence[int],
    *,
    ks: Sequence[int] = (1, 5, 10),
    chunk_size: int | None = 1024,
    device: str | torch.device | None = None,
    autocast_dtype: torch.dtype | None = None,
    ties: str = "optimistic",
) -> dict[str, float]:
    """Embed every image and caption of an evaluation set, then return :func:`retrieval_metrics`."""
    images = embed_images(encode_image, image_batches, device=device, autocast_dtype=autocast_dtype)
    texts = embed_texts(encode_text, text_batches, device=device, autocast_dtype=autocast_dtype)
    return retrieval_metrics(images, texts, text_to_image, ks, chunk_size, ties=ties)
