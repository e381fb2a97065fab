"""torch's CPU threads (mie.training.threads): the one-line load warning, validation, --threads over threads:."""

import logging
import os

import pytest
import torch

from mie.errors import ConfigError
from mie.safety import embeddings
from mie.training import threads

REAL_OWN_LOAD = threads.own_load  # the fixture replaces it with 0 for the other tests

@pytest.fixture(autouse=True)
def _fresh(monkeypatch):
    """No --threads request, no warning yet, 2 cores, no load of our own; torch's threads restored after."""
    monkeypatch.setattr(threads, "_requested", None)
    monkeypatch.setattr(threads, "_warned", False)
    monkeypatch.setattr(threads.os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    monkeypatch.setattr(threads, "own_load", lambda: 0.0)
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def _load(monkeypatch, value: float) -> None:
    monkeypatch.setattr(threads.os, "getloadavg", lambda: (value, value, value))


def _warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "mie.training.threads" and r.levelno == logging.WARNING]


def test_a_busy_machine_gets_exactly_one_warning_line(monkeypatch, caplog):
    _load(monkeypatch, 6.0)
    with caplog.at_level(logging.WARNING, logger="mie.training.threads"):
        assert threads.check_load(2) is True
        assert threads.check_load(2) is False  # once per process, however many trainers start
        assert threads.set_threads(2) == 2
    lines = _warnings(caplog)
    assert lines == ["the machine is busy (load 6.0 from other jobs on 2 cores) and torch runs 2 threads, which "
                     "then spin waiting for each other and can run several times slower — pass --threads 1 "
                     "(or set threads: 1 in the config)"]
    assert "\n" not in lines[0]


@pytest.mark.parametrize(("load", "threads_asked"), [(0.0, 2), (0.4, 2), (0.8, 2), (1.4, 1), (6.0, 1), (1.0, 0)])
def test_no_warning_when_the_threads_fit_or_there_is_one(monkeypatch, caplog, load, threads_asked):
    _load(monkeypatch, load)
    torch.set_num_threads(1)  # threads 0 keeps torch's count: one here
    with caplog.at_level(logging.WARNING, logger="mie.training.threads"):
        assert threads.set_threads(threads_asked) == (threads_asked or 1)
    assert _warnings(caplog) == []


def test_this_process_own_load_is_not_counted_as_other_jobs(monkeypatch, caplog):
    _load(monkeypatch, 1.5)
    monkeypatch.setattr(threads, "own_load", lambda: 1.2)  # our own data preparation raised the average
    with caplog.at_level(logging.WARNING, logger="mie.training.threads"):
        assert threads.check_load(2) is False
    monkeypatch.setattr(threads, "own_load", lambda: 0.2)
    with caplog.at_level(logging.WARNING, logger="mie.training.threads"):
        assert threads.check_load(2) is True
    assert len(_warnings(caplog)) == 1 and "load 1.3 from other jobs" in _warnings(caplog)[0]


@pytest.mark.parametrize(("elapsed", "busy", "share"), [(6.0, 1.0, 0.095), (60.0, 1.0, 0.632), (600.0, 1.0, 1.0),
                                                      (600.0, 0.5, 0.5), (60.0, 2.0, 1.264)])
def test_own_load_is_the_cpu_use_damped_like_the_kernel_load(monkeypatch, elapsed, busy, share):
    clock = type("Clock", (), {"monotonic": staticmethod(lambda: 100.0 + elapsed),
                               "process_time": staticmethod(lambda: 10.0 + busy * elapsed)})
    monkeypatch.setattr(threads, "time", clock)
    monkeypatch.setattr(threads, "_started", 100.0)
    monkeypatch.setattr(threads, "_cpu_at_start", 10.0)
    assert REAL_OWN_LOAD() == pytest.approx(share, abs=1e-3)


@pytest.mark.parametrize(("value", "message"), [
    (-1, "threads: -1 threads is negative — use 0 (torch's default, one thread per core) or 1 to 8; "
         "1 on a machine shared with other jobs"),
    (9, "threads: 9 threads is more than 4 per core (2 cores here) — use 0 (torch's default, one thread per "
        "core) or 1 to 8; 1 on a machine shared with other jobs"),
])
def test_out_of_range_counts_are_one_line_errors(value, message):
    with pytest.raises(ConfigError) as caught:
        threads.set_threads(value)
    assert str(caught.value) == message
    assert threads.check_threads(8) == 8 and threads.check_threads(0) == 0


def test_the_command_line_request_wins_over_the_config(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    _load(monkeypatch, 0.0)
    threads.request_threads(1)
    assert torch.get_num_threads() == 1 and threads.requested_threads() == 1
    assert os.environ["OMP_NUM_THREADS"] == "1"  # worker processes started from here use as many
    assert threads.set_threads(2) == 1  # a config's threads: 2 does not undo --threads 1
    threads.request_threads(None)
    assert threads.set_threads(2) == 2


def test_the_trainer_runs_on_the_config_threads_or_the_request(toys, tmp_path, monkeypatch):
    _load(monkeypatch, 0.0)
    seen = []

    class Record(toys.Task):
        def training_forward(self, batch):
            seen.append(torch.get_num_threads())
            return super().training_forward(batch)

    def fit(**config):
        model = toys.Model()
        toys.trainer(model, toys.config(tmp_path, epochs=1, **config), toys.loader(), task=Record(model),
                     callbacks=[]).fit()

    fit(threads=2, output_dir=str(tmp_path / "a"))
    assert seen and set(seen) == {2}
    threads.request_threads(1)
    seen.clear()
    fit(threads=2, output_dir=str(tmp_path / "b"))
    assert seen and set(seen) == {1}


def test_tuning_the_safety_classifier_checks_the_load_first(monkeypatch):
    asked = []

    class Stop(Exception):
        pass

    def check_load(n):
        asked.append(n)
        raise Stop

    monkeypatch.setattr(embeddings, "check_load", check_load)
    torch.set_num_threads(2)
    with pytest.raises(Stop):
        embeddings.tune(encoder=None, examples=[], principles=["harm_prevention"])
    assert asked == [2]
