"""mie.pretrained: real pretrained models (files of installed packages) in our own models and tokenizers.

``load_causal_lm("smollm2-135m-instruct") -> (CausalLM, ChatTokenizer)`` (also ``qwen2.5-coder-0.5b-instruct`` and
``-1.5b-instruct``, whose GGUF parts are joined and hash-checked by :mod:`mie.pretrained.parts`);
``load_language_model(name_or_lm_run_folder) -> (CausalLM, tokenizer)`` (the one loader every command uses);
``ChatFormat(tokenizer, system).prompt_ids(text)`` and ``.stop_ids()`` (the one chat prompt);
``load_sentence_encoder("all-minilm-l6-v2") -> SentenceEncoder`` (``.encode(texts) -> [N, 384]``);
``make pretrained`` installs the files. Names are imported lazily (PEP 562) so ``import mie.pretrained`` needs
neither gguf nor the models.
"""

from __future__ import annotations

from mie.lazy import lazy_exports

_EXPORTS = {
    "load_causal_lm": "mie.pretrained.registry",
    "gguf_path": "mie.pretrained.registry",
    "cache_root": "mie.pretrained.registry",
    "MODELS": "mie.pretrained.registry",
    "GGUFFile": "mie.pretrained.gguf_reader",
    "ChatTokenizer": "mie.pretrained.chat",
    "ChatFormat": "mie.pretrained.chat",
    "load_language_model": "mie.pretrained.loading",
    "load_lm_run": "mie.pretrained.loading",
    "load_sentence_encoder": "mie.pretrained.sentence",
    "SentenceEncoder": "mie.pretrained.sentence",
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
