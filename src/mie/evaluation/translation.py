"""Translation quality: corpus BLEU and chrF through ``sacrebleu``, and two baselines to read them by.

* :func:`translation_scores` — ``{"bleu", "chrf"}`` of hypotheses against one reference each
  (sacrebleu's defaults: BLEU with the 13a tokenizer, chrF with character 6-grams, beta 2);
* copying the source (the floor: what untranslated output scores, names and commands included);
* :class:`WordDictionary` — a word-by-word dictionary learned from the training pairs: each source
  word goes to the target word it co-occurs with most strongly by the Dice coefficient
  ``2 c(s, t) / (c(s) + c(t))`` (Och & Ney, 2003), counting pairs; unknown words are copied::

    dictionary = WordDictionary.learn(train_pairs)
    scores = translation_scores([dictionary.translate(s) for s, _ in test], [t for _, t in test])
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence

from mie.errors import ConfigError

_WORD_ONLY = re.compile(r"\w+(?:['’-]\w+)*")
_WORD = re.compile(_WORD_ONLY.pattern + r"|[^\w\s]")


def require_sacrebleu():  # noqa: ANN201 - returns the module
    """The ``sacrebleu`` module, or a one-line error saying how to install it."""
    try:
        import sacrebleu
    except ModuleNotFoundError:
        raise ConfigError("BLEU and chrF need the sacrebleu package, which is not installed",
                          fix="pip install -e '.[translate]' (or pip install sacrebleu)") from None
    return sacrebleu


def translation_scores(hypotheses: Sequence[str], references: Sequence[str]) -> dict[str, float]:
    """Corpus ``bleu`` and ``chrf`` (0-100) of ``hypotheses`` against one reference per line."""
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses for {len(references)} references")
    sacrebleu = require_sacrebleu()
    hyps, refs = list(hypotheses), [list(references)]
    return {"bleu": float(sacrebleu.corpus_bleu(hyps, refs).score),
            "chrf": float(sacrebleu.corpus_chrf(hyps, refs).score)}


def words(text: str) -> list[str]:
    """Words and single punctuation marks of ``text``."""
    return _WORD.findall(text)


class WordDictionary:
    """A source-word -> target-word map learned from aligned sentence pairs by the Dice coefficient."""

    def __init__(self, table: dict[str, str]) -> None:
        self.table = table

    @classmethod
    def learn(cls, pairs: Iterable[tuple[str, str]], min_count: int = 2) -> WordDictionary:
        """For every lower-cased source word seen with a target word in at least ``min_count`` pairs,
        the target word (in its most frequent spelling) of highest Dice coefficient."""
        src_count: Counter[str] = Counter()
        tgt_count: Counter[str] = Counter()
        joint: Counter[tuple[str, str]] = Counter()
        spellings: dict[str, Counter[str]] = defaultdict(Counter)
        for source, target in pairs:
            src_words = {w.lower() for w in words(source) if w[0].isalnum()}
            tgt_words = set()
            for w in words(target):
                if w[0].isalnum():
                    tgt_words.add(w.lower())
                    spellings[w.lower()][w] += 1
            src_count.update(src_words)
            tgt_count.update(tgt_words)
            joint.update((s, t) for s in src_words for t in tgt_words)
        best: dict[str, tuple[float, str]] = {}
        for (s, t), count in joint.items():
            if count < min_count:
                continue
            dice = 2.0 * count / (src_count[s] + tgt_count[t])
            if s not in best or (dice, t) > best[s]:
                best[s] = (dice, t)
        return cls({s: spellings[t].most_common(1)[0][0] for s, (_, t) in best.items()})

    def translate(self, text: str) -> str:
        """``text`` with every known word replaced by its entry; punctuation, spacing and unknown
        words are kept as they are."""
        def replace(match: re.Match[str]) -> str:
            word = match.group(0)
            entry = self.table.get(word.lower(), word)
            return word if entry.lower() == word.lower() else entry

        return _WORD_ONLY.sub(replace, text)

    def __len__(self) -> int:
        return len(self.table)
