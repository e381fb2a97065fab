"""Config loading, overrides, validation messages and YAML round-trips (mie.config)."""

import dataclasses
import math
from pathlib import Path

import pytest
import yaml

from mie.config import (
    ConfigError,
    apply_overrides,
    config_to_dict,
    save_config,
    validate_config,
)
from mie.config import config_from_dict as _from_dict
from mie.config import load_config as _load
from mie.losses.config import LossConfig
from mie.recipes.clip.config import ClipConfig as TrainingConfig
from mie.training.config import StageConfig


def config_from_dict(data):
    """The generic loader with the clip recipe's schema (the fullest one)."""
    return _from_dict(TrainingConfig, data)


def load_config(path, overrides=()):
    return _load(path, TrainingConfig, overrides)


def write(tmp_path, text, name="cfg.yaml"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_empty_mapping_and_empty_file_give_defaults(tmp_path):
    assert config_from_dict({}) == TrainingConfig()
    assert config_from_dict(None) == TrainingConfig()
    assert load_config(write(tmp_path, "")) == TrainingConfig()


def test_partial_yaml_keeps_other_defaults(tmp_path):
    cfg = load_config(write(tmp_path, "seed: 7\nmodel:\n  embed_dim: 64\noptimizer:\n  lr: 3e-4\n"))
    expected = TrainingConfig(seed=7)
    expected.model.embed_dim = 64
    expected.optimizer.lr = 3e-4
    assert cfg == expected
    assert isinstance(cfg.optimizer.lr, float)
    assert cfg.model.vision_layers == TrainingConfig().model.vision_layers


def test_int_is_accepted_for_float_and_converted():
    cfg = config_from_dict({"optimizer": {"lr": 1}, "max_minutes": 2})
    assert cfg.optimizer.lr == 1.0 and type(cfg.optimizer.lr) is float
    assert type(cfg.max_minutes) is float


def test_unknown_key_names_key_and_suggests_closest(tmp_path):
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, "model:\n  embed_dimm: 64\n"))
    message = str(err.value)
    assert "\n" not in message
    assert "model.embed_dimm" in message and "did you mean 'model.embed_dim'" in message
    assert "cfg.yaml" in message  # the file is named


def test_unknown_key_without_close_match_lists_allowed_keys():
    with pytest.raises(ConfigError, match=r"unknown key 'schedule.zzz'; allowed keys in schedule: name, warmup_steps"):
        config_from_dict({"schedule": {"zzz": 1}})


@pytest.mark.parametrize(
    "data, key, shown",
    [
        ({"seed": "x"}, "seed", "expected int, got 'x' (str)"),
        ({"seed": True}, "seed", "expected int, got True (bool)"),  # bool is not an int
        ({"seed": 1.5}, "seed", "got 1.5 (float)"),
        ({"optimizer": {"lr": "fast"}}, "optimizer.lr", "expected float"),
        ({"data": {"hflip": 1}}, "data.hflip", "expected bool"),
        ({"data": {"test_splits": ["test", 3]}}, "data.test_splits[1]", "expected str, got 3"),
        ({"data": {"test_splits": "test"}}, "data.test_splits", "expected a list of str"),
        ({"loss": {"kwargs": [1]}}, "loss.kwargs", "expected a mapping"),
        ({"model": 3}, "model", "expected a mapping (DualEncoderConfig)"),
        ({"stages": [{"loss": 5}]}, "stages[0].loss", "expected a mapping (LossConfig) or null"),
        ({"stages": [{"lr": "x"}]}, "stages[0].lr", "expected float"),
        ({"stages": [{"loss": {"name": 3}}]}, "stages[0].loss.name", "expected str, got 3 (int)"),
    ],
)
def test_wrong_type_message_names_key_and_value(data, key, shown):
    with pytest.raises(ConfigError) as err:
        config_from_dict(data)
    message = str(err.value)
    assert message.startswith(f"{key}: ") and shown in message
    assert "\n" not in message


