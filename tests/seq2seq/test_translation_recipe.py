"""The seq2seq recipe's translation levers on a tiny corpus with placeholders: language placeholders in
paths, masked training with sentinel tokens, validation BLEU/chrF for checkpoint selection, the
dictionary-primed source (held-out dictionaries for training pairs), survival in the report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from mie.cli import main
from mie.config import ConfigError, load_config
from mie.models.seq2seq_decoding import ban_repeats
from mie.recipes.seq2seq.config import Seq2SeqRecipeConfig, check_config
from mie.recipes.seq2seq.data import learn_dictionary, mask_pairs, prime_pairs

pytestmark = pytest.mark.usefixtures("one_thread")

WORDS = {"red": "rot", "blue": "blau", "file": "Datei", "window": "Fenster", "open": "öffnen", "save": "speichern",
         "the": "die", "new": "neue"}
TINY = {
    "recipe": "seq2seq", "project_name": "s2s_{target_lang}", "epochs": 2, "log_every": 2, "device": "cpu",
    "schedule": {"name": "inverse_sqrt", "warmup_steps": 2}, "optimizer": {"lr": 3e-3},
    "best_metric": "val/chrf", "best_mode": "max",
    "model": {"dim": 16, "encoder_layers": 1, "decoder_layers": 1, "heads": 2, "max_len": 40, "dropout": 0.0},
    "tokenizer": {"vocab_size": 320},
    "data": {"build": "", "max_length": 30, "batch_size": 8, "eval_batch_size": 8, "valid_decode_pairs": 4,
             "target_lang": "xx", "dictionary_prime": True},
    "decode": {"beam": 2, "max_len_b": 6, "no_repeat_ngram": 3},
}


def _corpus(folder: Path) -> None:
    english = list(WORDS)
    folder.mkdir(parents=True)
    for split, count, offset in (("train", 40, 0), ("valid", 6, 3), ("test", 6, 5)):
        src, tgt = [], []
        for i in range(count):
            a, b = english[(i + offset) % 8], english[(3 * i + 1) % 8]
            src.append(f"{a} %s {b}\\n" if i % 2 else f"_{a} {b}")
            tgt.append(f"{WORDS[a]} %s {WORDS[b]}\\n" if i % 2 else f"_{WORDS[a]} {WORDS[b]}")
        (folder / f"{split}.en").write_text("\n".join(src) + "\n", encoding="utf-8")
        (folder / f"{split}.xx").write_text("\n".join(tgt) + "\n", encoding="utf-8")


def test_language_placeholders_in_paths_and_refusals(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"recipe": "seq2seq", "output_dir": "runs/t_{source_lang}_{target_lang}"}))
    config = load_config(path, Seq2SeqRecipeConfig, ["data.target_lang=fr"])
    check_config(config)
    assert (config.data.path, config.output_dir) == ("data/translation/en-fr", "runs/t_en_fr")
    with pytest.raises(ConfigError, match="best_metric: val/bleu needs validation translations"):
        check_config(load_config(path, Seq2SeqRecipeConfig, ["best_metric=val/bleu"]))


def test_training_pairs_are_primed_by_held_out_dictionaries() -> None:
    pairs = [("open file", "Datei öffnen"), ("save window", "Fenster speichern")] * 2 + [("open window", "Fenster öffnen")]
    masked, dropped = mask_pairs(pairs + [("open %s", "öffnen")])
    assert dropped == 1  # the translation lost its %s
    full = learn_dictionary(pairs)
    assert prime_pairs(masked, full)[0][0] == full.translate("open file") != "open file"
    # each pair is translated by a dictionary of the other fold, which never saw its words twice
    held_out = prime_pairs(masked, folds=2)
    assert [s for s, _ in held_out[:2]] == ["open file", "save window"]
    assert full.translate("save window") == "speichern Fenster"


def test_ban_repeats() -> None:
    logp = ban_repeats(torch.zeros(2, 6), [[1, 2, 3, 1, 2], [1, 2]], n=3)
    assert torch.isinf(logp[0, 3]) and torch.isfinite(logp[0]).sum() == 5 and torch.isfinite(logp[1]).all()


def test_masked_primed_run_selects_by_valid_chrf_and_reports_survival(tmp_path: Path, capsys) -> None:
    _corpus(tmp_path / "corpus-en-xx")
    raw = json.loads(json.dumps(TINY))
    raw["data"]["path"] = str(tmp_path / "corpus-{source_lang}-{target_lang}")
    raw["output_dir"] = str(tmp_path / "run_{target_lang}")
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(raw))
    assert main(["train", str(tmp_path / "c.yaml"), "-q"]) == 0
    run = tmp_path / "run_xx"
    epochs = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if '"epoch"' in line]
    assert all({"val/bleu", "val/chrf", "val/placeholders"} <= set(e) for e in epochs if "val/nll" in e)
    best = json.loads((run / "checkpoints" / "best.json").read_text())
    assert "val/chrf" in json.dumps(best)
    tokenizer = json.loads((run / "tokenizer.json").read_text())
    assert "<ph0>" in tokenizer["special_tokens"] and tokenizer["split_special_tokens"] is True
    results = json.loads((run / "results.json").read_text())["translation"]["test"]
    assert results["pairs with placeholders"] == 6  # %s and \n, or the accelerator
    assert results["copy source"]["placeholders"] == 100.0
    assert results["model beam 2"]["placeholders"] == 100.0  # the quota puts every sentinel out once
    out = capsys.readouterr().out
    assert "placeholders kept" in out and "test (6 pairs, 6 with placeholders)" in out
    assert main(["eval", str(run)]) == 0  # re-scoring (primed, masked, constrained) reproduces the report
    assert main(["translate", str(run), "open %s"]) == 0
    assert "%s" in capsys.readouterr().out
