"""The one loader (a pretrained name or an lm run folder -> model, tokenizer, chat template) and the one chat
prompt (:class:`ChatFormat`), without the real SmolLM2 files: a tiny lm run folder written here, and a
tokenizer carrying SmolLM2's own chat template."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml
from tests.pretrained.test_gguf_conversion import SMOLLM2_TEMPLATE, chat_tokenizer

from mie.config import load_config
from mie.errors import CheckpointError, ConfigError
from mie.io import save_weights
from mie.models.causal_lm import CausalLM, CausalLMConfig
from mie.pretrained.chat import ChatFormat, ChatTokenizer
from mie.pretrained.loading import load_language_model, load_lm_run
from mie.tokenization.factory import load_any_tokenizer, train_tokenizer
from mie.tokenization.tokenizer import save_tokenizer

SYSTEM = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"


def _write_lm_run(folder: Path, seed: int = 0, template: str | None = None) -> Path:
    """A finished lm run's files as the recipe writes them: config.yaml, tokenizer.json, best and last weights."""
    folder.mkdir(parents=True)
    tokenizer = train_tokenizer("bpe", ["the cat sat on the mat", "a dog ran in the park"] * 20, vocab_size=280)
    save_tokenizer(tokenizer, folder / "tokenizer.json")
    model_config = {"vocab_size": tokenizer.vocab_size, "dim": 16, "n_layers": 1, "n_heads": 2, "max_seq_len": 16}
    (folder / "config.yaml").write_text(yaml.safe_dump({"recipe": "lm", "model": model_config,
                                                         "data": {"files": ["notes/*.txt"]}}), encoding="utf-8")
    for offset, name in enumerate(("best", "last")):
        torch.manual_seed(seed + offset)
        save_weights(folder / "checkpoints" / f"{name}.safetensors", CausalLM(CausalLMConfig(**model_config)).state_dict())
    if template is not None:
        (folder / "chat_template.jinja").write_text(template, encoding="utf-8")
    return folder


@pytest.fixture
def lm_run(tmp_path: Path) -> Path:
    return _write_lm_run(tmp_path / "run")


def _recipe_load(run: Path, checkpoint: str) -> CausalLM:
    """The recipe's own path (``mie eval``): the whole LMConfig, then the checkpoint it evaluates."""
    from mie.recipes.lm.config import LMConfig
    from mie.recipes.lm.run import load_model

    model, _ = load_model(run, load_config(run / "config.yaml", LMConfig), checkpoint, torch.device("cpu"))
    return model


@pytest.mark.parametrize("checkpoint", ["best", "last"])
def test_an_lm_run_folder_loads_the_model_and_tokenizer_the_recipe_evaluates(lm_run, checkpoint):
    model, tokenizer = load_language_model(lm_run, checkpoint=checkpoint)
    reference = _recipe_load(lm_run, checkpoint)
    ids = torch.tensor([tokenizer.encode("the cat sat on")])
    assert not model.training and model.config == reference.config
    with torch.no_grad():
        assert torch.equal(model(ids), reference(ids))
    saved = load_any_tokenizer(lm_run / "tokenizer.json")
    assert type(tokenizer) is type(saved) and tokenizer.encode("a dog ran") == saved.encode("a dog ran")
    assert not ChatFormat(tokenizer).templated  # a run without chat_template.jinja has no template


def test_best_and_last_are_different_weights(lm_run):
    best, _ = load_lm_run(lm_run, "best")
    last, _ = load_lm_run(lm_run, "last")
    ids = torch.tensor([[1, 2, 3]])
    with torch.no_grad():
        assert not torch.equal(best(ids), last(ids))  # `last` is no silent fallback to `best`


def test_a_run_with_a_chat_template_gives_a_chat_tokenizer(tmp_path):
    run = _write_lm_run(tmp_path / "chat", template=SMOLLM2_TEMPLATE)
    _, tokenizer = load_language_model(str(run))
    assert isinstance(tokenizer, ChatTokenizer) and tokenizer.chat_template == SMOLLM2_TEMPLATE
    assert ChatFormat(tokenizer).templated


@pytest.mark.parametrize("where", ["--model", "init", "--judge-model"])
def test_an_unknown_name_is_one_line_naming_the_flag_and_the_fix(where):
    with pytest.raises(ConfigError) as caught:
        load_language_model("no-such-model", where=where)
    assert str(caught.value) == (f"{where}: unknown model 'no-such-model' (no pretrained model and no folder has this "
                                 "name) — use one of qwen2.5-coder-0.5b-instruct, qwen2.5-coder-1.5b-instruct, smollm2-135m-instruct or the folder of a finished lm run")


