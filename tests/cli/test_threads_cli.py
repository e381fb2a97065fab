"""``--threads N`` on every command (mie.cli): before or after the subcommand and its action, validated in
one line, and over a config's ``threads:`` key in a real ``mie train``."""

import logging
import sys
import types

import pytest
import torch
import yaml

from mie import cli
from mie.training import threads
from mie.training.tasks.classification import ClassificationTask


@pytest.fixture(autouse=True)
def _fresh(monkeypatch):
    """No earlier request, 2 cores, an idle machine; torch's threads, OMP_NUM_THREADS and the mie logger
    restored after (main() sets them for the process)."""
    monkeypatch.setattr(threads, "_requested", None)
    monkeypatch.setattr(threads, "_warned", False)
    monkeypatch.setattr(threads.os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    monkeypatch.setattr(threads.os, "getloadavg", lambda: (0.0, 0.0, 0.0))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    log = logging.getLogger("mie")
    level, handlers, before = log.level, list(log.handlers), torch.get_num_threads()
    yield
    log.setLevel(level)
    log.handlers[:] = handlers
    torch.set_num_threads(before)


@pytest.fixture
def nested(monkeypatch):
    """A command 'fake' with one action 'act' whose run() records torch's threads and the request."""
    module = types.ModuleType("mie_fake_threads")
    seen = []

    def add_arguments(parser):
        parser.add_subparsers(dest="fake_command", required=True).add_parser("act")

    def run(args):
        seen.append((torch.get_num_threads(), threads.requested_threads(), args.threads))
        return 0

    module.add_arguments, module.run = add_arguments, run
    monkeypatch.setitem(sys.modules, "mie_fake_threads", module)
    monkeypatch.setitem(cli.COMMANDS, "fake", cli.Command("a test command", "mie_fake_threads"))
    return seen


@pytest.mark.parametrize("argv", [["--threads", "2", "fake", "act"], ["--threads=2", "fake", "act"],
                                  ["fake", "--threads", "2", "act"], ["fake", "act", "--threads", "2"],
                                  ["-q", "--threads", "2", "fake", "act", "-v"]])
def test_threads_before_or_after_the_subcommand_and_its_action(nested, argv):
    torch.set_num_threads(1)
    assert cli.main(argv) == 0
    assert nested == [(2, 2, 2)]


def test_without_threads_nothing_is_requested(nested):
    torch.set_num_threads(1)
    assert cli.main(["fake", "act"]) == 0
    assert nested == [(1, None, None)]


def test_the_command_is_found_past_the_value_of_threads():
    assert cli._chosen_command(["--threads", "1", "train", "cfg.yaml"]) == "train"
    assert cli._chosen_command(["-q", "--threads=1", "train"]) == "train"
    assert cli._chosen_command(["--threads", "1"]) is None


@pytest.mark.parametrize(("value", "line"), [
    ("9", "mie fake: error: --threads: 9 threads is more than 4 per core (2 cores here) — use 0 (torch's "
          "default, one thread per core) or 1 to 8; 1 on a machine shared with other jobs"),
    ("-2", "mie fake: error: --threads: -2 threads is negative — use 0 (torch's default, one thread per "
           "core) or 1 to 8; 1 on a machine shared with other jobs"),
])
def test_an_out_of_range_count_is_one_line_and_exit_1(nested, capsys, value, line):
    assert cli.main(["fake", "act", "--threads", value]) == 1
    assert capsys.readouterr().err.strip().splitlines() == [line]
    assert nested == []  # refused before the command ran


def test_a_busy_machine_warns_in_one_line(nested, monkeypatch, capsys):
    monkeypatch.setattr(threads.os, "getloadavg", lambda: (6.0, 6.0, 6.0))
    assert cli.main(["fake", "act", "--threads", "2"]) == 0
    warned = [line for line in capsys.readouterr().err.splitlines() if "busy" in line]
    assert len(warned) == 1 and warned[0].endswith("pass --threads 1 (or set threads: 1 in the config)")


TINY = {"recipe": "classification", "project_name": "tiny", "epochs": 1, "log_every": 2, "device": "cpu",
        "threads": 2, "schedule": {"warmup_steps": 1},
        "model": {"image_size": 16, "patch_size": 8, "in_channels": 3, "width": 8, "layers": 1, "heads": 2},
        "data": {"source": "shapes", "num_train": 32, "num_val": 16, "num_test": 16, "num_heldout": 8,
                 "batch_size": 16, "test_splits": ["test"]}}


def test_mie_train_threads_overrides_the_config_key(tmp_path, monkeypatch):
    seen = []
    forward = ClassificationTask.training_forward

    def recording(self, batch):
        seen.append(torch.get_num_threads())
        return forward(self, batch)

    monkeypatch.setattr(ClassificationTask, "training_forward", recording)
    config = tmp_path / "cfg.yaml"
    config.write_text(yaml.safe_dump({**TINY, "output_dir": str(tmp_path / "run")}), encoding="utf-8")
    torch.set_num_threads(2)
    assert cli.main(["train", str(config), "--threads", "1", "-q"]) == 0
    assert seen and set(seen) == {1}  # every training step ran on one thread, not the config's 2
