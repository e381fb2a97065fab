"""The seq2seq recipe's config: the trainer's settings (top level) plus model, data, tokenizer and decoding."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import ClassVar

from mie.config import FRACTION, NON_NEGATIVE, POSITIVE, ConfigError, Rule, one_of
from mie.models.budget import BOUNDS, MAX_BATCH, MAX_BEAM, check_bound, check_training
from mie.models.seq2seq import Seq2SeqConfig
from mie.tokenization.config import TokenizerConfig
from mie.training.config import ScheduleConfig, TrainerConfig

SPLITS = ("train", "valid", "test")


@dataclass
class TranslationDataConfig:
    """Line-aligned ``<split>.<source_lang>`` / ``<split>.<target_lang>`` files in ``path``.

    ``build: gettext`` writes them from this machine's gettext catalogs
    (``mie.data.gettext_pairs``) when ``path`` holds no training files yet; ``build: ""`` never builds.
    ``{source_lang}`` and ``{target_lang}`` in ``path`` (and in the run's ``output_dir`` and
    ``project_name``) are replaced by the languages, so ``--set data.target_lang=fr`` alone switches both.
    """

    RULES: ClassVar[dict[str, Rule]] = {
        "build": one_of("", "gettext"), "min_words": POSITIVE, "max_words": POSITIVE, "max_length": POSITIVE,
        "max_ratio": (lambda v: v >= 1.0, ">= 1"), "batch_size": POSITIVE, "max_tokens": NON_NEGATIVE,
        "eval_batch_size": POSITIVE,
        "max_eval_pairs": NON_NEGATIVE, "valid_decode_pairs": NON_NEGATIVE, "valid_fraction": FRACTION, "test_fraction": FRACTION,
    }

    path: str = "data/translation/{source_lang}-{target_lang}"
    source_lang: str = "en"
    target_lang: str = "de"
    build: str = "gettext"  # "" | gettext: how to make the files when they are missing
    min_words: int = 1  # gettext build: drop pairs with a side shorter than this (2 drops one-word entries)
    max_words: int = 40  # gettext build: drop pairs with a side longer than this
    exclude: list[str] = field(default_factory=lambda: ["iso"])  # gettext build: package groups left out
    valid_fraction: float = 0.05  # gettext build: share of pairs (whole packages) for valid, and test
    test_fraction: float = 0.05
    max_length: int = 64  # tokens per side (longer training pairs are dropped, longer eval sources cut)
    max_ratio: float = 3.0  # training pairs whose longer side exceeds this times the shorter are dropped
    batch_size: int = 64  # training pairs per batch (length-bucketed); with max_tokens, the most per batch
    max_tokens: int = 0  # > 0: a batch also stops at this many padded tokens (pairs x longest side)
    eval_batch_size: int = 100  # sentences decoded at once
    max_eval_pairs: int = 0  # 0 = every pair of an evaluated split
    mask_placeholders: bool = True  # %s, {0}, <b>, \\n, accelerators -> sentinel tokens, restored after decoding
    dictionary_prime: bool = False  # the model reads the word-by-word dictionary's translation of the source
    #                                 (learned from the training pairs) and learns to correct it
    valid_decode_pairs: int = 0  # > 0: every validation also decodes this many valid pairs (greedy) for
    #                              val/bleu and val/chrf, which best_metric may then select the checkpoint by


@dataclass
class Seq2SeqTokenizerConfig(TokenizerConfig):
    """One byte-level BPE for both languages, trained on the training pairs (or read from ``path``)."""

    RULES: ClassVar[dict[str, Rule]] = {"name": one_of("bpe"), "vocab_size": POSITIVE}

    name: str = "bpe"
    vocab_size: int = 8000
    lowercase: bool = False


@dataclass
class DecodeConfig:
    """How the report translates: greedy and beam search, at most ``a * source length + b`` tokens."""

    RULES: ClassVar[dict[str, Rule]] = {"beam": POSITIVE, "length_penalty": NON_NEGATIVE, "max_len_a": NON_NEGATIVE,
                                        "max_len_b": POSITIVE,
                                        "no_repeat_ngram": NON_NEGATIVE}

    beam: int = 4
    length_penalty: float = 0.6  # GNMT alpha; 0 = raw log-probability
    max_len_a: float = 1.5
    max_len_b: int = 10
    constrain_placeholders: bool = True  # each source placeholder's sentinel exactly once (with masking)
    no_repeat_ngram: int = 0  # > 1: no token n-gram twice in a translation (stops an under-trained model's loops)


@dataclass
class Seq2SeqRecipeConfig(TrainerConfig):
    """A translation run: ``Seq2SeqRecipeConfig()`` trains English -> German on the gettext corpus."""

    RULES: ClassVar[dict[str, Rule]] = {**TrainerConfig.RULES, "recipe": one_of("seq2seq"),
                                        "label_smoothing": (lambda v: 0.0 <= v < 1.0, "in [0, 1)")}

    recipe: str = "seq2seq"
    best_metric: str = "val/nll"
    best_mode: str = "min"
    schedule: ScheduleConfig = field(default_factory=lambda: ScheduleConfig(name="inverse_sqrt", warmup_steps=400))
    model: Seq2SeqConfig = field(default_factory=Seq2SeqConfig)
    data: TranslationDataConfig = field(default_factory=TranslationDataConfig)
    tokenizer: Seq2SeqTokenizerConfig = field(default_factory=Seq2SeqTokenizerConfig)
    label_smoothing: float = 0.1
    decode: DecodeConfig = field(default_factory=DecodeConfig)
    eval_splits: list[str] = field(default_factory=lambda: ["test"])  # scored with BLEU and chrF in the report


def resolve_languages(config: Seq2SeqRecipeConfig) -> Seq2SeqRecipeConfig:
    """Replace ``{source_lang}`` / ``{target_lang}`` in ``data.path``, ``output_dir`` and ``project_name``
    by ``data.source_lang`` / ``data.target_lang``, in place (the CLI reads ``output_dir`` after
    :func:`check_config`, which calls this); returns ``config``."""
    def fill(text: str) -> str:
        return text.replace("{source_lang}", config.data.source_lang).replace("{target_lang}", config.data.target_lang)

    config.output_dir, config.project_name = fill(config.output_dir), fill(config.project_name)
    config.data.path = fill(config.data.path)
    return config


def check_config(config: Seq2SeqRecipeConfig) -> None:
    """Refuse, in one line, what the dataclass rules cannot see: stage losses, unknown splits,
    sequences longer than the model's positions, a missing sacrebleu. Fills the language placeholders
    first (:func:`resolve_languages`)."""
    resolve_languages(config)
    for index, stage in enumerate(config.stages):
        if stage.loss is not None:
            raise ConfigError(f"stages[{index}].loss: a translation model trains with label-smoothed "
                              "cross-entropy only — remove the stage's loss")
    for split in config.eval_splits:
        if split not in SPLITS:
            raise ConfigError(f"eval_splits: unknown split {split!r}", fix=f"use some of {', '.join(SPLITS)}")
    if config.data.max_length + 2 > config.model.max_len:
        raise ConfigError(f"data.max_length: {config.data.max_length} tokens plus bos/eos exceed model.max_len "
                          f"{config.model.max_len}", fix="lower data.max_length or raise model.max_len")
    if config.data.source_lang == config.data.target_lang:
        raise ConfigError(f"data.target_lang: {config.data.target_lang!r} is also the source language")
    if config.data.dictionary_prime and not config.data.mask_placeholders:
        raise ConfigError("data.dictionary_prime: the primed source is built from the masked one",
                          fix="set data.mask_placeholders: true")
    if config.best_metric in ("val/bleu", "val/chrf") and not config.data.valid_decode_pairs:
        raise ConfigError(f"best_metric: {config.best_metric} needs validation translations, which "
                          "data.valid_decode_pairs 0 turns off", fix="set data.valid_decode_pairs (e.g. 600)")
    check_budget(config)
    from mie.evaluation.translation import require_sacrebleu

    require_sacrebleu()


def check_budget(config: Seq2SeqRecipeConfig) -> None:
    """Refuse, before the corpus is read or the model built, a beam, batch or vocabulary past the bounds
    and a training step (weights, gradients, AdamW, activations) past the memory available."""
    data = config.data
    check_bound(config.decode.beam, MAX_BEAM, "decode.beam", fix=f"use at most {MAX_BEAM} (4 to 8 is usual)")
    check_bound(config.tokenizer.vocab_size, BOUNDS["vocab"], "tokenizer.vocab_size")
    check_bound(data.eval_batch_size, MAX_BATCH, "data.eval_batch_size")
    check_bound(data.batch_size, MAX_BATCH, "data.batch_size")
    vocab = config.tokenizer.vocab_size
    model = dataclasses.replace(config.model, src_vocab_size=vocab, tgt_vocab_size=vocab)  # set from the tokenizer
    tokens = data.max_length + 2  # bos/eos
    rows = data.batch_size if not data.max_tokens else min(data.batch_size, -(-data.max_tokens // tokens))
    check_training(model, "data.batch_size" if not data.max_tokens else "data.max_tokens", rows, tokens, tokens,
                   fix="lower data.batch_size, data.max_tokens, data.max_length or the model's size",
                   precision=config.precision)
