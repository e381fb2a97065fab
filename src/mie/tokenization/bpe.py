"""Byte-level BPE: the model stage (rank-based merging with a word cache) and its trainer.

Tokens are byte strings. Like GPT-2, each byte is shown as one printable Unicode character
(:func:`bytes_to_unicode`), so vocabularies and merges can be written as text (``vocab.json`` /
``merges.txt``) and every byte sequence, hence every text, has an encoding.

Training works on the table of unique pre-tokenized words with their counts, never on the raw corpus:
a pair-count table plus a pair -> words index let each merge touch only the words that contain the pair,
and a max-heap with lazy invalidation finds the next pair. Ties are broken deterministically: the pair
with the highest count wins; among equal counts, the lexicographically smallest pair of byte strings
``(left_bytes, right_bytes)`` wins.
"""

from __future__ import annotations

import functools
import heapq
import sys
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from itertools import chain

from mie.errors import TokenizerError
from mie.tokenization.schema import RETRAIN_FIX, id_error, short

_SHIFT = 20  # pair keys are (left << 20) | right: int keys hash much faster than tuples
_MASK = (1 << _SHIFT) - 1
MAX_VOCAB_SIZE = 1 << _SHIFT


@functools.lru_cache(maxsize=1)
def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character table.

    Printable Latin-1 bytes map to themselves; the other 68 bytes (controls, space, ...) map to
    ``chr(256 + n)`` in byte order, so no token string holds whitespace or control characters.
    The dict's order (printable bytes first) is the one CLIP uses for its first 256 ids.
    """
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + extra)
            extra += 1
    return table


BYTE_TO_CHAR = bytes_to_unicode()
CHAR_TO_BYTE = {c: b for b, c in BYTE_TO_CHAR.items()}
# str.translate table: a latin-1 decoded byte string -> its byte-level characters in one C call.
_LATIN1_TO_CHARS = {b: c for b, c in BYTE_TO_CHAR.items()}


def bytes_to_token(data: bytes) -> str:
    """The byte-level string of ``data`` (one character per byte)."""
    return data.decode("latin-1").translate(_LATIN1_TO_CHARS)


def token_to_bytes(token: str) -> bytes | None:
    """The bytes of a byte-level string, or None when it holds a character outside the byte alphabet."""
    try:
        return bytes(CHAR_TO_BYTE[c] for c in token)
    except KeyError:
        return None


def check_vocab(vocab: Mapping[str, int]) -> None:
    """Raise a TokenizerError naming the entry unless ``vocab`` maps strings to the ids ``0..len(vocab)-1``.

    Every id is an int (not a bool), and the ids are distinct and contiguous from 0, so the id -> bytes
    table has no holes and an id outside ``0..N-1`` is the only kind of unknown id.
    """
    size = len(vocab)
    if size > MAX_VOCAB_SIZE:
        raise TokenizerError(f"the vocabulary has {size} entries, more than {MAX_VOCAB_SIZE}", fix=RETRAIN_FIX)
    owner: dict[int, str] = {}
    for token, idx in vocab.items():
        if not isinstance(token, str) or type(idx) is not int:
            raise TokenizerError(f"vocabulary entry {short(token)}: id {short(idx)} is not an integer",
                                 fix=RETRAIN_FIX)
        if not 0 <= idx < size:
            raise TokenizerError(f"vocabulary entry {short(token)}: id {idx} is outside 0..{size - 1} (ids must "
                                 "be 0..N-1 for N entries, without gaps)", fix=RETRAIN_FIX)
        other = owner.setdefault(idx, token)
        if other != token:
            raise TokenizerError(f"vocabulary entries {short(other)} and {short(token)} share id {idx}",
                                 fix=RETRAIN_FIX)


class BPEModel:
    """Byte-level BPE over words: ``encode_word(word) -> ids`` and ``decode_bytes(ids) -> bytes``.

    ``vocab`` maps byte-level token strings to ids; ``merges`` lists pairs of token strings, lowest rank
    first. ``end_of_word_suffix`` (CLIP's ``"</w>"``) marks a word's last symbol: that symbol starts as
    ``char + suffix`` and decodes to its bytes followed by a space. ``special_tokens`` are vocab entries
    that are not bytes; a pre-token equal to one maps straight to its id (CLIP's pattern matches
    ``<|endoftext|>``). Words are cached in an LRU of ``cache_size`` entries; most words of real text hit it.
    ``drop_missing_bytes``: a vocabulary may lack some bytes (SmolLM2 has no 0xC0, 0xF5.., a few controls);
    such bytes are then dropped from the text before merging, as HF ``tokenizers`` does without an unk token.
    """

    def __init__(
        self,
        vocab: Mapping[str, int],
        merges: Sequence[tuple[str, str]],
        end_of_word_suffix: str = "",
        special_tokens: Iterable[str] = (),
        cache_size: int = 200_000,
        drop_missing_bytes: bool = False,
    ) -> None:
        self.vocab = dict(vocab)
        self.drop_missing_bytes = bool(drop_missing_bytes)
        check_vocab(self.vocab)
        self.merges = [tuple(m) for m in merges]
        self.end_of_word_suffix = end_of_word_suffix
        self.special_tokens = {t: self._id_of(t, "special token") for t in special_tokens}
        self._byte_ids = [self._byte_id(BYTE_TO_CHAR[b], "byte") for b in range(256)]
        self._last_byte_ids = self._byte_ids
        if end_of_word_suffix:
            self._last_byte_ids = [
                self._byte_id(BYTE_TO_CHAR[b] + end_of_word_suffix, "word-end byte") for b in range(256)
            ]
        self._missing = -1 in self._byte_ids or -1 in self._last_byte_ids
        self._ranks: dict[tuple[int, int], tuple[int, int]] = {}
        for rank, (left, right) in enumerate(self.merges):
            pair = (self._id_of(left, f"merge {rank} left part"), self._id_of(right, f"merge {rank} right part"))
            merged = self._id_of(left + right, f"merge {rank} result")
            self._ranks.setdefault(pair, (rank, merged))  # a repeated merge keeps its first rank
        self._id_bytes = self._build_id_bytes()
        self.encode_word = functools.lru_cache(maxsize=cache_size)(self._encode_word)

    def _id_of(self, token: str, what: str) -> int:
        if token not in self.vocab:
            raise TokenizerError(f"{what} {short(token)} is missing from the vocabulary; the vocab and merges "
                                 "disagree", fix=RETRAIN_FIX)
        return self.vocab[token]

    def _byte_id(self, token: str, what: str) -> int:
        """Id of a byte symbol; -1 (dropped when encoding) for a missing one under ``drop_missing_bytes``."""
        if self.drop_missing_bytes and token not in self.vocab:
            return -1
        return self._id_of(token, what)

    def _build_id_bytes(self) -> list[bytes]:
        size = max(self.vocab.values(), default=-1) + 1
        table = [b""] * size
        suffix = self.end_of_word_suffix
        for token, idx in self.vocab.items():
            if token in self.special_tokens:
                table[idx] = token.encode("utf-8")
                continue
            space = b""
            if suffix and token.endswith(suffix):
                token, space = token[: -len(suffix)], b" "
            raw = token_to_bytes(token)
            table[idx] = (token.encode("utf-8") if raw is None else raw) + space
        return table

    @property
    def byte_ids(self) -> frozenset[int]:
        """Ids of the single-byte symbols words start from (with and without the word-end suffix)."""
        return (frozenset(self._byte_ids) | frozenset(self._last_byte_ids)) - {-1}

    @property
    def vocab_size(self) -> int:
        """One more than the largest id."""
        return len(self._id_bytes)

    def _encode_word(self, word: str) -> tuple[int, ...]:
        special = self.special_tokens.get(word)
        if special is not None:
            return (special,)
        data = word.encode("utf-8")
        if not data:
            return ()
        byte_ids = self._byte_ids
        ids = [byte_ids[b] for b in data[:-1]]
        ids.append(self._last_byte_ids[data[-1]])
        if self._missing:
            ids = [i for i in ids if i >= 0]
        return tuple(self.merge_ids(ids))

    def merge_ids(self, ids: list[int]) -> list[int]:
        """Apply merges to a symbol list: repeatedly merge every occurrence of the lowest-ranked pair."""
        ranks = self._ranks
        while len(ids) > 1:
            best = None
            for pair in zip(ids, ids[1:]):
                found = ranks.get(pair)
                if found is not None and (best is None or found < best):
                    best, best_pair = found, pair
            if best is None:
                break
            left, right = best_pair
            merged = best[1]
            out: list[int] = []
            i, n = 0, len(ids)
            while i < n:
                if ids[i] == left and i + 1 < n and ids[i + 1] == right:
                    out.append(merged)
                    i += 2
                else:
                    out.append(ids[i])
                    i += 1
            ids = out
        return ids

    def encode_words(self, words: Iterable[str]) -> list[int]:
        """Ids of a sequence of pre-tokenized words, concatenated."""
        return list(chain.from_iterable(map(self.encode_word, words)))

    def decode_bytes(self, ids: Iterable[int]) -> bytes:
        """The bytes the ids stand for (the decoder stage); exact inverse of encoding."""
        table = self._id_bytes
        ids = ids if isinstance(ids, list) else list(ids)
        try:
            if ids and min(ids) < 0:  # a negative index would silently wrap around to the last tokens
                raise id_error(min(ids), len(table))
            return b"".join([table[i] for i in ids])
        except IndexError:  # too large: found by the lookup itself, at no cost to valid ids
            raise id_error(max(ids), len(table)) from None
        except TypeError:
            bad = next((i for i in ids if type(i) is not int), None)
            raise TokenizerError(f"token id {short(bad)} is not an integer", fix="pass integer ids") from None

    def token_bytes(self, idx: int) -> bytes:
        """The bytes of one id."""
        return self.decode_bytes([idx])


class BPETrainer:
    """Learn byte-level BPE merges from word counts.

    ``vocab_size`` counts everything: the special tokens (ids ``0..k-1``), the 256 bytes (ids
    ``k..k+255`` in byte order), then one id per merge. Merging stops early when the best pair occurs fewer
    than ``min_frequency`` times. ``show_progress`` prints plain progress lines to stderr.
    """

    def __init__(
        self,
        vocab_size: int = 8192,
        min_frequency: int = 2,
        special_tokens: Sequence[str] = (),
        show_progress: bool = False,
    ) -> None:
        if len(set(special_tokens)) != len(special_tokens):
            raise TokenizerError(f"special_tokens has duplicates: {list(special_tokens)}", fix="list each once")
        floor = 256 + len(special_tokens)
        if not floor <= vocab_size < MAX_VOCAB_SIZE:
            raise TokenizerError(
                f"vocab_size must be in [{floor}, {MAX_VOCAB_SIZE}) (256 bytes + {len(special_tokens)} "
                f"special tokens), got {vocab_size}", fix="choose a vocab_size in that range"
            )
        if min_frequency < 1:
            raise TokenizerError(f"min_frequency must be >= 1, got {min_frequency}", fix="use 1 or more")
        self.vocab_size = vocab_size
        self.min_frequency = min_frequency
        self.special_tokens = list(special_tokens)
        self.show_progress = show_progress

    def train(self, word_counts: Mapping[str, int]) -> tuple[dict[str, int], list[tuple[str, str]]]:
        """Return ``(vocab, merges)`` as byte-level strings, learned from ``{word: count}``."""
        n_special = len(self.special_tokens)
        tok_bytes: list[bytes] = [t.encode("utf-8") for t in self.special_tokens]
        tok_bytes += [bytes([b]) for b in range(256)]
        byte_tokens = {b: i for i, b in enumerate(tok_bytes) if i >= n_special}
        words: list[list[int]] = []
        freqs: list[int] = []
        for word, count in word_counts.items():
            data = word.encode("utf-8")
            if len(data) > 1:  # a one-byte word has no pair to merge
                words.append([n_special + b for b in data])
                freqs.append(count)
        counts, where = self._count_pairs(words, freqs)
        heap = [(-c, tok_bytes[k >> _SHIFT], tok_bytes[k & _MASK], k) for k, c in counts.items()]
        heapq.heapify(heap)
        specials = set(self.special_tokens)
        merges: list[tuple[int, int]] = []
        target = self.vocab_size - len(tok_bytes)
        while len(tok_bytes) < self.vocab_size and heap:
            neg, _, _, key = heapq.heappop(heap)
            count = counts.get(key, 0)
            if count != -neg:  # stale entry: counts of old pairs only fall, so re-queue the true count
                if count > 0:
                    heapq.heappush(heap, (-count, tok_bytes[key >> _SHIFT], tok_bytes[key & _MASK], key))
                continue
            if count < self.min_frequency:
                break
            left, right = key >> _SHIFT, key & _MASK
            merged = tok_bytes[left] + tok_bytes[right]
            if bytes_to_token(merged) in specials:  # the learned token would shadow a special token
                del counts[key]
                continue
            new_id = byte_tokens.get(merged)
            if new_id is None:
                new_id = byte_tokens[merged] = len(tok_bytes)
                tok_bytes.append(merged)
            merges.append((left, right))
            for k in self._merge_pair(words, freqs, counts, where, left, right, new_id):
                c = counts[k]
                if c > 0:
                    heapq.heappush(heap, (-c, tok_bytes[k >> _SHIFT], tok_bytes[k & _MASK], k))
            if self.show_progress and len(merges) % 500 == 0:
                print(f"bpe: {len(merges)}/{target} merges, last count {count}", file=sys.stderr, flush=True)
        if self.show_progress:
            print(f"bpe: done, {len(merges)} merges, vocab {len(tok_bytes)}", file=sys.stderr, flush=True)
        vocab = {t: i for i, t in enumerate(self.special_tokens)}
        for i in range(n_special, len(tok_bytes)):
            vocab[bytes_to_token(tok_bytes[i])] = i
        merge_strings = [(bytes_to_token(tok_bytes[a]), bytes_to_token(tok_bytes[b])) for a, b in merges]
        return vocab, merge_strings

    @staticmethod
    def _count_pairs(
        words: list[list[int]], freqs: list[int]
    ) -> tuple[dict[int, int], defaultdict[int, set[int]]]:
        counts: defaultdict[int, int] = defaultdict(int)
        where: defaultdict[int, set[int]] = defaultdict(set)
        for wi, (word, freq) in enumerate(zip(words, freqs)):
            for a, b in zip(word, word[1:]):
                key = (a << _SHIFT) | b
                counts[key] += freq
                where[key].add(wi)
        return counts, where

    @staticmethod
    def _merge_pair(
        words: list[list[int]],
        freqs: list[int],
        counts: defaultdict[int, int],
        where: defaultdict[int, set[int]],
        left: int,
        right: int,
        new_id: int,
    ) -> set[int]:
        """Merge ``(left, right)`` in every word holding it; update neighbour pair counts in place.

        Returns the pair keys whose count rose (they need a fresh heap entry). The index ``where`` is
        only ever added to: a word listed under a pair it no longer holds is found and skipped here.
        """
        risen: set[int] = set()
        key_pair = (left << _SHIFT) | right
        new_hi = new_id << _SHIFT
        for wi in where.pop(key_pair, ()):
            word = words[wi]
            try:
                i = word.index(left)
            except ValueError:
                continue
            freq = freqs[wi]
            n = len(word)
            out = word[:i]
            changed = False
            while i < n:
                sym = word[i]
                if sym == left and i + 1 < n and word[i + 1] == right:
                    changed = True
                    if out:
                        prev = out[-1] << _SHIFT
                        counts[prev | left] -= freq
                        k = prev | new_id
                        counts[k] += freq
                        risen.add(k)
                        where[k].add(wi)
                    if i + 2 < n:
                        nxt = word[i + 2]
                        counts[(right << _SHIFT) | nxt] -= freq
                        k = new_hi | nxt
                        counts[k] += freq
                        risen.add(k)
                        where[k].add(wi)
                    out.append(new_id)
                    i += 2
                else:
                    out.append(sym)
                    i += 1
            if changed:
                words[wi] = out
        counts.pop(key_pair, None)
        return risen
