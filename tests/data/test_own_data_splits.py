"""Own data (issue 12): a table without a split column is held out by a hash of the image name, and a
tab separator can be written ``\\t`` or ``tab``."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from mie.config import apply_overrides
from mie.data import build_dataset
from mie.data.config import DataConfig
from mie.data.inspection import inspect_dataset
from mie.data.splits import hash_split, in_split
from mie.errors import DataError


def _table(root: Path, images, count: int, separator: str = ",", name: str = "pairs.csv") -> Path:
    rows = [f"filepath{separator}title"]
    for k in range(count):
        images.write(root / "img" / f"{k}.png", k) if k < 3 else None
        rows += [f"img/{k}.png{separator}photo {k}", f"img/{k}.png{separator}picture {k}"]
    (root / name).write_text("\n".join(rows) + "\n")
    return root / name


def test_table_without_split_column_is_split_by_image_hash(tmp_path: Path, images, caplog) -> None:
    table = _table(tmp_path, images, 100)
    config = DataConfig(format="csv", path=str(table))
    with caplog.at_level(logging.WARNING, logger="mie.data.splits"):
        parts = {s: build_dataset(config, s) for s in ("train", "val", "test")}
    ids = {s: [r.image_id for r in d.records] for s, d in parts.items()}
    assert sorted(sum(ids.values(), []), key=lambda n: int(n[4:-4])) == [f"img/{k}.png" for k in range(100)]
    for split, names in ids.items():
        assert names and all(hash_split(n) == split for n in names)
        assert all(r.split == split and len(r.captions) == 2 for r in parts[split].records)
    assert 65 <= len(ids["train"]) <= 92 and len(ids["test"]) < len(ids["train"])
    warnings = [r.getMessage() for r in caplog.records]
    assert warnings == [f"{table} has no 'split' column: split by a hash of the image name into train/val/test "
                        "80/10/10; add a split column to choose"]  # once, not once per split


def test_hash_split_is_stable_and_all_takes_everything() -> None:
    assert hash_split("img/7.png") == hash_split("img/7.png")
    assert hash_split("1000092795.jpg", (90, 5, 5)) in ("train", "val", "test")
    assert in_split("anything", "all") and in_split("anything", None)
    assert {hash_split(f"{k}.jpg", (100, 0, 0)) for k in range(50)} == {"train"}


def test_empty_hashed_split_names_the_rule(tmp_path: Path, images) -> None:
    table = _table(tmp_path, images, 1)  # one image: only one of train / val / test holds it
    config = DataConfig(format="csv", path=str(table))
    empty = next(s for s in ("train", "val", "test") if s != hash_split("img/0.png"))
    with pytest.raises(DataError, match=f"split '{empty}'; the table has train, val, test .no 'split' column: "
                                        "split train/val/test 80/10/10 by a hash of the image path"):
        build_dataset(config, empty)


def test_split_column_and_folder_tables_are_not_hashed(tmp_path: Path, images) -> None:
    (tmp_path / "t.csv").write_text("filepath,title,split\na.png,x,test\nb.png,y,test\nc.png,z,train\n")
    test = build_dataset(DataConfig(format="csv", path=str(tmp_path / "t.csv")), "test")
    assert [r.image_id for r in test.records] == ["a.png", "b.png"]
    folder = tmp_path / "f"
    folder.mkdir()
    (folder / "test.csv").write_text("filepath,title\n" + "".join(f"{k}.png,c{k}\n" for k in range(20)))
    assert len(build_dataset(DataConfig(format="csv", path=str(folder)), "test")) == 20  # the table is the split


def test_inspect_shows_the_hashed_splits(tmp_path: Path, images) -> None:
    _, reports, _ = inspect_dataset(_table(tmp_path, images, 40), check=0)
    assert [r.name for r in reports] == ["train", "val", "test"] and sum(r.images for r in reports) == 40


@pytest.mark.parametrize("spelling", ["\\t", "tab", "TAB", "\t"])
def test_tab_separator_spellings(tmp_path: Path, images, spelling: str) -> None:
    table = _table(tmp_path, images, 10, separator="\t", name="pairs.txt")
    config = DataConfig(format="csv", path=str(table), format_options={"separator": spelling})
    assert sum(len(build_dataset(config, s)) for s in ("train", "val", "test") if s in {
        hash_split(f"img/{k}.png") for k in range(10)}) == 10


def test_tab_separator_from_the_command_line(tmp_path: Path, images) -> None:
    table = _table(tmp_path, images, 10, separator="\t", name="pairs.txt")
    # `--set data.format_options.separator='\t'`: the shell passes backslash-t, YAML keeps it as two characters
    config = apply_overrides(DataConfig(format="csv", path=str(table)), ["format_options.separator=\\t"])
    assert config.format_options["separator"] == "\\t"
    split = hash_split("img/0.png")
    assert "img/0.png" in [r.image_id for r in build_dataset(config, split).records]
    bad = DataConfig(format="csv", path=str(table), format_options={"separator": "::"})
    with pytest.raises(DataError, match=r"separator .::. is not one character.*a tab: \\t or tab"):
        build_dataset(bad, "train")
