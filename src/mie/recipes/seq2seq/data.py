"""The seq2seq recipe's data: the parallel corpus (built from gettext catalogs when absent), the joint
BPE tokenizer and the length-bucketed loaders."""

from __future__ import annotations

import functools
import logging
from pathlib import Path
from typing import Any

from torch.utils.data import DataLoader

from mie.data.gettext_pairs import CORPUS_FORMAT, build_gettext_pairs
from mie.data.placeholders import SPECIAL_TOKENS as PLACEHOLDER_TOKENS
from mie.data.placeholders import map_between, mask, mask_target, strip_sentinels
from mie.data.samplers import BucketBatchSampler
from mie.data.translation import TranslationDataset, collate_translation, read_parallel_files
from mie.errors import DataError, MieError
from mie.evaluation.translation import WordDictionary
from mie.io.cache import read_json
from mie.recipes.seq2seq.config import Seq2SeqRecipeConfig, TranslationDataConfig
from mie.tokenization.base import SPECIAL_TOKENS
from mie.tokenization.factory import train_tokenizer

logger = logging.getLogger(__name__)

Pairs = list[tuple[str, str]]


def split_files(data: TranslationDataConfig, split: str) -> tuple[Path, Path]:
    """The source and target files of ``split``: ``<path>/<split>.<lang>``."""
    folder = Path(data.path)
    return folder / f"{split}.{data.source_lang}", folder / f"{split}.{data.target_lang}"


def _built_format(data: TranslationDataConfig) -> int | None:
    """The ``format`` of the gettext corpus in ``data.path`` (1 when its manifest predates formats), or
    None for a corpus that was not built from gettext catalogs."""
    manifest = Path(data.path) / "manifest.json"
    try:
        info = read_json(manifest, expect_object=True, fix="delete the folder to rebuild it") if manifest.is_file() else {}
    except MieError:
        return None
    return int(info.get("format", 1)) if info.get("source") == "gettext" else None


def ensure_corpus(data: TranslationDataConfig, seed: int = 0) -> None:
    """Build the corpus from gettext catalogs when ``data.path`` has no training files (or holds an
    older gettext build, whose messages had their placeholders stripped) and ``data.build`` allows it;
    a missing corpus that cannot be built is a one-line error."""
    src, tgt = split_files(data, "train")
    stale = data.build == "gettext" and (_built_format(data) or CORPUS_FORMAT) < CORPUS_FORMAT
    if src.is_file() and tgt.is_file() and not stale:
        return
    if data.build != "gettext":
        raise DataError(f"no training pairs ({src.name} and {tgt.name}) in {data.path}", where="data.path",
                        fix="point it at line-aligned <split>.<lang> files, or set data.build: gettext")
    if data.source_lang != "en":
        raise DataError(f"gettext catalogs translate from English, not {data.source_lang!r}",
                        where="data.source_lang", fix="set it to en, or give data.path a corpus of your own")
    logger.info("building the %s-%s corpus from gettext catalogs into %s", data.source_lang, data.target_lang,
                data.path)
    corpus = build_gettext_pairs(data.path, data.target_lang, min_words=data.min_words, max_words=data.max_words,
                                 valid_fraction=data.valid_fraction, test_fraction=data.test_fraction, seed=seed,
                                 exclude=tuple(data.exclude))
    logger.info("corpus: %s pairs (train/valid/test) from %d packages", "/".join(map(str, corpus.pairs.values())),
                sum(len(p) for p in corpus.packages.values()))


def read_split(data: TranslationDataConfig, split: str) -> Pairs:
    """The (source, target) pairs of ``split``."""
    src, tgt = split_files(data, split)
    pairs = read_parallel_files(src, tgt, skip_markup=False)
    if not pairs:
        raise DataError(f"{src} holds no pairs", fix="rebuild the corpus (delete the folder) or fill the files")
    return pairs


def mask_pairs(pairs: Pairs) -> tuple[Pairs, int]:
    """Both sides with their placeholders as sentinels (:mod:`mie.data.placeholders`), and how many pairs
    were dropped because the translation's placeholders differ from the source's."""
    masked = []
    for source, target in pairs:
        src = mask(source)
        tgt = mask_target(target, src)
        if tgt is not None:
            masked.append((src.text, tgt))
    return masked, len(pairs) - len(masked)


def learn_dictionary(train: Pairs, masked: bool = False) -> WordDictionary:
    """The word-by-word dictionary of the training pairs' words (placeholders left out); ``masked``: the
    pairs are already masked."""
    pairs = train if masked else mask_pairs(train)[0]
    return WordDictionary.learn((strip_sentinels(s), strip_sentinels(t)) for s, t in pairs)


def prime(masked_source: str, dictionary: WordDictionary) -> str:
    """A masked source translated word by word (sentinels kept): the source a primed model reads."""
    return map_between(dictionary.translate, masked_source)