@pytest.mark.parametrize(
    "data, message",
    [
        ({"precision": "fp8"}, "precision: got 'fp8'; must be one of auto | fp32 | bf16 | fp16"),
        ({"best_mode": "up"}, "best_mode: got 'up'; must be one of max | min"),
        ({"model": {"vision_pool": "max"}}, "model.vision_pool: got 'max'; must be one of cls | mean"),
        ({"model": {"norm": "batch"}}, "model.norm: got 'batch'; must be one of layernorm | rmsnorm"),
        ({"schedule": {"name": "step"}}, "schedule.name: got 'step'; must be one of cosine | linear | constant"),
        ({"tokenizer": {"name": "sp"}}, "tokenizer.name: got 'sp'; must be one of simple | bpe"),
        ({"optimizer": {"lr": 0}}, "optimizer.lr: got 0.0; must be > 0"),
        ({"data": {"batch_size": 0}}, "data.batch_size: got 0; must be > 0"),
        ({"model": {"embed_dim": -8}}, "model.embed_dim: got -8; must be > 0"),
        ({"model": {"dropout": 1.0}}, "model.dropout: got 1.0; must be in [0, 1)"),
        ({"max_steps": -1}, "max_steps: got -1; must be >= 0"),
        ({"device": "gpu"}, "device: got 'gpu'; must be auto | cpu | cuda | cuda:N | mps"),
        ({"optimizer": {"betas": [0.9]}}, "optimizer.betas: got [0.9]; must be two numbers"),
        ({"data": {"random_crop_scale": [0.9, 0.5]}}, "data.random_crop_scale: got [0.9, 0.5]"),
        ({"schedule": {"min_lr_ratio": 1.5}}, "schedule.min_lr_ratio: got 1.5; must be in [0, 1]"),
        ({"stages": [{"epochs": -1}]}, "stages[0].epochs: got -1; must be >= 0"),
        ({"stages": [{"lr_multipliers": {"v": -1}}]}, "stages[0].lr_multipliers: got {'v': -1.0}"),
        ({"max_minutes": float("inf")}, "max_minutes: got inf; must be a finite number"),
        ({"stages": [{"loss": {"name": " "}}]}, "stages[0].loss.name: got ' '"),
    ],
)
def test_value_checks(data, message):
    with pytest.raises(ConfigError) as err:
        config_from_dict(data)
    assert str(err.value).startswith(message)


@pytest.mark.parametrize("device", ["auto", "cpu", "cuda", "cuda:1", "mps"])
def test_valid_devices(device):
    assert config_from_dict({"device": device}).device == device


def test_optional_nested_dataclass_and_any_mapping():
    cfg = config_from_dict({
        "loss": {"name": "siglip", "kwargs": {"init_bias": -10, "nested": {"a": [1, 2]}}},
        "stages": [{"name": "warm", "freeze": ["vision."], "loss": None},
                   {"name": "tune", "lr": 1e-4, "loss": {"name": "clip"}}],
    })
    assert cfg.loss.kwargs == {"init_bias": -10, "nested": {"a": [1, 2]}}
    assert cfg.stages[0] == StageConfig(name="warm", freeze=["vision."], loss=None)
    assert cfg.stages[1].loss == LossConfig(name="clip")


def test_dataclass_instances_are_accepted_as_sections():
    cfg = config_from_dict({"loss": LossConfig("siglip"), "stages": [StageConfig("s", loss=LossConfig("clip"))]})
    assert cfg.loss == LossConfig("siglip") and cfg.stages[0].loss == LossConfig("clip")


def test_yaml_round_trip_is_lossless(tmp_path):
    cfg = TrainingConfig(project_name="rt", seed=3, precision="bf16", max_minutes=2.5)
    cfg.optimizer.lr = 3e-4
    cfg.optimizer.eps = 1e-8
    cfg.model.init_logit_scale = math.log(1 / 0.07)
    cfg.data.format_options = {"image_column": "img", "sep": "\t"}
    cfg.loss = LossConfig("siglip", {"init_bias": -10.0})
    cfg.stages = [StageConfig("frozen", epochs=2, freeze=["vision", "text"], lr_multipliers={"*": 0.5}),
                  StageConfig("all", steps=7, lr=1e-5, loss=LossConfig("clip", {"label_smoothing": 0.1}))]
    path = save_config(cfg, tmp_path / "sub" / "cfg.yaml")
    again = load_config(path)
    assert again == cfg
    assert again.model.init_logit_scale == cfg.model.init_logit_scale  # bit-exact float
    # and YAML -> config -> YAML gives the same text
    save_config(again, tmp_path / "again.yaml")
    assert (tmp_path / "again.yaml").read_text() == path.read_text()
    # the YAML holds plain data in schema order
    data = yaml.safe_load(path.read_text())
    assert list(data) == [f.name for f in dataclasses.fields(TrainingConfig)]
    assert data["stages"][1]["loss"] == {"name": "clip", "kwargs": {"label_smoothing": 0.1}}


def test_config_to_dict_is_a_deep_copy():
    cfg = TrainingConfig()
    d = config_to_dict(cfg)
    d["data"]["test_splits"].append("x")
    assert cfg.data.test_splits == ["test", "test_heldout"]


