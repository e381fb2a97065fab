"""SFT: examples and collation mask the prompt and padding; the loss is cross-entropy over response tokens only."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader

from mie.models.causal_lm import CausalLM, CausalLMConfig
from mie.training import BaseTrainer
from mie.training.tasks.sft import IGNORE_INDEX, SFTTask, build_sft_example, sft_collate


class _Tok:
    eos_id = 2

    def encode(self, text: str) -> list[int]:
        return [ord(c) - 90 for c in text]


def _model(seed: int = 0, vocab: int = 23) -> CausalLM:
    torch.manual_seed(seed)
    return CausalLM(CausalLMConfig(vocab_size=vocab, dim=32, n_layers=1, n_heads=2))


def test_build_sft_example_masks_the_prompt_and_appends_eos():
    row = build_sft_example(_Tok(), [7, 8, 9], [10, 11], max_len=16)
    assert row == {"input_ids": [7, 8, 9, 10, 11, 2], "labels": [-100, -100, -100, 10, 11, 2]}
    assert build_sft_example(_Tok(), "ab", "c", max_len=8)["input_ids"] == [7, 8, 9, 2]
    assert build_sft_example(None, [1], [3, 4], max_len=8) == {"input_ids": [1, 3, 4], "labels": [-100, 3, 4]}
    assert build_sft_example(_Tok(), [1], [3, 2], max_len=8)["input_ids"] == [1, 3, 2]  # eos not doubled


def test_build_sft_example_truncates_the_prompt_first_down_to_half_the_window():
    row = build_sft_example(None, list(range(10)), [20, 21], max_len=6)
    assert row["input_ids"] == [6, 7, 8, 9, 20, 21]  # oldest prompt tokens go
    row = build_sft_example(None, list(range(10)), list(range(20, 30)), max_len=6)
    assert row["input_ids"] == [7, 8, 9, 20, 21, 22]  # half the window kept for each
    assert row["labels"] == [-100, -100, -100, 20, 21, 22]
    with pytest.raises(ValueError, match="tokenizer"):
        build_sft_example(None, "text", [1], max_len=4)


def test_sft_collate_right_pads_with_masked_labels():
    rows = [build_sft_example(None, [5, 6], [7], 8), build_sft_example(None, [5], [7, 8, 9], 8)]
    batch = sft_collate(rows, pad_id=0)
    assert batch["input_ids"].tolist() == [[5, 6, 7, 0], [5, 7, 8, 9]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 0], [1, 1, 1, 1]]
    assert batch["labels"].tolist() == [[-100, -100, 7, -100], [-100, 7, 8, 9]]


def _batch() -> dict[str, torch.Tensor]:
    rows = [build_sft_example(None, [3, 4, 5], [6, 7], 16), build_sft_example(None, [8], [9, 10, 11, 12], 16),
            build_sft_example(None, [13, 14], [15], 16)]
    return sft_collate(rows, pad_id=0)


def test_loss_is_cross_entropy_over_response_positions_only():
    model = _model()
    batch = _batch()
    loss = SFTTask(model).training_forward(batch)["loss"]
    logp = torch.log_softmax(model(batch["input_ids"], attention_mask=batch["attention_mask"]), -1)
    terms = [-logp[b, t - 1, batch["input_ids"][b, t]].item()
             for b in range(3) for t in range(1, batch["input_ids"].shape[1]) if batch["labels"][b, t] != IGNORE_INDEX]
    assert len(terms) == 2 + 4 + 1
    assert loss.item() == pytest.approx(sum(terms) / len(terms), rel=1e-5)
    loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


class _Capture(nn.Module):
    """Keeps the logits the task reads, so their gradient can be inspected."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.inner, self.logits = model, None

    def forward(self, ids, attention_mask=None):
        self.logits = self.inner(ids, attention_mask=attention_mask)
        self.logits.retain_grad()
        return self.logits


def test_prompt_targets_and_padding_do_not_affect_the_loss():
    model, batch = _model(), _batch()
    capture = _Capture(model)
    loss = SFTTask(capture).training_forward(batch)["loss"]
    loss.backward()
    scored = torch.zeros_like(batch["labels"], dtype=torch.bool)
    scored[:, :-1] = batch["labels"][:, 1:] != IGNORE_INDEX  # logits at t predict the token at t + 1
    grad = capture.logits.grad.abs().sum(-1)  # (B, T)
    assert grad[~scored].max().item() == 0.0  # predictions of prompt tokens and padding: no gradient
    assert (grad[scored] > 0).all()
    # other ids under the padding leave the loss as it was
    repadded = dict(batch, input_ids=batch["input_ids"].masked_fill(batch["attention_mask"] == 0, 21))
    again = SFTTask(model).training_forward(repadded)["loss"]
    assert again.item() == pytest.approx(loss.item(), rel=1e-6)


def test_validation_reports_response_token_mean_and_perplexity():
    model, batch = _model(), _batch()
    task = SFTTask(model)
    out = task.validation_forward(batch)
    metrics = task.validation_metrics()
    assert metrics["perplexity"] == pytest.approx(math.exp(out["loss"].item()), rel=1e-5)


def test_sft_training_with_base_trainer_lowers_the_response_loss(tmp_path, toys):
    g = torch.Generator().manual_seed(0)
    # the response is a fixed function of the prompt (each prompt token + 10), so it can be learned
    rows = []
    for _ in range(32):
        prompt = torch.randint(3, 12, (int(torch.randint(2, 5, (1,), generator=g)),), generator=g).tolist()
        rows.append(build_sft_example(None, prompt, [t + 10 for t in prompt], max_len=12))
    loader = DataLoader(rows, batch_size=8, shuffle=True, collate_fn=lambda r: sft_collate(r, pad_id=0),
                        generator=torch.Generator().manual_seed(0))
    model = _model(vocab=23)
    task = SFTTask(model)
    full = sft_collate(rows, pad_id=0)
    before = task.training_forward(full)["loss"].item()
    config = toys.config(tmp_path, epochs=8)
    config.optimizer.lr = 3e-3
    BaseTrainer(task, config, loader, callbacks=[], quiet=True).fit()
    with torch.no_grad():
        after = task.training_forward(full)["loss"].item()
    assert after < 0.8 * before, (before, after)
