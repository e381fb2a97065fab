"""PPO for LM policies: GAE, whitening, KL estimators and clipped losses against hand formulas; the value
head; PPOTask learning a toy reward under BaseTrainer and resuming to the same rollouts."""

from __future__ import annotations

import pytest
import torch

from mie.models.causal_lm import CausalLM, CausalLMConfig
from mie.models.generation import left_pad
from mie.training import BaseTrainer, OptimizerConfig, ScheduleConfig, TrainerConfig
from mie.training.rl import (
    PolicyWithValue,
    gae,
    per_token_kl,
    ppo_policy_loss,
    token_logprobs,
    value_loss,
    whiten,
)
from mie.training.tasks.ppo import PPOTask

VOCAB, REWARDED, STOP = 40, 7, 3


def gae_reference(rewards, values, mask, gamma, lam):
    """GAE written the slow, obvious way: per row, per token, with Python floats."""
    B, T = len(rewards), len(rewards[0])
    adv = [[0.0] * T for _ in range(B)]
    for b in range(B):
        last = 0.0
        for t in reversed(range(T)):
            if not mask[b][t]:
                last = 0.0  # a masked-out token ends the episode
                continue
            alive = t + 1 < T and mask[b][t + 1]
            next_value = values[b][t + 1] if alive else 0.0
            delta = rewards[b][t] + gamma * next_value - values[b][t]
            last = delta + gamma * lam * (1.0 if alive else 0.0) * last
            adv[b][t] = last
    ret = [[adv[b][t] + values[b][t] if mask[b][t] else 0.0 for t in range(T)] for b in range(B)]
    return torch.tensor(adv, dtype=torch.float64), torch.tensor(ret, dtype=torch.float64)


@pytest.mark.parametrize("gamma,lam", [(1.0, 0.95), (0.99, 0.9), (0.9, 1.0)])
@pytest.mark.parametrize("holes", [False, True])
def test_gae_matches_a_hand_written_loop(gamma, lam, holes):
    g = torch.Generator().manual_seed(0)
    B, T = 5, 9
    rewards, values = torch.randn(B, T, generator=g, dtype=torch.float64), torch.randn(B, T, generator=g,
                                                                                          dtype=torch.float64)
    if holes:
        mask = (torch.rand(B, T, generator=g) > 0.3).double()
    else:  # right-padded responses of lengths 9, 1, 4, 6, 2
        mask = (torch.arange(T)[None] < torch.tensor([9, 1, 4, 6, 2])[:, None]).double()
    adv, ret = gae(rewards, values, mask, gamma, lam)
    want_adv, want_ret = gae_reference(rewards.tolist(), values.tolist(), mask.tolist(), gamma, lam)
    torch.testing.assert_close(adv, want_adv, rtol=0, atol=1e-12)
    torch.testing.assert_close(ret, want_ret, rtol=0, atol=1e-12)


def test_whiten_uses_only_masked_entries():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(4, 6, generator=g, dtype=torch.float64) * 3 + 2
    mask = (torch.arange(6)[None] < torch.tensor([6, 2, 3, 5])[:, None]).double()
    x_padded = torch.where(mask.bool(), x, torch.full_like(x, 1e6))  # padding values must not matter
    out = whiten(x_padded, mask)
    kept = out[mask.bool()]
    assert kept.mean().item() == pytest.approx(0.0, abs=1e-12)
    assert kept.std(unbiased=False).item() == pytest.approx(1.0, abs=1e-6)
    assert torch.all(out[~mask.bool()] == 0)
    values = x[mask.bool()]
    torch.testing.assert_close(kept, (values - values.mean()) / values.std(unbiased=False), rtol=1e-6, atol=1e-6)
    shifted = whiten(x_padded, mask, shift_mean=False)[mask.bool()]
    assert shifted.mean().item() == pytest.approx(values.mean().item(), rel=1e-9)


