"""The seq2seq recipe end to end through `mie train` on a tiny corpus: its report and results beside the
baselines, `mie eval` reproducing them, `mie translate`, and one-line refusals of bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from mie.cli import main
from mie.recipes import RECIPES

pytestmark = pytest.mark.usefixtures("one_thread")

WORDS = {"red": "rot", "blue": "blau", "green": "grün", "file": "Datei", "window": "Fenster", "open": "öffnen",
         "close": "schließen", "save": "speichern", "the": "die", "new": "neue"}
TINY = {
    "recipe": "seq2seq", "project_name": "s2s", "epochs": 2, "log_every": 2, "device": "cpu",
    "schedule": {"name": "inverse_sqrt", "warmup_steps": 2}, "optimizer": {"lr": 3e-3},
    "model": {"dim": 16, "encoder_layers": 1, "decoder_layers": 1, "heads": 2, "max_len": 24, "dropout": 0.0},
    "tokenizer": {"vocab_size": 300},
    "data": {"build": "", "max_length": 16, "batch_size": 8, "eval_batch_size": 8},
    "decode": {"beam": 2, "max_len_b": 4},
}


def _corpus(folder: Path) -> None:
    english = list(WORDS)
    for split, count, offset in (("train", 48, 0), ("valid", 8, 3), ("test", 6, 5)):
        src, tgt = [], []
        for i in range(count):
            a, b, c = english[(i + offset) % 10], english[(3 * i + 1) % 10], english[(7 * i + offset) % 10]
            src.append(f"{a} {b} {c}")
            tgt.append(f"{WORDS[a]} {WORDS[b]} {WORDS[c]}")
        (folder / f"{split}.en").write_text("\n".join(src) + "\n", encoding="utf-8")
        (folder / f"{split}.de").write_text("\n".join(tgt) + "\n", encoding="utf-8")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("s2s")
    (root / "corpus").mkdir()
    _corpus(root / "corpus")
    raw = json.loads(json.dumps(TINY))
    raw["data"]["path"] = str(root / "corpus")
    config = root / "s2s.yaml"
    config.write_text(yaml.safe_dump(raw))
    assert main(["train", str(config), "--output-dir", str(root / "run"), "-q"]) == 0
    return config, root / "run"


def test_registered() -> None:
    assert "seq2seq" in RECIPES


def test_training_writes_a_report_with_model_and_baselines(run, capsys) -> None:
    _, run_dir = run
    results = json.loads((run_dir / "results.json").read_text())
    test = results["translation"]["test"]
    assert test["pairs"] == 6
    assert {"copy source", "word dictionary", "model greedy", "model beam 2"} <= set(test)
    for name in ("copy source", "word dictionary", "model greedy", "model beam 2"):
        assert 0.0 <= test[name]["bleu"] <= 100.0 and 0.0 <= test[name]["chrf"] <= 100.0
    assert test["word dictionary"]["chrf"] > test["copy source"]["chrf"]  # the dictionary learned words
    report = (run_dir / "report.md").read_text()
    assert "| word dictionary |" in report and "| model beam 2 |" in report and "## Samples" in report
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert config["recipe"] == "seq2seq" and config["model"]["src_vocab_size"] == config["model"]["tgt_vocab_size"]
    assert (run_dir / "checkpoints" / "best.safetensors").is_file() and (run_dir / "tokenizer.json").is_file()
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert any("val/nll" in row for row in rows)


def test_eval_reproduces_and_translate_prints_one_line_per_input(run, capsys, monkeypatch) -> None:
    _, run_dir = run
    assert main(["eval", str(run_dir)]) == 0
    assert "model greedy" in capsys.readouterr().out
    assert main(["translate", str(run_dir), "the red file", "--beam", "1"]) == 0
    single = capsys.readouterr().out.splitlines()
    assert len(single) == 1
    import io

    monkeypatch.setattr("sys.stdin", io.StringIO("the red file\nopen the window\n"))
    assert main(["translate", str(run_dir), "-", "--beam", "1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and lines[0] == single[0]


def test_bad_input_is_one_clear_line(run, tmp_path, capsys) -> None:
    config, run_dir = run
    assert main(["train", str(config), "--output-dir", str(tmp_path / "a"), "--set", f"data.path={tmp_path}/none"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no training pairs" in err[0] and "data.build: gettext" in err[0]
    assert main(["train", str(config), "--output-dir", str(tmp_path / "b"), "--set", f"data.path={tmp_path}/none",
                 "--set", "data.build=gettext", "--set", "data.target_lang=xx", "-q"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no gettext catalogs" in err[0] and "'xx'" in err[0]
    assert main(["train", str(config), "--set", "eval_splits=[dev]"]) == 1
    assert "unknown split 'dev'" in capsys.readouterr().err
    assert main(["translate", str(tmp_path / "missing"), "hello"]) == 1
    assert "config.yaml not found" in capsys.readouterr().err
    assert main(["translate", str(run_dir), "hello", "--beam", "0"]) == 1
    assert "--beam: must be at least 1" in capsys.readouterr().err


def test_train_loader_with_a_token_budget_batches_every_pair_once(tmp_path) -> None:
    from mie.recipes.seq2seq.config import TranslationDataConfig
    from mie.recipes.seq2seq.data import make_dataset, read_split, train_loader
    from mie.tokenization.factory import train_tokenizer

    _corpus(tmp_path)
    data = TranslationDataConfig(path=str(tmp_path), build="", max_length=16)
    pairs = read_split(data, "train")
    tokenizer = train_tokenizer("bpe", [s for p in pairs for s in p], vocab_size=300)
    dataset = make_dataset(pairs, tokenizer, data)
    loader = train_loader(dataset, batch_size=32, seed=0, pad_id=tokenizer.pad_id, max_tokens=40)
    seen = 0
    for batch in loader:
        # The budget counts the longer side's text tokens: the source without its eos, the target without bos/eos.
        rows, width = batch["src"].shape[0], max(batch["src"].shape[1] - 1, batch["tgt"].shape[1] - 2)
        assert rows * width <= 40 or rows == 1
        seen += rows
    assert seen == len(dataset) and len(loader) > len(dataset) // 32 + 1  # the budget, not batch_size, cut them
