"""rl.feedback_model names the base model, the SL model, or a pretrained model (a stronger judge)."""

from __future__ import annotations

import pytest

from mie.config import ConfigError, config_from_dict
from mie.recipes.cai.config import RLConfig


@pytest.mark.parametrize("name", ["base", "sl", "qwen2.5-coder-0.5b-instruct", "qwen2.5-coder-1.5b-instruct"])
def test_a_pretrained_feedback_model_is_accepted(name):
    assert config_from_dict(RLConfig, {"feedback_model": name}).feedback_model == name


def test_an_unknown_feedback_model_is_one_line_listing_the_choices():
    with pytest.raises(ConfigError) as caught:
        config_from_dict(RLConfig, {"feedback_model": "gpt-9"})
    message = str(caught.value)
    assert "feedback_model" in message and "'gpt-9'" in message and "a pretrained model's name" in message
    assert "\n" not in message
