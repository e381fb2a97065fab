"""`mie embed` and `mie search` on a finished tiny run, checked against `mie.load_run`'s embeddings."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from tests.tiny import snapshot, train_tiny_run

import mie
from mie import cli
from mie.cli import main
from mie.io import load_weights


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    return train_tiny_run(tmp_path_factory.mktemp("embed"))


def _hits(out: str) -> list[tuple[float, str]]:
    return [(float(score), path) for score, path in re.findall(r"^\s*\d+\. ([+-][\d.]+)  (.+)$", out, re.M)]


def test_help_lists_embed_and_search_and_marks_unbuilt_commands(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "embed write a finished run's image and caption embeddings" in out
    assert "search rank images by a text query" in out
    assert "safety run the safety evaluator, filter and red-team suites" in out
    unbuilt = [name for name, command in cli.COMMANDS.items() if command.module is None]
    assert out.count("(not built yet)") == len(unbuilt)


def test_embed_writes_the_split_with_its_ids_paths_and_captions(run, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the missing folder emb/ is made only inside the current directory
    before = snapshot(run)
    out = tmp_path / "emb" / "test.safetensors"
    assert main(["embed", str(run), "--split", "test", str(out)]) == 0
    assert f"test: 8 images and 40 captions, 16-d, from best.safetensors -> {out}" in capsys.readouterr().out
    tensors, meta = load_weights(out)
    expected = mie.load_run(run)
    paths, captions = meta["image_paths"], meta["captions"]
    assert len(paths) == len(meta["image_ids"]) == 8 and len(captions) == 40 and meta["split"] == "test"
    torch.testing.assert_close(tensors["image_embeds"], expected.encode_image(paths))
    torch.testing.assert_close(tensors["text_embeds"], expected.encode_text(captions))
    torch.testing.assert_close(tensors["image_embeds"].norm(dim=-1), torch.ones(8))
    assert tensors["text_image_index"].tolist() == [i for i in range(8) for _ in range(5)]
    assert meta["checkpoint"] == "best.safetensors" and meta["embed_dim"] == 16
    assert snapshot(run) == before


def test_embed_errors_are_one_line(run, tmp_path, capsys):
    assert main(["embed", str(run), str(tmp_path / "out.npy")]) == 1
    assert "mie embed: error: OUT" in capsys.readouterr().err
    assert main(["embed", str(run), "--split", "nope", str(tmp_path / "o.safetensors")]) == 1
    assert capsys.readouterr().err.count("\n") == 1
    assert not (tmp_path / "o.safetensors").exists()


def test_search_ranks_the_test_split_by_cosine_and_draws_only_when_asked(run, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["search", str(run), "a red circle", "--k", "3"]) == 0
    hits = _hits(capsys.readouterr().out)
    assert len(hits) == 3 and [s for s, _ in hits] == sorted((s for s, _ in hits), reverse=True)
    loaded = mie.load_run(run)
    split = loaded.embed_split("test")
    scores = split.image_embeds @ loaded.encode_text("a red circle")[0]
    best = scores.sort(descending=True)
    assert [p for _, p in hits] == [split.paths[i] for i in best.indices[:3].tolist()]
    assert [s for s, _ in hits] == pytest.approx(best.values[:3].tolist(), abs=1e-4)
    assert list(tmp_path.iterdir()) == []  # no sheet unless --sheet

    folder = run.parents[1] / "data" / "shapes" / "images" / "val"
    assert main(["search", str(run), "a blue square", "--images", str(folder), "--sheet", "s.png"]) == 0
    out = capsys.readouterr().out
    hits = _hits(out)
    assert len(hits) == 5 and all(Path(p).parent == folder for _, p in hits)
    expected = loaded.encode_image([p for _, p in hits]) @ loaded.encode_text("a blue square")[0]
    assert [s for s, _ in hits] == pytest.approx(expected.tolist(), abs=1e-4)
    assert "contact sheet: s.png" in out and (tmp_path / "s.png").stat().st_size > 0


def test_search_of_a_folder_without_images_is_one_line(run, tmp_path, capsys):
    assert main(["search", str(run), "x", "--images", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"mie search: error: {tmp_path}: holds no image files") and err.count("\n") == 1


def test_search_skips_an_unreadable_file_of_a_folder(run, tmp_path, capsys):
    good = next((run.parents[1] / "data" / "shapes" / "images" / "test").glob("*.png"))
    (tmp_path / "good.png").write_bytes(good.read_bytes())
    (tmp_path / "broken.png").write_bytes(b"not a png")
    assert main(["search", str(run), "a red circle", "--images", str(tmp_path)]) == 0
    captured = capsys.readouterr()
    assert [Path(p).name for _, p in _hits(captured.out)] == ["good.png"]
    assert "skipping" in captured.err and "broken.png" in captured.err


def test_embed_writes_both_files_with_the_usual_mode(run, tmp_path):
    """Issue 30 item 10: OUT.safetensors was 0600 (safetensors makes its file anew) beside a 0644 OUT.json."""
    import os
    import stat

    out = tmp_path / "modes" / "e.safetensors"
    out.parent.mkdir()
    assert main(["embed", str(run), str(out)]) == 0
    mask = os.umask(0)
    os.umask(mask)
    modes = {stat.S_IMODE(path.stat().st_mode) for path in (out, out.with_suffix(".json"))}
    assert modes == {0o666 & ~mask}


def test_search_prints_paths_that_open_from_the_current_directory(run, tmp_path, capsys, monkeypatch):
    """Issue 30 item 10: relative to the current directory when the image lies under it, else absolute."""
    data = run.parents[1] / "data"  # the tiny run's data, named by an absolute path in its config
    monkeypatch.chdir(data)
    assert main(["search", str(run), "a red circle", "--k", "2"]) == 0
    paths = [path for _, path in _hits(capsys.readouterr().out)]
    assert paths and all(p.startswith("shapes/images/test/") and (data / p).is_file() for p in paths)
    monkeypatch.chdir(tmp_path)  # elsewhere: absolute paths
    assert main(["search", str(run), "a red circle", "--k", "2"]) == 0
    paths = [path for _, path in _hits(capsys.readouterr().out)]
    assert paths and all(Path(p).is_absolute() and Path(p).is_file() for p in paths)


def test_a_run_of_another_kind_is_named_as_such(tmp_path, capsys):
    """Issue 30 item 6: an lm run given to embed/search is called a language-model run, not refused for a key."""
    (tmp_path / "config.yaml").write_text("recipe: lm\nmodel: {dim: 16}\n", encoding="utf-8")
    for argv in (["search", str(tmp_path), "a red circle"], ["embed", str(tmp_path), str(tmp_path / "e.safetensors")]):
        assert main(argv) == 1
        assert capsys.readouterr().err == (
            f"mie {argv[0]}: error: RUN_DIR: {tmp_path} is a language-model run, not a clip run (image-text) — pass "
            "the folder of a run trained with recipe: clip (e.g. runs/demo from `mie demo`)\n")
