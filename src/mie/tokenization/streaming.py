"""Streaming detokenization: the text of generated tokens, printed as it grows (`mie generate`,
`mie serve`'s chat)."""

from __future__ import annotations

from typing import Any


class TokenPrinter:
    """Prints the text of the new tokens as it grows (decoding the whole tail keeps multi-byte characters whole)."""

    def __init__(self, tokenizer: Any, stream: Any) -> None:
        self.tokenizer, self.stream, self.tokens, self.shown = tokenizer, stream, [], ""

    def __call__(self, row: int, token: int) -> None:
        self.tokens.append(int(token))
        text = self.tokenizer.decode(self.tokens)
        if text.endswith("\ufffd"):
            return  # an incomplete UTF-8 sequence: wait for its next byte
        self.stream.write(text[len(self.shown):])
        self.stream.flush()
        self.shown = text

    def finish(self) -> None:
        """Print what is still held back (bytes that never completed a character) and end the line."""
        text = self.tokenizer.decode(self.tokens)
        self.stream.write(text[len(self.shown):] + "\n")
        self.stream.flush()
