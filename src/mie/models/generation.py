"""Autoregressive generation for ``CausalLM``: logits processors and ``generate`` (on the one
:class:`~mie.models.kv_cache.KVCache`).

>>> new = generate(model, [[1, 5, 9], [1, 7]], max_new_tokens=20, temperature=0.8, top_p=0.9,
...                stop_ids=(eos_id,), seed=0)  # doctest: +SKIP

Batched prompts are left-padded; the model derives each row's positions from its attention mask, so a
padded row yields the same tokens as the same prompt generated alone.

Prompts that share a prefix (a judge's questions about one text, few-shot examples) run it once:
:func:`prefill` computes its keys/values (batch 1), :func:`branch` copies them for each row, and the rows'
own tokens follow (left-padded after the prefix; positions skip the padding). ``generate(..., prefix=ids)``
and :func:`next_token_logits` do this; the tokens and logits are those of the full prompts::

    shared = prefill(model, prefix_ids)                      # once
    logits = next_token_logits(model, suffixes, prefix_cache=shared)  # [N, vocab], per branch
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import torch

from mie.models.budget import check_generation_length, check_memory, kv_cache_bytes
from mie.models.kv_cache import KVCache

if TYPE_CHECKING:
    from mie.models.causal_lm import CausalLM


# ---- logits processors: pure functions on [B, V] float logits ----------------------------------------


def apply_repetition_penalty(logits: torch.Tensor, seen: torch.Tensor, penalty: float) -> torch.Tensor:
    """CTRL's penalty (Keskar et al., 2019): for tokens in ``seen`` (bool ``[B, V]``) divide positive
    logits by ``penalty`` and multiply negative ones by it; other tokens are unchanged."""
    if penalty == 1.0:
        return logits
    penalized = torch.where(logits > 0, logits / penalty, logits * penalty)
    return torch.where(seen, penalized, logits)


def filter_top_k(logits: torch.Tensor, k: int) -> torch.Tensor:
    """Set every logit below the ``k``-th largest of its row to ``-inf`` (``k <= 0``: no filtering)."""
    if k <= 0 or k >= logits.shape[-1]:
        return logits
    kth = torch.topk(logits, k, dim=-1).values[..., -1:]
    return logits.masked_fill(logits < kth, float("-inf"))


def filter_top_p(logits: torch.Tensor, p: float) -> torch.Tensor:
    """Nucleus filtering (Holtzman et al., 2020): keep the smallest set of most likely tokens whose
    probabilities sum to at least ``p`` (always the top token); set the rest to ``-inf``."""
    if p >= 1.0:
        return logits
    sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
    probs = sorted_logits.softmax(-1)
    # Drop a token when the tokens ranked above it already reach p.
    drop_sorted = probs.cumsum(-1) - probs >= p
    drop = drop_sorted.scatter(-1, order, drop_sorted)
    return logits.masked_fill(drop, float("-inf"))


def sample_next(
    logits: torch.Tensor,
    temperature: float = 0.0,
    top_k: int = 0,
    top_p: float = 1.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """The next token ``[B]`` from logits ``[B, V]``: argmax if ``temperature == 0``, else a draw from
    ``softmax(filter_top_p(filter_top_k(logits / temperature)))``."""
    if temperature <= 0.0:
        return logits.argmax(-1)
    logits = filter_top_p(filter_top_k(logits / temperature, top_k), top_p)
    probs = logits.float().softmax(-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


# ---- generate ------------------------------------------------------------------------------------------


def left_pad(prompts: Sequence[Sequence[int]], pad_id: int, device: torch.device | str = "cpu",
             ) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids ``[B, T]`` and attention mask ``[B, T]`` (1 = real) of ``prompts`` padded on the left."""
    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    mask = torch.zeros(len(prompts), width, dtype=torch.long)
    for row, prompt in enumerate(prompts):
        if len(prompt):
            ids[row, width - len(prompt):] = torch.as_tensor(list(prompt), dtype=torch.long)
            mask[row, width - len(prompt):] = 1
    return ids.to(device), mask.to(device)


def check_generation(config: Any, prompt_lengths: Sequence[int], max_new_tokens: int, bytes_per_value: int = 4,
                     key: str = "max_new_tokens", prompt_key: str = "the prompt") -> None:
    """Refuse, before anything is allocated, ``max_new_tokens < 1``, a prompt that does not fit the model's
    context (``max_seq_len``), a prompt plus ``max_new_tokens`` past it, or a KV cache larger than the
    memory available now: each a one-line :class:`~mie.errors.ConfigError` naming ``key`` and the limit."""
    longest = max(prompt_lengths, default=0)
    check_generation_length(longest, max_new_tokens, config.max_seq_len, key, prompt_key)
    rows = len(prompt_lengths)
    need = kv_cache_bytes(config, rows, longest + max_new_tokens, bytes_per_value)
    check_memory(need, f"the KV cache of {rows} x {longest + max_new_tokens:,} positions", key,
                 "lower it or generate for fewer prompts at once")


