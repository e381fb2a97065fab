"""Attention maps of any model built on :mod:`mie.models.attention`, through its one recording hook.

:func:`attention_maps` runs a forward inside :func:`~mie.models.attention.recording_attention` and returns
one ``[H, L, S]`` tensor per attention call (per layer; an encoder-decoder records self- then
cross-attention per decoder layer), for the first row of the batch.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from mie.models.attention import recording_attention


@torch.no_grad()
def attention_maps(forward: Callable[[], object]) -> list[torch.Tensor]:
    """The attention weights ``[H, L, S]`` (first batch row) of every attention call made by ``forward()``."""
    with recording_attention() as weights:
        forward()
    return [w[0].detach().cpu() for w in weights]


def layer_map(maps: list[torch.Tensor], layer: int, head: int | None = None) -> torch.Tensor:
    """``[L, S]`` weights of ``layer`` (negative counts from the end): one ``head`` or the mean over heads."""
    if not -len(maps) <= layer < len(maps):
        raise IndexError(f"layer {layer} is out of range: the model recorded {len(maps)} attention layers")
    chosen = maps[layer]
    if head is None:
        return chosen.mean(dim=0)
    if not -chosen.shape[0] <= head < chosen.shape[0]:
        raise IndexError(f"head {head} is out of range: layer {layer} has {chosen.shape[0]} heads")
    return chosen[head]


def text_tower_maps(model: torch.nn.Module, ids: torch.Tensor) -> list[torch.Tensor]:
    """Every layer's attention over the tokens of ``ids`` ``[1, L]`` in a dual encoder's text tower."""
    return attention_maps(lambda: model.text.forward_tokens(ids))


def image_tower_maps(model: torch.nn.Module, image: torch.Tensor) -> list[torch.Tensor]:
    """Every layer's attention over the (class and) patch tokens of ``image`` ``[3, S, S]``."""
    visual = getattr(model, "visual", model)
    return attention_maps(lambda: visual.forward_tokens(image[None]))
