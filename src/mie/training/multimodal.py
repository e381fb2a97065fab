"""``MultimodalTrainer``: contrastive training of a dual (image + text) encoder.

A batch is a dict with ``images`` ``[B, 3, H, W]``, ``input_ids`` ``[B, L]`` and optionally
``match_ids`` ``[B]`` (equal ids mark captions of the same image, so they are not negatives). The
ids are batch-local, in ``[0, B)``; under DDP they are offset by ``rank * B`` before the loss.
The model returns ``{"image_embeds", "text_embeds", "logit_scale"}`` and the loss is any
``mie.losses`` loss called as ``loss_fn(image_embeds, text_embeds, logit_scale=..., match_ids=...)``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn

from mie.config import TrainingConfig
from mie.training.base import BaseTrainer
from mie.training.callbacks import Callback
from mie.training.distributed import get_rank, get_world_size

Evaluator = Callable[[nn.Module], dict[str, float]]


def _has_trainable(module: Any) -> bool:
    return isinstance(module, nn.Module) and any(p.requires_grad for p in module.parameters())


class MultimodalTrainer(BaseTrainer):
    """Trains a dual encoder with a contrastive loss; validation adds an optional ``evaluator``.

    ``evaluator(model) -> {"mean_R@1": ..., ...}`` runs once per validation on the bare model in
    eval mode (e.g. retrieval recall@K over the whole val set); its metrics join the mean val loss
    under a ``val/`` prefix, so ``best_metric="val/mean_R@1"`` can pick the best checkpoint.
    A loss with learnable parameters (e.g. a SigLIP bias) is moved to the device, trained by the
    default optimizer alongside the model, and saved in the trainer state.
    """

    def __init__(self, model: nn.Module, config: TrainingConfig, train_loader: Iterable,
                 val_loader: Iterable | None = None, *, loss_fn: Callable[..., torch.Tensor],
                 evaluator: Evaluator | None = None, callbacks: Iterable[Callback] | None = None,
                 optimizer: torch.optim.Optimizer | None = None, device: str | torch.device | None = None,
                 quiet: bool = False) -> None:
        self.loss_fn = loss_fn
        self.evaluator = evaluator
        super().__init__(model, config, train_loader, val_loader, callbacks=callbacks, optimizer=optimizer,
                         device=device, quiet=quiet)
        if isinstance(self.loss_fn, nn.Module):
            self.loss_fn.to(self.device)

    def optimized_module(self) -> nn.Module:
        """The model, plus the loss when it has trainable parameters."""
        if _has_trainable(self.loss_fn):
            return nn.ModuleDict({"model": self.raw_model, "loss": self.loss_fn.to(self.device)})
        return self.raw_model

    def _forward_loss(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        for key in ("images", "input_ids"):
            if key not in batch:
                raise ValueError(f"a multimodal batch needs {key!r}; got keys {sorted(batch)}")
        out = self.model(batch["images"], batch["input_ids"])
        match_ids = batch.get("match_ids")
        if match_ids is not None and get_world_size() > 1:
            # collate_image_text numbers images 0..B-1 within a batch; a loss that gathers every
            # rank's batch must not read rank 0's image 3 and rank 1's image 3 as one image.
            match_ids = match_ids + get_rank() * match_ids.shape[0]
        loss = self.loss_fn(out["image_embeds"], out["text_embeds"], logit_scale=out["logit_scale"],
                            match_ids=match_ids)
        return loss, out

    def _loss_metrics(self) -> dict[str, float]:
        extra = getattr(self.loss_fn, "last_metrics", None)
        return {str(k): float(v) for k, v in extra.items()} if isinstance(extra, dict) else {}

    def training_step(self, batch: dict[str, torch.Tensor]) -> dict[str, Any]:
        """Contrastive loss on one batch, plus the loss's ``last_metrics`` and the logit scale."""
        loss, out = self._forward_loss(batch)
        # The loss's own diagnostics may include a float "loss"; the tensor with its graph must win.
        return {**self._loss_metrics(), "loss": loss, "logit_scale": out["logit_scale"].detach()}

    def validation_step(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        """The contrastive loss of one validation batch."""
        loss, _ = self._forward_loss(batch)
        return {"loss": float(loss)}

    def validation_epoch_end(self, outputs: list[dict[str, float]]) -> dict[str, float]:
        """Mean val loss, plus the evaluator's metrics over the whole validation set."""
        metrics = super().validation_epoch_end(outputs)
        if self.evaluator is not None:
            metrics.update({str(k): float(v) for k, v in self.evaluator(self.raw_model).items()})
        return metrics

    def extra_state_dict(self) -> dict[str, Any]:
        """The loss's own state (learnable temperature / bias) when it has any."""
        if isinstance(self.loss_fn, nn.Module) and self.loss_fn.state_dict():
            return {"loss": self.loss_fn.state_dict()}
        return {}

    def load_extra_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the loss's state saved by :meth:`extra_state_dict`."""
        if "loss" in state and isinstance(self.loss_fn, nn.Module):
            self.loss_fn.load_state_dict(state["loss"])