def _generator(seed: int | torch.Generator | None, device: torch.device) -> torch.Generator | None:
    if seed is None or isinstance(seed, torch.Generator):
        return seed
    return torch.Generator(device=device).manual_seed(int(seed))


@torch.inference_mode(False)
@torch.no_grad()
def prefill(model: CausalLM, prefix: Sequence[int]) -> KVCache:
    """The KV cache of ``prefix`` (one row, sized to it): computed once, then :func:`branch`-ed per suffix."""
    if not len(prefix):
        raise ValueError("prefill needs a non-empty prefix")
    device = next(model.parameters()).device
    cache = KVCache(model.config.n_layers)  # no preallocation: branches copy exactly the filled positions
    was_training = model.training
    model.eval()
    try:
        model(torch.tensor([list(prefix)], device=device), cache=cache, last_only=True)
    finally:
        model.train(was_training)
    return cache


def branch(prefix: KVCache, rows: int, room: int) -> KVCache:
    """``rows`` copies of a one-row prefix cache with ``room`` more positions each (``prefix`` is unchanged)."""
    cache = KVCache(prefix.n_layers)
    cache.keys, cache.values, cache.mask, cache.length = list(prefix.keys), list(prefix.values), prefix.mask, len(prefix)
    cache.max_len = len(prefix) + room
    index = torch.zeros(rows, dtype=torch.long, device=prefix.mask.device if prefix.mask is not None else None)
    cache.select(index)  # copies the prefix into fresh preallocated stores
    return cache


def common_prefix(rows: Sequence[Sequence[int]]) -> int:
    """How many leading ids every row shares, leaving each row at least one id of its own."""
    if not rows:
        return 0
    limit = min(len(r) for r in rows) - 1
    first, n = rows[0], 0
    while n < limit and all(r[n] == first[n] for r in rows):
        n += 1
    return max(n, 0)


class SharedPrefix:
    """Splits each batch of prompts into the ids they all share and their own, and keeps the last shared
    prefix's :func:`prefill` so consecutive batches with the same prefix (few-shot examples, a system
    message) run it once. Prefixes shorter than ``min_tokens`` are not worth a separate pass."""

    def __init__(self, min_tokens: int = 16) -> None:
        self.min_tokens = min_tokens
        self.ids: list[int] = []
        self.cache: KVCache | None = None

    def split(self, model: CausalLM, rows: Sequence[Sequence[int]]) -> tuple[list[int], list[list[int]], KVCache | None]:
        """``(prefix, suffixes, prefix_cache)`` for ``generate(model, suffixes, ..., prefix=, prefix_cache=)``;
        no prefix when the rows share fewer than ``min_tokens`` ids (or there is one row and nothing cached)."""
        n = common_prefix(rows)
        if self.ids and n >= len(self.ids) and list(rows[0][:len(self.ids)]) == self.ids:
            n = len(self.ids)  # the cached prefix serves this batch too
        elif n < self.min_tokens or len(rows) < 2:
            return [], [list(r) for r in rows], None
        else:
            self.ids, self.cache = list(rows[0][:n]), prefill(model, rows[0][:n])
        return self.ids, [list(r[n:]) for r in rows], self.cache


@torch.inference_mode(False)
@torch.no_grad()
def next_token_logits(model: CausalLM, suffixes: Sequence[Sequence[int]], prefix: Sequence[int] = (),
                      prefix_cache: KVCache | None = None, pad_id: int = 0, batch_size: int = 8) -> torch.Tensor:
    """Float logits ``[N, vocab]`` of the token after ``prefix + suffixes[i]``, for every ``i``.

    The prefix runs once (``prefix_cache``, the :func:`prefill` of ``prefix``, is reused when given) and each
    batch of ``batch_size`` suffixes continues a copy of its cache; without a prefix each row is run whole.
    """
    device = next(model.parameters()).device
    if prefix_cache is None and len(prefix):
        prefix_cache = prefill(model, prefix)
    was_training = model.training
    model.eval()
    out = []
    try:
        for start in range(0, len(suffixes), batch_size):
            rows = [list(s) for s in suffixes[start:start + batch_size]]
            if any(not r for r in rows):
                raise ValueError("every suffix needs at least one token")
            ids, mask = left_pad(rows, pad_id, device)
            cache = branch(prefix_cache, len(rows), ids.shape[1]) if prefix_cache is not None else None
            out.append(model(ids, cache=cache, attention_mask=mask, last_only=True)[:, -1])
    finally:
        model.train(was_training)
    return torch.cat(out) if out else torch.zeros(0, model.config.vocab_size)


