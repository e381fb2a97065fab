"""CLIPStyleLoss against a naive per-row reference, chunked == dense, match_ids, precision, errors."""

import math

import pytest
import torch
import torch.nn.functional as F

from mie.losses import CLIPStyleLoss, build_loss


def naive_clip(img, txt, scale, ids=None, eps=0.0):
    """Reference: explicit soft-target cross-entropy, row by row, both directions."""
    img, txt = F.normalize(img, dim=-1), F.normalize(txt, dim=-1)
    n = img.shape[0]

    def one_direction(q, k):
        total = 0.0
        for i in range(n):
            logits = [float(scale) * float(q[i] @ k[j]) for j in range(n)]
            m = max(logits)
            lse = m + math.log(sum(math.exp(x - m) for x in logits))
            pos = [j for j in range(n) if (ids[j] == ids[i] if ids is not None else j == i)]
            target = [((1 - eps) / len(pos) if j in pos else 0.0) + eps / n for j in range(n)]
            total += sum(t * (lse - x) for t, x in zip(target, logits))
        return total / n

    return (one_direction(img, txt) + one_direction(txt, img)) / 2


@pytest.mark.parametrize("n,d", [(2, 3), (5, 8), (9, 4)])
@pytest.mark.parametrize("temperature", [0.01, 0.07, 1.0])
def test_matches_naive_reference(n, d, temperature):
    img, txt = torch.randn(n, d, dtype=torch.float64), torch.randn(n, d, dtype=torch.float64)
    loss = CLIPStyleLoss(temperature=temperature)(img, txt)
    assert loss.item() == pytest.approx(naive_clip(img, txt, 1 / temperature), abs=1e-5)


@pytest.mark.parametrize("eps", [0.0, 0.1])
@pytest.mark.parametrize("chunk", [None, 2])
def test_match_ids_and_label_smoothing_match_reference(eps, chunk):
    img, txt = torch.randn(6, 4, dtype=torch.float64), torch.randn(6, 4, dtype=torch.float64)
    ids = torch.tensor([3, 3, 1, 7, 7, 7])
    loss = CLIPStyleLoss(temperature=0.1, label_smoothing=eps, chunk_size=chunk)(img, txt, match_ids=ids)
    assert loss.item() == pytest.approx(naive_clip(img, txt, 10.0, ids.tolist(), eps), abs=1e-5)


def test_entries_sharing_an_id_are_interchangeable_positives():
    """With match_ids, swapping two captions of the same id changes nothing; without ids it does."""
    img, txt = torch.randn(5, 8), torch.randn(5, 8)
    ids = torch.tensor([0, 0, 1, 2, 3])
    swapped = txt[[1, 0, 2, 3, 4]]
    loss_fn = CLIPStyleLoss(temperature=0.1)
    assert torch.allclose(loss_fn(img, txt, match_ids=ids), loss_fn(img, swapped, match_ids=ids), atol=1e-6)
    assert not torch.allclose(loss_fn(img, txt), loss_fn(img, swapped), atol=1e-3)


def test_duplicate_image_retrieving_the_other_caption_counts_as_correct():
    img = torch.randn(4, 8)
    img[1] = img[0]
    txt = img.clone()
    txt[0] = txt[1] = img[0]
    loss_fn = CLIPStyleLoss(temperature=0.05)
    loss_fn(img, txt, match_ids=torch.tensor([0, 0, 1, 2]))
    assert loss_fn.last_metrics["accuracy"] == 1.0


def test_unique_match_ids_equal_no_ids():
    img, txt = torch.randn(5, 6), torch.randn(5, 6)
    loss_fn = CLIPStyleLoss()
    assert torch.allclose(loss_fn(img, txt), loss_fn(img, txt, match_ids=torch.arange(5) * 10), atol=1e-6)


@pytest.mark.parametrize("n,chunk", [(7, 3), (16, 5), (8, 8), (4, 100)])
@pytest.mark.parametrize("learnable", [False, True])
def test_chunked_equals_dense_loss_and_gradients(n, chunk, learnable):
    base_img, base_txt = torch.randn(n, 12), torch.randn(n, 12)
    results = []
    for chunk_size in (None, chunk):
        img, txt = base_img.clone().requires_grad_(), base_txt.clone().requires_grad_()
        loss_fn = CLIPStyleLoss(temperature=0.03, learnable_temperature=learnable, chunk_size=chunk_size)
        loss = loss_fn(img, txt)
        loss.backward()
        extra = [loss_fn.logit_scale.log_scale.grad] if learnable else []
        results.append([loss.detach(), img.grad, txt.grad, *extra])
    for dense, chunked in zip(*results):
        assert torch.allclose(dense, chunked, atol=1e-5), (dense, chunked)


