"""`mie generate`: streams what `generate` produces, greedy at temperature 0, one line for bad options."""

from __future__ import annotations

from pathlib import Path

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
    monkeypatch.setattr(generate_cli, "load_language_model", lambda name, **kwargs: (model, tokenizer))
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


def test_chat_wraps_the_prompt_in_the_template_and_stops_at_the_end_of_turn(monkeypatch, capsys):
    from tests.pretrained.test_gguf_conversion import chat_tokenizer

    from mie.pretrained.chat import ChatFormat

    torch.manual_seed(0)
    tokenizer = chat_tokenizer()  # SmolLM2's chat template on a byte-level vocabulary
    model = CausalLM(CausalLMConfig(vocab_size=tokenizer.vocab_size, dim=32, n_layers=1, n_heads=2,
                                    max_seq_len=256)).eval()
    monkeypatch.setattr(generate_cli, "load_language_model", lambda name, **kwargs: (model, tokenizer))
    assert main(["generate", "--model", "x", "--prompt", "Hi?", "--chat", "--system", "Be brief.",
                 "--max-new-tokens", "8", "--temperature", "0"]) == 0
    chat = ChatFormat(tokenizer, system="Be brief.")
    assert tokenizer.decode(chat.prompt_ids("Hi?"), skip_special_tokens=False).startswith(
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi?<|im_end|>\n<|im_start|>assistant\n")
    expected = generate(model, [chat.prompt_ids("Hi?")], max_new_tokens=8, stop_ids=chat.stop_ids())[0]
    assert capsys.readouterr().out == tokenizer.decode(expected) + "\n"


def test_unknown_model_name(capsys):
    from mie.pretrained import MODELS

    assert main(["generate", "--model", "no-such-model", "--prompt", "hi"]) == 1
    assert capsys.readouterr().err.strip() == (
        "mie generate: error: --model: unknown model 'no-such-model' (no pretrained model and no folder has this "
        f"name) — use one of {', '.join(sorted(MODELS))} or the folder of a finished lm run")


def test_a_run_of_another_kind_is_named_as_such(tmp_path, capsys):
    """Item 6 of issue 30: a clip run given to generate is called a clip run, not refused for a model key."""
    (tmp_path / "config.yaml").write_text("recipe: clip\nmodel: {name: demo}\n", encoding="utf-8")
    assert main(["generate", "--model", str(tmp_path), "--prompt", "hi"]) == 1
    assert capsys.readouterr().err == (
        f"mie generate: error: --model: {tmp_path} is a clip run (image-text), not a language-model run — pass the "
        "folder of a run trained with recipe: lm, or a pretrained model's name (mie models)\n")


def test_help_shows_every_default(capsys):
    """Item 8: the sampling defaults are in --help (output is random unless --temperature 0)."""
    with pytest.raises(SystemExit):
        main(["generate", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    for text in ["(default: 0.7)", "(default: 128)", "(default: 1.0)", "--device D", "-v, --verbose", "-q, --quiet"]:
        assert text in out


@pytest.mark.parametrize("value, message", [
    ("-1", "--seed: -1 is out of range — use a whole number from 0 to 9223372036854775807"),
    ("9223372036854775808", "--seed: 9223372036854775808 is out of range"),
    ("1180591620717411303424", "--seed: 1180591620717411303424 is out of range"),
])
def test_a_seed_out_of_range_is_one_line(tiny, capsys, value, message):
    assert main(["generate", "--model", "x", "--prompt", "the", "--seed", value]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith(f"mie generate: error: {message}")


def test_every_seed_flag_uses_the_shared_type():
    """One definition of --seed (mie.cli.args.seed), so every command refuses alike."""
    import re

    from mie.cli.args import MAX_SEED, seed

    sources = (Path(generate_cli.__file__).parent).glob("*.py")
    flags = [line for path in sources for line in path.read_text().splitlines() if re.search(r'"--seed"', line)]
    assert flags and all("type=seed" in line for line in flags if "add_argument" in line), flags
    assert seed("0") == 0 and seed(str(MAX_SEED)) == MAX_SEED


def test_max_new_tokens_past_any_context_is_refused_before_loading(monkeypatch, capsys):
    monkeypatch.setattr(generate_cli, "load_language_model", lambda name, **kwargs: pytest.fail("the model was loaded"))
    assert main(["generate", "--model", "x", "--prompt", "hi", "--max-new-tokens", "1000000000"]) == 1
    assert capsys.readouterr().err.strip() == (
        "mie generate: error: --max-new-tokens: 1,000,000,000 is more than any model's context (1,048,576 tokens) "
        "— ask for fewer new tokens (the model's context bounds them)")


def test_max_new_tokens_past_the_models_context_is_refused_before_the_cache(tiny, capsys):
    assert main(["generate", "--model", "x", "--prompt", "the cat", "--max-new-tokens", "100"]) == 1
    n = len(tiny[1].encode("the cat"))
    assert capsys.readouterr().err.strip() == (
        f"mie generate: error: --max-new-tokens: 100 new tokens after a {n}-token prompt exceed the model's context "
        f"(max_seq_len) of 64 — use at most {64 - n}")


def test_a_prompt_longer_than_the_context_is_refused_before_the_prefill(tiny, capsys, monkeypatch):
    model, tokenizer = tiny
    monkeypatch.setattr(type(model), "forward", lambda *a, **k: pytest.fail("the prompt was run"))
    prompt = "the cat sat on the mat " * 100
    assert main(["generate", "--model", "x", "--prompt", prompt]) == 1
    n = len(tokenizer.encode(prompt))
    assert capsys.readouterr().err.strip() == (
        f"mie generate: error: --prompt is {n:,} tokens; the model's context is 64 — shorten it to at most 63 tokens")


def test_a_pretrained_models_load_is_said_before_its_wait(monkeypatch, caplog):
    """Item 9 of issue 30: the first SmolLM2 load (about 20 s) is announced by a log line first."""
    import logging

    seen = []

    def fake_load(name, device):
        seen.append(list(caplog.messages))  # what had been said when the wait began
        raise SystemExit(0)

    monkeypatch.setattr("mie.pretrained.registry.load_causal_lm", fake_load)
    with caplog.at_level(logging.INFO, logger="mie"), pytest.raises(SystemExit):
        main(["generate", "--model", "smollm2-135m-instruct", "--prompt", "hi"])
    assert seen == [["loading smollm2-135m-instruct (the first load converts and caches it, about 20 s for SmolLM2; "
                     "later ones about 1 s)"]]
