"""Zero-shot classification with a joint image-text model (the CLIP recipe).

Each class name is written into several prompt templates ("a {} on a background"), the prompts
are embedded by the text tower, each prompt embedding is L2-normalised, the prompts of a class
are averaged, and the mean is renormalised: one class embedding per class. An image is assigned
the class whose embedding has the highest cosine similarity. No training on the labels is needed.

Example::

    classes = build_class_embeddings(lambda texts: model.encode_text(tok(texts)), names, templates)
    result = zero_shot_classify(image_embeds, classes, labels)   # {"accuracy": 0.73, ...}
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F

from mie.evaluation.classification import classification_metrics
from mie.evaluation.retrieval import embed_batches

DEFAULT_TEMPLATES = ("a {}", "a picture of a {}", "a {} on a background")


def average_prompt_embeddings(class_embeds: torch.Tensor) -> torch.Tensor:
    """Turn ``[C, T, D]`` per-template embeddings into ``[C, D]``: normalise, mean over T, renormalise."""
    if class_embeds.dim() != 3:
        raise ValueError(f"expected [classes, templates, dim]; got {tuple(class_embeds.shape)}")
    return F.normalize(F.normalize(class_embeds.float(), dim=-1).mean(dim=1), dim=-1)


def build_class_embeddings(
    encode_text_fn: Callable[[list[str]], torch.Tensor],
    classnames: Sequence[str],
    templates: Sequence[str] = DEFAULT_TEMPLATES,
    *,
    batch_size: int = 256,
    average: bool = True,
    device: str | torch.device | None = None,
) -> torch.Tensor:
    """Embed every (class, template) prompt with ``encode_text_fn`` (list of strings -> ``[B, D]``).

    Returns ``[C, D]`` averaged, unit-norm class embeddings, or ``[C, T, D]`` normalised per-prompt
    embeddings when ``average=False``. Each template must contain ``{}`` where the class name goes.
    """
    if not classnames:
        raise ValueError("classnames is empty: pass at least one class name")
    if not templates:
        raise ValueError("templates is empty: pass at least one template such as 'a {}'")
    bad = [t for t in templates if "{}" not in t]
    if bad:
        raise ValueError(f"template(s) {bad} lack the '{{}}' placeholder for the class name, e.g. 'a photo of a {{}}'")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1; got {batch_size}")
    # replace() rather than format(): a template or class name with other braces stays literal.
    prompts = [t.replace("{}", name) for name in classnames for t in templates]
    batches = [prompts[i : i + batch_size] for i in range(0, len(prompts), batch_size)]
    embeds = embed_batches(encode_text_fn, batches, device=device, normalize=True)
    per_prompt = embeds.view(len(classnames), len(templates), -1)
    return average_prompt_embeddings(per_prompt) if average else per_prompt


def zero_shot_classify(
    image_embeds: torch.Tensor,
    class_text_embeds: torch.Tensor,
    labels: torch.Tensor | Sequence[int],
    *,
    ks: Sequence[int] = (1, 5),
    normalize: bool = True,
    classnames: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Classify ``[N, D]`` images against ``[C, D]`` (or ``[C, T, D]``) class embeddings and score them.

    Returns ``accuracy`` (top-1), ``top{k}_accuracy`` for each ``k`` in ``ks`` with ``1 < k <= C``,
    ``balanced_accuracy`` (mean over classes that occur), ``per_class_accuracy`` (list of C floats,
    ``None`` for a class with no images), ``confusion_matrix`` (C x C nested lists, rows = true
    class, columns = predicted), ``num_samples``, ``num_classes`` and ``classnames`` when given.
    Ties between classes go to the lower class index (``argmax`` order).
    """
    classes = average_prompt_embeddings(class_text_embeds) if class_text_embeds.dim() == 3 else class_text_embeds
    if image_embeds.dim() != 2 or classes.dim() != 2 or image_embeds.shape[1] != classes.shape[1]:
        raise ValueError(
            f"need [N, D] image and [C, D] or [C, T, D] class embeddings of the same D; got "
            f"{tuple(image_embeds.shape)} and {tuple(class_text_embeds.shape)}"
        )
    num_classes = classes.shape[0]
    y = torch.as_tensor(labels).long().cpu().flatten()
    if y.numel() != image_embeds.shape[0]:
        raise ValueError(f"{y.numel()} labels for {image_embeds.shape[0]} images; they must match one to one")
    if y.numel() == 0:
        raise ValueError("no images to classify")
    if y.min() < 0 or y.max() >= num_classes:
        raise ValueError(f"labels must lie in [0, {num_classes - 1}]; found {int(y.min())}..{int(y.max())}")
    if classnames is not None and len(classnames) != num_classes:
        raise ValueError(f"{len(classnames)} classnames for {num_classes} class embeddings")

    images, classes = image_embeds.detach().float().cpu(), classes.detach().float().cpu()
    if normalize:
        images, classes = F.normalize(images, dim=-1), F.normalize(classes, dim=-1)
    scores = images @ classes.T  # [N, C]
    return classification_metrics(scores, y, ks=ks, classnames=classnames)
