"""``mie optimize`` end to end on tiny runs: the optimized run directories load, evaluate (reproducing their
own results.json), generate; the before/after table is printed; bad input is one line."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import yaml
from tests.tiny import TINY_LM

from mie.cli import main

_spec = importlib.util.spec_from_file_location("_api_fixtures", Path(__file__).parents[1] / "api" / "conftest.py")
assert _spec is not None and _spec.loader is not None
_api_fixtures = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_api_fixtures)
TEXT = "the cat sat on the mat. a dog ran in the park. hello there, how are you today? " * 30


@pytest.fixture(scope="module")
def clip_run(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("optimize_clip")
    (root / "runs").mkdir()
    return _api_fixtures.train_tiny_run(root)


@pytest.fixture(scope="module")
def lm_run(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("optimize_lm")
    (root / "doc.txt").write_text(TEXT, encoding="utf-8")
    raw = json.loads(json.dumps(TINY_LM))
    raw["epochs"], raw["data"]["files"] = 1, [str(root / "doc.txt")]
    raw["model"]["dim"], raw["model"]["max_seq_len"] = 32, 64  # 32 inputs: one int4 group of 32
    (root / "lm.yaml").write_text(yaml.safe_dump(raw), encoding="utf-8")
    assert main(["train", str(root / "lm.yaml"), "--output-dir", str(root / "run"), "-q"]) == 0
    return root / "run"


def _optimized(source: Path, out: Path, *args: str) -> dict:
    assert main(["-q", "optimize", *args[:1], str(source), *args[1:], "--output", str(out), "--repeats", "1"]) == 0
    return json.loads((out / "results.json").read_text())["optimization"]


def test_clip_run_quantized_and_pruned_evaluate_like_any_run(clip_run, tmp_path, capsys) -> None:
    details = _optimized(clip_run, tmp_path / "dyn", "quantize", "--method", "dynamic-int8")
    assert set(details["rows"]) == {"before", "dynamic-int8"}
    assert "test mean R@1" in details["rows"]["before"] and details["throughput_ratio"] > 0
    assert "| before |" in capsys.readouterr().out
    assert main(["eval", str(tmp_path / "dyn")]) == 0
    assert "reproduces the numbers" in capsys.readouterr().out
    details = _optimized(clip_run, tmp_path / "heads", "prune", "--method", "heads", "--amount", "0.5",
                         "--finetune-steps", "2")
    assert details["scheme"]["structure"]["attention"]
    assert main(["eval", str(tmp_path / "heads")]) == 0


def test_lm_run_int4_and_wanda_generate_and_evaluate(lm_run, tmp_path, capsys) -> None:
    details = _optimized(lm_run, tmp_path / "int4", "quantize", "--method", "int4-weight")
    assert details["scheme"]["quantization"]["modules"]["tok_embeddings"]["bits"] == 4
    assert main(["eval", str(tmp_path / "int4")]) == 0
    capsys.readouterr()
    assert main(["generate", "--model", str(tmp_path / "int4"), "--prompt", "the cat", "--max-new-tokens", "4",
                 "--temperature", "0"]) == 0
    assert capsys.readouterr().out.strip()
    details = _optimized(lm_run, tmp_path / "wanda", "prune", "--method", "wanda", "--amount", "0.5",
                         "--finetune-steps", "2", "--iterations", "2")
    pruning = details["scheme"]["pruning"]
    assert pruning["linear_sparsity"] == pytest.approx(0.5, abs=0.01) and pruning["iterations"] == 2
    assert main(["eval", str(tmp_path / "wanda")]) == 0


def test_bad_input_is_one_line(clip_run, tmp_path, capsys) -> None:
    assert main(["optimize", "quantize", "smollm2-135m-instruct", "--method", "int8-weight",
                 "--output", str(tmp_path / "x")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("mie optimize: error: --text: smollm2-135m-instruct is a pretrained model")
    assert "\n" not in err
    assert main(["optimize", "quantize", str(clip_run), "--method", "int8-weight", "--output", str(clip_run)]) == 1
    assert "--output: is the source run" in capsys.readouterr().err
