"""Contrastive image–text training (CLIP and every image–text loss in ``mie.losses``).

A batch is ``{"images": [B, 3, H, W], "input_ids": [B, L], "match_ids": [B]}`` (``match_ids`` marks
captions of one image). The task runs the dual encoder and offers the loss these named inputs
(``mie.losses.base.INPUT_KINDS``); each loss takes the ones it ``consumes``:

* ``image_embeds``, ``text_embeds``, ``logit_scale``, ``match_ids`` from the batch and the model;
* ``features`` / ``reference_features``: both towers' embeddings, from the model and from a frozen
  copy of it taken when the stage starts (feature consistency keeps a stage near where it began);
* ``key_inputs``: the token ids, which a momentum loss (``ema_moco``) encodes with its EMA copy of
  the text tower, attached when the stage starts;
* ``negative_text_embeds``: hard negative captions (``negative_input_ids``, made by
  ``data.caption_swaps``) encoded by the text tower in the same forward as the batch's captions;
* ``tag_targets``: which of ``data.caption_tags`` each image's captions hold (the ``caption_tags`` loss).

A loss that needs anything else (``cross_entropy``'s logits and targets) is refused by
:func:`check_task_loss`, which the recipe calls when the config is loaded.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from mie.losses import LOSSES, build_loss
from mie.losses.config import LossConfig
from mie.training.config import StageConfig
from mie.training.distributed import get_rank, get_world_size, is_distributed
from mie.training.task import Task
from mie.training.tasks.reference import frozen

IMAGE_TEXT_INPUTS = frozenset({"image_embeds", "text_embeds", "logit_scale", "match_ids", "features",
                               "reference_features", "key_inputs", "negative_text_embeds", "tag_targets",
                               "tag_text_embeds", "image_token_embeds"})
_COMPOSITES = {"combined": "losses", "multitask": "tasks"}


class TextTower(nn.Module):
    """The text half of a dual encoder as one module, ``ids -> unit text embeddings``: what a
    momentum loss copies as its key encoder (a copy of the text tower only, not the whole model)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.text, self.text_projection = model.text, model.text_projection

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """Normalised text embeddings ``[B, embed_dim]``."""
        return F.normalize(self.text_projection(self.text(ids)), dim=-1)


def _complete(name: str, kwargs: Mapping[str, Any], defaults: Mapping[str, Any]) -> dict[str, Any]:
    """``kwargs`` plus each default the loss accepts and the config left out (inside composites too)."""
    out = dict(kwargs)
    if name in _COMPOSITES:
        key = _COMPOSITES[name]
        terms = out.get(key)
        if isinstance(terms, list):
            out[key] = [_complete_term(t, defaults) for t in terms]
        elif isinstance(terms, Mapping):
            out[key] = {k: _complete_term(t, defaults) for k, t in terms.items()}
        return out
    cls = LOSSES.get(name)
    if cls is not None:
        accepted = inspect.signature(cls.__init__).parameters
        out.update({k: v for k, v in defaults.items() if k in accepted and k not in out})
    return out


def _complete_term(term: Any, defaults: Mapping[str, Any]) -> Any:
    if not isinstance(term, Mapping) or "name" not in term:
        return term  # the composite's own check reports the malformed entry
    return {**_complete(term["name"], {k: v for k, v in term.items() if k not in ("name", "weight")}, defaults),
            "name": term["name"], **({"weight": term["weight"]} if "weight" in term else {})}


def build_task_loss(config: LossConfig, embed_dim: int, tag_names: Sequence[str] = ()) -> nn.Module:
    """The loss ``config`` names, with ``embed_dim`` (queues, tag heads), ``num_tags`` and ``tag_names``
    (``data.caption_tags``)
    and, under DDP, ``gather_distributed`` filled in where the loss takes them and the config left them
    out (as OpenCLIP gathers)."""
    defaults: dict[str, Any] = {"embed_dim": embed_dim}
    if tag_names:
        defaults.update(num_tags=len(tag_names), tag_names=list(tag_names))
    if is_distributed():
        defaults["gather_distributed"] = True
    return build_loss(config.name, **_complete(config.name, config.kwargs, defaults))


