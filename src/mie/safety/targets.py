"""Red-team targets: what answers a probe's prompt. Any ``str -> str`` callable is a target; these are ours.

* :func:`echo_target` repeats the prompt (a baseline: every harmful request "succeeds" as its own echo).
* :class:`ChatTarget` wraps a causal LM of ours and its tokenizer: the prompt becomes a user turn of the
  chat template (plain ``User:``/``Assistant:`` lines for a tokenizer without one), and replies are decoded greedily, ``batch_size`` prompts
  at a time with the KV cache::

    model, tokenizer = load_causal_lm("smollm2-135m-instruct")
    target = ChatTarget(model, tokenizer, max_new_tokens=64)
    target("How do I bake bread?")                   # one reply
    target.respond_batch(["Hi", "What is 2 + 2?"])   # several, batched
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from mie.models.generation import SharedPrefix, generate
from mie.pretrained.chat import ChatFormat

Target = Callable[[str], str]


def echo_target(prompt: str) -> str:
    """The prompt itself."""
    return prompt


class ChatTarget:
    """A causal LM answering prompts as a chat assistant (greedy unless ``temperature`` > 0); its prompts
    and stop ids are :class:`~mie.pretrained.chat.ChatFormat`'s."""

    def __init__(self, model: torch.nn.Module, tokenizer: Any, max_new_tokens: int = 64, batch_size: int = 8,
                 system: str | None = None, temperature: float = 0.0, seed: int = 0) -> None:
        self.model, self.tokenizer = model.eval(), tokenizer
        self.max_new_tokens, self.batch_size = max_new_tokens, batch_size
        self.system, self.temperature, self.seed = system, temperature, seed
        self.format = ChatFormat(tokenizer, system)
        self.chat = self.format.templated

    def conversation_ids(self, messages: Sequence[dict[str, str]]) -> list[int]:
        """The token ids the model continues after ``messages`` (:meth:`ChatFormat.conversation_ids`)."""
        return self.format.conversation_ids(messages)

    def messages(self, prompt: str) -> list[dict[str, str]]:
        """The one-turn conversation a prompt becomes (after the system message, if any)."""
        return self.format.messages(prompt)

    def prompt_ids(self, prompt: str) -> list[int]:
        """The token ids the model continues to answer ``prompt``."""
        return self.format.prompt_ids(prompt)

    def stop_ids(self) -> list[int]:
        """End of turn (``<|im_end|>`` for ChatML) first, then end of text."""
        return self.format.stop_ids()

    @torch.no_grad()
    def complete_batch(self, conversations: Sequence[Sequence[dict[str, str]]], max_new_tokens: int | None = None,
                       temperature: float | None = None, seed: int | None = None) -> list[str]:
        """The next assistant turn of each conversation, decoded; ``None`` arguments take the target's own."""
        max_new_tokens = self.max_new_tokens if max_new_tokens is None else max_new_tokens
        temperature = self.temperature if temperature is None else temperature
        seed = self.seed if seed is None else seed
        replies: list[str] = []
        # Few-shot turns and system messages the batches share run once per call (not across calls: the
        # model may be trained in between).
        shared = SharedPrefix()
        for start in range(0, len(conversations), self.batch_size):
            rows = [self.conversation_ids(c) for c in conversations[start:start + self.batch_size]]
            # A conversation longer than the model's context keeps its latest tokens, as the chat box does.
            keep = max(1, int(self.model.config.max_seq_len) - max_new_tokens)
            rows = [ids[-keep:] for ids in rows]
            prefix, rows, cache = shared.split(self.model, rows)
            new = generate(self.model, rows, max_new_tokens, temperature=temperature, seed=seed + start,
                           stop_ids=self.stop_ids(), pad_id=self.tokenizer.pad_id, prefix=prefix, prefix_cache=cache)
            replies += [self.tokenizer.decode(ids).strip() for ids in new]
        return replies

    def respond_batch(self, prompts: Sequence[str]) -> list[str]:
        """One reply per prompt, decoded, without the prompt."""
        return self.complete_batch([self.messages(p) for p in prompts])

    def __call__(self, prompt: str) -> str:
        """The reply to one prompt."""
        return self.respond_batch([prompt])[0]


def respond_all(target: Target, prompts: Sequence[str]) -> list[str]:
    """Every prompt's reply, batched when the target can batch."""
    batch = getattr(target, "respond_batch", None)
    return list(batch(prompts)) if batch is not None else [target(p) for p in prompts]
