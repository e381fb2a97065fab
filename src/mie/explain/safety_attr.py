"""Why the safety evaluator's embedding classifier flagged a text: its tokens' attributions to one principle.

The classifier (:class:`mie.safety.embeddings.EmbeddingMethod`) is a BERT encoder, mean-pooled, and a linear
head per principle; the explained output is that principle's logit (before the sigmoid and the threshold,
where attributions add up), attributed to the WordPiece tokens through the encoder's token embedding.
"""

from __future__ import annotations

from typing import Any

import torch

from mie.explain.integrated import DEFAULT_STEPS
from mie.explain.text_attr import TokenAttribution, token_attributions


def flagged_principle(method: Any, text: str) -> str:
    """The principle with the highest calibrated score for ``text`` (the one a verdict would lead with)."""
    verdicts = method.score_batch([text])[0]
    return max(verdicts, key=lambda p: verdicts[p].score)


def safety_attributions(method: Any, text: str, principle: str | None = None, how: str = "ig",
                        steps: int = DEFAULT_STEPS) -> TokenAttribution:
    """Token attributions of ``principle``'s logit (default the highest-scoring one) for ``text``."""
    from mie.safety.embeddings import SCALE

    principle = principle or flagged_principle(method, text)
    if principle not in method.principles:
        raise ValueError(f"unknown principle {principle!r}; choose one of {', '.join(method.principles)}")
    column = method.principles.index(principle)
    encoder = method.encoder
    tokenizer, model = encoder.tokenizer, encoder.model
    batch = tokenizer.pad([tokenizer.encode_special(text, encoder.max_length)])
    ids, mask = batch.input_ids.to(encoder.device), batch.attention_mask.to(encoder.device)

    def logit(rows: torch.Tensor) -> torch.Tensor:
        features = model.embed(rows, mask.expand(rows.shape[0], -1))
        return method.head(features * SCALE)[:, column]

    names = [tokenizer.inverse.get(i, f"<{i}>") for i in ids[0].tolist()]
    return token_attributions(model.token_embed, logit, ids, how, steps, names,
                              target=f"{principle} logit", baseline_id=tokenizer.vocab.get("[PAD]"),
                              baseline_name="[PAD]")
