"""The tag_match loss against BCE by hand; the task encodes the tags as texts; the recipe drops tags no
training caption uses; a loss that needs tags without any is refused."""

import json
import math

import pytest
import torch
import torch.nn.functional as F
import yaml
from tests.tiny import TINY

from mie.losses import TagMatchLoss, build_loss


def _reference(images, tags, targets, scale, bias, positive_weight=1.0):
    logits = scale * F.normalize(images, dim=-1) @ F.normalize(tags, dim=-1).T + bias
    p = torch.sigmoid(logits)
    terms = -(targets * p.log() + (1 - targets) * (1 - p).log())
    return (terms * (1 + (positive_weight - 1) * targets)).mean()


@pytest.mark.parametrize("positive_weight", [1.0, 4.0])
def test_loss_is_binary_cross_entropy_of_scaled_cosines_plus_bias(positive_weight):
    torch.manual_seed(0)
    loss_fn = build_loss("tag_match", init_scale=7.0, init_bias=-2.0, positive_weight=positive_weight)
    images, tags, targets = torch.randn(5, 4), torch.randn(3, 4), (torch.rand(5, 3) > 0.5).float()
    expected = _reference(images, tags, targets, 7.0, -2.0, positive_weight)
    assert loss_fn(images, tags, targets).item() == pytest.approx(expected.item(), rel=1e-5)
    assert set(loss_fn.last_metrics) >= {"loss", "tag_accuracy", "tag_scale"}
    assert loss_fn.last_metrics["tag_scale"] == pytest.approx(7.0)


def test_gradients_reach_both_towers_and_the_learnable_scale_and_bias():
    loss_fn = TagMatchLoss()
    images = torch.randn(4, 6, requires_grad=True)
    tags = torch.randn(2, 6, requires_grad=True)
    loss_fn(images, tags, torch.tensor([[1.0, 0], [0, 1], [1, 1], [0, 0]])).backward()
    for grad in (images.grad, tags.grad, loss_fn.log_scale.grad, loss_fn.bias.grad):
        assert grad is not None and grad.abs().sum() > 0


def test_it_learns_a_conjunction_that_the_parts_cannot_tell():
    """Images holding (red circle + blue square) and (blue circle + red square) share every word: only a
    binding feature separates them, and the loss pays for finding it (the point of phrase tags)."""
    torch.manual_seed(0)
    images = torch.nn.Parameter(torch.randn(2, 8) * 0.01)
    tags = torch.nn.Parameter(torch.randn(2, 8) * 0.01)  # "red circle", "blue circle"
    targets = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    loss_fn = TagMatchLoss(init_bias=0.0)
    opt = torch.optim.Adam([images, tags, *loss_fn.parameters()], lr=0.05)
    for _ in range(200):
        opt.zero_grad()
        loss_fn(images, tags, targets).backward()
        opt.step()
    scores = F.normalize(images, dim=-1) @ F.normalize(tags, dim=-1).T
    assert scores[0, 0] > scores[0, 1] and scores[1, 1] > scores[1, 0]
    assert loss_fn.last_metrics["tag_accuracy"] == 1.0


@pytest.mark.parametrize("images,tags,targets,match", [
    (torch.randn(3, 4), torch.randn(2, 5), torch.zeros(3, 2), "differ in width"),
    (torch.randn(3, 4), torch.randn(2, 4), torch.zeros(3, 5), r"\[B, T\] = \[3, 2\]"),
    (torch.randn(3, 4), torch.randn(2, 4), None, r"\[B, T\] = \[3, 2\]"),
])
def test_mismatched_inputs_are_refused_in_one_line(images, tags, targets, match):
    with pytest.raises(ValueError, match=match):
        TagMatchLoss()(images, tags, targets)


def test_a_non_positive_scale_or_weight_is_refused():
    with pytest.raises(ValueError, match="init_scale"):
        TagMatchLoss(init_scale=0.0)
    with pytest.raises(ValueError, match="positive_weight"):
        TagMatchLoss(positive_weight=-1.0)


def _config(tmp_path, tags, loss):
    raw = json.loads(json.dumps(TINY))
    raw["output_dir"], raw["data"]["path"] = str(tmp_path / "run"), str(tmp_path / "data")
    raw["data"]["caption_tags"] = tags
    raw["loss"] = loss
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    return path


MATCH = {"name": "combined", "kwargs": {"losses": [{"name": "clip"}, {"name": "tag_match", "weight": 1.0}]}}


