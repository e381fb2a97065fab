"""Whose folder is it? The run marker, and the places mie refuses to write.

Every run folder mie creates carries ``.mie-run.json`` (recipe, mie version, creation time), written
before anything else. A folder is *ours* when it carries that marker (or sits directly inside one that
does: ``sft/`` of a cai run); only then may mie overwrite files in it or delete leftovers of its own.
The filesystem root, the home folder and system folders are refused outright, and a missing parent
folder is created only inside the current directory (with one INFO line), never silently elsewhere.
"""

from __future__ import annotations

import datetime
import json
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mie.errors import ConfigError
from mie.io.atomic import atomic_write_text, is_temporary_name

logger = logging.getLogger(__name__)

RUN_MARKER = ".mie-run.json"
_FORMAT = "mie-run-v1"
_MAX_MARKER_BYTES = 64 << 10

# Folders that are refused themselves (a run there would mix with everything else in them) ...
_EXACT = frozenset({"/", "/tmp", "/var", "/var/tmp", "/home", "/mnt", "/media", "/opt", "/srv", "/run", "/root",
                    "/Users", "/Volumes", "/private", "/private/tmp", "/private/var"})
# ... and the trees nothing of mie belongs in, at any depth.
_TREES = ("/bin", "/boot", "/dev", "/etc", "/lib", "/lib32", "/lib64", "/libx32", "/proc", "/sbin", "/sys",
          "/usr", "/System", "/Library", "/Applications", "/private/etc")


def _resolved(path: str | os.PathLike[str]) -> Path:
    """``path`` absolute, ``~`` expanded and links followed (``/lib`` -> ``/usr/lib``), as far as it exists."""
    return Path(path).expanduser().resolve()


def _home() -> Path | None:
    home = os.environ.get("HOME")
    return _resolved(home) if home else None


def system_folder_reason(path: str | os.PathLike[str], whole: bool = True) -> str | None:
    """Why mie must not fill the folder ``path`` (the root, the home folder, a system folder), or None.

    ``whole=False`` asks about writing one file there: then /tmp, the home folder and the like are fine,
    and only the root and trees such as /usr or /etc are refused."""
    resolved = _resolved(path)
    if resolved == Path(resolved.anchor):
        return "is the filesystem root"
    home = _home()
    if whole and home is not None and resolved == home:
        return "is your home folder"
    # Below the home folder or the current directory is the user's own place, even in a tree such as
    # /usr (a project checked out in /usr/src/app).
    own = [p for p in (home, _resolved(Path.cwd())) if p is not None and p != Path(p.anchor)]
    if (whole and resolved.as_posix() in _EXACT) or (not any(p in resolved.parents for p in own) and _in_system_tree(resolved)):
        return "is a system folder"
    return None


def refuse_system_folder(path: str | os.PathLike[str], where: str) -> None:
    """Raise a one-line :class:`ConfigError` when ``path`` is the root, the home folder or a system folder."""
    reason = system_folder_reason(path)
    if reason is not None:
        raise ConfigError(f"{path} {reason}, which mie never writes into", where=where,
                          fix="choose a folder of its own, e.g. runs/NAME")


def _in_system_tree(path: Path) -> bool:
    """Whether ``path`` (resolved) is the filesystem root or inside a tree such as /usr or /etc."""
    text = path.as_posix()
    return path == Path(path.anchor) or any(text == t or text.startswith(t + "/") for t in _TREES)


def create_folder(folder: str | os.PathLike[str], where: str, named: bool = True, anywhere: bool = False) -> None:
    """Create ``folder`` and its missing parents, or refuse in one line.

    A folder the user ``named`` as the output is created wherever its parent exists. Missing parents
    (and ``folder`` itself when it is only the place of a file, ``named=False``) are created inside the
    current directory, or ``anywhere`` but in the root or a system tree (a run folder's parents), with one
    INFO line; elsewhere a missing folder is a :class:`ConfigError` naming it and the fix, so that a typo
    does not silently scatter folders over the disk.
    """
    folder = Path(folder)
    if folder.is_dir():
        return
    target = _resolved(folder)
    missing = target
    while not missing.parent.exists():
        missing = missing.parent
    if not missing.parent.is_dir():
        raise ConfigError(f"{missing.parent} is a file, not a folder", where=where, fix="choose another path")
    parents_missing = missing != target or not named
    inside_cwd = _resolved(Path.cwd()) in missing.parents
    if parents_missing and not inside_cwd and (not anywhere or _in_system_tree(missing.parent)):
        raise ConfigError(f"the folder {missing} does not exist", where=where,
                          fix=f"create it first (mkdir -p {missing}) or choose a folder that exists")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create {folder} ({exc.strerror})", where=where,
                          fix="choose a folder you can write to") from None
    if parents_missing:
        logger.info("created the folder %s (%s did not exist)", folder, missing)


