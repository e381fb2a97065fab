"""CSV / TSV tables (OpenCLIP's format): columns, separators, splits, grouping and bad rows."""

from __future__ import annotations

from pathlib import Path

import pytest

from mie.data import build_dataset
from mie.data.config import DataConfig
from mie.data.tabular import CsvImageText


def test_tsv_default_columns_group_rows_by_image(tmp_path: Path, images) -> None:
    images.write(tmp_path / "img" / "a.png", 0)
    images.corrupt(tmp_path / "img" / "b.png")
    rows = ["filepath\ttitle", "img/a.png\ta red circle", "img/b.png\ta blue square", "img/a.png\tred round thing",
            "img/c.png\t", f"{tmp_path / 'img' / 'a.png'}\tabsolute path", "\torphan caption"]
    (tmp_path / "train.tsv").write_text("\n".join(rows) + "\n")
    data = CsvImageText(tmp_path / "train.tsv")
    assert [(r.image_id, r.captions) for r in data.records] == [
        ("img/a.png", ["a red circle", "red round thing"]), ("img/b.png", ["a blue square"]),
        (str(tmp_path / "img" / "a.png"), ["absolute path"])]
    assert data.records[0].path == tmp_path / "img" / "a.png"
    assert data.skipped == {"empty caption": 1, "no caption": 1}
    assert data[0] is not None and data[1] is None and data[2] is not None
    assert data.skipped["corrupt"] == 1


def test_csv_custom_columns_split_column_and_separator(tmp_path: Path, images) -> None:
    images.write(tmp_path / "x.png", 1)
    rows = ["image;text;part", "x.png;first;train", "y.png;second;val", "x.png;third;train"]
    (tmp_path / "pairs.txt").write_text("\n".join(rows) + "\n")
    config = DataConfig(format="csv", path=str(tmp_path / "pairs.txt"), format_options={
        "image_column": "image", "caption_column": "text", "split_column": "part", "separator": ";"})
    train = build_dataset(config, "train")
    assert [(r.image_id, r.captions, r.split) for r in train.records] == [("x.png", ["first", "third"], "train")]
    assert [r.image_id for r in build_dataset(config, "val").records] == ["y.png"]
    with pytest.raises(ValueError, match="no rows with an image and a caption for split 'test'"):
        build_dataset(config, "test")


def test_csv_folder_of_split_tables_and_errors(tmp_path: Path, images) -> None:
    (tmp_path / "train.csv").write_text('filepath,title\nq.png,"a caption, with a comma"\n')
    (tmp_path / "val.csv").write_text("filepath,title\nv.png,val caption\n")
    config = DataConfig(format="csv", path=str(tmp_path), max_train_samples=1)
    assert build_dataset(config, "train").records[0].captions == ["a caption, with a comma"]
    assert build_dataset(config, "val").records[0].image_id == "v.png"
    with pytest.raises(FileNotFoundError, match="no test.csv or test.tsv in"):
        build_dataset(config, "test")
    with pytest.raises(FileNotFoundError, match="CSV table .*missing.csv not found"):
        CsvImageText(tmp_path / "missing.csv")
    (tmp_path / "wrong.csv").write_text("path,caption\nq.png,x\n")
    with pytest.raises(ValueError, match=r"no column\(s\) \['filepath', 'title'\].*set format_options image_column"):
        CsvImageText(tmp_path / "wrong.csv")
    with pytest.raises(ValueError, match="accepted options: caption_column, image_column, root"):
        build_dataset(DataConfig(format="csv", path=str(tmp_path), format_options={"sep": ","}), "train")


def test_csv_root_option(tmp_path: Path, images) -> None:
    images.write(tmp_path / "pics" / "a.png", 2)
    (tmp_path / "t.csv").write_text("filepath,title\na.png,hello\n")
    data = build_dataset(DataConfig(format="csv", path=str(tmp_path / "t.csv"),
                                    format_options={"root": str(tmp_path / "pics")}), "train")
    assert data.records[0].path == tmp_path / "pics" / "a.png" and data[0] is not None
