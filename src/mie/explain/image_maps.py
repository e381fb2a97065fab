"""Heat maps over an image of what drives its similarity to a text, for a dual encoder (CLIP-style).

Three methods, each returning a :class:`ImageMap` (a ``[grid, grid]`` map over the ViT's patches, or a
``[H, W]`` map over the input pixels for integrated gradients), all non-negative and scaled to a maximum of 1:

- ``gradcam``: Grad-CAM (Selvaraju et al., 2017) on the patch tokens that enter the last block: the
  gradient of the cosine similarity, averaged over tokens, weights each channel; the map is
  ``relu(sum_c weight_c * token_c)`` per patch. The last block's patch outputs cannot reach a class-token
  embedding, hence its input.
- ``hirescam``: HiResCAM (Draelos & Carin, 2020): the same tokens, each weighted by its own gradient,
  ``relu(sum_c grad_c * token_c)``. Which one points better depends on the model (benchmarks/explain.py):
  on a demo trained with patch-level tag grounding Grad-CAM found the named object in 91% of val trials and
  HiResCAM in 45%; on one trained without it, 15% and 64%. The last block's patch outputs cannot reach a class-token
  embedding, hence its input.
- ``rollout``: attention rollout (Abnar & Zuidema, 2020): the product over layers of
  ``0.5 * (mean-over-heads attention + I)``, read at the pooled token's row (class token, or the mean of all
  rows for a mean-pooled tower). It ignores the text: it shows where the image tower looks.
- ``ig``: integrated gradients (Sundararajan et al., 2017) of the similarity over the normalised pixels
  from a black-image baseline, summed over channels, absolute value (per pixel).

``peak_xy`` maps the map's maximum to the pixel coordinates of the input image, undoing the evaluation
transform (shorter side resized to the model's size, then a centre crop).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from mie.data.transforms import CLIP_MEAN, CLIP_STD
from mie.explain.integrated import IGResult, integrated_gradients
from mie.models.attention import recording_attention

IMAGE_METHODS = ("gradcam", "hirescam", "rollout", "ig")
IMAGE_IG_STEPS = 64  # the first try; image_ig doubles it until completeness holds (benchmarks/explain.py)
IMAGE_IG_MAX_STEPS = 1024
COMPLETENESS = 0.01  # attributions sum to f(x) - f(baseline) within 1%


@dataclass
class ImageMap:
    """A heat map (``values`` ``[h, w]``, max 1) over a model input of ``input_size`` pixels square."""

    values: torch.Tensor
    method: str
    input_size: int
    score: float  # the cosine similarity explained (nan for rollout's text-free map)

    def peak_xy(self, width: int, height: int) -> tuple[int, int]:
        """The map's maximum as ``(x, y)`` pixels of the original ``width x height`` image."""
        h, w = self.values.shape
        row, col = divmod(int(self.values.flatten().argmax()), w)
        u, v = (col + 0.5) * self.input_size / w, (row + 0.5) * self.input_size / h  # model-input pixels
        side = min(width, height)
        scale = side / self.input_size
        x0, y0 = (width - side) / 2, (height - side) / 2  # the centre crop's corner in the original
        return int(min(width - 1, x0 + u * scale)), int(min(height - 1, y0 + v * scale))

    def upsampled(self, size: int | None = None) -> torch.Tensor:
        """The map resized (bilinear) to ``size`` pixels square (default the model's input size)."""
        size = size or self.input_size
        return F.interpolate(self.values[None, None].float(), size=(size, size), mode="bilinear",
                             align_corners=False)[0, 0]


def _unit(values: torch.Tensor) -> torch.Tensor:
    """Scale to a maximum of 1 (an all-zero map stays zero)."""
    top = values.max()
    return values / top if float(top) > 0 else values


def _grid(visual: nn.Module) -> int:
    return int(round(visual.patch_embed.num_patches ** 0.5))


