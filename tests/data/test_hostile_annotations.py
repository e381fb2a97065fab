"""Hostile annotation files (issue 11): COCO, Karpathy, CSV and JSONL files of the wrong types, deep
JSON, fields over the CSV limit and bytes that are not UTF-8 are one DataError naming the file, and
``mie data inspect`` prints that one line and exits 1."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mie import cli
from mie.data.coco import CocoCaptions
from mie.data.flickr import FlickrDataset
from mie.data.jsonl import read_manifest
from mie.data.tabular import CsvImageText
from mie.errors import DataError
from mie.io.cache import read_json

DEEP = "[" * 100_000
BAD_UTF8 = b'{"images": [], "annotations": [], "x": "caf\xe9"}'  # Latin-1 e-acute at byte 43

COCO_CASES = {
    "images is a dict": json.dumps({"images": {"id": 1}, "annotations": []}),
    "caption is an int": json.dumps({"images": [{"id": 1, "file_name": "a.jpg"}],
                                     "annotations": [{"image_id": 1, "caption": 7}]}),
    "image id is a list": json.dumps({"images": [{"id": [1], "file_name": "a.jpg"}], "annotations": []}),
    "annotation is a string": json.dumps({"images": [], "annotations": ["x"]}),
    "file_name missing": json.dumps({"images": [{"id": 1}], "annotations": []}),
    "top level is a list": "[]",
    "deep nesting": DEEP,
}
KARPATHY_CASES = {
    "entry is a list": json.dumps({"images": [[1]]}),
    "split is a list": json.dumps({"images": [{"filename": "a.jpg", "split": ["train"]}]}),
    "filename is an int": json.dumps({"images": [{"filename": 3, "split": "train"}]}),
    "sentences is an int": json.dumps({"images": [{"filename": "a.jpg", "split": "train", "sentences": 4}]}),
    "raw is an int": json.dumps({"images": [{"filename": "a.jpg", "split": "train", "sentences": [{"raw": 4}]}]}),
    "filepath is a dict": json.dumps({"images": [{"filename": "a.jpg", "split": "train", "filepath": {}}]}),
    "images missing": json.dumps({"dataset": "flickr30k"}),
    "deep nesting": '{"images": ' + DEEP,
}
JSONL_CASES = {
    "line is a list": "[1, 2]\n",
    "line is a number": "5\n",
    "line is null": "null\n",
    "captions missing": '{"image": "a.png"}\n',
    "captions hold an int": '{"image": "a.png", "captions": [3]}\n',
    "split is a list": '{"image": "a.png", "captions": ["c"], "split": ["train"]}\n',
    "deep nesting": DEEP + "\n",
}


def _coco(root: Path, text: str | bytes) -> Path:
    (root / "annotations").mkdir(parents=True)
    (root / "train2017").mkdir()
    path = root / "annotations" / "captions_train2017.json"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


def _flickr(root: Path, text: str | bytes) -> Path:
    (root / "images").mkdir(parents=True)
    path = root / "dataset_flickr30k.json"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


def _one_line_error(call, name: str) -> str:
    with pytest.raises(DataError) as info:
        call()
    message = str(info.value)
    assert name in message and "\n" not in message and " — " in message, message
    return message


@pytest.mark.parametrize("case", sorted(COCO_CASES))
def test_coco_of_wrong_types(tmp_path: Path, case: str) -> None:
    _coco(tmp_path, COCO_CASES[case])
    message = _one_line_error(lambda: CocoCaptions(tmp_path, "train"), "captions_train2017.json")
    if case == "deep nesting":
        assert "nested too deeply" in message


@pytest.mark.parametrize("case", sorted(KARPATHY_CASES))
def test_karpathy_of_wrong_types(tmp_path: Path, case: str) -> None:
    _flickr(tmp_path, KARPATHY_CASES[case])
    _one_line_error(lambda: FlickrDataset(tmp_path, "train"), "dataset_flickr30k.json")


@pytest.mark.parametrize("case", sorted(JSONL_CASES))
def test_jsonl_lines_of_wrong_types(tmp_path: Path, case: str) -> None:
    path = tmp_path / "m.jsonl"
    path.write_text('{"image": "a.png", "captions": ["ok"], "split": "train"}\n' + JSONL_CASES[case])
    _one_line_error(lambda: read_manifest(path), "m.jsonl:2")


def test_undecodable_bytes_name_the_file_and_offset(tmp_path: Path) -> None:
    coco = _coco(tmp_path / "coco", BAD_UTF8)
    assert "offset 43" in _one_line_error(lambda: CocoCaptions(tmp_path / "coco", "train"), str(coco))
    manifest = tmp_path / "m.jsonl"
    # The bad byte sits past the first megabyte: the offset is the file's, not a buffer's.
    manifest.write_bytes(b" " * (1 << 20) + b'\n{"image": "\xff"}\n')
    message = _one_line_error(lambda: read_manifest(manifest), "m.jsonl")
    assert f"offset {(1 << 20) + 12}" in message and "save it as UTF-8" in message
    table = tmp_path / "t.csv"
    table.write_bytes(b"filepath,title\na.png,caf\xe9\n")
    assert "offset 24" in _one_line_error(lambda: CsvImageText(table), "t.csv")


def test_csv_field_over_the_limit_names_file_and_line(tmp_path: Path) -> None:
    table = tmp_path / "t.csv"
    table.write_text("filepath,title\na.png,short\nb.png," + "x" * 200_000 + "\n")
    message = _one_line_error(lambda: CsvImageText(table), "t.csv")
    assert "line 3" in message and "field larger than field limit" in message


def test_csv_unclosed_quote_swallowing_the_file_is_a_data_error(tmp_path: Path) -> None:
    table = tmp_path / "t.csv"
    table.write_text('filepath,title\na.png,"open quote\n' + "more text\n" * 20_000)
    _one_line_error(lambda: CsvImageText(table), "t.csv")


@pytest.mark.parametrize(("content", "what"), [(b"{oops", "is not valid JSON"), (DEEP.encode(), "nested too deeply"),
                                                (b'"caf\xe9"', "offset 4"), (b"[1, 2]", "expected a JSON object")])
def test_read_json_errors_name_the_file(tmp_path: Path, content: bytes, what: str) -> None:
    path = tmp_path / "side.json"
    path.write_bytes(content)
    assert what in _one_line_error(lambda: read_json(path, expect_object=True), "side.json")


def _write_case(root: Path, kind: str, case: str) -> Path:
    if kind == "coco":
        _coco(root, COCO_CASES[case])
    elif kind == "flickr":
        _flickr(root, KARPATHY_CASES[case])
    elif kind == "jsonl":
        root.mkdir()
        (root / "captions.jsonl").write_text(JSONL_CASES[case])
    else:
        root.mkdir()
        (root / "data.csv").write_bytes(case.encode())
        return root / "data.csv"
    return root


CLI_CASES = ([("coco", c) for c in sorted(COCO_CASES)] + [("flickr", c) for c in sorted(KARPATHY_CASES)]
             + [("jsonl", c) for c in sorted(JSONL_CASES)]
             + [("csv", "filepath,title,split\na.png," + "x" * 200_000 + ",train\n"),
                ("csv", "filepath,title,split\na.png,caf\xe9,train\n".encode("latin-1").decode("utf-8", "replace")
                 .replace("\ufffd", "\udce9"))])


@pytest.mark.parametrize(("kind", "case"), CLI_CASES, ids=[f"{k}-{c[:20]}" for k, c in CLI_CASES])
def test_cli_inspect_prints_one_line_and_exits_1(tmp_path: Path, capsys, kind: str, case: str) -> None:
    if kind == "csv" and "\udce9" in case:
        target = tmp_path / "d"
        target.mkdir()
        (target / "data.csv").write_bytes(case.encode("utf-8", "surrogateescape"))
        target = target / "data.csv"
    else:
        target = _write_case(tmp_path / "d", kind, case)
    assert cli.main(["data", "inspect", str(target), "--out", str(tmp_path / "s.png")]) == 1
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert "Traceback" not in captured.err + captured.out and "error:" in lines[0]
