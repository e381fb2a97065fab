"""The shapes generator's claim on its folder: a signed marker listing every file it wrote.

``dataset.json`` in a generated folder says ``"generator": "mie-shapes"``, the generator version, the
parameters and ``files``: the relative path and size of every file written (``captions.jsonl`` and
``images/<split>/<split>_NNNNN.png``), with a SHA-256 ``signature`` over the rest of the marker.
Before generating, ``claim_folder`` checks the target folder and refuses (``DataError``) unless it is
missing, empty, or holds a genuine marker of ours whose listed files are unchanged; it then removes
only the files that marker lists. Files a user added are never deleted: they stay where they are, and
one that sits where a new file would be written makes the generator refuse. It imports no torch.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from mie.errors import DataError

__all__ = ["GENERATOR", "MANIFEST", "MARKER", "claim_folder", "image_path", "read_marker", "write_marker"]

GENERATOR = "mie-shapes"
MANIFEST = "captions.jsonl"
MARKER = "dataset.json"
SPLITS = ("train", "val", "test", "test_heldout")
_LEGACY_GENERATOR = "mie.data.synthetic"  # version 1 wrote a marker without a file list
_LEGACY_KEYS = {"generator", "version", "seed", "image_size", "num_train", "num_val", "num_test", "num_test_heldout",
                "shapes", "colors", "heldout_pairs"}
_TEMP = ".dataset.json.mie-tmp"
_OWN_PATH = re.compile(r"captions\.jsonl|images/(train|val|test|test_heldout)/\1_\d{5,}\.png")
FIX = ("choose an empty data.path for the generated shapes data, or set data.format to the format of your "
       "data (auto, jsonl, csv, flickr, coco or webdataset)")


def image_path(split: str, index: int) -> str:
    """The relative path the generator writes image ``index`` of ``split`` to."""
    return f"images/{split}/{split}_{index:05d}.png"


def planned_files(sizes: dict[str, int]) -> list[str]:
    """Every file a generation with these split sizes writes, the marker aside."""
    return [MANIFEST] + [image_path(split, i) for split in SPLITS for i in range(sizes.get(split, 0))]


def read_marker(out: Path) -> dict[str, Any] | None:
    """The generator's own marker in ``out`` (``files`` maps path -> size or None), or None if there is none.

    A ``dataset.json`` that is not ours, or ours but edited, is a ``DataError``: what it lists cannot be
    trusted, so nothing in the folder may be deleted.
    """
    path = out / MARKER
    if not os.path.lexists(path):
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        data = None
    if not isinstance(data, dict) or data.get("generator") not in (GENERATOR, _LEGACY_GENERATOR):
        raise DataError("is not the shapes generator's marker; refusing to delete or overwrite anything in "
                        "its folder", where=path, fix=FIX)
    if data["generator"] == _LEGACY_GENERATOR:
        return _legacy_marker(path, data)
    files = data.get("files")
    if (data.get("signature") != _signature(data) or not isinstance(files, dict)
            or not all(_OWN_PATH.fullmatch(str(k)) and (v is None or type(v) is int) for k, v in files.items())):
        raise DataError("the shapes generator's marker was edited (its signature or file list does not check); "
                        "refusing to delete or overwrite anything in its folder", where=path, fix=FIX)
    return data


def write_marker(out: Path, params: dict[str, Any], files: dict[str, int | None], complete: bool) -> None:
    """Write the signed marker atomically; ``complete=False`` marks a generation in progress."""
    marker = {"generator": GENERATOR, **params, "complete": complete, "files": files}
    marker["signature"] = _signature(marker)
    temp = out / _TEMP
    temp.write_text(json.dumps(marker, indent=2) + "\n", encoding="utf-8")
    os.replace(temp, out / MARKER)


def file_sizes(out: Path, paths: Iterable[str]) -> dict[str, int | None]:
    """``{path: size in bytes}`` of files the generator just wrote."""
    return {rel: (out / rel).stat().st_size for rel in paths}


def claim_folder(out: Path, planned: list[str], params: dict[str, Any]) -> None:
    """Make ``out`` ready for a generation that writes ``planned``, or refuse with a ``DataError``.

    A missing or empty folder is taken as is. A folder with our marker loses exactly the files that
    marker lists, after checking none was changed and no other file sits where ``planned`` writes.
    Anything else (a foreign ``dataset.json``, a ``captions.jsonl`` or images without our marker)
    is refused and left untouched. On return the marker says "in progress" and lists ``planned``.
    """
    if os.path.lexists(out) and not out.is_dir():
        raise DataError("is a file, not a folder; the shapes generator writes a folder", where=out, fix=FIX)
    marker = read_marker(out) if out.is_dir() else None
    if marker is None:
        found = _files_under(out)
        if found:
            shown = ", ".join(found[:3]) + (f" and {len(found) - 3} more" if len(found) > 3 else "")
            raise DataError(f"holds files the shapes generator did not write ({shown}); refusing to delete or "
                            "overwrite them", where=out, fix=FIX)
        own: dict[str, int | None] = {}
    else:
        own = marker["files"]
        _check_unchanged(out, own)
    for rel in planned:
        if rel not in own and os.path.lexists(out / rel):
            raise DataError("was not written by the shapes generator and a new generation would overwrite it; "
                            "nothing was changed", where=out / rel, fix=FIX)
    out.mkdir(parents=True, exist_ok=True)
    # Listed before anything is removed or written: an interrupted run can always be cleaned up next time.
    write_marker(out, params, {**dict.fromkeys(own), **dict.fromkeys(planned)}, complete=False)
    for rel in own:
        if os.path.lexists(out / rel):
            (out / rel).unlink()
    for folder in [out / "images" / split for split in SPLITS] + [out / "images"]:
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()


# --------------------------------------------------------------------------- helpers


def _signature(marker: dict[str, Any]) -> str:
    """SHA-256 of the marker's canonical JSON without its ``signature``."""
    body = {k: v for k, v in marker.items() if k != "signature"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _legacy_marker(path: Path, data: dict[str, Any]) -> dict[str, Any]:
    """A version-1 marker (no file list) with the files that version wrote for its sizes."""
    sizes = {split: data.get(f"num_{split}") for split in SPLITS}
    if set(data) != _LEGACY_KEYS or not all(type(n) is int and n >= 0 for n in sizes.values()):
        raise DataError("the shapes generator's marker was edited; refusing to delete or overwrite anything in "
                        "its folder", where=path, fix=FIX)
    return {**data, "complete": True, "files": dict.fromkeys(planned_files(sizes))}


def _check_unchanged(out: Path, own: dict[str, int | None]) -> None:
    """Refuse when a listed file was replaced (other size, a link, a folder) since it was written."""
    root = out.resolve()
    for rel, size in own.items():
        path = out / rel
        if not os.path.lexists(path):
            continue
        if path.is_symlink() or not path.is_file() or root not in path.resolve().parents:
            raise DataError("is not a file the shapes generator wrote (a link or a folder); refusing to delete it",
                            where=path, fix=FIX)
        if size is not None and path.stat().st_size != size:
            raise DataError(f"changed since the shapes generator wrote it ({size} bytes then, "
                            f"{path.stat().st_size} now); refusing to delete it", where=path,
                            fix="move it out of the folder to keep it, or delete it to regenerate")


def _files_under(out: Path) -> list[str]:
    """Relative paths of everything but folders under ``out`` (links included), sorted."""
    if not out.is_dir():
        return []
    found = []
    for folder, dirs, names in os.walk(out):
        base = Path(folder)
        names += [d for d in dirs if (base / d).is_symlink()]
        found += [(base / name).relative_to(out).as_posix() for name in names if name != _TEMP or base != out]
    return sorted(found)
