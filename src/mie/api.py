"""The Python API for notebooks: load a finished run, embed images and captions, score and search.

>>> import mie
>>> run = mie.load_run("runs/demo")                          # doctest: +SKIP
>>> run.similarity(["cat.png"], ["a red circle", "a blue square"], probs=True)  # doctest: +SKIP
tensor([[0.93, 0.07]])

``load_run`` returns a :class:`Run`, and the run is the "model" a notebook talks to:
``run.encode_image`` takes PIL images, image paths or a preprocessed ``[B, 3, H, W]`` batch, and
``run.encode_text`` takes strings (it tokenizes with the run's tokenizer, context length and
eos/pad ids); both return L2-normalised embeddings on the CPU. ``run.model`` is the raw
``DualEncoder``, whose ``encode_image`` / ``encode_text`` take tensors and token ids, as open_clip's
model does. ``create_model_and_transforms`` builds a fresh model the way open_clip's function of the
same name does. This module is the application layer (it reads run directories through
``mie.recipes``); ``import mie`` loads it only on first use.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch import nn

from mie.config import ConfigError
from mie.data import build_image_transform
from mie.data.classification import IMAGE_SUFFIXES
from mie.data.config import DataConfig
from mie.data.transforms import LoadImage
from mie.errors import DataError
from mie.models.multimodal import DualEncoderConfig
from mie.models.registry import DEFAULT_EOS_ID, DEFAULT_PAD_ID, MODEL_PRESETS, build_model, get_model_config
from mie.recipes.clip.config import ClipConfig
from mie.recipes.clip.evaluate import EVAL_BATCH_SIZE, embed_eval_set, load_eval_set
from mie.recipes.clip.run import load_run_parts, with_data
from mie.tokenization.base import BaseTokenizer

__all__ = ["Run", "SearchHit", "SplitEmbeddings", "create_model_and_transforms", "image_files", "load_run"]

logger = logging.getLogger(__name__)

ImageInput = Image.Image | str | os.PathLike | torch.Tensor  # one image: PIL, a file path, or [3, H, W]


@dataclass
class SplitEmbeddings:
    """Every image of a split once and every caption, embedded: ``text_embeds[j]`` describes
    ``image_embeds[text_image_index[j]]``."""

    split: str
    image_embeds: torch.Tensor  # [N, D], unit norm
    text_embeds: torch.Tensor  # [M, D], unit norm
    text_image_index: torch.Tensor  # [M], the image row of each caption
    image_ids: list[str]
    paths: list[str]
    captions: list[str]  # flat, aligned with text_embeds


@dataclass
class SearchHit:
    """One ranked image of a text search: its path (or id), cosine score and row in the searched set."""

    path: str
    score: float
    index: int


@dataclass(eq=False, repr=False)
class Run:
    """A finished run ready for use (see the module docstring); made by :func:`load_run`."""

    run_dir: Path
    config: ClipConfig
    tokenizer: BaseTokenizer
    model: nn.Module
    device: torch.device
    checkpoint: Path

    def __post_init__(self) -> None:
        self.transform: Callable[[Image.Image], torch.Tensor] = build_image_transform(
            self.config.model.image_size, train=False)
        self._load = LoadImage(self.config.data.max_image_pixels)

    def __repr__(self) -> str:
        size = sum(p.numel() for p in self.model.parameters())
        return (f"Run({os.fspath(self.run_dir)!r}, checkpoint={self.checkpoint.name!r}, device='{self.device}', "
                f"model={self.config.model.name!r} with {size:,} parameters)")

    @property
    def context_length(self) -> int:
        """Tokens per caption (longer captions are cut, keeping their end-of-text token)."""
        return self.config.model.context_length

    def tokenize(self, texts: str | Sequence[str]) -> torch.Tensor:
        """Token ids ``[B, context_length]`` with bos/eos and padding, as the model was trained on."""
        return self.tokenizer([texts] if isinstance(texts, str) else list(texts), self.context_length)

    def preprocess(self, images: ImageInput | Sequence[ImageInput]) -> torch.Tensor:
        """A ``[B, 3, H, W]`` batch from PIL images or paths (a tensor batch passes through as it is)."""
        if isinstance(images, torch.Tensor):
            return images.unsqueeze(0) if images.dim() == 3 else images
        items = [images] if isinstance(images, (Image.Image, str, os.PathLike)) else list(images)
        tensors = [item if isinstance(item, torch.Tensor) else self.transform(self._load(item)) for item in items]
        return torch.stack(tensors) if tensors else torch.empty(0, 3, self.config.model.image_size,
                                                                self.config.model.image_size)

    @torch.no_grad()
    def encode_image(self, images: ImageInput | Sequence[ImageInput], batch_size: int = EVAL_BATCH_SIZE) -> torch.Tensor:
        """L2-normalised image embeddings ``[B, D]`` (fp32, CPU) of PIL images, paths or a tensor batch."""
        items: Any = images if isinstance(images, torch.Tensor) else (
            [images] if isinstance(images, (Image.Image, str, os.PathLike)) else list(images))
        out = [self.model.encode_image(self.preprocess(items[i:i + batch_size]).to(self.device)).float().cpu()
               for i in range(0, len(items), batch_size)]
        return torch.cat(out) if out else torch.empty(0, self.config.model.embed_dim)

    @torch.no_grad()
    def encode_text(self, texts: str | Sequence[str], batch_size: int = 4 * EVAL_BATCH_SIZE) -> torch.Tensor:
        """L2-normalised text embeddings ``[B, D]`` (fp32, CPU) of captions."""
        texts = [texts] if isinstance(texts, str) else list(texts)
        out = [self.model.encode_text(self.tokenize(texts[i:i + batch_size]).to(self.device)).float().cpu()
               for i in range(0, len(texts), batch_size)]
        return torch.cat(out) if out else torch.empty(0, self.config.model.embed_dim)

    def similarity(self, images: ImageInput | Sequence[ImageInput], texts: str | Sequence[str],
                   probs: bool = False, scale: float | None = 100.0) -> torch.Tensor:
        """Cosine similarities ``[images, texts]``; with ``probs`` each row is a softmax over the texts,
        ``(scale * cos).softmax(-1)`` as in open_clip (``scale=None``: the run's learned logit scale)."""
        scores = self.encode_image(images) @ self.encode_text(texts).T
        if not probs:
            return scores
        if scale is None:
            with torch.no_grad():
                scale = float(self.model.get_logit_scale())
        return (scale * scores).softmax(dim=-1)

    def embed_split(self, split: str | None = None, data: str | os.PathLike | None = None,
                    data_format: str = "auto") -> SplitEmbeddings:
        """Embeddings of every image and caption of ``split`` (default: the first test split; ``test``
        with ``data``) of the run's dataset, or of the dataset at ``data``."""
        config = self.config if data is None else with_data(self.config, data, data_format)
        name = split or (config.data.test_splits[0] if data is None and config.data.test_splits else "test")
        evalset = load_eval_set(config, name)
        image_embeds, text_embeds, owner = embed_eval_set(self.model, self.tokenizer, evalset, self.device)
        texts, _ = evalset.flat_captions
        return SplitEmbeddings(name, image_embeds, text_embeds, owner, list(evalset.image_ids),
                               evalset.paths or list(evalset.image_ids), texts)

    def search(self, query: str, images: str | os.PathLike | Sequence[ImageInput] | None = None,
               k: int = 5) -> list[SearchHit]:
        """The ``k`` images that best match ``query``, best first: of a folder, a list of images or
        paths, or (default) the run's first test split. Unreadable files of a folder are skipped."""
        if k < 1:
            raise ConfigError(f"k must be at least 1, got {k}", where="--k", fix="ask for one image or more")
        if images is None:
            embedded = self.embed_split()
            paths, image_embeds = embedded.paths, embedded.image_embeds
        else:
            items = image_files(images) if isinstance(images, (str, os.PathLike)) else list(images)
            paths, image_embeds = self._embed_readable(items)
        scores = image_embeds @ self.encode_text([query])[0]
        top = torch.topk(scores, min(k, len(paths)))
        return [SearchHit(paths[i], float(s), int(i)) for s, i in zip(top.values.tolist(), top.indices.tolist())]

    def _embed_readable(self, items: Sequence[ImageInput]) -> tuple[list[str], torch.Tensor]:
        """Labels and embeddings of the images in ``items`` that can be read; the others are skipped."""
        labels, tensors = [], []
        for index, item in enumerate(items):
            try:
                tensors.append(self.preprocess([item])[0])
            except (DataError, OSError) as exc:
                logger.warning("skipping %s: %s", item, exc)
                continue
            labels.append(os.fspath(item) if isinstance(item, (str, os.PathLike)) else f"#{index}")
        if not tensors:
            raise DataError("no readable image to search", fix="pass a folder or list of image files")
        return labels, self.encode_image(torch.stack(tensors))


def image_files(folder: str | os.PathLike) -> list[Path]:
    """The image files (by extension) anywhere under ``folder``, sorted; an error when there are none."""
    root = Path(folder)
    if not root.is_dir():
        raise DataError("is not a folder", where=root, fix="pass a folder of image files")
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise DataError(f"holds no image files ({', '.join(IMAGE_SUFFIXES)})", where=root,
                        fix="pass a folder of image files")
    return files


def load_run(run_dir: str | os.PathLike, checkpoint: str = "best", device: str | None = None) -> Run:
    """Load the finished run in ``run_dir`` (``best`` or ``last`` weights) for use; reads only.

    ``device`` overrides the run's ``device`` setting (``"cpu"``, ``"cuda"``, ``"auto"``).
    """
    parts = load_run_parts(Path(run_dir), checkpoint, device)
    return Run(Path(run_dir), parts.config, parts.tokenizer, parts.model, parts.device, parts.checkpoint)


def create_model_and_transforms(
    preset_or_config: str | os.PathLike | DualEncoderConfig | ClipConfig,
    *,
    vocab_size: int | None = None,
    eos_id: int = DEFAULT_EOS_ID,
    pad_id: int = DEFAULT_PAD_ID,
) -> tuple[nn.Module, Callable[[Image.Image], torch.Tensor], Callable[[Image.Image], torch.Tensor]]:
    """``(model, train_transform, eval_transform)`` of a fresh (untrained) dual encoder, like open_clip's.

    ``preset_or_config``: a preset name (``tiny``, ``small``, ``base``, ``demo``), a
    ``DualEncoderConfig``, a clip recipe config or the path of a YAML config file (its ``model`` and
    ``data`` sections: augmentation comes from ``data.random_crop_scale`` and ``data.hflip``).
    ``vocab_size`` is the tokenizer's, needed when the config leaves it at 0.

    >>> model, train_tf, eval_tf = create_model_and_transforms("demo", vocab_size=1000)  # doctest: +SKIP
    """
    model_config, data = _model_and_data_config(preset_or_config)
    if vocab_size is None and model_config.vocab_size <= 0:
        raise ConfigError("is 0 (taken from the tokenizer)", where="model.vocab_size",
                          fix="pass vocab_size=tokenizer.vocab_size")
    model = build_model(model_config, vocab_size=vocab_size, eos_id=eos_id, pad_id=pad_id)
    size = model_config.image_size
    train = build_image_transform(size, train=True, crop_scale=data.random_crop_scale, hflip=data.hflip)
    return model, train, build_image_transform(size, train=False)


def _model_and_data_config(spec: Any) -> tuple[DualEncoderConfig, DataConfig]:
    """The model section and data section (defaults for a bare model) that ``spec`` stands for."""
    if isinstance(spec, DualEncoderConfig):
        return dataclasses.replace(spec), DataConfig()
    if isinstance(spec, ClipConfig):
        return dataclasses.replace(spec.model), spec.data
    if isinstance(spec, (str, os.PathLike)):
        if isinstance(spec, str) and spec in MODEL_PRESETS:
            return get_model_config(spec), DataConfig()
        if Path(spec).suffix in (".yaml", ".yml") and Path(spec).is_file():
            from mie.recipes import load_recipe_config

            _, config = load_recipe_config(spec)
            return _model_and_data_config(config)
        raise ConfigError(f"{os.fspath(spec)!r} is neither a model preset nor a YAML config file",
                          where="create_model_and_transforms",
                          fix=f"pass one of the presets {', '.join(sorted(MODEL_PRESETS))} or a config path")
    raise ConfigError(f"expected a preset name, a config or a config path, got {type(spec).__name__}",
                      where="create_model_and_transforms", fix="pass e.g. 'tiny' or 'configs/demo.yaml'")
