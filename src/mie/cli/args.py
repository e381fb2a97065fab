"""Argument types shared by the subcommands, defined once so that every flag of a kind refuses alike.

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


def seed(text: str) -> int:
    """argparse type of every ``--seed``: a whole number (its range is checked by :func:`check_seed`)."""
    if not _WHOLE.fullmatch(text.strip()):
        raise argparse.ArgumentTypeError(f"{text[:40]!r} is not a whole number (use 0 to {MAX_SEED})")
    return int(text)


def check_seed(value: int | None, flag: str = "--seed") -> None:
    """Refuse a seed outside ``0 .. 2**63 - 1`` in one line naming the flag (None = no seed given)."""
    if value is not None and not 0 <= value <= MAX_SEED:
        raise ConfigError(f"{value} is out of range", where=flag, fix=f"use a whole number from 0 to {MAX_SEED}")
