"""ImageFolder classification: class order, labels, skipping bad files, collation, layout errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from mie.data.classification import ImageFolderDataset, collate_classification


def test_imagefolder_labels_and_bad_files(tmp_path: Path, images) -> None:
    images.write(tmp_path / "dog" / "1.png", 1)
    images.write(tmp_path / "cat" / "b.jpg", 2)
    images.write(tmp_path / "cat" / "sub" / "a.png", 3)
    images.corrupt(tmp_path / "dog" / "2.png")
    images.truncated(tmp_path / "dog" / "3.png", 4)
    (tmp_path / "dog" / "notes.txt").write_text("not an image")
    (tmp_path / ".hidden").mkdir()
    data = ImageFolderDataset(tmp_path)
    assert data.classes == ["cat", "dog"] and data.class_to_idx == {"cat": 0, "dog": 1}
    assert [(p.relative_to(tmp_path).as_posix(), y) for p, y in data.samples] == [
        ("cat/b.jpg", 0), ("cat/sub/a.png", 0), ("dog/1.png", 1), ("dog/2.png", 1), ("dog/3.png", 1)]
    assert data.targets == [0, 0, 1, 1, 1]
    image, label = data[2]
    assert label == 1 and torch.allclose(image, torch.from_numpy(images.array(1)).permute(2, 0, 1) / 255)
    assert data[3] is None and data[4] is None and data[3] is None
    assert data.skipped == {"corrupt": 2}
    (tmp_path / "dog" / "1.png").unlink()
    fresh = ImageFolderDataset(tmp_path)
    fresh.samples[2] = (tmp_path / "dog" / "1.png", 1)
    assert fresh[2] is None and fresh.skipped == {"missing": 1}
    batch = collate_classification([data[0], None, data[1]])
    assert batch["images"].shape == (2, 3, 10, 12) and batch["labels"].tolist() == [0, 0]
    assert collate_classification([None]) is None


def test_imagefolder_layout_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="root/<class_name>/\\*.png"):
        ImageFolderDataset(tmp_path / "nope")
    with pytest.raises(ValueError, match="has no class sub-folders"):
        ImageFolderDataset(tmp_path)
    (tmp_path / "empty_class").mkdir()
    with pytest.raises(ValueError, match="no images"):
        ImageFolderDataset(tmp_path)
