"""`mie explain` on a tiny finished clip run: every mode's JSON and PNG, and one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from PIL import Image
from tests.tiny import train_tiny_run

import mie
from mie.cli import main
from mie.explain import gradcam


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    return train_tiny_run(tmp_path_factory.mktemp("explain"))


def _image(run: Path) -> Path:
    return next((run.parents[1] / "data" / "shapes" / "images" / "test").glob("*.png"))


def _json(capsys) -> dict:
    return json.loads(capsys.readouterr().out)


def test_image_map_json_has_the_map_and_its_peak_in_image_pixels(run, tmp_path, capsys):
    image = _image(run)
    out = tmp_path / "heat.png"
    assert main(["explain", str(run), "--image", str(image), "--text", "a red circle", "--out", str(out),
                 "--format", "json", "--threads", "1"]) == 0
    result = _json(capsys)
    loaded = mie.load_run(run)
    expected = gradcam(loaded.model, loaded.preprocess(image)[0], loaded.tokenize("a red circle"))
    assert result["map"] == [[round(v, 5) for v in row] for row in expected.values.tolist()]
    width, height = Image.open(image).size
    assert result["peak"] == list(expected.peak_xy(width, height))
    assert 0 <= result["peak"][0] < width and 0 <= result["peak"][1] < height
    assert result["image_size"] == [width, height] and result["method"] == "gradcam"
    assert Image.open(out).format == "PNG"


def test_token_attributions_print_a_table_and_add_up_in_json(run, capsys):
    args = ["explain", str(run), "--image", str(_image(run)), "--text", "a red circle", "--method", "ig"]
    assert main(args) == 0
    table = capsys.readouterr().out
    assert "ig attributions of the cosine similarity" in table and "baseline: zero embedding" in table
    assert main([*args, "--format", "json"]) == 0
    result = _json(capsys)
    total = sum(t["score"] for t in result["tokens"])
    assert abs(total - (result["output"] - result["baseline_output"])) <= 0.01 * abs(result["output"]
                                                                                      - result["baseline_output"])
    assert result["steps"] == 32 and result["tokens"][0]["token"] == "<bos>"


def test_embeddings_and_attention_write_pngs(run, tmp_path, capsys):
    out = tmp_path / "map.png"
    assert main(["explain", str(run), "--embeddings", "--split", "test", "--color-by", "shape", "--out",
                 str(out), "--format", "json"]) == 0
    result = _json(capsys)
    kinds = [p["kind"] for p in result["points"]]
    assert kinds.count("image") == 8 and kinds.count("caption") > 0 and Image.open(out).format == "PNG"
    assert 0 < result["explained_variance"][1] <= result["explained_variance"][0] <= 1
    att = tmp_path / "att.png"
    assert main(["explain", str(run), "--attention", "--text", "a red circle", "--layer", "-1", "--out", str(att),
                 "--format", "json"]) == 0
    result = _json(capsys)
    weights = torch.tensor(result["weights"])
    assert weights.shape == (len(result["tokens"]),) * 2
    torch.testing.assert_close(weights.sum(-1), torch.ones(len(result["tokens"])), atol=1e-4, rtol=0)
    assert Image.open(att).format == "PNG"


def test_similarity_matrix_matches_the_runs_own_embeddings(run, tmp_path, capsys):
    out = tmp_path / "sim.png"
    assert main(["explain", str(run), "--embeddings", "--similarity", "3", "--out", str(out), "--format", "json"]) == 0
    result = _json(capsys)
    embedded = mie.load_run(run).embed_split("test")
    first = [int((embedded.text_image_index == i).nonzero()[0]) for i in range(3)]
    expected = embedded.image_embeds[:3] @ embedded.text_embeds[first].T
    torch.testing.assert_close(torch.tensor(result["similarity"]), expected, atol=1e-4, rtol=0)
    assert result["image_ids"] == embedded.image_ids[:3] and Image.open(out).format == "PNG"


def test_the_heat_map_changes_when_the_run_weights_are_randomised(run):
    loaded = mie.load_run(run)
    image, ids = loaded.preprocess(_image(run))[0], loaded.tokenize("a red circle")
    trained = gradcam(loaded.model, image, ids).values
    torch.manual_seed(7)
    for module in loaded.model.modules():
        if hasattr(module, "reset_parameters") and module is not loaded.model:
            module.reset_parameters()
    assert not torch.allclose(trained, gradcam(loaded.model, image, ids).values, atol=1e-3)


@pytest.mark.parametrize(("args", "message"), [
    (["--text", "a red circle"], "--text: a clip run scores a text against an image — add --image IMG"),
    ([], "mie explain: nothing to explain — pass --text"),
    (["--image", "x.png"], "--image: a clip run's heat map is of an image and a text — add --text"),
    (["--attention", "--text", "x", "--layer", "9"], "--layer: layer 9 is out of range"),
    (["--image", "missing.png", "--text", "x"], "--image missing.png: is no file"),
    (["--embeddings", "--out", "map.jpg"], "--out map.jpg: must end with .png"),
    (["--text", "x", "--image", "x.png", "--projection", "tsne"], "--projection tsne: applies to --embeddings maps only"),
    (["--embeddings", "--perplexity", "10"], "--perplexity: applies to t-SNE maps only"),
    (["--embeddings", "--color-by", "mood"], "--color-by: no image of split test has the attribute 'mood'"),
])
def test_errors_are_one_line(run, capsys, args, message):
    assert main(["explain", str(run), *args]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("mie explain: error: ") and message in err


def test_help_shows_an_example_for_each_mode(capsys):
    with pytest.raises(SystemExit):
        main(["explain", "--help"])
    out = capsys.readouterr().out
    for example in ('--image cat.png --text "a red circle" --out heat.png', "--method gradxinput",
                    "--embeddings --split test --color-by shape --out map.png", "--attention --text"):
        assert example in out