def check_task_loss(config: LossConfig, embed_dim: int, where: str = "loss", tag_names: Sequence[str] = ()) -> nn.Module:
    """Raise ``ValueError`` (one line naming ``where``, the loss and what it needs) unless the loss
    can be built and trained from what an image–text batch supplies."""
    key = _COMPOSITES.get(config.name)
    if key is not None and key not in config.kwargs:
        example = ("[{name: clip}, {name: vicreg, weight: 0.1}]" if key == "losses"
                   else "{retrieval: {name: clip}, redundancy: {name: barlow_twins, weight: 0.01}}")
        raise ValueError(f"{where}.kwargs.{key}: loss {config.name!r} combines registered losses; name them, "
                         f"e.g. --set '{where}.kwargs.{key}={example}'")
    try:
        loss = build_task_loss(config, embed_dim, tag_names)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{where}: {exc}") from None
    missing = sorted(set(loss.required_inputs()) - IMAGE_TEXT_INPUTS)
    if missing:
        raise ValueError(
            f"{where}.name: loss {config.name!r} does not fit image–text training: it needs "
            f"{', '.join(missing)}, and an image–text batch supplies {', '.join(sorted(IMAGE_TEXT_INPUTS))}; "
            "choose an image–text loss (e.g. clip, siglip, vicreg)")
    return loss


