"""The ``mie`` command: parses arguments and dispatches to the module that owns each subcommand.

Adding a subcommand is one line in ``COMMANDS``: the module is imported only when its subcommand
runs, so ``mie --help`` stays fast (no torch or numpy import here). A module exposes an
``add_arguments(parser)`` function and a ``run(args) -> int`` function (other names may be given in
the table, e.g. ``mie.cli.train`` holds train, eval and demo).

This package is the application's thin edge: its modules (``mie.cli.data``, ``mie.cli.tokenizer``)
parse arguments and print; the work is done by library functions, which never import ``mie.cli``.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
import traceback
import warnings
from collections.abc import Callable, Sequence
from typing import NamedTuple

from mie import __version__
from mie.cli.args import (
    VALUE_FLAGS,
    HelpFormatter,
    add_global_options,
    check_device,
    nested_parsers,
    show_defaults,
)
from mie.errors import ConfigError, error_line  # error_line lives in mie.errors; importable from here too

LOG_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
logger = logging.getLogger("mie")


class Command(NamedTuple):
    """Where a subcommand lives: ``module`` (None = not built yet) and its two entry points."""

    help: str
    module: str | None = None
    add_arguments: str = "add_arguments"
    run: str = "run"


COMMANDS: dict[str, Command] = {
    "train": Command("train a model from a YAML config", "mie.cli.train", "add_train_arguments", "run_train"),
    "eval": Command("re-score a finished run (best or last checkpoint, any split or dataset) against its report",
                    "mie.cli.train", "add_eval_arguments", "run_eval"),
    "demo": Command("train and evaluate the small demo end to end", "mie.cli.train",
                    "add_demo_arguments", "run_demo"),
    "data": Command("inspect datasets (format, counts, broken files); convert them to WebDataset shards",
                    "mie.cli.data"),
    "tokenizer": Command("train, inspect and apply BPE tokenizers", "mie.cli.tokenizer"),
    "embed": Command("write a finished run's image and caption embeddings of a split to a safetensors file",
                     "mie.cli.embed", "add_embed_arguments", "run_embed"),
    "search": Command("rank images by a text query with a finished run (--sheet draws them)", "mie.cli.embed",
                      "add_search_arguments", "run_search"),
    "generate": Command("generate text with a causal LM (a pretrained name or an lm run)", "mie.cli.generate"),
    "translate": Command("translate text with a finished seq2seq run (greedy or beam search)", "mie.cli.translate"),
    "safety": Command("run the safety evaluator, filter and red-team suites", "mie.cli.safety"),
    "serve": Command("a local web app over a run: text-to-image search, captions, report, chat, safety",
                     "mie.cli.serve"),
    "optimize": Command("quantize, prune, benchmark and profile a run or a pretrained LM", "mie.cli.optimize"),
    "explain": Command("explain what a run's model sees: heat maps, token attributions, attention, embedding views",
                       "mie.cli.explain"),
    "models": Command("list the pretrained models: installed or not, size on disk, how to install them",
                      "mie.cli.models"),
    "doctor": Command("report the machine, packages and accelerators", "mie.tools.doctor"),
    "metadata": Command("describe Python sources (classes, functions, docstrings) via ast", "mie.tools.metadata"),
}

EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_BROKEN_PIPE = 141  # what a shell reports for a filter stopped by SIGPIPE


class _StderrHandler(logging.StreamHandler):
    """A stream handler that writes to whatever ``sys.stderr`` is when a record is emitted.

    Test runners swap ``sys.stderr`` per test; holding the stream of the first call would write to a
    closed file later.
    """

    @property
    def stream(self):  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


def configure_logging(verbose: int = 0, quiet: bool = False) -> None:
    """One logging set-up for every ``mie.*`` logger: a stderr handler, one format, a level.

    ``-v`` shows DEBUG, ``-q`` only WARNING and above, neither INFO. Calling it again replaces the
    previous set-up rather than stacking handlers.
    """
    level = logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO
    for handler in [h for h in logger.handlers if isinstance(h, _StderrHandler)]:
        logger.removeHandler(handler)
    handler = _StderrHandler()
    handler.setFormatter(logging.Formatter(LOG_FORMAT, datefmt="%H:%M:%S"))
    logger.addHandler(handler)
    logger.setLevel(level)
    warnings.showwarning = _warning_to_log


def _warning_to_log(message, category, filename, lineno, file=None, line=None) -> None:  # noqa: ANN001
    """Python warnings become one log line of the warning's module (no source line quoted)."""
    module = filename.replace("\\", "/").rsplit("/src/", 1)[-1].removesuffix(".py").replace("/", ".")
    name = module if module.startswith("mie.") else "mie.warnings"
    logging.getLogger(name).warning("%s", message)


