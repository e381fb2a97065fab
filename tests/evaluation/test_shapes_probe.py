"""The shapes probe (colour-shape, shape-only and colour-only precision@k) against hand computations."""

import pytest
import torch

from mie.evaluation.shapes_probe import (
    format_probe_table,
    precision_at_k,
    probe_queries,
    relevance,
    shapes_probe,
)

COLORS = ("red", "blue")
SHAPES = ("circle", "square")
# image 0: red circle; 1: red square; 2: blue circle; 3: blue square + red circle
OBJECTS = [
    [{"color": "red", "shape": "circle"}],
    [{"color": "red", "shape": "square"}],
    [{"color": "blue", "shape": "circle"}],
    [{"color": "blue", "shape": "square"}, {"color": "red", "shape": "circle"}],
]
WORDS = ("red", "blue", "circle", "square")


def bag_of_words(texts):
    """A text 'encoder' that marks which of WORDS a query names."""
    return torch.tensor([[float(w in t.split()) for w in WORDS] for t in texts])


def test_precision_at_k_by_hand():
    scores = torch.tensor([[0.9, 0.1, 0.5, 0.3], [0.2, 0.8, 0.4, 0.6], [0.0, 0.0, 0.0, 0.0]])
    relevant = torch.tensor([[1, 0, 0, 1], [0, 0, 0, 0], [0, 0, 1, 0]], dtype=torch.bool)
    out = precision_at_k(scores, relevant, k=2)
    # row 0: top-2 = columns 0, 2 -> 1 hit; row 1 has nothing relevant (dropped); row 2: ties keep
    # column order, top-2 = columns 0, 1 -> 0 hits.
    assert out["per_query"] == [0.5, None, 0.0]
    assert out["precision"] == pytest.approx(0.25)
    assert out["chance"] == pytest.approx((2 / 4 + 1 / 4) / 2)
    assert out["ideal"] == pytest.approx((2 / 2 + 1 / 2) / 2)
    assert out["num_queries"] == 2


def test_queries_and_relevance():
    queries = probe_queries(COLORS, SHAPES)
    assert [q for q, _ in queries["color_shape"]] == ["a red circle", "a red square", "a blue circle", "a blue square"]
    assert [q for q, _ in queries["shape"]] == ["a circle", "a square"]
    assert [q for q, _ in queries["color"]] == ["a red shape", "a blue shape"]
    assert probe_queries(("orange",), ("star",))["color_shape"][0][0] == "an orange star"
    rel = relevance(OBJECTS, [want for _, want in queries["color_shape"]])
    assert rel.tolist() == [[True, False, False, True], [False, True, False, False],
                            [False, False, True, False], [False, False, False, True]]


def test_colour_blind_model_scores_chance_on_shape():
    # Image embeddings that see colour only: red images on one axis, blue on another, image 3 both.
    images = torch.tensor([[1.0, 0, 0, 0], [1.0, 0, 0, 0], [0, 1.0, 0, 0], [1.0, 1.0, 0, 0]])
    probe = shapes_probe(bag_of_words, images, OBJECTS, COLORS, SHAPES, k=2, example="a red circle")
    # "a red circle" scores images 0, 1 at 1/sqrt(2), image 3 at 1/2: top-2 = 0, 1 -> 1 hit of 2.
    # "a red square": top-2 = 0, 1 -> 1 hit; "a blue circle": top-2 = 2, 3 -> 1; "a blue square": 2, 3 -> 1.
    assert probe["color_shape"]["precision"] == pytest.approx(0.5)
    assert probe["color_shape"]["chance"] == pytest.approx((2 / 4 + 1 / 4 + 1 / 4 + 1 / 4) / 4)
    assert probe["example"] == {"query": "a red circle", "hits": 1, "k": 2}
    # "a circle" scores every image 0 (ties: 0, 1) -> 1 hit; "a square" the same -> 1 hit (image 1).
    assert probe["shape"]["precision"] == pytest.approx(0.5)
    # "a red shape": 0, 1 -> 2 hits; "a blue shape": 2, 3 -> 2 hits.
    assert probe["color"]["precision"] == pytest.approx(1.0)
    assert probe["color"]["chance"] == pytest.approx((3 / 4 + 2 / 4) / 2)


def test_a_model_that_sees_both_is_perfect():
    images = torch.stack([bag_of_words([" ".join(f"{o['color']} {o['shape']}" for o in objs)])[0] for objs in OBJECTS])
    probe = shapes_probe(bag_of_words, images, OBJECTS, COLORS, SHAPES, k=1)
    assert probe["color_shape"]["precision"] == 1.0
    assert probe["shape"]["precision"] == 1.0
    assert probe["example"]["hits"] == 1
    rows = format_probe_table({"test": probe})
    assert rows[0].startswith("| split | colour-shape P@1 | chance | shape-only P@1 |")
    assert rows[2].startswith("| test | 100.0 | ")
    assert rows[2].endswith('| "a red circle": 1 of 1 |')


def test_mismatched_inputs_are_refused():
    with pytest.raises(ValueError, match="3 object lists for 4 images"):
        shapes_probe(bag_of_words, torch.zeros(4, 4), OBJECTS[:3], COLORS, SHAPES)
    with pytest.raises(ValueError, match="differ in shape"):
        precision_at_k(torch.zeros(2, 3), torch.zeros(2, 4, dtype=torch.bool))