def prime_pairs(masked: Pairs, dictionary: WordDictionary | None = None, folds: int = 2) -> Pairs:
    """``masked`` pairs with each source replaced by its word-by-word translation. Without ``dictionary``
    (the training pairs) each of ``folds`` slices is translated by a dictionary learned from the others,
    so the model learns from dictionary output as poor as on unseen messages, not from a dictionary
    that has seen the very pair."""
    if dictionary is not None:
        return [(prime(s, dictionary), t) for s, t in masked]
    primed = list(masked)
    for fold in range(folds):
        rest = [pair for i, pair in enumerate(masked) if i % folds != fold]
        learned = learn_dictionary(rest, masked=True)
        for i in range(fold, len(masked), folds):
            primed[i] = (prime(masked[i][0], learned), masked[i][1])
    return primed


def build_tokenizer(config: Seq2SeqRecipeConfig, train: Pairs) -> Any:
    """``tokenizer.path`` if set, else one byte-level BPE trained on both sides of the training pairs
    (with ``data.mask_placeholders``, masked pairs and one token per placeholder sentinel)."""
    from mie.tokenization.factory import load_any_tokenizer
    from mie.tokenization.normalizers import build_normalizer
    from mie.tokenization.tokenizer import BPETokenizer

    if config.tokenizer.path:
        return load_any_tokenizer(config.tokenizer.path)
    if config.data.mask_placeholders:
        train = mask_pairs(train)[0]
    texts = [s for s, _ in train] + [t for _, t in train]
    if not config.data.mask_placeholders:
        return train_tokenizer("bpe", texts, vocab_size=config.tokenizer.vocab_size,
                               lowercase=config.tokenizer.lowercase)
    trained = BPETokenizer.train(texts, vocab_size=config.tokenizer.vocab_size, min_frequency=1,
                                 special_tokens=(*SPECIAL_TOKENS, *PLACEHOLDER_TOKENS),
                                 normalizer=build_normalizer(lowercase=config.tokenizer.lowercase))
    # split_special_tokens: a sentinel written in the masked text encodes to its one id
    return BPETokenizer(trained.model, trained.normalizer, trained.pre_tokenizer, trained.bos_token,
                        trained.eos_token, trained.pad_token, trained.context_length, split_special_tokens=True)


def masks_placeholders(tokenizer: Any) -> bool:
    """Whether ``tokenizer`` was trained with the placeholder sentinels (runs from before them were not)."""
    specials = getattr(getattr(tokenizer, "model", None), "special_tokens", {})
    return all(token in specials for token in PLACEHOLDER_TOKENS) and getattr(tokenizer, "split_special_tokens", False)


def make_dataset(pairs: Pairs, tokenizer: Any, data: TranslationDataConfig,
                 dictionary: WordDictionary | None = None) -> TranslationDataset:
    """Tokenized training or validation pairs (masked with ``data.mask_placeholders``; with
    ``data.dictionary_prime`` the sources translated word by word, by ``dictionary`` or, for training
    pairs, by :func:`prime_pairs`' held-out dictionaries), too long or badly proportioned ones dropped."""
    dropped = 0
    if data.mask_placeholders:
        pairs, dropped = mask_pairs(pairs)
    if data.dictionary_prime:
        pairs = prime_pairs(pairs, dictionary)
    dataset = TranslationDataset(pairs, tokenizer, min_length=1, max_length=data.max_length, max_ratio=data.max_ratio)
    if dropped:
        dataset.skipped["placeholders differ"] += dropped
        logger.info("%d pairs dropped: the translation's placeholders differ from the source's", dropped)
    return dataset


def train_loader(dataset: TranslationDataset, batch_size: int, seed: int, pad_id: int, max_tokens: int = 0,
                 pin_memory: bool = False) -> DataLoader:
    """Batches of similar-length pairs in a seeded order (the trainer sets the epoch): ``batch_size``
    pairs each, or fewer where a batch would exceed ``max_tokens`` padded tokens (0 = no such limit).
    ``pin_memory`` (for a CUDA device) pins each batch so its copy to the device need not wait."""
    sampler = BucketBatchSampler(dataset.lengths, batch_size, seed=seed, bucket_size_multiplier=50,
                                 max_tokens=max_tokens)
    return DataLoader(dataset, batch_sampler=sampler, collate_fn=functools.partial(collate_translation, pad_id=pad_id),
                      pin_memory=pin_memory)


def val_loader(dataset: TranslationDataset, batch_size: int, pad_id: int, pin_memory: bool = False) -> DataLoader:
    """Validation batches sorted by length (little padding), always in the same order (pinned if ``pin_memory``)."""
    order = sorted(range(len(dataset)), key=lambda i: dataset.lengths[i])
    batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    return DataLoader(dataset, batch_sampler=batches, collate_fn=functools.partial(collate_translation, pad_id=pad_id),
                      pin_memory=pin_memory)