def _text_embedding(model: nn.Module, ids: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model.encode_text(ids)


def gradcam(model: nn.Module, image: torch.Tensor, ids: torch.Tensor | None = None,
            target: Callable[[torch.Tensor], torch.Tensor] | None = None, per_token: bool = False) -> ImageMap:
    """Grad-CAM over the patch tokens entering the last block of ``model.visual`` for the similarity of
    ``image`` ``[3, S, S]`` (normalised) and token ids ``ids`` ``[1, L]``, or for ``target`` (pooled
    features ``[1, width]`` -> a scalar, e.g. a classifier's logit of one class); ``per_token``: HiResCAM."""
    visual = model.visual
    if target is None:
        if ids is None:
            raise ValueError("gradcam needs token ids (a dual encoder) or a target function")
        text = _text_embedding(model, ids)

        def target(pooled: torch.Tensor) -> torch.Tensor:
            return (F.normalize(model.image_projection(pooled), dim=-1) * text).sum()

    x = visual._embed(image[None])
    blocks = list(visual.trunk.blocks)
    for block in blocks[:-1]:
        x = block(x)
    acts = x.detach().requires_grad_(True)
    out = visual.trunk.norm(blocks[-1](acts)) if blocks else visual.trunk.norm(acts)
    score = target(visual.pool_tokens(out))
    (grad,) = torch.autograd.grad(score, acts)
    patches = slice(1, None) if visual.cls_token is not None else slice(None)
    a, g = acts[0, patches].detach(), grad[0, patches]
    # Per patch, the sum over channels of activation x gradient: the gradient averaged over tokens
    # (Grad-CAM) or each token's own (HiResCAM).
    cam = torch.relu((a * g).sum(dim=-1) if per_token else a @ g.mean(dim=0))
    grid = _grid(visual)
    return ImageMap(_unit(cam.view(grid, grid)), "hirescam" if per_token else "gradcam", image.shape[-1],
                    float(score.detach()))


def classifier_target(model: nn.Module, label: int) -> Callable[[torch.Tensor], torch.Tensor]:
    """The logit of class ``label`` of a :class:`~mie.models.vit_classifier.ViTClassifier` from pooled features,
    for :func:`gradcam`'s ``target``."""
    return lambda pooled: model.head(model.head_norm(pooled))[0, label]


@torch.no_grad()
def rollout(model: nn.Module, image: torch.Tensor) -> ImageMap:
    """Attention rollout of ``model.visual`` (or a bare ViT) on ``image`` ``[3, S, S]``."""
    visual = getattr(model, "visual", model)
    with recording_attention() as weights:
        visual.forward_tokens(image[None])
    tokens = weights[0].shape[-1]
    joint = torch.eye(tokens)
    for layer in weights:
        mixed = 0.5 * (layer[0].mean(dim=0) + torch.eye(tokens))
        joint = (mixed / mixed.sum(dim=-1, keepdim=True)) @ joint
    if visual.cls_token is not None:
        row = joint[0, 1:]
    else:
        row = joint.mean(dim=0)
    grid = _grid(visual)
    return ImageMap(_unit(row.view(grid, grid)), "rollout", image.shape[-1], float("nan"))


def black_baseline(image: torch.Tensor) -> torch.Tensor:
    """A black image in the normalised space of ``image`` ``[3, S, S]`` (pixel 0 -> ``-mean / std``). Why not the
    mean colour (zeros): on the demo run, the path from it needed 256 steps for completeness within 1% on
    some images; from black, 64 steps stay within 0.05%."""
    mean, std = torch.tensor(CLIP_MEAN), torch.tensor(CLIP_STD)
    return (-mean / std).to(image)[:, None, None].expand_as(image).clone()


def image_ig(model: nn.Module, image: torch.Tensor, ids: torch.Tensor, steps: int = IMAGE_IG_STEPS,
             baseline: torch.Tensor | None = None, tolerance: float | None = COMPLETENESS,
             max_steps: int = IMAGE_IG_MAX_STEPS) -> tuple[ImageMap, IGResult]:
    """Integrated gradients of the similarity over ``image``'s normalised pixels from ``baseline`` (default
    :func:`black_baseline`). Returns the map and the raw result (``[1, 3, S, S]`` attributions, the ends for
    the completeness check and the steps used). With a ``tolerance``, ``steps`` doubles (up to ``max_steps``)
    until the attributions sum to the output difference within it: a conv stem's path from black has kinks
    that 64 Gauss-Legendre points missed by up to 9x on the demo's images, where 256 or more held."""
    text = _text_embedding(model, ids)

    def similarity(batch: torch.Tensor) -> torch.Tensor:
        return (model.encode_image(batch) * text).sum(dim=-1)

    base = black_baseline(image) if baseline is None else baseline
    result = integrated_gradients(similarity, image[None], base[None], steps=steps, tolerance=tolerance,
                                  max_steps=max_steps)
    values = result.attributions[0].sum(dim=0).abs()
    return ImageMap(_unit(values), "ig", image.shape[-1], result.output), result


def image_map(model: nn.Module, image: torch.Tensor, ids: torch.Tensor, method: str = "gradcam",
              steps: int = IMAGE_IG_STEPS) -> ImageMap:
    """The heat map of ``method`` (one of :data:`IMAGE_METHODS`) for ``image`` and ``ids``."""
    if method in ("gradcam", "hirescam"):
        return gradcam(model, image, ids, per_token=method == "hirescam")
    if method == "rollout":
        return rollout(model, image)
    if method == "ig":
        return image_ig(model, image, ids, steps=steps)[0]
    raise ValueError(f"unknown image method {method!r}; choose one of {', '.join(IMAGE_METHODS)}")
