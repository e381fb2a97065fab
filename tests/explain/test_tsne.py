"""Exact t-SNE (mie.explain.tsne): clusters stay apart, the perplexity search, the gradient, determinism,
one-line refusals, and ``mie explain --embeddings --projection tsne``."""

from __future__ import annotations

import json
import math

import pytest
import torch
from PIL import Image
from tests.tiny import train_tiny_run

from mie.cli import main
from mie.explain.tsne import MAX_POINTS, conditional_p, joint_p, kl_gradient, squared_distances, tsne_2d


def _clusters(per: int = 30, dim: int = 10, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Three unit Gaussians around centres ~30 apart, and each point's cluster."""
    g = torch.Generator().manual_seed(seed)
    centres = 10 * torch.randn(3, dim, generator=g)
    x = torch.cat([c + torch.randn(per, dim, generator=g) for c in centres])
    return x, torch.arange(3).repeat_interleave(per)


def test_well_separated_clusters_stay_apart_in_the_map():
    x, labels = _clusters()
    y = tsne_2d(x, perplexity=20)
    assert y.shape == (90, 2) and y.dtype == torch.float32 and bool(torch.isfinite(y).all())
    d = torch.cdist(y, y).fill_diagonal_(math.inf)
    assert float((labels[d.argmin(dim=1)] == labels).float().mean()) == 1.0  # 1-NN accuracy in the map


@pytest.mark.parametrize("perplexity", [2.0, 5.0, 20.0])
def test_each_conditional_row_has_the_entropy_of_the_perplexity(perplexity):
    x, _ = _clusters(per=20)
    p = conditional_p(squared_distances(x), perplexity)
    torch.testing.assert_close(p.sum(dim=1), torch.ones(60, dtype=torch.float64))
    assert float(p.diagonal().abs().max()) == 0.0
    entropy = -(p * torch.log(p.clamp_min(1e-300))).sum(dim=1)  # nats; 0 log 0 = 0
    assert float((entropy - math.log(perplexity)).abs().max()) < 1e-3


def test_the_gradient_matches_autograd_on_the_kl_divergence():
    g = torch.Generator().manual_seed(3)
    p = joint_p(torch.randn(7, 5, generator=g), perplexity=2.0)
    y = torch.randn(7, 2, generator=g, dtype=torch.float64, requires_grad=True)
    off = ~torch.eye(7, dtype=torch.bool)
    num = 1 / (1 + ((y[:, None, :] - y[None, :, :]) ** 2).sum(-1))
    q = num[off] / num[off].sum()
    kl = (p[off] * torch.log(p[off] / q)).sum()
    (expected,) = torch.autograd.grad(kl, y)
    torch.testing.assert_close(kl_gradient(p, y.detach()), expected, atol=1e-10, rtol=1e-8)


def test_the_same_seed_gives_the_same_map():
    x, _ = _clusters(per=10)
    first = tsne_2d(x, perplexity=5, steps=300, seed=4)
    assert torch.equal(first, tsne_2d(x, perplexity=5, steps=300, seed=4))
    assert not torch.equal(first, tsne_2d(x, perplexity=5, steps=300, seed=5))  # the seed's jitter counts


@pytest.mark.parametrize(("embeds", "perplexity", "message"), [
    (torch.randn(2, 4), 0.3, "t-SNE needs at least 3 points, got 2"),
    (torch.randn(10, 4), 5.0, "perplexity 5.0 is out of range: for 10 points it must be in (0, 3]"),
    (torch.randn(10, 4), 0.0, "perplexity 0.0 is out of range: for 10 points it must be in (0, 3]"),
    (torch.randn(10, 4), math.nan, "perplexity nan is out of range"),
    (torch.tensor([[0.0, 1.0], [math.nan, 0.0], [1.0, 1.0], [2.0, 0.0]]), 1.0, "non-finite values"),
    (torch.randn(5), 1.0, "t-SNE needs embeddings [N, D], got shape (5,)"),
    (torch.zeros(MAX_POINTS + 1, 1), 30.0, "exact t-SNE is O(N^2) in memory: at most 5,000 points, got 5,001"),
])
def test_bad_inputs_are_refused_in_one_line(embeds, perplexity, message):
    with pytest.raises(ValueError, match="^[^\n]*$") as caught:
        tsne_2d(embeds, perplexity)
    assert message in str(caught.value)


def test_mie_explain_draws_a_tsne_map_of_a_tiny_run(tmp_path_factory, capsys):
    run = train_tiny_run(tmp_path_factory.mktemp("tsne"))
    capsys.readouterr()  # the training's own output
    out = run.parent / "tsne.png"
    assert main(["explain", str(run), "--embeddings", "--projection", "tsne", "--perplexity", "3",
                 "--out", str(out), "--format", "json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["projection"] == "tsne" and result["perplexity"] == 3 and result["explained_variance"] is None
    kinds = [p["kind"] for p in result["points"]]
    assert kinds.count("image") == 8 and kinds.count("caption") > 0 and Image.open(out).format == "PNG"
    assert all(math.isfinite(p["x"]) and math.isfinite(p["y"]) for p in result["points"])
    assert main(["explain", str(run), "--embeddings", "--projection", "tsne", "--perplexity", "99"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--projection tsne: perplexity 99.0 is out of range" in err
    with pytest.raises(SystemExit):
        main(["explain", "--help"])
    assert "--embeddings --projection tsne" in capsys.readouterr().out
