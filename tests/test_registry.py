"""Issue 27, recipe skeleton: one registry style (``mie.registry.Registry``) for every name -> thing table;
an unknown name is one line that lists the choices; the earlier public names keep working."""

from __future__ import annotations

import importlib

import pytest

from mie.errors import ConfigError, TokenizerError
from mie.registry import Registry


def test_register_lookup_and_the_one_line_error():
    shapes: Registry[type] = Registry("shape", fix="pick one of them")

    @shapes.register("circle")
    class Circle:
        pass

    assert shapes.add("square", int) is int and shapes.lookup("circle") is Circle
    assert dict(shapes) == {"circle": Circle, "square": int} and shapes.get("nope") is None  # still a dict
    with pytest.raises(ConfigError) as info:
        shapes.lookup("triangle", where="model.shape")
    assert str(info.value) == "model.shape: unknown shape 'triangle'; known shapes: circle, square — pick one of them"
    with pytest.raises(ConfigError, match=r"^unknown shape \['x'\]; known shapes: auto, circle, square"):
        shapes.lookup(["x"], also=["auto"])  # an unhashable name from a config is the same one line
    shapes.register("circle")(Circle)  # the same thing again (a module imported twice) is fine
    with pytest.raises(ValueError, match="shape name 'circle' is already registered to .*Circle"):
        shapes.add("circle", float)


def _registries():
    from mie.data.build import DATASET_FORMATS
    from mie.losses import LOSSES
    from mie.models.fusion import FUSION_CLASSES
    from mie.models.registry import MODEL_PRESETS
    from mie.pretrained.registry import MODELS
    from mie.pretrained.sentence import SENTENCE_MODELS
    from mie.recipes import RECIPES
    from mie.tokenization.factory import TOKENIZER_LOADERS, TOKENIZER_TRAINERS
    from mie.tokenization.normalizers import _KINDS

    return [LOSSES, DATASET_FORMATS, MODEL_PRESETS, FUSION_CLASSES, MODELS, SENTENCE_MODELS, RECIPES,
            TOKENIZER_TRAINERS, TOKENIZER_LOADERS, _KINDS]


def test_every_table_of_names_is_a_registry():
    assert all(isinstance(registry, Registry) and len(registry) >= 1 for registry in _registries())


@pytest.mark.parametrize(("call", "error", "line"), [
    (("mie.losses", "build_loss", "clp"), ConfigError,
     r"^unknown loss 'clp'; known losses: .*clip, .*vicreg$"),
    (("mie.models.registry", "get_model_config", "huge"), ConfigError,
     r"^unknown model preset 'huge'; known presets: base, demo, small, tiny — pick one of them"),
    (("mie.recipes", "get_recipe", "gan"), ConfigError,
     r"^recipe: unknown recipe 'gan'; known recipes: cai, classification, clip, lm, seq2seq$"),
    (("mie.tokenization.factory", "train_tokenizer", "wordpiece", ["a"]),
     TokenizerError, r"^unknown tokenizer 'wordpiece'; known tokenizers: bpe, char, simple$"),
    (("mie.pretrained.registry", "_spec", "gpt5"), ConfigError,
     r"^unknown pretrained model 'gpt5'; known pretrained models: qwen2.5-coder-0.5b-instruct, qwen2.5-coder-1.5b-instruct, smollm2-135m-instruct$"),
])
def test_an_unknown_name_is_one_line_with_the_choices(call, error, line):
    module, function, *args = call
    with pytest.raises(error, match=line) as info:
        getattr(importlib.import_module(module), function)(*args)
    assert "\n" not in str(info.value)


def test_fusion_and_data_format_errors_list_their_choices():
    from mie.data.build import build_dataset
    from mie.data.config import DataConfig
    from mie.models.fusion import FusionConfig, build_fusion

    config = FusionConfig()
    config.type = "late"  # past the config's own rule, as a programmatic caller may
    with pytest.raises(ValueError, match="^unknown fusion type 'late'; known fusion types: bidirectional, coattention, "
                                         "cross, gated$"):
        build_fusion(config, 8, 8)
    with pytest.raises(ConfigError, match=r"^unknown data.format 'parquet'; known formats: auto, coco, csv, "):
        build_dataset(DataConfig(format="parquet"), "train")


def _old_lr_multiplier(step, cfg, total_steps):  # training/schedules.py before its registry
    import math

    warmup = max(0, cfg.warmup_steps)
    if step < warmup:
        return (step + 1) / warmup
    if cfg.name == "constant":
        return 1.0
    if cfg.name == "inverse_sqrt":
        return max(cfg.min_lr_ratio, math.sqrt(max(1, warmup) / (step + 1)))
    progress = min(1.0, max(0.0, (step - warmup) / max(1, total_steps - warmup)))
    shape = 0.5 * (1.0 + math.cos(math.pi * progress)) if cfg.name == "cosine" else 1.0 - progress
    return cfg.min_lr_ratio + (1.0 - cfg.min_lr_ratio) * shape


@pytest.mark.parametrize("name", ["cosine", "linear", "constant", "inverse_sqrt"])
def test_the_schedule_registry_gives_the_earlier_multipliers_exactly(name):
    from mie.training.config import ScheduleConfig
    from mie.training.schedules import SCHEDULES, lr_multiplier

    assert SCHEDULES == ("cosine", "linear", "constant", "inverse_sqrt")
    for warmup, ratio in ((0, 0.0), (5, 0.1)):
        cfg = ScheduleConfig(name=name, warmup_steps=warmup, min_lr_ratio=ratio)
        assert [lr_multiplier(s, cfg, 40) for s in range(45)] == [_old_lr_multiplier(s, cfg, 40) for s in range(45)]
