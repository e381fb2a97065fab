"""Issue 26, finding 1: mie never writes where it is not its own. A run folder must be missing, empty or
a run of ours (the marker, or a run from before the marker); the root, the home folder and system
folders are refused; commands that write a file make missing folders only inside the current directory."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pytest
import yaml
from tests.tiny import TINY_LM

from mie.cli import main
from mie.io.faults import SimulatedKill, inject
from mie.io.ownership import RUN_MARKER, read_marker

REPO = Path(__file__).resolve().parents[2]
WORDS = "the editor opens a buffer and a window shows it; quit with :q and write with :w. " * 8


def _digests(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
            for p in sorted(folder.rglob("*"))}


def _users_folder(folder: Path) -> dict[str, str]:
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text("mine\n")
    (folder / "report.md").write_text("x\n")
    (folder / ".notes.tmp").write_text("n\n")
    return _digests(folder)


def _one_line_error(capsys) -> str:
    captured = capsys.readouterr()  # log lines aside (cai warns when its embeddings are not installed)
    lines = [line for line in captured.err.strip().splitlines() if not re.match(r"\d\d:\d\d:\d\d [A-Z]+ ", line)]
    assert len(lines) == 1 and "Traceback" not in captured.err, captured.err
    return lines[0]


def test_the_issues_reproduction_ends_in_one_line_and_leaves_the_files(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    before = _users_folder(tmp_path / "d")
    code = main(["train", str(REPO / "configs" / "lm_tiny.yaml"), "--set", "max_minutes=0.01", "--output-dir", "d"])
    assert code == 1
    assert _one_line_error(capsys) == (
        "mie train: error: output_dir: d holds files that are not a mie run (.notes.tmp, config.yaml, report.md) "
        "— choose another output_dir, or empty the folder first")
    assert _digests(tmp_path / "d") == before  # byte for byte, nothing added (no marker either)


@pytest.mark.parametrize("argv", [
    *(["train", f"configs/{name}.yaml", "--set", "data.batch_size=2"]  # small: no memory preflight refusal
      for name in ("lm_tiny", "demo", "translate_en_de", "vit_shapes")),
    ["safety", "train", "--config", "configs/cai_tiny.yaml"],
], ids=["lm", "clip", "seq2seq", "classification", "cai"])
@pytest.mark.parametrize("overwrite", [False, True], ids=["fresh", "overwrite"])
def test_every_recipe_refuses_a_users_folder_even_with_overwrite(argv, overwrite, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    before = _users_folder(tmp_path / "d")
    argv = [a if not a.startswith("configs/") else str(REPO / a) for a in argv]
    assert main([*argv, "--output-dir", "d", *(["--overwrite"] if overwrite else [])]) == 1
    line = _one_line_error(capsys)
    assert "output_dir: d holds files that are not a mie run (.notes.tmp, config.yaml, report.md)" in line
    assert ("mie only ever replaces a run of its own" in line) == overwrite
    assert _digests(tmp_path / "d") == before


@pytest.mark.parametrize("folder", ["/", "/usr", "/etc", "HOME"])
def test_the_root_home_and_system_folders_are_refused(folder, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    folder = str(tmp_path) if folder == "HOME" else folder  # empty, and still refused
    assert main(["train", str(REPO / "configs" / "lm_tiny.yaml"), "--output-dir", folder, "--overwrite"]) == 1
    line = _one_line_error(capsys)
    assert line.startswith(f"mie train: error: output_dir: {folder} is ")
    assert line.endswith(", which mie never writes into — choose a folder of its own, e.g. runs/NAME")
    assert not (Path("/") / RUN_MARKER).exists() and list(tmp_path.iterdir()) == []


def test_the_demo_replaces_its_own_run_but_not_a_users_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # no configs/demo.yaml here: the built-in demo, output_dir runs/demo
    before = _users_folder(tmp_path / "runs" / "demo")
    assert main(["demo"]) == 1
    assert "output_dir: runs/demo holds files that are not a mie run" in _one_line_error(capsys)
    assert _digests(tmp_path / "runs" / "demo") == before


@pytest.fixture(scope="module")
def lm_config(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("own")
    (root / "doc.txt").write_text(WORDS, encoding="utf-8")
    raw = json.loads(json.dumps(TINY_LM))
    raw["data"]["files"] = [str(root / "doc.txt")]
    raw["epochs"] = 2
    (root / "lm.yaml").write_text(yaml.safe_dump(raw))
    return root / "lm.yaml"


def test_a_marked_run_is_written_first_and_retrained_with_overwrite(lm_config, tmp_path, monkeypatch):
    import mie.recipes.run_dir as run_dir

    run = tmp_path / "runs" / "a"  # runs/ is missing: made, with an INFO line
    found_when_marking = []

    def write_marker(folder, recipe):
        found_when_marking.append(sorted(p.name for p in folder.iterdir()))
        return real(folder, recipe)

    real = run_dir.write_marker
    monkeypatch.setattr(run_dir, "write_marker", write_marker)
    assert main(["train", str(lm_config), "--output-dir", str(run), "-q"]) == 0
    assert found_when_marking == [[]]  # the marker is the first thing the run writes
    marker = read_marker(run)
    assert marker is not None and marker["recipe"] == "lm"
    (run / ".notes.tmp").write_text("mine")  # a user's file in a run of ours is kept, not deleted
    (run / ".results.json.mie-tmp-q1w2e3r4").write_text("left by a killed write")
    assert main(["train", str(lm_config), "--output-dir", str(run), "-q"]) == 1  # a fresh start still refuses
    assert main(["train", str(lm_config), "--output-dir", str(run), "-q", "--overwrite"]) == 0
    assert read_marker(run) == marker and (run / ".notes.tmp").read_text() == "mine"
    assert not (run / ".results.json.mie-tmp-q1w2e3r4").exists()


def test_a_run_from_before_the_marker_still_resumes(lm_config, tmp_path, capsys):
    run = tmp_path / "old"
    with pytest.raises(SimulatedKill), inject("commit:published", times=2):
        main(["train", str(lm_config), "--output-dir", str(run), "-q"])
    (run / RUN_MARKER).unlink()  # as an older mie left it: config.yaml + checkpoints/manifest.json
    (run / ".results.json.ab12cd34.tmp").write_text("an older mie's temporary")
    assert (run / "config.yaml").is_file() and (run / "checkpoints" / "manifest.json").is_file()
    assert main(["train", str(lm_config), "--output-dir", str(run), "-q", "--resume"]) == 0
    assert read_marker(run) is not None and (run / "results.json").is_file()
    assert (run / ".results.json.ab12cd34.tmp").exists()  # not ours by today's name: left alone


def test_a_run_from_before_the_marker_with_a_users_file_is_not_ours(lm_config, tmp_path, capsys):
    run = tmp_path / "old"
    with pytest.raises(SimulatedKill), inject("commit:published", times=1):
        main(["train", str(lm_config), "--output-dir", str(run), "-q"])
    (run / RUN_MARKER).unlink()
    (run / "notes.txt").write_text("mine")
    before = _digests(run)
    capsys.readouterr()
    assert main(["train", str(lm_config), "--output-dir", str(run), "-q", "--resume"]) == 1
    assert "holds files that are not a mie run" in _one_line_error(capsys) and _digests(run) == before


@pytest.mark.parametrize(("argv", "where"), [
    (["embed", "RUN", "{elsewhere}/new/e.safetensors"], "OUT"),
    (["search", "RUN", "a red circle", "--sheet", "{elsewhere}/new/s.png"], "--sheet"),
    (["tokenizer", "train", "c.txt", "-o", "{elsewhere}/new/t.json"], "--output"),
    (["data", "shards", "data", "{elsewhere}/new/shards"], "OUT_DIR"),
    (["data", "inspect", "data", "--out", "{elsewhere}/new/sheet.png"], "--out"),
    (["data", "translation-pairs", "--target", "de", "{elsewhere}/new/pairs"], "OUT_DIR"),
    (["safety", "redteam", "--target", "echo", "--output-dir", "{elsewhere}/new/rt"], "--output-dir"),
])
def test_no_command_makes_missing_folders_outside_the_current_directory(argv, where, tmp_path, monkeypatch, capsys):
    (tmp_path / "cwd").mkdir()
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    elsewhere = tmp_path / "elsewhere"
    assert main([a.format(elsewhere=elsewhere) for a in argv]) == 1
    assert _one_line_error(capsys).endswith(
        f"{where}: the folder {elsewhere / 'new'} does not exist — create it first (mkdir -p {elsewhere / 'new'}) "
        "or choose a folder that exists")
    assert list(elsewhere.iterdir()) == [] and list((tmp_path / "cwd").iterdir()) == []


@pytest.mark.parametrize("argv", [
    ["embed", "RUN", "/etc/e.safetensors"], ["search", "RUN", "q", "--sheet", "/usr/s.png"],
    ["tokenizer", "train", "c.txt", "-o", "/t.json"], ["data", "shards", "data", "/"],
    ["safety", "redteam", "--target", "echo", "--output-dir", "/usr/lib"],
])
def test_no_command_writes_into_a_system_folder(argv, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 1
    assert ", which mie never writes into" in _one_line_error(capsys)
