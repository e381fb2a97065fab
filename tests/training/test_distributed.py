"""Distributed helpers: the single-process fallbacks, and a real 2-process gloo DDP run on CPU."""

import sys
import textwrap

import pytest
import torch
from torch import nn

from mie.io import load_weights
from mie.training import distributed as d


def test_single_process_fallbacks(monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    info = d.init_distributed()
    assert (info.rank, info.world_size, info.local_rank) == (0, 1, 0)
    assert not d.is_distributed() and d.get_rank() == 0 and d.get_world_size() == 1 and d.is_main_process()
    model = nn.Linear(2, 2)
    assert d.wrap_ddp(model) is model and d.unwrap_model(model) is model
    assert d.all_reduce_mean({"a": 1.5}) == {"a": 1.5}
    assert d.broadcast_int(7) == 7 and d.rank_seed(10) == 10
    d.barrier()
    d.cleanup()


def test_bad_environment_is_reported(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "two")
    with pytest.raises(ValueError, match="WORLD_SIZE='two' must be an integer"):
        d.init_distributed()


WORKER = textwrap.dedent('''
    import sys
    from pathlib import Path

    import torch
    from torch import nn
    from torch.utils.data import DataLoader, DistributedSampler

    from mie.io import save_weights
    from mie.training import BaseTrainer, MetricsLogger, ModelCheckpoint, Task
    from mie.training import distributed as d
    from mie.training.config import OptimizerConfig, ScheduleConfig, TrainerConfig

    out = Path(sys.argv[1])
    info = d.init_distributed()
    torch.manual_seed(100 + info.rank)  # different initial weights: DDP must broadcast rank 0's
    model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 1))
    g = torch.Generator().manual_seed(0)
    x = torch.randn(32, 4, generator=g)
    data = [{"x": x[i], "y": x[i].sum(0, keepdim=True)} for i in range(32)]
    loader = DataLoader(data, batch_size=4, sampler=DistributedSampler(data, shuffle=True, seed=0))


    class Regression(Task):
        def training_forward(self, batch):
            return {"loss": nn.functional.mse_loss(self.model(batch["x"]), batch["y"]), "rank": float(info.rank)}


    cfg = TrainerConfig(output_dir=str(out / "run"), device="cpu", epochs=2, grad_accum_steps=2, log_every=1,
                        best_metric="val/loss", best_mode="min",
                        optimizer=OptimizerConfig(lr=0.05), schedule=ScheduleConfig(warmup_steps=1))
    trainer = BaseTrainer(Regression(model), cfg, loader, val_loader=loader,
                          callbacks=[MetricsLogger(), ModelCheckpoint()])
    assert isinstance(trainer.ddp_task, nn.parallel.DistributedDataParallel)
    history = trainer.fit()
    assert trainer.global_step == 4, trainer.global_step  # 32 / 2 ranks / 4 per batch / accum 2 * 2 epochs
    assert history[-1]["train/rank"] == info.rank  # train means are per rank ...
    reduced = d.all_reduce_mean({"r": float(info.rank)})
    assert reduced == {"r": 0.5}, reduced
    assert d.broadcast_int(7 + info.rank) == 7
    save_weights(out / f"rank{info.rank}.safetensors", trainer.model.state_dict(),
                 {"val": history[-1]["val/loss"]})
    del trainer  # drop the DDP wrapper before leaving the group
    d.barrier()
    d.cleanup()
''')


@pytest.mark.slow
def test_two_process_gloo_ddp_keeps_ranks_in_sync(tmp_path, launch_ranks):
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    launch_ranks([sys.executable, str(script), str(tmp_path)], timeout=120)
    w0, meta0 = load_weights(tmp_path / "rank0.safetensors")
    w1, meta1 = load_weights(tmp_path / "rank1.safetensors")
    for name in w0:
        assert torch.equal(w0[name], w1[name]), name
    assert meta0["val"] == pytest.approx(meta1["val"])  # validation metrics are averaged over ranks
    torch.manual_seed(100)
    init = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 1)).state_dict()
    assert not torch.equal(init["0.weight"], w0["0.weight"])  # it trained
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 4 + 2  # rank 0 only: 4 step lines + 2 epoch lines
    assert (tmp_path / "run" / "checkpoints" / "last.safetensors").is_file()
