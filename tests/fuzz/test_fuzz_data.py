"""Property-based fuzzing of the dataset readers (COCO, Karpathy, CSV, JSONL, tar shards, images): any
bytes on disk give records or one of the project's named errors (``mie.errors.MieError``), never
another exception. ``make fuzz`` (HYPOTHESIS_PROFILE=fuzz) runs thousands of examples."""

from __future__ import annotations

import io
import json
import tarfile
import tempfile
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image
from tests.fuzz.mutations import edit_lists, mutate

from mie.data.coco import read_coco_captions
from mie.data.jsonl import read_manifest
from mie.data.karpathy import read_karpathy_json
from mie.data.tabular import read_table
from mie.data.transforms import LoadImage
from mie.data.webdataset import WebDatasetImageText, iter_tar_samples
from mie.errors import MieError

pytestmark = pytest.mark.fuzz

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
        st.sampled_from(["images", "annotations", "id", "image_id", "file_name", "caption", "filename",
                         "split", "sentences", "raw", "filepath", "image", "captions", "attributes"]), inner,
        max_size=5),
    max_leaves=25)
EDITS = edit_lists()

COCO = json.dumps({"images": [{"id": 1, "file_name": "a.jpg"}], "annotations": [{"image_id": 1, "caption": "c"}]})
KARPATHY = json.dumps({"images": [{"filename": "a.jpg", "split": "train", "sentences": [{"raw": "a cat"}]}]})
JSONL = '{"image": "a.png", "captions": ["a cat"], "split": "train"}\n{"image": "b.png", "captions": ["x"]}\n'
CSV = "filepath,title,split\na.png,a cat,train\nb.png,\"a, dog\",val\n"




def named_errors_only(call, data: bytes, name: str) -> None:
    """Run ``call`` on ``data`` written to a fresh file ``name``; only MieErrors may escape."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / name
        path.write_bytes(data)
        try:
            call(path)
        except MieError as err:
            assert "\n" not in str(err)


def document(base: str, value, raw: bytes, choice: int, changes) -> bytes:
    """One of: the well-formed ``base`` mutated, an arbitrary JSON document, or raw bytes."""
    return [mutate(base.encode(), changes), json.dumps(value).encode(), raw][choice]


readers = {
    "coco": (COCO, "c.json", lambda p: read_coco_captions(p, p.parent)),
    "karpathy": (KARPATHY, "k.json", lambda p: read_karpathy_json(p, "train", p.parent)),
    "jsonl": (JSONL, "m.jsonl", lambda p: read_manifest(p, split=None)),
    "jsonl-split": (JSONL, "m.jsonl", lambda p: read_manifest(p, split="train")),
    "csv": (CSV, "t.csv", lambda p: read_table(p, "train")),
    "tsv": (CSV.replace(",", "\t"), "t.tsv", lambda p: read_table(p, None)),
}


@pytest.mark.parametrize("reader", sorted(readers))
@given(value=json_values, raw=st.binary(max_size=200), choice=st.integers(0, 2), changes=EDITS)
def test_annotation_readers_raise_only_named_errors(reader, value, raw, choice, changes):
    base, name, call = readers[reader]
    named_errors_only(call, document(base, value, raw, choice, changes), name)


@given(value=json_values)
def test_jsonl_reader_on_arbitrary_lines(value):
    named_errors_only(lambda p: read_manifest(p), (json.dumps(value) + "\n").encode(), "m.jsonl")


def _shard_bytes() -> bytes:
    buffer = io.BytesIO()
    image = io.BytesIO()
    Image.new("RGB", (4, 4), (200, 10, 10)).save(image, format="PNG")
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, data in [("0001.png", image.getvalue()), ("0001.json", b'{"captions": ["red"]}'),
                           ("0002.txt", b"no image")]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


SHARD = _shard_bytes()


def _read_shard(path: Path) -> None:
    list(iter_tar_samples(path, Counter(), max_member_bytes=1 << 20))
    dataset = WebDatasetImageText(str(path), max_member_bytes=1 << 20, max_image_pixels=10_000)
    list(dataset.iter_all())
    dataset.all_captions()


@given(changes=edit_lists(max_size=10),
       raw=st.binary(max_size=600), use_raw=st.booleans())
def test_shard_reader_raises_only_named_errors(changes, raw, use_raw):
    original = Image.MAX_IMAGE_PIXELS
    try:
        named_errors_only(_read_shard, raw if use_raw else mutate(SHARD, changes), "s.tar")
    finally:
        Image.MAX_IMAGE_PIXELS = original  # the reader lowers Pillow's process-wide limit


PNG = SHARD[SHARD.index(b"\x89PNG"):SHARD.index(b"IEND") + 8]


@given(changes=EDITS, raw=st.binary(max_size=200), use_raw=st.booleans())
def test_image_loader_raises_only_named_errors(changes, raw, use_raw):
    original = Image.MAX_IMAGE_PIXELS
    try:
        named_errors_only(lambda p: LoadImage(max_pixels=10_000)(p), raw if use_raw else mutate(PNG, changes), "i.png")
    finally:
        Image.MAX_IMAGE_PIXELS = original
