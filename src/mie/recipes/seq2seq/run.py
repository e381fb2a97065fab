"""A finished seq2seq run: load it, translate with it, score it beside the baselines, write its report.

``train`` (``mie.recipes.seq2seq.train``) ends with :func:`evaluate_and_report`; ``mie eval`` calls
:func:`evaluate` (writes nothing, compares with ``results.json``); ``mie translate`` calls
:func:`load_seq2seq_run` and :func:`translate_texts`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from mie.config import load_config
from mie.data.placeholders import SENTINELS, map_between, mask, survival_rate, unmask
from mie.errors import ConfigError
from mie.evaluation.report import RESULTS_FILE, ReportComparison, compare_with_saved, jsonable
from mie.evaluation.translation import WordDictionary, translation_scores
from mie.io.atomic import atomic_write_text
from mie.io.cache import save_json_atomic
from mie.models.seq2seq import EncoderDecoderTransformer
from mie.models.seq2seq_decoding import TokenQuota, beam_search, greedy_decode
from mie.recipes.run_dir import TOKENIZER_FILE, load_run_weights, run_config_path
from mie.recipes.seq2seq.config import SPLITS, Seq2SeqRecipeConfig
from mie.recipes.seq2seq.data import Pairs, learn_dictionary, masks_placeholders, prime, read_split
from mie.tokenization.factory import load_any_tokenizer
from mie.training import resolve_device

COPY, DICTIONARY = "copy source", "word dictionary"
WITH_PLACEHOLDERS = "pairs with placeholders"  # scores[split][...]: how many sources have placeholders or markup


def dictionary_translate(dictionary: WordDictionary, source: str) -> str:
    """``source`` translated word by word, its placeholders, markup and accelerator kept as the model's are."""
    masked = mask(source)
    return unmask(map_between(dictionary.translate, masked.text), masked)


@dataclass
class Seq2SeqRunResult:
    """What a finished run produced: ``results[split][system] = {"bleu", "chrf"}`` and sample translations."""

    run_dir: Path
    results: dict[str, dict[str, Any]]
    samples: list[dict[str, str]] = field(default_factory=list)
    checkpoint: Path | None = None


_DICTIONARIES: dict[tuple[str, str], WordDictionary] = {}  # (corpus, language) -> dictionary of its train split


def corpus_dictionary(config: Seq2SeqRecipeConfig) -> WordDictionary:
    """The word-by-word dictionary of the run's training pairs (learned once per process)."""
    key = (config.data.path, config.data.target_lang)
    if key not in _DICTIONARIES:
        _DICTIONARIES[key] = learn_dictionary(read_split(config.data, "train"))
    return _DICTIONARIES[key]


def translate_texts(model: EncoderDecoderTransformer, tokenizer: Any, texts: Sequence[str], config: Seq2SeqRecipeConfig,
                    beam: int = 1, device: torch.device | None = None) -> list[str]:
    """Translate ``texts`` (greedy for ``beam=1``, else beam search), in batches of similar length; with a
    tokenizer that has placeholder sentinels, placeholders are masked before and restored after; with
    ``data.dictionary_prime`` the model reads the dictionary's translation (:func:`corpus_dictionary`)."""
    device = device or next(model.parameters()).device
    limit = config.model.max_len - 1
    masked = [mask(text) for text in texts] if masks_placeholders(tokenizer) else None
    sources = [m.text for m in masked] if masked is not None else list(texts)
    if masked is not None and config.data.dictionary_prime:
        dictionary = corpus_dictionary(config)
        sources = [prime(text, dictionary) for text in sources]
    # Decoded with the sentinels; the other special tokens (pad, unk, bos, eos) are dropped.
    drop = {tokenizer.pad_id, tokenizer.bos_id, tokenizer.eos_id, getattr(tokenizer, "unk_id", None)}
    if masked is not None:
        drop |= {i for t, i in tokenizer.model.special_tokens.items() if not t.startswith(("<ph", "<nl"))}
    ids = [tokenizer.encode(text)[: min(config.data.max_length, limit - 1)] + [tokenizer.eos_id] for text in sources]
    sentinels = None
    if masked is not None and config.decode.constrain_placeholders:
        sentinels = torch.tensor([tokenizer.model.special_tokens[t] for t in SENTINELS])
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
    out: list[str] = [""] * len(ids)
    size, dec = config.data.eval_batch_size, config.decode
    for start in range(0, len(order), size):
        rows = order[start:start + size]
        longest = max(len(ids[i]) for i in rows)
        src = torch.full((len(rows), longest), tokenizer.pad_id, dtype=torch.long)
        for r, i in enumerate(rows):
            src[r, : len(ids[i])] = torch.tensor(ids[i])
        max_len = min(limit, int(dec.max_len_a * longest) + dec.max_len_b)
        quota = None
        if sentinels is not None:  # every sentinel of the source exactly once, no other
            counts = (src[:, :, None] == sentinels[None, None, :]).sum(1)  # (rows, sentinels)
            quota = TokenQuota(sentinels.to(device), counts.to(device), tokenizer.eos_id)
        with torch.no_grad():
            if beam == 1:
                hyps = greedy_decode(model, src.to(device), tokenizer.bos_id, tokenizer.eos_id, max_len, quota=quota,
                                     no_repeat_ngram=dec.no_repeat_ngram)
            else:
                hyps = beam_search(model, src.to(device), tokenizer.bos_id, tokenizer.eos_id, beam=beam,
                                   max_len=max_len, length_penalty_alpha=dec.length_penalty, quota=quota,
                                   no_repeat_ngram=dec.no_repeat_ngram)
        for i, hyp in zip(rows, hyps):
            if masked is None:
                out[i] = tokenizer.decode(hyp).strip()
            else:
                out[i] = unmask(tokenizer.decode([t for t in hyp if t not in drop], skip_special_tokens=False).strip(),
                                masked[i])
    return out


