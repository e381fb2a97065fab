"""Reward model (reward at the last real token, either padding side), RewardModelTask and DPOTask: values
against the losses computed separately, a frozen reference kept out of the task, and short training runs."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch.utils.data import DataLoader

from mie.losses.preference import bradley_terry_loss, dpo_loss, sequence_logprobs
from mie.models.causal_lm import CausalLM, CausalLMConfig
from mie.models.reward import RewardModel, last_token_index
from mie.training import BaseTrainer
from mie.training.stages import trainable_named_parameters
from mie.training.tasks.preference import DPOTask, RewardModelTask

VOCAB = 20


def _lm(seed: int = 0, **overrides) -> CausalLM:
    torch.manual_seed(seed)
    return CausalLM(CausalLMConfig(vocab_size=VOCAB, dim=32, n_layers=2, n_heads=2, **overrides))


def _pad(rows: list[list[int]], left: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """``[B, T]`` ids (pad 0) and mask of token rows, padded on the right (or left)."""
    T = max(map(len, rows))
    ids, mask = torch.zeros(len(rows), T, dtype=torch.long), torch.zeros(len(rows), T, dtype=torch.long)
    for i, row in enumerate(rows):
        cols = slice(T - len(row), T) if left else slice(0, len(row))
        ids[i, cols], mask[i, cols] = torch.tensor(row), 1
    return ids, mask


def _pairs(prompts, chosen, rejected, left: bool = False) -> dict[str, torch.Tensor]:
    """A DPO / reward batch of prompt + response rows, with response masks."""
    batch = {}
    for name, responses in (("chosen", chosen), ("rejected", rejected)):
        rows = [p + r for p, r in zip(prompts, responses)]
        ids, mask = _pad(rows, left)
        response, _ = _pad([[0] * len(p) + [1] * len(r) for p, r in zip(prompts, responses)], left)
        batch.update({f"{name}_ids": ids, f"{name}_mask": mask, f"{name}_response_mask": response})
    return batch


# ----------------------------------------------------------------------------------------------- reward model
def test_last_token_index_on_left_and_right_padding():
    mask = torch.tensor([[1, 1, 1, 0, 0], [0, 0, 1, 1, 1], [1, 1, 1, 1, 1], [0, 1, 1, 0, 0]])
    assert last_token_index(mask).tolist() == [2, 4, 4, 2]


@pytest.mark.parametrize("left", [False, True])
def test_reward_is_read_at_the_last_real_token_whatever_the_padding(left):
    rm = RewardModel(_lm()).eval()
    rows = [[3, 4, 5, 6, 7], [8, 9], [10, 11, 12]]
    ids, mask = _pad(rows, left=left)
    batched = rm(ids, mask)
    alone = torch.stack([rm(torch.tensor([row])) for row in rows]).squeeze(-1)
    assert batched.shape == (3,)
    assert batched.tolist() == pytest.approx(alone.tolist(), abs=1e-5)
    # the head reads the final normed hidden state of that token
    hidden = rm.hidden_states(torch.tensor([rows[1]]))
    assert rm.head(hidden[0, -1]).item() == pytest.approx(alone[1].item(), abs=1e-6)


def test_reward_gradients_reach_trunk_and_head_and_an_untied_lm_head_is_frozen():
    rm = RewardModel(_lm(tie_embeddings=False))
    assert not rm.backbone.lm_head.weight.requires_grad
    rm(*_pad([[3, 4, 5], [6, 7]])).sum().backward()
    assert rm.head.weight.grad is not None and rm.backbone.layers[0].attn.q_proj.weight.grad.abs().sum() > 0


# ----------------------------------------------------------------------------------------- RewardModelTask
def test_reward_task_loss_and_metrics_match_separate_forwards():
    rm = RewardModel(_lm())
    task = RewardModelTask(rm)
    chosen_ids, chosen_mask = _pad([[3, 4, 5, 6], [7, 8]], left=True)
    rejected_ids, rejected_mask = _pad([[9, 10], [11, 12, 13, 14, 15, 16]])  # other length, other side
    batch = {"chosen_ids": chosen_ids, "chosen_mask": chosen_mask, "rejected_ids": rejected_ids,
             "rejected_mask": rejected_mask, "target": torch.tensor([0.9, 0.6])}
    out = task.training_forward(batch)
    rc, rr = rm(chosen_ids, chosen_mask), rm(rejected_ids, rejected_mask)
    assert out["loss"].item() == pytest.approx(bradley_terry_loss(rc, rr, target=batch["target"]).item(), rel=1e-5)
    assert out["accuracy"].item() == pytest.approx((rc > rr).float().mean().item())
    assert out["margin"].item() == pytest.approx((rc - rr).mean().item(), abs=1e-6)
    out["loss"].backward()
    assert rm.head.weight.grad is not None
    assert set(task.validation_forward(batch)) == {"loss", "accuracy", "margin"}


def _reward_rows(n: int, seed: int) -> list[dict[str, torch.Tensor]]:
    """Pairs where the chosen text holds tokens 3..7 and the rejected text tokens 8..12 (lengths 2..5)."""
    g = torch.Generator().manual_seed(seed)
    rows = []
    for _ in range(n):
        length = int(torch.randint(2, 6, (1,), generator=g))
        rows.append({"chosen": torch.randint(3, 8, (length,), generator=g).tolist(),
                     "rejected": torch.randint(8, 13, (int(torch.randint(2, 6, (1,), generator=g)),),
                                               generator=g).tolist()})
    return rows


def _reward_collate(rows):
    chosen_ids, chosen_mask = _pad([r["chosen"] for r in rows])
    rejected_ids, rejected_mask = _pad([r["rejected"] for r in rows], left=True)
    return {"chosen_ids": chosen_ids, "chosen_mask": chosen_mask, "rejected_ids": rejected_ids,
            "rejected_mask": rejected_mask}


def test_reward_task_training_raises_pairwise_accuracy(tmp_path, toys):
    task = RewardModelTask(RewardModel(_lm()))
    held_out = _reward_collate(_reward_rows(32, seed=1))
    before = task.validation_forward(held_out)
    loader = DataLoader(_reward_rows(32, seed=0), batch_size=8, shuffle=True, collate_fn=_reward_collate,
                        generator=torch.Generator().manual_seed(0))
    config = toys.config(tmp_path, epochs=2)
    config.optimizer.lr = 3e-3
    BaseTrainer(task, config, loader, callbacks=[], quiet=True).fit()
    after = task.validation_forward(held_out)
    assert after["loss"].item() < before["loss"].item() - 0.2, (before, after)
    assert after["accuracy"].item() >= 0.9 > before["accuracy"].item()


# ---------------------------------------------------------------------------------------------------- DPOTask
def _dpo_batch(left: bool = False) -> dict[str, torch.Tensor]:
    return _pairs([[3, 4, 5], [6, 7]], [[11, 12], [11, 12, 2]], [[13, 14, 15, 2], [13]], left=left)


def test_dpo_task_keeps_the_reference_frozen_and_out_of_the_task():
    reference = _lm()
    task = DPOTask(copy.deepcopy(reference), reference, beta=0.2)
    task.train()
    assert not reference.training and not any(p.requires_grad for p in reference.parameters())
    assert all(name.startswith("model.") for name in task.state_dict())  # checkpoints hold the policy only
    policy_params = {id(p) for p in task.model.parameters()}
    assert {id(p) for _, p in trainable_named_parameters(task)} == policy_params
    assert len(list(task.parameters())) == len(list(task.model.parameters()))
    out = task.training_forward(_dpo_batch())
    out["loss"].backward()
    assert all(p.grad is None for p in reference.parameters())
    assert task.model.tok_embeddings.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("left", [False, True])
def test_dpo_task_loss_matches_separate_log_probabilities(left):
    reference, policy = _lm(0), _lm(1)
    batch = _dpo_batch(left)
    task = DPOTask(policy, reference, beta=0.2, label_smoothing=0.1)
    out = task.training_forward(batch)
    logps = {(m, side): sequence_logprobs(model, batch[f"{side}_ids"], batch[f"{side}_mask"],
                                          batch[f"{side}_response_mask"])
             for m, model in (("policy", policy), ("ref", reference)) for side in ("chosen", "rejected")}
    loss, chosen, rejected = dpo_loss(logps["policy", "chosen"], logps["policy", "rejected"], logps["ref", "chosen"],
                                      logps["ref", "rejected"], beta=0.2, label_smoothing=0.1)
    assert out["loss"].item() == pytest.approx(loss.item(), rel=1e-5)
    assert out["chosen_rewards"].item() == pytest.approx(chosen.mean().item(), abs=1e-5)
    assert out["rejected_rewards"].item() == pytest.approx(rejected.mean().item(), abs=1e-5)
    assert out["reward_accuracy"].item() == pytest.approx((chosen > rejected).float().mean().item())
    assert out["reward_margin"].item() == pytest.approx((chosen - rejected).mean().item(), abs=1e-5)
    # precomputed reference log-probabilities stand in for running the reference
    pre = dict(batch, ref_chosen_logps=logps["ref", "chosen"].detach(),
               ref_rejected_logps=logps["ref", "rejected"].detach())
    assert task.training_forward(pre)["loss"].item() == pytest.approx(loss.item(), rel=1e-5)


def test_dpo_loss_starts_at_log_two_and_a_step_raises_the_chosen_log_probability():
    reference = _lm()
    task = DPOTask(copy.deepcopy(reference), reference, beta=0.1)
    batch = _dpo_batch()
    out = task.training_forward(batch)
    assert out["loss"].item() == pytest.approx(math.log(2), abs=1e-6)
    assert out["reward_accuracy"].item() == 0.0  # equal rewards are not a right ranking
    out["loss"].backward()
    chosen = lambda: sequence_logprobs(task.model, batch["chosen_ids"], batch["chosen_mask"],  # noqa: E731
                                       batch["chosen_response_mask"]).sum().item()
    start = chosen()
    with torch.no_grad():
        for p in task.model.parameters():
            p -= 0.05 * p.grad
    assert chosen() > start
    assert set(task.validation_forward(batch)) == {"loss", "reward_accuracy", "reward_margin"}


def _dpo_collate(rows):
    return _pairs([r[0] for r in rows], [[11, 12, 2]] * len(rows), [[13, 14, 2]] * len(rows))


def test_dpo_training_with_base_trainer_lowers_the_loss_and_ranks_chosen_first(tmp_path, toys):
    g = torch.Generator().manual_seed(0)
    prompts = [(torch.randint(3, 10, (int(torch.randint(2, 5, (1,), generator=g)),), generator=g).tolist(),)
               for _ in range(32)]
    reference = _lm()
    task = DPOTask(copy.deepcopy(reference), reference, beta=0.5)
    loader = DataLoader(prompts, batch_size=8, shuffle=True, collate_fn=_dpo_collate,
                        generator=torch.Generator().manual_seed(0))
    config = toys.config(tmp_path, epochs=3)
    config.optimizer.lr = 3e-3
    BaseTrainer(task, config, loader, callbacks=[], quiet=True).fit()
    after = task.validation_forward(_dpo_collate(prompts))
    assert after["loss"].item() < math.log(2) - 0.2, after
    assert after["reward_accuracy"].item() == 1.0 and after["reward_margin"].item() > 0
    assert torch.equal(reference.tok_embeddings.weight, _lm().tok_embeddings.weight)  # the reference never moved
