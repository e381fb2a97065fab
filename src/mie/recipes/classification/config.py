"""The classification recipe's config: the trainer's settings (top level) plus model, data and the
regularisers of ``ClassificationTask`` (label smoothing, mixup, cutmix)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import ClassVar

from mie.config import FRACTION, NON_NEGATIVE, POSITIVE, ConfigError, Rule, one_of
from mie.models.budget import MAX_BATCH, check_bound, check_memory, check_training
from mie.models.vit_classifier import ViTClassifierConfig
from mie.training.config import TrainerConfig

SOURCES = ("imagefolder", "shapes", "fashion_mnist")


@dataclass
class ClassificationDataConfig:
    """Where the labelled images come from; every split is decoded once and kept in memory (uint8).

    * ``imagefolder``: ``path/<split>/<class>/*.png`` (``train``, ``val``, ``test``), or one
      ``path/<class>/*.png`` folder split by ``val_fraction`` / ``test_fraction`` (seeded);
    * ``shapes``: single-shape images drawn by the embedded shapes generator, class = shape
      (``mie.data.shapes_classes``; splits ``train``, ``val``, ``test``, ``test_heldout``);
    * ``fashion_mnist``: the IDX files in ``path`` (default: where Debian's ``dataset-fashion-mnist``
      puts them); ``val`` is the last ``val_fraction`` of the 60,000 training images.
    """

    RULES: ClassVar[dict[str, Rule]] = {
        "source": one_of(*SOURCES), "batch_size": POSITIVE, "eval_batch_size": POSITIVE,
        "val_fraction": FRACTION, "test_fraction": FRACTION, "max_train": NON_NEGATIVE,
        "crop_padding": NON_NEGATIVE, "num_train": POSITIVE, "num_val": NON_NEGATIVE, "num_test": NON_NEGATIVE,
        "num_heldout": NON_NEGATIVE,
    }

    source: str = "shapes"
    path: str = ""  # imagefolder: the root (required); fashion_mnist: the IDX folder ("" = Debian's)
    batch_size: int = 128
    eval_batch_size: int = 500
    val_fraction: float = 0.1
    test_fraction: float = 0.1  # imagefolder without split folders only
    max_train: int = 0  # 0 = every training image
    test_splits: list[str] = field(default_factory=lambda: ["test"])
    crop_padding: int = 2  # training augmentation: random crop of the image padded by this (0 = off)
    hflip: bool = True  # training augmentation: horizontal flip with probability 0.5
    # source: shapes
    num_train: int = 6000
    num_val: int = 500
    num_test: int = 1000
    num_heldout: int = 500
    seed: int = 0
    # Per-channel normalisation, measured on the training images when empty (the saved config keeps it).
    mean: list[float] = field(default_factory=list)
    std: list[float] = field(default_factory=list)


@dataclass
class ClassificationRecipeConfig(TrainerConfig):
    """A ViT classifier run: ``ClassificationRecipeConfig()`` trains on the shapes classes with defaults."""

    RULES: ClassVar[dict[str, Rule]] = {
        **TrainerConfig.RULES, "recipe": one_of("classification"),
        "label_smoothing": (lambda v: 0.0 <= v < 1.0, "in [0, 1)"), "mixup_alpha": NON_NEGATIVE,
        "cutmix_alpha": NON_NEGATIVE, "mix_prob": FRACTION, "switch_prob": FRACTION,
    }

    recipe: str = "classification"
    output_dir: str = "runs/classification"
    best_metric: str = "val/top1"
    best_mode: str = "max"
    model: ViTClassifierConfig = field(default_factory=ViTClassifierConfig)
    data: ClassificationDataConfig = field(default_factory=ClassificationDataConfig)
    label_smoothing: float = 0.1
    mixup_alpha: float = 0.0  # Beta(alpha, alpha) mixing weight; 0 = off
    cutmix_alpha: float = 0.0  # 0 = off
    mix_prob: float = 1.0  # share of batches mixed (when mixup or cutmix is on)
    switch_prob: float = 0.5  # with both on: the share of mixed batches that use cutmix


def check_config(config: ClassificationRecipeConfig) -> None:
    """Refuse, in one line, what the dataclass rules cannot see: stage losses, a missing ImageFolder
    path, a patch size that does not divide the image, a normalisation of the wrong length."""
    for index, stage in enumerate(config.stages):
        if stage.loss is not None:
            raise ConfigError(f"stages[{index}].loss: a classifier trains with its soft-target cross-entropy "
                              "only — remove the stage's loss")
    if config.data.source == "imagefolder" and not config.data.path:
        raise ConfigError("data.path: source imagefolder needs the folder of class sub-folders",
                          fix="set data.path to root/ holding root/<class>/*.png (or root/train/<class>/...)")
    if config.model.image_size % config.model.patch_size:
        raise ConfigError(f"model.patch_size: {config.model.patch_size} does not divide model.image_size "
                          f"{config.model.image_size}", fix="choose a divisor, e.g. 4 for 28 or 32")
    for key in ("mean", "std"):
        values = getattr(config.data, key)
        if values and len(values) != config.model.in_channels:
            raise ConfigError(f"data.{key}: {len(values)} values for {config.model.in_channels} channels",
                              fix="give one value per channel or leave it empty to measure it")
    if config.data.source == "fashion_mnist" and config.model.in_channels != 1:
        raise ConfigError(f"model.in_channels: Fashion-MNIST is grayscale (1 channel), got {config.model.in_channels}")
    check_budget(config)


MAX_IMAGES = 10_000_000  # images the shapes generator may be asked for per split
GUESSED_CLASSES = 1000  # num_classes 0 is set from the data: size the head as for ImageNet's


def check_budget(config: ClassificationRecipeConfig) -> None:
    """Refuse, before images are decoded or drawn or a model built: batches or generated splits past the
    bounds, drawn splits (kept decoded in memory) or a training step past the memory available."""
    data, model = config.data, config.model
    check_bound(data.eval_batch_size, MAX_BATCH, "data.eval_batch_size")
    drawn = 0
    for name in ("num_train", "num_val", "num_test", "num_heldout"):
        check_bound(getattr(data, name), MAX_IMAGES, f"data.{name}")
        drawn += getattr(data, name) if data.source == "shapes" else 0
    check_memory(drawn * model.image_size ** 2 * model.in_channels, f"{drawn:,} drawn images", "data.num_train",
                 "draw fewer images (data.num_train, num_val, num_test, num_heldout)")
    sized = dataclasses.replace(model, num_classes=model.num_classes or GUESSED_CLASSES)
    check_training(sized, "data.batch_size", data.batch_size, fix="lower data.batch_size or the model's size",
                   precision=config.precision)
