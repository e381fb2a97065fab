"""``mie generate``: text from a causal LM — a pretrained one by name, or a finished ``lm`` run.

Tokens are streamed to stdout as they come (a multi-byte character is printed once complete).
``--temperature 0`` is greedy; ``--seed`` makes sampling reproducible; ``--chat`` wraps the prompt
in the model's chat template and stops at its end-of-turn token.
"""

from __future__ import annotations

import argparse
import sys

from mie.cli.args import check_seed, model_device, seed
from mie.errors import ConfigError
from mie.models.budget import BOUNDS
from mie.pretrained.loading import load_language_model
from mie.tokenization.streaming import TokenPrinter


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``mie generate`` (every default is shown by ``--help``)."""
    parser.add_argument("--model", required=True,
                        help="a pretrained model name (e.g. smollm2-135m-instruct; `mie models` lists them) or an "
                             "lm run directory")
    parser.add_argument("--prompt", required=True, help="the text to continue (or the user message with --chat)")
    parser.add_argument("--chat", action="store_true", help="apply the model's chat template to the prompt")
    parser.add_argument("--system", default=None, help="a system message for --chat")
    parser.add_argument("--max-new-tokens", type=int, default=128, metavar="N", help="tokens to generate at most")
    parser.add_argument("--temperature", type=float, default=0.7, metavar="T",
                        help="sampling temperature; 0 = greedy, the same text every time")
    parser.add_argument("--top-k", type=int, default=0, metavar="K", help="sample from the K likeliest tokens; 0 = off")
    parser.add_argument("--top-p", type=float, default=1.0, metavar="P", help="nucleus sampling; 1 = off")
    parser.add_argument("--repetition-penalty", type=float, default=1.0, metavar="R", help="1 = off")
    parser.add_argument("--seed", type=seed, default=None, help="seed of the sampler, 0 to 2**63-1 (default: random)")


def _check(args: argparse.Namespace) -> None:
    checks = [(args.max_new_tokens >= 1, "--max-new-tokens", "at least 1"),
              (args.temperature >= 0, "--temperature", ">= 0"), (args.top_k >= 0, "--top-k", ">= 0"),
              (0 < args.top_p <= 1, "--top-p", "in (0, 1]"), (args.repetition_penalty > 0, "--repetition-penalty", "> 0")]
    for ok, key, allowed in checks:
        if not ok:
            raise ConfigError(f"must be {allowed}", where=key)
    check_seed(args.seed)
    context = BOUNDS["context"]  # no model has a longer context: refused before one is loaded
    if args.max_new_tokens >= context:
        raise ConfigError(f"{args.max_new_tokens:,} is more than any model's context ({context:,} tokens)",
                          where="--max-new-tokens", fix="ask for fewer new tokens (the model's context bounds them)")


def run(args: argparse.Namespace) -> int:
    """Load the model, build the prompt, stream the generated text."""
    import torch

    from mie.models.generation import check_generation, generate
    from mie.pretrained.chat import ChatFormat

    _check(args)
    model, tokenizer = load_language_model(args.model, device=model_device(args))
    if args.chat:
        chat = ChatFormat(tokenizer, system=args.system)
        if not chat.templated:
            raise ConfigError("this model has no chat template", where="--chat", fix="drop --chat")
        ids, stop_ids = chat.prompt_ids(args.prompt), chat.stop_ids()
    else:
        ids = tokenizer.encode(args.prompt)
        stop_ids = [i for i in (getattr(tokenizer, "eos_id", None),) if i is not None]
    if not ids:
        raise ConfigError("the prompt encodes to no tokens", where="--prompt", fix="give some text")
    # Before any cache is allocated: prompt and new tokens must fit the model's context, the cache the memory.
    check_generation(model.config, [len(ids)], args.max_new_tokens, next(model.parameters()).element_size(),
                     key="--max-new-tokens", prompt_key="--prompt")
    printer = TokenPrinter(tokenizer, sys.stdout)
    with torch.inference_mode():
        generate(model, [ids], max_new_tokens=args.max_new_tokens, temperature=args.temperature, top_k=args.top_k,
                 top_p=args.top_p, repetition_penalty=args.repetition_penalty, stop_ids=stop_ids,
                 seed=args.seed, pad_id=getattr(tokenizer, "pad_id", 0) or 0, on_token=printer)
    printer.finish()
    return 0
