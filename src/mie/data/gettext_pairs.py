"""An offline parallel corpus: English -> another language from the gettext catalogs on this machine.

Every installed program that speaks several languages ships ``/usr/share/locale/<lang>/LC_MESSAGES/
<package>.mo``: its English messages (msgids) with their translations. :func:`build_gettext_pairs`
reads them (``gettext.GNUTranslations``, no unpickling), cleans each pair (:func:`clean_message`) and
writes line-aligned ``train|valid|test.en`` / ``.<lang>`` files that
``mie.data.translation.read_parallel_files`` loads, plus ``manifest.json``::

    info = build_gettext_pairs("data/translation/en-de", "de")
    pairs = read_parallel_files("data/translation/en-de/train.en", "data/translation/en-de/train.de")

The splits are disjoint by package: each package *group* (:func:`package_group`; ``iso_639-3``
and ``iso_3166`` are one group, ``gtk20`` and ``gtk20-properties`` another) goes wholly to one
split, and a valid or test message whose English also occurs in an earlier split is dropped, so the
test set holds messages of programs never seen in training.
"""

from __future__ import annotations

import gettext
import html
import logging
import random
import re
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

from mie.data.placeholders import escape_newlines
from mie.errors import DataError
from mie.io.atomic import atomic_write_text
from mie.io.cache import save_json_atomic

logger = logging.getLogger(__name__)

LOCALE_DIR = Path("/usr/share/locale")
# Every catalog tree on the machine: the system's, and programs that keep their own (vim's ~2,000 messages).
LOCALE_DIRS = (LOCALE_DIR, *sorted(Path("/usr/share/vim").glob("vim*/lang")))
CORPUS_FORMAT = 2  # 2: placeholders and markup kept (line breaks as \\n); 1: stripped
SPLITS = ("train", "valid", "test")
SOURCE_LANG = "en"
DEFAULT_EXCLUDE = ("iso",)

_PRINTF = re.compile(r"%(?:\d+\$)?(?:\([^)\s]{1,40}\))?[-+ #0']*(?:\d+|\*)?(?:\.(?:\d+|\*))?"
                     r"(?:hh|h|ll|l|L|q|j|z|Z|t|I)?(?:<PRI\w+>|[A-Za-z])")
_BRACES = re.compile(r"\$?\{(?:\d*|[A-Za-z_][\w.\[\]]*)(?:![rsa])?(?::[^{}]*)?\}")
_TAG = re.compile(r"</?[A-Za-z][\w:-]*(?:\s[^<>]*)?/?>")
_ACCELERATOR = re.compile(r"(?<![\w&_])[_&](?=\w)")
_EMPTY_QUOTES = re.compile(r"'\s*'|\"\s*\"|`\s*'|`\s*`|‘\s*’|“\s*”|„\s*“|‚\s*‘|«\s*»|»\s*«|‹\s*›|›\s*‹|\(\s*\)|\[\s*\]")
_SPACE_BEFORE = re.compile(r"\s+([.,;:!?)\]])")
_SPACE_AFTER = re.compile(r"([(\[])\s+")
_LEADING = re.compile(r"^[\s:;,.]+")
_LETTER = re.compile(r"[^\W\d_]")


@dataclass
class GettextCorpus:
    """What :func:`build_gettext_pairs` wrote: ``pairs`` per split, ``packages`` per split and why
    raw messages were dropped (``dropped``)."""

    out_dir: Path
    target: str
    pairs: dict[str, int]
    packages: dict[str, list[str]]
    dropped: dict[str, int]
    raw_messages: int


def clean_message(text: str) -> str:
    """``text`` without format placeholders, markup, keyboard accelerators and runs of whitespace.

    >>> clean_message("_Open '%s' in <b>%(app)s</b>")
    'Open in'
    """
    text = text.replace("%%", "\x00")  # a literal percent sign survives the placeholder pass
    text = _BRACES.sub(" ", _PRINTF.sub(" ", text))
    text = html.unescape(_TAG.sub(" ", text)).replace("\x00", "%")
    text = _ACCELERATOR.sub("", text)
    text = " ".join(text.split())
    while True:
        stripped = " ".join(_EMPTY_QUOTES.sub(" ", text).split())
        if stripped == text:
            break
        text = stripped
    text = _SPACE_AFTER.sub(r"\1", _SPACE_BEFORE.sub(r"\1", text))
    return _LEADING.sub("", text).strip()


