"""Explain what a model sees: image heat maps (Grad-CAM on ViT patch tokens, attention rollout, integrated
gradients), token attributions (integrated gradients, gradient x input), attention maps through the one
attention stack's recording hook, and embedding views (PCA, exact t-SNE, similarity matrices).

Library code: it takes models and tensors and never reads a run directory's recipe (``mie explain`` does).
The PNG helpers live in :mod:`mie.explain.draw` (imports matplotlib).
"""

from mie.explain.attention import attention_maps, image_tower_maps, layer_map, text_tower_maps
from mie.explain.embeddings_view import pca_2d, similarity_matrix
from mie.explain.image_maps import IMAGE_METHODS, ImageMap, gradcam, image_ig, image_map, rollout
from mie.explain.integrated import DEFAULT_STEPS, IGResult, gradient_x_input, integrated_gradients
from mie.explain.text_attr import (
    BASELINE,
    TEXT_METHODS,
    TokenAttribution,
    clip_text_attributions,
    lm_next_token_attributions,
    token_attributions,
)
from mie.explain.tsne import tsne_2d

__all__ = ["BASELINE", "DEFAULT_STEPS", "IGResult", "IMAGE_METHODS", "TEXT_METHODS", "ImageMap", "TokenAttribution",
           "attention_maps", "clip_text_attributions", "gradcam", "gradient_x_input", "image_ig", "image_map",
           "image_tower_maps", "integrated_gradients", "layer_map", "lm_next_token_attributions", "pca_2d",
           "rollout", "similarity_matrix", "text_tower_maps", "token_attributions", "tsne_2d"]
