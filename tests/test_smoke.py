"""Smoke checks run first by `make test`: every module imports, a config survives a YAML round-trip."""

import importlib
import pkgutil

import pytest

import mie
from mie.config import load_config, save_config
from mie.recipes.clip import ClipConfig

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
    cfg = ClipConfig(project_name="smoke", seed=1)
    assert load_config(save_config(cfg, tmp_path / "c.yaml"), ClipConfig) == cfg


def test_tiny_model_forward_pass():
    import torch

    from mie.models.registry import build_model

    torch.manual_seed(0)
    model = build_model("tiny", vocab_size=50, eos_id=2, pad_id=0).eval()
    size = model.config.image_size
    images = torch.randn(3, 3, size, size)
    ids = torch.tensor([[1, 5, 6, 2, 0], [1, 7, 2, 0, 0], [1, 8, 9, 10, 2]])
    with torch.no_grad():
        out = model(images, ids)
    image, text = out["image_embeds"], out["text_embeds"]
    assert image.shape == text.shape == (3, model.config.embed_dim)
    # Embeddings leave the model L2-normalized, ready for cosine similarity.
    torch.testing.assert_close(image.norm(dim=-1), torch.ones(3))
    torch.testing.assert_close(text.norm(dim=-1), torch.ones(3))
    assert torch.isfinite(out["logit_scale"]).all()