def load_model(run_dir: Path, config: Seq2SeqRecipeConfig, checkpoint: str, device: torch.device
               ) -> tuple[EncoderDecoderTransformer, Path]:
    """The run's model with its ``best`` (or ``last``) weights, in eval mode on ``device``."""
    model = EncoderDecoderTransformer(config.model)
    weights = load_run_weights(model, run_dir, checkpoint)
    return model.to(device).eval(), weights


def load_seq2seq_run(run_dir: str | Path, checkpoint: str = "best", device: str = "cpu"
                     ) -> tuple[EncoderDecoderTransformer, Any, Seq2SeqRecipeConfig]:
    """``(model, tokenizer, config)`` of a finished seq2seq run (eval mode)."""
    run_dir = Path(run_dir)
    config = load_config(run_config_path(run_dir), Seq2SeqRecipeConfig)
    tokenizer = load_any_tokenizer(run_dir / TOKENIZER_FILE)
    model, _ = load_model(run_dir, config, checkpoint, torch.device(device))
    return model, tokenizer, config


def score_split(model: EncoderDecoderTransformer, tokenizer: Any, config: Seq2SeqRecipeConfig, pairs: Pairs,
                dictionary: WordDictionary, device: torch.device) -> tuple[dict[str, Any], list[dict[str, str]]]:
    """BLEU and chrF of the baselines, greedy decoding and beam search on ``pairs``; a few samples."""
    if config.data.max_eval_pairs:
        pairs = pairs[: config.data.max_eval_pairs]
    sources, references = [s for s, _ in pairs], [t for _, t in pairs]
    outputs = {COPY: sources, DICTIONARY: [dictionary_translate(dictionary, s) for s in sources],
               "model greedy": translate_texts(model, tokenizer, sources, config, 1, device)}
    if config.decode.beam > 1:
        outputs[f"model beam {config.decode.beam}"] = translate_texts(model, tokenizer, sources, config,
                                                                      config.decode.beam, device)
    scores: dict[str, Any] = {name: {**translation_scores(hyps, references),
                                     "placeholders": survival_rate(sources, hyps)[0]} for name, hyps in outputs.items()}
    scores["pairs"] = len(pairs)
    scores[WITH_PLACEHOLDERS] = survival_rate(sources, references)[1]
    best = list(outputs)[-1]
    step = max(1, len(pairs) // 6)
    samples = [{"source": sources[i], "reference": references[i], best: outputs[best][i],
                DICTIONARY: outputs[DICTIONARY][i]} for i in range(0, len(pairs), step)][:6]
    return scores, samples


def _score(run_dir: Path, config: Seq2SeqRecipeConfig, tokenizer: Any, checkpoint: str, splits: Sequence[str],
           device: torch.device) -> Seq2SeqRunResult:
    model, weights = load_model(run_dir, config, checkpoint, device)
    dictionary = corpus_dictionary(config)
    results, samples = {}, []
    for split in splits:
        results[split], split_samples = score_split(model, tokenizer, config, read_split(config.data, split),
                                                    dictionary, device)
        samples = samples or split_samples
    return Seq2SeqRunResult(run_dir, results, samples, weights)


def _report(run_dir: Path, config: Seq2SeqRecipeConfig, result: Seq2SeqRunResult, model_summary: dict[str, Any],
            training: dict[str, Any]) -> None:
    payload = {"translation": result.results, "samples": result.samples, "training": training,
               "config": model_summary, "extra": {"evaluated checkpoint": result.checkpoint.name}}
    save_json_atomic(run_dir / RESULTS_FILE, jsonable(payload))
    data = config.data
    lines = [f"# {config.project_name}: translation report ({data.source_lang} -> {data.target_lang})", "",
             f"Run directory: `{run_dir}`. Corpus: `{data.path}`.", ""]
    for split, scores in result.results.items():
        lines += [f"## {split} ({scores['pairs']} pairs, {scores.get(WITH_PLACEHOLDERS, 0)} with placeholders)", "",
                  "| system | BLEU | chrF | placeholders kept (%) |", "| --- | --- | --- | --- |"]
        lines += [f"| {name} | {s['bleu']:.2f} | {s['chrf']:.2f} | {s.get('placeholders', float('nan')):.1f} |"
                  for name, s in _systems(scores)]
        lines.append("")
    lines += ["BLEU and chrF: sacrebleu's corpus scores (13a tokenizer; character 6-grams, beta 2). Placeholders "
              "kept: the share of the messages with placeholders or markup (%s, {0}, <b>, &amp;, a leading or "
              "trailing \\n, an accelerator) whose translation has exactly the same ones.", "",
              "## Samples", ""]
    for sample in result.samples:
        lines += [f"- {k}: {v}" for k, v in sample.items()] + [""]
    for title, table in (("Training summary", training), ("Configuration", model_summary)):
        lines += [f"## {title}", "", "| | |", "| --- | --- |", *[f"| {k} | {v} |" for k, v in table.items()], ""]
    lines.append(f"Machine-readable numbers: `{RESULTS_FILE}`.")
    atomic_write_text(run_dir / "report.md", "\n".join(lines) + "\n")


def evaluate_and_report(run_dir: Path, config: Seq2SeqRecipeConfig, tokenizer: Any, device: torch.device,
                        model_summary: dict[str, Any], training: dict[str, Any]) -> Seq2SeqRunResult:
    """Score the best checkpoint and the baselines on ``config.eval_splits``; write the report."""
    result = _score(run_dir, config, tokenizer, "best", config.eval_splits, device)
    _report(run_dir, config, result, model_summary, training)
    return result


def evaluate(run_dir: str | Path, splits: Sequence[str] | None = None, *, checkpoint: str = "best",
             data: str | Path | None = None, data_format: str = "auto") -> tuple[Seq2SeqRunResult, ReportComparison]:
    """Re-score a finished run (writing nothing) and compare with ``results.json``.

    ``data`` (a folder of ``<split>.<lang>`` files) scores another corpus with the run's model.
    """
    run_dir = Path(run_dir)
    config = load_config(run_config_path(run_dir), Seq2SeqRecipeConfig)
    splits = list(splits or config.eval_splits)
    for split in splits:
        if split not in SPLITS:
            raise ConfigError(f"unknown split {split!r}", where="--split", fix=f"use one of {', '.join(SPLITS)}")
    if data is not None:
        config.data.path, config.data.build = str(data), ""
    tokenizer = load_any_tokenizer(run_dir / TOKENIZER_FILE)
    result = _score(run_dir, config, tokenizer, checkpoint, splits, resolve_device(config.device))
    return result, compare_with_saved(run_dir, {s: result.results[s] for s in splits if s in result.results},
                                      result.checkpoint.name, atol=1e-3, section="translation", data=data)


def print_results(result: Seq2SeqRunResult, echo: Callable[[str], Any] = print) -> None:
    """BLEU and chrF of every system on every scored split."""
    for split, scores in result.results.items():
        echo(f"{split} ({scores['pairs']} pairs, {scores.get(WITH_PLACEHOLDERS, 0)} with placeholders):")
        for name, s in _systems(scores):
            kept = f"  placeholders kept {s['placeholders']:5.1f}%" if "placeholders" in s else ""
            echo(f"  {name:<16} BLEU {s['bleu']:6.2f}  chrF {s['chrf']:6.2f}{kept}")


def _systems(scores: dict[str, Any]) -> list[tuple[str, dict[str, float]]]:
    """The ``(system, scores)`` items of one split's results (its counts left out)."""
    return [(name, s) for name, s in scores.items() if isinstance(s, dict)]
