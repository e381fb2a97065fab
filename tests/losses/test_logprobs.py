"""Issue 27, recipe skeleton: one token log-probability function (``mie.losses.logprobs``) where there were
two (``losses.preference.sequence_logprobs`` and ``training.rl.logprobs_from_logits``). The two earlier
implementations are pasted below; the one function gives bit-identical values, and so does a DPO loss."""

from __future__ import annotations

import pytest
import torch

from mie.losses import logprobs, preference
from mie.losses.logprobs import logprobs_from_logits, sequence_logprobs, token_logprobs
from mie.models.causal_lm import CausalLM, CausalLMConfig
from mie.training import rl
from mie.training.tasks.preference import DPOTask


def _old_sequence_logprobs(model, input_ids, attention_mask, response_mask):  # losses/preference.py before
    logits = model(input_ids, attention_mask=attention_mask)[:, :-1].float()
    targets = input_ids[:, 1:]
    logp = logits.gather(-1, targets[..., None]).squeeze(-1) - logits.logsumexp(-1)
    return (logp * response_mask[:, 1:].to(logp.dtype)).sum(-1)


def _old_logprobs_from_logits(logits, targets, temperature=1.0):  # training/rl.py before
    logits = logits.float() / temperature if temperature != 1.0 else logits.float()
    return logits.gather(-1, targets[..., None]).squeeze(-1) - logits.logsumexp(-1)


@pytest.fixture
def lm_and_batch():
    torch.manual_seed(0)
    model = CausalLM(CausalLMConfig(vocab_size=23, dim=16, n_layers=1, n_heads=2)).eval()
    ids = torch.randint(0, 23, (4, 7))
    mask = torch.ones_like(ids)
    mask[2:, :2] = 0  # two left-padded rows
    response = torch.zeros_like(ids)
    response[:, 4:] = 1
    return model, ids, mask, response


def test_there_is_one_implementation_under_every_earlier_name():
    assert rl.logprobs_from_logits is logprobs.logprobs_from_logits and rl.token_logprobs is logprobs.token_logprobs
    assert preference.sequence_logprobs is logprobs.sequence_logprobs


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_token_logprobs_equal_the_earlier_ones_exactly(lm_and_batch, temperature):
    model, ids, mask, response = lm_and_batch
    logits = model(ids, attention_mask=mask)
    assert torch.equal(logprobs_from_logits(logits[:, 2:-1], ids[:, 3:], temperature),
                       _old_logprobs_from_logits(logits[:, 2:-1], ids[:, 3:], temperature))
    assert torch.equal(token_logprobs(model, ids, mask, temperature),
                       _old_logprobs_from_logits(logits[:, :-1], ids[:, 1:], temperature))
    expected = torch.log_softmax(logits[:, :-1].float() / temperature, -1).gather(-1, ids[:, 1:, None])[..., 0]
    torch.testing.assert_close(token_logprobs(model, ids, mask, temperature), expected)


def test_sequence_logprobs_and_a_dpo_loss_equal_the_earlier_ones_exactly(lm_and_batch):
    model, ids, mask, response = lm_and_batch
    assert torch.equal(sequence_logprobs(model, ids, mask, response), _old_sequence_logprobs(model, ids, mask, response))
    torch.manual_seed(1)
    policy = CausalLM(CausalLMConfig(vocab_size=23, dim=16, n_layers=1, n_heads=2))
    batch = {"chosen_ids": ids[:2], "chosen_mask": mask[:2], "chosen_response_mask": response[:2],
             "rejected_ids": ids[2:], "rejected_mask": mask[2:], "rejected_response_mask": response[2:]}
    got = DPOTask(policy, model, beta=0.2).training_forward(batch)["loss"]
    pc, pr = (_old_sequence_logprobs(policy, ids[s], mask[s], response[s]) for s in (slice(0, 2), slice(2, 4)))
    rc, rr = (_old_sequence_logprobs(model, ids[s], mask[s], response[s]) for s in (slice(0, 2), slice(2, 4)))
    expected, _, _ = preference.dpo_loss(pc, pr, rc, rr, beta=0.2)
    torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-7)  # one batched forward vs two: float sums
