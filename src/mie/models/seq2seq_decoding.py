"""Greedy and beam-search decoding for encoder-decoder models, batched, with a KV cache.

>>> hyps = beam_search(model, src, bos_id=2, eos_id=3, beam=4, max_len=64, length_penalty=0.6)  # doctest: +SKIP
>>> hyps[0]  # the best target ids of source 0, without bos and eos

``model`` is any module with ``encode(src) -> (memory, src_mask)``, ``start_cache(memory, src_mask)``
(a cache with ``reorder(rows)``: beam search starts one row per source and reorders it onto its ``K``
beams, then onto each step's parents) and ``decode_step(new_ids, cache) -> logits [B, T, vocab]``, as
``EncoderDecoderTransformer`` has. A hypothesis's score is its summed token log-probability
(the eos included) divided by the GNMT length penalty ``((5 + length) / 6) ** alpha``, ``length``
counting the eos.
"""

from __future__ import annotations

from typing import Any

import torch

from mie.models.budget import FLOAT_BYTES, MAX_BEAM, check_bound, check_memory


class TokenQuota:
    """Decoding constraint: each of the tokens ``ids`` ``[n]`` appears exactly ``counts[b, j]`` times in
    the output of row ``b`` (``counts`` ``[B, n]``); eos is refused while some are missing and a token of
    ``ids`` once its count is spent. Translation uses it for placeholder sentinels: every ``%s`` of the
    source comes out once, and none the source lacks.

    >>> quota = TokenQuota(torch.tensor([5, 6]), torch.tensor([[1, 0]]), eos_id=3)  # doctest: +SKIP
    """

    def __init__(self, ids: torch.Tensor, counts: torch.Tensor, eos_id: int) -> None:
        self.ids, self.remaining, self.eos_id = ids, counts.clone(), eos_id

    def apply(self, logp: torch.Tensor, steps_left: int | None = None) -> torch.Tensor:
        """``logp`` ``[rows, vocab]`` with the forbidden tokens at -inf (in place); a row that owes as many
        tokens as there are ``steps_left`` may emit only those."""
        spent = self.remaining <= 0  # (rows, n)
        owed = self.remaining.clamp_min(0).sum(-1)  # (rows,)
        columns = logp[:, self.ids]
        if steps_left is not None:
            logp.masked_fill_((owed >= steps_left)[:, None], float("-inf"))
        logp[:, self.ids] = columns.masked_fill(spent, float("-inf"))
        logp[:, self.eos_id] = logp[:, self.eos_id].masked_fill(owed > 0, float("-inf"))
        return logp

    def reorder(self, rows: torch.Tensor) -> None:
        """Keep (and duplicate) ``rows``, as the decoding cache does."""
        self.remaining = self.remaining.index_select(0, rows)

    def advance(self, tokens: torch.Tensor) -> None:
        """Count the chosen ``tokens`` ``[rows]`` against the quota."""
        self.remaining = self.remaining - (tokens[:, None] == self.ids[None, :]).long()


def start_cache(model: Any, src: torch.Tensor) -> tuple[Any, torch.Tensor]:
    """Encode ``src`` and start the model's decoding cache (a copying model also gets the source ids)."""
    memory, src_mask = model.encode(src)
    if getattr(getattr(model, "config", None), "copy", False):
        return model.start_cache(memory, src_mask, src=src), src_mask
    return model.start_cache(memory, src_mask), src_mask


def ban_repeats(logp: torch.Tensor, prefixes: list[list[int]], n: int) -> torch.Tensor:
    """``logp`` ``[rows, vocab]`` with -inf (in place) on each token that would repeat an ``n``-gram already
    in its row's prefix (``no_repeat_ngram_size``; an under-trained model loops: "wenn diesen, wenn
    diesen, ..."); ``n`` < 2 bans nothing."""
    if n < 2:
        return logp
    for row, prefix in enumerate(prefixes):
        if len(prefix) < n - 1:
            continue
        key = prefix[len(prefix) - n + 1:]
        banned = [prefix[j + n - 1] for j in range(len(prefix) - n + 1) if prefix[j:j + n - 1] == key]
        if banned:
            logp[row, banned] = float("-inf")
    return logp


