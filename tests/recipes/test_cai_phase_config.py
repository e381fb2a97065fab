"""Issue 27, recipe skeleton: a cai phase is a trainer stage (``PhaseConfig`` extends ``StageConfig``), so
its length, batch, lr, ``freeze`` and ``lr_multipliers`` are the stage's fields; ``max_steps`` (the earlier
name of ``steps``) keeps loading."""

from __future__ import annotations

import pytest

from mie.config import ConfigError, config_from_dict, config_to_dict
from mie.models.causal_lm import CausalLM, CausalLMConfig
from mie.recipes.cai.config import CAIConfig, PhaseConfig, PPOConfig, check_config
from mie.recipes.cai.phases import adapted, trainer_config
from mie.training.config import StageConfig


def test_a_phase_is_a_stage_with_its_own_defaults_and_rules():
    phase = PhaseConfig()
    assert isinstance(phase, StageConfig) and isinstance(PPOConfig(), StageConfig)
    assert (phase.epochs, phase.steps, phase.batch_size, phase.lr) == (1, 0, 8, 1e-4)
    with pytest.raises(ConfigError, match="lr"):  # a stage's lr 0 means "the run's"; a phase has no run lr
        config_from_dict(PhaseConfig, {"lr": 0.0})


def test_max_steps_is_the_earlier_name_of_steps():
    ppo = config_from_dict(PPOConfig, {"max_steps": 6, "max_new_tokens": 16})
    assert (ppo.steps, ppo.max_steps) == (6, 0)
    assert config_from_dict(PPOConfig, config_to_dict(ppo)).steps == 6  # a saved config loads the same
    assert config_from_dict(PhaseConfig, {"steps": 3, "max_steps": 3}).steps == 3
    with pytest.raises(ConfigError, match="steps 3 and max_steps 2 disagree — set steps only"):
        config_from_dict(PhaseConfig, {"steps": 3, "max_steps": 2})
    assert CAIConfig().rl.ppo.steps == 10


def test_the_trainer_runs_the_phase_as_its_one_stage(tmp_path):
    config = config_from_dict(CAIConfig, {"rl": {"dpo": {"steps": 5, "lr": 2e-4, "warmup_steps": 2, "grad_accum_steps": 2,
                                                         "freeze": ["embed*"], "lr_multipliers": {"*": 0.5},
                                                         "lora": {"r": 2}}}})
    phase = config.rl.dpo
    base = CausalLM(CausalLMConfig(vocab_size=32, dim=16, n_layers=1, n_heads=2, max_seq_len=16))
    tconfig = trainer_config(config, phase, tmp_path, adapted(base, phase))
    assert (tconfig.max_steps, tconfig.epochs, tconfig.optimizer.lr, tconfig.schedule.warmup_steps) == (5, 10_000, 2e-4, 2)
    [stage] = tconfig.stages
    assert stage.freeze == ["embed*", "*.weight"] and stage.lr_multipliers == {"*": 0.5}
    assert stage.grad_accum_steps == 2 and stage.steps == 0  # the length is the run's max_steps


def test_a_phase_loss_or_schedule_is_refused_in_one_line():
    config = config_from_dict(CAIConfig, {"rl": {"dpo": {"loss": {"name": "clip"}}}})
    with pytest.raises(ConfigError, match="^rl.dpo: a cai phase has its own loss and the top-level schedule; "):
        check_config(config)
