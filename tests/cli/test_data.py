"""``mie data inspect`` and ``mie data shards`` run in-process through the real ``mie`` entry point."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from mie import cli


def test_cli_inspect_flickr_writes_contact_sheet(tmp_path: Path, karpathy_flickr, capsys) -> None:
    root = karpathy_flickr(tmp_path / "flickr", {"train": 3, "val": 1, "test": 2}, captions_per_image=2)
    out = tmp_path / "sheet.png"
    assert cli.main(["data", "inspect", str(root), "--out", str(out), "--samples", "4"]) == 0
    printed = capsys.readouterr().out
    assert "format flickr, splits train, val, test" in printed
    assert "train" in printed and "checked 6 samples: 0 broken" in printed
    assert "4 / 4.0 / 4 / 4" in printed  # "photo k caption j"
    with Image.open(out) as sheet:
        assert sheet.size[0] > 100
    assert cli.main(["data", "inspect", str(tmp_path / "none")]) == 1
    assert "does not exist" in capsys.readouterr().err
