"""Checkpoints as transactions: every file of one save is published together, or not at all.

A save at step ``s`` writes each file (weights, sidecar, trainer state, ...) into a fresh commit
folder ``checkpoints/commits/<s>-<token>/``, fsyncs them, hashes them, and carries the files of
the previous commit it does not replace (``best`` when it did not improve) by hard link. Then it
publishes by renaming ``checkpoints/manifest.json`` into place: the one atomic step. A kill at any
moment before that rename leaves the previous commit complete and authoritative; after it, the new
one. The old commit folder is removed afterwards, and the friendly names ``checkpoints/last.safetensors``,
``best.json``, ... are refreshed as hard links to the committed files (a kill in between leaves them
stale; :meth:`CheckpointStore.repair` relinks them on the next start and readers go through the manifest).

The manifest lists every file with its size and SHA-256, so a corrupted state or weights file is
reported (:class:`~mie.errors.CheckpointError`) instead of loaded.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from mie.errors import CheckpointError, storage_error
from mie.io.atomic import _fsync_dir, _fsync_file, atomic_path, atomic_write_text, is_temporary_name
from mie.io.faults import fault_point
from mie.io.ownership import is_ours

MANIFEST = "manifest.json"
COMMITS = "commits"
_FORMAT = "mie-checkpoint-manifest-v1"
_MAX_MANIFEST_BYTES = 1 << 20

Writer = Callable[[Path], Any]


def _sha256(path: Path) -> str:
    from mie.io.checkpoint import sha256_file

    return sha256_file(path)


def _link_or_copy(source: Path, target: Path) -> None:
    """Hard-link ``source`` to ``target`` (no data copied); copy where links are not supported."""
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


class CheckpointStore:
    """The transactional checkpoint folder of one run (``<output_dir>/checkpoints``)."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)
        self.manifest_path = self.directory / MANIFEST

    # ------------------------------------------------------------------ reading
    def manifest(self) -> dict[str, Any] | None:
        """The published manifest, or None when nothing was ever committed here."""
        path = self.manifest_path
        if not path.is_file():
            return None
        fix = "restore the checkpoints folder from a backup, or start the run again without --resume"
        if path.stat().st_size > _MAX_MANIFEST_BYTES:
            raise CheckpointError("is too large to be a checkpoint manifest", where=path, fix=fix)
        try:
            data = json.loads(path.read_bytes().decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError):
            raise CheckpointError("is not valid JSON", where=path, fix=fix) from None
        files = data.get("files") if isinstance(data, dict) else None
        if (not isinstance(data, dict) or data.get("format") != _FORMAT or not isinstance(data.get("commit"), str)
                or not isinstance(files, dict) or not isinstance(data.get("step"), int)
                or not all(isinstance(v, dict) and isinstance(v.get("sha256"), str) for v in files.values())
                or any(not isinstance(name, str) or "/" in name or name.startswith(".") for name in files)
                or "/" in data["commit"] or data["commit"].startswith(".")):
            raise CheckpointError(f"is not a {_FORMAT} manifest", where=path, fix=fix)
        return data

    def commit_dir(self, manifest: Mapping[str, Any] | None = None) -> Path | None:
        """The folder of the published commit (None when there is none)."""
        manifest = self.manifest() if manifest is None else manifest
        return None if manifest is None else self.directory / COMMITS / manifest["commit"]

    def names(self) -> list[str]:
        """The file names in the published commit."""
        manifest = self.manifest()
        return sorted(manifest["files"]) if manifest else []

    def resolve(self, name: str, verify: bool = True) -> Path | None:
        """The committed file ``name`` (None if the commit has none), its size and SHA-256 checked."""
        manifest = self.manifest()
        if manifest is None or name not in manifest["files"]:
            return None
        path = self.commit_dir(manifest) / name
        entry = manifest["files"][name]
        fix = "the checkpoint is damaged; restore it from a backup or start the run again without --resume"
        if not path.is_file():
            raise CheckpointError(f"the committed file {name} is missing", where=path.parent, fix=fix)
        if verify and (path.stat().st_size != entry.get("size") or _sha256(path) != entry["sha256"]):
            raise CheckpointError(f"does not match the checksum in {self.manifest_path}", where=path, fix=fix)
        return path

    # ------------------------------------------------------------------ writing
    def commit(self, step: int, writers: Mapping[str, Writer], carry: Iterable[str] = (),
               info: Mapping[str, Any] | None = None) -> Path:
        """Publish a new commit holding the files ``writers`` make plus ``carry`` from the previous one.

        ``writers`` maps a file name to a function that writes that file at the path it is given.
        Returns the new commit folder. Names in ``carry`` absent from the previous commit are skipped.
        """
        previous = self.manifest()
        old_dir = self.commit_dir(previous)
        new_dir = self.directory / COMMITS / f"{step:09d}-{secrets.token_hex(4)}"
        new_dir.mkdir(parents=True)
        try:
            files = self._publish(step, writers, carry, info, previous, old_dir, new_dir)
        except Exception:
            shutil.rmtree(new_dir, ignore_errors=True)  # a failed save (disk full) leaves the previous commit
            raise
        fault_point("commit:published")
        self._link_names(new_dir, files)
        fault_point("commit:cleanup")
        self.remove_stale(keep=new_dir.name)
        return new_dir

    def _publish(self, step: int, writers: Mapping[str, Writer], carry: Iterable[str],
                 info: Mapping[str, Any] | None, previous: Mapping[str, Any] | None, old_dir: Path | None,
                 new_dir: Path) -> dict[str, dict[str, Any]]:
        """Write, hash and carry the files into ``new_dir``, then rename the manifest into place."""
        files: dict[str, dict[str, Any]] = {}
        for name, write in writers.items():
            fault_point(f"commit:write:{name}")
            write(new_dir / name)
            _fsync_file(new_dir / name)
        for name in carry:
            if previous is not None and name in previous["files"] and name not in writers:
                fault_point(f"commit:carry:{name}")
                _link_or_copy(old_dir / name, new_dir / name)
                files[name] = dict(previous["files"][name])
        for name in writers:
            path = new_dir / name
            files[name] = {"size": path.stat().st_size, "sha256": _sha256(path)}
        _fsync_dir(new_dir)
        fault_point("commit:manifest")
        manifest = {"format": _FORMAT, "step": int(step), "commit": new_dir.name, "files": files,
                    **dict(info or {})}
        try:
            atomic_write_text(self.manifest_path, json.dumps(manifest, indent=2) + "\n")  # the publish
        except OSError as exc:
            raise storage_error(exc, self.manifest_path) from exc
        return files

    def _link_names(self, commit: Path, names: Iterable[str]) -> None:
        """Point ``checkpoints/<name>`` at the committed file (atomic replace of each link)."""
        for name in names:
            fault_point(f"commit:link:{name}")
            with atomic_path(self.directory / name) as tmp:
                tmp.unlink()
                _link_or_copy(commit / name, tmp)

    # ------------------------------------------------------------------ recovery
    def remove_stale(self, keep: str | None = None) -> list[Path]:
        """Delete commit folders the manifest does not name and temporaries of killed writes.

        Only names this module and :mod:`mie.io.atomic` create are touched: ``commits/*`` folders and
        ``.<name>.mie-tmp-XXXXXXXX`` files. Returns what was removed.
        """
        if keep is None:
            manifest = self.manifest()
            keep = manifest["commit"] if manifest else None
        removed: list[Path] = []
        commits = self.directory / COMMITS
        if commits.is_dir():
            for entry in commits.iterdir():
                if entry.name != keep and entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry, ignore_errors=True)
                    removed.append(entry)
        # The folder is ours when it holds our manifest or its run folder carries the marker.
        removed += remove_temporaries(self.directory, owned=self.manifest_path.is_file() or None)
        return removed

    def repair(self) -> None:
        """Bring the friendly names back in line with the manifest after a kill, and remove stale files."""
        manifest = self.manifest()
        if manifest is None:
            self.remove_stale()
            return
        commit = self.commit_dir(manifest)
        stale = []
        for name, entry in manifest["files"].items():
            link = self.directory / name
            try:
                same = link.is_file() and os.path.samefile(link, commit / name)
            except OSError:
                same = False
            if not same and not (link.is_file() and link.stat().st_size == entry.get("size")
                                 and _sha256(link) == entry["sha256"]):
                stale.append(name)
        if stale:
            self._link_names(commit, stale)
        self.remove_stale(keep=manifest["commit"])


def remove_temporaries(directory: str | os.PathLike[str], owned: bool | None = None) -> list[Path]:
    """Delete the temporaries that killed atomic writes left in ``directory``; returns what was removed.

    Only what is ours by name and by place goes: files named as :func:`~mie.io.atomic.atomic_path`
    names them (``.<name>.mie-tmp-XXXXXXXX``), in a folder that carries the run marker or sits directly
    inside one (:func:`~mie.io.ownership.is_ours`; ``owned=True`` when the caller knows otherwise). A
    user's ``.notes.tmp`` is never touched, nor anything in a folder that is not a run of ours.
    """
    directory = Path(directory)
    if not directory.is_dir() or not (owned or is_ours(directory)):
        return []
    removed = []
    for entry in directory.iterdir():
        if is_temporary_name(entry.name) and entry.is_file() and not entry.is_symlink():
            entry.unlink(missing_ok=True)
            removed.append(entry)
    return removed
