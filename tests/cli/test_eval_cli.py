"""`mie eval RUN_DIR`: best or last weights, any split or dataset, compared with results.json only where
that file can vouch for the numbers, and never a write into the run directory."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from tests.tiny import snapshot, train_tiny_run

from mie.cli import main
from mie.evaluation.retrieval import retrieval_metrics


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    return train_tiny_run(tmp_path_factory.mktemp("eval"))


def _eval(capsys, *argv: str) -> tuple[int, str, str]:
    status = main(["eval", *argv])
    out, err = capsys.readouterr()
    return status, out, err


def _table_row(out: str, split: str) -> str:
    return next(line for line in out.splitlines() if line.startswith(f"| {split} "))


def test_eval_reproduces_the_report_and_writes_nothing(run, capsys):
    before = snapshot(run)
    status, out, _ = _eval(capsys, str(run))
    assert status == 0
    assert f"reproduces the numbers in {run / 'report.md'} (test)" in out
    assert "scored checkpoints/best.safetensors" in out and "nothing to compare" not in out
    assert snapshot(run) == before


def test_a_split_the_report_lacks_is_nothing_to_compare_not_a_difference(run, capsys):
    status, out, _ = _eval(capsys, str(run), "--split", "val")
    assert status == 0
    assert "nothing to compare: results.json has no 'val' split" in out
    assert "differs" not in out and "reproduces" not in out
    assert _table_row(out, "val")
    status, out, _ = _eval(capsys, str(run), "--split", "val", "--split", "test")
    assert status == 0 and "reproduces the numbers" in out and "(test)" in out
    assert "nothing to compare: results.json has no 'val' split" in out


def test_checkpoint_last_scores_the_last_weights(run, capsys):
    import mie

    status, out, _ = _eval(capsys, str(run), "--checkpoint", "last")
    assert status == 0 and "scored checkpoints/last.safetensors" in out
    assert "nothing to compare: results.json scores best.safetensors, not last.safetensors" in out
    last = mie.load_run(run, checkpoint="last").embed_split("test")
    expected = retrieval_metrics(last.image_embeds, last.text_embeds, last.text_image_index)
    assert f"| {100 * expected['i2t_R@1']:.2f} " in _table_row(out, "test")
    from mie.recipes.clip import evaluate

    result, comparison = evaluate(run, checkpoint="last")
    assert result.results["test"] == pytest.approx(expected) and comparison.compared == []


def test_a_run_without_a_report_is_scored_without_claiming_to_reproduce_it(run, tmp_path, capsys):
    bare = tmp_path / "bare"
    shutil.copytree(run, bare)
    (bare / "results.json").unlink()
    (bare / "report.md").unlink()
    before = snapshot(bare)
    status, out, _ = _eval(capsys, str(bare))
    assert status == 0
    assert f"nothing to compare: {bare / 'results.json'} does not exist (the run has no report)" in out
    assert "reproduces" not in out and "differs" not in out
    assert snapshot(bare) == before  # eval never writes a report


def test_another_dataset_is_scored_with_the_runs_model(run, capsys):
    manifest = run.parents[1] / "data" / "shapes" / "captions.jsonl"
    own = json.loads((run / "results.json").read_text())["retrieval"]["test"]
    for fmt in ("jsonl", "auto"):
        status, out, _ = _eval(capsys, str(run), "--data", str(manifest), "--format", fmt)
        assert status == 0
        assert f"nothing to compare: results.json scores the run's own data, not {manifest}" in out
        assert f"| {100 * own['t2i_R@1']:.2f} " in _table_row(out, "test")  # the same images, so the same numbers


def test_a_failed_eval_is_one_line_and_leaves_the_run_untouched(run, tmp_path, capsys):
    before = snapshot(run)
    status, out, err = _eval(capsys, str(run), "--data", str(tmp_path / "missing"))
    assert status == 1 and err.count("\n") == 1 and err.startswith("mie eval: error: data.format: cannot tell")
    status, _, err = _eval(capsys, str(run), "--format", "csv")
    assert status == 1 and "--format: needs --data" in err
    status, _, err = _eval(capsys, str(run), "--split", "nope")
    assert status == 1 and err.startswith("mie eval: error:") and err.count("\n") == 1
    assert snapshot(run) == before


def test_a_tampered_result_differs_and_exits_1(run, tmp_path, capsys):
    copy = tmp_path / "copy"
    shutil.copytree(run, copy)
    data = json.loads((copy / "results.json").read_text())
    data["retrieval"]["test"]["t2i_R@5"] -= 0.25
    (copy / "results.json").write_text(json.dumps(data))
    status, out, _ = _eval(capsys, str(copy))
    assert status == 1 and f"differs from {copy / 'results.json'}:" in out and "test.t2i_R@5" in out


def test_a_run_with_no_test_split_asks_for_one(run, tmp_path, capsys):
    import yaml

    copy = tmp_path / "copy"
    shutil.copytree(run, copy)
    config = yaml.safe_load((copy / "config.yaml").read_text())
    config["data"]["test_splits"] = []
    (copy / "config.yaml").write_text(yaml.safe_dump(config))
    status, _, err = _eval(capsys, str(copy))
    assert status == 1 and "data.test_splits of" in err and "pass --split NAME" in err
    status, out, _ = _eval(capsys, str(copy), "--split", "test")
    assert status == 0 and "reproduces the numbers" in out
