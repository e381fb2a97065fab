"""``ITMTask``: an image–text matching head trained on hard negatives mined by a frozen dual encoder.

As in ALBEF (Li et al., 2021): for each image of a batch one non-matching caption, and for each caption
one non-matching image, is drawn from the dual encoder's similarity scores, either the hardest one
(``negatives="hardest"``) or sampled with probability ``softmax(sim / temperature)`` over the
non-matching ones (``"softmax"``). The matcher scores the ``B`` positives and ``2B`` negatives and
learns with binary cross-entropy. Only the matcher trains; the dual encoder supplies token features.
:class:`NegativeCurriculum` anneals the temperature from near-uniform negatives to hard ones over the
run, so the head first learns to match at all, then the fine details: on the shapes demo, hard negatives
from the first step left a head near the 1:2 prior in three runs of four; all six annealed ones learnt::

    task = ITMTask(ImageTextMatcher(FusionConfig(), 128, 128), dual_encoder, negatives="softmax")
    task.training_forward({"images": x, "input_ids": ids, "match_ids": m})  # {"loss", "accuracy"}
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from mie.training.callbacks import Callback
from mie.training.task import Task
from mie.training.tasks.reference import frozen

NEGATIVES = ("hardest", "softmax")


def pick_negatives(sim: torch.Tensor, positive: torch.Tensor, mode: str = "softmax", temperature: float = 0.05,
                   generator: torch.Generator | None = None) -> torch.Tensor:
    """For each row of ``sim [Q, C]`` one column where ``positive`` is False: the highest-scoring
    (``hardest``) or one sampled from the softmax of the scores over those columns. Returns ``[Q]``."""
    if mode not in NEGATIVES:
        raise ValueError(f"unknown negative mining {mode!r}; choose one of {', '.join(NEGATIVES)}")
    # Checked on the CPU only: on an accelerator reading the answer back is a host sync every step.
    if sim.device.type == "cpu" and bool((positive.all(dim=1)).any()):
        raise ValueError("a row has no negative column: every candidate matches it (use a larger batch)")
    masked = sim.float().masked_fill(positive, float("-inf"))
    if mode == "hardest":
        return masked.argmax(dim=1)
    return torch.multinomial((masked / temperature).softmax(dim=1), 1, generator=generator).squeeze(1)


@torch.no_grad()
def image_features(encoder: nn.Module, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A ``DualEncoder``'s image tokens ``[B, N, width]`` and unit image embeddings ``[B, embed_dim]``."""
    tokens = encoder.visual.forward_tokens(images)
    return tokens, F.normalize(encoder.image_projection(encoder.visual.pool_tokens(tokens)), dim=-1)


@torch.no_grad()
def text_features(encoder: nn.Module, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Text tokens ``[B, L', width]``, their padding mask (True = after end-of-text) and unit text
    embeddings; columns after the batch's last end-of-text are dropped on the CPU (``L' <= L``)."""
    text = encoder.text
    if ids.device.type == "cpu":  # the cut reads a value back: a host sync per step on an accelerator
        ids = ids[:, :int(text.padding_mask(ids).logical_not().sum(dim=1).max())]
    tokens, mask = text.forward_tokens(ids), text.padding_mask(ids)
    eot = mask.logical_not().sum(dim=1) - 1
    embeds = F.normalize(encoder.text_projection(tokens[torch.arange(ids.shape[0], device=ids.device), eot]), dim=-1)
    return tokens, mask, embeds


class ITMTask(Task):
    """Trains ``matcher`` (an ``ImageTextMatcher``) on positives and mined negatives; ``encoder`` stays frozen."""

    def __init__(self, matcher: nn.Module, encoder: nn.Module, negatives: str = "softmax",
                 temperature: float = 0.05) -> None:
        super().__init__(matcher)
        if negatives not in NEGATIVES:
            raise ValueError(f"unknown negative mining {negatives!r}; choose one of {', '.join(NEGATIVES)}")
        self.negatives, self.temperature = negatives, temperature
        self.encoder = frozen(encoder)

    def train(self, mode: bool = True) -> ITMTask:
        """Train/eval mode for the matcher; the frozen encoder always stays in eval mode."""
        super().train(mode)
        self.encoder.eval()
        return self

    def training_forward(self, batch: dict[str, torch.Tensor]) -> dict[str, Any]:
        """BCE over ``B`` positive and ``2B`` hard-negative pairs; accuracy at logit 0 and the sampling
        temperature (detached)."""
        images, ids = batch["images"], batch["input_ids"]
        size = images.shape[0]
        match = batch.get("match_ids", torch.arange(size, device=images.device))
        image_tokens, image_embeds = image_features(self.encoder, images)
        text_tokens, text_mask, text_embeds = text_features(self.encoder, ids)
        sim = image_embeds @ text_embeds.T  # (B images, B texts)
        positive = match[:, None] == match[None, :]
        with torch.no_grad():
            neg_text = pick_negatives(sim, positive, self.negatives, self.temperature)  # a text per image
            neg_image = pick_negatives(sim.T, positive.T, self.negatives, self.temperature)  # an image per text
        rows = torch.arange(size, device=images.device)
        image_index = torch.cat([rows, rows, neg_image])
        text_index = torch.cat([rows, neg_text, rows])
        logits = self.model(text_tokens[text_index], image_tokens[image_index], text_mask[text_index])
        labels = torch.cat([torch.ones(size, device=logits.device), torch.zeros(2 * size, device=logits.device)])
        loss = F.binary_cross_entropy_with_logits(logits.float(), labels)
        accuracy = ((logits.detach() > 0).float() == labels).float().mean()
        return {"loss": loss, "accuracy": accuracy, "temperature": self.temperature}


class NegativeCurriculum(Callback):
    """Anneals an ``ITMTask``'s sampling temperature geometrically from ``start`` (near-uniform negatives)
    to ``end`` (hard ones) over the stage's steps (``trainer.total_steps``, which a time budget shrinks)."""

    def __init__(self, task: ITMTask, start: float, end: float) -> None:
        if start <= 0 or end <= 0:
            raise ValueError(f"temperatures must be > 0; got start {start}, end {end}")
        self.task, self.start, self.end = task, start, end
        task.temperature = start

    def temperature(self, fraction: float) -> float:
        """The temperature at ``fraction`` (0..1) of the run: ``start * (end / start) ** fraction``."""
        return self.start * (self.end / self.start) ** min(max(fraction, 0.0), 1.0)

    def on_step_end(self, trainer: Any, step: int, metrics: dict[str, float]) -> None:
        """Set the temperature of the next step from the share of the stage done."""
        self.task.temperature = self.temperature(trainer.stage_step / max(1, trainer.total_steps))
