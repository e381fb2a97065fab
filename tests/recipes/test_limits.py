"""Refuse before allocating (issue 26, findings 2 and 3): every setting that sizes memory or work is checked
against the model, the machine and a sane bound when the config is loaded, before any data is read or
model built; a run folder read from disk is checked the same way. Each refusal is one line."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import yaml

from mie.cli import main
from mie.errors import ConfigError
from mie.models import budget
from mie.recipes import load_recipe_config

CONFIGS = Path(__file__).parents[2] / "configs"
GiB = 1 << 30


@pytest.fixture
def machine(monkeypatch):
    """A 2-core machine with 24 GiB available, whatever runs the tests."""
    monkeypatch.setattr(budget, "available_memory", lambda: 24 * GiB)
    monkeypatch.setattr(budget, "usable_cores", lambda: 2)


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_config_passes_the_budget_of_a_24_gib_machine(machine, path):
    recipe, config = load_recipe_config(path)
    assert recipe.name == config.recipe


def test_smollm2_configs_are_sized_with_the_real_135m_model(machine, monkeypatch):
    seen = []
    real = budget.check_training
    monkeypatch.setattr("mie.recipes.cai.config.check_training",
                        lambda model, *a, **k: seen.append(budget.parameter_count(model)) or real(model, *a, **k))
    load_recipe_config(CONFIGS / "cai_smollm2.yaml")
    assert seen == [134_515_008] * 4  # sft, reward model, dpo, ppo
    monkeypatch.setattr(budget, "available_memory", lambda: 2 * GiB)  # 16 bytes a parameter do not fit in 2 GiB
    with pytest.raises(ConfigError, match=r"^sl.sft.batch_size: training 134,515,008 parameters on batches of 8 x "
                                          r"192 tokens would take about .* more than the 2.1 GB"):
        load_recipe_config(CONFIGS / "cai_smollm2.yaml")


M = "mie train: error: "
REPRODUCTIONS = [
    (["configs/lm_tiny.yaml", "--set", "data.workers=1000"],
     M + "data.workers: 1,000 worker processes is more than this machine's 2 cores can run — use at most 4 "
         "(1 = in-process)"),
    (["configs/demo.yaml", "--set", "data.num_workers=1000"],
     M + "data.num_workers: 1,000 worker processes is more than this machine's 2 cores can run — use at most 4 "
         "(0 = in-process)"),
    (["configs/lm_tiny.yaml", "--set", "model.n_layers=1000000"],
     M + "model.n_layers: 1,000,000 is more than 1,024 — use at most 1,024"),
    (["configs/translate_en_de.yaml", "--set", "model.decoder_layers=1000000"],
     M + "model.decoder_layers: 1,000,000 is more than 1,024 — use at most 1,024"),
    (["configs/vit_shapes.yaml", "--set", "model.layers=1000000"],
     M + "model.layers: 1,000,000 is more than 1,024 — use at most 1,024"),
    (["configs/demo.yaml", "--set", "model.vision_layers=1000000"],
     M + "model.vision_layers: 1,000,000 is more than 1,024 — use at most 1,024"),
    (["configs/cai_tiny.yaml", "--set", "pretrain.model.n_layers=1000000"],
     M + "pretrain.model.n_layers: 1,000,000 is more than 1,024 — use at most 1,024"),
    (["configs/demo.yaml", "--set", "data.batch_size=100000000"],
     M + "data.batch_size: 100,000,000 is more than 65,536 — use at most 65,536"),
    (["configs/lm_tiny.yaml", "--set", "model.n_heads=100000"],
     M + "model.n_heads: 100,000 is more than 1,024 — use at most 1,024"),
    (["configs/lm_tiny.yaml", "--set", "tokenizer.vocab_size=1000000000"],
     M + "tokenizer.vocab_size: 1,000,000,000 is more than 2,097,152 — use at most 2,097,152"),
    (["configs/cai_tiny.yaml", "--set", "sl.generation.candidates=1000000"],
     M + "sl.generation.candidates: 1,000,000 is more than 64 — use at most 64 (1 to 4 is usual: each is a full "
         "generation per prompt)"),
    (["configs/cai_tiny.yaml", "--set", "generation.max_new_tokens=1000000000"],
     M + "generation.max_new_tokens: 1,000,000,000 is more than 383 (the model's context is 384 tokens) — use at "
         "most 383"),
    (["configs/cai_tiny.yaml", "--set", "generation.max_new_tokens=1e9"],
     M + "generation.max_new_tokens: expected int, got '1e9' (str)"),
    (["configs/translate_en_de.yaml", "--set", "decode.beam=1000000"],
     M + "decode.beam: 1,000,000 is more than 64 — use at most 64 (4 to 8 is usual)"),
    (["configs/lm_tiny.yaml", "--set", "sample.max_new_tokens=1000"],
     M + "sample.max_new_tokens: 1,000 leaves no room for the prompt in the model's context of 128 tokens — use "
         "at most 126"),
]


@pytest.mark.parametrize("args, line", REPRODUCTIONS, ids=lambda v: v[-1] if isinstance(v, list) else None)
def test_reproductions_end_in_one_line_before_anything_is_built(machine, capsys, tmp_path, args, line):
    start = time.perf_counter()
    assert main(["train", *[str(CONFIGS.parent / a) if a.startswith("configs/") else a for a in args],
                 "--output-dir", str(tmp_path / "out")]) == 1
    assert time.perf_counter() - start < 5
    assert capsys.readouterr().err.strip() == line  # one line: no warning before it
    assert not (tmp_path / "out").exists()


def test_a_batch_past_the_memory_is_refused_with_the_estimate(machine, capsys, tmp_path):
    assert main(["train", str(CONFIGS / "lm_tiny.yaml"), "--set", "data.batch_size=60000",
                 "--output-dir", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("mie train: error: data.batch_size: training 1,115,264 parameters on batches of 60,000 x "
                          "128 tokens would take about ")
    assert err.endswith("more than the 25.8 GB of memory available on this machine — lower data.batch_size, "
                        "data.block_size or the model's size")


def _run_folder(tmp_path: Path, config: dict) -> Path:
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "config.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    return folder


@pytest.fixture
def never_built(monkeypatch):
    """Model classes that fail the test if anything tries to build one."""
    def refuse(*args, **kwargs):
        raise AssertionError("a model was built")
    for target in ("mie.recipes.lm.run.CausalLM", "mie.recipes.seq2seq.run.EncoderDecoderTransformer",
                   "mie.recipes.clip.run.build_model", "mie.recipes.classification.run.ViTClassifier"):
        monkeypatch.setattr(target, refuse)


@pytest.mark.parametrize("command, config, key", [
    (["generate", "--model", "{run}", "--prompt", "hi"], {"recipe": "lm", "model": {"n_layers": 1_000_000}},
     "model.n_layers: 1,000,000 is more than 1,024 — use at most 1,024"),
    (["translate", "{run}", "hi"], {"recipe": "seq2seq", "model": {"decoder_layers": 1_000_000}},
     "model.decoder_layers: 1,000,000 is more than 1,024 — use at most 1,024"),
    (["eval", "{run}"], {"recipe": "classification", "model": {"layers": 1_000_000}},
     "model.layers: 1,000,000 is more than 1,024 — use at most 1,024"),
    (["search", "{run}", "a red circle"], {"recipe": "clip", "model": {"vision_width": 1_000_000}},
     "model.vision_width: 1,000,000 is more than 65,536 — use at most 65,536"),
    (["embed", "{run}", "{out}"], {"recipe": "clip", "model": {"text_layers": 1_000_000}},
     "model.text_layers: 1,000,000 is more than 1,024 — use at most 1,024"),
])
def test_a_run_folder_is_checked_before_its_model_is_built(machine, never_built, capsys, tmp_path, command, config,
                                                         key):
    run = _run_folder(tmp_path, config)
    args = [a.format(run=run, out=tmp_path / "e.safetensors") for a in command]
    start = time.perf_counter()
    assert main(args) == 1
    assert time.perf_counter() - start < 5
    assert capsys.readouterr().err.strip() == f"mie {command[0]}: error: {run / 'config.yaml'}: {key}"


def test_a_run_folder_past_the_memory_is_refused(monkeypatch, never_built, tmp_path):
    monkeypatch.setattr(budget, "available_memory", lambda: 24 * GiB)
    run = _run_folder(tmp_path, {"recipe": "lm", "model": {"n_layers": 1000, "dim": 8192, "n_heads": 64}})
    from mie.recipes.lm.run import load_lm_run

    with pytest.raises(ConfigError, match=r"config.yaml: model: 806,373,433,344 parameters would take about 3.2 TB, "
                                          r"more than the 25.8 GB of memory available on this machine — lower model.n_layers, "
                                          r"model.dim or model.vocab_size$"):
        load_lm_run(run)


def test_fine_tuning_from_an_oversized_run_folder_is_refused_at_config_load(machine, tmp_path):
    run = _run_folder(tmp_path, {"recipe": "lm", "model": {"n_layers": 1_000_000}})
    with pytest.raises(ConfigError, match=r"config.yaml: model.n_layers: 1,000,000 is more than 1,024"):
        load_recipe_config(CONFIGS / "lm_smollm2_lora.yaml", [f"init={run}"])


def test_translate_refuses_a_huge_beam_before_reading_the_run(capsys, tmp_path):
    assert main(["translate", str(tmp_path / "missing"), "hi", "--beam", "1000000"]) == 1
    assert capsys.readouterr().err.strip() == ("mie translate: error: --beam: 1,000,000 beams is more than 64 — use "
                                               "at most 64 (4 to 8 is usual)")


def test_lm_text_caps_tokenizer_workers_at_the_cores(monkeypatch, tmp_path):
    import mie.data.lm_text as lm_text
    from mie.tokenization.factory import train_tokenizer

    seen = []
    monkeypatch.setattr(lm_text, "usable_cores", lambda: 2)
    monkeypatch.setattr(lm_text, "build_token_cache", lambda *a, workers, **k: seen.append(workers) or 1 / 0)
    (tmp_path / "a.txt").write_text("some text " * 50, encoding="utf-8")
    tokenizer = train_tokenizer("bpe", ["some text"] * 10, vocab_size=270)
    with pytest.raises(ZeroDivisionError):
        lm_text.build_lm_text(tokenizer, [tmp_path / "a.txt"], tmp_path / "cache", 8, workers=1000)
    assert seen == [2]
