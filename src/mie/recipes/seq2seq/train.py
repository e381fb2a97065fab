"""The seq2seq recipe: config -> parallel corpus (built from gettext catalogs if absent) -> joint BPE ->
length-bucketed batches -> EncoderDecoderTransformer -> label-smoothed seq2seq task -> trainer ->
BLEU and chrF of greedy and beam-search translations beside two baselines -> report.

``train`` writes a run directory (see ``mie.recipes.run_dir``): ``config.yaml``, ``tokenizer.json``,
``metrics.jsonl``, ``checkpoints/``, ``report.md`` and ``results.json``.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from pathlib import Path
from typing import Any

import torch

from mie.errors import ConfigError, MieError
from mie.io.cache import read_json
from mie.models.seq2seq import EncoderDecoderTransformer
from mie.recipes.run_dir import TOKENIZER_FILE, run_directory, save_run_config, training_summary
from mie.recipes.seq2seq.config import Seq2SeqRecipeConfig, resolve_languages
from mie.recipes.seq2seq.data import (
    build_tokenizer,
    ensure_corpus,
    learn_dictionary,
    make_dataset,
    read_split,
    train_loader,
    val_loader,
)
from mie.recipes.seq2seq.run import Seq2SeqRunResult, evaluate_and_report
from mie.recipes.seq2seq.validation import TranslatingSeq2SeqTask
from mie.tokenization.factory import load_any_tokenizer
from mie.training import BaseTrainer, resolve_device
from mie.training.callbacks import Callback, MetricsLogger
from mie.training.checkpoint_callback import ModelCheckpoint
from mie.training.device import pin_memory
from mie.training.distributed import main_process_first
from mie.training.progress import ProgressBar
from mie.training.tensorboard import TensorBoardLogger

logger = logging.getLogger(__name__)


def _callbacks(config: Seq2SeqRecipeConfig, quiet: bool) -> list[Callback]:
    callbacks: list[Callback] = [ProgressBar(quiet=quiet), MetricsLogger(), ModelCheckpoint()]
    return [*callbacks, TensorBoardLogger()] if config.tensorboard else callbacks


def _corpus_summary(config: Seq2SeqRecipeConfig, kept: dict[str, int]) -> dict[str, Any]:
    """Pairs per split as built (``manifest.json``, when the corpus has one) and as kept for training."""
    summary: dict[str, Any] = {f"{split} pairs kept": n for split, n in kept.items()}
    manifest = Path(config.data.path) / "manifest.json"
    if manifest.is_file():
        try:
            info = read_json(manifest, expect_object=True, fix="rebuild the corpus or delete the file")
        except MieError as exc:  # only a description: the report goes on without it, saying why
            logger.warning("leaving the corpus manifest out of the report: %s", exc)
            return summary
        pairs, packages = info.get("pairs"), info.get("packages")
        summary.update({f"{split} pairs": n for split, n in (pairs if isinstance(pairs, dict) else {}).items()})
        test = packages.get("test") if isinstance(packages, dict) else None
        summary["test packages"] = ", ".join(map(str, test)) if isinstance(test, list) else ""
    return summary


def train(config: Seq2SeqRecipeConfig, resume: str | Path | None = None, quiet: bool = False,
          overwrite: bool = False) -> Seq2SeqRunResult:
    """Train a translation model as ``config`` says, score its best checkpoint beside the baselines, report.

    ``resume`` continues the run in ``config.output_dir``; without it, a folder that already holds a
    trained run is refused unless ``overwrite``.
    """
    resolve_languages(config)
    with run_directory(config, resume, overwrite) as run:
        run_dir, resume, main = run.dir, run.resume, run.main
        tokenizer_path = run_dir / TOKENIZER_FILE
        with main_process_first():
            if main:
                ensure_corpus(config.data, config.seed)
            train_pairs, valid_pairs = read_split(config.data, "train"), read_split(config.data, "valid")
            if (resume is not None or not main) and tokenizer_path.is_file():
                tokenizer = load_any_tokenizer(tokenizer_path)
            else:
                tokenizer = build_tokenizer(config, train_pairs)
                tokenizer.save(tokenizer_path)
        dictionary = learn_dictionary(train_pairs) if config.data.dictionary_prime else None  # primes valid sources
        train_data = make_dataset(train_pairs, tokenizer, config.data)
        valid_data = make_dataset(valid_pairs, tokenizer, config.data, dictionary)
        data = config.data
        if data.batch_size > len(train_data):
            raise ConfigError(f"{data.batch_size} is larger than the {len(train_data)} training pairs",
                              where="data.batch_size", fix=f"set it to at most {len(train_data)}")
        vocab = tokenizer.vocab_size
        resolved = dataclasses.replace(config, model=dataclasses.replace(
            config.model, src_vocab_size=vocab, tgt_vocab_size=vocab, pad_id=tokenizer.pad_id))
        if main and resume is None:
            save_run_config(resolved, run_dir)
        device = resolve_device(config.device)
        torch.manual_seed(config.seed)
        model = EncoderDecoderTransformer(resolved.model)
        # Evenly spaced: the valid file runs package by package, and every package should have its say.
        step = max(1, len(valid_pairs) // data.valid_decode_pairs) if data.valid_decode_pairs else 1
        decoded = valid_pairs[::step][: data.valid_decode_pairs]
        task = TranslatingSeq2SeqTask(model, tokenizer, resolved, decoded)
        pinned = pin_memory(device)  # on CUDA: pinned batches, whose copies to the GPU need not wait
        loaders = functools.partial(train_loader, train_data, seed=config.seed, pad_id=tokenizer.pad_id,
                                    max_tokens=data.max_tokens, pin_memory=pinned)
        trainer = BaseTrainer(task, resolved, loaders, val_loader=val_loader(valid_data, data.eval_batch_size,
                                                                              tokenizer.pad_id, pin_memory=pinned),
                              callbacks=_callbacks(resolved, quiet), device=device, quiet=quiet, batch_size=data.batch_size)
        logger.info("training %s parameters on %d pairs (%d validation pairs, vocabulary %d)",
                    f"{model.num_parameters():,}", len(train_data), len(valid_data), vocab)
        seconds = run.fit(trainer)
        summary = training_summary(trainer, seconds, **{k: round(v, 4) for k, v in trainer.last_val_metrics.items()})
        m = resolved.model
        model_summary = {"model": f"{m.encoder_layers}+{m.decoder_layers} layers, dim {m.dim}, {m.heads} heads, "
                                  f"{m.activation}, {m.norm}, shared embeddings {m.share_embeddings}",
                         "parameters": model.num_parameters(), "vocab_size": vocab, "batch_size": data.batch_size,
                         "max_tokens": data.max_tokens,
                         "lr": config.optimizer.lr, "schedule": f"{config.schedule.name}, warmup {config.schedule.warmup_steps}",
                         "label_smoothing": config.label_smoothing, "beam": config.decode.beam,
                         "length_penalty": config.decode.length_penalty,
                         "no_repeat_ngram": config.decode.no_repeat_ngram,
                         "placeholders masked": data.mask_placeholders, "dictionary-primed source": data.dictionary_prime,
                         **_corpus_summary(config, {"train": len(train_data), "valid": len(valid_data)})}
        del trainer, task, model
        result = (evaluate_and_report(run_dir, resolved, tokenizer, device, model_summary, summary) if main
                  else Seq2SeqRunResult(run_dir, {}))
    return result
