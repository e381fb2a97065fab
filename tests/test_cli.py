"""The `mie` command: help, version, dispatch through COMMANDS, errors, logging (mie.cli)."""

import errno
import json
import logging
import subprocess
import sys
import types
import warnings

import pytest

from mie import __version__, cli
from mie.config import ConfigError
from mie.errors import StorageError


@pytest.fixture(autouse=True)
def _restore_mie_logger():
    """main() configures the 'mie' logger; put it back so other tests' log capture is unaffected."""
    log = logging.getLogger("mie")
    level, handlers = log.level, list(log.handlers)
    yield
    log.setLevel(level)
    log.handlers[:] = handlers


@pytest.fixture
def fake_command(monkeypatch):
    """Register a subcommand 'fake' backed by an in-memory module whose run() does what a test asks."""
    module = types.ModuleType("mie_fake_command")
    calls = []

    def add_arguments(parser):
        parser.add_argument("--mode", default="ok")
        parser.add_argument("--count", type=int, default=1)

    def run(args):
        calls.append(args)
        log = logging.getLogger("mie.fake")
        log.debug("debug line")
        log.info("info line")
        log.warning("warning line")
        errors = {"value": ValueError("bad value\nsecond line"), "config": ConfigError("model.x: got 1"),
                  "missing": FileNotFoundError("no such file 'a.yaml'"), "type": TypeError("a bug"),
                  "full": OSError(errno.ENOSPC, "No space left on device", "runs/x/last_state.pt"),
                  "readonly": OSError(errno.EROFS, "Read-only file system", "/ro/out"),
                  "storage": StorageError("disk full", where="runs/x", fix="free space")}
        if args.mode == "warn":
            warnings.warn("lower warmup_steps", stacklevel=1)
        if args.mode in errors:
            raise errors[args.mode]
        return None if args.mode == "none" else args.count

    module.add_arguments, module.run = add_arguments, run
    monkeypatch.setitem(sys.modules, "mie_fake_command", module)
    monkeypatch.setitem(cli.COMMANDS, "fake", cli.Command("a test command", "mie_fake_command"))
    return calls