def _entry_point(command: Command, attr: str) -> Callable | None:
    """The function ``attr`` of the command's module, or None when the module is not built yet."""
    if command.module is None:
        return None
    try:
        module = importlib.import_module(command.module)
    except ModuleNotFoundError as exc:
        # Only a missing command module means "not built"; a missing dependency inside it is a real error.
        if exc.name and (command.module == exc.name or command.module.startswith(exc.name + ".")):
            return None
        raise
    return getattr(module, attr, None)


def build_parser(load: str | None = None) -> argparse.ArgumentParser:
    """The ``mie`` parser; only subcommand ``load`` (if any) gets its own arguments, by importing its module."""
    parser = argparse.ArgumentParser(
        prog="mie",
        description="MultiModal Insight Engine: build, train, evaluate and safety-check transformer models.",
        formatter_class=HelpFormatter,
    )
    add_global_options(parser, in_subcommand=False)
    parser.add_argument("--version", action="version", version=f"mie {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")
    for name, command in COMMANDS.items():
        shown = command.help if command.module is not None else f"{command.help} (not built yet)"
        child = sub.add_parser(name, help=shown, description=shown, formatter_class=HelpFormatter)
        if name == load:
            add_arguments = _entry_point(command, command.add_arguments)
            if add_arguments is not None:
                add_arguments(child)
                for nested in nested_parsers(child):  # and after an action: `mie safety evaluate -v -`
                    add_global_options(nested)
                for each in [child, *nested_parsers(child)]:
                    show_defaults(each)
        add_global_options(child)
    return parser


def _chosen_command(argv: Sequence[str]) -> str | None:
    """The subcommand named in ``argv``: the first token that is not a global option (or its value)."""
    tokens = iter(argv)
    for token in tokens:
        if token in VALUE_FLAGS:
            next(tokens, None)
        elif not token.startswith("-"):
            return token if token in COMMANDS else None
    return None


def check_arguments(argv: Sequence[str]) -> None:
    """Refuse an argument that is not valid UTF-8, before any module loads.

    Python decodes command-line bytes with ``surrogateescape``, so ``\\xff`` arrives as the lone
    surrogate ``\\udcff``, which no file name, prompt or query may hold and no output can print.
    """
    for position, arg in enumerate(argv, start=1):
        try:
            arg.encode("utf-8")
        except UnicodeEncodeError as exc:
            before = argv[position - 2] if position > 1 else ""
            flag = f" ({before})" if before.startswith("-") and not arg.startswith("-") else ""
            offset = len(arg[:exc.start].encode("utf-8"))  # the bytes before the first bad one
            try:  # the bytes as given (a surrogate that is no escaped byte is shown as \udXXX)
                raw = arg.encode("utf-8", "surrogateescape")
            except UnicodeEncodeError:
                raw = arg.encode("utf-8", "backslashreplace")
            shown = raw[max(0, offset - 20):offset + 20].decode("utf-8", "backslashreplace")
            raise ConfigError(f"argument {position}{flag} is not valid UTF-8 (byte {offset}: {shown})",
                              fix="pass UTF-8 text; check the encoding of the terminal or script") from None