def test_policy_loss_is_the_clipped_surrogate_and_its_gradient_vanishes_where_clipped():
    clip = 0.2
    old = torch.zeros(1, 5, dtype=torch.float64)
    ratios = torch.tensor([[1.5, 0.5, 1.1, 1.5, 0.5]], dtype=torch.float64)
    adv = torch.tensor([[1.0, -1.0, 2.0, -1.0, 1.0]], dtype=torch.float64)
    logp = ratios.log().requires_grad_(True)
    mask = torch.tensor([[1.0, 1.0, 1.0, 1.0, 1.0]], dtype=torch.float64)
    loss, fraction = ppo_policy_loss(logp, old, adv, mask, clip)
    r = ratios[0].tolist()
    hand = [max(-a * q, -a * min(max(q, 1 - clip), 1 + clip)) for a, q in zip(adv[0].tolist(), r)]
    assert loss.item() == pytest.approx(sum(hand) / 5, rel=1e-12)
    assert fraction.item() == pytest.approx(2 / 5)  # tokens 0 (r > 1.2, A > 0) and 1 (r < 0.8, A < 0)
    loss.backward()
    grad = logp.grad[0]
    assert grad[0] == 0 and grad[1] == 0  # clipped: no push further out
    # unclipped: d(-A r)/dlogp / N = -A r / N
    for i in (2, 3, 4):
        assert grad[i].item() == pytest.approx(-adv[0, i].item() * r[i] / 5, rel=1e-12)
    masked, _ = ppo_policy_loss(logp.detach(), old, adv, torch.tensor([[1.0, 1.0, 1.0, 0.0, 0.0]]), clip)
    assert masked.item() == pytest.approx(sum(hand[:3]) / 3, rel=1e-12)


def test_value_loss_is_clipped_and_its_gradient_vanishes_where_clipped():
    clip = 0.2
    values = torch.tensor([[1.0, 1.0, 0.1]], dtype=torch.float64, requires_grad=True)
    old = torch.zeros(1, 3, dtype=torch.float64)
    returns = torch.tensor([[2.0, 0.5, 1.0]], dtype=torch.float64)
    loss, fraction = value_loss(values, old, returns, torch.ones(1, 3), clip)
    # token 0: (1-2)^2=1 vs clipped (0.2-2)^2=3.24 -> 3.24; token 1: 0.25 vs 0.09 -> 0.25; token 2: unclipped
    assert loss.item() == pytest.approx(0.5 * (3.24 + 0.25 + 0.81) / 3, rel=1e-12)
    assert fraction.item() == pytest.approx(1 / 3)
    loss.backward()
    assert values.grad[0, 0] == 0
    assert values.grad[0, 1].item() == pytest.approx((1.0 - 0.5) / 3, rel=1e-12)
    assert values.grad[0, 2].item() == pytest.approx((0.1 - 1.0) / 3, rel=1e-12)


def tiny_lm(seed: int = 0) -> CausalLM:
    torch.manual_seed(seed)
    return CausalLM(CausalLMConfig(vocab_size=VOCAB, dim=32, n_layers=1, n_heads=2, max_seq_len=64))


def test_kl_is_zero_when_policy_equals_reference_and_token_logprobs_are_next_token_log_softmax():
    policy, reference = tiny_lm(), tiny_lm()
    ids, mask = left_pad([[5, 9, 11, 4], [6, 2]], pad_id=0)
    logp = token_logprobs(policy, ids, mask)
    logp_ref = token_logprobs(reference, ids, mask)
    assert logp.shape == (2, 3)
    assert torch.all(per_token_kl(logp, logp_ref) == 0) and torch.all(per_token_kl(logp, logp_ref, "k3") == 0)
    want = policy(ids, attention_mask=mask)[:, :-1].log_softmax(-1).gather(-1, ids[:, 1:, None]).squeeze(-1)
    torch.testing.assert_close(logp, want)
    other = tiny_lm(seed=1)
    k3 = per_token_kl(logp, token_logprobs(other, ids, mask), "k3")
    assert torch.all(k3 >= 0) and k3.sum() > 0
    with pytest.raises(ValueError, match="k1"):
        per_token_kl(logp, logp_ref, "k2")


def test_policy_with_value_keeps_the_policy_logits():
    model = PolicyWithValue(tiny_lm())
    torch.nn.init.normal_(model.value_head.proj.weight)
    ids, mask = left_pad([[5, 9, 11, 4], [6, 2]], pad_id=0)
    logits, values = model(ids, attention_mask=mask)
    torch.testing.assert_close(logits, model.policy(ids, attention_mask=mask))
    assert values.shape == (2, 4)
    # a left-padded row gets the values of the row alone
    alone = model(torch.tensor([[6, 2]]))[1]
    torch.testing.assert_close(values[1, 2:], alone[0], rtol=1e-5, atol=1e-6)