def length_penalty(length: int, alpha: float) -> float:
    """GNMT's length normaliser (Wu et al., 2016): ``((5 + length) / 6) ** alpha`` (1 at ``alpha = 0``)."""
    return ((5.0 + length) / 6.0) ** alpha


@torch.no_grad()
def sequence_log_prob(model: Any, src: torch.Tensor, hyp: list[int], bos_id: int, eos_id: int) -> float:
    """Summed log-probability of ``hyp`` followed by eos for one source ``[1, S]`` (a full pass, no cache)."""
    tgt = torch.tensor([[bos_id, *hyp, eos_id]], device=src.device)
    cache, _ = start_cache(model, src)
    logp = model.decode_step(tgt[:, :-1], cache).log_softmax(-1)[0]  # (T, vocab)
    return float(logp.gather(-1, tgt[0, 1:, None]).sum())


@torch.no_grad()
def greedy_decode(model: Any, src: torch.Tensor, bos_id: int, eos_id: int, max_len: int = 128,
                  quota: TokenQuota | None = None, no_repeat_ngram: int = 0) -> list[list[int]]:
    """The most likely next token at every step (within ``quota``, repeating no ``no_repeat_ngram``-gram),
    for a batch of sources ``[B, S]``; ids without bos/eos."""
    cache, _ = start_cache(model, src)
    B = src.shape[0]
    last = torch.full((B, 1), bos_id, dtype=torch.long, device=src.device)
    finished = torch.zeros(B, dtype=torch.bool, device=src.device)
    steps: list[torch.Tensor] = []
    prefixes: list[list[int]] = [[] for _ in range(B)]
    for step in range(max_len):
        logits = model.decode_step(last, cache)[:, -1]  # (B, vocab)
        if quota is not None:
            quota.apply(logits, max_len - step)
        tokens = ban_repeats(logits, prefixes, no_repeat_ngram).argmax(-1)  # (B,)
        tokens = tokens.masked_fill(finished, eos_id)
        if no_repeat_ngram >= 2:
            prefixes = [p + [t] for p, t in zip(prefixes, tokens.tolist())]
        if quota is not None:
            quota.advance(tokens)
        steps.append(tokens)
        finished |= tokens == eos_id
        if bool(finished.all()):  # one host sync per decoded token: decoding, not the training loop
            break
        last = tokens[:, None]
    out = torch.stack(steps, 1).tolist() if steps else [[] for _ in range(B)]
    return [row[: row.index(eos_id)] if eos_id in row else row for row in out]


class _Hypotheses:
    """The finished hypotheses of one source: at most ``beam``, kept best first by normalised score."""

    def __init__(self, beam: int, alpha: float) -> None:
        self.beam, self.alpha = beam, alpha
        self.items: list[tuple[float, list[int]]] = []

    def add(self, tokens: list[int], log_prob: float) -> None:
        """Offer a hypothesis (``tokens`` without bos/eos; its length counts the eos)."""
        score = log_prob / length_penalty(len(tokens) + 1, self.alpha)
        self.items.append((score, tokens))
        self.items.sort(key=lambda item: -item[0])
        del self.items[self.beam:]

    def done(self, best_alive: float, length: int) -> bool:
        """Full, and the best live beam (raw score, ``length`` tokens so far) cannot beat the worst kept
        one at its current length (the usual heuristic: scores only fall as hypotheses grow)."""
        if len(self.items) < self.beam:
            return False
        return best_alive / length_penalty(length, self.alpha) <= self.items[-1][0]


def check_beam(config: Any, sources: int, source_len: int, beam: int, max_len: int) -> None:
    """Refuse, before the search allocates, a beam past :data:`~mie.models.budget.MAX_BEAM` or caches and
    scores of ``sources x beam`` rows larger than the memory available now."""
    check_bound(beam, MAX_BEAM, "beam", fix=f"use at most {MAX_BEAM} beams (4 to 8 is usual)")
    if config is None:  # a duck-typed model without a Seq2SeqConfig: only the bound applies
        return
    rows = sources * beam
    cache = 2 * config.decoder_layers * rows * config.dim * (source_len + max_len)  # cross and self keys/values
    need = FLOAT_BYTES * (cache + 4 * rows * config.tgt_vocab_size)  # and each step's log-probabilities
    check_memory(need, f"the beam search of {rows:,} rows", "beam", "lower the beam or translate fewer lines at once")