def catalog_pairs(catalog: dict) -> list[tuple[str, str]]:
    """The ``(msgid, translation)`` pairs of a ``GNUTranslations._catalog``.

    The header (empty msgid) is skipped; a context (``ctx\\x04msgid``) is removed from the msgid; a
    plural entry ``(msgid, i)`` contributes its singular form only (``i == 0``, which is the n == 1
    form in languages with several forms and the only form in languages with one).
    """
    pairs = []
    for key, value in catalog.items():
        if isinstance(key, tuple):
            key, index = key
            if index != 0:
                continue
        if not key or not isinstance(value, str) or not value:
            continue
        pairs.append((key.split("\x04", 1)[-1], value))
    return pairs


def clean_pair(source: str, target: str, min_words: int = 1, max_words: int = 40,
               keep_placeholders: bool = False) -> tuple[str, str] | str:
    """The cleaned pair, or the reason it is dropped (``"empty"``, ``"too short"``, ``"too long"``,
    ``"no letters"``). The checks read the messages without placeholders; with ``keep_placeholders`` the
    pair kept is the messages as written (placeholders, markup and accelerators in place, line breaks
    as ``\\n``, other whitespace runs as one space), for :mod:`mie.data.placeholders` to mask."""
    kept = escape_newlines(source), escape_newlines(target)
    for marker in "_&":  # a translation may put the accelerator mid-word (Ö_ffnen) when the msgid has one
        if _ACCELERATOR.search(source) and source.count(marker) == 1 and target.count(marker) == 1:
            target = re.sub(re.escape(marker) + r"(?=\w)", "", target)
    src, tgt = clean_message(source), clean_message(target)
    if not src or not tgt:
        return "empty"
    if not _LETTER.search(src) or not _LETTER.search(tgt):
        return "no letters"
    n_src, n_tgt = len(src.split()), len(tgt.split())
    if min(n_src, n_tgt) < min_words:
        return "too short"
    if max(n_src, n_tgt) > max_words:
        return "too long"
    return kept if keep_placeholders else (src, tgt)


def package_group(name: str) -> str:
    """The group a catalog belongs to: its name's leading letters (``iso_639-3`` -> ``iso``,
    ``gtk20-properties`` -> ``gtk``, ``pg_dump-15`` -> ``pg``), so renamed copies and sub-packages of
    one program never fall on both sides of a split."""
    match = re.match(r"[A-Za-z]+", name)
    return (match.group(0) if match else name).lower()


def _dirs(locale_dir: Path | str | tuple | list) -> list[Path]:
    return [Path(d) for d in locale_dir] if isinstance(locale_dir, (tuple, list)) else [Path(locale_dir)]


def available_languages(locale_dir: Path | tuple[Path, ...] = LOCALE_DIRS) -> list[str]:
    """Languages with at least one ``.mo`` catalog under ``locale_dir`` (a folder or several)."""
    return sorted({p.name for d in _dirs(locale_dir) if d.is_dir() for p in d.iterdir()
                   if any((p / "LC_MESSAGES").glob("*.mo"))})


def read_catalogs(target: str, locale_dir: Path | tuple[Path, ...] = LOCALE_DIRS) -> dict[str, list[tuple[str, str]]]:
    """Raw ``(msgid, translation)`` pairs per package (``.mo`` file name) for language ``target``, from
    every folder of ``locale_dir``."""
    folders = [d / target / "LC_MESSAGES" for d in _dirs(locale_dir)]
    files = [f for folder in folders if folder.is_dir() for f in sorted(folder.glob("*.mo"))]
    if not files:
        known = available_languages(locale_dir)
        hint = f"languages with catalogs here: {', '.join(known[:40])}" if known else \
            "this machine has no gettext catalogs (install programs' language packs, e.g. the locales of coreutils)"
        raise DataError(f"no gettext catalogs (*.mo) for language {target!r}", where=folders[0], fix=hint)
    packages: dict[str, list[tuple[str, str]]] = {}
    for path in files:
        try:
            with path.open("rb") as fh:
                catalog = gettext.GNUTranslations(fh)._catalog  # noqa: SLF001 - the parsed msgid -> msgstr map
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            logger.warning("skipping %s: %s", path, exc)
            continue
        name = path.stem if path.stem not in packages else f"{path.stem}-{len(packages)}"
        packages[name] = catalog_pairs(catalog)
    return packages


