"""`mie.create_model_and_transforms`: a fresh model and its two image pipelines, as in open_clip."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
from PIL import Image

import mie
from mie.config import ConfigError, load_config
from mie.data.transforms import CenterCrop, RandomHorizontalFlip, RandomResizedCrop
from mie.models import DualEncoder
from mie.models.registry import get_model_config
from mie.recipes.clip import ClipConfig

DEMO = Path(__file__).resolve().parents[2] / "configs" / "demo.yaml"


def test_the_demo_config_names_a_buildable_preset_with_its_own_fields():
    config = load_config(DEMO, ClipConfig)
    assert config.model.name == "demo"
    assert get_model_config(config.model.name) == config.model  # the preset is the config's model, field by field
    model, _, _ = mie.create_model_and_transforms(config.model.name, vocab_size=300)
    assert isinstance(model, DualEncoder) and model.config == dataclasses.replace(config.model, vocab_size=300)


def test_a_yaml_config_gives_its_model_and_its_training_augmentation(tmp_path):
    path = tmp_path / "cfg.yaml"
    path.write_text(DEMO.read_text() + "\n", encoding="utf-8")
    path.write_text(path.read_text().replace("  path: data/shapes\n",
                                             "  path: data/shapes\n  random_crop_scale: [0.5, 1.0]\n  hflip: true\n"))
    model, train, evaluate = mie.create_model_and_transforms(path, vocab_size=50, eos_id=3, pad_id=0)
    assert model.config.image_size == 48 and model.text.eos_id == 3
    assert [type(t) for t in train.transforms[:2]] == [RandomResizedCrop, RandomHorizontalFlip]
    assert type(evaluate.transforms[1]) is CenterCrop
    image = Image.new("RGB", (80, 60), (200, 30, 30))
    for transform in (train, evaluate):
        assert transform(image).shape == (3, 48, 48)
    with torch.no_grad():
        embeds = model.encode_image(evaluate(image).unsqueeze(0))
    assert embeds.shape == (1, 128) and embeds.norm().item() == pytest.approx(1.0, abs=1e-5)


def test_a_preset_or_a_model_config_gives_equal_train_and_eval_pipelines_by_default():
    model, train, evaluate = mie.create_model_and_transforms(get_model_config("tiny", vocab_size=40))
    assert model.config.vocab_size == 40 and repr(train) == repr(evaluate)


def test_bad_inputs_are_one_line_errors():
    with pytest.raises(ConfigError, match="model.vocab_size: is 0 .* pass vocab_size=tokenizer.vocab_size"):
        mie.create_model_and_transforms("tiny")
    with pytest.raises(ConfigError, match="'huge' is neither a model preset nor a YAML config file"):
        mie.create_model_and_transforms("huge", vocab_size=10)
    with pytest.raises(ConfigError, match="got int"):
        mie.create_model_and_transforms(3, vocab_size=10)
