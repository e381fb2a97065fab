"""A finished lm run: load it from its directory, evaluate it, write and print its report.

``train`` (``mie.recipes.lm.train``) ends with :func:`evaluate_and_report`; ``mie eval`` calls
:func:`evaluate`, which writes nothing and compares with ``results.json``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mie.config import load_config
from mie.data.lm_text import LMText, build_lm_text, lm_val_loader, resolve_text_files
from mie.errors import ConfigError
from mie.evaluation.report import RESULTS_FILE, ReportComparison, compare_with_saved, jsonable
from mie.io.atomic import atomic_write_text
from mie.io.cache import save_json_atomic
from mie.models.causal_lm import CausalLM
from mie.models.generation import generate
from mie.pretrained.loading import load_lm_run  # the library reads a finished run (mie generate, serve)
from mie.recipes.lm.config import LMConfig, SampleConfig
from mie.recipes.run_dir import TOKENIZER_FILE, load_run_weights, run_config_path
from mie.tokenization.factory import load_any_tokenizer
from mie.training import resolve_device
from mie.training.loop_utils import move_to_device
from mie.training.tasks import LanguageModelTask, lm_metrics

SPLIT = "val"


@dataclass
class LMRunResult:
    """What a finished run produced: ``results`` is ``{"val": {loss, perplexity, bits_per_byte, ...}}``."""

    run_dir: Path
    results: dict[str, dict[str, float]]
    samples: list[str] = field(default_factory=list)
    checkpoint: Path | None = None


def token_cache_dir(config: LMConfig) -> Path:
    """Where the corpus is tokenized to: ``data.cache_dir``, else ``<output_dir>/token_cache``."""
    return Path(config.data.cache_dir) if config.data.cache_dir else Path(config.output_dir) / "token_cache"


def load_lm_text(config: LMConfig, tokenizer: Any) -> LMText:
    """The run's corpus, tokenized (or read from its cache), split and packed."""
    data = config.data
    files = resolve_text_files(data.files, data.fallback_files)
    return build_lm_text(tokenizer, files, token_cache_dir(config), data.block_size, data.val_fraction, data.workers)


def generate_samples(model: nn.Module, tokenizer: Any, sample: SampleConfig, count: int = 1) -> list[str]:
    """``count`` continuations of ``sample.prompt`` (seeded), decoded to text; empty when disabled."""
    if not sample.max_new_tokens:
        return []
    prompt = [tokenizer.bos_id, *tokenizer.encode(sample.prompt)]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            new = generate(model, [prompt] * count, sample.max_new_tokens, temperature=sample.temperature,
                           top_k=sample.top_k, top_p=sample.top_p, seed=sample.seed,
                           stop_ids=[tokenizer.eos_id], pad_id=tokenizer.pad_id)
    finally:
        model.train(was_training)
    return [sample.prompt + tokenizer.decode(ids) for ids in new]


def score(model: nn.Module, text: LMText, batch_size: int, device: torch.device) -> dict[str, float]:
    """Loss (nats per token), perplexity and bits per byte over every validation block."""
    task = LanguageModelTask(model).to(device).eval()
    nats, tokens = 0.0, 0
    with torch.no_grad():
        for batch in lm_val_loader(text.val, batch_size):
            total, count = task.token_losses(move_to_device(batch, device))
            nats, tokens = nats + float(total), tokens + int(count)
    loss = nats / max(1, tokens)
    return {"loss": loss, **lm_metrics(loss, text.val_bytes_per_token), "tokens": tokens,
            "bytes_per_token": text.val_bytes_per_token}


def load_model(run_dir: Path, config: LMConfig, checkpoint: str, device: torch.device) -> tuple[CausalLM, Path]:
    """The run's model with its ``best`` (or ``last``) weights, in eval mode on ``device``."""
    model = CausalLM(config.model)
    weights = load_run_weights(model, run_dir, checkpoint)
    return model.to(device).eval(), weights


