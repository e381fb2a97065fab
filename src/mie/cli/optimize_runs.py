"""What ``mie optimize`` does with runs: load a clip, lm, seq2seq or classification run or a pretrained LM; score
it with its task's metric (seq2seq and classification through :mod:`mie.cli.optimize_families`); time it; write an optimized copy as a new run directory that loads like any other.

The optimized run keeps the source's ``config.yaml`` and tokenizer; its checkpoint's sidecar holds the
optimization (``"optimization"``: :mod:`mie.optimization.scheme`), which ``mie.io.run_files.load_run_weights``
applies before loading, so ``mie eval``, ``mie generate`` and ``mie serve`` read it unchanged. Its
``results.json`` and ``report.md`` are written by the recipe's own evaluation of the saved files (so ``mie
eval OUT`` reproduces them), then get an "Optimization" section: the metric and speed before and after.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mie.cli import optimize_families as families
from mie.config import load_config, read_yaml
from mie.errors import ConfigError
from mie.evaluation.report import RESULTS_FILE
from mie.io.atomic import atomic_write_text
from mie.io.checkpoint import save_weights
from mie.io.ownership import claim_run_folder, create_folder, write_marker
from mie.io.run_files import CHAT_TEMPLATE_FILE, CONFIG_FILE, TOKENIZER_FILE, run_config_path
from mie.optimization import benchmark
from mie.recipes import recipe_name

SUPPORTED = ("clip", "lm", "seq2seq", "classification")
LM_PROMPT = "def main():\n    "


@dataclass
class Loaded:
    """A model to optimize: its family (``clip`` | ``lm`` | ``seq2seq`` | ``classification``), model (eval mode, CPU), tokenizer, run config,
    where it came from and its weights file (None for a pretrained name)."""

    kind: str
    model: nn.Module
    tokenizer: Any
    config: Any
    source: str
    weights: Path | None


def lm_text_config(config: Any, text: str | None) -> Any:
    """An lm config scoring ``text`` (its last half held out; the first half calibrates pruning)."""
    if text is None:
        return config
    if not Path(text).is_file():
        raise ConfigError(f"{text} is not a file", where="--text", fix="pass a UTF-8 text file")
    data = dataclasses.replace(config.data, files=[str(Path(text).resolve())], fallback_files=[], val_fraction=0.5,
                               block_size=min(256, config.model.max_seq_len), batch_size=4, cache_dir="")
    sample = dataclasses.replace(config.sample, max_new_tokens=24, num_samples=1, temperature=0.0, prompt=LM_PROMPT)
    return dataclasses.replace(config, data=data, sample=sample)


def load_source(source: str, text: str | None = None, checkpoint: str = "best") -> Loaded:
    """A clip, lm, seq2seq or classification run directory, or a pretrained LM's name (``--text`` is then
    required)."""
    path = Path(source)
    if path.is_dir():
        recipe = recipe_name(read_yaml(run_config_path(path)))
        if recipe not in SUPPORTED:
            raise ConfigError(f"is a {recipe} run", where=source,
                              fix=f"mie optimize takes {', '.join(SUPPORTED)} runs or a pretrained LM name")
        if recipe in families.FAMILIES:
            model, tokenizer, config, weights = families.load(recipe, path, checkpoint)
            return Loaded(recipe, model, tokenizer, config, source, weights)
        if recipe == "clip":
            from mie.recipes.clip.run import load_run_parts

            config, tokenizer, model, _, weights = load_run_parts(path, checkpoint, device="cpu")
            return Loaded("clip", model, tokenizer, config, source, weights)
        from mie.io.run_files import checkpoint_to_evaluate
        from mie.pretrained.loading import load_lm_run
        from mie.recipes.lm.config import LMConfig

        model, tokenizer = load_lm_run(path, checkpoint)
        config = lm_text_config(load_config(run_config_path(path), LMConfig), text)
        return Loaded("lm", model, tokenizer, config, source, checkpoint_to_evaluate(path, checkpoint))
    from mie.pretrained.loading import load_language_model
    from mie.recipes.lm.config import LMConfig

    if text is None:
        raise ConfigError(f"{source} is a pretrained model: perplexity needs text", where="--text",
                          fix="pass --text FILE (e.g. a Python source file it was not calibrated on)")
    model, tokenizer = load_language_model(source, where="RUN_OR_MODEL")
    config = lm_text_config(LMConfig(project_name=source, model=model.config), text)
    return Loaded("lm", model.float().eval(), tokenizer, config, source, None)


def _clip_evalsets(config: Any) -> list[Any]:
    from mie.recipes.clip.evaluate import load_eval_set

    return [load_eval_set(config, split) for split in config.data.test_splits]


def lm_text(loaded: Loaded, output: Path) -> Any:
    """The lm config's text, tokenized into ``output/token_cache``."""
    from mie.recipes.lm.run import load_lm_text

    config = dataclasses.replace(loaded.config, output_dir=str(output))
    return load_lm_text(config, loaded.tokenizer)


