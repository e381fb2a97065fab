"""``mie optimize`` end to end on tiny runs: the optimized run directories load, evaluate (reproducing their
own results.json), generate; the before/after table is printed; bad input is one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from tests.tiny import TINY_LM, train_tiny_run

from mie.cli import main

TEXT = "the cat sat on the mat. a dog ran in the park. hello there, how are you today? " * 30


@pytest.fixture(scope="module")
def clip_run(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("optimize_clip")
    (root / "runs").mkdir()
    return train_tiny_run(root)


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


def test_clip_run_static_int8_calibrates_reloads_and_evaluates(clip_run, tmp_path, capsys) -> None:
    details = _optimized(clip_run, tmp_path / "static", "quantize", "--method", "static-int8",
                         "--calibration-batches", "2")
    scheme = details["scheme"]["quantization"]
    assert scheme["method"] == "static-int8" and 1 <= scheme["calibration"]["batches"] <= 2
    specs = [s for s in scheme["modules"].values() if s["kind"] == "static-int8"]
    assert specs and all(s["input_scale"] > 0 and 0 <= s["input_zero_point"] <= 255 for s in specs)
    assert "static-int8" in details["rows"] and "test mean R@1" in details["rows"]["static-int8"]
    capsys.readouterr()
    assert main(["eval", str(tmp_path / "static")]) == 0
    assert "reproduces the numbers" in capsys.readouterr().out


@pytest.fixture(scope="module")
def seq2seq_run(tmp_path_factory) -> Path:
    from tests.recipes.test_seq2seq import TINY, _corpus

    root = tmp_path_factory.mktemp("optimize_s2s")
    (root / "corpus").mkdir()
    _corpus(root / "corpus")
    raw = json.loads(json.dumps(TINY))
    raw["data"]["path"], raw["epochs"] = str(root / "corpus"), 1
    (root / "s2s.yaml").write_text(yaml.safe_dump(raw), encoding="utf-8")
    assert main(["--threads", "1", "train", str(root / "s2s.yaml"), "--output-dir", str(root / "run"), "-q"]) == 0
    return root / "run"


@pytest.fixture(scope="module")
def classification_run(tmp_path_factory) -> Path:
    from tests.recipes.test_classification import TINY

    root = tmp_path_factory.mktemp("optimize_vit")
    raw = {**json.loads(json.dumps(TINY)), "epochs": 1}
    (root / "vit.yaml").write_text(yaml.safe_dump(raw), encoding="utf-8")
    assert main(["--threads", "1", "train", str(root / "vit.yaml"), "--output-dir", str(root / "run"), "-q"]) == 0
    return root / "run"


def test_seq2seq_run_quantized_rescored_by_bleu_and_reloaded(seq2seq_run, tmp_path, capsys) -> None:
    for method in ("dynamic-int8", "static-int8"):
        details = _optimized(seq2seq_run, tmp_path / method, "quantize", "--method", method,
                             "--calibration-batches", "2")
        before, after = details["rows"]["before"], details["rows"][method]
        assert {"test BLEU", "test chrF"} <= set(before) and {"test BLEU", "test chrF"} <= set(after)
        saved = json.loads((tmp_path / method / "results.json").read_text())["translation"]["test"]
        assert after["test BLEU"] == round(saved["model beam 2"]["bleu"], 2)  # the recipe's own evaluation
        capsys.readouterr()
        assert main(["eval", str(tmp_path / method)]) == 0
        assert "reproduces the numbers" in capsys.readouterr().out
    details = _optimized(seq2seq_run, tmp_path / "wanda", "prune", "--method", "wanda", "--amount", "0.5",
                         "--calibration-batches", "2")
    assert details["scheme"]["pruning"]["linear_sparsity"] == pytest.approx(0.5, abs=0.01)


def test_classification_run_quantized_rescored_by_accuracy(classification_run, tmp_path, capsys) -> None:
    details = _optimized(classification_run, tmp_path / "static", "quantize", "--method", "static-int8",
                         "--calibration-batches", "2")
    saved = json.loads((tmp_path / "static" / "results.json").read_text())["classification"]
    assert details["rows"]["static-int8"]["test_heldout top-1"] == round(saved["test_heldout"]["accuracy"], 4)
    assert 0.0 <= details["rows"]["before"]["test top-1"] <= 1.0
    capsys.readouterr()
    assert main(["eval", str(tmp_path / "static")]) == 0
    assert "reproduces the numbers" in capsys.readouterr().out
    assert main(["optimize", "prune", str(classification_run), "--method", "magnitude", "--finetune-steps", "2",
                 "--output", str(tmp_path / "ft")]) == 1
    assert "--finetune-steps: fine-tuning a classification run after pruning is not built" in capsys.readouterr().err
    assert not (tmp_path / "ft").exists()


def test_lm_run_static_int8_generates(lm_run, tmp_path, capsys) -> None:
    details = _optimized(lm_run, tmp_path / "static", "quantize", "--method", "static-int8", "--calibration-batches", "1")
    assert details["scheme"]["quantization"]["modules"]["layers.0.mlp.w1"]["kind"] == "static-int8"
    assert "tok_embeddings" not in details["scheme"]["quantization"]["modules"]  # linears only
    capsys.readouterr()
    assert main(["generate", "--model", str(tmp_path / "static"), "--prompt", "the cat", "--max-new-tokens", "4",
                 "--temperature", "0"]) == 0
    assert capsys.readouterr().out.strip()
