"""`mie data translation-pairs`: a corpus from gettext catalogs with its counts; one line for bad input;
`mie translate` refuses a run of another recipe."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import yaml

from mie.cli import main

_spec = importlib.util.spec_from_file_location("_gettext_tests", Path(__file__).parents[1] / "data" /
                                               "test_gettext_pairs.py")
assert _spec is not None and _spec.loader is not None
_gettext_tests = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_gettext_tests)
write_mo = _gettext_tests.write_mo


def _locale(root: Path) -> Path:
    for i, name in enumerate(("coreutils", "tar", "sed", "grep", "gzip")):
        write_mo(root / "de" / "LC_MESSAGES" / f"{name}.mo",
                 {f"cannot read file {i}": f"Datei {i} kann nicht gelesen werden", f"_Quit {name}": f"{name} _beenden",
                  "write error %s": "Schreibfehler %s"})
    return root


def test_translation_pairs_writes_the_splits_and_prints_counts(tmp_path: Path, capsys) -> None:
    locale = _locale(tmp_path / "locale")
    assert main(["data", "translation-pairs", "--from", "gettext", "--target", "de", "--locale-dir", str(locale),
                 str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert "train:" in out and "test:" in out and "messages read" in out
    for split in ("train", "valid", "test"):
        assert (tmp_path / "out" / f"{split}.en").is_file() and (tmp_path / "out" / f"{split}.de").is_file()
    german = "".join((tmp_path / "out" / f"{split}.de").read_text(encoding="utf-8") for split in ("train", "valid", "test"))
    assert "Schreibfehler %s\n" in german and "_beenden" in german  # messages as written, placeholders kept


def test_translation_pairs_bad_input_is_one_line(tmp_path: Path, capsys) -> None:
    locale = _locale(tmp_path / "locale")
    assert main(["data", "translation-pairs", "--target", "xx", "--locale-dir", str(locale), str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no gettext catalogs" in err[0] and "languages with catalogs here: de" in err[0]
    assert main(["data", "translation-pairs", "--target", "de", "--min-words", "0", str(tmp_path / "o")]) == 1
    assert "--min-words" in capsys.readouterr().err


def test_translate_refuses_a_run_of_another_recipe(tmp_path: Path, capsys) -> None:
    (tmp_path / "config.yaml").write_text(yaml.safe_dump({"recipe": "lm"}))
    assert main(["translate", str(tmp_path), "hello"]) == 1
    err = capsys.readouterr().err
    assert err == (f"mie translate: error: RUN_DIR: {tmp_path} is a language-model run, not a translation run — pass "
                   "the folder of a run trained with recipe: seq2seq (e.g. configs/translate_en_de.yaml)\n")