def count_rewarded(prompts, responses):
    """The toy reward: +1 per occurrence of token 7 in the response."""
    return torch.tensor([float(r.count(REWARDED)) for r in responses])


class RecordingPPO(PPOTask):
    """PPOTask that keeps every training rollout's sampled responses."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.sampled: list[list[list[int]]] = []

    def rollout(self, prompts, seed):
        out = super().rollout(prompts, seed)
        self.sampled.append(out.responses)
        return out


def make_task(**kwargs) -> RecordingPPO:
    policy, reference = tiny_lm(), tiny_lm()
    return RecordingPPO(policy, reference, count_rewarded, max_new_tokens=kwargs.pop("max_new_tokens", 8),
                        kl_coef=0.01, pad_id=0, stop_ids=(STOP,), seed=5, **kwargs)


def prompt_batches(n: int, batch: int = 16) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(2)
    return [torch.randint(4, VOCAB, (batch, 3), generator=g) for _ in range(n)]


def ppo_config(tmp_path, name: str, max_steps: int) -> TrainerConfig:
    return TrainerConfig(output_dir=str(tmp_path / name), seed=3, epochs=100, max_steps=max_steps, device="cpu",
                         log_every=1, best_metric="train/reward", best_mode="max",
                         optimizer=OptimizerConfig(lr=1e-2, weight_decay=0.0, grad_clip=1.0),
                         schedule=ScheduleConfig(name="constant", warmup_steps=0))


def test_rollouts_keep_the_stop_token_and_the_reference_stays_out_of_the_state():
    task = make_task(max_new_tokens=30)
    out = task.rollout([[5, 6, 8]] * 16, seed=0)
    assert any(len(r) < 30 for r in out.responses)  # some rows stopped
    for r in out.responses:
        assert STOP not in r[:-1]
        assert len(r) == 30 or r[-1] == STOP
    assert out.response_mask.sum(1).tolist() == [float(len(r)) for r in out.responses]
    names = set(task.state_dict())
    assert not any("reference" in n for n in names)
    assert {n for n in names if not n.startswith("model.")} == {"_extra_state"}
    assert len(list(task.parameters())) == len(list(task.model.policy.parameters())) + 2  # + value head
    policy = tiny_lm()
    with pytest.raises(ValueError, match="deepcopy"):
        PPOTask(policy, policy, count_rewarded, max_new_tokens=4)
    frozen = PPOTask(policy, None, count_rewarded, max_new_tokens=4).reference
    assert frozen is not policy and not any(p.requires_grad for p in frozen.parameters())
    torch.testing.assert_close(frozen.tok_embeddings.weight, policy.tok_embeddings.weight)


def test_ppo_raises_the_reward_under_base_trainer(tmp_path):
    task = make_task()
    trainer = BaseTrainer(task, ppo_config(tmp_path, "learn", 16), prompt_batches(4), callbacks=[], quiet=True)
    history = trainer.fit()
    first, last = history[0]["train/reward"], history[-1]["train/reward"]
    assert first < 0.6  # about 8/40 at the start
    assert last > first + 1.0, history
    assert history[-1]["train/kl"] > 0 and 1 <= history[-1]["train/response_length"] <= 8
    assert task.rollouts == 16
    before = task.rollouts
    val = task.validation_forward(prompt_batches(1)[0])
    assert task.rollouts == before and set(val) == {"reward", "kl", "response_length"}
    again = task.validation_forward(prompt_batches(1)[0])
    assert val["reward"] == again["reward"]  # a fixed validation seed


def test_a_resumed_run_samples_the_same_rollouts(tmp_path):
    batches = prompt_batches(2, batch=4)
    whole = make_task()
    BaseTrainer(whole, ppo_config(tmp_path, "whole", 4), batches, quiet=True).fit()
    first = make_task()
    BaseTrainer(first, ppo_config(tmp_path, "part", 2), batches, quiet=True).fit()
    resumed = make_task()
    BaseTrainer(resumed, ppo_config(tmp_path, "part", 4), batches, quiet=True).fit(resume_from=tmp_path / "part")
    assert resumed.rollouts == 4
    assert first.sampled == whole.sampled[:2]
    assert resumed.sampled == whole.sampled[2:]
    assert whole.sampled[2] != whole.sampled[0]  # rollouts are seeded apart