@torch.no_grad()
def beam_search(model: Any, src: torch.Tensor, bos_id: int, eos_id: int, beam: int = 4, max_len: int = 128,
                length_penalty_alpha: float = 0.6, return_scores: bool = False,
                quota: TokenQuota | None = None, no_repeat_ngram: int = 0) -> list[Any]:
    """The best hypothesis per source ``[B, S]`` under beam search with ``beam`` live beams per source.

    Each step scores all ``beam x vocab`` extensions of a source's beams, keeps ending ones (eos)
    as finished hypotheses and the best ``beam`` others alive. A source is done once it holds
    ``beam`` finished hypotheses that its best live beam cannot beat; at ``max_len`` the live
    beams are finished as they stand. ``beam=1`` is greedy decoding. With ``return_scores``, each
    item is ``(ids, normalised score)``; ``quota`` (one row per source) constrains the tokens and
    ``no_repeat_ngram`` bans repeated n-grams (:func:`ban_repeats`).
    """
    if beam < 1:
        raise ValueError(f"beam must be >= 1, got {beam}")
    B, K = src.shape[0], beam
    check_beam(getattr(model, "config", None), B, src.shape[1], beam, max_len)
    cache, _ = start_cache(model, src)  # cross keys/values once per source, not per beam
    start = torch.arange(B, device=src.device).repeat_interleave(K)  # (B*K,) rows: K beams per source
    cache.reorder(start)
    if quota is not None:
        quota.reorder(start)
    scores = torch.full((B, K), float("-inf"), device=src.device)
    scores[:, 0] = 0.0  # the first step extends one beam per source, not K copies of it
    prefixes: list[list[int]] = [[] for _ in range(B * K)]
    last = torch.full((B * K, 1), bos_id, dtype=torch.long, device=src.device)
    finished = [_Hypotheses(K, length_penalty_alpha) for _ in range(B)]
    done = [False] * B
    for step in range(max_len):
        logp = model.decode_step(last, cache)[:, -1].log_softmax(-1)  # (B*K, vocab)
        if quota is not None:
            quota.apply(logp, max_len - step)
        ban_repeats(logp, prefixes, no_repeat_ngram)
        vocab = logp.shape[-1]
        total = (scores.view(-1, 1) + logp).view(B, K * vocab)
        top_scores, top_ids = total.topk(min(2 * K, K * vocab), dim=-1)  # (B, 2K)
        top_scores, top_ids = top_scores.tolist(), top_ids.tolist()
        new_scores, parents, tokens = [], [], []
        for b in range(B):
            alive: list[tuple[float, int, int]] = []
            for value, flat in zip(top_scores[b], top_ids[b]):
                parent, token = b * K + flat // vocab, flat % vocab
                if done[b] or value == float("-inf"):
                    break
                if token == eos_id:
                    finished[b].add(prefixes[parent], value)
                else:
                    alive.append((value, parent, token))
                if len(alive) == K:
                    break
            if not done[b] and alive and finished[b].done(alive[0][0], step + 1):
                done[b] = True
            alive += [(float("-inf"), b * K, eos_id)] * (K - len(alive))  # padding rows of a finished source
            for value, parent, token in alive:
                new_scores.append(-float("inf") if done[b] else value)
                parents.append(parent)
                tokens.append(token)
        if all(done):
            break
        index = torch.tensor(parents, device=src.device)
        cache.reorder(index)
        if quota is not None:
            quota.reorder(index)
            quota.advance(torch.tensor(tokens, device=src.device))
        prefixes = [prefixes[p] + [t] for p, t in zip(parents, tokens)]
        scores = torch.tensor(new_scores, device=src.device).view(B, K)
        last = torch.tensor(tokens, device=src.device)[:, None]
    else:
        for b in range(B):  # out of length: the live beams end here
            for k in range(K):
                if not done[b] and scores[b, k] > float("-inf"):
                    finished[b].add(prefixes[b * K + k], float(scores[b, k]))
    best = [hyps.items[0] if hyps.items else (float("-inf"), []) for hyps in finished]
    return [(tokens, score) for score, tokens in best] if return_scores else [tokens for _, tokens in best]
