"""The lm recipe: config -> text files -> BPE tokenizer -> token cache -> packed blocks -> CausalLM ->
language-model task -> trainer (samples at every validation) -> validation report.

``train`` runs a whole job into a run directory (see ``mie.recipes.run_dir``): ``config.yaml``,
``tokenizer.json``, ``token_cache/``, ``metrics.jsonl``, ``samples.txt``, ``checkpoints/``,
``report.md`` and ``results.json``.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import re
from pathlib import Path
from typing import Any

import torch

from mie.data.lm_text import (
    lm_train_loader,
    lm_val_indices,
    lm_val_loader,
    resolve_text_files,
    target_bytes_per_token,
    token_byte_lengths,
)
from mie.errors import ConfigError
from mie.io.atomic import atomic_write_text
from mie.models.causal_lm import CausalLM
from mie.pretrained.loading import load_language_model
from mie.recipes.lm.config import LMConfig
from mie.recipes.lm.init import prepare_finetune, save_chat_template, trainer_config
from mie.recipes.lm.run import LMRunResult, evaluate_and_report, generate_samples, load_lm_text, score
from mie.recipes.run_dir import TOKENIZER_FILE, run_directory, save_run_config, training_summary
from mie.tokenization.factory import load_any_tokenizer, train_tokenizer
from mie.tokenization.tokenizer import read_texts
from mie.training import BaseTrainer, resolve_device
from mie.training.callbacks import Callback, MetricsLogger
from mie.training.checkpoint_callback import ModelCheckpoint
from mie.training.device import pin_memory
from mie.training.distributed import get_rank, get_world_size, main_process_first
from mie.training.progress import ProgressBar
from mie.training.tasks import LanguageModelTask
from mie.training.tensorboard import TensorBoardLogger

logger = logging.getLogger(__name__)
SAMPLES_FILE = "samples.txt"


class SampleWriter(Callback):
    """After every validation: continue the config's prompt, log the text, append it to ``samples.txt``."""

    def __init__(self, tokenizer: Any, config: LMConfig) -> None:
        self.tokenizer = tokenizer
        self.config = config

    def on_train_begin(self, trainer: Any) -> None:
        """Hook: keep only the samples of the state training starts from (none for a fresh run)."""
        path = Path(self.config.output_dir) / SAMPLES_FILE
        if not path.is_file():
            return
        blocks = re.split(r"(?m)^(?=--- step \d+)", path.read_text(encoding="utf-8", errors="replace"))
        kept = [b for b in blocks if (m := re.match(r"--- step (\d+)", b)) and int(m.group(1)) <= trainer.global_step]
        atomic_write_text(path, "".join(kept))

    def on_validation_end(self, trainer: Any, metrics: dict[str, float]) -> None:
        """Hook: sample from the model as it is now (seeded: the global RNG is left alone)."""
        texts = generate_samples(trainer.model, self.tokenizer, self.config.sample)
        for text in texts:
            logger.info("sample at step %d: %r", trainer.global_step, text)
            with (Path(self.config.output_dir) / SAMPLES_FILE).open("a", encoding="utf-8") as fh:
                fh.write(f"--- step {trainer.global_step} (val loss {metrics.get('val/loss', float('nan')):.4f})\n"
                         f"{text}\n")


