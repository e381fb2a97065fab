"""mie.training.device on the CPU: the device and precision chosen, batch copies (non_blocking only on
CUDA), pinned loaders only on CUDA, and no host synchronisation on the steps that are not logged, counted
over a tiny run of every family (tests/device_runs.py; the same runs go under CUDA's sync-debug mode in
tests/gpu/test_cuda_sync_debug.py where a GPU exists)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from tests.device_runs import BUILDERS, FAMILIES, count_host_syncs

from mie.data.lm_text import lm_train_loader
from mie.errors import ConfigError
from mie.models.causal_lm import CausalLM, CausalLMConfig
from mie.recipes.classification.config import ClassificationDataConfig
from mie.recipes.classification.data import build_loader as classification_loader
from mie.recipes.clip.config import ClipConfig
from mie.recipes.clip.train import build_train_loader as clip_loader
from mie.training.device import autocast, pin_memory, resolve_device, resolve_precision, to_device

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def fake_cuda(monkeypatch):
    """A machine that reports one CUDA device computing in bf16 (nothing is put on it)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: True)


def test_auto_is_cuda_when_present_and_the_cpu_otherwise(fake_cuda, monkeypatch):
    assert resolve_device("auto") == torch.device("cuda", 0)
    assert resolve_device("cuda:0") == torch.device("cuda", 0) and pin_memory("auto") and pin_memory("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu") and not pin_memory("auto")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu") and not pin_memory("cpu")


@pytest.mark.parametrize("spec, message", [
    ("cuda", "device: 'cuda' but CUDA is not available — use device=auto or cpu"),
    ("gpu", "device: 'gpu' is not a device — use auto, cpu, cuda, cuda:N or mps"),
])
def test_an_absent_or_unknown_device_is_a_config_error(monkeypatch, spec, message):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError) as caught:
        resolve_device(spec)
    assert str(caught.value) == message


def test_a_cuda_index_past_the_devices_is_a_config_error(fake_cuda):
    with pytest.raises(ConfigError) as caught:
        resolve_device("cuda:3")
    assert str(caught.value) == "device: 'cuda:3' but this machine has 1 CUDA device(s) — use device=auto or cuda:0"


def test_precision_auto_is_bf16_on_cuda_only(fake_cuda, monkeypatch):
    cuda, cpu = torch.device("cuda", 0), torch.device("cpu")
    assert resolve_precision("auto", cuda) is torch.bfloat16
    assert resolve_precision("auto", cpu) is None  # bf16 is slower than fp32 on CPUs without AVX512-BF16/AMX
    assert resolve_precision("bf16", cpu) is torch.bfloat16 and resolve_precision("fp16", cuda) is torch.float16
    assert resolve_precision("fp32", cuda) is None
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: False)
    assert resolve_precision("auto", cuda) is None  # a GPU without bf16 stays in fp32
    with pytest.raises(ConfigError) as caught:
        resolve_precision("fp8", cpu)
    assert str(caught.value) == "precision: 'fp8' is unknown — choose one of auto, fp32, bf16, fp16"
    assert isinstance(autocast(cpu, torch.bfloat16), torch.autocast)
    with autocast(cpu, None):
        assert not torch.is_autocast_enabled("cpu")


def test_to_device_copies_without_blocking_on_cuda_only(monkeypatch):
    calls = []

    def to(tensor, device, non_blocking=False):
        calls.append((torch.device(device).type, non_blocking))
        return tensor

    monkeypatch.setattr(torch.Tensor, "to", to)
    batch = {"a": torch.zeros(2), "b": [torch.ones(2), "text"], "c": (torch.zeros(1),), "n": 3}
    moved = to_device(batch, torch.device("cuda", 0))
    assert calls == [("cuda", True)] * 3
    assert moved["b"][1] == "text" and moved["n"] == 3 and isinstance(moved["c"], tuple)
    calls.clear()
    to_device(batch, torch.device("cpu"))
    assert calls == [("cpu", False)] * 3


def test_the_recipes_loaders_pin_only_for_cuda(fake_cuda):
    split = SimpleNamespace(images=torch.zeros(4, 1, 8, 8, dtype=torch.uint8), labels=torch.zeros(4, dtype=torch.long))
    for device, pinned in (("auto", True), ("cuda:0", True), ("cpu", False)):
        assert clip_loader(ClipConfig(device=device), list(range(8)), tokenizer=None).pin_memory is pinned
        assert lm_train_loader(list(range(4)), 2, seed=0, pin_memory=pin_memory(device)).pin_memory is pinned
        assert classification_loader(split, [0.5], [0.25], 2, train=True, data=ClassificationDataConfig(),
                                     pin_memory=pin_memory(device)).pin_memory is pinned


@pytest.mark.parametrize("family", FAMILIES)
def test_no_host_sync_on_steps_that_are_not_logged(tmp_path, family):
    counter, trainer = count_host_syncs(family, tmp_path / "run")
    assert trainer.global_step == 8
    assert [f"step {s.step}: {s.op} at {s.where}" for s in counter.unlogged()] == []
    # The counter sees the logged steps' reads (their loss means), so the empty list above is not blind.
    assert {s.step for s in counter.syncs} == {4, 8}


def test_the_counter_catches_a_read_on_an_unlogged_step(tmp_path):
    def hook(task):
        forward = task.training_forward

        def reading(batch):
            out = forward(batch)
            out["loss"].detach().item()  # what the trainer must never do between logs
            batch[0][batch[0] > 3]  # boolean-mask indexing: a data-dependent shape
            return out

        task.training_forward = reading

    counter, _ = count_host_syncs("lm", tmp_path / "run", task_hook=hook)
    found = {(s.step, s.op) for s in counter.unlogged()}
    assert {(1, "aten._local_scalar_dense.default"), (1, "aten.index.Tensor")} <= found
    assert all("test_device.py" in s.where for s in counter.unlogged())


def test_text_tower_reads_nothing_back_off_the_cpu_while_training():
    task, rows = BUILDERS["clip"]("cpu")
    model = task.model.to("meta").train()  # a meta tensor cannot be read back: any host sync raises
    ids = torch.stack([row["input_ids"] for row in rows]).to("meta")
    assert model.encode_text(ids).shape == (16, 16)
    with pytest.raises(RuntimeError, match="meta tensors"):
        model.eval().encode_text(ids)  # evaluation still checks every caption for its end-of-text


def test_learned_positions_are_checked_without_a_read_back_while_training():
    model = CausalLM(CausalLMConfig(vocab_size=64, dim=16, n_layers=1, n_heads=2, max_seq_len=8, positions="learned"))
    with pytest.raises(ValueError, match="^position 8 exceeds max_seq_len=8; shorten the input"):
        model(torch.zeros(1, 9, dtype=torch.long))
    meta = model.to("meta").train()  # as on a GPU: a read-back would raise here
    ids, mask = torch.zeros(2, 8, dtype=torch.long, device="meta"), torch.ones(2, 8, dtype=torch.long, device="meta")
    assert meta(ids).shape == meta(ids, attention_mask=mask).shape == (2, 8, 64)
    with pytest.raises(ValueError, match="^position 8 exceeds"):
        meta(torch.zeros(1, 9, dtype=torch.long, device="meta"))  # arange(T) positions: known from T alone
    with pytest.raises(RuntimeError, match="meta tensors"):
        meta.eval()(ids, attention_mask=mask)  # outside training the positions are still read and checked
