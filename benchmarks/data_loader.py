"""Image–text loader throughput (images/s) for 0, 1 and 2 DataLoader workers on the shapes dataset.

Reads the train split of ``data/shapes`` when it exists (else generates ``--images`` shapes images into
a temporary folder), decodes each PNG, applies the demo's training transform and collates batches
with a word tokenizer, exactly as the training loop's loader does, with the image cache off so every
image is decoded::

    .venv/bin/python benchmarks/data_loader.py                  # up to 3000 images, batch 256
    .venv/bin/python benchmarks/data_loader.py --images 1000 --workers 0 2
"""

from __future__ import annotations

import argparse
import functools
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from mie.data import JsonlImageText, build_image_transform, collate_image_text, generate_shapes_dataset
from mie.data.image_text import all_captions
from mie.tokenization.factory import train_tokenizer


def shapes_root(requested: int, tmp: Path) -> Path:
    """``data/shapes`` if it is there, else a freshly generated dataset of ``requested`` train images."""
    existing = Path("data/shapes")
    if (existing / "captions.jsonl").is_file():
        return existing
    print(f"data/shapes not found: generating {requested} images into {tmp}")
    return generate_shapes_dataset(tmp / "shapes", num_train=requested, num_val=0, num_test=0, num_heldout=0)


def throughput(dataset: JsonlImageText, collate, batch_size: int, workers: int) -> float:
    """Images per second over one pass (worker start-up included, as a training epoch pays it)."""
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=True, num_workers=workers, collate_fn=collate,
                        generator=torch.Generator().manual_seed(0))
    start = time.perf_counter()
    images = sum(len(batch["image_ids"]) for batch in loader if batch is not None)
    return images / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=3000, help="train images to read (at most)")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--image-size", type=int, default=48, help="output size (the demo's 48)")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args()
    torch.set_num_threads(1)  # loader work is per-sample Python/Pillow: threads only add contention
    with tempfile.TemporaryDirectory() as tmp:
        root = shapes_root(args.images, Path(tmp))
        transform = build_image_transform(args.image_size, train=True)
        dataset = JsonlImageText(root / "captions.jsonl", split="train", transform=transform, max_samples=args.images)
        tokenizer = train_tokenizer("simple", all_captions(dataset), vocab_size=4096, lowercase=True)
        collate = functools.partial(collate_image_text, tokenizer=tokenizer, context_length=32)
        print(f"{len(dataset)} images from {root}, batch {args.batch_size}, output {args.image_size}px")
        print(f"{'workers':>8}  {'images/s':>9}")
        for workers in args.workers:
            print(f"{workers:>8}  {throughput(dataset, collate, args.batch_size, workers):>9.0f}")


if __name__ == "__main__":
    main()