def assign_groups(sizes: dict[str, int], fractions: tuple[float, float], seed: int) -> dict[str, str]:
    """Split name per group: groups in a seeded order fill ``test`` then ``valid`` up to their
    fractions of all pairs (a group that would overshoot is skipped); the rest go to ``train``."""
    total = sum(sizes.values())
    targets = {"valid": fractions[0] * total, "test": fractions[1] * total}
    filled = {"valid": 0, "test": 0}
    order = sorted(sizes)
    random.Random(seed).shuffle(order)
    assignment = {}
    for group in order:
        split = next((s for s in ("test", "valid") if filled[s] + sizes[group] <= targets[s]), "train")
        if split != "train":
            filled[split] += sizes[group]
        assignment[group] = split
    return assignment


def build_gettext_pairs(out_dir: str | Path, target: str, *,
                        locale_dir: str | Path | tuple[Path, ...] = LOCALE_DIRS,
                        min_words: int = 1, max_words: int = 40, valid_fraction: float = 0.05,
                        test_fraction: float = 0.05, seed: int = 0,
                        exclude: tuple[str, ...] = DEFAULT_EXCLUDE, keep_placeholders: bool = True) -> GettextCorpus:
    """Extract, clean, deduplicate and split English -> ``target`` pairs; write them to ``out_dir``.

    ``exclude`` names package groups left out (default: ``iso``, the ISO 639 / 3166 / 4217 / 15924
    name lists, whose 30,000 entries are mostly untranslated proper names rather than messages).
    ``keep_placeholders`` (the default) writes the messages with their placeholders and markup
    (:func:`clean_pair`); False strips them.

    Within a split each English message keeps its most frequent translation; a valid or test
    message whose English occurs in train (or test in valid) is dropped.
    """
    if not re.fullmatch(r"[A-Za-z]{2,3}(?:_[A-Za-z]{2})?(?:@\w+)?", target):
        raise DataError(f"{target!r} is not a language code", where="--target", fix="use a code such as de or pt_BR")
    packages = {name: pairs for name, pairs in read_catalogs(target, locale_dir).items()
                if package_group(name) not in exclude}
    dropped: Counter[str] = Counter()
    cleaned: dict[str, list[tuple[str, str]]] = {}
    for name, raw in packages.items():
        kept = []
        for source, translation in raw:
            pair = clean_pair(source, translation, min_words, max_words, keep_placeholders)
            if isinstance(pair, str):
                dropped[pair] += 1
            else:
                kept.append(pair)
        cleaned[name] = kept
    groups: dict[str, list[str]] = defaultdict(list)
    for name in cleaned:
        groups[package_group(name)].append(name)
    sizes = {g: len({s for n in names for s, _ in cleaned[n]}) for g, names in groups.items()}
    assignment = assign_groups(sizes, (valid_fraction, test_fraction), seed)
    seen: set[str] = set()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    counts, split_packages = {}, {}
    for split in SPLITS:
        names = sorted(n for g, ns in groups.items() if assignment[g] == split for n in ns)
        # Keyed by the message without placeholders, so "_Open" in test counts as seen when train has "Open".
        votes: dict[str, Counter[tuple[str, str]]] = defaultdict(Counter)
        for name in names:
            for source, translation in cleaned[name]:
                votes[clean_message(source) if keep_placeholders else source][source, translation] += 1
        fresh = [s for s in votes if s not in seen]
        dropped[f"duplicate within {split}"] += sum(sum(v.values()) for v in votes.values()) - len(votes)
        dropped[f"{split} source seen in an earlier split"] += len(votes) - len(fresh)
        seen.update(fresh)
        lines = [votes[s].most_common(1)[0][0] for s in fresh]
        atomic_write_text(out_dir / f"{split}.{SOURCE_LANG}", "".join(s + "\n" for s, _ in lines))
        atomic_write_text(out_dir / f"{split}.{target}", "".join(t + "\n" for _, t in lines))
        counts[split], split_packages[split] = len(lines), names
    corpus = GettextCorpus(out_dir, target, counts, split_packages,
                           {k: v for k, v in sorted(dropped.items()) if v},
                           sum(len(v) for v in packages.values()))
    save_json_atomic(out_dir / "manifest.json", {
        "source": "gettext", "format": CORPUS_FORMAT if keep_placeholders else 1,
        "locale_dir": [str(d) for d in _dirs(locale_dir)], "languages": [SOURCE_LANG, target],
        "pairs": counts, "packages": split_packages, "dropped": corpus.dropped,
        "raw_messages": corpus.raw_messages, "excluded_groups": list(exclude), "min_words": min_words, "max_words": max_words, "seed": seed})
    return corpus
