"""Issue 30 items 5 and 8: the same global flags on every subcommand and nested action (-v/-q/--threads/
--device, from mie.cli.args), defaults in every --help, and --device placing the models of the commands
that run one, over a run's own device key."""

from __future__ import annotations

import argparse
import io

import pytest
import torch
import yaml
from tests.tiny import train_tiny_run

from mie import cli
from mie.cli import main
from mie.training import device as device_module

NO_CUDA = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message of a machine without CUDA")


@pytest.fixture(autouse=True)
def _no_request(monkeypatch):
    """main() makes --device a process-wide request: none before a test, none left after it."""
    monkeypatch.setattr(device_module, "_requested", None)


def _parsers(name: str) -> list[tuple[str, argparse.ArgumentParser]]:
    """``(label, parser)`` of command ``name`` and of each of its nested actions."""
    parser = cli.build_parser(load=name)
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    child = sub.choices[name]
    found = [(name, child)]
    for action in child._actions:
        if isinstance(action, argparse._SubParsersAction):
            found += [(f"{name} {nested}", p) for nested, p in action.choices.items()]
    return found


BUILT = [name for name, command in cli.COMMANDS.items() if command.module is not None]


@pytest.mark.parametrize("name", BUILT)
def test_every_help_lists_the_global_flags_and_shows_defaults(name):
    for label, parser in _parsers(name):
        text = " ".join(parser.format_help().split())
        assert "global options (before or after the command):" in text, label
        for flag in ("-v, --verbose", "-q, --quiet", "--threads N", "--device D"):
            assert flag in text, (label, flag)
        formatter = parser._get_formatter()
        for action in parser._actions:  # every option with a meaningful default says it in its help line
            shown = action.default not in (None, False, argparse.SUPPRESS, []) and action.option_strings
            if shown and action.help is not argparse.SUPPRESS:
                assert "default" in formatter._get_help_string(action), (label, action.dest)


def test_generate_help_shows_its_sampling_defaults():
    (_, parser), = _parsers("generate")
    text = " ".join(parser.format_help().split())
    assert "0 = greedy, the same text every time (default: 0.7)" in text
    assert "--max-new-tokens N tokens to generate at most (default: 128)" in text


@pytest.mark.parametrize("argv", [["-v", "safety", "evaluate", "--methods", "rules", "-"],
                                  ["safety", "evaluate", "-v", "--methods", "rules", "-"],
                                  ["safety", "evaluate", "--methods", "rules", "-", "-v"]])
def test_a_global_flag_after_a_nested_action(argv, monkeypatch, capsys):
    monkeypatch.setattr("sys.stdin", io.StringIO("hello there\n"))
    assert main(argv) == 0
    assert capsys.readouterr().out.startswith("ok [")


def test_verbose_and_quiet_in_the_same_place_are_refused_but_either_side_may_be_given():
    with pytest.raises(SystemExit) as exit_:
        main(["doctor", "-v", "-q"])
    assert exit_.value.code == 2


@NO_CUDA
@pytest.mark.parametrize("argv", [["--device", "cuda", "models"], ["models", "--device", "cuda:0"]])
def test_an_absent_device_is_one_line_before_any_work(argv, capsys):
    assert main(argv) == 1
    device = argv[argv.index("--device") + 1]
    assert capsys.readouterr().err == (f"mie models: error: --device: '{device}' but CUDA is not available — "
                                       "use --device auto or cpu\n")


def test_a_device_that_is_no_device_is_one_line(capsys):
    assert main(["models", "--device", "gpu0"]) == 1
    assert capsys.readouterr().err == "mie models: error: --device: 'gpu0' is not a device — use auto, cpu, cuda, cuda:N or mps\n"


def test_generate_places_its_model_on_the_device(monkeypatch, capsys):
    from mie.cli import generate as generate_cli

    seen = []

    def load(name, **kwargs):
        seen.append(kwargs.get("device"))
        raise SystemExit(0)  # stop before generating: only the placement is checked here

    monkeypatch.setattr(generate_cli, "load_language_model", load)
    with pytest.raises(SystemExit):
        main(["generate", "--model", "x", "--prompt", "hi", "--device", "cpu"])
    assert seen == [torch.device("cpu")]


@NO_CUDA
def test_device_wins_over_a_runs_device_key(tmp_path, capsys):
    """A run saved with device: cuda cannot be searched on this machine, unless --device says cpu."""
    run = train_tiny_run(tmp_path)
    config = yaml.safe_load((run / "config.yaml").read_text())
    (run / "config.yaml").write_text(yaml.safe_dump({**config, "device": "cuda"}))
    assert main(["search", str(run), "a red circle", "--k", "2"]) == 1
    assert capsys.readouterr().err == ("mie search: error: device: 'cuda' but CUDA is not available — use "
                                       "device=auto or cpu\n")
    assert main(["search", str(run), "a red circle", "--k", "2", "--device", "cpu"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 2
    assert main(["--device", "cpu", "eval", str(run)]) == 0


def test_a_later_main_call_without_the_flags_withdraws_them(capsys):
    """--threads / --device apply to their own command: a later main() in the same process (a notebook,
    the test suite) without them is back to the configs' own keys."""
    from mie.training import threads as threads_module

    before = torch.get_num_threads()
    try:
        assert main(["models", "--threads", "1", "--device", "cpu"]) == 0
        assert threads_module.requested_threads() == 1 and device_module._requested == "cpu"
        assert main(["models"]) == 0
        assert threads_module.requested_threads() is None and device_module._requested is None
    finally:
        torch.set_num_threads(before)
