"""MultimodalTrainer with a toy dual encoder and an inline InfoNCE (the real ones live elsewhere)."""

import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

from mie.io import load_state
from mie.training import MetricsLogger, ModelCheckpoint, MultimodalTrainer


class ToyDualEncoder(nn.Module):
    """Flattened pixels -> MLP; mean of token embeddings -> MLP; a learnable log temperature."""

    def __init__(self, vocab=12, dim=8):
        super().__init__()
        self.image = nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4, 16), nn.ReLU(), nn.Linear(16, dim))
        self.token_embedding = nn.Embedding(vocab, 16)
        self.text = nn.Sequential(nn.ReLU(), nn.Linear(16, dim))
        self.logit_scale = nn.Parameter(torch.tensor(2.0))
        self.clamps = 0

    def forward(self, images, input_ids):
        return {"image_embeds": F.normalize(self.image(images), dim=-1),
                "text_embeds": F.normalize(self.text(self.token_embedding(input_ids).mean(1)), dim=-1),
                "logit_scale": self.logit_scale.exp()}

    def clamp_logit_scale_(self):
        self.clamps += 1
        with torch.no_grad():
            self.logit_scale.clamp_(0, 4.6052)


class InfoNCE(nn.Module):
    """Symmetric CLIP loss; captions sharing a match id are all positives (soft targets)."""

    def __init__(self, learnable_bias=False):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(())) if learnable_bias else None
        self.last_metrics = {}

    def forward(self, image_embeds, text_embeds, logit_scale, match_ids=None):
        logits = logit_scale * image_embeds @ text_embeds.t()
        if self.bias is not None:
            logits = logits + self.bias
        ids = match_ids if match_ids is not None else torch.arange(len(logits), device=logits.device)
        targets = (ids[:, None] == ids[None, :]).float()
        targets = targets / targets.sum(1, keepdim=True)
        loss = (F.cross_entropy(logits, targets) + F.cross_entropy(logits.t(), targets)) / 2
        self.last_metrics = {"i2t_acc": (logits.argmax(1) == torch.arange(len(logits))).float().mean().item()}
        return loss


class PairData(Dataset):
    def __init__(self, n=16):
        g = torch.Generator().manual_seed(5)
        self.images = torch.randn(n, 3, 4, 4, generator=g)
        self.ids = torch.randint(0, 12, (n, 5), generator=g)

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return {"images": self.images[i], "input_ids": self.ids[i], "match_ids": torch.tensor(i // 2)}


def _loader(n=16, shuffle=True):
    return DataLoader(PairData(n), batch_size=4, shuffle=shuffle, generator=torch.Generator().manual_seed(0))


def test_training_lowers_the_loss_and_logs_metrics(toys, tmp_path):
    cfg = toys.config(tmp_path, epochs=6, best_metric="val/fake_r1", best_mode="max")
    calls = []

    def evaluator(model):
        calls.append(model.training)
        return {"fake_r1": 0.25 * len(calls)}

    model = ToyDualEncoder()
    trainer = MultimodalTrainer(model, cfg, _loader(), val_loader=_loader(8, shuffle=False), loss_fn=InfoNCE(),
                                evaluator=evaluator, callbacks=[MetricsLogger(), ModelCheckpoint()])
    history = trainer.fit()
    assert history[-1]["train/loss"] < history[0]["train/loss"]
    assert {"train/i2t_acc", "train/logit_scale", "val/loss", "val/fake_r1"} <= set(history[-1])
    assert history[-1]["train/logit_scale"] <= 100.0 + 1e-3
    assert calls == [False] * 6  # evaluator ran once per validation, model in eval mode
    assert model.clamps == trainer.global_step == 24
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert records[-1]["val/fake_r1"] == 1.5
    assert (tmp_path / "run" / "checkpoints" / "best.json").is_file()


def test_val_loss_matches_a_direct_computation(toys, tmp_path):
    model, loss_fn = ToyDualEncoder(), InfoNCE()
    trainer = MultimodalTrainer(model, toys.config(tmp_path), _loader(), val_loader=_loader(8, shuffle=False),
                                loss_fn=loss_fn, callbacks=[])
    metrics = trainer.validate_epoch()
    assert model.training  # put back into training mode
    model.eval()
    with torch.no_grad():
        losses = [float(loss_fn(**{k: v for k, v in model(b["images"], b["input_ids"]).items()},
                                match_ids=b["match_ids"])) for b in _loader(8, shuffle=False)]
    assert metrics == {"val/loss": pytest.approx(sum(losses) / len(losses))}


def test_learnable_loss_parameters_are_trained_and_saved(toys, tmp_path):
    loss_fn = InfoNCE(learnable_bias=True)
    trainer = MultimodalTrainer(ToyDualEncoder(), toys.config(tmp_path, epochs=1), _loader(), loss_fn=loss_fn,
                                callbacks=[ModelCheckpoint()])
    assert any(p is loss_fn.bias for g in trainer.optimizer.param_groups for p in g["params"])
    trainer.fit()
    assert loss_fn.bias.item() != 0.0
    state = load_state(tmp_path / "run" / "checkpoints" / "last_state.pt")
    assert torch.equal(state["extra"]["loss"]["bias"], loss_fn.bias.detach())
    other_loss = InfoNCE(learnable_bias=True)
    other = MultimodalTrainer(ToyDualEncoder(), toys.config(tmp_path, epochs=1), _loader(), loss_fn=other_loss,
                              callbacks=[])
    other.load_checkpoint(tmp_path / "run" / "checkpoints")
    assert torch.equal(other_loss.bias, loss_fn.bias)


def test_missing_batch_key_is_reported(toys, tmp_path):
    bad = DataLoader([{"images": torch.zeros(3, 4, 4)}] * 4, batch_size=2)
    trainer = MultimodalTrainer(ToyDualEncoder(), toys.config(tmp_path), bad, loss_fn=InfoNCE(), callbacks=[])
    with pytest.raises(ValueError, match="needs 'input_ids'"):
        trainer.fit()
