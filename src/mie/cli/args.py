"""What every ``mie`` subcommand shares, defined once: the global flags, the help format, argument types.

Global flags (:func:`global_options`): ``-v``/``-q``, ``--threads N`` and ``--device D`` are accepted before
the subcommand, after it and after a nested action (``mie safety evaluate -v -``); ``build_parser`` gives
them to every subparser, nested ones included, so no command defines its own. Every ``--help`` shows the
defaults (:class:`HelpFormatter`).

``--seed``: ``parser.add_argument("--seed", type=seed)`` takes a whole number; :func:`check_seed` (called
by the command before anything is loaded) refuses one outside ``0 .. 2**63 - 1`` in one line, as a
:class:`~mie.errors.ConfigError`: argparse's own errors print a usage block and exit 2.
"""

from __future__ import annotations

import argparse
import re

from mie.errors import ConfigError

MAX_SEED = 2**63 - 1  # torch and NumPy seed from a 64-bit integer
_WHOLE = re.compile(r"[+-]?\d{1,40}")  # 40 digits: past any seed, short of int()'s own digit limit
DEVICE_PATTERN = re.compile(r"auto|cpu|mps|cuda(:\d{1,3})?")  # the config's device key takes the same
#: the global flags that take a value (so the subcommand's name is the first token that is not one of them)
VALUE_FLAGS = ("--threads", "--device")
GLOBAL_TITLE = "global options (before or after the command)"


class HelpFormatter(argparse.HelpFormatter):
    """argparse's formatter plus ``(default: X)`` after every option whose help does not name its default.

    Unlike :class:`argparse.ArgumentDefaultsHelpFormatter` it leaves out defaults that say nothing
    (None, False, an empty list), so ``--chat`` does not read ``(default: False)``.
    """

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if ("default" in text or "%(" in text or default is argparse.SUPPRESS or default is None or default is False
                or default == [] or not action.option_strings):
            return text
        return f"{text} (default: %(default)s)" if text else "default: %(default)s"


def add_global_options(parser: argparse.ArgumentParser, in_subcommand: bool = True) -> None:
    """Give ``parser`` the global flags, in their own help section, and the help format.

    After the subcommand (``in_subcommand``) they default to 'not given' (``argparse.SUPPRESS``), so a value
    given before it is not overwritten by the subparser's default. ``-v`` and ``-q`` exclude each other in
    the same parser (``mie -v -q doctor``); given on both sides of the subcommand, the one after it wins.
    """
    if not issubclass(parser.formatter_class, HelpFormatter):  # keep a subclass (an epilog of examples)
        parser.formatter_class = HelpFormatter
    unset = argparse.SUPPRESS if in_subcommand else None
    group = parser.add_argument_group(GLOBAL_TITLE)
    verbosity = group.add_mutually_exclusive_group()
    verbosity.add_argument("-v", "--verbose", action="count", default=argparse.SUPPRESS if in_subcommand else 0,
                           help="more output: DEBUG logs, a traceback on errors (default: INFO logs)")
    verbosity.add_argument("-q", "--quiet", action="store_true",
                           default=argparse.SUPPRESS if in_subcommand else False,
                           help="only warnings and errors (default: off)")
    group.add_argument("--threads", type=int, metavar="N", default=unset,
                       help="torch's CPU threads: 0 = one per core, 1 on a machine shared with other jobs "
                            "(default: the config's threads key, else 0)")
    group.add_argument("--device", metavar="D", default=unset,
                       help="where models run: auto (CUDA, then MPS, then the CPU), cpu, cuda, cuda:N or mps; "
                            "wins over a config's device key (default: the config's device key, else auto)")


def show_defaults(parser: argparse.ArgumentParser) -> None:
    """Give every option of ``parser`` that has a default but no help a help line naming that default
    (argparse prints no help line, hence no default, for an option without help)."""
    for action in parser._actions:
        meaningful = action.default not in (None, False, argparse.SUPPRESS) and action.default != []
        if action.option_strings and action.help is None and meaningful:
            action.help = "default: %(default)s"


def nested_parsers(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    """Every parser under ``parser``'s subparsers, at any depth (``safety`` -> ``evaluate``, ...)."""
    found, todo = [], [parser]
    while todo:
        current = todo.pop()
        for action in current._actions:
            if isinstance(action, argparse._SubParsersAction):
                children = list(action.choices.values())
                found.extend(children)
                todo.extend(children)
    return found


def check_device(spec: str | None, where: str = "--device") -> str | None:
    """``spec`` if it names a device kind (its presence is checked when a model is placed), else one line."""
    if spec is not None and not DEVICE_PATTERN.fullmatch(spec):
        raise ConfigError(f"{spec[:40]!r} is not a device", where=where, fix="use auto, cpu, cuda, cuda:N or mps")
    return spec


def model_device(args: argparse.Namespace, default: str = "auto"):  # noqa: ANN201 - torch loads lazily
    """The ``torch.device`` a command's model goes to: ``--device`` when given, else ``default`` (a
    ``--device`` given to :func:`mie.cli.main` is also a process-wide request, which wins anyway)."""
    from mie.training.device import resolve_device

    return resolve_device(getattr(args, "device", None) or default)


def seed(text: str) -> int:
    """argparse type of every ``--seed``: a whole number (its range is checked by :func:`check_seed`)."""
    if not _WHOLE.fullmatch(text.strip()):
        raise argparse.ArgumentTypeError(f"{text[:40]!r} is not a whole number (use 0 to {MAX_SEED})")
    return int(text)


def check_seed(value: int | None, flag: str = "--seed") -> None:
    """Refuse a seed outside ``0 .. 2**63 - 1`` in one line naming the flag (None = no seed given)."""
    if value is not None and not 0 <= value <= MAX_SEED:
        raise ConfigError(f"{value} is out of range", where=flag, fix=f"use a whole number from 0 to {MAX_SEED}")