class ContrastiveTask(Task):
    """A dual encoder trained with any image–text loss; validation adds an optional ``evaluator``.

    ``evaluator(model) -> {"mean_R@1": ..., ...}`` runs once per validation on the bare model (e.g.
    retrieval recall@K over the whole validation set). A loss with parameters (SigLIP's bias) is a
    submodule of the task, so the trainer optimises and checkpoints it.
    """

    def __init__(self, model: nn.Module, loss: LossConfig,
                 evaluator: Callable[[nn.Module], Mapping[str, float]] | None = None,
                 tag_names: Sequence[str] = ()) -> None:
        super().__init__(model)
        self.default_loss = loss
        self.evaluator = evaluator
        self.embed_dim = int(model.config.embed_dim)
        self.tag_names = list(tag_names)
        self._use_loss(loss)
        self.reference: nn.Module | None = None

    def on_stage_start(self, index: int, stage: StageConfig) -> None:
        """Build the stage's loss; copy the model as the frozen reference and attach momentum
        encoders when the loss takes them."""
        device = next(self.model.parameters()).device
        self._use_loss(stage.loss or self.default_loss)
        self.loss.to(device)
        for module in self.loss.modules():
            if callable(getattr(module, "attach", None)):
                module.attach(TextTower(self.model))
        self.reference = None
        if "reference_features" in self.loss.accepted_inputs():
            self.reference = frozen(self.model, copy=True)  # a submodule: saved with the task's state
        self.loss.train(self.training)

    def _use_loss(self, config: LossConfig) -> None:
        """Build ``config``'s loss and decide, once per stage, what each batch must be encoded for it: the
        token-id batches (captions, negative captions, the tags as texts) and whether the patch tokens. A
        stage whose loss reads no caption embedding (the demo's tag stage) skips the captions' forward."""
        self.loss = build_task_loss(config, self.embed_dim, self.tag_names)
        takes = self.loss.accepted_inputs()
        wanted = {"input_ids": bool(takes & {"text_embeds", "features", "reference_features", "key_inputs"}),
                  "negative_input_ids": "negative_text_embeds" in takes,
                  "tag_input_ids": "tag_text_embeds" in takes}
        self._texts = tuple(key for key, needed in wanted.items() if needed)
        self._image_tokens = "image_token_embeds" in takes

    def train(self, mode: bool = True) -> ContrastiveTask:
        """Train/eval mode for the model and loss; the reference copy always stays in eval mode."""
        super().train(mode)
        if self.reference is not None:
            self.reference.eval()
        return self

    def _context(self, batch: Mapping[str, torch.Tensor]) -> dict[str, Any]:
        for key in ("images", "input_ids"):
            if key not in batch:
                raise ValueError(f"an image–text batch needs {key!r}; got keys {sorted(batch)}")
        images, ids = batch["images"], batch["input_ids"]
        # One forward for every text the loss needs (the towers run separately, so the counts may differ):
        # a DDP-wrapped model is only ever called through forward. A loss that reads no text still gets
        # one caption through the text tower, so the forward keeps its shape.
        parts = {key: batch[key].to(ids.device) for key in self._texts if batch.get(key) is not None}
        if "tag_input_ids" in self._texts and "tag_input_ids" not in parts:
            raise ValueError("the loss scores images against data.caption_tags as texts, but the batch has no "
                             "tag_input_ids; list the tags in data.caption_tags")
        texts = list(parts.values()) or [ids[:1]]
        width = max(t.shape[1] for t in texts)
        texts = torch.cat([F.pad(t, (0, width - t.shape[1])) for t in texts])
        out = self.model(images, texts, image_tokens=True) if self._image_tokens else self.model(images, texts)
        embeds = dict(zip(parts, out["text_embeds"].split([t.shape[0] for t in parts.values()]))) if parts else {}
        text_embeds = embeds.get("input_ids")
        match_ids = batch.get("match_ids")
        if match_ids is not None and get_world_size() > 1:
            # collate_image_text numbers images 0..B-1 within a batch; a loss that gathers every
            # rank's batch must not read rank 0's image 3 and rank 1's image 3 as one image.
            match_ids = match_ids + get_rank() * match_ids.shape[0]
        context = {"image_embeds": out["image_embeds"], "text_embeds": text_embeds,
                   "logit_scale": out["logit_scale"], "match_ids": match_ids, "key_inputs": ids,
                   "negative_text_embeds": embeds.get("negative_input_ids"),
                   "tag_targets": batch.get("tag_targets"), "tag_text_embeds": embeds.get("tag_input_ids"),
                   "image_token_embeds": out.get("image_token_embeds")}
        if self.reference is not None:
            context["features"] = torch.cat([out["image_embeds"], text_embeds])
            with torch.no_grad():
                ref = self.reference(images, ids)
            context["reference_features"] = torch.cat([ref["image_embeds"], ref["text_embeds"]])
        return context

    def training_forward(self, batch: Mapping[str, torch.Tensor]) -> dict[str, Any]:
        """The loss of one batch; on logged steps also the loss's own diagnostics and the logit scale."""
        context = self._context(batch)
        self.loss.diagnostics = self.logging_step  # off on the steps that are not logged: no host syncs
        loss = self.loss.forward_context(context)
        if not self.logging_step:
            return {"loss": loss}
        # The loss's diagnostics may include a float "loss"; the tensor with its graph must win.
        return {**dict(getattr(self.loss, "last_metrics", {})), "loss": loss,
                "logit_scale": context["logit_scale"].detach()}

    @torch.no_grad()
    def validation_forward(self, batch: Mapping[str, torch.Tensor]) -> dict[str, Any]:
        """The loss of one validation batch."""
        self.loss.diagnostics = False
        return {"loss": self.loss.forward_context(self._context(batch))}

    def validation_metrics(self) -> dict[str, float]:
        """The evaluator's metrics over the whole validation set (none without an evaluator)."""
        if self.evaluator is None:
            return {}
        return {str(k): float(v) for k, v in self.evaluator(self.model).items()}

    def after_optimizer_step(self) -> None:
        """Clamp the logit scale (CLIP) and let the loss update its state (queues, EMA, counters)."""
        clamp = getattr(self.model, "clamp_logit_scale_", None)
        if callable(clamp):
            clamp()
        self.loss.after_optimizer_step()
