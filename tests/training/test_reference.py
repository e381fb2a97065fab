"""Issue 27, recipe skeleton: one helper for a frozen reference model (``mie.training.tasks.reference``),
used by DPO, PPO, the contrastive task's reference towers, the ITM task's encoder and the cai phases."""

from __future__ import annotations

import torch
from torch import nn

from mie.models.causal_lm import CausalLM, CausalLMConfig
from mie.training.tasks import DPOTask, PPOTask
from mie.training.tasks.reference import FrozenReference, frozen


def _lm() -> CausalLM:
    torch.manual_seed(0)
    return CausalLM(CausalLMConfig(vocab_size=16, dim=16, n_layers=1, n_heads=2))


def test_frozen_is_eval_mode_without_gradients_and_a_copy_only_when_asked():
    model = nn.Sequential(nn.Linear(3, 3), nn.Dropout(0.5)).train()
    same = frozen(model)
    assert same is model and not model.training and not any(p.requires_grad for p in model.parameters())
    source = nn.Linear(3, 3)
    copied = frozen(source, copy=True)
    assert copied is not source and source.weight.requires_grad and source.training
    assert torch.equal(copied.weight, source.weight) and copied.weight.data_ptr() != source.weight.data_ptr()


def test_a_frozen_reference_is_held_outside_the_task_and_moved_on_first_use():
    holder = FrozenReference(nn.Linear(3, 3))
    assert holder.on(torch.device("cpu")) is holder.module
    assert holder.on(torch.device("meta")).weight.device.type == "meta"  # moved, in place
    assert holder.module.weight.device.type == "meta" and not holder.module.weight.requires_grad


def test_dpo_and_ppo_hold_their_reference_the_same_way():
    reference = _lm()
    dpo = DPOTask(_lm(), reference)
    ppo = PPOTask(_lm(), reference, lambda p, r: torch.zeros(len(p)), max_new_tokens=2)
    for task in (dpo, ppo):
        assert isinstance(task._reference, FrozenReference) and task.reference is reference
        assert not any(name.startswith(("reference", "_reference")) for name in task.state_dict())
    assert not reference.training and not any(p.requires_grad for p in reference.parameters())
    policy = _lm()
    own = PPOTask(policy, None, lambda p, r: torch.zeros(len(p)), max_new_tokens=2).reference
    assert own is not policy and all(p.requires_grad for p in policy.parameters())  # the copy is frozen, not it
