"""mie.io.ownership: the run marker, system folders, missing folders, and which temporaries are ours."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from mie.errors import ConfigError
from mie.io.atomic import atomic_path, atomic_write_text, is_temporary_name
from mie.io.ownership import (
    RUN_MARKER,
    claim_run_folder,
    create_folder,
    foreign_entries,
    has_marker,
    is_ours,
    prepare_output_file,
    prepare_output_folder,
    read_marker,
    system_folder_reason,
    write_marker,
)
from mie.io.store import remove_temporaries


def test_the_marker_records_recipe_version_and_time_and_is_kept(tmp_path):
    path = write_marker(tmp_path, "lm")
    marker = json.loads(path.read_text())
    assert path.name == RUN_MARKER and marker["recipe"] == "lm" and marker["format"] == "mie-run-v1"
    assert marker["mie_version"] and marker["created"].endswith("+00:00")
    write_marker(tmp_path, "clip")  # a second start keeps the first record
    assert read_marker(tmp_path) == marker


@pytest.mark.parametrize("content", ["{}", "not json", '{"format": "other"}', "[1]"])
def test_a_file_of_that_name_that_is_not_our_marker_does_not_count(tmp_path, content):
    (tmp_path / RUN_MARKER).write_text(content)
    assert not has_marker(tmp_path) and not is_ours(tmp_path)


def test_a_folder_inside_a_marked_one_is_ours(tmp_path):
    write_marker(tmp_path, "cai")
    assert is_ours(tmp_path / "sft") and not is_ours(tmp_path / "sft" / "deeper")


@pytest.mark.parametrize(("path", "reason"), [
    ("/", "is the filesystem root"), ("/usr", "is a system folder"), ("/usr/local/run", "is a system folder"),
    ("/etc/mie", "is a system folder"), ("/bin", "is a system folder"), ("/proc/self", "is a system folder"),
    ("/dev/shm/x", "is a system folder"), ("/tmp", "is a system folder"), ("/var", "is a system folder"),
    ("/home", "is a system folder"), ("/boot/x", "is a system folder"), ("/sys", "is a system folder"),
])
def test_system_folders_are_named(path, reason, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    assert system_folder_reason(path) == reason


def test_home_is_refused_but_folders_below_it_and_in_tmp_are_not(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    assert system_folder_reason(tmp_path) == "is your home folder"
    assert system_folder_reason("~") == "is your home folder"
    assert system_folder_reason(tmp_path / "runs" / "x") is None
    with pytest.raises(ConfigError) as exc:
        claim_run_folder(tmp_path, "output_dir")
    assert str(exc.value) == (f"output_dir: {tmp_path} is your home folder, which mie never writes into — "
                              "choose a folder of its own, e.g. runs/NAME")


def test_below_the_current_directory_is_the_users_place_even_under_usr(monkeypatch):
    monkeypatch.chdir("/usr")
    assert system_folder_reason("/usr/src/project/runs/x") is None
    assert system_folder_reason("/usr") == "is a system folder"


def test_claim_accepts_missing_empty_and_marked_folders_only(tmp_path):
    claim_run_folder(tmp_path / "missing", "output_dir")
    (tmp_path / "empty").mkdir()
    claim_run_folder(tmp_path / "empty", "output_dir")
    (tmp_path / "empty" / ".x.mie-tmp-abcd1234").write_text("a killed write of ours")
    claim_run_folder(tmp_path / "empty", "output_dir")  # our own leftovers do not make it foreign
    user = tmp_path / "user"
    user.mkdir()
    for name in ("a", "b", "c", "d"):
        (user / name).write_text(name)
    with pytest.raises(ConfigError) as exc:
        claim_run_folder(user, "output_dir", overwrite=True)
    assert str(exc.value) == (f"output_dir: {user} holds files that are not a mie run (a, b, c and 1 more) — "
                              "mie only ever replaces a run of its own; choose another output_dir, "
                              "or empty the folder first")
    write_marker(user, "lm")
    claim_run_folder(user, "output_dir", overwrite=True)
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match="is a file, not a folder"):
        claim_run_folder(tmp_path / "file", "output_dir")


def test_claim_asks_the_legacy_rule_only_for_unmarked_non_empty_folders(tmp_path):
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "config.yaml").write_text("x")
    calls = []
    claim_run_folder(tmp_path / "old", "output_dir", legacy=lambda f: calls.append(f) or True)
    assert calls == [tmp_path / "old"]
    with pytest.raises(ConfigError):
        claim_run_folder(tmp_path / "old", "output_dir", legacy=lambda f: False)


def test_temporaries_are_named_distinctively():
    assert is_temporary_name(".last.safetensors.mie-tmp-ab_c1234")
    for name in (".notes.tmp", ".last.safetensors.abcd1234.tmp", "x.mie-tmp-abcd1234", ".x.mie-tmp-abc"):
        assert not is_temporary_name(name)


def test_atomic_writes_use_the_distinctive_name(tmp_path):
    with atomic_path(tmp_path / "w.bin") as tmp:
        assert is_temporary_name(tmp.name) and tmp.name.startswith(".w.bin.mie-tmp-")
        tmp.write_bytes(b"1")
    assert (tmp_path / "w.bin").read_bytes() == b"1" and foreign_entries(tmp_path) == ["w.bin"]


def test_only_our_temporaries_in_a_marked_folder_are_removed(tmp_path):
    ours, notes, old = tmp_path / ".results.json.mie-tmp-x1y2z3w4", tmp_path / ".notes.tmp", tmp_path / ".a.abcd1234.tmp"
    for path in (ours, notes, old):
        path.write_text("x")
    assert remove_temporaries(tmp_path) == [] and ours.exists()  # no marker: not ours, nothing touched
    write_marker(tmp_path, "lm")
    assert remove_temporaries(tmp_path) == [ours]
    assert notes.read_text() == "x" and old.read_text() == "x" and has_marker(tmp_path)


def test_checkpoint_folder_temporaries_go_inside_a_marked_run(tmp_path):
    write_marker(tmp_path, "lm")
    checkpoints = tmp_path / "checkpoints"
    checkpoints.mkdir()
    leftover, notes = checkpoints / ".last.json.mie-tmp-abcdefgh", checkpoints / ".notes.tmp"
    leftover.write_text("x")
    notes.write_text("n")
    assert remove_temporaries(checkpoints) == [leftover] and notes.exists()


def test_a_missing_parent_is_made_only_inside_the_current_directory(tmp_path, monkeypatch, caplog):
    cwd, elsewhere = tmp_path / "cwd", tmp_path / "elsewhere"
    cwd.mkdir()
    elsewhere.mkdir()
    monkeypatch.chdir(cwd)
    with caplog.at_level(logging.INFO, logger="mie.io.ownership"):
        assert prepare_output_file(Path("out/sub/e.safetensors"), "OUT") == Path("out/sub/e.safetensors")
    assert (cwd / "out" / "sub").is_dir()
    assert [r.getMessage() for r in caplog.records] == ["created the folder out/sub "
                                                        f"({cwd / 'out'} did not exist)"]
    with pytest.raises(ConfigError) as exc:
        prepare_output_file(elsewhere / "a" / "b" / "e.safetensors", "OUT")
    assert str(exc.value) == (f"OUT: the folder {elsewhere / 'a'} does not exist — create it first "
                              f"(mkdir -p {elsewhere / 'a'}) or choose a folder that exists")
    assert not (elsewhere / "a").exists()
    prepare_output_file(elsewhere / "e.safetensors", "OUT")  # an existing folder needs nothing made
    prepare_output_folder(elsewhere / "shards", "OUT_DIR")  # the folder named itself is made ...
    assert (elsewhere / "shards").is_dir()
    with pytest.raises(ConfigError, match="does not exist"):  # ... but not its missing parents
        prepare_output_folder(elsewhere / "x" / "shards", "OUT_DIR")


def test_a_run_folders_missing_parents_are_made_anywhere_but_in_system_trees(tmp_path, monkeypatch, caplog):
    monkeypatch.chdir(tmp_path)
    with caplog.at_level(logging.INFO, logger="mie.io.ownership"):
        create_folder(tmp_path / "a" / "b" / "run", "output_dir", anywhere=True)
    assert (tmp_path / "a" / "b" / "run").is_dir() and len(caplog.records) == 1
    with pytest.raises(ConfigError, match=r"^output_dir: the folder /no-such-mie-folder does not exist"):
        create_folder("/no-such-mie-folder/run", "output_dir", anywhere=True)


@pytest.mark.parametrize("out", ["/etc/x.png", "/usr/x.png", "/x.png"])
def test_no_file_is_written_into_a_system_folder(out, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=r"^--sheet: / ?\S* is (a system folder|the filesystem root), which mie"):
        prepare_output_file(out, "--sheet")


def test_one_file_may_go_into_tmp_or_home_but_not_a_folder_of_its_own_there(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    assert prepare_output_file("/tmp/mie-ownership-test.png", "--sheet") == Path("/tmp/mie-ownership-test.png")
    assert prepare_output_file(tmp_path / "e.safetensors", "OUT") == tmp_path / "e.safetensors"
    for folder in ("/tmp", tmp_path):
        with pytest.raises(ConfigError, match="which mie never writes into"):
            prepare_output_folder(folder, "OUT_DIR")


def test_a_file_output_that_is_a_folder_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="is a folder — give a file name"):
        prepare_output_file(tmp_path, "OUT")
    atomic_write_text(tmp_path / "f", "x")
    with pytest.raises(ConfigError, match="is a file, not a folder"):
        prepare_output_folder(tmp_path / "f", "OUT_DIR")
