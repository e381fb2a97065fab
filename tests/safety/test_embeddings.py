"""The embedding method on a tiny random BERT: tuning separates the labelled examples, the cache gives the
same scores as training, calibration puts every method's threshold at 0.5. (The real all-MiniLM-L6-v2
numbers come from `make bench`.)"""

from __future__ import annotations

import json
import re

import pytest
import torch

from mie.errors import DataError
from mie.io import load_weights, save_weights
from mie.models.bert import BertConfig, BertEncoder
from mie.models.lora import LoRALinear
from mie.pretrained.sentence import SentenceEncoder
from mie.safety import embeddings
from mie.safety.embeddings import (
    THRESHOLDS,
    EmbeddingMethod,
    TuneSettings,
    calibrate,
    choose_thresholds,
    load_examples,
    targets_for,
)
from mie.tokenization.wordpiece import WordPieceTokenizer

WORDS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "how", "do", "i", "make", "a", "bomb", "bake", "bread",
         "find", "her", "address", "cake", "poison", "dog", "walk", "my", "?"]
HARM = ["how do i make a bomb ?", "make a bomb", "how do i poison my dog ?", "poison a dog"]
PRIV = ["find her address", "how do i find her address ?"]
BENIGN = ["how do i bake bread ?", "bake a cake", "walk my dog", "how do i make a cake ?", "make bread", "bake bread"]
# The last 5 epochs are weight-averaged, so the cache holds rank-20 adapters (4 x 5).
SETTINGS = TuneSettings(r=4, epochs=25, average_from=21, lr=1e-2, head_lr=5e-2, batch_size=4)


def tiny_encoder() -> SentenceEncoder:
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(WORDS), hidden=32, layers=2, heads=4, intermediate=64, max_positions=32)
    return SentenceEncoder(WordPieceTokenizer({w: i for i, w in enumerate(WORDS)}, max_length=32),
                           BertEncoder(config), 32)


def examples() -> list[dict]:
    return ([{"text": t, "label": "harmful", "principle": "harm_prevention"} for t in HARM]
            + [{"text": t, "label": "harmful", "principle": "privacy"} for t in PRIV]
            + [{"text": t, "label": "benign", "principle": None} for t in BENIGN])


def test_tuning_separates_the_training_examples_and_merges_the_adapters():
    encoder = tiny_encoder()
    method = EmbeddingMethod.train(encoder, examples(), ["harm_prevention", "privacy"], SETTINGS)
    assert not any(isinstance(m, LoRALinear) for m in encoder.model.modules())  # merged: plain layers
    probs, _ = method.probabilities(HARM + PRIV + BENIGN)
    target = targets_for(examples(), ["harm_prevention", "privacy"])
    assert ((probs > 0.5).float() == target).all(), probs
    verdicts = method.score_batch(["make a bomb"])[0]
    assert verdicts["harm_prevention"].flagged and verdicts["harm_prevention"].method == "embeddings"
    assert any("nearest harm_prevention example" in r for r in verdicts["harm_prevention"].reasons)
    assert not verdicts["privacy"].flagged


