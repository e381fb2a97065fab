"""Caption-tag targets from captions, the caption_tags loss against BCE by hand, config refusals, a tiny run."""

import json
import math

import pytest
import torch
import yaml
from tests.tiny import TINY

from mie.data.image_text import caption_tag_targets
from mie.losses import CaptionTagLoss, build_loss


def test_targets_mark_words_any_caption_of_the_image_holds_as_whole_words():
    targets = caption_tag_targets([["a red circle", "one circle"], ["a circled star", "a Square"], []],
                                  ["circle", "square", "star"])
    torch.testing.assert_close(targets, torch.tensor([[1.0, 0, 0], [0, 1, 1], [0, 0, 0]]))


def test_a_phrase_tag_needs_its_words_in_a_row():
    targets = caption_tag_targets([["a small red circle"], ["a red square and a circle"], ["the Red  Circle!"]],
                                  ["red circle", "red", "circle"])
    torch.testing.assert_close(targets, torch.tensor([[1.0, 1, 1], [0, 1, 1], [1, 1, 1]]))


def test_loss_is_binary_cross_entropy_of_the_head_on_scaled_embeddings():
    torch.manual_seed(0)
    loss_fn = build_loss("caption_tags", embed_dim=4, num_tags=3)
    emb, targets = torch.randn(5, 4), (torch.rand(5, 3) > 0.5).float()
    logits = (emb * 2.0) @ loss_fn.head.weight.T + loss_fn.head.bias
    p = torch.sigmoid(logits)
    expected = -(targets * p.log() + (1 - targets) * (1 - p).log()).mean()
    assert loss_fn(emb, targets).item() == pytest.approx(expected.item(), rel=1e-5)
    assert set(loss_fn.last_metrics) >= {"loss", "tag_accuracy"}


def test_the_head_learns_tags_that_the_embeddings_separate():
    torch.manual_seed(0)
    loss_fn = CaptionTagLoss(embed_dim=8, num_tags=2)
    emb = torch.nn.functional.normalize(torch.randn(64, 8), dim=-1)
    targets = torch.stack([(emb[:, 0] > 0).float(), (emb[:, 1] < 0).float()], 1)
    opt = torch.optim.Adam(loss_fn.parameters(), lr=0.05)
    for _ in range(200):
        opt.zero_grad()
        loss_fn(emb, targets).backward()
        opt.step()
    assert float(loss_fn.last_metrics["tag_accuracy"]) > 0.95


@pytest.mark.parametrize("kwargs,match", [({"embed_dim": 4, "num_tags": 0}, "data.caption_tags"),
                                          ({"embed_dim": 4, "num_tags": 2}, r"\[B, 2\]")])
def test_bad_setup_or_targets_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        CaptionTagLoss(**kwargs)(torch.randn(3, 4), torch.zeros(3, 5))


def _config(tmp_path, data=None, loss=None):
    raw = json.loads(json.dumps(TINY))
    raw["output_dir"], raw["data"]["path"] = str(tmp_path / "run"), str(tmp_path / "data")
    raw["data"].update(data or {})
    if loss:
        raw["loss"] = loss
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    return path


TAG_LOSS = {"name": "combined", "kwargs": {"losses": [{"name": "clip"}, {"name": "caption_tags", "weight": 1.0}]}}


@pytest.mark.parametrize("data,loss,match", [
    ({}, TAG_LOSS, "data.caption_tags"),
    ({"caption_tags": ["circle", "square"]}, None, "no loss uses it"),
])
def test_tags_without_the_loss_or_the_loss_without_tags_is_refused_before_any_work(tmp_path, capsys, data, loss,
                                                                                     match):
    from mie.cli import main

    assert main(["train", str(_config(tmp_path, data, loss)), "-q"]) != 0
    assert match in capsys.readouterr().err
    assert not (tmp_path / "data").exists()


def test_a_tiny_run_trains_the_tag_head_beside_clip(tmp_path):
    from mie.cli import main

    tags = ["circle", "square", "triangle", "star", "hexagon", "cross", "diamond"]
    assert main(["train", str(_config(tmp_path, {"caption_tags": tags}, TAG_LOSS)), "-q"]) == 0
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    first = next(r for r in rows if "train/caption_tags/loss" in r)
    # A fresh head with zero-mean weights predicts ~0.5 for every tag: BCE starts near log 2.
    assert abs(first["train/caption_tags/loss"] - math.log(2)) < 0.3
