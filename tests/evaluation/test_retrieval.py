"""Retrieval metrics checked against hand-set similarity matrices and a naive double-loop reference."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import mie.evaluation.retrieval as retrieval
from mie.evaluation.retrieval import (
    embed_batches,
    embed_images,
    embed_texts,
    evaluate_retrieval,
    median_rank,
    retrieval_metrics,
    retrieval_ranks,
    retrieval_topk,
)

# 3 images x 15 captions; captions 5*i..5*i+4 describe image i. With image_embeds = S and
# text_embeds = identity, the score matrix is exactly S (normalize=False).
S = torch.tensor([
    [0.9, 0.5, 1.0, 0.1, 0.2, 0.3, 0.0, 0.0, 0.0, 0.0, 0.8, 0.0, 0.0, 0.0, 0.0],
    [0.95, 0.9, 0.85, 0.0, 0.0, 0.8, 0.7, 0.1, 0.1, 0.1, 0.05, 0.05, 0.05, 0.05, 0.05],
    [0.6, 0.6, 0.6, 0.6, 0.6, 0.6, 0.6, 0.6, 0.6, 0.6, 0.2, 0.3, 0.4, 0.1, 0.1],
])
T2I = torch.arange(15) // 5
# Worked out by hand from S (see the row comments in the test below).
EXPECTED_I2T = [1, 4, 11]
EXPECTED_T2I = [2, 3, 1, 2, 2, 1, 1, 2, 2, 2, 2, 1, 1, 1, 1]


def _hand_inputs():
    return S.clone(), torch.eye(15)


def test_ranks_on_hand_built_matrix():
    # image 0: its caption 2 scores 1.0, the row maximum -> rank 1 (any caption counts)
    # image 1: its best caption (0.8) is beaten by 0.95, 0.9, 0.85 -> rank 4
    # image 2: its best caption (0.4) is beaten by ten captions at 0.6 -> rank 11
    images, texts = _hand_inputs()
    ranks = retrieval_ranks(images, texts, T2I, normalize=False)
    assert ranks["i2t"].tolist() == EXPECTED_I2T
    assert ranks["t2i"].tolist() == EXPECTED_T2I
    assert ranks["i2t"].dtype == torch.long


def test_metrics_on_hand_built_matrix():
    images, texts = _hand_inputs()
    m = retrieval_metrics(images, texts, T2I, normalize=False)
    assert m["i2t_R@1"] == pytest.approx(1 / 3)
    assert m["i2t_R@5"] == pytest.approx(2 / 3)
    assert m["i2t_R@10"] == pytest.approx(2 / 3)
    assert m["t2i_R@1"] == pytest.approx(7 / 15)
    assert m["t2i_R@5"] == pytest.approx(1.0)
    assert m["t2i_R@10"] == pytest.approx(1.0)
    assert m["i2t_median_rank"] == 4.0
    assert m["t2i_median_rank"] == 2.0
    assert m["i2t_mean_rank"] == pytest.approx(16 / 3)
    assert m["mean_R@1"] == pytest.approx((1 / 3 + 7 / 15) / 2)
    assert m["mean_R@5"] == pytest.approx((2 / 3 + 1) / 2)
    assert m["num_images"] == 3 and m["num_texts"] == 15
    assert all(isinstance(v, float) for v in m.values())


def test_custom_ks():
    images, texts = _hand_inputs()
    m = retrieval_metrics(images, texts, T2I, ks=(2, 11), normalize=False)
    assert m["i2t_R@2"] == pytest.approx(1 / 3)
    assert m["i2t_R@11"] == pytest.approx(1.0)
    assert m["t2i_R@2"] == pytest.approx(14 / 15)
    assert "i2t_R@1" not in m
    with pytest.raises(ValueError, match="ks must be positive"):
        retrieval_metrics(images, texts, T2I, ks=(0,), normalize=False)


def test_image_counts_as_correct_if_any_caption_is_retrieved():
    # Image 0 has captions 0 and 1; caption 0 is ranked last but caption 1 first -> rank 1.
    scores = torch.tensor([[0.0, 0.9, 0.5, 0.4], [0.1, 0.2, 0.8, 0.9]])
    t2i = torch.tensor([0, 0, 1, 1])
    ranks = retrieval_ranks(scores, torch.eye(4), t2i, normalize=False)
    assert ranks["i2t"].tolist() == [1, 1]
    # Moving image 0's good caption below one negative makes it rank 2.
    scores[0, 1] = 0.45
    assert retrieval_ranks(scores, torch.eye(4), t2i, normalize=False)["i2t"].tolist() == [2, 1]


def test_tie_conventions_on_collapsed_embeddings():
    # Every embedding identical: all scores tie. Optimistic counts only strictly greater scores.
    images, texts = torch.ones(3, 4), torch.ones(6, 4)
    t2i = torch.tensor([0, 0, 1, 1, 2, 2])
    opt = retrieval_ranks(images, texts, t2i, ties="optimistic")
    assert opt["i2t"].tolist() == [1, 1, 1] and opt["t2i"].tolist() == [1] * 6
    # Pessimistic puts every tied *wrong* item first: 4 wrong captions per image, 2 wrong images per caption.
    pes = retrieval_ranks(images, texts, t2i, ties="pessimistic")
    assert pes["i2t"].tolist() == [5, 5, 5] and pes["t2i"].tolist() == [3] * 6
    with pytest.raises(ValueError, match="ties must be one of"):
        retrieval_ranks(images, texts, t2i, ties="random")


def test_pessimistic_ties_ignore_other_correct_captions():
    # Both captions of image 0 tie at the top: either one is correct, so the rank stays 1.
    scores = torch.tensor([[0.7, 0.7, 0.7, 0.1], [0.0, 0.0, 0.5, 0.6]])
    t2i = torch.tensor([0, 0, 1, 1])
    pes = retrieval_ranks(scores, torch.eye(4), t2i, normalize=False, ties="pessimistic")
    # image 0: best 0.7, tied wrong caption 2 -> rank 2; caption 2 (image 1): 0.7 vs 0.5 -> rank 2
    assert pes["i2t"].tolist() == [2, 1]
    assert pes["t2i"].tolist() == [1, 1, 2, 1]


def _naive_ranks(images, texts, t2i):
    """Reference by a different route: per-pair dot products in float64 and Python loops."""
    a = [x / x.norm() for x in images.double()]
    b = [y / y.norm() for y in texts.double()]
    s = [[float(torch.dot(x, y)) for y in b] for x in a]
    i2t = []
    for i in range(len(a)):
        mine = [j for j in range(len(b)) if int(t2i[j]) == i]
        i2t.append(min(1 + sum(s[i][k] > s[i][j] for k in range(len(b))) for j in mine))
    t2i_r = [1 + sum(s[k][j] > s[int(t2i[j])][j] for k in range(len(a))) for j in range(len(b))]
    return i2t, t2i_r


def test_random_embeddings_match_naive_reference():
    images, texts = torch.randn(7, 8), torch.randn(23, 8)
    t2i = torch.cat([torch.arange(7), torch.randint(0, 7, (16,))])
    ranks = retrieval_ranks(images, texts, t2i, chunk_size=4)
    ref_i2t, ref_t2i = _naive_ranks(images, texts, t2i)
    assert ranks["i2t"].tolist() == ref_i2t
    assert ranks["t2i"].tolist() == ref_t2i
    m = retrieval_metrics(images, texts, t2i)
    assert m["i2t_R@5"] == pytest.approx(np.mean(np.array(ref_i2t) <= 5))
    assert m["t2i_median_rank"] == pytest.approx(np.median(ref_t2i))


@pytest.mark.parametrize("chunk_size", [1, 3, 7, 10, 64, None])
def test_chunked_equals_unchunked(chunk_size):
    images, texts = torch.randn(10, 16), torch.randn(37, 16)
    t2i = torch.cat([torch.arange(10), torch.randint(0, 10, (27,))])
    whole = retrieval_ranks(images, texts, t2i, chunk_size=None)
    parts = retrieval_ranks(images, texts, t2i, chunk_size=chunk_size)
    assert torch.equal(whole["i2t"], parts["i2t"]) and torch.equal(whole["t2i"], parts["t2i"])


def test_chunking_never_builds_the_full_matrix(monkeypatch):
    seen = []
    for name in ("_i2t_chunk_ranks", "_t2i_chunk_ranks"):
        original = getattr(retrieval, name)

        def spy(scores, *args, _original=original):
            seen.append(tuple(scores.shape))
            return _original(scores, *args)

        monkeypatch.setattr(retrieval, name, spy)
    images, texts = torch.randn(20, 4), torch.randn(50, 4)
    retrieval_ranks(images, texts, torch.arange(50) % 20, chunk_size=8)
    assert max(rows for rows, _ in seen) == 8
    assert {cols for _, cols in seen} == {50, 20}  # i2t chunks span captions, t2i chunks span images
    assert sum(rows for rows, cols in seen if cols == 50) == 20


def test_normalize_option_changes_scores():
    # Unnormalised, the long image vector dominates every dot product; normalised, direction decides.
    images = torch.tensor([[10.0, 0.0], [0.0, 1.0]])
    texts = torch.tensor([[1.0, 0.0], [0.2, 1.0]])
    t2i = torch.tensor([0, 1])
    assert retrieval_ranks(images, texts, t2i, normalize=False)["t2i"].tolist() == [1, 2]
    assert retrieval_ranks(images, texts, t2i, normalize=True)["t2i"].tolist() == [1, 1]


def test_median_rank_matches_numpy():
    for values in ([3], [1, 2, 3, 10], [5, 1, 4, 4, 2], [7, 7]):
        assert median_rank(torch.tensor(values)) == pytest.approx(float(np.median(values)))


@pytest.mark.parametrize(
    "images, texts, t2i, match",
    [
        (torch.randn(3, 4), torch.randn(3, 5), [0, 1, 2], "differ in width"),
        (torch.randn(3), torch.randn(3, 4), [0, 1, 2], "2-D"),
        (torch.randn(3, 4), torch.randn(3, 4), [0, 1], "3 captions"),
        (torch.randn(3, 4), torch.randn(3, 4), [0, 1, 3], r"\[0, 2\]"),
        (torch.randn(3, 4), torch.randn(3, 4), [0, 1, 1], "no caption"),
        (torch.zeros(0, 4), torch.randn(3, 4), [0, 1, 1], "at least one image"),
    ],
)
def test_bad_inputs_raise(images, texts, t2i, match):
    with pytest.raises(ValueError, match=match):
        retrieval_ranks(images, texts, t2i)


def test_nan_embeddings_and_bad_chunk_size_raise():
    images = torch.randn(2, 4)
    images[1, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        retrieval_ranks(images, torch.randn(2, 4), [0, 1])
    with pytest.raises(ValueError, match="chunk_size"):
        retrieval_ranks(torch.randn(2, 4), torch.randn(2, 4), [0, 1], chunk_size=0)


def test_topk_matches_full_sort_and_breaks_ties_by_index():
    queries, gallery = torch.randn(5, 6), torch.randn(9, 6)
    idx, val = retrieval_topk(queries, gallery, k=3, chunk_size=2)
    full = F.normalize(queries, dim=-1) @ F.normalize(gallery, dim=-1).T
    for q in range(5):
        order = sorted(range(9), key=lambda g: -float(full[q, g]))[:3]
        assert idx[q].tolist() == order
        assert torch.allclose(val[q], full[q, order], atol=1e-6)
    tie_idx, _ = retrieval_topk(torch.ones(1, 2), torch.ones(4, 2), k=10)
    assert tie_idx.tolist() == [[0, 1, 2, 3]]  # k clipped to the gallery; equal scores in index order
    with pytest.raises(ValueError, match="same D"):
        retrieval_topk(torch.randn(2, 3), torch.randn(2, 4))
    with pytest.raises(ValueError, match="k must be >= 1"):
        retrieval_topk(torch.randn(2, 3), torch.randn(2, 3), k=0)


class TinyEncoder(torch.nn.Module):
    """A linear encoder with dropout, so eval mode is observable in its output."""

    def __init__(self):
        super().__init__()
        self.proj = torch.nn.Linear(4, 3)
        self.drop = torch.nn.Dropout(0.9)

    def encode(self, x, scale=None):
        out = self.drop(self.proj(x))
        return out * scale if scale is not None else out


def test_embed_batches_runs_in_eval_mode_without_grad_and_restores_training():
    model = TinyEncoder().train()
    x = torch.randn(10, 4)
    out = embed_images(model.encode, [x[:4], x[4:]])
    expected = model.proj(x).detach()  # dropout off
    assert torch.allclose(out, expected, atol=1e-6)
    assert out.dtype == torch.float32 and out.device.type == "cpu" and not out.requires_grad
    assert model.training  # restored afterwards
    normed = embed_texts(model.encode, [x], normalize=True)
    assert torch.allclose(normed.norm(dim=-1), torch.ones(10), atol=1e-6)


def test_embed_batches_unpacks_mappings_and_tuples():
    model = TinyEncoder().eval()
    x = torch.randn(3, 4)
    from_dict = embed_batches(model.encode, [{"x": x, "scale": 2.0}])
    from_tuple = embed_batches(model.encode, [(x, 2.0)], device="cpu")
    assert torch.allclose(from_dict, 2 * model.proj(x).detach(), atol=1e-6)
    assert torch.equal(from_dict, from_tuple)


def test_embed_batches_autocast_returns_float32():
    model = TinyEncoder().eval()
    out = embed_batches(model.encode, [torch.randn(2, 4)], autocast_dtype=torch.bfloat16)
    assert out.dtype == torch.float32 and out.shape == (2, 3)


def test_embed_batches_errors():
    with pytest.raises(ValueError, match="empty"):
        embed_batches(lambda x: x, [])
    with pytest.raises(ValueError, match=r"batch 0 gave \(3,\)"):
        embed_batches(lambda x: x, [torch.randn(3)])
    with pytest.raises(ValueError, match="batch 0 gave list"):
        embed_batches(lambda x: [1, 2], [torch.randn(3)])


def test_evaluate_retrieval_equals_metrics_on_embeddings():
    images, texts = torch.randn(6, 5), torch.randn(12, 5)
    t2i = torch.arange(12) % 6
    got = evaluate_retrieval(lambda x: x, lambda x: x, images.split(4), texts.split(5), t2i, chunk_size=3)
    assert got == retrieval_metrics(images, texts, t2i)


@pytest.mark.slow
def test_coco_sized_evaluation_runs_chunked():
    # 5k images x 25k captions (COCO 5k test size). The full score matrix would be 500 MB; chunked it is ~100 MB.
    images = F.normalize(torch.randn(5000, 64), dim=-1)
    t2i = torch.arange(25000) // 5
    texts = F.normalize(images[t2i] + 0.5 * torch.randn(25000, 64), dim=-1)
    m = retrieval_metrics(images, texts, t2i, chunk_size=1024)
    assert 0.0 < m["t2i_R@1"] <= m["t2i_R@5"] <= m["t2i_R@10"] <= 1.0
    assert m["num_images"] == 5000 and m["num_texts"] == 25000


@pytest.mark.parametrize("ties", ["optimistic", "pessimistic"])
def test_many_ties_match_naive_reference(ties):
    # Small integer scores give many exact ties; compare both conventions with a loop written from the rule.
    scores = torch.randint(0, 3, (6, 14)).float()
    t2i = torch.cat([torch.arange(6), torch.randint(0, 6, (8,))])
    ranks = retrieval_ranks(scores, torch.eye(14), t2i, normalize=False, ties=ties, chunk_size=4)
    s = scores.tolist()
    pes = ties == "pessimistic"

    def rank(row, target, correct):
        greater = sum(v > row[target] for v in row)
        tied_wrong = sum(v == row[target] and k not in correct for k, v in enumerate(row))
        return 1 + greater + (tied_wrong if pes else 0)

    ref_i2t = [min(rank(s[i], j, {c for c in range(14) if t2i[c] == i}) for j in range(14) if t2i[j] == i)
               for i in range(6)]
    cols = [[s[i][j] for i in range(6)] for j in range(14)]
    ref_t2i = [rank(cols[j], int(t2i[j]), {int(t2i[j])}) for j in range(14)]
    assert ranks["i2t"].tolist() == ref_i2t
    assert ranks["t2i"].tolist() == ref_t2i