# The widest integer a flag may hold: torch and NumPy take seeds and sizes as 64-bit integers.
MAX_INT = 2**63 - 1


def check_int_options(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Refuse integers that no 64-bit field can hold (``--seed 2**70``) with one line naming the flag."""
    names = {action.dest: (action.option_strings or [action.dest])[-1] for action in _all_actions(parser)}
    for dest, value in vars(args).items():
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, int) and not isinstance(item, bool) and not -MAX_INT - 1 <= item <= MAX_INT:
                raise ConfigError(f"{item} is out of range", where=names.get(dest, dest),
                                  fix="use a whole number between -2**63 and 2**63 - 1")


def _all_actions(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    """Every action of ``parser`` and of its sub-parsers (argparse keeps them in ``_actions``)."""
    found, todo = [], [parser]
    while todo:
        current = todo.pop()
        for action in current._actions:
            found.append(action)
            if isinstance(action, argparse._SubParsersAction):
                todo.extend(action.choices.values())
    return found


def _apply_threads(threads: int | None) -> None:
    """``--threads N``: torch's threads for this process, over any config's ``threads:`` key (torch is
    imported only when the option is given, so ``mie --help`` and option-less commands stay light)."""
    if threads is not None:
        from mie.training.threads import request_threads

        request_threads(threads, where="--threads")
    elif "mie.training.threads" in sys.modules:  # an earlier main() in this process (tests, notebooks) asked
        sys.modules["mie.training.threads"].request_threads(None)


def _apply_device(device: str | None) -> None:
    """``--device D``: where this command's models run, over any config's ``device:`` key (torch is
    imported only when the option is given)."""
    if check_device(device) is not None:
        from mie.training.device import request_device

        request_device(device)
    elif "mie.training.device" in sys.modules:  # withdraw an earlier main()'s --device in this process
        sys.modules["mie.training.device"].request_device(None)


def _prefix(name: str | None) -> str:
    return f"mie {name}" if name else "mie"


def _stdout_never_fails() -> None:
    """Text that the terminal's encoding cannot show is printed escaped (``\\udcff``), never an error."""
    reconfigure = getattr(sys.stdout, "reconfigure", None)
    if reconfigure is not None:
        reconfigure(errors="backslashreplace")


def _quiet_broken_pipe() -> int:
    """``mie ... | head -1``: the reader left; stop without a word, like any Unix filter."""
    try:  # later writes (and the flush at exit) go nowhere instead of raising again
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except (OSError, ValueError):  # a stream without a file descriptor (a test's capture)
        pass
    return EXIT_BROKEN_PIPE


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``mie`` console script; returns the process exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    name = _chosen_command(argv)
    try:
        check_arguments(argv)
    except ConfigError as exc:
        print(f"{_prefix(name)}: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    run = None if name is None else _entry_point(COMMANDS[name], COMMANDS[name].run)
    if name is not None and run is None:
        print(f"mie {name}: not built yet (see the issue tracker)", file=sys.stderr)
        return EXIT_USAGE
    parser = build_parser(load=name)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    configure_logging(verbose=args.verbose, quiet=args.quiet)
    _stdout_never_fails()
    try:
        check_int_options(parser, args)
        _apply_threads(args.threads)
        _apply_device(args.device)
        status = run(args)
        sys.stdout.flush()  # a closed pipe shows here, inside the handler, not at interpreter exit
    except KeyboardInterrupt as exc:  # a trainer says where it stopped and how to continue
        print(f"mie {name}: {exc or 'interrupted'}", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return _quiet_broken_pipe()
    except Exception as exc:  # noqa: BLE001 - the one place a user-facing error becomes one line
        if args.verbose:
            traceback.print_exc()
        print(f"mie {name}: error: {error_line(exc)}", file=sys.stderr)
        return EXIT_ERROR
    return 0 if status is None else int(status)


if __name__ == "__main__":
    raise SystemExit(main())
