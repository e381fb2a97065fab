"""The gettext parallel corpus: cleaning of hand-written messages, plural and context entries,
package-disjoint splits with no English shared across them, files the parallel readers load, clear errors."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest

from mie.data.gettext_pairs import (
    assign_groups,
    build_gettext_pairs,
    catalog_pairs,
    clean_message,
    clean_pair,
    package_group,
)
from mie.data.translation import read_parallel_files
from mie.errors import DataError

HEADER = "Content-Type: text/plain; charset=UTF-8\nPlural-Forms: nplurals=2; plural=(n != 1);\n"


def write_mo(path: Path, messages: dict[str, str]) -> None:
    """A GNU .mo file (little-endian, no hash table) of ``msgid -> msgstr`` (plurals: NUL-joined forms)."""
    entries = sorted({"": HEADER, **messages}.items())
    ids = [k.encode() for k, _ in entries]
    strs = [v.encode() for _, v in entries]
    n = len(entries)
    start = 7 * 4 + 16 * n
    offsets, blob = [], b""
    for data in ids + strs:
        offsets.append((len(data), start + len(blob)))
        blob += data + b"\0"
    head = struct.pack("<7I", 0x950412DE, 0, n, 28, 28 + 8 * n, 0, 0)
    table = b"".join(struct.pack("<2I", *o) for o in offsets)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(head + table + blob)


@pytest.mark.parametrize(("raw", "clean"), [
    ("Cannot open file %s: %d errors", "Cannot open file: errors"),
    ("Unknown key %(name)s in {0} and {section.key}", "Unknown key in and"),
    ("%1$s: invalid option -- '%2$c'", "invalid option --"),
    ("<b>Bold</b> and <i>italic</i> &amp; more", "Bold and italic & more"),
    ("_File", "File"), ("&Edit", "Edit"), ("Save _As…", "Save As…"),
    ("keep user_name and R&D", "keep user_name and R&D"),
    ("100%% done", "100% done"), ("%b %d, %Y at %H:%M", "at:"),
    ("cannot stat ‘%s’", "cannot stat"), ("kann »%s« nicht öffnen", "kann nicht öffnen"),
    ("  spaced\n  out\t text ", "spaced out text"),
    ("(%d minutes left)", "(minutes left)"),
    ("-h, --help  show help", "-h, --help show help"),
])
def test_clean_message(raw: str, clean: str) -> None:
    assert clean_message(raw) == clean


def test_clean_pair_drops_empty_numeric_short_and_long_pairs() -> None:
    assert clean_pair("_Open %s", "Ö_ffnen %s") == ("Open", "Öffnen")
    assert clean_pair("%s", "%s") == "empty"
    assert clean_pair("%d: 1.0", "%d: 1,0") == "no letters"
    assert clean_pair("Quit", "Beenden", min_words=2) == "too short"
    assert clean_pair("a " * 50, "b " * 50) == "too long"


def test_catalog_entries_plurals_and_contexts() -> None:
    catalog = {"": "header", "Open": "Öffnen", "menu\x04Quit": "Beenden", ("%d file", 0): "%d Datei",
               ("%d file", 1): "%d Dateien", "Empty": ""}
    assert sorted(catalog_pairs(catalog)) == [("%d file", "%d Datei"), ("Open", "Öffnen"), ("Quit", "Beenden")]


def test_package_groups_and_assignment() -> None:
    assert package_group("iso_639-3") == package_group("iso_3166") == "iso"
    assert package_group("gtk20-properties") == package_group("gtk20") == "gtk"
    sizes = {"a": 50, "b": 10, "c": 10, "d": 30}
    assignment = assign_groups(sizes, (0.1, 0.1), seed=0)
    assert set(assignment.values()) <= {"train", "valid", "test"}
    for split in ("valid", "test"):
        assert sum(sizes[g] for g, s in assignment.items() if s == split) <= 10


def _locale(root: Path) -> Path:
    messages = {
        "coreutils": {"cannot open %s": "kann %s nicht öffnen", "_File": "_Datei", "write error": "Schreibfehler",
                      "menu\x04Quit": "Beenden", "%d file\x00%d files": "%d Datei\x00%d Dateien"},
        "gtk20": {"Open a file": "Eine Datei öffnen", "write error": "Fehler beim Schreiben"},
        "gtk20-properties": {"Default width": "Vorgabebreite"},
        "tar": {"write error": "Schreibfehler", "unknown option": "unbekannte Option"},
        "sed": {"no input files": "keine Eingabedateien", "missing command": "fehlender Befehl"},
        "iso_639-3": {"German": "Deutsch"},
    }
    for name, entries in messages.items():
        write_mo(root / "de" / "LC_MESSAGES" / f"{name}.mo", entries)
    (root / "de" / "LC_MESSAGES" / "broken.mo").write_bytes(b"not a catalog")
    return root


def test_build_writes_package_disjoint_splits_that_the_readers_load(tmp_path: Path) -> None:
    locale = _locale(tmp_path / "locale")
    corpus = build_gettext_pairs(tmp_path / "out", "de", locale_dir=locale, valid_fraction=0.2, test_fraction=0.2,
                                 seed=1, keep_placeholders=False)
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["pairs"] == corpus.pairs and sum(corpus.pairs.values()) > 0
    assert "iso_639-3" not in sum(corpus.packages.values(), [])  # the iso group is left out by default
    groups = {split: {package_group(p) for p in names} for split, names in corpus.packages.items()}
    assert not (groups["train"] & groups["valid"]) and not (groups["train"] & groups["test"])
    assert not (groups["valid"] & groups["test"])
    sources = {}
    for split in ("train", "valid", "test"):
        pairs = read_parallel_files(tmp_path / "out" / f"{split}.en", tmp_path / "out" / f"{split}.de")
        assert len(pairs) == corpus.pairs[split]
        sources[split] = {s for s, _ in pairs}
        for source, target in pairs:
            assert "%" not in source + target and "_" not in source + target and source and target
    assert not (sources["train"] & sources["valid"]) and not (sources["train"] & sources["test"])
    everything = {s for split in sources.values() for s in split}
    assert {"cannot open", "File", "Quit", "file", "write error"} <= everything | sources["train"]
    one_word = build_gettext_pairs(tmp_path / "long", "de", locale_dir=locale, min_words=2, exclude=())
    assert all(len(s.split()) >= 2 for s in (tmp_path / "long" / "train.en").read_text().splitlines())
    assert "iso_639-3" in sum(one_word.packages.values(), [])


def test_build_keeps_placeholders_markup_and_line_breaks_by_default(tmp_path: Path) -> None:
    locale = tmp_path / "locale"
    write_mo(locale / "de" / "LC_MESSAGES" / "app.mo", {
        "cannot open %s": "kann %s nicht öffnen", "_File": "_Datei", "Usage:\n  app <b>FILE</b>\n":
        "Aufruf:\n  app <b>DATEI</b>\n", "%d file\x00%d files": "%d Datei\x00%d Dateien"})
    write_mo(tmp_path / "vim" / "de" / "LC_MESSAGES" / "vim.mo", {"E37: No write": "E37: Nicht geschrieben"})
    corpus = build_gettext_pairs(tmp_path / "out", "de", locale_dir=(locale, tmp_path / "vim"), valid_fraction=0,
                                 test_fraction=0)
    pairs = dict(read_parallel_files(tmp_path / "out" / "train.en", tmp_path / "out" / "train.de"))
    assert pairs == {"cannot open %s": "kann %s nicht öffnen", "_File": "_Datei", "%d file": "%d Datei",
                     "Usage:\\napp <b>FILE</b>\\n": "Aufruf:\\napp <b>DATEI</b>\\n",
                     "E37: No write": "E37: Nicht geschrieben"}
    assert corpus.packages["train"] == ["app", "vim"]
    assert json.loads((tmp_path / "out" / "manifest.json").read_text())["format"] == 2


def test_missing_catalogs_and_bad_language_are_one_clear_error(tmp_path: Path) -> None:
    locale = _locale(tmp_path / "locale")
    with pytest.raises(DataError, match=r"no gettext catalogs .* for language 'xx'.*languages with catalogs here: de"):
        build_gettext_pairs(tmp_path / "out", "xx", locale_dir=locale)
    with pytest.raises(DataError, match="this machine has no gettext catalogs"):
        build_gettext_pairs(tmp_path / "out", "de", locale_dir=tmp_path / "nowhere")
    with pytest.raises(DataError, match="not a language code"):
        build_gettext_pairs(tmp_path / "out", "../etc", locale_dir=locale)