def training_texts(files: list[Path], val_fraction: float) -> list[str]:
    """The corpus without its validation part, for training the tokenizer.

    Validation is the last ``val_fraction`` of the token stream, known only once the text is tokenized;
    holding out 1.5x that share of the characters (plus a little) keeps every validation byte unseen.
    """
    texts = list(read_texts(files))
    keep = int(sum(len(t) for t in texts) * max(0.0, 1.0 - 1.5 * val_fraction)) - 1024
    out = []
    for text in texts:
        if keep <= 0:
            break
        out.append(text[:keep])
        keep -= len(text)
    return out or [texts[0][: len(texts[0]) // 2]]


def build_tokenizer(config: LMConfig, files: list[Path]) -> Any:
    """``tokenizer.path`` if set, else a byte-level BPE trained on the corpus files (validation text excluded)."""
    tcfg = config.tokenizer
    if tcfg.path:
        return load_any_tokenizer(tcfg.path)
    return train_tokenizer("bpe", training_texts(files, config.data.val_fraction), vocab_size=tcfg.vocab_size,
                           lowercase=tcfg.lowercase)


def _callbacks(config: LMConfig, tokenizer: Any, quiet: bool, main: bool = True) -> list[Callback]:
    callbacks: list[Callback] = [ProgressBar(quiet=quiet), MetricsLogger(), ModelCheckpoint()]
    if config.tensorboard:
        callbacks.append(TensorBoardLogger())
    return [*callbacks, SampleWriter(tokenizer, config)] if main else callbacks  # rank 0 writes samples.txt


def train(config: LMConfig, resume: str | Path | None = None, quiet: bool = False,
          overwrite: bool = False) -> LMRunResult:
    """Train a causal LM as ``config`` says, score its best checkpoint on the validation text, report.

    ``resume`` continues the run in ``config.output_dir`` (or a given state file); without it, a
    folder that already holds a trained run is refused unless ``overwrite``.
    """
    with run_directory(config, resume, overwrite) as run:  # under torchrun: joins the group too
        run_dir, resume, main = run.dir, run.resume, run.main
        files = resolve_text_files(config.data.files, config.data.fallback_files)
        tokenizer_path = run_dir / TOKENIZER_FILE
        base, base_tokenizer = load_language_model(config.init, where="init") if config.init else (None, None)  # fine-tuning
        # Rank 0 trains the tokenizer and fills the token cache; the other ranks then read both.
        with main_process_first():
            if base is not None:
                tokenizer = base_tokenizer
                if resume is None and main:
                    tokenizer.save(tokenizer_path)
                    save_chat_template(tokenizer, run_dir)
            elif (resume is not None or not main) and tokenizer_path.is_file():
                tokenizer = load_any_tokenizer(tokenizer_path)
            else:
                tokenizer = build_tokenizer(config, files)
                tokenizer.save(tokenizer_path)
            text = load_lm_text(config, tokenizer)
        data = config.data
        if data.batch_size > len(text.train):
            raise ConfigError(f"{data.batch_size} is larger than the {len(text.train)} training blocks, so training "
                              "would take 0 steps", where="data.batch_size",
                              fix=f"set it to at most {len(text.train)} or lower data.block_size")
        model_config = (dataclasses.replace(base.config) if base is not None
                        else dataclasses.replace(config.model, vocab_size=tokenizer.vocab_size))
        resolved = dataclasses.replace(config, model=model_config)
        if main and resume is None:
            save_run_config(resolved, run_dir)
        device = resolve_device(config.device)
        torch.manual_seed(config.seed)  # the initial weights (and adapters) depend on the seed alone
        model = prepare_finetune(resolved, base) if base is not None else CausalLM(resolved.model)
        val_indices = lm_val_indices(text.val, data.max_val_blocks)
        initial_scores = (score(model, text, data.batch_size, device)
                          if base is not None and resume is None and main else None)
        task = LanguageModelTask(model, target_bytes_per_token(text.val, token_byte_lengths(tokenizer), val_indices))
        pinned = pin_memory(device)  # on CUDA: pinned batches, whose copies to the GPU need not wait
        loaders = functools.partial(lm_train_loader, text.train, seed=config.seed, blocks_per_epoch=data.blocks_per_epoch,
                                    rank=get_rank(), world=get_world_size(), pin_memory=pinned)
        trainer = BaseTrainer(task, trainer_config(resolved, model), loaders,
                              val_loader=lm_val_loader(text.val, data.batch_size, val_indices, pin_memory=pinned),
                              callbacks=_callbacks(resolved, tokenizer, quiet, main), device=device, quiet=quiet,
                              batch_size=data.batch_size)
        logger.info("training %s parameters on %s tokens of %d files (%d train blocks of %d, %d val blocks)",
                    f"{sum(p.numel() for p in model.parameters()):,}", f"{text.n_tokens:,}", len(text.files),
                    len(text.train), data.block_size, len(text.val))
        seconds = run.fit(trainer, resolved)
        initial = {} if initial_scores is None else {
            "initial_val_loss": round(initial_scores["loss"], 4),
            "initial_val_perplexity": round(initial_scores["perplexity"], 3),
            "initial_val_bits_per_byte": round(initial_scores["bits_per_byte"], 4)}
        tokens = trainer.global_step * data.batch_size * data.block_size
        summary = training_summary(trainer, seconds, {"tokens_per_s": (tokens, None)}, **initial)
        del trainer, task, model
        # Rank 0 alone evaluates and writes the report; the others wait for it, then all leave the group.
        result = (evaluate_and_report(run_dir, resolved, tokenizer, text, device, summary) if main
                  else LMRunResult(run_dir, {}))
    return result
