"""Training tasks: one module per kind of training (contrastive image–text, causal language modelling,
supervised fine-tuning on responses, reward modelling, DPO and PPO)."""

from mie.training.tasks.contrastive import (
    IMAGE_TEXT_INPUTS,
    ContrastiveTask,
    build_task_loss,
    check_task_loss,
)
from mie.training.tasks.language_model import LanguageModelTask, bits_per_byte, lm_metrics
from mie.training.tasks.ppo import PPOTask, Rollout
from mie.training.tasks.preference import DPOTask, RewardModelTask
from mie.training.tasks.sft import SFTTask, build_sft_example, sft_collate

__all__ = ["IMAGE_TEXT_INPUTS", "ContrastiveTask", "DPOTask", "LanguageModelTask", "PPOTask", "RewardModelTask",
           "Rollout", "SFTTask", "bits_per_byte", "build_sft_example", "build_task_loss", "check_task_loss",
           "lm_metrics", "sft_collate"]
