"""mie.losses: one module per loss, each registered by name.

    >>> from mie.losses import build_loss, LOSSES
    >>> loss_fn = build_loss("clip", temperature=0.07)
    >>> loss = loss_fn(image_embeds, text_embeds)
    >>> loss_fn.last_metrics                      # detached floats for logging
    >>> loss = loss_fn.forward_context({"image_embeds": img, "text_embeds": txt, "logit_scale": s})
    >>> loss_fn.after_optimizer_step()            # queues, EMA encoders, counters: once per step
    >>> with diagnostics(False): ...              # no host synchronisation, last_metrics == {}

Importing this package imports every loss module so that ``LOSSES`` is complete.
"""

from mie.losses.barlow_twins import BarlowTwinsLoss
from mie.losses.base import INPUT_KINDS, LogitScale, LossBase, diagnostics, diagnostics_enabled
from mie.losses.caption_tags import CaptionTagLoss
from mie.losses.clip import CLIPStyleLoss
from mie.losses.combined import CombinedLoss, MultitaskLoss
from mie.losses.contrastive import ContrastiveLoss
from mie.losses.cross_entropy import CrossEntropyLoss
from mie.losses.decorrelation import DecorrelationLoss
from mie.losses.decoupled import DecoupledContrastiveLoss
from mie.losses.dynamic_temperature import DynamicTemperatureLoss
from mie.losses.feature_consistency import FeatureConsistencyLoss
from mie.losses.hard_negative import HardNegativeLoss
from mie.losses.hybrid_vicreg import HybridPretrainVICRegLoss
from mie.losses.memory_queue import MemoryQueueContrastiveLoss
from mie.losses.moco import EMAMoCoLoss, MoCoLoss, ema_update
from mie.losses.multimodal_mixed import MultimodalMixedContrastiveLoss
from mie.losses.ntxent import NTXentLoss
from mie.losses.registry import LOSSES, build_loss, loss_arguments, register_loss
from mie.losses.siglip import SigLIPLoss
from mie.losses.simple_contrastive import SimpleContrastiveLoss
from mie.losses.supcon import SupervisedContrastiveLoss
from mie.losses.tag_match import TagGroundLoss, TagMatchLoss
from mie.losses.vicreg import VICRegLoss

__all__ = [
    "INPUT_KINDS",
    "LOSSES",
    "BarlowTwinsLoss",
    "CLIPStyleLoss",
    "CaptionTagLoss",
    "CombinedLoss",
    "ContrastiveLoss",
    "CrossEntropyLoss",
    "DecorrelationLoss",
    "DecoupledContrastiveLoss",
    "DynamicTemperatureLoss",
    "EMAMoCoLoss",
    "FeatureConsistencyLoss",
    "HardNegativeLoss",
    "HybridPretrainVICRegLoss",
    "LogitScale",
    "LossBase",
    "MemoryQueueContrastiveLoss",
    "MoCoLoss",
    "MultimodalMixedContrastiveLoss",
    "MultitaskLoss",
    "NTXentLoss",
    "SigLIPLoss",
    "SimpleContrastiveLoss",
    "SupervisedContrastiveLoss",
    "TagGroundLoss",
    "TagMatchLoss",
    "VICRegLoss",
    "build_loss",
    "diagnostics",
    "diagnostics_enabled",
    "ema_update",
    "loss_arguments",
    "register_loss",
]