@pytest.mark.parametrize("chunk", [None, 2])
@pytest.mark.parametrize("with_ids", [False, True])
def test_gradcheck_float64(chunk, with_ids):
    img = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    txt = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    scale = torch.tensor(5.0, dtype=torch.float64, requires_grad=True)
    ids = torch.tensor([0, 1, 1, 2]) if with_ids else None
    loss_fn = CLIPStyleLoss(label_smoothing=0.1, chunk_size=chunk)
    assert torch.autograd.gradcheck(
        lambda a, b, s: loss_fn(a, b, logit_scale=s, match_ids=ids), (img, txt, scale)
    )


def test_logit_scale_argument_overrides_own_temperature():
    img, txt = torch.randn(4, 8), torch.randn(4, 8)
    own = CLIPStyleLoss(temperature=0.2)(img, txt)
    overridden = CLIPStyleLoss(temperature=0.9)(img, txt, logit_scale=torch.tensor(5.0))
    assert torch.allclose(own, overridden)


def test_learnable_temperature_gets_gradient_and_fixed_does_not():
    img, txt = torch.randn(4, 8), torch.randn(4, 8)
    learn = CLIPStyleLoss(learnable_temperature=True)
    learn(img, txt).backward()
    assert learn.logit_scale.log_scale.grad is not None
    assert list(CLIPStyleLoss().parameters()) == []


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("chunk", [None, 3])
def test_half_precision_inputs_finite_at_low_temperature(dtype, chunk):
    img = (torch.randn(8, 16) * 50).to(dtype).requires_grad_()
    txt = (torch.randn(8, 16) * 50).to(dtype).requires_grad_()
    loss = CLIPStyleLoss(temperature=0.01, chunk_size=chunk)(img, txt)
    loss.backward()
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    assert torch.isfinite(img.grad).all() and torch.isfinite(txt.grad).all()


def test_symmetric_in_image_and_text():
    img, txt = torch.randn(6, 5), torch.randn(6, 5)
    loss_fn = CLIPStyleLoss()
    assert torch.allclose(loss_fn(img, txt), loss_fn(txt, img))


def test_metrics_are_floats():
    loss_fn = CLIPStyleLoss()
    loss_fn(torch.randn(4, 8), torch.randn(4, 8))
    for key in ("loss", "loss_i2t", "loss_t2i", "alignment", "uniformity", "pos_sim", "neg_sim", "accuracy"):
        assert isinstance(loss_fn.last_metrics[key], float)


def test_loss_decreases_when_training_embeddings():
    torch.manual_seed(0)
    img = torch.nn.Parameter(torch.randn(8, 16))
    txt = torch.nn.Parameter(torch.randn(8, 16))
    loss_fn = build_loss("clip", learnable_temperature=True)
    opt = torch.optim.SGD([img, txt, *loss_fn.parameters()], lr=0.5)
    first = None
    for _ in range(20):
        opt.zero_grad()
        loss = loss_fn(img, txt)
        first = first if first is not None else loss.item()
        loss.backward()
        opt.step()
    assert loss.item() < first * 0.5


@pytest.mark.parametrize(
    "args,kwargs,match",
    [
        ((torch.randn(4, 8), torch.randn(4, 7)), {}, "same shape"),
        ((torch.randn(4, 8), torch.randn(3, 8)), {}, "same shape"),
        ((torch.randn(4, 8, 2), torch.randn(4, 8, 2)), {}, "2 dimensions"),
        ((torch.full((4, 8), float("nan")), torch.randn(4, 8)), {}, "NaN or Inf"),
        ((torch.randn(4, 8), torch.randn(4, 8)), {"match_ids": torch.arange(3)}, "match_ids"),
        ((torch.randn(4, 8), torch.randn(4, 8)), {"match_ids": torch.rand(4)}, "integers"),
        ((torch.randn(4, 8), torch.randn(4, 8)), {"logit_scale": torch.tensor(-1.0)}, "positive"),
        ((torch.randn(0, 8), torch.randn(0, 8)), {}, "batch size"),
        ((torch.arange(8).view(2, 4), torch.randn(2, 4)), {}, "floating-point"),
        (([[1.0]], torch.randn(1, 1)), {}, "torch.Tensor"),
    ],
)
def test_bad_inputs_raise(args, kwargs, match):
    with pytest.raises(ValueError, match=match):
        CLIPStyleLoss()(*args, **kwargs)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"temperature": 0}, "temperature"),
        ({"label_smoothing": 1.0}, "label_smoothing"),
        ({"chunk_size": 0}, "chunk"),
    ],
)
def test_bad_constructor_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        CLIPStyleLoss(**kwargs)