def score(loaded: Loaded, model: nn.Module, output: Path) -> dict[str, dict[str, float]]:
    """The task's metric of ``model``: retrieval R@K per test split (clip), perplexity on the held-out text (lm),
    BLEU / chrF (seq2seq), accuracy (classification)."""
    if loaded.kind in families.FAMILIES:
        return families.score(loaded.kind, model, loaded.tokenizer, loaded.config)
    if loaded.kind == "clip":
        from mie.recipes.clip.evaluate import evaluate_model

        return evaluate_model(model, loaded.tokenizer, _clip_evalsets(loaded.config), torch.device("cpu"))[0]
    from mie.recipes.lm.run import score as lm_score

    return {"val": lm_score(model, lm_text(loaded, output), loaded.config.data.batch_size, torch.device("cpu"))}


def headline(kind: str, results: dict[str, dict[str, float]]) -> dict[str, float]:
    """The numbers a before/after table shows: mean R@1 per split (clip), perplexity and bits per byte (lm),
    the model's BLEU and chrF (seq2seq), top-1 accuracy (classification)."""
    if kind in families.FAMILIES:
        return families.headline(kind, results)
    if kind == "clip":
        return {f"{split} mean R@1": round(m["mean_R@1"], 4) for split, m in results.items()}
    return {"perplexity": round(results["val"]["perplexity"], 4), "bits/byte": round(results["val"]["bits_per_byte"], 4)}


def speed(loaded: Loaded, model: nn.Module, repeats: int = 5) -> dict[str, float]:
    """Inference speed: encoding 256 random image-text pairs (clip), greedy batch-1 decoding (lm, tokens/s),
    greedy translation (seq2seq, sentences/s), classification of 64 images (classification)."""
    if loaded.kind in families.FAMILIES:
        fn, items = families.workload(loaded.kind, model, loaded.tokenizer, loaded.config)
    elif loaded.kind == "clip":
        fn, items = benchmark.dual_encoder_workload(model)
    else:
        prompt = [loaded.tokenizer.bos_id, *loaded.tokenizer.encode(LM_PROMPT)]
        fn, items = benchmark.generation_workload(model, prompt, new_tokens=32)
    return benchmark.measure(fn, items, repeats=repeats, warmup=1)


def _copy_tokenizer(loaded: Loaded, output: Path) -> None:
    source = Path(loaded.source)
    if source.is_dir():
        for name in (TOKENIZER_FILE, CHAT_TEMPLATE_FILE):
            if (source / name).is_file():
                shutil.copyfile(source / name, output / name)
        return
    from mie.recipes.lm.init import save_chat_template

    loaded.tokenizer.save(output / TOKENIZER_FILE)
    save_chat_template(loaded.tokenizer, output)


def open_output(output: Path, kind: str) -> None:
    """Claim ``output`` (missing, empty or ours), create it and mark it as a run of ``kind`` before anything
    (the LM's token cache) is written there."""
    claim_run_folder(output, "--output", overwrite=True)
    create_folder(output, "--output", anywhere=True)
    write_marker(output, kind)


def write_run(loaded: Loaded, model: nn.Module, output: Path, optimization: dict[str, Any],
              summary: dict[str, Any]) -> tuple[dict[str, dict[str, float]], Path]:
    """Write ``model`` as a run in ``output`` (a new or empty folder, or one of ours), evaluated by its recipe;
    returns the recipe's results and the weights file."""
    from mie.recipes.run_dir import save_run_config

    config = dataclasses.replace(loaded.config, output_dir=str(output))
    save_run_config(config, output)
    _copy_tokenizer(loaded, output)
    weights = save_weights(output / "checkpoints" / "best.safetensors", model.state_dict(),
                           {"optimization": optimization, "source": loaded.source})
    device = torch.device("cpu")
    if loaded.kind in families.FAMILIES:
        return families.write_results(loaded.kind, output, config, loaded.tokenizer, summary), weights
    if loaded.kind == "clip":
        from mie.recipes.clip.run import evaluate_and_report

        result = evaluate_and_report(output, config, loaded.tokenizer, device, summary, None)
    else:
        from mie.recipes.lm.run import evaluate_and_report as lm_report

        result = lm_report(output, config, loaded.tokenizer, lm_text(loaded, output), device, summary)
    return result.results, weights


def append_report(output: Path, title: str, table: str, details: dict[str, Any]) -> None:
    """Add the "Optimization" section to ``report.md`` and an ``optimization`` entry to ``results.json``."""
    report = output / "report.md"
    text = report.read_text(encoding="utf-8") if report.is_file() else ""
    lines = ["", f"## Optimization: {title}", "", table, ""]
    atomic_write_text(report, text + "\n".join(lines) + "\n")
    results_path = output / RESULTS_FILE
    results = json.loads(results_path.read_text(encoding="utf-8")) if results_path.is_file() else {}
    results["optimization"] = details
    atomic_write_text(results_path, json.dumps(results, indent=2, default=str) + "\n")


def config_path(output: Path) -> Path:
    """``output/config.yaml``."""
    return output / CONFIG_FILE
