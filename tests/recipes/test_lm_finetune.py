"""Fine-tuning through `recipe: lm` with `init:` — fully and with LoRA (merged on save), a resume of a
LoRA run, and the tokenizer kept out of the validation text. Starts from a tiny lm run trained here."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from tests.tiny import TINY_LM

from mie.cli import main
from mie.io import load_weights
from mie.io.faults import SimulatedKill, inject
from mie.models.causal_lm import CausalLM
from mie.models.lora import LoRALinear, apply_lora, merged_state_dict
from mie.recipes.lm.train import training_texts

WORDS = "the editor opens a buffer and a window shows it; quit with :q and write with :w. "
BASE = {**TINY_LM, "epochs": 2, "tokenizer": {"vocab_size": 270}, "sample": {"max_new_tokens": 3, "num_samples": 1},
        "data": {**TINY_LM["data"], "blocks_per_epoch": 8}}


@pytest.fixture(scope="module")
def base_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("ft")
    for i in range(2):
        (root / f"doc{i}.txt").write_text(f"Part {i}.\n" + WORDS * 10, encoding="utf-8")
    raw = json.loads(json.dumps(BASE))
    raw["data"]["files"] = [str(root / "doc*.txt")]
    (root / "base.yaml").write_text(yaml.safe_dump(raw))
    assert main(["train", str(root / "base.yaml"), "--output-dir", str(root / "base"), "-q"]) == 0
    return root, raw


def _finetune_config(root: Path, raw: dict, **extra) -> Path:
    cfg = {**json.loads(json.dumps(raw)), "init": str(root / "base"), **extra}
    cfg["model"] = {"dim": 999}  # ignored: the starting model's architecture wins
    path = root / f"ft_{len(list(root.glob('ft_*.yaml')))}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_lora_finetune_trains_only_adapters_and_saves_merged_weights(base_run):
    root, raw = base_run
    config = _finetune_config(root, raw, lora={"r": 2, "alpha": 4, "targets": ["wq", "wv"]})
    run = root / "lora"
    assert main(["train", str(config), "--output-dir", str(run), "-q"]) == 0
    base, _ = load_weights(root / "base" / "checkpoints" / "best.safetensors")
    tuned, _ = load_weights(run / "checkpoints" / "last.safetensors")
    assert tuned.keys() == base.keys()  # merged: the plain architecture's names, no lora_a/lora_b
    changed = {k for k in base if not torch.equal(base[k], tuned[k])}
    assert changed and all(k.endswith(("q_proj.weight", "v_proj.weight")) for k in changed)  # wq, wv: earlier names
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["model"]["dim"] == 16 and saved["init"] == str(root / "base")
    results = json.loads((run / "results.json").read_text())
    assert "initial_val_loss" in results["training"]
    assert (run / "tokenizer.json").read_bytes() == (root / "base" / "tokenizer.json").read_bytes()


def test_full_finetune_changes_every_weight_and_lowers_loss(base_run):
    root, raw = base_run
    config = _finetune_config(root, raw)
    run = root / "full"
    assert main(["train", str(config), "--output-dir", str(run), "-q"]) == 0
    base, _ = load_weights(root / "base" / "checkpoints" / "best.safetensors")
    tuned, _ = load_weights(run / "checkpoints" / "last.safetensors")
    assert tuned.keys() == base.keys()
    assert sum(not torch.equal(base[k], tuned[k]) for k in base) > len(base) // 2
    results = json.loads((run / "results.json").read_text())
    assert results["language_model"]["val"]["loss"] < results["training"]["initial_val_loss"]


def test_lora_run_resumes_exactly_after_a_kill(base_run, tmp_path):
    root, raw = base_run
    config = _finetune_config(root, raw, lora={"r": 2})
    ref, run = tmp_path / "ref", tmp_path / "run"
    with inject("never") as seen:
        assert main(["train", str(config), "--output-dir", str(ref), "-q"]) == 0
    with pytest.raises(SimulatedKill), inject("commit:published", times=max(1, seen.count("commit:published") // 2)):
        main(["train", str(config), "--output-dir", str(run), "-q"])
    assert main(["train", str(config), "--output-dir", str(run), "-q", "--resume"]) == 0
    a, _ = load_weights(run / "checkpoints" / "last.safetensors")
    b, _ = load_weights(ref / "checkpoints" / "last.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_lora_without_init_and_unknown_init_are_refused(base_run, tmp_path, capsys):
    root, _ = base_run
    argv = ["train", str(root / "base.yaml"), "--output-dir", str(tmp_path / "x")]
    assert main([*argv, "--set", "lora.r=4"]) == 1
    assert "lora.r: adapters fine-tune a trained model, but init is empty" in capsys.readouterr().err
    assert main([*argv, "--set", "init=no-such-model"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "init: unknown model 'no-such-model' (no pretrained model and no folder has this name)" in err[0]


def test_merged_state_dict_computes_what_the_adapted_model_computes():
    from mie.models.causal_lm import CausalLMConfig

    torch.manual_seed(0)
    config = CausalLMConfig(vocab_size=50, dim=16, n_layers=2, n_heads=2, max_seq_len=8)
    model = CausalLM(config)
    apply_lora(model, ("q_proj", "v_proj", "w2"), r=3, alpha=6.0)
    for module in model.modules():
        if isinstance(module, LoRALinear):
            torch.nn.init.normal_(module.lora_b)  # a trained (non-zero) adapter
    plain = CausalLM(config)
    plain.load_state_dict(merged_state_dict(model))
    ids = torch.randint(0, 50, (2, 8))
    torch.testing.assert_close(plain(ids), model(ids), atol=1e-5, rtol=1e-5)
    assert any(isinstance(m, LoRALinear) for m in model.modules())  # the model itself is left adapted


def test_the_tokenizer_never_sees_the_validation_text(tmp_path):
    files = []
    for i in range(4):
        files.append(tmp_path / f"f{i}.txt")
        files[-1].write_text(f"file{i} " * 1000, encoding="utf-8")
    kept = "".join(training_texts(files, val_fraction=0.1))
    total = sum(len(f.read_text()) for f in files)
    assert len(kept) <= total * 0.85 - 1024 + 1  # validation (10 %) plus a margin is held out
    assert "".join(f.read_text() for f in files).startswith(kept)  # a prefix: the end (validation) is cut
