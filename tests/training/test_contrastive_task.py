"""ContrastiveTask: a real tiny DualEncoder trained by BaseTrainer with losses from mie.losses."""

import json
import math

import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from mie.io import load_state, load_weights
from mie.losses.config import LossConfig
from mie.models.multimodal import DualEncoderConfig
from mie.models.registry import build_model
from mie.tokenization.base import SPECIAL_TOKENS
from mie.training import BaseTrainer, Callback, MetricsLogger, ModelCheckpoint, StageConfig
from mie.training.tasks.contrastive import ContrastiveTask, TextTower

PAD, EOS = SPECIAL_TOKENS.index("<pad>"), SPECIAL_TOKENS.index("<eos>")
VOCAB, CONTEXT = 64, 8


def tiny_model(seed=0):
    torch.manual_seed(seed)
    cfg = DualEncoderConfig(name="test", embed_dim=16, image_size=8, patch_size=4, vision_width=16,
                            vision_layers=1, vision_heads=2, text_width=16, text_layers=1, text_heads=2,
                            context_length=CONTEXT, vocab_size=VOCAB, mlp_ratio=2.0)
    return build_model(cfg, eos_id=EOS, pad_id=PAD)


class PairData(Dataset):
    """Images 2k and 2k+1 are the same picture with two captions: they share ``match_ids`` k."""

    def __init__(self, n=16):
        g = torch.Generator().manual_seed(5)
        self.images = torch.randn(n // 2, 3, 8, 8, generator=g).repeat_interleave(2, dim=0)
        self.ids = torch.full((n, CONTEXT), PAD)
        for i in range(n):
            length = int(torch.randint(2, CONTEXT, (), generator=g))
            self.ids[i, : length - 1] = torch.randint(len(SPECIAL_TOKENS), VOCAB, (length - 1,), generator=g)
            self.ids[i, length - 1] = EOS

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return {"images": self.images[i], "input_ids": self.ids[i], "match_ids": torch.tensor(i // 2)}


def _loader(n=16, shuffle=True):
    return DataLoader(PairData(n), batch_size=4, shuffle=shuffle, generator=torch.Generator().manual_seed(0))


def _config(toys, tmp_path, **overrides):
    cfg = toys.config(tmp_path, **overrides)
    cfg.optimizer.lr, cfg.optimizer.grad_clip = 3e-3, 1.0
    return cfg


def test_training_lowers_the_loss_and_logs_metrics(toys, tmp_path):
    calls = []

    def evaluator(model):
        calls.append(model.training)
        return {"fake_r1": 0.25 * len(calls)}

    task = ContrastiveTask(tiny_model(), LossConfig("clip"), evaluator=evaluator)
    cfg = _config(toys, tmp_path, epochs=4, best_metric="val/fake_r1", best_mode="max")
    trainer = BaseTrainer(task, cfg, _loader(), val_loader=_loader(8, shuffle=False),
                          callbacks=[MetricsLogger(), ModelCheckpoint()])
    history = trainer.fit()
    assert trainer.global_step == 16
    assert history[-1]["train/loss"] < 0.8 * history[0]["train/loss"]
    assert {"train/accuracy", "train/logit_scale", "val/loss", "val/fake_r1"} <= set(history[-1])
    assert calls == [False] * 4  # the evaluator ran once per validation, model in eval mode
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert records[-1]["val/fake_r1"] == 1.0
    _, meta = load_weights(tmp_path / "run" / "checkpoints" / "best.safetensors")
    assert meta["best_score"] == 1.0 and meta["step"] == 16


def _clip_by_hand(out, match_ids):
    logits = out["logit_scale"] * out["image_embeds"] @ out["text_embeds"].T
    targets = (match_ids[:, None] == match_ids[None, :]).float()
    targets = targets / targets.sum(1, keepdim=True)
    return (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets)) / 2


def test_val_loss_matches_a_direct_computation(toys, tmp_path):
    model = tiny_model()
    trainer = BaseTrainer(ContrastiveTask(model, LossConfig("clip")), _config(toys, tmp_path), _loader(),
                          val_loader=_loader(8, shuffle=False), callbacks=[])
    metrics = trainer.validate_epoch()
    assert model.training  # put back into training mode
    model.eval()
    with torch.no_grad():
        losses = [float(_clip_by_hand(model(b["images"], b["input_ids"]), b["match_ids"]))
                  for b in _loader(8, shuffle=False)]
    assert metrics == {"val/loss": pytest.approx(sum(losses) / len(losses), rel=1e-5)}
    assert len(set(losses)) == 2  # two different batches


def test_learnable_loss_parameters_are_trained_and_saved(toys, tmp_path):
    trainer = BaseTrainer(ContrastiveTask(tiny_model(), LossConfig("siglip")), _config(toys, tmp_path, epochs=1),
                          _loader(), callbacks=[ModelCheckpoint()])
    bias = trainer.task.loss.bias
    assert bias.item() == -10.0 and bias.requires_grad
    assert any(p is bias for g in trainer.optimizer.param_groups for p in g["params"])
    trainer.fit()
    assert bias.item() != -10.0
    state = load_state(tmp_path / "run" / "checkpoints" / "last_state.pt")
    assert torch.equal(state["task"]["loss.bias"], bias.detach())
    other = BaseTrainer(ContrastiveTask(tiny_model(1), LossConfig("siglip")), _config(toys, tmp_path, epochs=1),
                        _loader(), callbacks=[])
    assert other.task.loss.bias.item() == -10.0
    other.load_checkpoint(tmp_path / "run")
    assert torch.equal(other.task.loss.bias, bias)
    assert torch.equal(other.model.logit_scale, trainer.model.logit_scale)


def test_logit_scale_is_clamped_after_each_step(toys, tmp_path):
    model = tiny_model()
    with torch.no_grad():
        model.logit_scale.fill_(10.0)  # past log(100): forward caps it, so its gradient is zero
    calls, seen = [], []
    clamp = model.clamp_logit_scale_
    model.clamp_logit_scale_ = lambda: (calls.append(1), clamp())

    class Watch(Callback):
        def on_step_end(self, trainer, step, metrics):
            seen.append(trainer.model.logit_scale.item())

    trainer = BaseTrainer(ContrastiveTask(model, LossConfig("clip")), _config(toys, tmp_path, epochs=1),
                          _loader(), callbacks=[Watch()])
    trainer.fit()
    assert len(calls) == trainer.global_step == 4
    assert all(0.0 <= s <= math.log(100.0) + 1e-6 for s in seen)
    assert seen[0] == pytest.approx(math.log(100.0))


def test_missing_batch_key_is_reported(toys, tmp_path):
    bad = DataLoader([{"images": torch.zeros(3, 8, 8)}] * 4, batch_size=2)
    trainer = BaseTrainer(ContrastiveTask(tiny_model(), LossConfig("clip")), _config(toys, tmp_path), bad,
                          callbacks=[])
    with pytest.raises(ValueError, match=r"needs 'input_ids'; got keys \['images'\]"):
        trainer.fit()


def test_ema_moco_key_encoder_is_a_text_tower_copy_moved_by_ema(toys, tmp_path):
    # ema_moco's queries are image embeddings; clip beside it trains the text tower the keys follow.
    model = tiny_model()
    loss = LossConfig("combined", {"losses": [{"name": "clip"},
                                              {"name": "ema_moco", "queue_size": 32, "momentum": 0.9}]})
    trainer = BaseTrainer(ContrastiveTask(model, loss), _config(toys, tmp_path, epochs=1), _loader(),
                          callbacks=[])
    moco = trainer.task.loss.terms[1]
    key = moco.key_encoder
    assert isinstance(key, TextTower)
    names = {n for n, _ in key.named_parameters()}
    assert names == {f"text.{n}" for n, _ in model.text.named_parameters()} | {"text_projection.weight"}
    assert not any(p.requires_grad for p in key.parameters())
    optimized = {id(p) for g in trainer.optimizer.param_groups for p in g["params"]}
    assert not optimized & {id(p) for p in key.parameters()}
    tower = dict(TextTower(model).named_parameters())
    for name, param in key.named_parameters():
        assert torch.equal(param, tower[name]) and param.data_ptr() != tower[name].data_ptr()

    class CheckEMA(Callback):
        def on_train_begin(self, trainer):
            self.prev, self.steps = {n: p.clone() for n, p in key.named_parameters()}, 0

        def on_step_end(self, trainer, step, metrics):
            for name, param in key.named_parameters():
                torch.testing.assert_close(param, 0.9 * self.prev[name] + 0.1 * tower[name].detach())
                self.prev[name] = param.clone()
            self.steps += 1

    check = CheckEMA()
    trainer.callbacks.append(check)
    start = {n: p.clone() for n, p in key.named_parameters()}
    trainer.fit()
    assert check.steps == 4
    assert int(moco.queue_ptr) == (4 * 4) % 32  # each step enqueued its batch of keys
    proj = "text_projection.weight"
    assert not torch.equal(key.get_parameter(proj), start[proj])  # it moved ...
    assert not torch.allclose(key.get_parameter(proj), model.text_projection.weight)  # ... lagging the model


def test_feature_consistency_reference_is_frozen_at_its_stage_start(toys, tmp_path):
    consistency = LossConfig("combined", {"losses": [{"name": "clip"},
                                                     {"name": "feature_consistency", "weight": 1.0}]})
    stages = [StageConfig(steps=3), StageConfig(steps=3, loss=consistency)]
    model = tiny_model()
    task = ContrastiveTask(model, LossConfig("clip"))
    trainer = BaseTrainer(task, _config(toys, tmp_path, stages=stages), _loader(), callbacks=[])
    assert task.reference is None  # plain clip takes no reference

    class Snap(Callback):
        def on_stage_end(self, trainer, stage):
            if stage == 0:
                self.stage0 = {k: v.clone() for k, v in model.state_dict().items()}
                self.reference = trainer.task.reference

    snap = Snap()
    trainer.callbacks.append(snap)
    trainer.fit()
    assert snap.reference is None and task.reference is not None
    assert not task.reference.training and not any(p.requires_grad for p in task.reference.parameters())
    weights, _ = load_weights(tmp_path / "run" / "checkpoints" / "stage0.safetensors")
    reference = task.reference.state_dict()
    for name, value in snap.stage0.items():
        assert torch.equal(reference[name], value) and torch.equal(weights[name], value), name
    assert not torch.equal(reference["text_projection.weight"], model.text_projection.weight)  # model moved on
    state = trainer.state_dict()["task"]
    assert torch.equal(state["reference.text_projection.weight"], reference["text_projection.weight"])


def _tag_batch():
    data = PairData(4)
    tag_ids = data.ids[:3].clone()
    return {"images": data.images, "input_ids": data.ids, "match_ids": torch.arange(4),
            "tag_targets": torch.tensor([[1.0, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0]]), "tag_input_ids": tag_ids}


def test_tag_texts_are_encoded_in_the_same_forward_and_match_a_direct_encoding():
    model = tiny_model()
    task = ContrastiveTask(model, LossConfig("combined", {"losses": [{"name": "clip"}, {"name": "tag_match"}]}))
    batch = _tag_batch()
    context = task._context(batch)
    model.eval()
    torch.testing.assert_close(context["tag_text_embeds"], model.encode_text(batch["tag_input_ids"]))
    torch.testing.assert_close(context["text_embeds"], model.encode_text(batch["input_ids"]))


def test_a_loss_that_reads_no_caption_skips_the_caption_forward(monkeypatch):
    model = tiny_model()
    task = ContrastiveTask(model, LossConfig("caption_tags"), tag_names=["circle", "square", "red"])
    seen = []
    forward = type(model.text).forward
    monkeypatch.setattr(type(model.text), "forward", lambda self, ids: seen.append(ids.shape[0]) or forward(self, ids))
    context = task._context(_tag_batch())
    assert seen == [1] and context["text_embeds"] is None  # one caption keeps the forward's shape
    task.on_stage_start(0, StageConfig(name="match", loss=LossConfig("tag_match")))
    task._context(_tag_batch())
    assert seen[-1] == 3  # only the three tags
    with pytest.raises(ValueError, match="tag_input_ids"):
        task._context({k: v for k, v in _tag_batch().items() if k != "tag_input_ids"})


def test_a_loss_on_patch_tokens_gets_them_from_the_same_forward():
    model = tiny_model()
    task = ContrastiveTask(model, LossConfig("combined", {"losses": [{"name": "clip"}, {"name": "tag_ground"}]}))
    context = task._context(_tag_batch())
    tokens = context["image_token_embeds"]
    assert tokens.shape == (4, model.visual.patch_embed.num_patches, model.config.embed_dim)
    model.eval()
    images = _tag_batch()["images"]
    torch.testing.assert_close(context["image_embeds"], model.encode_image(images), rtol=1e-4, atol=1e-5)
    embeds, patches = model.encode_image_tokens(images)
    torch.testing.assert_close(patches, tokens)
