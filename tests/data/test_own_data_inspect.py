"""Own data (issue 12): ``mie data inspect`` writes nothing unless asked with ``--out``."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from mie import cli


def _table(root: Path, images) -> Path:
    for k in range(4):
        images.write(root / f"{k}.png", k)
    (root / "pairs.csv").write_text("filepath,title,split\n" + "".join(f"{k}.png,shape {k},train\n" for k in range(4)))
    return root / "pairs.csv"


def test_inspect_writes_no_file_without_out(tmp_path: Path, images, capsys, monkeypatch: pytest.MonkeyPatch) -> None:
    table = _table(tmp_path / "data", images)
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    assert cli.main(["data", "inspect", str(table)]) == 0
    assert list(work.iterdir()) == [] and sorted(p.name for p in table.parent.iterdir())[-1] == "pairs.csv"
    printed = capsys.readouterr().out
    assert "format csv, splits train" in printed and "add --out sheet.png" in printed
    assert cli.main(["data", "inspect", str(table), "--samples", "2"]) == 0  # --samples alone writes nothing
    assert list(work.iterdir()) == []


def test_inspect_writes_the_contact_sheet_with_out(tmp_path: Path, images, capsys) -> None:
    table = _table(tmp_path / "data", images)
    out = tmp_path / "sheet.png"
    assert cli.main(["data", "inspect", str(table), "--out", str(out), "--samples", "3"]) == 0
    assert f"contact sheet: {out}" in capsys.readouterr().out
    with Image.open(out) as sheet:
        assert sheet.size[0] > 100


def test_inspect_help_says_when_it_writes(capsys) -> None:
    with pytest.raises(SystemExit):
        cli.main(["data", "inspect", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "write a contact sheet of a few samples to this PNG (default: write nothing)" in text