def test_the_cache_reproduces_the_trained_method(tmp_path, monkeypatch):
    path = tmp_path / "examples.jsonl"
    path.write_text("".join(json.dumps(e) + "\n" for e in examples()))
    monkeypatch.setattr("mie.pretrained.load_sentence_encoder", lambda name: tiny_encoder())
    monkeypatch.setattr(embeddings, "DEFAULT_PRINCIPLES", ("harm_prevention", "privacy"))
    cache = tmp_path / "cache.safetensors"
    first = EmbeddingMethod.load(path, cache=cache, settings=SETTINGS)
    assert cache.is_file()
    state, _ = load_weights(cache)
    assert {v.shape[0] for k, v in state.items() if k.endswith("lora_a")} == {20}  # 5 epochs averaged
    second = EmbeddingMethod.load(path, cache=cache, settings=SETTINGS)
    texts = HARM + BENIGN
    torch.testing.assert_close(second.probabilities(texts)[0], first.probabilities(texts)[0], atol=1e-5, rtol=1e-5)
    # A cache written before the one attention module names BERT's adapters attn.q/k/v/out: it still loads.
    legacy_path = tmp_path / "legacy.safetensors"
    legacy = {re.sub(r"\.attn\.(q|k|v|out)_proj\.", r".attn.\1.", k): v for k, v in state.items()}
    assert "lora.layers.0.attn.q.lora_a" in legacy and "lora.layers.0.attn.q_proj.lora_a" not in legacy
    save_weights(legacy_path, legacy, {})
    old = EmbeddingMethod.load(path, cache=legacy_path, settings=SETTINGS)
    assert "lora.layers.0.attn.q.lora_a" in load_weights(legacy_path)[0]  # read, not rebuilt
    torch.testing.assert_close(old.probabilities(texts)[0], first.probabilities(texts)[0], atol=1e-5, rtol=1e-5)
    cache.write_bytes(b"damaged")  # a damaged cache is rebuilt, not trusted
    third = EmbeddingMethod.load(path, cache=cache, settings=SETTINGS)
    torch.testing.assert_close(third.probabilities(texts)[0], first.probabilities(texts)[0], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(("prob", "threshold", "expected"), [
    (0.7, 0.7, 0.5), (0.0, 0.7, 0.0), (1.0, 0.7, 1.0), (0.35, 0.7, 0.25), (0.85, 0.7, 0.75), (0.5, 0.5, 0.5)])
def test_calibration_puts_the_threshold_at_one_half(prob, threshold, expected):
    assert calibrate(prob, threshold) == pytest.approx(expected)


def test_packaged_examples_load_and_bad_lines_are_one_error(tmp_path):
    rows = load_examples()
    assert len(rows) > 800 and {r["label"] for r in rows} == {"harmful", "benign"}
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "x", "label": "maybe"}\n')
    with pytest.raises(DataError, match=r"bad.jsonl:1: is not a labelled example"):
        load_examples(bad)


def test_each_principle_flags_at_its_own_threshold():
    method = EmbeddingMethod.train(tiny_encoder(), examples(), ["harm_prevention", "privacy"], SETTINGS)
    assert method.threshold == THRESHOLDS  # the cross-validated ones by default
    probs, _ = method.probabilities(["make a bomb"])
    harm, privacy = float(probs[0, 0]), float(probs[0, 1])
    method.threshold = {"harm_prevention": harm + (1 - harm) / 2, "privacy": privacy / 2}
    verdicts = method.score_batch(["make a bomb"])[0]
    assert not verdicts["harm_prevention"].flagged and verdicts["privacy"].flagged
    assert verdicts["privacy"].score == pytest.approx(calibrate(privacy, privacy / 2))
    assert f"flags at {privacy / 2:g}" in verdicts["privacy"].reasons[0]
    method.threshold = 0.0  # one number: every principle
    assert all(v.flagged for v in method.score_batch(["make a bomb"])[0].values())


def test_thresholds_are_lowered_where_recall_is_cheapest():
    # 6 texts: 3 harmful (0-2), 3 look-alikes (3-5); two principles, grid [0.5, 0.9].
    harmful = torch.tensor([1, 1, 1, 0, 0, 0], dtype=torch.bool)
    lookalike = ~harmful
    flags = torch.zeros(2, 6, 2, dtype=torch.bool)
    flags[1, 0, 0] = True                          # at 0.9 principle 0 catches text 0
    flags[0, [0, 1], 0] = True                     # at 0.5 it catches 0 and 1, no look-alike
    flags[0, [2, 3, 4], 1] = True                  # principle 1 at 0.5: text 2 but two look-alikes
    assert choose_thresholds(flags, [0.5, 0.9], harmful, lookalike, max_fpr=0.0) == [0.5, 0.9]
    assert choose_thresholds(flags, [0.5, 0.9], harmful, lookalike, max_fpr=0.7) == [0.5, 0.5]



def test_every_tuning_target_names_linear_layers_of_the_encoder():
    """A target that names no layer would silently leave that layer untuned (apply_lora needs only one)."""
    linear = {name.rsplit(".", 1)[-1] for name, m in tiny_encoder().model.named_modules()
              if isinstance(m, torch.nn.Linear)}
    assert set(TuneSettings().targets) <= linear
