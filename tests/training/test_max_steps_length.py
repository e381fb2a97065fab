"""Issue 30 item 7: ``max_steps`` sets the length of training (epochs follow from it) and the log says so;
with stages it stays a cap on all of them together (tests/training/test_stages.py)."""

import logging

from mie.training.progress import ProgressBar, length_line


def test_max_steps_past_the_epochs_trains_that_many_steps(toys, tmp_path, caplog):
    # 24 samples at batch 4: 6 steps an epoch, so epochs=2 alone would stop at 12 steps.
    cfg = toys.config(tmp_path, epochs=2, max_steps=15)
    trainer = toys.trainer(toys.Model(), cfg, toys.loader(), val_loader=toys.loader(n=8),
                           callbacks=[ProgressBar(quiet=True)])
    with caplog.at_level(logging.INFO, logger="mie.training.progress"):
        history = trainer.fit()
    assert trainer.global_step == 15 and trainer.total_steps == 15
    assert [row["epoch"] for row in history] == [0, 1, 2]  # the third epoch is cut at step 15
    assert trainer.epoch == 2 and trainer.batch_in_epoch == 3
    assert caplog.messages == ["max_steps=15 sets the length of training: 15 steps = 2.5 epochs of 6 steps "
                               "(3 started); the config's epochs (2) is not used"]


def test_the_schedule_spans_max_steps(toys, tmp_path):
    cfg = toys.config(tmp_path, epochs=1, max_steps=10)
    trainer = toys.trainer(toys.Model(), cfg, toys.loader(), callbacks=[])
    trainer.fit()
    # cosine from 0.05 to min_lr_ratio 0.1 x 0.05 over all 10 steps: the last lr is the floor, not mid-decay
    assert trainer.optimizer.param_groups[0]["lr"] == 0.05 * 0.1


def test_without_max_steps_the_epochs_decide_and_nothing_is_said(toys, tmp_path):
    trainer = toys.trainer(toys.Model(), toys.config(tmp_path, epochs=2), toys.loader(), callbacks=[])
    trainer.fit()
    assert trainer.global_step == 12 and length_line(trainer) is None


def test_a_budget_that_cuts_deeply_says_so_at_once_with_the_fix(toys, tmp_path, monkeypatch, caplog):
    """Item 11: under load the first fit of max_minutes warns on the console with the effect and the fix."""
    from mie.training import budget
    from mie.training.callbacks import Callback

    clock = {"t": 1000.0}
    monkeypatch.setattr("mie.training.base.time.monotonic", lambda: clock["t"])
    monkeypatch.setattr(budget.os, "getloadavg", lambda: (5.0, 5.0, 5.0))
    monkeypatch.setattr("mie.models.budget.usable_cores", lambda: 2)
    steps_at_warning = []

    class Tick(Callback):
        def on_step_end(self, trainer, step, metrics):
            clock["t"] += 1.0  # every step "takes" one second
            if any("cuts training" in n for n in trainer.notices) and not steps_at_warning:
                steps_at_warning.append(step)

    cfg = toys.config(tmp_path, epochs=100, max_minutes=0.5)  # 30 s budget, 600 planned steps
    trainer = toys.trainer(toys.Model(), cfg, toys.loader(), callbacks=[Tick()])
    trainer.budget_calibration_steps = 5
    with caplog.at_level(logging.WARNING, logger="mie.training.budget"):
        trainer.fit()
    advice = [m for m in caplog.messages if "cuts training" in m]
    assert advice == ["the time budget cuts training by 95% (30 of 600 steps at 1.00 s/step; 1-minute load 5.0 on "
                      "2 cores): expect a clearly weaker model than the full schedule gives — on a machine other "
                      "jobs keep busy pass --threads 1, raise max_minutes (0 = no limit, e.g. --set max_minutes=0), "
                      "or run on a quieter machine"]
    # said at the first fit (epoch 2 starts at step 6, then 5 steps are measured), not at the end of the run
    assert len(steps_at_warning) == 1 and steps_at_warning[0] <= 13
    assert advice[0] in trainer.notices  # and kept for the report


def test_a_mild_cut_gives_no_advice(toys, tmp_path, monkeypatch):
    from mie.training.callbacks import Callback

    clock = {"t": 1000.0}
    monkeypatch.setattr("mie.training.base.time.monotonic", lambda: clock["t"])

    class Tick(Callback):
        def on_step_end(self, trainer, step, metrics):
            clock["t"] += 1.0

    cfg = toys.config(tmp_path, epochs=5, max_minutes=0.45)  # 27 s budget, 30 planned steps: a 10% cut
    trainer = toys.trainer(toys.Model(), cfg, toys.loader(), callbacks=[Tick()])
    trainer.budget_calibration_steps = 5
    trainer.fit()
    assert any("shortened from 30 to 27" in n for n in trainer.notices)
    assert not any("cuts training" in n for n in trainer.notices)
