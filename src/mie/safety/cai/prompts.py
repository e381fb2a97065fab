"""The prompts of Constitutional-AI training and of its held-out measurement.

``data/cai_prompts.jsonl`` holds red-team (``harmful``) and ``helpful`` prompts, each in a ``train``
or a ``test`` split; the test prompts are never used in training (tests check that none is a
near-duplicate of a training prompt)::

    red_team = load_cai_prompts(split="train", kind="harmful")
    held_out = load_cai_prompts(split="test")
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from mie.errors import DataError
from mie.io.cache import read_jsonl

SPLITS = ("train", "test")
KINDS = ("harmful", "helpful")


@dataclass(frozen=True)
class CAIPrompt:
    """One prompt: its ``id``, ``split`` (train/test), ``kind`` (harmful/helpful) and the principle it tests."""

    id: str
    split: str
    kind: str
    principle: str
    prompt: str


def packaged_file(name: str) -> Path:
    """A file of ``mie.safety``'s packaged data folder."""
    return Path(str(resources.files("mie.safety") / "data" / name))


def default_prompts_path() -> Path:
    """The packaged prompt file."""
    return packaged_file("cai_prompts.jsonl")


def load_cai_prompts(path: str | Path | None = None, split: str | None = None, kind: str | None = None,
                     limit: int = 0) -> list[CAIPrompt]:
    """The prompts of ``path`` (default: the packaged set) in ``split`` and of ``kind``, file order;
    ``limit`` > 0 keeps ``limit`` of them evenly spaced over the file (the set is grouped by topic, so
    its head alone would be one topic). A malformed line is a one-line error naming file:line."""
    source = Path(path) if path else default_prompts_path()
    fix = 'write one {"id", "split", "kind", "principle", "prompt"} object per line'
    out: list[CAIPrompt] = []
    for where, row in read_jsonl(source, fix):
        if not isinstance(row, dict) or not isinstance(row.get("prompt"), str) or not row["prompt"].strip():
            raise DataError("expected an object with a non-empty prompt", where=where, fix=fix)
        if row.get("split") not in SPLITS or row.get("kind") not in KINDS:
            raise DataError(f"split must be one of {SPLITS} and kind one of {KINDS}, got "
                            f"{row.get('split')!r} and {row.get('kind')!r}", where=where, fix=fix)
        item = CAIPrompt(str(row.get("id", where)), row["split"], row["kind"], str(row.get("principle", "none")),
                         row["prompt"].strip())
        if (split is None or item.split == split) and (kind is None or item.kind == kind):
            out.append(item)
    if 0 < limit < len(out):
        out = [out[i * len(out) // limit] for i in range(limit)]
    return out
