"""Smoke checks run first by `make test`: every module imports, a config survives a YAML round-trip."""

import importlib
import pkgutil

import pytest

import mie
from mie.config import TrainingConfig, load_config, save_config

pytestmark = pytest.mark.smoke


def all_modules() -> list[str]:
    """Every module and package under src/mie, found by walking the package (nothing skipped)."""
    names = ["mie"]
    for info in pkgutil.walk_packages(mie.__path__, prefix="mie."):
        names.append(info.name)
    return sorted(names)


def test_walk_finds_the_foundation_modules():
    names = all_modules()
    assert {"mie", "mie.__main__", "mie.cli", "mie.config", "mie.tools.doctor", "mie.tools.metadata"} <= set(names)


@pytest.mark.parametrize("name", all_modules())
def test_every_module_imports(name):
    module = importlib.import_module(name)
    assert module.__name__ == name


def test_config_round_trip(tmp_path):
    cfg = TrainingConfig(project_name="smoke", seed=1)
    assert load_config(save_config(cfg, tmp_path / "c.yaml")) == cfg
