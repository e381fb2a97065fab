"""Embedding views: a 2-D PCA projection of embeddings, and an image-text similarity matrix."""

from __future__ import annotations

import torch


def pca_2d(embeds: torch.Tensor) -> tuple[torch.Tensor, list[float]]:
    """``[N, D]`` -> ``([N, 2]`` coordinates on the two leading principal axes, the share of variance each
    explains``)``; by an exact SVD of the centred matrix (N and D are a split's, small), signs fixed so the
    largest-magnitude loading of each axis is positive (a projection that does not flip between runs)."""
    if embeds.dim() != 2 or embeds.shape[0] < 2:
        raise ValueError(f"need at least 2 embeddings [N, D], got shape {tuple(embeds.shape)}")
    x = embeds.double() - embeds.double().mean(dim=0, keepdim=True)
    _, s, vh = torch.linalg.svd(x, full_matrices=False)
    axes = vh[:2]
    if axes.shape[0] < 2:  # one-dimensional embeddings: a zero second axis
        axes = torch.cat([axes, torch.zeros_like(axes)])
    signs = torch.sign(axes.gather(1, axes.abs().argmax(dim=1, keepdim=True)))
    axes = axes * torch.where(signs == 0, torch.ones_like(signs), signs)
    variance = s.pow(2)
    share = (variance[:2] / variance.sum().clamp_min(1e-30)).tolist()
    return (x @ axes.T).float(), share + [0.0] * (2 - len(share))


def similarity_matrix(image_embeds: torch.Tensor, text_embeds: torch.Tensor) -> torch.Tensor:
    """Cosine similarities ``[images, texts]`` (rows and columns L2-normalised here)."""
    a = torch.nn.functional.normalize(image_embeds.float(), dim=-1)
    b = torch.nn.functional.normalize(text_embeds.float(), dim=-1)
    return a @ b.T
