"""The smallest clip model and lm run the recipe tests train (seconds on 2 cores), shared by their configs."""

TINY_CLIP_MODEL = {"embed_dim": 16, "image_size": 16, "patch_size": 8, "vision_width": 16, "vision_layers": 1,
                   "vision_heads": 2, "text_width": 16, "text_layers": 1, "text_heads": 2, "context_length": 24}

# The smallest lm run the recipe tests train (a few seconds): override epochs, vocab or data per test.
TINY_LM = {
    "recipe": "lm", "project_name": "lm", "epochs": 3, "log_every": 1, "device": "cpu",
    "checkpoint_every_steps": 2, "schedule": {"warmup_steps": 1},
    "model": {"dim": 16, "n_layers": 1, "n_heads": 2, "max_seq_len": 16},
    "tokenizer": {"vocab_size": 280},
    "data": {"block_size": 16, "batch_size": 4, "blocks_per_epoch": 12, "max_val_blocks": 4, "workers": 1},
    "sample": {"max_new_tokens": 4, "num_samples": 1},
}

# Wall-clock figures, which differ between any two runs of the same config.
VOLATILE = {"time", "wall_time_s", "samples_per_s", "tokens_per_s", "train/samples_per_sec", "created"}


def strip_wall_clock(value):
    """``value`` (nested dicts and lists) without the :data:`VOLATILE` keys, for comparing two runs."""
    if isinstance(value, dict):
        return {k: strip_wall_clock(v) for k, v in value.items() if k not in VOLATILE}
    if isinstance(value, list):
        return [strip_wall_clock(v) for v in value]
    return value
