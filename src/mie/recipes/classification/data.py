"""The classification recipe's data: labelled images of a split decoded once into a uint8 tensor, and
the loaders that batch them (random crop and flip on the batch for training, none for evaluation)."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from mie.data.classification import ImageFolderDataset
from mie.data.idx import FASHION_MNIST_CLASSES, FASHION_MNIST_DIR, load_fashion_mnist
from mie.data.shapes_classes import SHAPE_CLASS_SPLITS, render_shape_classes
from mie.data.shapes_drawing import SHAPES
from mie.data.transforms import CenterCrop, Compose, Resize
from mie.errors import ConfigError, DataError
from mie.recipes.classification.config import ClassificationDataConfig, ClassificationRecipeConfig


@dataclass
class LabelledImages:
    """One split in memory: ``images`` uint8 ``[N, C, H, W]``, ``labels`` int64 ``[N]``, the class names."""

    name: str
    images: torch.Tensor
    labels: torch.Tensor
    classnames: list[str]

    def __len__(self) -> int:
        return len(self.labels)


def _to_channels(images: np.ndarray, channels: int) -> torch.Tensor:
    """``[N, H, W]`` or ``[N, H, W, 3]`` uint8 -> ``[N, channels, H, W]`` (luma for one channel)."""
    if images.ndim == 3:
        images = images[..., None]
    tensor = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2)
    if tensor.shape[1] == channels:
        return tensor.contiguous()
    if channels == 1:
        weights = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
        return (tensor.float() * weights).sum(1, keepdim=True).round().clamp(0, 255).to(torch.uint8)
    return tensor.expand(-1, channels, -1, -1).contiguous()


def _image_folder(config: ClassificationRecipeConfig, split: str) -> LabelledImages:
    """``path/<split>/<class>/*`` if split folders exist, else a seeded split of ``path/<class>/*``."""
    data, size = config.data, config.model.image_size
    root = Path(data.path)
    split_root = root / split
    presplit = (root / "train").is_dir()
    if presplit and not split_root.is_dir():
        if split != "val":
            raise DataError(f"has a train/ folder but no {split}/ folder", where=root,
                            fix=f"add {split_root} or remove {split!r} from data.test_splits")
        split_root = root / "train"  # no val/ folder: carve val out of train below
    decoded, classes = _decode_folder(str(split_root if presplit else root), size)
    carve = not presplit or (split in ("train", "val") and not (root / "val").is_dir())
    test_fraction = 0.0 if presplit else data.test_fraction  # a train/ folder: val alone is carved from it
    pick = _split_rows(len(decoded), split, data, test_fraction) if carve else list(range(len(decoded)))
    if not pick:
        raise DataError(f"split {split!r} has no readable image", where=split_root)
    images = np.stack([np.asarray(decoded[i][0]) for i in pick])
    labels = torch.tensor([decoded[i][1] for i in pick], dtype=torch.long)
    return LabelledImages(split, _to_channels(images, config.model.in_channels), labels, list(classes))


@functools.lru_cache(maxsize=2)
def _decode_folder(root: str, size: int) -> tuple[list[tuple[np.ndarray, int]], tuple[str, ...]]:
    """Every readable image of an ImageFolder, resized and centre-cropped to ``size``, with its class;
    decoded once per process (a folder's train, val and test splits share the decode)."""
    folder = ImageFolderDataset(root, transform=Compose([Resize(size), CenterCrop(size)]))
    items = (folder[i] for i in range(len(folder)))
    return [(np.asarray(image), label) for image, label in filter(None, items)], tuple(folder.classes)


def _split_rows(n: int, split: str, data: ClassificationDataConfig, test_fraction: float) -> list[int]:
    """The rows of ``split`` in a seeded shuffle of ``n``: val first, then test, the rest train."""
    order = torch.randperm(n, generator=torch.Generator().manual_seed(data.seed)).tolist()
    n_val, n_test = int(n * data.val_fraction), int(n * test_fraction)
    parts = {"val": order[:n_val], "test": order[n_val:n_val + n_test], "train": order[n_val + n_test:]}
    if split not in parts:
        raise DataError(f"has no {split!r} split (an ImageFolder has train, val and test)", where=data.path)
    return sorted(parts[split])


def _fashion_mnist(config: ClassificationRecipeConfig, split: str) -> LabelledImages:
    data = config.data
    root = Path(data.path) if data.path else FASHION_MNIST_DIR
    if split not in ("train", "val", "test"):
        raise DataError(f"Fashion-MNIST has train, val and test, not {split!r}", where="data.test_splits")
    images, labels = load_fashion_mnist("test" if split == "test" else "train", root)
    if split != "test":  # val = the last val_fraction of the training images
        cut = len(labels) - int(len(labels) * data.val_fraction)
        images, labels = (images[:cut], labels[:cut]) if split == "train" else (images[cut:], labels[cut:])
    if config.model.image_size != images.shape[-1]:
        raise ConfigError(f"model.image_size: Fashion-MNIST images are {images.shape[-1]} px, got "
                          f"{config.model.image_size}", fix=f"set model.image_size: {images.shape[-1]}")
    return LabelledImages(split, _to_channels(images, config.model.in_channels), torch.from_numpy(labels),
                          list(FASHION_MNIST_CLASSES))


def _shapes(config: ClassificationRecipeConfig, split: str) -> LabelledImages:
    data = config.data
    counts = {"train": data.num_train, "val": data.num_val, "test": data.num_test, "test_heldout": data.num_heldout}
    if split not in SHAPE_CLASS_SPLITS:
        raise DataError(f"the shapes classes have {', '.join(SHAPE_CLASS_SPLITS)}, not {split!r}",
                        where="data.test_splits")
    images, labels = render_shape_classes(split, counts[split], config.model.image_size, data.seed)
    return LabelledImages(split, _to_channels(images, config.model.in_channels), torch.from_numpy(labels),
                          list(SHAPES))


def load_split(config: ClassificationRecipeConfig, split: str) -> LabelledImages:
    """Decode ``split`` of ``config.data`` (``max_train`` caps the training split)."""
    loader = {"imagefolder": _image_folder, "fashion_mnist": _fashion_mnist, "shapes": _shapes}[config.data.source]
    out = loader(config, split)
    if split == "train" and config.data.max_train and len(out) > config.data.max_train:
        keep = config.data.max_train
        out = LabelledImages(split, out.images[:keep], out.labels[:keep], out.classnames)
    if not len(out):
        raise DataError(f"split {split!r} has no image", where=config.data.path or config.data.source,
                        fix="check the data or the split sizes")
    return out


def channel_stats(images: torch.Tensor) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of uint8 ``[N, C, H, W]`` images, in [0, 1] units."""
    x = images.float().div_(255.0).transpose(0, 1).flatten(1)
    return x.mean(1).tolist(), x.std(1).clamp_min(1e-3).tolist()


def _collate(items: list[tuple[torch.Tensor, torch.Tensor]], mean: torch.Tensor, std: torch.Tensor, padding: int,
             hflip: bool, generator: torch.Generator | None) -> dict[str, torch.Tensor]:
    """Stack, scale to [0, 1], (train) random-crop the zero-padded images and flip half, normalise."""
    images = torch.stack([image for image, _ in items]).float().div_(255.0)
    labels = torch.stack([label for _, label in items])
    batch, _, height, width = images.shape
    if padding:
        padded = torch.nn.functional.pad(images, (padding,) * 4)
        offsets = torch.randint(2 * padding + 1, (batch, 2), generator=generator).tolist()
        images = torch.stack([padded[i, :, dy:dy + height, dx:dx + width] for i, (dy, dx) in enumerate(offsets)])
    if hflip:
        flip = torch.rand(batch, generator=generator) < 0.5
        images = torch.where(flip[:, None, None, None], images.flip(-1), images)
    return {"images": (images - mean) / std, "labels": labels}


def build_loader(split: LabelledImages, mean: list[float], std: list[float], batch_size: int, *, train: bool,
                 data: ClassificationDataConfig, seed: int = 0, pin_memory: bool = False) -> DataLoader:
    """Batches ``{"images", "labels"}`` of ``split``: shuffled and augmented (reseeded per epoch) if ``train``;
    pinned if ``pin_memory`` (for a CUDA device: the copy to it then need not wait)."""
    generator = torch.Generator().manual_seed(seed)
    collate = functools.partial(_collate, mean=torch.tensor(mean).view(1, -1, 1, 1),
                                std=torch.tensor(std).view(1, -1, 1, 1),
                                padding=data.crop_padding if train else 0, hflip=data.hflip and train,
                                generator=generator if train else None)
    pairs = list(zip(split.images, split.labels))
    return DataLoader(pairs, batch_size=batch_size, shuffle=train, drop_last=train,
                      generator=generator if train else None, collate_fn=collate, pin_memory=pin_memory)