def test_overrides_scalars_nested_lists_and_indices():
    base = TrainingConfig(stages=[StageConfig("a"), StageConfig("b")])
    cfg = apply_overrides(base, [
        "optimizer.lr=3e-4",
        "data.test_splits=[test]",
        "model.embed_dim=64",
        "data.hflip=true",
        "stages.1.lr=1e-4",
        "stages.0.loss.name=siglip",  # creates the optional section
        "loss.kwargs.temperature=0.05",  # a new key inside a free mapping
        "output_dir=2024",  # a str field keeps the text
        "optimizer.betas=[0.9, 0.95]",
    ])
    assert cfg.optimizer.lr == pytest.approx(3e-4)
    assert cfg.data.test_splits == ["test"]
    assert cfg.model.embed_dim == 64 and cfg.data.hflip is True
    assert cfg.stages[1].lr == pytest.approx(1e-4) and cfg.stages[0].lr == 0.0
    assert cfg.stages[0].loss == LossConfig(name="siglip")
    assert cfg.loss.kwargs == {"temperature": 0.05}
    assert cfg.output_dir == "2024"
    assert cfg.optimizer.betas == [0.9, 0.95]
    assert base.optimizer.lr == 1e-3  # the input is not mutated


def test_load_config_applies_overrides_after_file(tmp_path):
    cfg = load_config(write(tmp_path, "seed: 7\nepochs: 3\n"), ["epochs=5"])
    assert (cfg.seed, cfg.epochs) == (7, 5)


@pytest.mark.parametrize(
    "override, message",
    [
        ("lr", "bad override 'lr': expected KEY=VALUE"),
        ("=3", "bad override '=3'"),
        ("optimizer..lr=3", "bad override"),
        ("optimzer.lr=3", "did you mean 'optimizer'"),
        ("optimizer.lrr=3", "did you mean 'optimizer.lr'"),
        ("seed.x=1", "override seed.x: seed is a value (42), not a section"),
        ("stages.0.lr=1", "'0' is not an index of stages (it has 0 items)"),
        ("seed=[1", "invalid YAML at line 1, column 3: expected ',' or ']'"),
        ("seed=abc", "seed: expected int, got 'abc'"),
        ("precision=fp64", "precision: got 'fp64'"),
    ],
)
def test_bad_overrides(override, message):
    with pytest.raises(ConfigError) as err:
        apply_overrides(TrainingConfig(), [override])
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.yaml"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match=r"bad.yaml: invalid YAML at line 3, column 1"):
        load_config(write(tmp_path, "seed: 1\nmodel: [\n", "bad.yaml"))
    with pytest.raises(ConfigError, match="expected a mapping at the top level, got list"):
        load_config(write(tmp_path, "- 1\n- 2\n", "list.yaml"))


def test_validate_config_checks_python_built_configs():
    assert validate_config(TrainingConfig(seed=1)) == TrainingConfig(seed=1)
    with pytest.raises(ConfigError, match="^seed: expected int"):
        validate_config(TrainingConfig(seed="1"))
    with pytest.raises(ConfigError, match="^precision"):
        validate_config(TrainingConfig(precision="int8"))


def test_config_error_is_a_value_error():
    assert issubclass(ConfigError, ValueError)


def test_a_config_with_base_merges_over_the_file_it_names(tmp_path):
    from mie.config import read_yaml

    (tmp_path / "a.yaml").write_text("recipe: clip\nmodel: {embed_dim: 64, image_size: 48}\ndata: {test_splits: [x, y]}\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.yaml").write_text("base: ../a.yaml\nmodel: {embed_dim: 32}\ndata: {test_splits: [z]}\n")
    assert read_yaml(tmp_path / "sub" / "b.yaml") == {
        "recipe": "clip", "model": {"embed_dim": 32, "image_size": 48}, "data": {"test_splits": ["z"]}}


@pytest.mark.parametrize("files,match", [
    ({"a.yaml": "base: a.yaml\nx: 1\n"}, "leads back"),
    ({"a.yaml": "base: b.yaml\n", "b.yaml": "base: a.yaml\n"}, "leads back"),
    ({"a.yaml": "base: 3\n"}, "expected the path"),
    ({"a.yaml": "base: missing.yaml\n"}, "does not exist"),
])
def test_a_bad_base_is_one_clear_error(tmp_path, files, match):
    from mie.config import read_yaml

    for name, text in files.items():
        (tmp_path / name).write_text(text)
    with pytest.raises((ValueError, FileNotFoundError), match=match):
        read_yaml(tmp_path / "a.yaml")


def test_demo_rerank_is_the_demo_plus_its_rerank_section():
    from mie.config import read_yaml

    root = Path(__file__).resolve().parents[1] / "configs"
    demo, rerank = read_yaml(root / "demo.yaml"), read_yaml(root / "demo_rerank.yaml")
    assert rerank["rerank"]["enabled"] is True and "rerank" not in demo
    assert {k: v for k, v in rerank.items() if k not in ("rerank", "project_name", "output_dir")} == {
        k: v for k, v in demo.items() if k not in ("project_name", "output_dir")}
