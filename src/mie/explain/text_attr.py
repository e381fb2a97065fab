"""Token attributions: which input tokens carried a scalar output, by integrated gradients or gradient x input.

The attribution is taken over the output of the model's token-embedding module (one forward hook swaps in
the interpolated embeddings), so it works for every family built from ``nn.Embedding``: the clip text tower
(the similarity to an image), a causal LM (the logit of its next-token choice) and the BERT encoder under
the safety evaluator (a principle's logit). A token's score is its attribution summed over the embedding's
channels. The integrated-gradients baseline is the all-zero embedding, or one token's embedding at every
position (stated in every result), so a token's score is its share of ``f(x) - f(baseline)``; completeness is
reported as ``gap``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from mie.explain.integrated import DEFAULT_STEPS, gradient_x_input, integrated_gradients

TEXT_METHODS = ("ig", "gradxinput")
BASELINE = "zero embedding"


@dataclass
class TokenAttribution:
    """Per-token scores of one output: ``tokens[i]`` carried ``scores[i]`` of ``output``."""

    tokens: list[str]
    scores: list[float]
    method: str
    target: str  # what was explained, in words
    output: float  # f(x)
    baseline: str | None = None  # ig only
    steps: int | None = None  # ig only
    baseline_output: float | None = None  # ig only: f(baseline)
    gap: float | None = None  # ig only: sum(scores) - (output - baseline_output)
    relative_gap: float | None = None  # ig only: |gap| / |output - baseline_output|

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (None fields dropped)."""
        return {k: v for k, v in asdict(self).items() if v is not None}

    def top(self, k: int = 5) -> list[tuple[str, float]]:
        """The ``k`` tokens with the largest scores, largest first."""
        order = sorted(range(len(self.scores)), key=lambda i: -self.scores[i])[:k]
        return [(self.tokens[i], self.scores[i]) for i in order]


@contextlib.contextmanager
def _embeddings_from(module: nn.Module, holder: dict[str, torch.Tensor]) -> Iterator[None]:
    """While active, ``module``'s output is ``holder["value"]`` (when set): the one place inputs are swapped."""
    handle = module.register_forward_hook(lambda _m, _i, out: holder.get("value", out))
    try:
        yield
    finally:
        handle.remove()


def token_attributions(embedding: nn.Module, forward: Callable[[torch.Tensor], torch.Tensor], ids: torch.Tensor,
                       method: str = "ig", steps: int = DEFAULT_STEPS, tokens: list[str] | None = None,
                       target: str = "output", baseline_id: int | None = None,
                       baseline_name: str | None = None, tolerance: float | None = 0.01,
                       max_steps: int = 8 * DEFAULT_STEPS) -> TokenAttribution:
    """Attribute ``forward(ids_batch) -> [N]`` to the tokens of ``ids`` ``[1, L]`` through ``embedding``
    (the module whose output is ``[N, L, D]``); ``tokens`` name the ids (default their numbers). The
    integrated-gradients baseline is the zero embedding, or token ``baseline_id``'s embedding at every
    position (a model with RMS norms has no gradient at zero, so a causal LM takes its end-of-text token).
    With a ``tolerance``, integrated gradients double ``steps`` (up to ``max_steps``) until the attributions
    add up to the output difference within it."""
    if method not in TEXT_METHODS:
        raise ValueError(f"unknown text method {method!r}; choose one of {', '.join(TEXT_METHODS)}")
    with torch.no_grad():  # before the hook is on: it would hand back the last swapped-in value
        embedded = embedding(ids).detach()
        base = None if baseline_id is None else embedding(torch.full_like(ids, baseline_id)).detach()
    holder: dict[str, torch.Tensor] = {}

    def f(points: torch.Tensor) -> torch.Tensor:
        holder["value"] = points
        return forward(ids.expand(points.shape[0], -1))

    names = tokens if tokens is not None else [str(i) for i in ids[0].tolist()]
    with _embeddings_from(embedding, holder):
        with torch.no_grad():
            output = float(f(embedded)[0])
        if method == "gradxinput":
            attr = gradient_x_input(f, embedded)
            return TokenAttribution(names, attr[0].sum(dim=-1).tolist(), method, target, output)
        if base is None:
            baseline, stated = torch.zeros_like(embedded), BASELINE
        else:
            baseline, stated = base, f"the embedding of {baseline_name or f'token {baseline_id}'} at every position"
        result = integrated_gradients(f, embedded, baseline, steps=steps, tolerance=tolerance, max_steps=max_steps)
    return TokenAttribution(names, result.attributions[0].sum(dim=-1).tolist(), method, target, output, stated,
                            result.steps, result.baseline_output, result.gap, result.relative_gap)


def clip_text_attributions(model: nn.Module, ids: torch.Tensor, image: torch.Tensor, method: str = "ig",
                           steps: int = DEFAULT_STEPS, tokens: list[str] | None = None) -> TokenAttribution:
    """Tokens of ``ids`` ``[1, L]`` that drive the cosine similarity to ``image`` ``[3, S, S]`` (dual encoder)."""
    from mie.models.text import eot_positions

    ids = ids[:, : int(eot_positions(ids, model.text.eos_id)[0]) + 1]  # the tower drops trailing padding itself
    tokens = tokens[: ids.shape[1]] if tokens is not None else None
    with torch.no_grad():
        image_embed = model.encode_image(image[None])

    def similarity(batch: torch.Tensor) -> torch.Tensor:
        return (model.encode_text(batch) * image_embed).sum(dim=-1)

    return token_attributions(model.text.token_embed, similarity, ids, method, steps, tokens,
                              target="cosine similarity to the image")


def lm_next_token_attributions(model: nn.Module, ids: torch.Tensor, method: str = "ig", steps: int = DEFAULT_STEPS,
                               tokens: list[str] | None = None, choice: int | None = None,
                               choice_text: str | None = None, baseline_id: int | None = None,
                               baseline_name: str | None = None, tolerance: float | None = 0.01,
                       max_steps: int = 8 * DEFAULT_STEPS) -> TokenAttribution:
    """Tokens of the prompt ``ids`` ``[1, L]`` that drive a causal LM's logit for its next token ``choice``
    (default its greedy choice); ``baseline_id``: see :func:`token_attributions` (pass the end-of-text id)."""
    with torch.no_grad():
        logits = _last_logits(model, ids)
    choice = int(logits[0].argmax()) if choice is None else choice

    def logit(batch: torch.Tensor) -> torch.Tensor:
        return _last_logits(model, batch)[:, choice]

    label = f"logit of the next token {choice_text!r}" if choice_text is not None else f"logit of token {choice}"
    return token_attributions(model.tok_embeddings, logit, ids, method, steps, tokens, target=label,
                              baseline_id=baseline_id, baseline_name=baseline_name)


def _last_logits(model: nn.Module, ids: torch.Tensor) -> torch.Tensor:
    """``[N, vocab]`` logits at the last position (a model returning a dict or a tensor)."""
    out = model(ids)
    logits = out["logits"] if isinstance(out, dict) else getattr(out, "logits", out)
    return logits[:, -1].float()