def _report(run_dir: Path, config: LMConfig, result: LMRunResult, text: LMText, model: nn.Module,
            training: dict[str, Any]) -> None:
    metrics = result.results[SPLIT]
    summary = {"model": f"{config.model.n_layers} layers, dim {config.model.dim}, {config.model.n_heads} heads, "
                        f"{config.model.mlp}, {config.model.positions}",
               "parameters": sum(p.numel() for p in model.parameters()), "vocab_size": config.model.vocab_size,
               "block_size": config.data.block_size, "batch_size": config.data.batch_size,
               "lr": config.optimizer.lr, "files": len(text.files), "corpus_bytes": text.corpus_bytes,
               "tokens": text.n_tokens, "train_blocks": len(text.train), "val_blocks": len(text.val)}
    payload = {"language_model": result.results, "samples": result.samples, "training": training,
               "config": summary, "extra": {"evaluated checkpoint": result.checkpoint.name}}
    save_json_atomic(run_dir / RESULTS_FILE, jsonable(payload))
    lines = [f"# {config.project_name}: language model report", "", f"Run directory: `{run_dir}`", "",
             f"## Validation (the last {config.data.val_fraction:.0%} of the token stream)", "",
             "| loss (nats/token) | perplexity | bits per byte | tokens | bytes/token |",
             "| --- | --- | --- | --- | --- |",
             f"| {metrics['loss']:.4f} | {metrics['perplexity']:.2f} | {metrics['bits_per_byte']:.4f} | "
             f"{metrics['tokens']} | {metrics['bytes_per_token']:.3f} |", "", "## Samples", ""]
    for index, sample in enumerate(result.samples):
        lines += [f"Sample {index + 1} (prompt {config.sample.prompt!r}, temperature {config.sample.temperature}):",
                  "", "```", sample, "```", ""]
    for title, table in (("Training summary", training), ("Configuration", summary)):
        lines += [f"## {title}", "", "| | |", "| --- | --- |", *[f"| {k} | {v} |" for k, v in table.items()], ""]
    lines.append(f"Machine-readable numbers: `{RESULTS_FILE}`.")
    atomic_write_text(run_dir / "report.md", "\n".join(lines) + "\n")


def evaluate_and_report(run_dir: Path, config: LMConfig, tokenizer: Any, text: LMText, device: torch.device,
                        training: dict[str, Any]) -> LMRunResult:
    """Score the best checkpoint on the whole validation stream, sample from it, write the report."""
    model, weights = load_model(run_dir, config, "best", device)
    results = {SPLIT: score(model, text, config.data.batch_size, device)}
    samples = generate_samples(model, tokenizer, config.sample, config.sample.num_samples)
    result = LMRunResult(run_dir, results, samples, weights)
    _report(run_dir, config, result, text, model, training)
    return result


def evaluate(run_dir: str | Path, splits: Sequence[str] | None = None, *, checkpoint: str = "best",
             data: str | Path | None = None, data_format: str = "auto") -> tuple[LMRunResult, ReportComparison]:
    """Re-score a finished run on its validation stream, writing nothing; compare with ``results.json``.

    ``data`` (a glob of text files) scores other text with the run's model and tokenizer instead.
    """
    run_dir = Path(run_dir)
    if splits and list(splits) != [SPLIT]:
        raise ConfigError(f"an lm run has one split, {SPLIT!r}", where="--split", fix=f"pass --split {SPLIT} or none")
    config = load_config(run_config_path(run_dir), LMConfig)
    if data is not None:
        config.data.files, config.data.fallback_files = [str(data)], []
    tokenizer = load_any_tokenizer(run_dir / TOKENIZER_FILE)
    device = resolve_device(config.device)
    model, weights = load_model(run_dir, config, checkpoint, device)
    result = LMRunResult(run_dir, {SPLIT: score(model, load_lm_text(config, tokenizer), config.data.batch_size,
                                                device)}, [], weights)
    return result, compare_with_saved(run_dir, result.results, weights.name, atol=1e-4, section="language_model",
                                      data=data)


def print_results(result: LMRunResult, echo: Callable[[str], Any] = print) -> None:
    """Validation loss, perplexity and bits per byte, then the samples."""
    for split, m in result.results.items():
        echo(f"{split}: loss {m['loss']:.4f} nats/token, perplexity {m['perplexity']:.2f}, "
             f"bits per byte {m['bits_per_byte']:.4f} ({m['tokens']} tokens, {m['bytes_per_token']:.3f} bytes/token)")
    for sample in result.samples:
        echo(f"sample: {sample!r}")


__all__ = ["LMRunResult", "evaluate", "evaluate_and_report", "generate_samples", "load_lm_run", "load_lm_text",
           "print_results", "score", "token_cache_dir"]
