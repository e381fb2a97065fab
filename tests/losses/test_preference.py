"""Preference losses against their formulas written out by hand: DPO (TRL's sigmoid loss, cDPO smoothing,
soft labels), Bradley–Terry (margin, soft labels) and summed response log-probabilities."""

from __future__ import annotations

import math

import pytest
import torch

from mie.losses.preference import bradley_terry_loss, dpo_loss, sequence_logprobs
from mie.models.causal_lm import CausalLM, CausalLMConfig


def _logsig(x: float) -> float:
    return -math.log1p(math.exp(-x))


def test_dpo_loss_matches_the_sigmoid_formula_and_trl_label_smoothing():
    pc, pr = torch.tensor([-5.0, -7.0, -3.0]), torch.tensor([-6.0, -4.0, -3.5])
    rc, rr = torch.tensor([-5.5, -6.0, -2.0]), torch.tensor([-5.0, -4.5, -4.0])
    beta, eps = 0.3, 0.1
    loss, chosen, rejected = dpo_loss(pc, pr, rc, rr, beta=beta)
    logits = [beta * ((a - c) - (b - d)) for a, b, c, d in zip(pc.tolist(), pr.tolist(), rc.tolist(), rr.tolist())]
    assert loss.item() == pytest.approx(sum(-_logsig(x) for x in logits) / 3, rel=1e-6)
    assert chosen.tolist() == pytest.approx([beta * (a - c) for a, c in zip(pc.tolist(), rc.tolist())])
    assert rejected.tolist() == pytest.approx([beta * (b - d) for b, d in zip(pr.tolist(), rr.tolist())])
    # TRL: -logsigmoid(beta * logits) * (1 - eps) - logsigmoid(-beta * logits) * eps
    smoothed, _, _ = dpo_loss(pc, pr, rc, rr, beta=beta, label_smoothing=eps)
    expected = sum(-_logsig(x) * (1 - eps) - _logsig(-x) * eps for x in logits) / 3
    assert smoothed.item() == pytest.approx(expected, rel=1e-6)


def test_dpo_soft_target_is_binary_cross_entropy_and_half_is_symmetric():
    pc, pr, rc, rr = (torch.randn(4, generator=torch.Generator().manual_seed(s)) for s in range(4))
    p = torch.tensor([1.0, 0.8, 0.5, 0.0])
    loss, _, _ = dpo_loss(pc, pr, rc, rr, beta=0.5, target=p)
    d = 0.5 * ((pc - rc) - (pr - rr))
    expected = [-(q * _logsig(x) + (1 - q) * _logsig(-x)) for q, x in zip(p.tolist(), d.tolist())]
    assert loss.item() == pytest.approx(sum(expected) / 4, rel=1e-6)
    # target 1 equals the hard loss; target 0 equals the hard loss with the pair swapped
    assert dpo_loss(pc, pr, rc, rr, target=1.0)[0].item() == pytest.approx(dpo_loss(pc, pr, rc, rr)[0].item())
    assert dpo_loss(pc, pr, rc, rr, target=0.0)[0].item() == pytest.approx(dpo_loss(pr, pc, rr, rc)[0].item())
    # cDPO smoothing of a soft label: P(chosen) = p (1 - eps) + (1 - p) eps
    smoothed = dpo_loss(pc, pr, rc, rr, target=0.8, label_smoothing=0.25)[0]
    assert smoothed.item() == pytest.approx(dpo_loss(pc, pr, rc, rr, target=0.8 * 0.75 + 0.2 * 0.25)[0].item())
    with pytest.raises(ValueError, match="label_smoothing"):
        dpo_loss(pc, pr, rc, rr, label_smoothing=0.7)


def test_dpo_loss_is_log_two_when_the_policy_is_the_reference():
    logps = torch.randn(6)
    other = torch.randn(6)
    loss, chosen, rejected = dpo_loss(logps, other, logps.clone(), other.clone(), beta=0.1)
    assert loss.item() == pytest.approx(math.log(2), rel=1e-6)
    assert chosen.abs().max().item() == 0.0 and rejected.abs().max().item() == 0.0


def test_dpo_gradient_raises_chosen_and_lowers_rejected_logprob():
    pc, pr = torch.tensor([-3.0, -2.0], requires_grad=True), torch.tensor([-2.5, -2.0], requires_grad=True)
    loss, _, _ = dpo_loss(pc, pr, torch.tensor([-3.0, -2.0]), torch.tensor([-2.5, -2.0]), beta=0.1)
    loss.backward()
    assert (pc.grad < 0).all() and (pr.grad > 0).all()  # descent moves pc up, pr down
    # d loss / d pc = -beta * sigmoid(-logits) / B, with logits 0 here: -0.1 * 0.5 / 2
    assert pc.grad.tolist() == pytest.approx([-0.025, -0.025])


def test_bradley_terry_hard_margin_and_soft_labels():
    rc, rr = torch.tensor([2.0, -1.0, 0.5]), torch.tensor([1.0, 0.0, 0.5])
    d = [1.0, -1.0, 0.0]
    assert bradley_terry_loss(rc, rr).item() == pytest.approx(sum(-_logsig(x) for x in d) / 3, rel=1e-6)
    margin = torch.tensor([0.5, 0.0, 1.0])
    with_margin = [-_logsig(x - m) for x, m in zip(d, margin.tolist())]
    assert bradley_terry_loss(rc, rr, margin=margin).item() == pytest.approx(sum(with_margin) / 3, rel=1e-6)
    p = torch.tensor([0.9, 0.3, 0.5])
    soft = [-(q * _logsig(x) + (1 - q) * _logsig(-x)) for q, x in zip(p.tolist(), d)]
    assert bradley_terry_loss(rc, rr, target=p).item() == pytest.approx(sum(soft) / 3, rel=1e-6)
    r = torch.tensor([0.3, -0.2], requires_grad=True)
    bradley_terry_loss(r, torch.zeros(2)).backward()
    assert (r.grad < 0).all()  # descent raises the chosen reward


def test_sequence_logprobs_sum_response_tokens_only():
    torch.manual_seed(0)
    model = CausalLM(CausalLMConfig(vocab_size=17, dim=16, n_layers=1, n_heads=2))
    ids = torch.randint(0, 17, (2, 6))
    mask = torch.tensor([[1, 1, 1, 1, 1, 1], [0, 0, 1, 1, 1, 1]])
    response = torch.tensor([[0, 0, 0, 1, 1, 1], [0, 0, 0, 0, 1, 1]])
    got = sequence_logprobs(model, ids, mask, response)
    logp = torch.log_softmax(model(ids, attention_mask=mask), -1)
    expected = [sum(logp[b, t - 1, ids[b, t]].item() for t in range(6) if response[b, t]) for b in range(2)]
    assert got.shape == (2,)
    assert got.tolist() == pytest.approx(expected, rel=1e-5)
    # the left-padded row scores as the unpadded row alone
    alone = sequence_logprobs(model, ids[1:, 2:], mask[1:, 2:], response[1:, 2:])
    assert alone.item() == pytest.approx(got[1].item(), rel=1e-5)
    got.sum().backward()
    assert model.tok_embeddings.weight.grad is not None
