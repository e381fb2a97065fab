"""Ctrl-C saves a resumable checkpoint at the next step boundary; a second Ctrl-C quits at once; the
time budget says when it shortened or stopped a run; a resume says where it resumed."""

from __future__ import annotations

import logging
import os
import signal

import pytest
import torch

from mie.training import BaseTrainer, MetricsLogger, ModelCheckpoint


def _trainer(toys, tmp_path, task=None, **cfg):
    """The same initial weights every time; ``task`` is a class taking the model."""
    torch.manual_seed(0)
    config = toys.config(tmp_path, **{"epochs": 3, "checkpoint_every_steps": 4, **cfg})
    model = toys.Model()
    return toys.trainer(model, config, toys.loader(), val_loader=toys.loader(n=8, shuffle=False),
                        callbacks=[MetricsLogger(), ModelCheckpoint()], task=task(model) if task else None)


def _ctrl_c_at(toys, call: int, presses: int = 1):
    """A task whose ``call``-th forward pass gets ``presses`` Ctrl-Cs, in the middle of a step."""
    class CtrlC(toys.Task):
        calls = 0

        def training_forward(self, batch):
            CtrlC.calls += 1
            if CtrlC.calls == call:
                for _ in range(presses):
                    os.kill(os.getpid(), signal.SIGINT)
            return super().training_forward(batch)

    return CtrlC


def test_ctrl_c_finishes_the_step_saves_and_the_resume_is_exact(toys, tmp_path, caplog):
    reference = _trainer(toys, tmp_path / "ref")
    reference.fit()
    trainer = _trainer(toys, tmp_path / "run", task=_ctrl_c_at(toys, 9))
    with pytest.raises(KeyboardInterrupt, match=r"interrupted at step 9; a resumable checkpoint is saved in .*run "
                                                r"— continue with --resume"):
        trainer.fit()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the handler is put back
    state = BaseTrainer.read_checkpoint(tmp_path / "run" / "run")
    assert state["global_step"] == 9 and state["epoch_open"] and len(state["history"]) == 1  # mid-epoch 2
    resumed = _trainer(toys, tmp_path / "run")
    with caplog.at_level(logging.INFO, logger="mie"):
        resumed.fit(resume_from=tmp_path / "run" / "run")
    assert "resumed from step 9 (stage 0, epoch 2) of " in caplog.text
    assert resumed.history == reference.history
    for a, b in zip(resumed.model.parameters(), reference.model.parameters()):
        assert torch.equal(a, b)


def test_a_second_ctrl_c_quits_at_once_keeping_the_last_checkpoint(toys, tmp_path):
    trainer = _trainer(toys, tmp_path, task=_ctrl_c_at(toys, 10, presses=2))
    with pytest.raises(KeyboardInterrupt) as err:
        trainer.fit()
    assert str(err.value) == ""  # raised by the handler itself, mid-step
    assert trainer.global_step == 9  # step 10 never finished
    assert BaseTrainer.read_checkpoint(tmp_path / "run")["global_step"] == 8  # the last periodic commit


def test_a_spent_time_budget_is_said_and_kept_for_the_report(toys, tmp_path, caplog):
    trainer = _trainer(toys, tmp_path, max_minutes=1e-9)
    with caplog.at_level(logging.WARNING, logger="mie"):
        trainer.fit()
    assert trainer.global_step == 0
    assert trainer.notices == ["max_minutes=1e-09 spent: stopped at step 0 of 18 (stage 0); raise max_minutes "
                               "or set it to 0 for the whole run"]
    assert trainer.notices[0] in caplog.text


def test_a_shortened_schedule_is_said(toys, tmp_path, monkeypatch):
    import mie.training.budget as budget

    clock = {"t": 0.0}
    monkeypatch.setattr(budget.time, "monotonic", lambda: clock["t"])
    trainer = _trainer(toys, tmp_path, max_minutes=1.0, epochs=30)  # 180 steps planned
    trainer.budget_calibration_steps = 4
    monkeypatch.setattr(BaseTrainer, "elapsed_seconds", lambda self: clock["t"])
    finish = BaseTrainer._finish_step

    def one_second_per_step(self, *args, **kwargs):
        clock["t"] += 1.0
        return finish(self, *args, **kwargs)

    monkeypatch.setattr(BaseTrainer, "_finish_step", one_second_per_step)
    trainer.fit()
    assert trainer.notices[0].startswith("max_minutes=1: the schedule of stage 0 was shortened from 180 to ")
    assert "(1.00 s/step measured)" in trainer.notices[0]
    assert trainer.global_step == int(trainer.notices[0].split(" to ")[1].split()[0])
