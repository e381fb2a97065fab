"""`mie generate`: streams what `generate` produces, greedy at temperature 0, one line for bad options."""

from __future__ import annotations

import pytest
import torch

import mie.cli.generate as generate_cli
from mie.cli import main
from mie.models.causal_lm import CausalLM, CausalLMConfig
from mie.models.generation import generate
from mie.tokenization.factory import train_tokenizer


@pytest.fixture
def tiny(monkeypatch):
    torch.manual_seed(0)
    tokenizer = train_tokenizer("bpe", ["the cat sat on the mat", "a dog ran in the park"] * 20, vocab_size=300,
                                lowercase=True)
    model = CausalLM(CausalLMConfig(vocab_size=tokenizer.vocab_size, dim=32, n_layers=2, n_heads=4, n_kv_heads=2,
                                    max_seq_len=64)).eval()
    monkeypatch.setattr(generate_cli, "load_model", lambda name: (model, tokenizer))
    return model, tokenizer


def test_greedy_output_is_what_generate_returns(tiny, capsys):
    model, tokenizer = tiny
    assert main(["generate", "--model", "x", "--prompt", "the cat", "--max-new-tokens", "12",
                 "--temperature", "0"]) == 0
    out = capsys.readouterr().out
    ids = tokenizer.encode("the cat")
    expected = generate(model, [ids], max_new_tokens=12, stop_ids=[tokenizer.eos_id])[0]
    assert out == tokenizer.decode(expected) + "\n"


def test_seeded_sampling_is_reproducible(tiny, capsys):
    args = ["generate", "--model", "x", "--prompt", "a dog", "--max-new-tokens", "10", "--temperature", "1.0",
            "--top-k", "20", "--seed", "3"]
    assert main(args) == 0
    first = capsys.readouterr().out
    assert main(args) == 0
    assert capsys.readouterr().out == first


@pytest.mark.parametrize("flag, value, message", [
    ("--temperature", "-1", "--temperature: must be >= 0"),
    ("--top-p", "0", "--top-p: must be in (0, 1]"),
    ("--max-new-tokens", "0", "--max-new-tokens: must be at least 1"),
])
def test_bad_options_are_one_line(tiny, capsys, flag, value, message):
    assert main(["generate", "--model", "x", "--prompt", "the", flag, value]) == 1
    assert capsys.readouterr().err.strip() == f"mie generate: error: {message}"


def test_chat_needs_a_template(tiny, capsys):
    assert main(["generate", "--model", "x", "--prompt", "hi", "--chat"]) == 1
    assert "--chat: this model has no chat template — drop --chat" in capsys.readouterr().err


def test_unknown_model_name(capsys):
    assert main(["generate", "--model", "no-such-model", "--prompt", "hi"]) == 1
    assert "mie generate: error: --model: unknown model 'no-such-model' — use one of " in capsys.readouterr().err