# Not inference_mode, and out of a caller's: autocast caches its bf16/fp16 copies of the weights only outside
# it; inside, every step re-casts every weight, which costs more than the fp32 step itself.
@torch.inference_mode(False)
@torch.no_grad()
def generate(
    model: CausalLM,
    ids: torch.Tensor | Sequence[Sequence[int]],
    max_new_tokens: int,
    temperature: float = 0.0,
    top_k: int = 0,
    top_p: float = 1.0,
    repetition_penalty: float = 1.0,
    stop_ids: Sequence[int] = (),
    stop_strings: Sequence[str] = (),
    decode: Callable[[list[int]], str] | None = None,
    seed: int | torch.Generator | None = None,
    pad_id: int = 0,
    on_token: Callable[[int, int], None] | None = None,
    prefix: Sequence[int] = (),
    prefix_cache: KVCache | None = None,
) -> list[list[int]]:
    """Continue each prompt by up to ``max_new_tokens`` tokens; return only the new tokens per prompt.

    ``ids`` is a ``[B, T]`` tensor (no padding) or a list of token lists (left-padded with ``pad_id``).
    ``temperature == 0`` is greedy; otherwise tokens are sampled after ``top_k``/``top_p`` filtering.
    ``repetition_penalty`` applies to every token of the prompt and of the generated text so far.
    A row stops at a token in ``stop_ids`` (not included in its output) or once ``decode(new tokens)``
    contains one of ``stop_strings`` (the completing token is kept; trim the text yourself).
    ``seed`` (an int or a ``torch.Generator``) makes sampling reproducible. ``on_token(row, token)`` is
    called for each kept token as it is produced (streaming). Prompt plus ``max_new_tokens`` must fit the
    model's context (``config.max_seq_len``) and the KV cache the memory available (:func:`check_generation`).
    ``prefix``: token ids before every prompt, run once (``prefix_cache``, its :func:`prefill`, when reused
    across calls) and shared by every row; the output is as if each prompt were ``prefix + prompt``.
    """
    if stop_strings and decode is None:
        raise ValueError("stop_strings need a decode function (token ids -> text); pass decode=tokenizer.decode")
    device = next(model.parameters()).device
    prompts = ids.tolist() if isinstance(ids, torch.Tensor) else [list(p) for p in ids]
    if not prompts or any(len(p) == 0 for p in prompts):
        raise ValueError("generate needs at least one prompt, each of at least one token (e.g. a BOS id)")
    config = model.config
    check_generation(config, [len(prefix) + len(p) for p in prompts], max_new_tokens,
                     next(model.parameters()).element_size())
    input_ids, mask = left_pad(prompts, pad_id, device)
    B, T = input_ids.shape
    generator = _generator(seed, device)
    counts = torch.zeros(B, config.vocab_size, device=device).scatter_add_(1, input_ids, mask.float())
    if len(prefix):
        counts[:, torch.as_tensor(list(prefix), dtype=torch.long, device=device)] = 1.0
    seen = counts > 0  # (B, V): tokens of each prompt (and the prefix), padding excluded
    stop = torch.as_tensor(list(stop_ids), dtype=torch.long, device=device)
    was_training = model.training
    model.eval()
    if prefix_cache is None and len(prefix):
        prefix_cache = prefill(model, prefix)
    cache = branch(prefix_cache, B, T + max_new_tokens) if prefix_cache is not None \
        else KVCache(config.n_layers, max_len=T + max_new_tokens)
    outputs: list[list[int]] = [[] for _ in range(B)]
    active = list(range(B))  # the prompt index of each row still in the batch
    try:
        logits = model(input_ids, cache=cache, attention_mask=mask, last_only=True)[:, -1]
        for step in range(max_new_tokens):
            logits = apply_repetition_penalty(logits, seen, repetition_penalty)
            token = sample_next(logits, temperature, top_k, top_p, generator)  # (b,)
            if repetition_penalty != 1.0:
                seen[torch.arange(len(active), device=device), token] = True
            is_stop = torch.isin(token, stop) if len(stop) else torch.zeros_like(token, dtype=torch.bool)
            running = []  # batch rows that go on
            for i, (tok, hit) in enumerate(zip(token.tolist(), is_stop.tolist())):  # one host sync per step
                if hit:
                    continue
                row = active[i]
                outputs[row].append(tok)
                if on_token is not None:
                    on_token(row, tok)
                if not (stop_strings and any(s in decode(outputs[row]) for s in stop_strings)):
                    running.append(i)
            if not running or step == max_new_tokens - 1:
                break  # no forward for logits nobody reads
            if len(running) < len(active):
                # Finished rows leave the batch (one copy of the filled cache) instead of being computed
                # to the end as padding; a row's tokens do not depend on the others in its batch.
                keep = torch.tensor(running, device=device)
                cache.select(keep)
                token, seen = token[keep], seen[keep]
                active = [active[i] for i in running]
            logits = model(token[:, None], cache=cache)[:, -1]
    finally:
        model.train(was_training)
    return outputs
