"""A pretrained model's tokenizer with its chat template: ChatML (``<|im_start|>role\\n...<|im_end|>\\n``),
and :class:`ChatFormat`, the one place a conversation becomes prompt ids and stop ids.

The template ships as Jinja text in the model's metadata. We run no template engine: the text is checked
to be the ChatML template family (SmolLM2, Qwen, ...) and its logic is implemented here, including the
default system message it inserts when the conversation does not start with one.

>>> tok.apply_chat_template([{"role": "user", "content": "Hi"}], add_generation_prompt=True)  # doctest: +SKIP
'<|im_start|>system\\nYou are a helpful AI assistant named SmolLM, ...<|im_end|>\\n<|im_start|>user\\nHi<|im_end|>\\n<|im_start|>assistant\\n'
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from mie.errors import ConfigError, TokenizerError
from mie.tokenization.tokenizer import BPETokenizer

IM_START, IM_END = "<|im_start|>", "<|im_end|>"
# The default system message sits in the template as a quoted literal: '<|im_start|>system\n...<|im_end|>\n'
_DEFAULT_SYSTEM = re.compile(r"""messages\[0\]\['role'\] != 'system' %\}\{\{ '<\|im_start\|>system\n(.*?)<\|im_end\|>""",
                             re.DOTALL)
# Qwen2.5's template writes it in an else-branch, with a Jinja "\\n" escape: one whole quoted literal
# '<|im_start|>system\\n<message><|im_end|>\\n' (a literal that stops at a quote is the system turn's start).
_QUOTED_SYSTEM = re.compile(r"""'<\|im_start\|>system(?:\n|\\n)([^'+]+?)<\|im_end\|>""")


def parse_chatml_template(template: str) -> str | None:
    """The default system message of a ChatML template (None when it has none).

    A template that is not ChatML is a TokenizerError: running it faithfully would need a Jinja engine.
    """
    if not isinstance(template, str) or IM_START not in template or IM_END not in template \
            or not any(f"message{r}" in template for r in ("['role']", ".role")) \
            or not any(f"message{c}" in template for c in ("['content']", ".content")):
        raise TokenizerError(f"the chat template is not ChatML ({str(template)[:60]!r}...)",
                             fix="only ChatML templates (<|im_start|>role ... <|im_end|>) are supported")
    found = _DEFAULT_SYSTEM.search(template) or _QUOTED_SYSTEM.search(template)
    return found.group(1) if found else None


class ChatTokenizer(BPETokenizer):
    """A :class:`BPETokenizer` that also formats conversations with a ChatML ``chat_template``."""

    def __init__(self, *args: Any, chat_template: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.chat_template = chat_template
        self.default_system = parse_chatml_template(chat_template)

    @classmethod
    def wrap(cls, tokenizer: BPETokenizer, chat_template: str) -> ChatTokenizer:
        """``tokenizer`` with a chat template added (special tokens in text are split out)."""
        return cls(tokenizer.model, tokenizer.normalizer, tokenizer.pre_tokenizer, tokenizer.bos_token,
                   tokenizer.eos_token, tokenizer.pad_token, tokenizer.context_length, split_special_tokens=True,
                   chat_template=chat_template)

    def apply_chat_template(self, messages: Sequence[Mapping[str, str]], add_generation_prompt: bool = False,
                            tokenize: bool = False) -> str | list[int]:
        """The prompt text of ``messages`` (``[{"role": ..., "content": ...}]``), or its ids with ``tokenize``.

        As the template does: a default system message first when the first message is not a system one,
        then ``<|im_start|>{role}\\n{content}<|im_end|>\\n`` per message, then ``<|im_start|>assistant\\n``
        when ``add_generation_prompt``.
        """
        parts = []
        for i, message in enumerate(messages):
            if not isinstance(message, Mapping) or not isinstance(message.get("role"), str) \
                    or not isinstance(message.get("content"), str):
                raise ConfigError(f"messages[{i}] must be {{'role': str, 'content': str}}, got {str(message)[:60]}",
                                  fix="pass a list of role/content dicts")
            if i == 0 and message["role"] != "system" and self.default_system is not None:
                parts.append(f"{IM_START}system\n{self.default_system}{IM_END}\n")
            parts.append(f"{IM_START}{message['role']}\n{message['content']}{IM_END}\n")
        if add_generation_prompt:
            parts.append(f"{IM_START}assistant\n")
        text = "".join(parts)
        return self.encode(text) if tokenize else text


PLAIN_ROLES = {"system": "System", "user": "User", "assistant": "Assistant"}


class ChatFormat:
    """How a conversation becomes the token ids a causal LM continues, and which ids end its turn.

    With a chat template (a :class:`ChatTokenizer`): the template's next assistant turn, stopped at
    ``<|im_end|>`` (and EOS). Without one: plain ``User: ...`` / ``Assistant: ...`` lines after a BOS
    token, ending with ``Assistant:``, stopped at EOS. ``mie generate --chat``, ``mie serve``'s chat box and
    :class:`~mie.safety.targets.ChatTarget` all build their prompts here::

        chat = ChatFormat(tokenizer, system="Be brief.")
        generate(model, [chat.prompt_ids("Hi")], 64, stop_ids=chat.stop_ids())
    """

    def __init__(self, tokenizer: Any, system: str | None = None) -> None:
        self.tokenizer, self.system = tokenizer, system
        self.templated = hasattr(tokenizer, "apply_chat_template")  # the tokenizer carries a chat template

    def messages(self, prompt: str) -> list[dict[str, str]]:
        """The one-turn conversation a prompt becomes: the system message (if any), then the user's."""
        return ([{"role": "system", "content": self.system}] if self.system else []) + \
            [{"role": "user", "content": prompt}]

    def conversation_ids(self, messages: Sequence[Mapping[str, str]]) -> list[int]:
        """The ids the model continues after ``messages`` (``{"role", "content"}`` dicts) to give the next
        assistant turn."""
        if self.templated:
            text = self.tokenizer.apply_chat_template(list(messages), add_generation_prompt=True)
            return self.tokenizer.encode(text) if isinstance(text, str) else list(text)
        lines = "".join(f"{PLAIN_ROLES.get(m['role'], m['role'].title())}: {m['content']}\n" for m in messages)
        return [self.tokenizer.bos_id, *self.tokenizer.encode(lines + "Assistant:")]

    def prompt_ids(self, prompt: str) -> list[int]:
        """The ids the model continues to answer ``prompt`` (:meth:`messages`, then :meth:`conversation_ids`)."""
        return self.conversation_ids(self.messages(prompt))

    def stop_ids(self) -> list[int]:
        """The ids that end an assistant turn: end of turn first (``<|im_end|>`` with a template), then end
        of text, each once."""
        stops = []
        if self.templated:
            ids = self.tokenizer.encode(IM_END)
            stops += ids if len(ids) == 1 else []  # a tokenizer that splits it has no end-of-turn token
        eos = getattr(self.tokenizer, "eos_id", None)
        return [*stops, eos] if eos is not None and eos not in stops else stops
