"""Phrase grounding scores: how well each caption's phrases are found in an image's patches (FILIP-style).

A caption's *phrases* are the entries of a tag list (``data.caption_tags``: "red circle", "circle", ...)
that occur in it and are not part of a longer one that does ("a red circle left of a square" has "red
circle" and "square"). An image's score for a caption is the mean, over its phrases, of the best patch's
cosine with the text tower's embedding of the phrase. The whole caption's embedding can be matched by the
colours and counts it names; a phrase can only be matched by the patch that shows it, so the score checks
the binding of colour to shape that pooled embeddings blur. Phrases are texts, so one that no training
caption used (a held-out colour–shape pair) is scored by composition::

    phrases = caption_phrases(captions, tags)                        # [[3, 17], [5], ...] tag indices
    scores = phrase_grounding(patch_embeds, tag_embeds, phrases)      # [images, captions]
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from mie.data.image_text import tags_in


def caption_phrases(captions: Sequence[str], tags: Sequence[str]) -> list[list[int]]:
    """For each caption, the indices of ``tags`` that occur in it (whole words, in a row, case-insensitive)
    and are not part of a longer occurring tag; an empty list when none occurs."""
    out = []
    for caption in captions:
        found = tags_in(caption, tags)
        # a tag inside a longer found one ("red" in "red circle") is that phrase's word, not a phrase of its own
        out.append([k for k in found
                    if not any(len(tags[j]) > len(tags[k]) and tags_in(tags[j], [tags[k]]) for j in found)])
    return out


def phrase_grounding(patch_embeds: torch.Tensor, tag_embeds: torch.Tensor, phrases: Sequence[Sequence[int]]
                     ) -> torch.Tensor:
    """``[N images, C captions]``: the mean over caption ``c``'s ``phrases[c]`` (indices into ``tag_embeds``
    ``[T, D]``) of the best cosine between a patch of the image (``patch_embeds`` ``[N, P, D]``) and the
    phrase; 0 for a caption without phrases."""
    if patch_embeds.dim() != 3 or tag_embeds.dim() != 2 or patch_embeds.shape[-1] != tag_embeds.shape[-1]:
        raise ValueError(f"patch_embeds [N, P, D] and tag_embeds [T, D] must share D; got "
                         f"{list(patch_embeds.shape)} and {list(tag_embeds.shape)}")
    best = torch.einsum("npd,td->npt", F.normalize(patch_embeds.float(), dim=-1),
                        F.normalize(tag_embeds.float(), dim=-1)).amax(dim=1)  # [N, T]
    average = torch.zeros(tag_embeds.shape[0], len(phrases))  # [T, C]: each caption's mean over its phrases
    for c, ks in enumerate(phrases):
        if ks:
            average[list(ks), c] = 1.0 / len(ks)
    return best @ average.to(best.device)