def prepare_output_file(path: str | os.PathLike[str], where: str) -> Path:
    """Check where a command writes one file: not into a system folder, its folder existing or created
    inside the current directory (:func:`create_folder`). Returns ``path``."""
    path = Path(path)
    parent = path.parent
    reason = system_folder_reason(parent, whole=False)
    if reason is not None:
        raise ConfigError(f"{parent} {reason}, which mie never writes into", where=where,
                          fix="write the file somewhere of your own")
    if path.is_dir():
        raise ConfigError(f"{path} is a folder", where=where, fix="give a file name")
    create_folder(parent, where, named=False)
    return path


def prepare_output_folder(folder: str | os.PathLike[str], where: str) -> Path:
    """Check a folder a command writes several files into: not a system folder, and created (with its
    missing parents) only inside the current directory (:func:`create_folder`). Returns ``folder``."""
    folder = Path(folder)
    refuse_system_folder(folder, where)
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"{folder} is a file, not a folder", where=where, fix="choose a folder")
    create_folder(folder, where)
    return folder


# ---------------------------------------------------------------------- the run marker
def read_marker(folder: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The run marker of ``folder`` (None when it has none, or something else by that name)."""
    path = Path(folder) / RUN_MARKER
    try:
        if path.is_symlink() or not path.is_file() or path.stat().st_size > _MAX_MARKER_BYTES:
            return None
        data = json.loads(path.read_bytes().decode("utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError):
        return None
    return data if isinstance(data, dict) and data.get("format") == _FORMAT else None


def has_marker(folder: str | os.PathLike[str]) -> bool:
    """Whether ``folder`` carries the run marker."""
    return read_marker(folder) is not None


def write_marker(folder: str | os.PathLike[str], recipe: str | None) -> Path:
    """Mark ``folder`` as a run of ``recipe`` (an existing marker is kept: it records the creation)."""
    from mie import __version__

    path = Path(folder) / RUN_MARKER
    if has_marker(folder):
        return path
    created = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    marker = {"format": _FORMAT, "recipe": recipe, "mie_version": __version__, "created": created}
    return atomic_write_text(path, json.dumps(marker, indent=2) + "\n")


def is_ours(folder: str | os.PathLike[str], legacy: Callable[[Path], bool] | None = None) -> bool:
    """Whether mie may write over and clean ``folder``: it carries the marker, sits directly inside a
    folder that does, or ``legacy(folder)`` recognises a run written before the marker existed."""
    folder = Path(folder)
    return has_marker(folder) or has_marker(folder.parent) or (legacy is not None and legacy(folder))


def foreign_entries(folder: str | os.PathLike[str]) -> list[str]:
    """The names in ``folder`` other than our own temporaries, sorted (``[]`` for an empty folder)."""
    return sorted(e.name for e in Path(folder).iterdir() if not is_temporary_name(e.name))


def claim_run_folder(folder: str | os.PathLike[str], where: str, legacy: Callable[[Path], bool] | None = None,
                     overwrite: bool = False) -> None:
    """Refuse ``folder`` as a run folder unless it is missing, empty or ours (:func:`is_ours`).

    The root, the home folder and system folders are refused even when empty. ``overwrite`` changes
    nothing here: it only ever replaces a run of ours, never a folder of the user's.
    """
    folder = Path(folder)
    refuse_system_folder(folder, where)
    if not folder.exists() and not folder.is_symlink():
        return
    if not folder.is_dir():
        raise ConfigError(f"{folder} is a file, not a folder", where=where, fix="choose another output_dir")
    try:
        entries = foreign_entries(folder)
    except OSError as exc:
        raise ConfigError(f"cannot list {folder} ({exc.strerror})", where=where,
                          fix="choose another output_dir") from None
    if not entries or is_ours(folder, legacy):
        return
    shown = ", ".join(entries[:3]) + (f" and {len(entries) - 3} more" if len(entries) > 3 else "")
    why = "mie only ever replaces a run of its own; " if overwrite else ""
    raise ConfigError(f"{folder} holds files that are not a mie run ({shown})", where=where,
                      fix=f"{why}choose another output_dir, or empty the folder first")
