"""On a CUDA machine: the tiny clip, lm, seq2seq and classification runs of tests/device_runs.py train with
``torch.cuda.set_sync_debug_mode("error")`` switched on for every step that is not logged, so any host
synchronisation there (``.item()``, ``float(tensor)``, a blocking copy, a data-dependent shape) raises.

Skipped without a GPU. The first step is left out (lazy CUDA and cuBLAS set-up); logged steps may read.
"""

from __future__ import annotations

import pytest
import torch
from tests.device_runs import FAMILIES, tiny_trainer

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(),
                                reason="needs a CUDA GPU (runs training steps under torch.cuda.set_sync_debug_mode)")


def _trainer(family, tmp_path, **overrides):
    modes: list[str] = []

    def enter(step: int, logged: bool) -> None:
        mode = "default" if logged or step == 1 else "error"
        torch.cuda.set_sync_debug_mode(mode)
        modes.append(mode)

    def leave() -> None:
        torch.cuda.set_sync_debug_mode("default")

    return tiny_trainer(family, "cuda", tmp_path / "run", enter, leave, **overrides), modes


@pytest.mark.parametrize("precision", ["auto", "fp32"])
@pytest.mark.parametrize("family", FAMILIES)
def test_unlogged_steps_never_synchronise(tmp_path, family, precision):
    trainer, modes = _trainer(family, tmp_path, precision=precision)
    try:
        history = trainer.fit()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert trainer.global_step == 8 and modes.count("error") == 5  # steps 2, 3, 5, 6 and 7
    assert trainer.device.type == "cuda" and next(trainer.model.parameters()).is_cuda
    bf16 = precision == "auto" and torch.cuda.is_bf16_supported(including_emulation=False)
    assert trainer.autocast_dtype is (torch.bfloat16 if bf16 else None)
    assert all(torch.isfinite(torch.tensor(row["train/loss"])) for row in history)


def test_the_debug_mode_catches_a_read_on_an_unlogged_step(tmp_path):
    trainer, _ = _trainer("lm", tmp_path)
    forward = trainer.task.training_forward

    def reading(batch):
        out = forward(batch)
        out["loss"].detach().item()
        return out

    trainer.task.training_forward = reading
    try:
        with pytest.raises(RuntimeError, match="called a synchronizing CUDA operation"):
            trainer.fit()
        assert trainer.global_step == 1  # step 1 is let through; step 2 raises
    finally:
        torch.cuda.set_sync_debug_mode("default")
