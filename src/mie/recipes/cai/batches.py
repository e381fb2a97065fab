"""Rows and batches of the cai phases: SFT rows, preference pairs and PPO prompts, all tokenized through
the chat format of :class:`~mie.safety.targets.ChatTarget`, so training sees what generation sees."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch.utils.data import DataLoader

from mie.training.tasks.sft import build_sft_example, sft_collate


def end_id(chat: Any) -> int:
    """The token that ends an assistant turn (``<|im_end|>`` for ChatML, else EOS)."""
    return chat.stop_ids()[0] if chat.chat else chat.tokenizer.eos_id


def response_ids(chat: Any, text: str) -> list[int]:
    """An answer's tokens followed by the end-of-turn token (so the model learns to stop)."""
    return [*chat.tokenizer.encode(text), end_id(chat)]


def split_rows(rows: Sequence[Any], val_fraction: float) -> tuple[list[Any], list[Any]]:
    """``(train, val)``: every k-th row (k = 1 / val_fraction) held out, at least one of each when possible."""
    if val_fraction <= 0 or len(rows) < 2:
        return list(rows), []
    step = max(2, round(1 / val_fraction))
    val = [r for i, r in enumerate(rows) if i % step == step - 1]
    return [r for i, r in enumerate(rows) if i % step != step - 1], val


def sft_rows(chat: Any, records: Sequence[Mapping[str, Any]], max_len: int) -> list[dict[str, list[int]]]:
    """One SFT row per accepted record: the prompt's chat turn (masked) and its ``final`` answer."""
    return [build_sft_example(None, chat.prompt_ids(r["prompt"]), response_ids(chat, r["final"]), max_len,
                              add_eos=False)
            for r in records if r.get("accepted")]


def _pad(rows: Sequence[list[int]], value: int) -> torch.Tensor:
    width = max(len(r) for r in rows)
    return torch.tensor([r + [value] * (width - len(r)) for r in rows], dtype=torch.long)


def pair_rows(chat: Any, pairs: Sequence[Mapping[str, Any]], max_len: int) -> list[dict[str, Any]]:
    """Token rows of preference pairs: prompt + chosen and prompt + rejected, with response masks."""
    out = []
    for pair in pairs:
        prompt = chat.prompt_ids(pair["prompt"])
        row: dict[str, Any] = {"target": float(pair.get("target", 1.0))}
        for side in ("chosen", "rejected"):
            answer = response_ids(chat, pair[side])
            keep = max(1, max_len - len(answer))
            p = prompt[-keep:]
            ids = (p + answer)[:max_len]
            row[f"{side}_ids"], row[f"{side}_response"] = ids, [0] * len(p) + [1] * (len(ids) - len(p))
        out.append(row)
    return out


def pair_collate(rows: Sequence[Mapping[str, Any]], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-padded ``chosen_*`` / ``rejected_*`` ids, masks and response masks, and the soft ``target``."""
    batch: dict[str, torch.Tensor] = {"target": torch.tensor([r["target"] for r in rows], dtype=torch.float32)}
    for side in ("chosen", "rejected"):
        ids = [r[f"{side}_ids"] for r in rows]
        batch[f"{side}_ids"] = _pad(ids, pad_id)
        batch[f"{side}_mask"] = _pad([[1] * len(r) for r in ids], 0)
        batch[f"{side}_response_mask"] = _pad([r[f"{side}_response"] for r in rows], 0)
    return batch


def loader(rows: Sequence[Any], batch_size: int, seed: int, collate: Any, shuffle: bool = True) -> DataLoader:
    """Batches of ``rows``; shuffled from a seeded generator the trainer reseeds each epoch (exact resume)."""
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(list(rows), batch_size=min(batch_size, max(len(rows), 1)), shuffle=shuffle,
                      generator=generator if shuffle else None, collate_fn=collate, drop_last=shuffle)


def sft_loader(rows: Sequence[Any], batch_size: int, seed: int, pad_id: int, shuffle: bool = True) -> DataLoader:
    """SFT batches (:func:`~mie.training.tasks.sft.sft_collate`)."""
    return loader(rows, batch_size, seed, lambda b: sft_collate(b, pad_id), shuffle)


def pair_loader(rows: Sequence[Any], batch_size: int, seed: int, pad_id: int, shuffle: bool = True) -> DataLoader:
    """Preference batches (:func:`pair_collate`)."""
    return loader(rows, batch_size, seed, lambda b: pair_collate(b, pad_id), shuffle)
