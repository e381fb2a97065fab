"""Red-team targets: what answers a probe's prompt. Any ``str -> str`` callable is a target; these are ours.

* :func:`echo_target` repeats the prompt (a baseline: every harmful request "succeeds" as its own echo).
* :class:`ChatTarget` wraps a causal LM of ours and its tokenizer: the prompt becomes a user turn of the
  chat template (when the tokenizer has one), and replies are decoded greedily, ``batch_size`` prompts
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

from mie.models.generation import generate

Target = Callable[[str], str]


def echo_target(prompt: str) -> str:
    """The prompt itself."""
    return prompt


class ChatTarget:
    """A causal LM answering prompts as a chat assistant (greedy unless ``temperature`` > 0)."""

    def __init__(self, model: torch.nn.Module, tokenizer: Any, max_new_tokens: int = 64, batch_size: int = 8,
                 system: str | None = None, temperature: float = 0.0, seed: int = 0) -> None:
        self.model, self.tokenizer = model.eval(), tokenizer
        self.max_new_tokens, self.batch_size = max_new_tokens, batch_size
        self.system, self.temperature, self.seed = system, temperature, seed
        self.chat = hasattr(tokenizer, "apply_chat_template")

    def prompt_ids(self, prompt: str) -> list[int]:
        """The token ids the model continues: the chat template's assistant turn, or the bare prompt."""
        if not self.chat:
            return [self.tokenizer.bos_id, *self.tokenizer.encode(prompt)]
        messages = ([{"role": "system", "content": self.system}] if self.system else []) + \
            [{"role": "user", "content": prompt}]
        return self.tokenizer.encode(self.tokenizer.apply_chat_template(messages, add_generation_prompt=True))

    def stop_ids(self) -> list[int]:
        """End of turn (``<|im_end|>`` for ChatML) and end of text."""
        stops = {self.tokenizer.eos_id}
        if self.chat:
            ids = self.tokenizer.encode("<|im_end|>")
            if len(ids) == 1:
                stops.add(ids[0])
        return [s for s in stops if s is not None]

    @torch.no_grad()
    def respond_batch(self, prompts: Sequence[str]) -> list[str]:
        """One reply per prompt, decoded, without the prompt."""
        replies: list[str] = []
        for start in range(0, len(prompts), self.batch_size):
            rows = [self.prompt_ids(p) for p in prompts[start:start + self.batch_size]]
            new = generate(self.model, rows, self.max_new_tokens, temperature=self.temperature, seed=self.seed,
                           stop_ids=self.stop_ids(), pad_id=self.tokenizer.pad_id)
            replies += [self.tokenizer.decode(ids).strip() for ids in new]
        return replies

    def __call__(self, prompt: str) -> str:
        """The reply to one prompt."""
        return self.respond_batch([prompt])[0]


def respond_all(target: Target, prompts: Sequence[str]) -> list[str]:
    """Every prompt's reply, batched when the target can batch."""
    batch = getattr(target, "respond_batch", None)
    return list(batch(prompts)) if batch is not None else [target(p) for p in prompts]
