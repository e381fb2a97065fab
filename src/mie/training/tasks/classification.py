"""``ClassificationTask``: image classification with label smoothing, mixup and cutmix on soft targets.

A batch is ``{"images": [B, C, H, W], "labels": [B]}`` (``mie.data.classification.collate_classification``).
Targets are one-hot rows smoothed by ``eps`` (Szegedy et al., 2016): ``(1 - eps) * onehot + eps / C``.
A batch is then, with probability ``mix_prob``, mixed with a shuffled copy of itself by mixup
(Zhang et al., 2018: ``lam * x + (1 - lam) * x[perm]``) or cutmix (Yun et al., 2019: a box of
``x[perm]`` pasted into ``x``, ``lam`` = the share of pixels kept), one of the two picked per batch
when both are on (``switch_prob``, as timm does). The targets mix with the same ``lam``, and the loss
is the soft-target cross-entropy ``mean_i sum_c -t_ic log softmax(z_i)_c``::

    task = ClassificationTask(model, num_classes=10, label_smoothing=0.1, mixup_alpha=0.8, cutmix_alpha=1.0)
    task.training_forward({"images": x, "labels": y})  # {"loss": ..., "accuracy": ...}

Validation reports the plain cross-entropy and top-1 / top-5 accuracy.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from mie.training.task import Task


def smooth_targets(labels: torch.Tensor, num_classes: int, epsilon: float = 0.0) -> torch.Tensor:
    """Soft targets ``[B, C]``: ``(1 - epsilon) * onehot(labels) + epsilon / C`` (rows sum to 1)."""
    # scatter, not F.one_hot: one_hot reads the labels' min and max back to check them (off CUDA), a read
    # the host-sync tests count; scatter checks its indices without one
    labels = labels.long()[:, None]
    onehot = torch.zeros(labels.shape[0], num_classes, device=labels.device).scatter_(1, labels, 1.0)
    return onehot * (1.0 - epsilon) + epsilon / num_classes if epsilon else onehot


def soft_target_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """``mean_i sum_c -targets_ic * log_softmax(logits_i)_c``; equals ``F.cross_entropy`` for one-hot targets."""
    return -(targets * logits.float().log_softmax(dim=-1)).sum(dim=-1).mean()


def mixup(images: torch.Tensor, targets: torch.Tensor, lam: float,
          perm: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(lam * x + (1 - lam) * x[perm], lam * t + (1 - lam) * t[perm])``."""
    return images * lam + images[perm] * (1.0 - lam), targets * lam + targets[perm] * (1.0 - lam)


def cutmix_box(height: int, width: int, lam: float, generator: torch.Generator | None = None
               ) -> tuple[int, int, int, int]:
    """A box ``(top, bottom, left, right)`` of about ``(1 - lam)`` of the image, centred at random, clipped."""
    ratio = math.sqrt(1.0 - lam)
    cut_h, cut_w = int(height * ratio), int(width * ratio)
    cy = int(torch.randint(height, (), generator=generator))
    cx = int(torch.randint(width, (), generator=generator))
    top, bottom = max(cy - cut_h // 2, 0), min(cy + cut_h // 2, height)
    left, right = max(cx - cut_w // 2, 0), min(cx + cut_w // 2, width)
    return top, bottom, left, right


def cutmix(images: torch.Tensor, targets: torch.Tensor, box: tuple[int, int, int, int],
           perm: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Paste ``box`` of ``images[perm]`` into ``images``; targets mix by the share of pixels kept.

    Returns ``(images, targets, lam)`` with ``lam = 1 - box area / image area`` (the box was clipped).
    """
    top, bottom, left, right = box
    mixed = images.clone()
    mixed[:, :, top:bottom, left:right] = images[perm][:, :, top:bottom, left:right]
    lam = 1.0 - (bottom - top) * (right - left) / (images.shape[-2] * images.shape[-1])
    return mixed, targets * lam + targets[perm] * (1.0 - lam), lam


def topk_correct(logits: torch.Tensor, labels: torch.Tensor, ks: Sequence[int] = (1, 5)) -> dict[int, torch.Tensor]:
    """For each ``k``: a bool ``[B]`` telling whether the label is among the ``k`` highest logits.

    ``k`` above the number of classes counts every row correct. Ties go to the lower class index.
    """
    top = torch.sort(logits, dim=-1, descending=True, stable=True).indices[:, : max(ks)]
    hits = top == labels[:, None]
    return {k: hits[:, :k].any(dim=-1) for k in ks}


class ClassificationTask(Task):
    """A classifier ``images -> logits`` trained on smoothed, optionally mixed soft targets."""

    def __init__(self, model: nn.Module, num_classes: int, label_smoothing: float = 0.0, mixup_alpha: float = 0.0,
                 cutmix_alpha: float = 0.0, mix_prob: float = 1.0, switch_prob: float = 0.5) -> None:
        super().__init__(model)
        for name, value in (("label_smoothing", label_smoothing), ("mix_prob", mix_prob), ("switch_prob", switch_prob)):
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must lie in [0, 1], got {value}")
        if mixup_alpha < 0 or cutmix_alpha < 0:
            raise ValueError(f"mixup_alpha and cutmix_alpha must be >= 0 (0 = off), got {mixup_alpha}, {cutmix_alpha}")
        self.num_classes = num_classes
        self.label_smoothing = label_smoothing
        self.mixup_alpha, self.cutmix_alpha = mixup_alpha, cutmix_alpha
        self.mix_prob, self.switch_prob = mix_prob, switch_prob

    def mix(self, images: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mixup or cutmix the batch (or neither), drawing from torch's global RNG (seeded by the trainer)."""
        if not (self.mixup_alpha or self.cutmix_alpha) or float(torch.rand(())) >= self.mix_prob:
            return images, targets
        use_cutmix = self.cutmix_alpha > 0 and (self.mixup_alpha == 0 or float(torch.rand(())) < self.switch_prob)
        alpha = self.cutmix_alpha if use_cutmix else self.mixup_alpha
        lam = float(torch.distributions.Beta(alpha, alpha).sample())
        perm = torch.randperm(images.shape[0], device=images.device)  # drawn there: no blocking copy
        if use_cutmix:
            images, targets, _ = cutmix(images, targets, cutmix_box(images.shape[-2], images.shape[-1], lam), perm)
            return images, targets
        return mixup(images, targets, lam, perm)

    def training_forward(self, batch: dict[str, torch.Tensor]) -> dict[str, Any]:
        """Soft-target loss of the (mixed) batch and, detached, the accuracy against its dominant target."""
        targets = smooth_targets(batch["labels"], self.num_classes, self.label_smoothing)
        images, targets = self.mix(batch["images"], targets)
        logits = self.model(images)
        loss = soft_target_cross_entropy(logits, targets)
        accuracy = (logits.detach().argmax(-1) == targets.argmax(-1)).float().mean()
        return {"loss": loss, "accuracy": accuracy}

    @torch.no_grad()
    def validation_forward(self, batch: dict[str, torch.Tensor]) -> dict[str, Any]:
        """Plain cross-entropy and top-1 / top-5 accuracy of one batch (the trainer averages over the set)."""
        logits, labels = self.model(batch["images"]).float(), batch["labels"]
        hits = topk_correct(logits, labels, (1, 5))
        return {"loss": F.cross_entropy(logits, labels), "top1": hits[1].float().mean(),
                "top5": hits[5].float().mean()}