def test_a_run_of_another_recipe_is_refused_before_anything_is_read(tmp_path):
    run = tmp_path / "clip"
    run.mkdir()
    (run / "config.yaml").write_text(yaml.safe_dump({"recipe": "clip"}), encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_language_model(run)
    assert str(caught.value) == (f"--model: {run} is a clip run (image-text), not a language-model run — pass the "
                                 "folder of a run trained with recipe: lm, or a pretrained model's name (mie models)")


@pytest.mark.parametrize("key, value, error, message", [
    ("n_layers", 1_000_000, ConfigError, r"config.yaml: model.n_layers: 1,000,000 is more than 1,024"),  # sized first
    ("dim", 32, CheckpointError, r"best.safetensors: does not fit the model of .*config.yaml"),  # other weights
])
def test_a_model_section_that_is_wrong_is_one_line_naming_the_file(lm_run, key, value, error, message):
    config = yaml.safe_load((lm_run / "config.yaml").read_text())
    config["model"][key] = value
    (lm_run / "config.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    with pytest.raises(error, match=message):
        load_lm_run(lm_run)


# ----------------------------------------------------------------------------- the chat prompt
def _old_generate_chat(tokenizer, prompt: str, system: str | None) -> tuple[list[int], list[int]]:
    """What ``mie generate --chat`` built before ChatFormat (ids and stop ids), for comparison."""
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": prompt}]
    ids = tokenizer.encode(tokenizer.apply_chat_template(messages, add_generation_prompt=True))
    end = tokenizer.token_to_id("<|im_end|>")
    return ids, [tokenizer.eos_id] + ([end] if end is not None else [])


@pytest.mark.parametrize("system", [None, "Be brief."])
def test_chat_prompt_ids_are_smollm2s_template_tokenized(system):
    tok = chat_tokenizer()
    chat = ChatFormat(tok, system=system)
    ids = chat.prompt_ids("Hi?")
    old_ids, old_stops = _old_generate_chat(tok, "Hi?", system)
    assert ids == old_ids and set(chat.stop_ids()) == set(old_stops)
    shown = system if system is not None else SYSTEM  # the template's own system message when none is given
    assert tok.decode(ids, skip_special_tokens=False) == (
        f"<|im_start|>system\n{shown}<|im_end|>\n<|im_start|>user\nHi?<|im_end|>\n<|im_start|>assistant\n")


def test_stop_ids_put_the_end_of_turn_first_once():
    tok = chat_tokenizer()  # SmolLM2's EOS is <|im_end|> itself: one stop id
    assert ChatFormat(tok).stop_ids() == [tok.token_to_id("<|im_end|>")] == [tok.eos_id]
    other = ChatTokenizer(tok.model, None, None, "<|im_start|>", "<|endoftext|>", None, 64, split_special_tokens=True,
                          chat_template=SMOLLM2_TEMPLATE)
    assert ChatFormat(other).stop_ids() == [tok.token_to_id("<|im_end|>"), tok.token_to_id("<|endoftext|>")]


def test_a_tokenizer_without_a_template_gets_plain_lines_after_bos():
    tok = train_tokenizer("bpe", ["User: hello there\nAssistant: general kenobi"] * 4, vocab_size=280, lowercase=False)
    chat = ChatFormat(tok, system="Be kind.")
    ids = chat.conversation_ids([*chat.messages("hello"), {"role": "assistant", "content": "hi"},
                                 {"role": "user", "content": "and?"}])
    assert ids[0] == tok.bos_id and chat.stop_ids() == [tok.eos_id]
    assert tok.decode(ids[1:]) == "System: Be kind.\nUser: hello\nAssistant: hi\nUser: and?\nAssistant:"


def test_chat_target_and_generate_share_the_format():
    from mie.safety.targets import ChatTarget

    tok = chat_tokenizer()
    model = CausalLM(CausalLMConfig(vocab_size=tok.vocab_size, dim=16, n_layers=1, n_heads=2, max_seq_len=128))
    target = ChatTarget(model, tok, system="Be brief.")
    chat = ChatFormat(tok, system="Be brief.")
    assert target.prompt_ids("Hi?") == chat.prompt_ids("Hi?") and target.stop_ids() == chat.stop_ids()
