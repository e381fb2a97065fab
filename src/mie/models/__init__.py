"""mie.models: transformer components and the image–text models built from them.

``positional`` / ``kv_cache`` -> ``attention`` (the one ``MultiHeadAttention``; its docstring states the one mask
convention) -> ``blocks`` -> ``trunk`` -> ``vision`` / ``text`` -> ``multimodal`` -> ``registry``; ``bert``,
``causal_lm``, ``seq2seq`` and ``fusion`` build from the same attention.
"""

from mie.models.attention import MultiHeadAttention, attend, causal_mask, key_mask, reference_attention
from mie.models.bert import BertConfig, BertEncoder
from mie.models.blocks import FeedForward, RMSNorm, TransformerBlock, build_norm
from mie.models.causal_lm import CausalLM, CausalLMConfig
from mie.models.generation import generate
from mie.models.kv_cache import KVCache
from mie.models.lora import LoRALinear, apply_lora, merge_lora, merged_state_dict
from mie.models.multimodal import CrossModalFusion, DualEncoder
from mie.models.positional import (
    ALiBi,
    LearnedPositionalEmbedding,
    RotaryEmbedding,
    SinusoidalPositionalEmbedding,
)
from mie.models.registry import (
    MODEL_PRESETS,
    build_model,
    build_torch_reference_model,
    get_model_config,
    num_parameters,
)
from mie.models.reward import RewardModel
from mie.models.text import TextEncoder
from mie.models.trunk import Transformer
from mie.models.vision import VisionTransformer

__all__ = [
    "MODEL_PRESETS",
    "ALiBi",
    "BertConfig",
    "BertEncoder",
    "LoRALinear",
    "RewardModel",
    "apply_lora",
    "merge_lora",
    "merged_state_dict",
    "CausalLM",
    "CausalLMConfig",
    "CrossModalFusion",
    "DualEncoder",
    "FeedForward",
    "KVCache",
    "LearnedPositionalEmbedding",
    "MultiHeadAttention",
    "RMSNorm",
    "RotaryEmbedding",
    "SinusoidalPositionalEmbedding",
    "TextEncoder",
    "Transformer",
    "TransformerBlock",
    "VisionTransformer",
    "attend",
    "build_model",
    "build_norm",
    "build_torch_reference_model",
    "causal_mask",
    "generate",
    "get_model_config",
    "key_mask",
    "num_parameters",
    "reference_attention",
]
