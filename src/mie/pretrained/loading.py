"""A language model by what names it: a pretrained model's name or a finished ``lm`` run's folder.

>>> model, tokenizer = load_language_model("smollm2-135m-instruct")  # doctest: +SKIP
>>> model, tokenizer = load_language_model("runs/my_lm", checkpoint="last")  # doctest: +SKIP

The one place that turns a name into ``(CausalLM, tokenizer)``: ``mie generate``, ``mie serve``, ``mie
safety``, an lm run's ``init:`` and the cai base model all call it. A chat model's tokenizer carries its
chat template (``tokenizer.chat_template``; :class:`~mie.pretrained.chat.ChatFormat` builds the prompts).

An lm run is read with library code only (the recipes write the layout of :mod:`mie.io.run_files`):
its ``config.yaml``'s ``model`` section is loaded through :mod:`mie.config`, so the same size checks
(``CausalLMConfig.check_limits``, :mod:`mie.models.budget`) refuse an oversized run before anything is
built; then ``tokenizer.json`` (with ``chat_template.jinja`` when there is one) and the checkpoint.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from mie.config import config_from_dict, read_yaml
from mie.errors import ConfigError
from mie.io.run_files import CHAT_TEMPLATE_FILE, TOKENIZER_FILE, load_run_weights, run_config_path
from mie.io.run_kind import check_run_kind
from mie.models.causal_lm import CausalLM, CausalLMConfig
from mie.tokenization.factory import load_any_tokenizer

LM_RECIPE = "lm"  # the recipe whose runs hold a CausalLM
log = logging.getLogger(__name__)


@dataclass
class LMRunModel:
    """The part of an lm run's ``config.yaml`` that builds its model (the rest is the trainer's)."""

    model: CausalLMConfig = field(default_factory=CausalLMConfig)


def lm_run_architecture(run_dir: str | Path, where: str = "--model") -> CausalLMConfig:
    """The ``model`` section of an lm run's ``config.yaml``, type- and size-checked (nothing is built).

    A run of another recipe, or a config past this machine's memory, is a one-line :class:`ConfigError`
    naming the file.
    """
    path = run_config_path(Path(run_dir))
    data = read_yaml(path)
    if not isinstance(data, Mapping):
        raise ConfigError(f"expected a mapping at the top level, got {type(data).__name__}", where=path,
                          fix="pass the folder of a finished lm run")
    check_run_kind(run_dir, LM_RECIPE, where=where)  # "runs/demo is a clip run (image-text), not a language-model run"
    try:
        return config_from_dict(LMRunModel, {"model": data["model"]} if "model" in data else {}).model
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def with_chat_template(tokenizer: Any, run_dir: str | Path) -> Any:
    """``tokenizer`` with the run's chat template (when the run has one), else unchanged."""
    path = Path(run_dir) / CHAT_TEMPLATE_FILE
    if not path.is_file():
        return tokenizer
    from mie.pretrained.chat import ChatTokenizer

    return ChatTokenizer.wrap(tokenizer, path.read_text(encoding="utf-8"))


def load_lm_run(run_dir: str | Path, checkpoint: str = "best",
                device: str | torch.device = "cpu", where: str = "--model") -> tuple[CausalLM, Any]:
    """``(model, tokenizer)`` of a finished lm run: its ``best`` (or ``last``) weights, in eval mode on ``device``;
    the tokenizer with the run's chat template when it has one."""
    run_dir = Path(run_dir)
    config = lm_run_architecture(run_dir, where)  # sized before the tokenizer or the weights are read
    tokenizer = with_chat_template(load_any_tokenizer(run_dir / TOKENIZER_FILE), run_dir)
    model = CausalLM(config)
    load_run_weights(model, run_dir, checkpoint)
    return model.to(device).eval(), tokenizer


def load_language_model(source: str | Path, checkpoint: str = "best", where: str = "--model",
                        device: str | torch.device = "cpu") -> tuple[CausalLM, Any]:
    """``(model, tokenizer)`` of ``source``: a finished lm run's folder, else a pretrained model's name
    (:data:`mie.pretrained.MODELS`). Anything else is a one-line :class:`ConfigError` at ``where`` (the
    flag or config key that named it)."""
    if Path(source).is_dir():
        return load_lm_run(source, checkpoint, device, where)
    from mie.pretrained.registry import MODELS, load_causal_lm

    name = str(source)
    if name not in MODELS:
        raise ConfigError(f"unknown model {name!r} (no pretrained model and no folder has this name)", where=where,
                          fix=f"use one of {', '.join(sorted(MODELS))} or the folder of a finished lm run")
    # said before the wait of every command that names a pretrained model (generate, serve, judge, redteam, cai)
    log.info("loading %s (the first load converts and caches it, about 20 s for SmolLM2; later ones about 1 s)",
             name)
    return load_causal_lm(name, device=device)  # type: ignore[return-value]
