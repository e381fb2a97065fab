"""Bounded YAML: alias bombs, recursive aliases, deep nesting and odd tags give one clear error, fast."""

import time

import pytest
import yaml

from mie.config import ConfigError, load_config
from mie.errors import LimitError
from mie.safe_yaml import parse_yaml
from mie.training.config import TrainerConfig


def alias_bomb(levels: int = 10, width: int = 9) -> str:
    """The classic "billion laughs": each level lists the previous one ``width`` times (609 bytes for 10x9)."""
    lines = ["loss:", "  name: clip", "  kwargs:", "    a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    for level in range(1, levels):
        lines.append(f"    a{level}: &a{level} [" + ", ".join([f"*a{level - 1}"] * width) + "]")
    return "\n".join(lines) + "\n"


def test_alias_bomb_is_refused_before_anything_expands_it(tmp_path):
    path = tmp_path / "bomb.yaml"
    path.write_text(alias_bomb())
    assert path.stat().st_size < 1000
    start = time.perf_counter()
    with pytest.raises(LimitError, match=r"bomb.yaml: expands to more than 100,000 values \(YAML aliases\) — "):
        load_config(path, TrainerConfig)
    assert time.perf_counter() - start < 60.0  # a guard against blow-ups, loose enough for a loaded CI machine


def test_expanded_size_counts_every_use_of_an_alias():
    text = alias_bomb(levels=3, width=4)  # leaves: 9 * 4 * 4 = 144; containers: 1 + 4 + 16 ...
    data = parse_yaml(text)
    assert len(data["loss"]["kwargs"]["a2"]) == 4 and len(data["loss"]["kwargs"]["a2"][0]) == 4
    with pytest.raises(LimitError, match="more than 150 values"):
        parse_yaml(text, max_nodes=150)
    assert parse_yaml(text, max_nodes=250) == yaml.safe_load(text)  # same result as PyYAML when within limits


def test_shared_aliases_within_limits_parse_like_pyyaml():
    text = "base: &b {lr: 0.1, wd: [1, 2]}\nstages: [*b, *b, {<<: *b, lr: 0.2}]\n"
    assert parse_yaml(text) == yaml.safe_load(text)


@pytest.mark.parametrize("text, message", [
    ("a: &a [*a]\n", "an alias refers to itself"),
    ("[" * 100_000, "nested more than 64 levels deep"),
    ("a:\n" + "".join("  " * i + f"  k{i}:\n" for i in range(80)) + "  " * 81 + "  v\n", "nested more than 64"),
])
def test_recursive_and_deep_documents_are_limits(text, message):
    start = time.perf_counter()
    with pytest.raises(LimitError, match=message):
        parse_yaml(text, "cfg.yaml")
    assert time.perf_counter() - start < 60.0  # a guard against blow-ups, loose enough for a loaded CI machine


@pytest.mark.parametrize("text, message", [
    ("!!int", "cfg.yaml: invalid YAML value: "),
    ("seed: !!float abc", "cfg.yaml: invalid YAML value: "),
    ("a: [1", "cfg.yaml: invalid YAML at line 1, column 6: expected ',' or ']'"),
    ("!!python/object:os.system {}", "cfg.yaml: invalid YAML at line 1, column 1: could not determine a constructor"),
])
def test_malformed_documents_are_config_errors(text, message):
    with pytest.raises(ConfigError) as err:
        parse_yaml(text, "cfg.yaml")
    assert str(err.value).startswith(message)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_undecodable_bytes_name_the_file_and_the_byte(tmp_path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes(b"project_name: caf\xe9\n")
    with pytest.raises(ConfigError, match=r"latin1.yaml: byte 17 is not UTF-8 text — save the file as UTF-8"):
        load_config(path, TrainerConfig)


def test_a_huge_config_file_is_refused_unread(tmp_path):
    path = tmp_path / "huge.yaml"
    path.write_bytes(b"#" * (2 << 20))
    with pytest.raises(LimitError, match="huge.yaml: is 2,097,152 bytes; a config is at most 1,048,576"):
        load_config(path, TrainerConfig)


def test_overrides_are_bounded_too():
    from mie.config import apply_overrides

    with pytest.raises(ConfigError, match=r"override 'loss.kwargs=\[1': invalid YAML at line 1"):
        apply_overrides(TrainerConfig(), ["loss.kwargs=[1"])
    with pytest.raises(LimitError, match="nested more than 64"):
        apply_overrides(TrainerConfig(), ["project_name=" + "[" * 200 + "]" * 200])
