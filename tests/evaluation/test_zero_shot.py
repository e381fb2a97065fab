"""Zero-shot classification checked against a manual argmax loop and hand-averaged templates."""

import pytest
import torch
import torch.nn.functional as F

from mie.evaluation.zero_shot import (
    DEFAULT_TEMPLATES,
    average_prompt_embeddings,
    build_class_embeddings,
    zero_shot_classify,
)


def test_predictions_accuracy_and_confusion_match_manual_loop():
    images, classes = torch.randn(40, 6), torch.randn(4, 6)
    labels = torch.randint(0, 4, (40,))
    out = zero_shot_classify(images, classes, labels, ks=(1, 3))

    ni, nc = F.normalize(images, dim=-1), F.normalize(classes, dim=-1)
    preds = [max(range(4), key=lambda c, i=i: float(ni[i] @ nc[c])) for i in range(40)]
    confusion = [[0] * 4 for _ in range(4)]
    for y, p in zip(labels.tolist(), preds):
        confusion[y][p] += 1
    assert out["confusion_matrix"] == confusion
    assert out["accuracy"] == pytest.approx(sum(p == y for p, y in zip(preds, labels.tolist())) / 40)
    for c in range(4):
        support = sum(confusion[c])
        expected = confusion[c][c] / support if support else None
        assert out["per_class_accuracy"][c] == pytest.approx(expected)
    assert out["num_samples"] == 40 and out["num_classes"] == 4
    top3 = [sorted(range(4), key=lambda c, i=i: -float(ni[i] @ nc[c]))[:3] for i in range(40)]
    assert out["top3_accuracy"] == pytest.approx(sum(y in t for y, t in zip(labels.tolist(), top3)) / 40)


def test_topk_and_balanced_accuracy_on_a_hand_built_case():
    # Class embeddings are the axes; each image points mostly at one class, second choice known.
    classes = torch.eye(3)
    images = torch.tensor([[1.0, 0.5, 0.0], [0.9, 1.0, 0.0], [0.0, 0.2, 1.0], [0.0, 1.0, 0.3]])
    labels = torch.tensor([0, 0, 2, 2])  # predictions: 0, 1, 2, 1
    out = zero_shot_classify(images, classes, labels, ks=(1, 2, 5), classnames=["a", "b", "c"])
    assert out["accuracy"] == pytest.approx(0.5)
    assert out["top2_accuracy"] == pytest.approx(1.0)  # image 3's second choice is class 2
    assert "top5_accuracy" not in out  # k larger than the number of classes is skipped
    assert out["per_class_accuracy"] == [0.5, None, 0.5]  # class 1 has no images
    assert out["balanced_accuracy"] == pytest.approx(0.5)
    assert out["confusion_matrix"] == [[1, 1, 0], [0, 0, 0], [0, 1, 1]]
    assert out["classnames"] == ["a", "b", "c"]


def test_ties_go_to_the_lower_class_index():
    out = zero_shot_classify(torch.ones(2, 2), torch.ones(3, 2), torch.tensor([0, 1]))
    assert out["confusion_matrix"] == [[1, 0, 0], [1, 0, 0], [0, 0, 0]]


def test_template_averaging_matches_manual_mean():
    per_prompt = torch.randn(3, 4, 5)
    manual = torch.stack([
        sum(v / v.norm() for v in per_prompt[c]) for c in range(3)
    ])
    manual = manual / manual.norm(dim=-1, keepdim=True)
    assert torch.allclose(average_prompt_embeddings(per_prompt), manual, atol=1e-6)

    images, labels = torch.randn(10, 5), torch.randint(0, 3, (10,))
    assert zero_shot_classify(images, per_prompt, labels) == zero_shot_classify(images, manual, labels)
    with pytest.raises(ValueError, match="classes, templates, dim"):
        average_prompt_embeddings(torch.randn(3, 5))


class FakeTextEncoder:
    """Maps each prompt string to a fixed random vector and records what it was asked to encode."""

    def __init__(self, dim=8):
        self.dim, self.vectors, self.calls = dim, {}, []

    def __call__(self, texts):
        self.calls.append(list(texts))
        for t in texts:
            self.vectors.setdefault(t, torch.randn(self.dim))
        return torch.stack([self.vectors[t] for t in texts])


def test_build_class_embeddings_fills_templates_and_averages():
    enc = FakeTextEncoder()
    names, templates = ["cat", "red {circle}"], ["a {}", "a photo of a {}", "{} on a background"]
    out = build_class_embeddings(enc, names, templates, batch_size=4)
    assert out.shape == (2, 8)
    assert [len(c) for c in enc.calls] == [4, 2]  # 6 prompts in batches of 4
    assert "red {circle} on a background" in enc.vectors  # braces in a class name stay literal
    for c, name in enumerate(names):
        stacked = torch.stack([enc.vectors[t.replace("{}", name)] for t in templates])
        assert torch.allclose(out[c], average_prompt_embeddings(stacked.unsqueeze(0))[0], atol=1e-6)
    per_prompt = build_class_embeddings(enc, names, templates, average=False)
    assert per_prompt.shape == (2, 3, 8)
    assert torch.allclose(per_prompt.norm(dim=-1), torch.ones(2, 3), atol=1e-6)


def test_build_class_embeddings_default_templates():
    enc = FakeTextEncoder()
    build_class_embeddings(enc, ["dog"])
    assert enc.calls == [[t.replace("{}", "dog") for t in DEFAULT_TEMPLATES]]


@pytest.mark.parametrize(
    "names, templates, kwargs, match",
    [
        ([], ["a {}"], {}, "classnames is empty"),
        (["cat"], [], {}, "templates is empty"),
        (["cat"], ["a photo"], {}, "placeholder"),
        (["cat"], ["a {}"], {"batch_size": 0}, "batch_size"),
    ],
)
def test_build_class_embeddings_errors(names, templates, kwargs, match):
    with pytest.raises(ValueError, match=match):
        build_class_embeddings(FakeTextEncoder(), names, templates, **kwargs)


@pytest.mark.parametrize(
    "images, classes, labels, kwargs, match",
    [
        (torch.randn(3, 4), torch.randn(2, 5), [0, 1, 0], {}, "same D"),
        (torch.randn(3, 4), torch.randn(2, 4), [0, 1], {}, "2 labels for 3 images"),
        (torch.randn(3, 4), torch.randn(2, 4), [0, 1, 2], {}, r"\[0, 1\]"),
        (torch.randn(0, 4), torch.randn(2, 4), [], {}, "no images"),
        (torch.randn(3, 4), torch.randn(2, 4), [0, 1, 0], {"classnames": ["x"]}, "1 classnames"),
    ],
)
def test_zero_shot_classify_errors(images, classes, labels, kwargs, match):
    with pytest.raises(ValueError, match=match):
        zero_shot_classify(images, classes, labels, **kwargs)
