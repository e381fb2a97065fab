"""The smallest clip model the recipe tests train (a few seconds on 2 cores), shared by their configs."""

TINY_CLIP_MODEL = {"embed_dim": 16, "image_size": 16, "patch_size": 8, "vision_width": 16, "vision_layers": 1,
                   "vision_heads": 2, "text_width": 16, "text_layers": 1, "text_heads": 2, "context_length": 24}
