"""Supervised fine-tuning on (prompt, response) pairs: next-token cross-entropy over response tokens only.

Prompt tokens and padding carry the label -100 and are never scored, so the model learns to answer,
not to echo prompts or predict padding::

    rows = [build_sft_example(tok, prompt, response, max_len=512) for prompt, response in pairs]
    loader = DataLoader(rows, batch_size=8, collate_fn=lambda rows: sft_collate(rows, tok.pad_id))
    task = SFTTask(model)  # batch = {"input_ids", "attention_mask", "labels"}, each [B, T]

``labels`` are aligned with ``input_ids`` (``labels[t]`` is ``input_ids[t]`` or -100); the task shifts
them by one, so the logits at ``t`` are scored against the token at ``t + 1``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from mie.training.tasks.language_model import LanguageModelTask

IGNORE_INDEX = -100


def _ids(tokenizer: Any, value: str | Sequence[int]) -> list[int]:
    if isinstance(value, str):
        if tokenizer is None:
            raise ValueError("a text prompt or response needs a tokenizer to encode it; pass token ids or a tokenizer")
        return list(tokenizer.encode(value))
    return [int(t) for t in value]


def build_sft_example(tokenizer: Any, prompt_ids: str | Sequence[int], response_ids: str | Sequence[int],
                      max_len: int, add_eos: bool = True) -> dict[str, list[int]]:
    """One row ``{"input_ids", "labels"}``: prompt then response, labels -100 on the prompt.

    Texts are encoded with ``tokenizer.encode``. With ``add_eos`` and a tokenizer, ``tokenizer.eos_id``
    ends the response (unless it already does) and is scored, so the model learns to stop. Over
    ``max_len`` the prompt loses its oldest tokens first, down to half the window, then the response
    its last ones, so a long prompt cannot leave a row with nothing to learn.
    """
    if max_len < 2:
        raise ValueError(f"max_len must be >= 2 (a prompt token and a response token), got {max_len}")
    prompt, response = _ids(tokenizer, prompt_ids), _ids(tokenizer, response_ids)
    eos = getattr(tokenizer, "eos_id", None) if add_eos else None
    if eos is not None and (not response or response[-1] != eos):
        response.append(eos)
    room = min(len(prompt), max(max_len - len(response), max_len // 2))
    prompt = prompt[len(prompt) - room:]
    response = response[:max_len - len(prompt)]
    return {"input_ids": prompt + response, "labels": [IGNORE_INDEX] * len(prompt) + response}


def sft_collate(rows: Sequence[Mapping[str, Sequence[int] | torch.Tensor]], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-pad rows of :func:`build_sft_example` into ``[B, T]`` LongTensors ``input_ids`` (``pad_id``),
    ``attention_mask`` (0 on padding) and ``labels`` (-100 on padding)."""
    if not rows:
        raise ValueError("sft_collate needs at least one row")
    T = max(len(row["input_ids"]) for row in rows)
    input_ids = torch.full((len(rows), T), pad_id, dtype=torch.long)
    labels = torch.full((len(rows), T), IGNORE_INDEX, dtype=torch.long)
    attention_mask = torch.zeros((len(rows), T), dtype=torch.long)
    for i, row in enumerate(rows):
        n = len(row["input_ids"])
        if len(row["labels"]) != n:
            raise ValueError(f"row {i}: {len(row['labels'])} labels for {n} input ids; they must align")
        input_ids[i, :n] = torch.as_tensor(row["input_ids"], dtype=torch.long)
        labels[i, :n] = torch.as_tensor(row["labels"], dtype=torch.long)
        attention_mask[i, :n] = 1
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}


class SFTTask(LanguageModelTask):
    """Supervised fine-tuning of a causal LM: mean cross-entropy of the response tokens' next-token
    predictions. Validation reports the response-token loss and its perplexity (exact token means).

    A batch is ``{"input_ids", "attention_mask", "labels"}`` (:func:`sft_collate`); the model is called
    as ``model(input_ids, attention_mask=attention_mask) -> [B, T, vocab]``.
    """

    def __init__(self, model: nn.Module, ignore_index: int = IGNORE_INDEX) -> None:
        super().__init__(model, ignore_index=ignore_index)

    def token_losses(self, batch: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """Summed loss (nats) over the batch's response targets, and how many there were."""
        logits = self.model(batch["input_ids"], attention_mask=batch.get("attention_mask"))  # (B, T, vocab)
        targets = batch["labels"][:, 1:]  # the token each of logits[:, :-1] predicts
        total = F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), targets.flatten(),
                                ignore_index=self.ignore_index, reduction="sum")
        return total, (targets != self.ignore_index).sum()