def test_a_loss_that_needs_tags_without_any_is_refused_before_any_work(tmp_path, capsys):
    from mie.cli import main

    assert main(["train", str(_config(tmp_path, [], MATCH)), "-q"]) != 0
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "data.caption_tags" in err and "stages" not in err
    assert not (tmp_path / "data").exists()


def test_a_tiny_run_matches_tags_as_texts_and_drops_tags_no_caption_uses(tmp_path, caplog):
    from mie.cli import main

    tags = ["circle", "square", "no such phrase", "red"]
    with caplog.at_level("INFO", logger="mie.recipes.clip.train"):
        assert main(["train", str(_config(tmp_path, tags, MATCH)), "-q"]) == 0
    assert "1 of 4 tags appear in no training caption and are left out: no such phrase" in caplog.text
    saved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert saved["data"]["caption_tags"] == ["circle", "square", "red"]
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    first = next(r for r in rows if "train/tag_match/loss" in r)
    # Cosines start near 0, so every logit starts near the bias (-5): BCE near the mean of
    # softplus(5) over present tags and softplus(-5) over absent ones, between the two.
    assert math.log1p(math.exp(-5)) - 0.1 < first["train/tag_match/loss"] < math.log1p(math.exp(5)) + 0.1


def test_ground_scores_each_image_by_its_best_patch():
    torch.manual_seed(0)
    loss_fn = build_loss("tag_ground", init_scale=5.0, init_bias=-1.0)
    tokens, tags, targets = torch.randn(4, 6, 3), torch.randn(2, 3), (torch.rand(4, 2) > 0.5).float()
    best = (F.normalize(tokens, dim=-1) @ F.normalize(tags, dim=-1).T).amax(dim=1)  # [4, 2]
    p = torch.sigmoid(5.0 * best - 1.0)
    expected = -(targets * p.log() + (1 - targets) * (1 - p).log()).mean()
    assert loss_fn(tokens, tags, targets).item() == pytest.approx(expected.item(), rel=1e-5)


def test_ground_binds_where_the_pooled_embedding_cannot():
    """Two images with the same words: red circle + blue square, and blue circle + red square. Patches are
    sums of a colour and a shape direction, so the pooled means are equal and no pooled score can tell the
    images apart, but the best patch can."""
    red, blue, circle, square = torch.eye(4)
    images = torch.stack([torch.stack([red + circle, blue + square]), torch.stack([blue + circle, red + square])])
    red_circle = (red + circle)[None]
    truth, swapped = torch.tensor([[1.0], [0.0]]), torch.tensor([[0.0], [1.0]])
    with torch.no_grad():
        pooled = [float(TagMatchLoss()(images.mean(dim=1), red_circle, t)) for t in (truth, swapped)]
        ground = [float(build_loss("tag_ground")(images, red_circle, t)) for t in (truth, swapped)]
    assert ground[0] < ground[1]  # the truth costs less than its swap: the patches hold the binding
    assert pooled[0] == pytest.approx(pooled[1])  # the pooled embeddings cannot tell


def test_ground_refuses_pooled_embeddings_in_one_line():
    with pytest.raises(ValueError, match="image_token_embeds must have 3 dimensions"):
        build_loss("tag_ground")(torch.randn(3, 4), torch.randn(2, 4), torch.zeros(3, 2))


@pytest.mark.parametrize("name", ["tag_match", "tag_ground", "caption_tags"])
def test_a_tag_subset_scores_only_its_columns(name):
    torch.manual_seed(0)
    names = ["circle", "square", "red", "red circle"]
    full = torch.randn(5, 4), torch.randn(4, 4), (torch.rand(5, 4) > 0.5).float()
    if name == "caption_tags":
        loss_fn = build_loss(name, embed_dim=4, num_tags=4, tag_names=names, tags=["red circle", "circle"])
        emb, _, targets = full
        assert loss_fn.head.out_features == 2
        expected = F.binary_cross_entropy_with_logits(loss_fn.head(emb * 2.0), targets[:, [3, 0]])
        assert loss_fn(emb, targets).item() == pytest.approx(expected.item(), rel=1e-5)
        return
    images = torch.randn(5, 3, 4) if name == "tag_ground" else full[0]
    subset = build_loss(name, tag_names=names, tags=["red circle", "circle"])
    alone = build_loss(name)
    picked = alone(images, full[1][[3, 0]], full[2][:, [3, 0]])
    assert subset(images, full[1], full[2]).item() == pytest.approx(picked.item(), rel=1e-6)


def test_an_unknown_tag_in_a_subset_is_named():
    with pytest.raises(ValueError, match=r"\['hexagon'\] are not in data.caption_tags"):
        build_loss("tag_match", tag_names=["circle", "square"], tags=["circle", "hexagon"])
