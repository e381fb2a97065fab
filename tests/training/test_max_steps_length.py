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
