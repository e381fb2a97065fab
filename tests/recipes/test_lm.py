"""The lm recipe end to end through `mie train`: a few steps on a few KB of text, its report, `mie eval`,
one-line refusals, and an exact resume after a kill mid-run."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import yaml
from tests.tiny import TINY_LM, strip_wall_clock

from mie.cli import main
from mie.io import load_weights
from mie.io.faults import SimulatedKill, inject
from mie.recipes import RECIPES

WORDS = ("the editor opens a buffer and a window shows it; quit with :q and write with :w. "
         "help is found with :help and tags jump between topics. ")
TINY = TINY_LM


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("lm")
    for i in range(3):
        (root / f"doc{i}.txt").write_text(f"Chapter {i}.\n" + WORDS * 8, encoding="utf-8")
    raw = json.loads(json.dumps(TINY))
    raw["data"]["files"] = [str(root / "doc*.txt")]
    config = root / "lm.yaml"
    config.write_text(yaml.safe_dump(raw))
    with inject("never") as seen:
        assert main(["train", str(config), "--output-dir", str(root / "ref"), "-q"]) == 0
    return config, root / "ref", list(seen)


def _outcome(run: Path) -> dict:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    last, _ = load_weights(run / "checkpoints" / "last.safetensors")
    return {"results": strip_wall_clock(json.loads((run / "results.json").read_text())), "rows": strip_wall_clock(rows), "last": last,
            "samples": (run / "samples.txt").read_text()}


def test_lm_is_registered():
    assert "lm" in RECIPES


def test_a_tiny_run_trains_reports_and_reevaluates(setup, capsys):
    _, run, _ = setup
    results = json.loads((run / "results.json").read_text())
    val = results["language_model"]["val"]
    assert all(math.isfinite(val[k]) for k in ("loss", "perplexity", "bits_per_byte"))
    assert val["perplexity"] == pytest.approx(math.exp(val["loss"]))
    assert val["bits_per_byte"] == pytest.approx(val["loss"] / math.log(2) / val["bytes_per_token"])
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert all(math.isfinite(r["train/loss"]) for r in rows if "train/loss" in r)
    assert any("val/bits_per_byte" in r for r in rows)
    assert (run / "samples.txt").read_text().count("--- step") == 3  # one sample per validation
    assert results["samples"] and "Samples" in (run / "report.md").read_text()
    assert (run / "tokenizer.json").is_file() and yaml.safe_load((run / "config.yaml").read_text())["recipe"] == "lm"
    capsys.readouterr()
    assert main(["eval", str(run)]) == 0
    assert "reproduces the numbers" in capsys.readouterr().out


def test_resume_after_a_kill_mid_run_is_exact(setup, tmp_path):
    config, ref, seen = setup
    run = tmp_path / "run"
    argv = ["train", str(config), "--output-dir", str(run), "-q"]
    with pytest.raises(SimulatedKill), inject("commit:published", times=seen.count("commit:published") // 2):
        main(argv)
    assert not (run / "results.json").exists()
    assert main([*argv, "--resume"]) == 0
    a, b = _outcome(run), _outcome(ref)
    assert a["results"] == b["results"] and a["rows"] == b["rows"] and a["samples"] == b["samples"]
    assert a["last"].keys() == b["last"].keys() and all((a["last"][k] == b["last"][k]).all() for k in a["last"])


@pytest.mark.parametrize(("override", "message"), [
    ("data.files=[/nonexistent/*.txt]", "data.files: no text file matches /nonexistent/*.txt"),
    ("data.block_size=64", "data.block_size: 64 is longer than model.max_seq_len 16"),
    ("tokenizer.name=simple", "tokenizer.name: 'simple' cannot feed the token cache"),
])
def test_bad_configs_are_refused_in_one_line(setup, tmp_path, capsys, override, message):
    config, _, _ = setup
    assert main(["train", str(config), "--output-dir", str(tmp_path / "x"), "--set", override]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]


def test_mie_generate_continues_with_a_finished_lm_run(setup, capsys):
    from mie.models.generation import generate
    from mie.recipes.lm.run import load_lm_run

    _, run, _ = setup
    capsys.readouterr()
    assert main(["generate", "--model", str(run), "--prompt", "Chapter", "--max-new-tokens", "8",
                 "--temperature", "0"]) == 0
    model, tokenizer = load_lm_run(run)
    expected = generate(model, [tokenizer.encode("Chapter")], max_new_tokens=8, stop_ids=[tokenizer.eos_id])[0]
    assert capsys.readouterr().out == tokenizer.decode(expected) + "\n"
