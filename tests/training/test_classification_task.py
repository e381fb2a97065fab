"""ClassificationTask: label smoothing, mixup and cutmix targets and losses against their formulas; top-k."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from mie.training.tasks.classification import (
    ClassificationTask,
    cutmix,
    cutmix_box,
    mixup,
    smooth_targets,
    soft_target_cross_entropy,
    topk_correct,
)


def test_label_smoothing_loss_equals_the_formula_and_torch():
    logits, labels, eps, classes = torch.randn(6, 5), torch.tensor([0, 1, 2, 3, 4, 0]), 0.1, 5
    targets = smooth_targets(labels, classes, eps)
    assert torch.allclose(targets.sum(1), torch.ones(6))
    logp = logits.log_softmax(-1)
    formula = ((1 - eps) * -logp[torch.arange(6), labels] - eps / classes * logp.sum(-1)).mean()
    loss = soft_target_cross_entropy(logits, targets)
    assert torch.allclose(loss, formula, atol=1e-6)
    assert torch.allclose(loss, F.cross_entropy(logits, labels, label_smoothing=eps), atol=1e-6)


def test_mixup_targets_sum_to_one_and_loss_is_the_lam_weighted_pair():
    images, labels = torch.randn(4, 1, 8, 8), torch.tensor([0, 1, 2, 1])
    perm, lam = torch.tensor([2, 0, 3, 1]), 0.3
    mixed, targets = mixup(images, smooth_targets(labels, 3), lam, perm)
    assert torch.allclose(targets.sum(1), torch.ones(4))
    assert torch.allclose(mixed, lam * images + (1 - lam) * images[perm])
    logits = torch.randn(4, 3)
    reference = lam * F.cross_entropy(logits, labels) + (1 - lam) * F.cross_entropy(logits, labels[perm])
    assert torch.allclose(soft_target_cross_entropy(logits, targets), reference, atol=1e-6)


def test_cutmix_pastes_the_box_and_weights_targets_by_its_area():
    images, labels = torch.arange(2 * 8 * 8, dtype=torch.float).view(2, 1, 8, 8), torch.tensor([0, 1])
    perm = torch.tensor([1, 0])
    mixed, targets, lam = cutmix(images, smooth_targets(labels, 2), (2, 6, 0, 4), perm)
    assert lam == pytest.approx(1 - 16 / 64)
    assert torch.equal(mixed[0, :, 2:6, 0:4], images[1, :, 2:6, 0:4])
    assert torch.equal(mixed[0, :, :2], images[0, :, :2])
    assert torch.allclose(targets.sum(1), torch.ones(2))
    logits = torch.randn(2, 2)
    reference = lam * F.cross_entropy(logits, labels) + (1 - lam) * F.cross_entropy(logits, labels[perm])
    assert torch.allclose(soft_target_cross_entropy(logits, targets), reference, atol=1e-6)
    top, bottom, left, right = cutmix_box(8, 8, 0.75, torch.Generator().manual_seed(0))
    assert 0 <= top <= bottom <= 8 and 0 <= left <= right <= 8


def test_topk_correct_against_a_hand_computation():
    logits = torch.tensor([[0.1, 0.5, 0.2, 0.9], [0.8, 0.1, 0.3, 0.2], [0.2, 0.2, 0.1, 0.0]])
    labels = torch.tensor([1, 2, 1])
    hits = topk_correct(logits, labels, (1, 2, 3, 5))
    # row 0 ranks 3,1,2,0; row 1 ranks 0,2,3,1; row 2 ranks 0,1 (tie -> lower index first),2,3
    assert hits[1].tolist() == [False, False, False]
    assert hits[2].tolist() == [True, True, True]
    assert hits[3].tolist() == [True, True, True]
    assert hits[5].tolist() == [True, True, True]


def test_task_trains_on_mixed_batches_and_validates_top1_top5():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 7))
    task = ClassificationTask(model, 7, label_smoothing=0.1, mixup_alpha=0.8, cutmix_alpha=1.0)
    batch = {"images": torch.randn(8, 1, 4, 4), "labels": torch.randint(7, (8,))}
    out = task.training_forward(batch)
    assert set(out) == {"loss", "accuracy"} and out["loss"].requires_grad
    out["loss"].backward()
    val = task.validation_forward(batch)
    assert 0 <= float(val["top1"]) <= float(val["top5"]) <= 1
    with pytest.raises(ValueError, match="label_smoothing"):
        ClassificationTask(model, 7, label_smoothing=1.5)
