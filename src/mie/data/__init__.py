"""Data: the shapes dataset, image–text formats, samplers, augmentation, text, translation, classification.

Names are imported lazily (PEP 562) so that ``import mie.data.synthetic`` — done by every spawned
generation worker — does not pay for importing torch.
"""

from __future__ import annotations

from mie.lazy import lazy_exports

_EXPORTS = {
    "generate_shapes_dataset": "mie.data.synthetic",
    "generate_from_config": "mie.data.synthetic",
    "ensure_shapes_dataset": "mie.data.synthetic",
    "attribute_prompts": "mie.data.synthetic",
    "SHAPES": "mie.data.synthetic",
    "COLORS": "mie.data.synthetic",
    "ImageTextRecord": "mie.data.image_text",
    "ImageTextSample": "mie.data.image_text",
    "ImageTextDataset": "mie.data.image_text",
    "JsonlImageText": "mie.data.jsonl",
    "EvalBatch": "mie.data.image_text",
    "read_manifest": "mie.data.jsonl",
    "collate_image_text": "mie.data.image_text",
    "images_and_all_captions": "mie.data.image_text",
    "caption_image_index": "mie.data.image_text",
    "all_captions": "mie.data.image_text",
    "build_image_transform": "mie.data.transforms",
    # Taken from mie.data.build, which imports (and so registers) every format first.
    "build_dataset": "mie.data.build",
    "DATASET_FORMATS": "mie.data.build",
    "register_dataset_format": "mie.data.registry",
    "skip_report": "mie.data.image_text",
    "FlickrDataset": "mie.data.flickr",
    "CocoCaptions": "mie.data.coco",
    "CsvImageText": "mie.data.tabular",
    "WebDatasetImageText": "mie.data.webdataset",
    "expand_shards": "mie.data.webdataset",
    "shard_assignment": "mie.data.webdataset",
    "PerCaptionDataset": "mie.data.samplers",
    "UniqueImageBatchSampler": "mie.data.samplers",
    "BucketBatchSampler": "mie.data.samplers",
    "build_augmented_transform": "mie.data.augment",
    "AugmentedCaptions": "mie.data.augment",
    "LMBlockDataset": "mie.data.text",
    "TranslationDataset": "mie.data.translation",
    "read_parallel_files": "mie.data.translation",
    "read_tsv_pairs": "mie.data.translation",
    "collate_translation": "mie.data.translation",
    "ImageFolderDataset": "mie.data.classification",
    "collate_classification": "mie.data.classification",
    "detect_format": "mie.data.inspection",
    "inspect_dataset": "mie.data.inspection",
    "to_shards": "mie.data.shards",
    "check_splits": "mie.data.preflight",
    "hash_split": "mie.data.splits",
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
