"""mie.tokenization: text -> ids. Word/char tokenizers (``simple``) and a byte-level BPE pipeline.

Names are imported lazily (PEP 562) so ``import mie.tokenization`` stays cheap until one is used.
"""

from __future__ import annotations

from mie.lazy import lazy_exports

_EXPORTS = {
    "BaseTokenizer": "mie.tokenization.base",
    "SPECIAL_TOKENS": "mie.tokenization.base",
    "SimpleTokenizer": "mie.tokenization.simple",
    "CharTokenizer": "mie.tokenization.simple",
    "BPETokenizer": "mie.tokenization.tokenizer",
    "WordPieceTokenizer": "mie.tokenization.wordpiece",
    "BPEModel": "mie.tokenization.bpe",
    "BPETrainer": "mie.tokenization.bpe",
    "bytes_to_unicode": "mie.tokenization.bpe",
    "RegexPreTokenizer": "mie.tokenization.pre_tokenizers",
    "PostProcessor": "mie.tokenization.processors",
    "build_normalizer": "mie.tokenization.normalizers",
    "save_tokenizer": "mie.tokenization.tokenizer",
    "load_tokenizer": "mie.tokenization.tokenizer",
    "from_gpt2_files": "mie.tokenization.formats",
    "from_clip_bpe": "mie.tokenization.formats",
    "TokenCache": "mie.tokenization.cache",
    "corpus_stats": "mie.tokenization.stats",
    "build_token_cache": "mie.tokenization.cache",
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