def test_help_lists_every_subcommand(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    for name in ["train", "eval", "demo", "data", "tokenizer", "safety", "optimize", "doctor", "metadata"]:
        assert name in cli.COMMANDS
        assert f"    {name} " in out  # listed with its help line
    assert "--verbose" in out and "--quiet" in out


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.strip() == f"mie {__version__}"


def test_not_built_subcommands_exit_2(monkeypatch, capsys):
    name = "later"  # every listed command is built now (optimize came last); a command without a module is not
    monkeypatch.setitem(cli.COMMANDS, name, cli.Command("a command to come"))
    assert cli.main([name, "--anything"]) == 2
    assert capsys.readouterr().err.strip() == f"mie {name}: not built yet (see the issue tracker)"


def test_tokenizer_subcommand_is_wired(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["tokenizer", "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: mie tokenizer") and "encode" in out


def test_missing_command_module_counts_as_not_built(monkeypatch, capsys):
    monkeypatch.setitem(cli.COMMANDS, "ghost", cli.Command("x", "mie.no_such_module_xyz"))
    assert cli.main(["ghost"]) == 2
    assert "mie ghost: not built yet" in capsys.readouterr().err


def test_missing_dependency_inside_a_command_module_is_not_hidden(monkeypatch):
    def broken_import(name):
        raise ModuleNotFoundError("No module named 'somedep'", name="somedep")

    monkeypatch.setattr(cli.importlib, "import_module", broken_import)
    monkeypatch.setitem(cli.COMMANDS, "broken", cli.Command("x", "mie.broken"))
    with pytest.raises(ModuleNotFoundError, match="somedep"):
        cli.main(["broken"])


def test_no_command_prints_help_and_exits_2(capsys):
    assert cli.main([]) == 2
    assert "usage: mie" in capsys.readouterr().err


def test_unknown_command_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["frobnicate"])
    assert exit_.value.code == 2
    assert "invalid choice: 'frobnicate'" in capsys.readouterr().err


def test_dispatch_parses_the_commands_own_arguments(fake_command):
    assert cli.main(["fake", "--count", "7"]) == 7
    assert fake_command[0].command == "fake" and fake_command[0].count == 7
    assert cli.main(["fake", "--mode", "none"]) == 0  # run() returning None means success


@pytest.mark.parametrize(
    "mode, message",
    [
        ("value", "mie fake: error: bad value second line"),
        ("config", "mie fake: error: model.x: got 1"),
        ("missing", "mie fake: error: no such file 'a.yaml'"),
    ],
)
def test_known_errors_print_one_line_and_exit_1(fake_command, capsys, mode, message):
    assert cli.main(["fake", "--mode", mode]) == 1
    err = capsys.readouterr().err
    assert err.strip().splitlines()[-1] == message
    assert "Traceback" not in err


def test_verbose_errors_show_the_traceback(fake_command, capsys):
    assert cli.main(["-v", "fake", "--mode", "value"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and err.strip().endswith("mie fake: error: bad value second line")


def test_other_exceptions_are_bugs_reported_in_one_line(fake_command, capsys):
    assert cli.main(["fake", "--mode", "type"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == ("mie fake: error: unexpected TypeError: a bug — this is a bug in mie; "
                       "rerun with -v for the traceback and report it")
    assert cli.main(["fake", "-v", "--mode", "type"]) == 1
    assert "Traceback (most recent call last)" in capsys.readouterr().err


@pytest.mark.parametrize("mode, line", [
    ("full", "runs/x/last_state.pt: no space left on the device — free some space or choose another output_dir"),
    ("readonly", "/ro/out: the file system is read-only — choose a writable output_dir"),
    ("storage", "runs/x: disk full — free space"),
])
def test_disk_errors_name_the_path_and_the_fix(fake_command, capsys, mode, line):
    assert cli.main(["fake", "--mode", mode]) == 1
    err = capsys.readouterr().err
    assert err.strip().splitlines()[-1] == f"mie fake: error: {line}"
    assert "Traceback" not in err


@pytest.mark.parametrize(
    "flags, shown, hidden",
    [
        ([], ["info line", "warning line"], ["debug line"]),
        (["-v"], ["debug line", "info line"], []),
        (["-q"], ["warning line"], ["info line", "debug line"]),
    ],
)
def test_verbosity_sets_one_logging_configuration(fake_command, capsys, flags, shown, hidden):
    assert cli.main([*flags, "fake"]) == 1
    assert cli.main(["fake", *flags]) == 1  # flags also work after the subcommand
    err = capsys.readouterr().err
    for text in shown:
        assert err.count(text) == 2  # once per call: the second set-up replaced the first handler
    for text in hidden:
        assert text not in err
    if "info line" in shown:  # the one format: time, padded level, logger name, message
        assert "INFO    mie.fake: info line" in err
    handlers = [h for h in logging.getLogger("mie").handlers if isinstance(h, cli._StderrHandler)]
    assert len(handlers) == 1


def test_verbose_and_quiet_together_are_rejected():
    with pytest.raises(SystemExit) as exit_:
        cli.main(["-v", "-q", "doctor"])
    assert exit_.value.code == 2


def test_doctor_json_is_valid_json(capsys):
    assert cli.main(["doctor", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["mie"] == __version__
    assert report["python"]["version"] == ".".join(map(str, sys.version_info[:3]))
    assert report["torch"]["sdpa"]["cpu"]["math"] is True


def test_metadata_error_on_missing_path(tmp_path, capsys):
    assert cli.main(["metadata", str(tmp_path / "nope")]) == 1
    assert capsys.readouterr().err.strip().startswith("mie metadata: error: path ")


def test_python_dash_m_mie_runs_in_a_subprocess():
    result = subprocess.run([sys.executable, "-m", "mie", "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "metadata" in result.stdout and "doctor" in result.stdout


def test_building_the_parser_imports_neither_torch_nor_numpy():
    code = (
        "import sys\n"
        "from mie import cli\n"
        "cli.build_parser().format_help()\n"
        "heavy = sorted(m for m in ('torch', 'numpy') if m in sys.modules)\n"
        "print(','.join(heavy) or 'none')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "none"


def test_python_warnings_are_one_log_line_without_source(fake_command, capsys):
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        assert cli.main(["fake", "--mode", "warn"]) == 1
        err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if "lower warmup_steps" in line]
    assert len(lines) == 1 and "WARNING mie.warnings: lower warmup_steps" in lines[0]
    assert "warnings.warn(" not in err  # the source line is not quoted
