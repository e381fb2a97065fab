"""The constitution: the packaged principles, YAML validation as one-line errors, enable/disable, sampling."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from mie.errors import ConfigError, LimitError
from mie.safety.constitution import ConstitutionalFramework, ConstitutionalPrinciple
from mie.safety.types import DEFAULT_PRINCIPLES

VALID = """\
principles:
  - name: a
    description: first
    critique_prompt: critique a
    revision_prompt: revise a
    weight: 3
  - name: b
    description: second
    critique_prompt: critique b
    revision_prompt: revise b
    exemplars:
      - {text: "bad", violates: true}
"""


def write(tmp_path, text, name="c.yaml"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_default_constitution_has_the_five_principles_in_order():
    framework = ConstitutionalFramework.default()
    assert tuple(framework.names) == DEFAULT_PRINCIPLES
    for principle in framework:
        assert principle.description and principle.enabled
        assert principle.critique_prompt.startswith("Identify specific ways in which the assistant's last response")
        assert principle.revision_prompt.startswith("Please rewrite the assistant response")
        assert principle.question.endswith("(A) yes (B) no")
        labels = {e.violates for e in principle.exemplars}
        assert labels == {True, False}, principle.name  # at least one exemplar of each kind
        assert "\n" not in principle.description  # folded to one paragraph


def test_round_trip_through_dict():
    framework = ConstitutionalFramework.default()
    again = ConstitutionalFramework.from_dict(framework.to_dict())
    assert again.to_dict() == framework.to_dict()


def test_load_from_yaml_with_defaults(tmp_path):
    framework = ConstitutionalFramework.from_yaml(write(tmp_path, VALID))
    a, b = framework.get("a"), framework.get("b")
    assert a.weight == 3.0 and b.weight == 1.0 and b.enabled
    assert b.exemplars[0].text == "bad" and b.exemplars[0].violates is True
    assert a.judge_question == "" and "first" in a.question  # built from the description
    assert len(framework) == 2 and "a" in framework and "z" not in framework


def test_enable_disable_and_active():
    framework = ConstitutionalFramework.default()
    framework.disable("privacy")
    framework.disable("fairness")
    assert [p.name for p in framework.active] == ["harm_prevention", "truthfulness", "autonomy_respect"]
    assert "privacy (disabled)" in repr(framework)
    framework.enable("privacy")
    assert "privacy" in [p.name for p in framework.active]
    with pytest.raises(ConfigError, match="did you mean 'privacy'"):
        framework.disable("privcy")


def test_sample_follows_weights_with_a_seeded_rng(tmp_path):
    framework = ConstitutionalFramework.from_yaml(write(tmp_path, VALID))  # a: 3, b: 1
    first, second = random.Random(7), random.Random(7)
    assert [framework.sample(first).name for _ in range(20)] == [framework.sample(second).name for _ in range(20)]
    rng = random.Random(0)
    counts = Counter(framework.sample(rng).name for _ in range(4000))
    assert 0.72 < counts["a"] / 4000 < 0.78  # expected 0.75
    framework.disable("a")
    assert {framework.sample(rng).name for _ in range(50)} == {"b"}
    framework.disable("b")
    with pytest.raises(ConfigError, match="no enabled principle"):
        framework.sample(rng)


def test_zero_weight_is_never_sampled():
    framework = ConstitutionalFramework([
        ConstitutionalPrinciple("x", "d", "c", "r", weight=0.0), ConstitutionalPrinciple("y", "d", "c", "r")])
    rng = random.Random(1)
    assert {framework.sample(rng).name for _ in range(100)} == {"y"}


@pytest.mark.parametrize("edit, key", [
    (("weight: 3", "weight: -1"), "principles[0].weight"),
    (("weight: 3", "weight: lots"), "principles[0].weight"),
    (("weight: 3", "wieght: 3"), "principles[0].wieght"),
    (("description: first", "description: ''"), "principles[0].description"),
    (("    critique_prompt: critique a\n", ""), "principles[0].critique_prompt"),
    (("violates: true", "violates: maybe"), "principles[1].exemplars[0].violates"),
    (("{text: \"bad\", violates: true}", "just text"), "principles[1].exemplars[0]"),
    (("name: b", "name: a"), "principles[1].name"),
    (("name: b", "name: two words"), "principles[1].name"),
    (("weight: 3", "weight: 3\n    enabled: yes please"), "principles[0].enabled"),
])
def test_yaml_errors_are_one_line_naming_file_and_key(tmp_path, edit, key):
    path = write(tmp_path, VALID.replace(*edit, 1))
    with pytest.raises(ConfigError) as info:
        ConstitutionalFramework.from_yaml(path)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: {key}")
    assert " — " in message  # a fix follows


def test_unknown_key_suggests_the_right_one(tmp_path):
    path = write(tmp_path, VALID.replace("weight: 3", "wieght: 3"))
    with pytest.raises(ConfigError, match=r"did you mean 'principles\[0\]\.weight'"):
        ConstitutionalFramework.from_yaml(path)


@pytest.mark.parametrize("text, what", [
    ("- just\n- a list\n", "expected a mapping"),
    ("principles: []\n", "principles: expected a non-empty list"),
    ("principles:\n  - 3\n", "principles[0]: expected a mapping"),
    ("princples: []\n", "did you mean 'principles'"),
    ("principles: [\n", "invalid YAML"),
])
def test_malformed_documents(tmp_path, text, what):
    with pytest.raises(ConfigError) as info:
        ConstitutionalFramework.from_yaml(write(tmp_path, text))
    assert what in str(info.value) and "\n" not in str(info.value)


def test_alias_bomb_and_missing_file_are_refused(tmp_path):
    bomb = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{c}: &{c} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]\n" for p, c in zip("abcdef", "bcdefg"))
    with pytest.raises(LimitError):
        ConstitutionalFramework.from_yaml(write(tmp_path, bomb))
    with pytest.raises(OSError, match="no such file"):
        ConstitutionalFramework.from_yaml(tmp_path / "missing.yaml")
