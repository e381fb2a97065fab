"""The clip recipe's config: the trainer's settings (top level) plus model, data, tokenizer, loss."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from mie.config import ConfigError, Rule, one_of
from mie.data.config import DataConfig
from mie.losses.config import LossConfig
from mie.models.multimodal import DualEncoderConfig
from mie.tokenization.config import TokenizerConfig
from mie.training.config import TrainerConfig
from mie.training.tasks import check_task_loss


@dataclass
class ClipConfig(TrainerConfig):
    """A CLIP-style run: ``ClipConfig(project_name="x", output_dir="out")`` is complete with defaults."""

    RULES: ClassVar[dict[str, Rule]] = {**TrainerConfig.RULES, "recipe": one_of("clip")}

    recipe: str = "clip"
    model: DualEncoderConfig = field(default_factory=DualEncoderConfig)
    data: DataConfig = field(default_factory=DataConfig)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    #: weights to start from (a ``.safetensors`` of an earlier run with the same model section)
    init_checkpoint: str = ""


def check_config(config: ClipConfig) -> None:
    """Refuse, in one line, a loss (top level or a stage's) that an image–text batch cannot feed."""
    try:
        check_task_loss(config.loss, config.model.embed_dim, "loss")
        for index, stage in enumerate(config.stages):
            if stage.loss is not None:
                check_task_loss(stage.loss, config.model.embed_dim, f"stages[{index}].loss")
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
